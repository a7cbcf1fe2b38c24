"""`PatchProbe(lm, clean, corrupted, candidates)`: activation patching on two texts, redrawn on demand.

Controls -> analysis -> plot: the clean and corrupted texts, the two candidates (a masked LM's
log-probability difference at the clean text's `<mask>`) and the site feed `wb.patch`; its frame
is drawn by `plots.patching.patch_heatmap` (layer x position) or `head_grid` (layer x head). A
button runs it (a grid is one batched pass per `batch_size` sites, not instant on a large model).
Bad input (texts of different token lengths, a candidate that is not one token) shows its
message in the status line and clears the figure. `frame` holds the last result.
"""

from __future__ import annotations

import html

import ipywidgets as widgets
import plotly.graph_objects as go

from ..analysis.patching import SITES, patch
from ..models import LM
from ..plots.patching import head_grid, patch_heatmap
from .common import check_choice, in_widget, placeholder, replace_figure


class PatchProbe(widgets.VBox):
    """Two texts and two candidates in, the patching heatmap of one site out."""

    def __init__(self, lm: LM, clean: str = "The keys to the cabinet <mask> here.",
                 corrupted: str = "The key to the cabinet <mask> here.",
                 candidates: tuple[str, str] = ("are", "is"), *, site: str = "resid",
                 batch_size: int = 32, run: bool = True):
        check_choice("site", site, SITES, "PatchProbe")
        lm.require_mlm_head("PatchProbe")
        self.lm, self.batch_size = lm, batch_size
        self.frame = None
        wide = widgets.Layout(width="60%")
        self.clean = widgets.Text(value=clean, description="clean", layout=wide)
        self.corrupted = widgets.Text(value=corrupted, description="corrupted", layout=wide)
        self.good = widgets.Text(value=candidates[0], description="candidate a")
        self.bad = widgets.Text(value=candidates[1], description="candidate b")
        self.site = widgets.Dropdown(options=list(SITES), value=site, description="site")
        self.run_button = widgets.Button(description="patch", icon="play")
        self.status = widgets.HTML()
        self.figure = go.FigureWidget(placeholder("press patch"))
        self.run_button.on_click(lambda _: self.refresh())
        self.site.observe(lambda _: self.refresh(), names="value")
        super().__init__([self.clean, self.corrupted, widgets.HBox([self.good, self.bad]),
                          widgets.HBox([self.site, self.run_button]), self.status, self.figure])
        if run:
            self.refresh()

    @in_widget("patching", figures=("figure",))
    def refresh(self) -> None:
        """Run `wb.patch` for the current controls and redraw."""
        self.frame = None
        replace_figure(self.figure, placeholder("computing…"))
        df = patch(self.lm, self.clean.value, self.corrupted.value,
                   candidates=(self.good.value, self.bad.value), sites=self.site.value,
                   batch_size=self.batch_size)
        self.frame = df
        fig = head_grid(df) if self.site.value == "head" else patch_heatmap(df, site=self.site.value)
        replace_figure(self.figure, fig)
        self.status.value = html.escape(
            f"{len(df)} sites patched; clean {df['clean'].iloc[0]:.3f}, corrupted "
            f"{df['corrupted'].iloc[0]:.3f} ({df['metric'].iloc[0]})")
