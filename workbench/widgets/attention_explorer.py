"""`AttentionExplorer(lm)`: type texts, pick layer/head/view/mode/options, click tokens, export.

Controls -> analysis -> plot/view. The model runs only when "Run" is pressed (or texts are given
at construction): each text's forward pass is cached as an `AttentionCapture` (weights plus the
value norms norm-based attention needs; q/k vectors on first use of the query/key view), and every
option change re-transforms the cache. Views: a plotly heatmap (`plots.attention`), or our offline
head / model / query-key views drawn by `views/static/attention.js` inside an anywidget; for the
head view only the current layer's data is sent. Modes: the attention modes (`attention_modes.
MODES`) and the context-mixing methods (`context_mixing.METHODS`: value zeroing, ALTI, GlobEnc),
each computed on demand the first time a text is shown in that mode and cached (one traced pass
per text and method); a mixing mode has one "head" per layer, and layer "all" is their rollout. `CaptureCache` keeps each text's pass for the
widgets that open these views on texts they already ran (HeadExplorer, QKAtlas): `show(texts,
captures)` then swaps the texts in without running the model.
"""

from __future__ import annotations

import dataclasses
import html
from pathlib import Path

import anywidget
import ipywidgets as widgets
import plotly.graph_objects as go
import traitlets

from .. import figures
from .. import schema as S
from ..analysis.attention import ALL, AttentionCapture, attention_qk, capture_attention
from ..analysis.attention_modes import FLOW_MAX_TOKENS, MODES
from ..analysis.context_mixing import METHODS, mixing_capture, mixing_rollout
from ..errors import InputError
from ..models import LM, as_lm_dict
from ..plots.attention import attention_heatmap
from ..views.attention import head_payload, model_payload, qk_payload, static_js
from ..views.client_export import ClientExport, export_figure
from .common import busy, check_choice, check_options, in_widget, replace_figure

VIEWS = [("heatmap", "heatmap"), ("head view", "head"), ("model view", "model"),
         ("query/key", "qk")]
EXPORTS = ("png", "svg", "pdf", "html", "csv", "parquet")
PAIR_SEP = "||"  # a line "A || B" is a sentence pair
ALL_MODES = {**MODES, **METHODS}  # attention modes, then the context-mixing methods


class AttentionCanvas(anywidget.AnyWidget):
    """The JS views: `payload` in, token clicks (`selected`) and map clicks (`picked`) out."""

    _esm = static_js("attention.js") + "\n" + static_js("attention_widget.js")
    payload = traitlets.Dict().tag(sync=True)
    selected = traitlets.List(traitlets.Int()).tag(sync=True)
    picked = traitlets.List(traitlets.Int()).tag(sync=True)


class CaptureCache:
    """Each text's attention pass (`capture_attention`, with value norms), run once per text.

    `get(texts)` runs the model only on the texts it has not seen (one batched call) and returns
    one capture per text, numbered 0..n-1 in the order given (the tensors are shared, not copied).
    At most `size` texts are kept, the oldest dropped first. `passes` counts model runs."""

    def __init__(self, lm: LM, size: int = 64):
        self.lm, self.size, self.passes = lm, size, 0
        self._store: dict = {}

    def get(self, texts) -> list[AttentionCapture]:
        items = list(texts)
        missing = [t for t in dict.fromkeys(items) if t not in self._store]
        if missing:
            for item, cap in zip(missing, capture_attention(self.lm, missing, norms=True)):
                self._store[item] = cap
            self.passes += 1
        caps = [dataclasses.replace(self._store[t], text_id=j) for j, t in enumerate(items)]
        for old in list(self._store)[:max(0, len(self._store) - self.size)]:
            del self._store[old]
        return caps


def _join(items) -> str:
    """The text box's lines for `items` (a pair as `A || B`), the inverse of `_parse`."""
    return "\n".join(f"{t[0]} {PAIR_SEP} {t[1]}" if isinstance(t, tuple) else t for t in items)


def _parse(text: str) -> list[str | tuple[str, str]]:
    items = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if PAIR_SEP in line:
            a, b = (p.strip() for p in line.split(PAIR_SEP, 1))
            items.append((a, b))
        else:
            items.append(line.strip())
    return items


class AttentionExplorer(widgets.VBox):
    """Explore attention of `lm` on one or more texts (one per line; `A || B` for a pair)."""

    def __init__(self, lm: LM, texts=None, *, view: str = "heatmap", mode: str = "weights",
                 layer: int = 0, head: int | str = 0,
                 captures: list[AttentionCapture] | None = None, **options):
        """`captures`: the texts' passes already computed (`CaptureCache.get(texts)`): shown
        without running the model. `layer`, `head`: where the views open."""
        check_options("AttentionExplorer", options,
                      ["texts", "view", "mode", "layer", "head", "captures"])
        as_lm_dict(lm)  # InputError naming `lm` for anything but a loaded model
        check_choice("view", view, [v for _, v in VIEWS], "AttentionExplorer")
        check_choice("mode", mode, list(ALL_MODES), "AttentionExplorer")
        if texts is not None and not isinstance(texts, (str, tuple, list)):
            raise InputError(f"AttentionExplorer(texts={texts!r}): pass a text, a list of texts "
                             "or (a, b) pairs")
        self.lm = lm
        self.captures: list[AttentionCapture] = []
        self.forward_count = 0          # model runs so far (option changes must not add any)
        self._qk, self._mixing = {}, {}  # per text: q/k vectors; per (text, method): mixing
        self.figure: go.Figure | None = None
        if isinstance(texts, (str, tuple)):
            texts = [texts]
        initial = _join(texts or ["The quick brown fox jumps over the lazy dog."])
        self._quiet = False             # True while show() sets several controls: one redraw

        layer_opts = [("all (mean)", ALL)] + [(str(i), i) for i in range(lm.num_layers)]
        head_opts = [("all (mean)", ALL)] + [(str(i), i) for i in range(lm.num_heads)]
        self.text = widgets.Textarea(value=initial, description="texts",
                                     placeholder=f"one text per line; A {PAIR_SEP} B for a pair",
                                     layout=widgets.Layout(width="95%", height="70px"))
        self.run_button = widgets.Button(description="Run", button_style="primary",
                                         tooltip="run the model on the texts (cached)")
        self.text_pick = widgets.Dropdown(options=[], description="show")
        self.layer = widgets.Dropdown(options=layer_opts, value=layer, description="layer")
        self.head = widgets.Dropdown(options=head_opts, value=head, description="head")
        self.view = widgets.ToggleButtons(options=VIEWS, value=view, description="view")
        self.mode = widgets.Dropdown(options=[(k, k) for k in ALL_MODES], value=mode,
                                     description="mode")
        self.drop_special = widgets.Checkbox(value=False, description="drop specials + renormalise")
        self.merge = widgets.Checkbox(value=False, description="merge subwords into words")
        self.aggregate_selection = widgets.Checkbox(value=True,
                                                    description="aggregate selected tokens")
        self.selection = widgets.HTML("selected: none (click tokens in the head view)")
        self.clear = widgets.Button(description="clear selection")
        self.export_format = widgets.Dropdown(options=EXPORTS, value="pdf", description="export")
        self.export_path = widgets.Text(value="attention", description="file")
        self.export_button = widgets.Button(
            description="Export", tooltip="pdf needs a Chrome/Chromium beside the kernel; svg and "
            "png fall back to rendering in your browser")
        self.client_export = ClientExport()
        self.status = widgets.HTML()
        self.canvas = AttentionCanvas()
        self.figure_widget = go.FigureWidget()
        self.selected: list[int] = []   # unit indices (tokens, or words with merge), as in frame()
        self._clicked_token: int | None = None  # the query/key view's last clicked token
        self._syncing = False

        self.run_button.on_click(lambda _: self.run())
        self.clear.on_click(lambda _: self._set_selection([]))
        self.export_button.on_click(lambda _: self._export_clicked())
        for w in (self.text_pick, self.layer, self.head, self.view, self.mode,
                  self.aggregate_selection):
            w.observe(lambda _: self.refresh(), names="value")
        for w in (self.drop_special, self.merge):   # units change: old selection is meaningless
            w.observe(lambda _: self._set_selection([]), names="value")
        self.canvas.observe(self._on_canvas_select, names="selected")
        self.canvas.observe(self._on_pick, names="picked")
        super().__init__([
            widgets.HBox([self.text, self.run_button]),
            widgets.HBox([self.text_pick, self.view]),
            widgets.HBox([self.layer, self.head, self.mode]),
            widgets.HBox([self.drop_special, self.merge, self.aggregate_selection]),
            widgets.HBox([self.selection, self.clear]),
            self.canvas, self.figure_widget,
            widgets.HBox([self.export_format, self.export_path, self.export_button,
                          self.client_export]),
            self.status,
        ])
        if captures is None:
            self.run()
        else:
            self.show(_parse(initial), captures)

    # -- model ---------------------------------------------------------------------------
    @in_widget("running the model on the texts", figures=("figure_widget",))
    def run(self) -> None:
        """Run the model on the texts in the box (the only place the model runs, besides q/k)."""
        items = _parse(self.text.value)
        if not items:
            self.status.value = "Type at least one text."
            return
        self.captures = capture_attention(self.lm, items, norms=True)
        self.forward_count += 1
        self._install(items)
        self.refresh()

    def show(self, texts, captures: list[AttentionCapture], *, layer: int | str | None = None,
             head: int | str | None = None) -> None:
        """Show `texts` from their computed `captures` (one per text, in order, with value norms:
        `CaptureCache.get(texts)`) at `layer`/`head`, redrawn once; the model does not run."""
        items = [t if isinstance(t, str) else tuple(t) for t in texts]
        if len(captures) != len(items):
            raise InputError(f"show: {len(items)} texts but {len(captures)} captures")
        self._quiet = True
        try:
            self.text.value = _join(items)
            self.captures = list(captures)
            self._install(items)
            if layer is not None:
                self.layer.value = layer
            if head is not None:
                self.head.value = head
        finally:
            self._quiet = False
        self.refresh()

    def _install(self, items) -> None:
        """New texts' captures are in `self.captures`: reset the text picker and the selection."""
        self._qk, self._mixing = {}, {}
        labels = [(f"{i}: {(t if isinstance(t, str) else ' / '.join(t))[:40]}", i)
                  for i, t in enumerate(items)]
        self.selected = []
        with self.hold_trait_notifications():
            self.text_pick.options = labels
            self.text_pick.value = 0

    @property
    def capture(self) -> AttentionCapture:
        return self.captures[self.text_pick.value or 0]

    @property
    def mixing(self) -> bool:
        """Whether the mode is a context-mixing method (drawn from `shown`, not `capture`)."""
        return self.mode.value in METHODS

    @property
    def shown(self) -> AttentionCapture:
        """What the views draw: the text's attention capture, or in a mixing mode its mixing
        matrices (computed on first use per text and method; the rollout when layer is "all")."""
        if not self.mixing:
            return self.capture
        cap, method = self.capture, self.mode.value
        if (cap.text_id, method) not in self._mixing:
            item = _parse(self.text.value)[cap.text_id]
            if not isinstance(item, str):
                raise InputError(f"mode {method!r} takes single texts, not a sentence pair: "
                                 "pick another text or an attention mode")
            with busy(self.status, f"computing {method} for this text"):
                per_layer = mixing_capture(self.lm, item, method, text_id=cap.text_id)
            self.forward_count += 1  # one traced pass per text and method, then cached
            self._mixing[(cap.text_id, method)] = (per_layer, mixing_rollout(per_layer))
        per_layer, rollout = self._mixing[(cap.text_id, method)]
        return rollout if self.layer.value == ALL else per_layer

    # -- options -> numbers ----------------------------------------------------------------
    def options(self, *, for_frame: bool = True) -> dict:
        """The analysis options the controls describe (as passed to `wb.attention`)."""
        agg = []
        layer, head = self.layer.value, self.head.value
        if layer == ALL:
            agg.append("layers")
        if head == ALL:
            agg.append("heads")
        select = None
        if for_frame and self.selected:
            select = self.selected
            if self.aggregate_selection.value:
                agg.append("queries")
        if self.mixing:  # one "head" per layer; layer "all" is the rollout capture's one layer
            return dict(mode="weights", layers=None if layer == ALL else [layer], heads=None,
                        drop_special=self.drop_special.value, merge_subwords=self.merge.value,
                        select=select, aggregate=[a for a in agg if a == "queries"] or None)
        return dict(mode=self.mode.value, layers=None if layer == ALL else [layer],
                    heads=None if head == ALL else [head], drop_special=self.drop_special.value,
                    merge_subwords=self.merge.value, select=select, aggregate=agg or None)

    def frame(self):
        """The tidy DataFrame behind the current heatmap (same columns as `wb.attention`)."""
        df = self.shown.to_frame(**self.options())
        if self.mixing:  # as `wb.context_mixing`: head -1, and layer -1 for the rollout
            df[S.HEAD] = ALL
            if self.layer.value == ALL:
                df[S.LAYER] = ALL
        return df

    # -- refresh -----------------------------------------------------------------------------
    @in_widget()
    def refresh(self) -> None:
        if not self.captures or self._quiet:
            return
        self._refresh_figure()
        self._refresh_view()
        self.status.value = self._describe()

    def _describe(self) -> str:
        n = len(self.capture.view)
        note = f" (flow needs ≤ {FLOW_MAX_TOKENS} tokens)" if self.mode.value == "flow" else ""
        if self.view.value == "qk":  # the vectors themselves: the attention options do not apply
            return html.escape(f"{n} tokens; query/key view: the raw query and key vectors of one "
                               "head (mode, drop specials and merge subwords do not apply); "
                               f"model runs: {self.forward_count}")
        return html.escape(f"{n} tokens; mode {self.mode.value}: {ALL_MODES[self.mode.value]}{note}; "
                           f"model runs: {self.forward_count}")

    def _refresh_figure(self) -> None:
        fig = attention_heatmap(self.frame())
        self.figure = fig
        replace_figure(self.figure_widget, fig)
        self.figure_widget.layout.height = max(360, 18 * min(len(fig.data[0].y), 64) + 200)

    def _refresh_view(self) -> None:
        kind = self.view.value
        if kind == "heatmap":
            self.canvas.payload = {}
            return
        cap = self.capture
        layer, head = self.layer.value, self.head.value
        common = dict(mode="weights" if self.mixing else self.mode.value,
                      drop_special=self.drop_special.value, merge_subwords=self.merge.value)
        if kind == "head":
            x, u = self.shown.transform(layers=None if layer == ALL else [layer],
                                        aggregate="layers" if layer == ALL else None, **common)
            payload = head_payload(x.numpy(), u.labels, segments=u.segments, layer=u.layers[0],
                                   layers=u.layers, heads=None if head == ALL or u.heads == [ALL]
                                   or self.mixing else [u.heads.index(head)])
        elif kind == "model":
            x, u = self.shown.transform(**common)
            payload = model_payload(x.numpy(), u.labels)
        else:
            if cap.text_id not in self._qk:
                a, b = cap.view.text, None
                pair_parts = _parse(self.text.value)[cap.text_id]
                if isinstance(pair_parts, tuple):
                    a, b = pair_parts
                with busy(self.status, "computing this text's queries and keys"):
                    self._qk[cap.text_id] = attention_qk(self.lm, a, pair=b)
                self.forward_count += 1  # one pass per text for its queries and keys, then cached
            qk = self._qk[cap.text_id]
            lq, hq = max(layer, 0), max(head, 0)
            payload = qk_payload(qk["queries"].numpy(), qk["keys"].numpy(), cap.view.display,
                                 layer=lq, head=hq)
        self._push_selection()
        self.canvas.payload = payload

    # -- interaction -------------------------------------------------------------------------
    # `selected` holds unit indices (what frame() and the head/model views index). The query/key
    # view lists every token, so its clicks are token positions: mapped to the unit that holds
    # the token on the way in, and from a unit to its token (the clicked one) on the way out.
    def _unit_positions(self) -> list[list[int]]:
        return self.capture.unit_positions(drop_special=self.drop_special.value,
                                           merge_subwords=self.merge.value)

    def _push_selection(self) -> None:
        """Show `selected` in the JS view, in the coordinates its tokens use."""
        shown = list(self.selected)
        if self.view.value == "qk" and self.captures:
            units = self._unit_positions()
            shown = [self._clicked_token if self._clicked_token in units[u] else units[u][0]
                     for u in self.selected if u < len(units)]
        self._syncing = True
        try:
            self.canvas.selected = shown
        finally:
            self._syncing = False

    @in_widget()
    def _on_canvas_select(self, change) -> None:
        if self._syncing:
            return
        clicked = [int(p) for p in change["new"]]
        if self.view.value != "qk":
            self._set_selection(clicked, echo=False)
            return
        owner = {p: u for u, ps in enumerate(self._unit_positions()) for p in ps}
        units = [owner[p] for p in clicked if p in owner]
        if clicked and not units:  # a special token while "drop specials" is on
            self.status.value = html.escape(
                f"{self.capture.view.tokens[clicked[0]]} is dropped (drop specials is on): "
                "pick another token, or untick drop specials")
            return
        self._clicked_token = clicked[0] if clicked else None
        self._set_selection(units, echo=False)

    def _set_selection(self, positions: list[int], echo: bool = True) -> None:
        self.selected = sorted(set(int(p) for p in positions))
        if echo:
            self._push_selection()
        if self.captures and self.selected:
            x, u = self.capture.transform(drop_special=self.drop_special.value,
                                          merge_subwords=self.merge.value, layers=[0], heads=[0])
            names = ", ".join(u.labels[p] for p in self.selected if p < len(u.labels))
            self.selection.value = "selected: " + html.escape(names)
        else:
            self.selection.value = "selected: none (click tokens in the head view)"
        self.refresh()

    @in_widget()
    def _on_pick(self, change) -> None:
        if len(change["new"]) == 2:
            layer, head = change["new"]
            with self.hold_trait_notifications():
                self.layer.value = layer
                if head in range(self.lm.num_heads):
                    self.head.value = head
            self.view.value = "head"

    # -- export ------------------------------------------------------------------------------
    def export(self, path: str | Path, fmt: str | None = None) -> Path:
        """Write the current figure (png/svg/pdf/html, paper theme) or frame (csv/parquet)."""
        path = Path(path)
        fmt = (fmt or path.suffix.lstrip(".")).lower()
        if fmt not in EXPORTS:
            raise InputError(f"cannot export as {fmt!r}: use one of {EXPORTS}")
        if path.suffix.lower() != "." + fmt:
            path = path.with_name(path.name + "." + fmt)
        if fmt == "csv":
            self.frame().to_csv(path, index=False)
        elif fmt == "parquet":
            self.frame().to_parquet(path, index=False)
        else:
            figures.export(self.figure, path, width="column", aspect=1.0)
        return path

    @in_widget()
    def _export_clicked(self) -> None:
        fmt = self.export_format.value
        if fmt in ("csv", "parquet"):
            path = self.export(self.export_path.value, fmt)
            self.status.value = f"wrote {html.escape(str(path))}"
            return
        path = Path(self.export_path.value)
        if path.suffix.lower() != "." + fmt:
            path = path.with_name(path.name + "." + fmt)
        export_figure(self.client_export, self.figure, path,
                      lambda text: setattr(self.status, "value", html.escape(text)),
                      width="column", aspect=1.0)


def head_view_of(explorer: "AttentionExplorer | None", lm, texts, captures, *, layer: int,
                 head: int) -> "AttentionExplorer":
    """`explorer` showing `texts` in its head view at `layer`/`head`: made on first use, later
    calls only swap the texts and their cached passes in (the model does not run again)."""
    if explorer is None:
        return AttentionExplorer(lm, texts, view="head", layer=layer, head=head, captures=captures)
    explorer.show(texts, captures, layer=layer, head=head)
    return explorer
