"""Text that reaches a plotly figure: tick labels, cell text, titles and hover text.

Plotly reads all of these as a small subset of HTML, so a token such as `<s>` turns the rest of a
tick label into strikethrough and `</s>` or `<mask>` vanish. Every piece of user text (tokens,
sentences, label and model names) goes through `plot_text` before it is put in a figure.
Layer 3: no torch here.
"""

from __future__ import annotations

import html


def plot_text(value) -> str:
    """`value` as text that plotly shows literally (`<s>` stays `<s>`)."""
    return html.escape(str(value), quote=False)


__all__ = ["plot_text"]
