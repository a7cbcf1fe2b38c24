"""`QKAtlas(lm, texts)`: the query-key atlas of every head; click a head, then a query.

Controls -> analysis -> plot: the atlas is computed once (`wb.qk_atlas`); the colour dropdown
redraws the all-heads grid (`plots.qk_atlas.atlas_grid`); clicking a head's panel (or
`select_head(layer, head)`) shows it in detail (`head_detail`, every token on hover); clicking a
query point (or `select_query(text_id, position)`) draws that query's attention row — the model's
own weights, from the sentence's `capture_attention` pass — over the key points and opens the
sentence in an `AttentionExplorer` head view at that layer and head. The pass is run once per
sentence (`CaptureCache`) and shared by the row and the views, and the views are one explorer
whose texts are swapped, so a query click runs the model at most once. State lives in the
`selected_head` and `selected_query` traits, so the behaviour is testable without a browser.
"""

from __future__ import annotations

import html

import inspect

import ipywidgets as widgets
import pandas as pd
import plotly.graph_objects as go
import traitlets

from .. import schema as S
from ..analysis.qk_atlas import LABELS, qk_atlas
from ..capture import as_text_list
from ..config import check_int, check_positive_int
from ..errors import InputError
from ..models import LM, check_lm
from ..plots.qk_atlas import atlas_grid, head_detail
from .attention_explorer import AttentionExplorer, CaptureCache, head_view_of
from .common import check_choice, check_options, in_widget, placeholder, replace_figure

_ATLAS_OPTIONS = [p for p in inspect.signature(qk_atlas).parameters if p not in ("lm", "texts")]


class QKAtlas(widgets.VBox):
    """All heads' joint query-key maps; click one for detail, click a query for its attention."""

    selected_head = traitlets.Tuple(allow_none=True, default_value=None)
    selected_query = traitlets.Tuple(allow_none=True, default_value=None)

    def __init__(self, lm: LM, texts, *, atlas=None, color: str = S.KIND, max_points: int = 300,
                 **atlas_options):
        self.lm = check_lm(lm)
        self.texts = as_text_list(texts)
        self.max_points = check_positive_int("max_points", max_points)
        check_options("QKAtlas", atlas_options, _ATLAS_OPTIONS)
        check_choice("color", color, [S.KIND, *LABELS], "QKAtlas")
        if atlas is not None and not isinstance(atlas, pd.DataFrame):
            raise InputError(f"QKAtlas(atlas=...) is a {type(atlas).__name__}: pass the frame "
                             "wb.qk_atlas returned for these texts, or None to compute it")
        self.atlas = atlas if atlas is not None else qk_atlas(lm, self.texts, **atlas_options)
        options = [S.KIND] + [c for c in LABELS if c in self.atlas.columns]
        check_choice("color", color, options, "QKAtlas")          # a label this atlas has
        self.color = widgets.Dropdown(options=options, value=color, description="colour")
        self.status = widgets.HTML("Click a head to open it; then click a query (circle).")
        self.grid = go.FigureWidget(self._grid_figure())
        self._wire_grid()
        self.detail = go.FigureWidget(placeholder("click a head in the grid to see it here",
                                                  height=420))
        self.explorer: AttentionExplorer | None = None
        self._captures = CaptureCache(lm)
        self.explorer_box = widgets.VBox([])
        self.color.observe(self._on_color, names="value")
        super().__init__([self.color, self.grid, self.status, self.detail, self.explorer_box])

    # -- grid ---------------------------------------------------------------------------------
    def _grid_figure(self) -> go.Figure:
        return atlas_grid(self.atlas, color=self.color.value, max_points=self.max_points)

    def _wire_grid(self) -> None:
        for trace in self.grid.data:
            if trace.meta is not None:
                trace.on_click(self._on_grid_click)

    def _on_grid_click(self, trace, points, selector=None) -> None:
        if points.point_inds:
            self.select_head(*trace.meta)

    def _on_color(self, change) -> None:
        fresh = self._grid_figure()
        with self.grid.batch_update():
            for old, new in zip(self.grid.data, fresh.data):
                old.marker = new.marker
                if old.meta is None:
                    old.name = new.name
        if self.selected_head is not None:
            self._draw_detail()

    # -- detail -------------------------------------------------------------------------------
    @in_widget()
    def select_head(self, layer: int, head: int) -> None:
        """Show head (layer, head) in detail; clears the selected query."""
        have = self.atlas[(self.atlas[S.LAYER] == layer) & (self.atlas[S.HEAD] == head)]
        if have.empty:
            self.status.value = f"<b>no head ({layer}, {head})</b> in this atlas"
            return
        self.selected_query = None
        self.selected_head = (int(layer), int(head))
        self._draw_detail()

    @in_widget("running the model on the sentence", figures=("detail",))
    def select_query(self, text_id: int, position: int) -> None:
        """Draw the attention row of query (text_id, position) and open that sentence's head view."""
        if self.selected_head is None:
            self.status.value = "Select a head first."
            return
        text_id, position = check_int("text_id", text_id), check_int("position", position)
        if not (0 <= text_id < len(self.texts)) or position < 0 or position >= len(
                self.lm.tokens(self.texts[text_id])):
            self.status.value = f"<b>no token ({text_id}, {position})</b> in these texts"
            return
        previous, self.selected_query = self.selected_query, (text_id, position)
        try:
            self._draw_detail()        # head_detail refuses a query outside the atlas: shown
        except Exception:
            self.selected_query = previous
            raise
        self.open_head_view()

    def _on_detail_click(self, trace, points, selector=None) -> None:
        if points.point_inds and trace.customdata is not None:
            text_id, position, is_query = trace.customdata[points.point_inds[0]]
            if is_query:
                self.select_query(int(text_id), int(position))

    def attention_row(self):
        """The model's attention of the selected query over its sentence (`wb.attention` rows)."""
        layer, head = self.selected_head
        text_id, position = self.selected_query
        (capture,) = self._captures.get([self.texts[text_id]])
        frame = capture.to_frame(layers=[layer], heads=[head])
        return frame[frame[S.QUERY] == position]

    def _draw_detail(self) -> None:
        layer, head = self.selected_head
        row = self.attention_row() if self.selected_query is not None else None
        fig = head_detail(self.atlas, layer, head, color=self.color.value,
                          query=self.selected_query, weights=row)
        replace_figure(self.detail, fig)
        for trace in self.detail.data:
            if trace.customdata is not None:
                trace.on_click(self._on_detail_click)
        where = f"<b>layer {layer}, head {head}</b>"
        if row is not None:
            top = row.nlargest(1, S.WEIGHT).iloc[0]
            where += (f": query {html.escape(str(row[S.QUERY_TOKEN].iloc[0]))} of text "
                      f"{self.selected_query[0]} attends most to "
                      f"{html.escape(str(top[S.KEY_TOKEN]))} ({top[S.WEIGHT]:.2f})")
        self.status.value = where

    def open_head_view(self) -> AttentionExplorer | None:
        """The selected query's sentence in an `AttentionExplorer` head view at this layer/head."""
        if self.selected_head is None or self.selected_query is None:
            return None
        layer, head = self.selected_head
        texts = [self.texts[self.selected_query[0]]]
        captures = self._captures.get(texts)  # the pass attention_row ran: no model run here
        self.explorer = head_view_of(self.explorer, self.lm, texts, captures, layer=layer, head=head)
        self.explorer_box.children = [self.explorer]
        return self.explorer
