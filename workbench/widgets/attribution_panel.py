"""An attribution view to embed anywhere: `attribution_view(lm, text, target)` -> a widget.

Shows `wb.attribute` methods side by side on one token strip (`plots.representations.
attribution_strip`) with controls for the methods, token/word level, the number of integrated-
gradient steps, the text and the target; the status line reports f(x), f(baseline) and IG's
convergence delta. `ExplainPanel` wraps it in a collapsed section that computes only when opened:
MaskProbe embeds one for its prediction, and FineTuneRun one for the selected run's classifier.
"""

from __future__ import annotations

import html

import ipywidgets as widgets
import plotly.graph_objects as go

from .. import schema as S
from ..analysis.attribution import METHODS, attribute
from ..errors import InputError
from ..plots.representations import attribution_strip
from .common import SPINNER, check_choice, error_html, in_widget, placeholder, replace_figure


def _parse_target(value: str):
    value = value.strip("\n")
    if not value.strip():
        return None
    return int(value) if value.strip().isdigit() else value


class AttributionView(widgets.VBox):
    """Attribution strip for (lm, text, target); `.result` holds the last `wb.attribute` frame."""

    def __init__(self, lm, text: str, target=None, *, methods=METHODS, level: str = "word",
                 n_steps: int = 50):
        if not isinstance(text, str):
            raise InputError(f"AttributionView(text={text!r}): pass the text to explain")
        check_choice("level", level, ["token", "word"], "AttributionView")
        check_choice("n_steps", n_steps, range(2, 301), "AttributionView (2..300)")
        self.lm = lm
        self.result = None
        self.text = widgets.Textarea(value=text, description="text",
                                     layout=widgets.Layout(width="98%", height="60px"))
        self.target = widgets.Text(value="" if target is None else str(target), description="target",
                                   placeholder="empty: the model's own prediction")
        self.methods = widgets.SelectMultiple(options=list(METHODS), value=list(methods),
                                              description="methods", rows=3)
        self.level = widgets.ToggleButtons(options=["token", "word"], value=level, description="level")
        self.n_steps = widgets.IntSlider(value=n_steps, min=2, max=300, step=2, description="IG steps")
        self.run_button = widgets.Button(description="Attribute", icon="play", button_style="primary")
        self.run_button.on_click(lambda _: self.run())
        self.status = widgets.HTML()
        self.figure = go.FigureWidget(placeholder("press Attribute to explain the prediction",
                                                  height=200))
        super().__init__([self.text, widgets.HBox([self.target, self.level]),
                          widgets.HBox([self.methods, self.n_steps, self.run_button]),
                          self.status, self.figure])

    @in_widget("attributing (integrated gradients runs the model once per step)",
               figures=("figure",))
    def run(self) -> None:
        """Recompute the attributions for the current controls and redraw the strip."""
        self.result = attribute(self.lm, self.text.value, target=_parse_target(self.target.value),
                                method=list(self.methods.value), level=self.level.value,
                                n_steps=self.n_steps.value)
        replace_figure(self.figure, attribution_strip(self.result))
        first = self.result[self.result[S.TEXT_ID] == 0]
        parts = [f"target {first[S.TARGET].iloc[0]!s}"]
        ig = first[first[S.METHOD] == "ig"]
        if len(ig):
            row = ig.iloc[0]
            parts.append(f"f(x) = {row[S.F_INPUT]:.4g}, f(baseline) = {row[S.F_BASELINE]:.4g}, "
                         f"delta = {row[S.DELTA]:.2g} (IG sum - (f(x) - f(baseline)))")
        self.status.value = html.escape("; ".join(parts))


def attribution_view(lm, text: str, target=None, **options) -> AttributionView:
    """A ready (already computed) `AttributionView` for `lm`'s prediction on `text`."""
    view = AttributionView(lm, text, target, **options)
    view.run()
    return view


class ExplainPanel(widgets.Accordion):
    """A collapsed `AttributionView`, built and computed the first time it is opened.

    Host widgets call `set_source(lm=..., text=...)` when their model or text changes; `lm` may be
    a callable that loads the model, so nothing is loaded until the panel is opened. An open view
    takes the new text at once but recomputes only on its Attribute button (integrated gradients
    costs `n_steps` forward and backward passes)."""

    def __init__(self, title: str, lm=None, text: str = "", target=None):
        self._lm, self._text, self._target = lm, text, target
        self.view: AttributionView | None = None
        self.box = widgets.VBox([widgets.HTML("<i>open this section to compute attributions</i>")])
        super().__init__(children=[self.box], titles=(title,))
        self.selected_index = None
        self.observe(lambda change: self.build() if change["new"] == 0 else None,
                     names="selected_index")

    def _model(self):
        if callable(self._lm):
            self._lm = self._lm()
        return self._lm

    def set_source(self, lm=None, text: str | None = None, target=None) -> None:
        """New model (or a loader) and/or text; an open view follows them."""
        if lm is not None:
            self._lm = lm
            self._target = target
        if text is not None:
            self._text = text
        if self.view is None:
            if self.selected_index == 0 and lm is not None:  # open, and waiting for a model
                self.build()
            return
        if lm is not None:
            self.view.lm = self._model()
            self.view.target.value = "" if target is None else str(target)
        self.view.text.value = self._text
        self.view.status.value = html.escape("the input changed: press Attribute to explain it")

    def clear(self, message: str) -> None:
        """The host has no valid input: drop the shown attributions and say why."""
        if self.view is None:
            return
        self.view.result = None
        replace_figure(self.view.figure, placeholder(message))
        self.view.status.value = html.escape(message)

    def build(self) -> None:
        """Build the view for the current source and compute it (what opening the panel does)."""
        if self.selected_index != 0:
            self.selected_index = 0  # calls back here through the observer
            return
        if self.view is not None:
            return
        if self._lm is None:
            self.box.children = [widgets.HTML("<i>no model yet: select or finish a run</i>")]
            return
        self.box.children = [widgets.HTML(f"{SPINNER}loading the model …")]
        try:
            lm = self._model()
        except Exception as err:  # noqa: BLE001 - a failed load is shown, not raised
            self.box.children = [widgets.HTML(error_html(err))]
            return
        self.view = AttributionView(lm, self._text, self._target)
        self.box.children = [self.view]
        self.view.run()
