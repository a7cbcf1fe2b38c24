"""What every widget shares: option checks, errors shown in the widget, a busy state, placeholders.

- `check_choice` / `check_options`: a constructor given an unknown option (a misspelt keyword or a
  value outside the choices) raises `InputError` naming it and listing the valid ones, instead of
  a `TraitError` from a control three calls down.
- `error_html(err)`: the red message a status line shows for an error;
- `SPINNER`: the busy mark; `placeholder(text)`: an empty figure that says "computing…" (or why it
  is empty) instead of bare axes.
"""

from __future__ import annotations

import html
from typing import Any, Iterable, Mapping

import plotly.graph_objects as go

from ..errors import InputError
from ..plots.labels import plot_text

SPINNER = ('<span class="wb-busy" style="display:inline-block;width:10px;height:10px;'
           'border:2px solid #999;border-top-color:transparent;border-radius:50%;'
           'animation:wb-spin 0.8s linear infinite;margin-right:6px"></span>'
           '<style>@keyframes wb-spin{to{transform:rotate(360deg)}}</style>')


def check_choice(option: str, value: Any, valid: Iterable[Any], widget: str) -> Any:
    """`value` if it is one of `valid`, else an InputError naming the option and the choices."""
    valid = list(valid)
    if value not in valid:
        raise InputError(f"{widget}({option}={value!r}): unknown {option}; use one of "
                         f"{', '.join(map(repr, valid))}")
    return value


def check_options(widget: str, given: Mapping[str, Any], valid: Iterable[str]) -> None:
    """InputError for keyword options `widget` does not take (a misspelt `top_k=`, ...)."""
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise InputError(f"{widget} has no option {', '.join(map(repr, unknown))}; its options "
                         f"are {', '.join(sorted(valid))}")


def error_html(err: BaseException) -> str:
    """A red message for a status line (the exception's type only when it is not our own)."""
    from ..errors import WorkbenchError

    text = str(err) if isinstance(err, WorkbenchError) else f"{type(err).__name__}: {err}"
    return f'<span style="color:#b00020"><b>error:</b> {html.escape(text)}</span>'


def placeholder(text: str = "computing…", height: int | None = None) -> go.Figure:
    """An empty figure with `text` in its middle and no axes (instead of bare −1..6 axes)."""
    fig = go.Figure()
    fig.update_layout(xaxis_visible=False, yaxis_visible=False, height=height,
                      annotations=[dict(text=plot_text(text), showarrow=False, xref="paper",
                                        yref="paper", x=0.5, y=0.5,
                                        font=dict(size=14, color="#777"))])
    return fig
