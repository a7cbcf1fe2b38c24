"""What every widget shares: option checks, errors shown in the widget, a busy state, placeholders.

- `check_choice` / `check_options`: a constructor given an unknown option (a misspelt keyword or a
  value outside the choices) raises `InputError` naming it and listing the valid ones, instead of
  a `TraitError` from a control three calls down.
- `error_html(err)`: the red message a status line shows for an error (our own errors say what to
  do; anything else also gets a collapsed 'details' traceback);
- `in_widget(what, figures=...)`: decorates a widget method that a control calls: while it runs,
  the status line shows `SPINNER` and `what` and its figures say "computing…"; an error is shown in
  the status line (kept in `.last_error`), never as a traceback in the cell;
- `placeholder(text)`: an empty figure that says "computing…" (or why it is empty) instead of bare
  axes; `replace_figure(target, fig)` swaps a new figure into a FigureWidget.
"""

from __future__ import annotations

import functools
import html
import re
import textwrap
import traceback
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Mapping

import plotly.graph_objects as go

from ..errors import InputError, WorkbenchError
from ..figures import apply_theme
from ..plots.labels import plot_text

BUSY = "wb-busy"   # name of the "computing…" annotation laid over a figure while it recomputes

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
    """A red message for a status line. Our own errors say what to do; anything else is named by
    its type, with the traceback in a collapsed 'details' section (for a bug report)."""
    if isinstance(err, WorkbenchError):
        return f'<span style="color:#b00020"><b>error:</b> {html.escape(str(err))}</span>'
    trace = "".join(traceback.format_exception(type(err), err, err.__traceback__))[-6000:]
    return (f'<span style="color:#b00020"><b>unexpected error:</b> '
            f"{html.escape(type(err).__name__)}: {html.escape(str(err)[:300])}</span>"
            f"<details><summary>details</summary><pre style='font-size:11px;white-space:pre-wrap'>"
            f"{html.escape(trace)}</pre></details>")


def replace_figure(target: go.FigureWidget, fig: go.Figure) -> None:
    """Show `fig` in an existing FigureWidget (traces and layout swapped in one update).

    A new layout reaches the browser as a relayout of its own keys only, so what the old layout
    had and the new one lacks (a placeholder's note, hidden axes, the previous title) would stay
    on screen: those keys are sent with neutral values (`_NEUTRAL`)."""
    layout = go.Layout(fig.layout)
    new = layout.to_plotly_json()
    resets: dict = {}
    for path in _stale_keys(target.layout.to_plotly_json(), new):
        keys = path.split(".")
        if re.fullmatch(r"[xy]axis\d+", keys[0]) and keys[0] not in new:
            resets[keys[0]] = {"visible": False}  # a subplot the new figure does not have
        elif keys[-1] in _NEUTRAL:
            node = resets
            for key in keys[:-1]:
                node = node.setdefault(key, {})
            if isinstance(node, dict):
                node[keys[-1]] = _NEUTRAL[keys[-1]]
    layout.update(resets)
    with target.batch_update():
        target.data = []
        target.add_traces(list(fig.data))
        target.layout = layout


# plotly drops an empty list from a layout, so notes are cleared with one hidden note
_NEUTRAL = {"annotations": [dict(text="", showarrow=False, visible=False)],
            "shapes": [dict(type="line", visible=False)], "visible": True, "text": ""}


def _stale_keys(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted paths set in `old` but not in `new` (recursing into nested dicts, not lists)."""
    stale = []
    for key, value in old.items():
        if key == "template":
            continue
        if isinstance(value, dict) and isinstance(new.get(key, {}), dict):
            stale += _stale_keys(value, new.get(key, {}), f"{prefix}{key}.")
        elif key not in new:
            stale.append(prefix + key)
    return stale


def _cover(fig: go.FigureWidget) -> None:
    """'computing…' over a figure (an empty one becomes a placeholder, not bare axes)."""
    if not fig.data:
        replace_figure(fig, placeholder("computing…", height=fig.layout.height))
        fig.layout.annotations[0].name = BUSY
        return
    fig.layout.annotations = [*fig.layout.annotations, dict(
        name=BUSY, text="computing…", showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5,
        font=dict(size=14, color="#555"), bgcolor="rgba(255,255,255,0.85)")]


def _uncover(fig: go.FigureWidget) -> None:
    fig.layout.annotations = [a for a in fig.layout.annotations if a.name != BUSY]


@contextmanager
def busy(status, what: str, figures: Iterable[go.FigureWidget] = ()):
    """While the body runs: a spinner and `what` on `status` (an HTML widget), "computing…" over
    `figures`; afterwards the cover goes and the status comes back unless the body set it."""
    figures = list(figures)
    before, shown = status.value, f"{SPINNER}{html.escape(what)} …"
    status.value = shown
    for fig in figures:
        _cover(fig)
    try:
        yield
    finally:
        for fig in figures:
            _uncover(fig)
        if status.value == shown:
            status.value = before


def in_widget(what: str | None = None, *, status: str = "status",
              figures: Iterable[str] = ()) -> Callable:
    """Decorate a widget method run by a control (see the module docstring). `status` and
    `figures` name the widget's attributes; `what=None` shows errors but no busy state (for quick
    redraws). The method returns None after an error, which is kept in `self.last_error`."""
    def decorate(method: Callable) -> Callable:
        @functools.wraps(method)
        def run(self, *args, **kwargs):
            line = getattr(self, status)
            self.last_error = None
            try:
                if what is None:
                    return method(self, *args, **kwargs)
                with busy(line, what, [getattr(self, f) for f in figures]):
                    return method(self, *args, **kwargs)
            except Exception as err:  # noqa: BLE001 - shown in the widget, not as a cell traceback
                self.last_error = err
                line.value = error_html(err)
                return None
        return run
    return decorate


PLACEHOLDER_CHARS = 56  # a placeholder's line at 14 px fits a figure ~450 px wide (a narrow cell)


def placeholder(text: str = "computing…", height: int | None = None) -> go.Figure:
    """An empty figure with `text` in its middle and no axes (instead of bare −1..6 axes).

    A long text is wrapped into lines of at most `PLACEHOLDER_CHARS` characters: plotly draws a
    note on one line, and a long one was cut off at both edges of the figure."""
    lines = textwrap.wrap(str(text), PLACEHOLDER_CHARS) or [""]
    fig = apply_theme(go.Figure())
    fig.update_layout(xaxis_visible=False, yaxis_visible=False, height=height,
                      annotations=[dict(text="<br>".join(map(plot_text, lines)), showarrow=False,
                                        xref="paper",
                                        yref="paper", x=0.5, y=0.5,
                                        font=dict(size=14, color="#777"))])
    return fig
