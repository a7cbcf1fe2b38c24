"""`MaskProbe(lm_or_dict)`: type a sentence with `<mask>`, see every model's top-k side by side.

Controls -> analysis -> plot: the text box (a button appends a `<mask>`; another replaces a chosen
word by one), top-k and the candidates field feed `wb.fill_mask` and `wb.score_candidates`, whose
frames are drawn by `plots.probing.topk_bars` (one column of panels per model, one row per mask)
and `plots.probing.candidate_bars`. Bad input (no mask, a candidate with the wrong number of
fillers) shows its message in red right under the text box and clears every output (top-k,
candidates, "why this answer?"), so no chart keeps showing the previous sentence. `export()` writes the figures
through `figures.export`. A collapsed "why this answer?" section (`ExplainPanel`) shows which
input tokens drove the first model's prediction at the first mask, once opened.

ipywidgets' Textarea does not expose the cursor, so `<mask>` is appended at the end, or put in
place of a word picked from the list.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import ipywidgets as widgets
import plotly.graph_objects as go

from ..analysis.candidates import METHODS, score_candidates, split_candidates
from ..analysis.fill_mask import fill_mask
from ..errors import InputError, WorkbenchError
from ..figures import export
from ..views.client_export import ClientExport, export_figure
from ..models import as_lm_dict
from ..plots.probing import candidate_bars, topk_bars
from .attribution_panel import ExplainPanel
from .common import (check_choice, check_options, error_html, in_widget, placeholder,
                     replace_figure)

WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")


class MaskProbe(widgets.VBox):
    """Fill-mask explorer for one model or several side by side, with candidate scoring."""

    def __init__(self, lm_or_dict, text: str = "The capital of France is <mask>.", *,
                 top_k: int = 5, candidates: str = "", method: str = "chain", **options):
        check_options("MaskProbe", options, ["text", "top_k", "candidates", "method"])
        self.lms = as_lm_dict(lm_or_dict)
        check_choice("top_k", top_k, range(1, 21), "MaskProbe")
        check_choice("method", method, list(METHODS), "MaskProbe")
        for lm in self.lms.values():
            lm.require_mlm_head("MaskProbe")
        self.predictions = None      # last wb.fill_mask frame
        self.scores = None           # last wb.score_candidates frame (None without candidates)

        self.text = widgets.Textarea(value=text, description="text", continuous_update=False,
                                     layout=widgets.Layout(width="60%"))
        self.insert_button = widgets.Button(description="insert <mask>",
                                            tooltip="append a <mask> at the end of the text")
        self.word = widgets.Dropdown(description="word", options=[])
        self.mask_word_button = widgets.Button(description="mask this word")
        self.top_k = widgets.IntSlider(value=top_k, min=1, max=20, description="top-k")
        self.candidates = widgets.Text(value=candidates, description="candidates",
                                       placeholder="pizza, pasta   (two masks: New|York, Los|Angeles)",
                                       continuous_update=False, layout=widgets.Layout(width="60%"))
        self.method = widgets.Dropdown(options=list(METHODS), value=method, description="method")
        self.status = widgets.HTML()
        self.error = widgets.HTML()    # input errors, right under the text box
        self.topk_figure = go.FigureWidget()
        self.candidate_figure = go.FigureWidget()
        self.candidate_box = widgets.VBox([])   # holds the candidate figure when there is one
        self.export_path = widgets.Text(value="mask_probe.pdf", description="file")
        self.export_button = widgets.Button(
            description="export", tooltip=".pdf needs a Chrome/Chromium beside the kernel; .svg "
            "and .png fall back to rendering in your browser")
        self.client_export = ClientExport()
        first = next(iter(self.lms))
        self.explain = ExplainPanel(f"why this answer? attributions of {first}'s prediction at the "
                                    "first mask", lm=self.lms[first], text=text)

        self.insert_button.on_click(lambda _: self.insert_mask())
        self.mask_word_button.on_click(lambda _: self.mask_word())
        self.export_button.on_click(lambda _: self._export_clicked())
        self.text.observe(lambda _: self.refresh(), names="value")
        self.top_k.observe(lambda _: self.refresh(), names="value")
        self.candidates.observe(lambda _: self.refresh(), names="value")
        self.method.observe(lambda _: self.refresh(), names="value")
        super().__init__([
            widgets.HBox([self.text, widgets.VBox([self.insert_button, self.top_k])]),
            self.error,
            widgets.HBox([self.word, self.mask_word_button]),
            widgets.HBox([self.candidates, self.method]),
            self.status, self.topk_figure, self.candidate_box,
            widgets.HBox([self.export_path, self.export_button, self.client_export]),
            self.explain,
        ])
        self.refresh()

    # -- text editing ------------------------------------------------------------------------
    def insert_mask(self) -> None:
        """Append a `<mask>` to the text (with a space before it when needed)."""
        text = self.text.value.rstrip()
        self.text.value = f"{text} <mask>" if text else "<mask>"

    def mask_word(self, index: int | None = None) -> None:
        """Replace word number `index` (default: the one picked in the list) by `<mask>`."""
        index = self.word.value if index is None else index
        spans = [m.span() for m in WORD.finditer(self.text.value)]
        if index is None or not 0 <= index < len(spans):
            self.status.value = "<b>pick a word to mask</b>"
            return
        a, b = spans[index]
        self.text.value = self.text.value[:a] + "<mask>" + self.text.value[b:]

    def _update_words(self) -> None:
        """Offer the text's words (numbered as `mask_word` counts them; masks left out)."""
        self.word.options = [(f"{m.group()} ({i})", i)
                             for i, m in enumerate(WORD.finditer(self.text.value))
                             if m.group().lower() != "mask"]

    # -- analysis -> plots -------------------------------------------------------------------
    @in_widget("predicting the masks", figures=("topk_figure", "candidate_figure"))
    def refresh(self) -> None:
        """Recompute predictions (and candidate scores) for the current controls and redraw."""
        self._update_words()
        try:
            self.predictions = fill_mask(self.lms, self.text.value, top_k=self.top_k.value)
            cands = split_candidates(self.candidates.value)
            self.scores = (score_candidates(self.lms, self.text.value, cands,
                                            method=self.method.value) if cands else None)
        except WorkbenchError as err:
            self._clear_outputs(err)
            return
        self.error.value = ""
        replace_figure(self.topk_figure, topk_bars(self.predictions))
        if self.scores is not None:
            replace_figure(self.candidate_figure, candidate_bars(self.scores))
        self.explain.set_source(text=self.text.value)
        self.candidate_box.children = [self.candidate_figure] if self.scores is not None else []
        n_masks = self.predictions["mask_index"].nunique()
        self.status.value = html.escape(
            f"{n_masks} mask(s), {len(self.lms)} model(s); masks are predicted independently, "
            "candidates are scored jointly" + (f" ({self.method.value})" if self.scores is not None
                                               else ""))

    def _clear_outputs(self, err: Exception) -> None:
        """Bad input: no output may keep showing the previous sentence's answer."""
        self.predictions = self.scores = None
        self.error.value = error_html(err)
        self.status.value = ""
        replace_figure(self.topk_figure, placeholder("no prediction: fix the input above"))
        self.candidate_box.children = []
        self.explain.clear("no prediction to explain: fix the input above")

    # -- export ------------------------------------------------------------------------------
    def export(self, path: str | Path | None = None, **kwargs) -> list[Path]:
        """Write the top-k figure (and the candidate figure as `<name>_candidates<ext>`)."""
        path = Path(path or self.export_path.value)
        if self.predictions is None:
            raise InputError("nothing to export: the text has no prediction (see the message)")
        out = [export(self.topk_figure, path, **kwargs)]
        if self.scores is not None:
            out.append(export(self.candidate_figure,
                              path.with_name(f"{path.stem}_candidates{path.suffix}"), **kwargs))
        return out

    @in_widget()
    def _export_clicked(self) -> None:
        path = Path(self.export_path.value)
        figs = [(self.topk_figure, path)]
        if self.scores is not None:
            figs.append((self.candidate_figure,
                         path.with_name(f"{path.stem}_candidates{path.suffix}")))
        lines: dict[int, str] = {}

        def report(i: int, text: str) -> None:
            lines[i] = text
            self.status.value = "<br>".join(html.escape(lines[k]) for k in sorted(lines))

        try:
            if self.predictions is None:
                raise InputError("nothing to export: the text has no prediction (see the message)")
            for i, (fig, target) in enumerate(figs):
                export_figure(self.client_export, fig, target, lambda text, i=i: report(i, text))
        except WorkbenchError as err:
            self.status.value = f"<b>{html.escape(str(err))}</b>"
