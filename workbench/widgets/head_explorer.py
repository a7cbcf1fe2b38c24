"""`HeadExplorer(lm, texts)`: pick a head statistic, see it for every head, click a head to read it.

Controls -> analysis -> plot: the statistic dropdown recolours the layer x head heatmap
(`plots.heads.head_heatmap` of `wb.head_stats`); clicking a cell (or `select(layer, head)`)
ranks the texts by that head's per-text value of the statistic (`head_stats(by_text=True)`,
computed once on the first `max_texts` texts) and shows the head's attention on the `examples`
strongest ones (`capture_attention` -> `plots.attention.attention_heatmap`). "Open in the attention
views" puts those texts into an `AttentionExplorer` at that layer and head, in its head view.

One pass over the corpus: with no `stats` given and at most `max_texts` texts, the per-text
statistics are computed at construction and the heatmap's statistics are their mean over texts,
which is what `head_stats(average="text")` computes (Clark et al. 2019), so the first click does
not run the corpus again. Each example text's forward pass is kept (`CaptureCache`) and handed to
the attention views, which therefore open without running the model.
"""

from __future__ import annotations

import html

import ipywidgets as widgets
import pandas as pd
import plotly.graph_objects as go

from .. import schema as S
from ..analysis.heads import STATS, head_stats
from ..capture import as_text_list
from ..config import check_int, check_positive_int
from ..errors import InputError
from ..models import LM, check_lm
from ..plots.attention import attention_heatmap
from ..plots.heads import LABELS, head_heatmap
from ..plots.labels import plot_text
from .attention_explorer import AttentionExplorer, CaptureCache, head_view_of
from .common import check_choice, in_widget


class HeadExplorer(widgets.VBox):
    """Layer x head heatmap of a statistic; click a head to see it on its strongest examples."""

    def __init__(self, lm: LM, texts, *, statistic: str = S.ATTN_BOS, examples: int = 3,
                 max_texts: int = 200, batch_size: int = 32, stats=None):
        check_choice("statistic", statistic, STATS, "HeadExplorer")
        self.lm = check_lm(lm)
        self.texts = as_text_list(texts)
        check_int("examples", examples, minimum=1, maximum=10)      # the slider's range
        self.max_texts = check_positive_int("max_texts", max_texts)
        self.batch_size = check_positive_int("batch_size", batch_size)
        if stats is not None and not (isinstance(stats, pd.DataFrame) and statistic in stats):
            raise InputError(f"HeadExplorer(stats=...) must be the frame wb.head_stats returned "
                             f"for these texts (with a {statistic!r} column), or None")
        self._by_text = None
        self._captures = CaptureCache(lm)
        if stats is None and len(self.texts) <= max_texts:
            stats = mean_over_texts(self.per_text())
        self.stats = stats if stats is not None else head_stats(
            lm, self.texts, batch_size=batch_size, progress=False)
        self.selected: tuple[int, int] | None = None
        self.ranked: list[int] = []           # text ids shown for the selected head, best first

        self.statistic = widgets.Dropdown(options=[(LABELS.get(s, s), s) for s in STATS],
                                          value=statistic, description="statistic")
        self.examples = widgets.IntSlider(value=examples, min=1, max=10, description="examples")
        self.status = widgets.HTML("Click a head in the heatmap to see it on example texts.")
        self.heatmap = go.FigureWidget(head_heatmap(self.stats, statistic))
        self.heatmap.update_layout(height=120 + 22 * lm.num_layers)
        self.heatmap.data[0].on_click(self._on_click)
        self.detail = widgets.VBox([])
        self.explorer: AttentionExplorer | None = None
        self.open_button = widgets.Button(description="open in the attention views", icon="eye",
                                          disabled=True,
                                          tooltip="the selected head on these texts, in the "
                                                  "AttentionExplorer (head view, model view, ...)")
        self.open_button.on_click(lambda _: self.open_views())
        self.explorer_box = widgets.VBox([])
        self.statistic.observe(self._on_statistic, names="value")
        self.examples.observe(lambda change: self._refresh_detail(), names="value")
        super().__init__([widgets.HBox([self.statistic, self.examples]), self.heatmap,
                          widgets.HBox([self.status, self.open_button]), self.detail,
                          self.explorer_box])

    # -- controls --------------------------------------------------------------------------
    @in_widget()
    def _on_statistic(self, change) -> None:
        fresh = head_heatmap(self.stats, change["new"])
        with self.heatmap.batch_update():
            self.heatmap.data[0].z = fresh.data[0].z
            self.heatmap.data[0].zmin, self.heatmap.data[0].zmax = (fresh.data[0].zmin,
                                                                    fresh.data[0].zmax)
            self.heatmap.data[0].hovertemplate = fresh.data[0].hovertemplate
            self.heatmap.layout.title = fresh.layout.title
        self._refresh_detail()

    def _on_click(self, trace, points, selector=None) -> None:
        if points.xs and points.ys:
            self.select(int(points.ys[0]), int(points.xs[0]))

    def select(self, layer: int, head: int) -> None:
        """Show head (layer, head) on the texts where the current statistic is largest."""
        if not (0 <= layer < self.lm.num_layers and 0 <= head < self.lm.num_heads):
            self.status.value = f"<b>no head ({layer}, {head})</b> in this model"
            return
        self.selected = (layer, head)
        self._refresh_detail()

    # -- analysis -> plots ------------------------------------------------------------------
    def per_text(self):
        """`head_stats(by_text=True)` on the first `max_texts` texts (computed once)."""
        if self._by_text is None:
            self._by_text = head_stats(self.lm, self.texts[:self.max_texts], by_text=True,
                                       batch_size=self.batch_size, progress=False)
        return self._by_text

    @in_widget("ranking the texts by this head and drawing its attention")
    def _refresh_detail(self) -> None:
        if self.selected is None:
            return
        layer, head = self.selected
        stat = self.statistic.value
        rows = self.per_text()
        rows = rows[(rows[S.LAYER] == layer) & (rows[S.HEAD] == head)]
        self.ranked = [int(t) for t in rows.nlargest(self.examples.value, stat)[S.TEXT_ID]]
        captures = self._captures.get([self.texts[i] for i in self.ranked])
        figures = []
        for j, text_id in enumerate(self.ranked):
            value = rows.loc[rows[S.TEXT_ID] == text_id, stat].iloc[0]
            frame = captures[j].to_frame(layers=[layer], heads=[head])
            fig = attention_heatmap(frame, text_id=j, title=plot_text(
                f"text {text_id}: {LABELS.get(stat, stat)} = {value:.3f}"))
            fig.update_layout(height=360)
            figures.append(go.FigureWidget(fig))
        self.detail.children = figures
        overall = self.stats.loc[(self.stats[S.LAYER] == layer) & (self.stats[S.HEAD] == head),
                                 stat].iloc[0]
        self.status.value = (f"<b>layer {layer}, head {head}</b>: {html.escape(LABELS.get(stat, stat))}"
                             f" = {overall:.3f} over the corpus; strongest texts shown below.")
        self.open_button.disabled = False
        if self.explorer is not None:  # the open attention views follow the clicked head
            self.open_views()

    @in_widget("opening the attention views (runs the model on these texts)")
    def open_views(self) -> AttentionExplorer | None:
        """The selected head on its strongest texts in an `AttentionExplorer` (head view)."""
        if self.selected is None:
            return None
        layer, head = self.selected
        texts = [self.texts[i] for i in self.ranked]
        captures = self._captures.get(texts)  # the examples' passes: the model does not run
        self.explorer = head_view_of(self.explorer, self.lm, texts, captures, layer=layer, head=head)
        self.explorer_box.children = [self.explorer]
        return self.explorer


def mean_over_texts(by_text):
    """`head_stats(average="text")` from its `by_text=True` rows: each statistic's and uniform
    reference's per-text means averaged over the texts, per (model, layer, head), with n_texts,
    n_queries (summed), average ("text") and punctuation, as `head_stats` gives them."""
    keys = [c for c in (S.MODEL, S.LAYER, S.HEAD) if c in by_text.columns]
    groups = by_text.groupby(keys, sort=False)
    df = groups[list(STATS) + [S.UNIFORM_DISTANCE, S.UNIFORM_ENTROPY]].mean()
    df.insert(len(STATS), S.N_TEXTS, groups.size())
    df.insert(len(STATS) + 1, S.N_QUERIES, groups[S.N_QUERIES].sum())
    df[S.AVERAGE] = "text"
    df[S.PUNCTUATION] = groups[S.PUNCTUATION].first()
    return df.reset_index()
