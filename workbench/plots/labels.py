"""Text that reaches a plotly figure, and the layout that keeps it readable on screen and on paper.

Plotly reads tick labels, cell text, titles and hover text as a small subset of HTML, so a token
such as `<s>` turns the rest of a tick label into strikethrough and `</s>` or `<mask>` vanish.
Every piece of user text (tokens, sentences, label and model names) goes through `plot_text`
(whole) or `short_label` (cut to a length with '…'; the figure's hover keeps the whole text).

`finish(fig)` is the last call of every plot function: the paper theme, automatic margins on every
axis (long labels push the margin out instead of being clipped or running into the axis title),
and the title at the top left, where the plotly toolbar (top right) does not cover it.
Layer 3: no torch here.
"""

from __future__ import annotations

import html
from typing import Iterable

import plotly.graph_objects as go

from ..figures import apply_theme

TICK_CHARS = 12    # longest tick label / cell text; longer is cut with '…' (hover has it all)
NAME_CHARS = 32    # longest legend entry, subplot title or axis title built from a name
TITLE_CHARS = 80   # longest figure title built from user text (a sentence)


def plot_text(value) -> str:
    """`value` as text that plotly shows literally (`<s>` stays `<s>`)."""
    return html.escape(str(value), quote=False)


def short_label(value, limit: int = TICK_CHARS, *, middle: bool = False) -> str:
    """`value` cut to `limit` characters with '…', escaped for plotly (show the whole on hover).
    `middle=True` keeps both ends ('2026…/best'): names (runs, models, paths) that differ only at
    the end stay apart."""
    text = str(value)
    if len(text) <= limit:
        return plot_text(text)
    if middle:
        head = (limit - 1) // 2
        return plot_text(text[:head] + "…" + text[len(text) - (limit - 1 - head):])
    return plot_text(text[:limit - 1] + "…")


def short_name(value) -> str:
    """A run, model or label name for a legend, subplot or axis title: at most NAME_CHARS, cut in
    the middle (the hover keeps the whole name)."""
    return short_label(value, NAME_CHARS, middle=True)


def short_ticks(values: Iterable, limit: int = TICK_CHARS) -> dict:
    """Axis settings for a category axis whose categories are `plot_text(v)` of the raw `values`:
    each is labelled with its `short_label`, while the category itself (and so the hover) keeps
    the whole text."""
    values = list(dict.fromkeys(str(v) for v in values))
    return dict(tickmode="array", tickvals=[plot_text(v) for v in values],
                ticktext=[short_label(v, limit) for v in values])


def finish(fig: go.Figure) -> go.Figure:
    """Paper theme, automargin on every axis, the title at the top left (see the module doc)."""
    apply_theme(fig)
    fig.update_xaxes(automargin=True)
    fig.update_yaxes(automargin=True)
    if fig.layout.title.text:
        fig.update_layout(title=dict(x=0.01, xanchor="left"),
                          margin=dict(t=max(fig.layout.margin.t or 0, 50)))
    return fig


__all__ = ["plot_text", "short_label", "short_name", "short_ticks", "finish", "TICK_CHARS",
           "NAME_CHARS", "TITLE_CHARS"]
