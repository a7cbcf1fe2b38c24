"""An attribution view to embed anywhere: `attribution_view(lm, text, target)` -> a widget.

Shows `wb.attribute` methods side by side on one token strip (`plots.representations.
attribution_strip`) with controls for the methods, token/word level, the number of integrated-
gradient steps, the text and the target; the status line reports f(x), f(baseline) and IG's
convergence delta. MaskProbe and the fine-tuning widget embed it for their current prediction.
"""

from __future__ import annotations

import html

import ipywidgets as widgets
import plotly.graph_objects as go

from ..analysis.attribution import METHODS, attribute
from ..errors import WorkbenchError
from ..plots.representations import attribution_strip
from .probe_lab import replace_figure


def _parse_target(value: str):
    value = value.strip("\n")
    if not value.strip():
        return None
    return int(value) if value.strip().isdigit() else value


class AttributionView(widgets.VBox):
    """Attribution strip for (lm, text, target); `.result` holds the last `wb.attribute` frame."""

    def __init__(self, lm, text: str, target=None, *, methods=METHODS, level: str = "word",
                 n_steps: int = 50):
        self.lm = lm
        self.result = None
        self.text = widgets.Textarea(value=text, description="text",
                                     layout=widgets.Layout(width="98%", height="60px"))
        self.target = widgets.Text(value="" if target is None else str(target), description="target",
                                   placeholder="empty: the model's own prediction")
        self.methods = widgets.SelectMultiple(options=list(METHODS), value=list(methods),
                                              description="methods", rows=3)
        self.level = widgets.ToggleButtons(options=["token", "word"], value=level, description="level")
        self.n_steps = widgets.IntSlider(value=n_steps, min=4, max=300, step=4, description="IG steps")
        self.run_button = widgets.Button(description="Attribute", icon="play", button_style="primary")
        self.run_button.on_click(lambda _: self.run())
        self.status = widgets.HTML()
        self.figure = go.FigureWidget()
        super().__init__([self.text, widgets.HBox([self.target, self.level]),
                          widgets.HBox([self.methods, self.n_steps, self.run_button]),
                          self.status, self.figure])

    def run(self) -> None:
        """Recompute the attributions for the current controls and redraw the strip."""
        try:
            self.result = attribute(self.lm, self.text.value, target=_parse_target(self.target.value),
                                    method=list(self.methods.value), level=self.level.value,
                                    n_steps=self.n_steps.value)
        except WorkbenchError as err:
            self.status.value = f"<b>error:</b> {html.escape(str(err))}"
            return
        replace_figure(self.figure, attribution_strip(self.result))
        info = self.result.attrs["info"][0]
        parts = [f"target {info['target']!s}"]
        if "delta" in info:
            parts.append(f"f(x) = {info['f_x']:.4g}, f(baseline) = {info['f_baseline']:.4g}, "
                         f"IG sum = {info['total']:.4g}, delta = {info['delta']:.2g}")
        self.status.value = html.escape("; ".join(parts))


def attribution_view(lm, text: str, target=None, **options) -> AttributionView:
    """A ready (already computed) `AttributionView` for `lm`'s prediction on `text`."""
    view = AttributionView(lm, text, target, **options)
    view.run()
    return view
