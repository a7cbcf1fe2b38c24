"""`ProbeLab`: features -> per-layer linear probe -> accuracy curve, with the probe's knobs as controls.

Controls: pooling (sentence tasks), probe strength C, held-out fraction, seed, whether to train the
control task, and a Run button (probing refits one classifier per layer, so it runs on demand).
The numbers come from `wb.linear_probe` and the figure from `plots.representations.probe_curve`;
features are cached on disk, so changing a probe knob does not re-run the model.
"""

from __future__ import annotations

import html

import ipywidgets as widgets
import plotly.graph_objects as go

from ..analysis.linear_probe import TASKS, linear_probe
from ..errors import InputError
from ..plots.representations import probe_curve
from .common import check_choice, check_options, in_widget, placeholder, replace_figure


class ProbeLab(widgets.VBox):
    """Probe `lm` (or {name: LM}) on `data` layer by layer; `.result` holds the last frame."""

    def __init__(self, lm, data, *, task: str = "sentence", layers="all", text_col: str = "text",
                 label_col: str = "label", run: bool = False, **options):
        check_options("ProbeLab", options, ["task", "layers", "text_col", "label_col", "run"])
        check_choice("task", task, TASKS, "ProbeLab")
        if data is None:
            raise InputError("ProbeLab(data=None): pass a DataFrame (or a table path) with "
                             f"{text_col!r} and {label_col!r} columns")
        self.lm, self.data, self.task, self.layers = lm, data, task, layers
        self.text_col, self.label_col = text_col, label_col
        self.result = None
        self.pool = widgets.Dropdown(options=["mean", "cls"] if task == "sentence" else ["words"],
                                     description="pool", layout=widgets.Layout(width="170px"))
        self.C = widgets.FloatLogSlider(value=1.0, base=10, min=-3, max=2, step=0.5,
                                        description="probe C", readout_format=".3g")
        self.test_size = widgets.FloatSlider(value=0.25, min=0.1, max=0.5, step=0.05,
                                             description="held out")
        self.seed = widgets.IntText(value=0, description="seed", layout=widgets.Layout(width="150px"))
        self.control = widgets.Checkbox(value=True, description="control task (Hewitt & Liang)")
        self.run_button = widgets.Button(description="Run probes", icon="play", button_style="primary")
        self.run_button.on_click(lambda _: self.run())
        self.status = widgets.HTML(value="press Run to fit one probe per layer")
        self.figure = go.FigureWidget(placeholder("press Run probes to fit them", height=340))
        super().__init__([
            widgets.HBox([self.pool, self.seed, self.control]),
            widgets.HBox([self.C, self.test_size, self.run_button]),
            self.status, self.figure])
        if run:
            self.run()

    @in_widget("computing features and fitting one probe per layer", figures=("figure",))
    def run(self) -> None:
        """Fit the probes with the current control values and redraw the curve."""
        self.result = linear_probe(
            self.lm, self.data, task=self.task, layers=self.layers, pool=self.pool.value,
            text_col=self.text_col, label_col=self.label_col, test_size=self.test_size.value,
            seed=self.seed.value, C=self.C.value, control=self.control.value, progress=False)
        replace_figure(self.figure, probe_curve(self.result))
        acc = self.result[self.result["metric"] == "accuracy"]
        best = acc.loc[acc["value"].idxmax()]
        self.status.value = html.escape(
            f"best layer {int(best['layer'])}: accuracy {best['value']:.3f} "
            f"({best['n_train']} train / {best['n_test']} held-out examples)")
