"""`make_report(lm, out_dir, runs=None)`: every figure of a paper-style report, in one call.

Calls the analyses on one model (and on saved training runs), draws each result with its
`workbench.plots` function and writes every figure through `figures.export` in the paper theme as
vector PDF and SVG (sized for one column by default). Beside the figures it writes
`figures.json`, the provenance of each (the call that made it, the model's name and path, the run
id, the number and SHA-256 of the input texts, the workbench version, the date), and `SOURCES.md`,
the same as text to paste in a paper's appendix or a figure caption.

Not in a layer: like the notebooks, it uses the public analyses and plots together.
"""

from __future__ import annotations

import hashlib
import html
import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from .errors import InputError, MissingHeadError
from .figures import skipped_exports, skipped_summary

EXAMPLE_TEXT = "The keys to the cabinet are on the table."
EXAMPLE_MASK = "The capital of France is <mask>."


@dataclass
class FigureSpec:
    """One figure of the report: how to make it and where it came from."""

    name: str
    caption: str
    make: Callable[[], object]           # () -> plotly figure
    source: dict = field(default_factory=dict)


def texts_digest(texts: list[str]) -> str:
    """SHA-256 of the texts joined by newlines: names an input set in a figure's provenance."""
    return hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest()


def _model_source(lm) -> dict:
    return {"model": lm.name, "model_path": lm.path, "model_kind": lm.kind,
            "layers": lm.num_layers, "heads": lm.num_heads}


def _model_specs(lm, texts: list[str]) -> list[FigureSpec]:
    """Figures of one model: attention, heads, masked-token probing, representations."""
    from . import schema as S
    from .analysis.ablation import head_importance
    from .analysis.attention import attention
    from .analysis.head_clusters import head_clusters
    from .analysis.heads import head_stats
    from .analysis.similarity import similarity
    from .plots.attention import attention_heatmap
    from .plots.heads import cluster_map, head_heatmap, importance_bars
    from .plots.representations import cka_heatmap

    corpus = {"n_texts": len(texts), "texts_sha256": texts_digest(texts)}
    base = _model_source(lm)
    cache: dict = {}

    def stats():
        if "stats" not in cache:
            cache["stats"] = head_stats(lm, texts, progress=False)
        return cache["stats"]

    last = lm.num_layers - 1
    specs = [
        FigureSpec("attention_example", f"Attention of layer {last}, head 0 on an example "
                   "sentence (rows: queries, each sums to 1).",
                   lambda: attention_heatmap(attention(lm, [EXAMPLE_TEXT]), layer=last, head=0),
                   {**base, "call": f"wb.attention(lm, [{EXAMPLE_TEXT!r}])"}),
    ]
    for stat, label in ((S.ATTN_BOS, "attention to <s>"), (S.ATTN_PREV, "attention to the "
                        "previous token"), (S.ENTROPY, "attention entropy (nats)")):
        specs.append(FigureSpec(
            f"heads_{stat}", f"Mean {label} of every head (layer × head): the mean over each "
            "text's tokens, then over the texts (Clark et al. 2019).",
            lambda stat=stat: head_heatmap(stats(), stat),
            {**base, **corpus, "call": "wb.head_stats(lm, texts)"}))
    specs += [
        FigureSpec("head_clusters", "Heads mapped by the Jensen–Shannon distance between their "
                   "attention (MDS), coloured by pattern (Kovaleva et al. 2019).",
                   lambda: cluster_map(head_clusters(lm, texts, progress=False)),
                   {**base, **corpus, "call": "wb.head_clusters(lm, texts)"}),
        FigureSpec("cka_layers", "Linear CKA between the layers' token representations "
                   "(Kornblith et al. 2019).",
                   lambda: cka_heatmap(similarity(lm, None, texts, progress=False)),
                   {**base, **corpus, "call": "wb.similarity(lm, None, texts)"}),
    ]
    if lm.has_mlm_head:
        from .analysis.fill_mask import fill_mask
        from .analysis.logit_lens import logit_lens
        from .analysis.probes import compare_pairs, load_probe_set, probe
        from .plots.probing import logit_lens_heatmap, margin_histogram, probe_bars, topk_bars

        specs += [
            FigureSpec("heads_importance", "The most important heads for the masked-LM loss "
                       "(Michel et al. 2019: mean over texts of |dL(text)/dgate|).",
                       lambda: importance_bars(head_importance(lm, texts, progress=False)),
                       {**base, **corpus, "call": "wb.head_importance(lm, texts)"}),
            FigureSpec("fill_mask_example", f"Top predictions for {EXAMPLE_MASK!r}.",
                       lambda: topk_bars(fill_mask(lm, EXAMPLE_MASK, top_k=10)),
                       {**base, "call": f"wb.fill_mask(lm, {EXAMPLE_MASK!r}, top_k=10)"}),
            FigureSpec("logit_lens", "The masked position's top predictions read out after "
                       "every layer through the model's own LM head.",
                       lambda: logit_lens_heatmap(logit_lens(lm, EXAMPLE_MASK)),
                       {**base, "call": f"wb.logit_lens(lm, {EXAMPLE_MASK!r})"}),
            FigureSpec("probe_set", "Cloze probes of the shipped probe set: precision at 1 per "
                       "relation (LAMA-style).",
                       lambda: probe_bars(probe(lm, load_probe_set())),
                       {**base, "call": "wb.probe(lm, wb.load_probe_set())",
                        "data": "data/probes/probe_set.jsonl (CC0, written for this project)"}),
            FigureSpec("pair_margins", "PLL margins of the probe set's minimal pairs "
                       "(positive: the good sentence scores higher).",
                       lambda: margin_histogram(compare_pairs(
                           lm, load_probe_set(as_pairs=True))),
                       {**base, "call": "wb.compare_pairs(lm, wb.load_probe_set(as_pairs=True))",
                        "data": "data/probes/probe_set.jsonl"}),
        ]
    return specs


def _run_specs(lm, runs: list, texts: list[str], eval_data) -> list[FigureSpec]:
    """Figures of saved runs: curves, attention change against `lm`, confusion matrices."""
    from .analysis.compare_models import compare_models
    from .models import load
    from .plots.compare_models import diff_overview
    from .plots.training import compare_runs, confusion_heatmap
    from .training.predict import evaluate_classifier

    specs = []
    corpus = {"n_texts": len(texts[:100]), "texts_sha256": texts_digest(texts[:100])}
    for run in runs:
        src = {"run_id": run.id, "run_name": run.name, "run_kind": run.kind,
               "run_path": str(run.path), "run_status": run.status}
        slug = _slug(run.id)  # ids are unique; two runs named alike must not share files
        specs.append(FigureSpec(f"run_{slug}_curves", f"Training curves of run {run.name} "
                                f"({run.kind}).", lambda run=run: _curves(run),
                                {**src, "call": "plots.training.training_curves(run.metrics())"}))
        if run.kind != "finetune":
            continue

        def changed(run=run):
            diff = compare_models(lm, load(run), texts[:100], syntax=False, progress=False)
            return diff_overview(diff, title=f"{lm.name} vs run {run.name}")

        specs.append(FigureSpec(f"run_{slug}_model_diff", "What fine-tuning changed, by layer: "
                                f"per-head attention Jensen–Shannon distance between {lm.name} and "
                                f"run {run.name} (Kovaleva et al. 2019), same-layer linear CKA "
                                "(Kornblith et al. 2019), and the heads whose importance or role "
                                "changed (wb.compare_models).", changed,
                                {**src, **_model_source(lm), **corpus,
                                 "call": "wb.compare_models(lm, wb.load(run), texts[:100])"}))
        if eval_data is not None:
            def confusion(run=run):
                _, matrix = evaluate_classifier(load(run), eval_data)
                return confusion_heatmap(matrix)

            specs.append(FigureSpec(f"run_{slug}_confusion", f"Confusion matrix of run "
                                    f"{run.name} on the evaluation table.", confusion,
                                    {**src, "n_eval": len(eval_data),
                                     "call": "wb.evaluate_classifier(wb.load(run), eval_data)"}))
    for kind in sorted({r.kind for r in runs}):
        same = [r for r in runs if r.kind == kind]
        if len(same) > 1:
            specs.append(FigureSpec(
                f"runs_{kind}_eval_loss", f"Validation loss of the {kind} runs.",
                lambda same=same: compare_runs({_run_label(r): r.metrics() for r in same},
                                               "eval_loss"),
                {"run_ids": [r.id for r in same], "call": "wb.plots.training.compare_runs"}))
    return specs


def _run_label(run) -> str:
    """A legend label that stays unique when runs share a name: 'name (id)'."""
    return f"{run.name} ({run.id})" if run.name and run.name != run.id else run.id


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in str(text)).strip("_")[:40] or "run"


def _open_runs(runs) -> list:
    """Run handles for `runs`: None = every run in the store; else ids, names, paths or Runs."""
    from .store import runs as list_runs
    from .training.run import Run

    if runs is None:
        table = list_runs()
        if len(table):  # a broken folder is listed with its reason by wb.runs(), not reported on
            broken = table[table["status"] == "broken"]
            for _, row in broken.iterrows():
                print(f"    run {row['path']} skipped: broken ({row['reason']})", flush=True)
            table = table[table["status"] != "broken"]
        runs = table["path"].tolist() if len(table) else []
    elif isinstance(runs, (str, Path)) or not isinstance(runs, (list, tuple)):
        raise InputError(f"runs={runs!r}: pass None (every run in the store), [] or a list of run "
                         "ids, names, paths or Runs")
    opened = [Run.open(r) for r in runs]
    for run in opened:        # a run asked for by name is refused, not drawn as an empty figure
        if run.status == "broken":
            raise InputError(f"runs: run {run.id} is broken ({run.reason}; {run.path}): repair "
                             "it or leave it out of runs= (runs=None skips broken runs)")
    return opened


def _curves(run):
    """The run's training curves; an error (noted in the report) when it has no metrics."""
    from .plots.training import training_curves

    metrics = run.metrics()
    if metrics.empty:
        raise InputError(f"run {run.name} ({run.id}, status {run.status}) has no metrics yet: "
                         "nothing to draw")
    return training_curves(metrics)


def make_report(lm, out_dir: str | Path, runs=None, *, texts: list[str] | None = None,
                n_texts: int = 200, eval_data: pd.DataFrame | None = None,
                formats: tuple[str, ...] = ("pdf", "svg"), width: str | float = "column",
                progress: bool = True, strict: bool = False) -> pd.DataFrame:
    """Regenerate every figure of a report for `lm` (an LM or a name) and saved `runs`.

    runs: None for every run in the store (`wb.runs()`), [] for none, or run ids / paths / Runs.
    texts: the corpus for head statistics, clusters, CKA, importance (default: `n_texts`
    sentences of the offline sentiment table). eval_data: a labelled table for the fine-tuned
    runs' confusion matrices. formats/width: as in `wb.figures.export`.
    strict: raise on the first figure that fails; by default a failing figure is reported in
    the returned frame's `note` column (and printed) and the others are still made. A figure
    needing a head the model lacks (MissingHeadError) is always noted, never raised.
    Returns one row per figure (figure, caption, files, seconds, note) and writes `figures.json`
    and `SOURCES.md` (the provenance of each figure made) into `out_dir`.
    """
    from . import __version__
    from .capture import as_text_list
    from .config import check_bool, check_finite, check_positive_int
    from .figures import STATIC_FORMATS, size_px
    from .models import check_lm, load

    # every argument checked before anything is loaded or written
    n_texts = check_positive_int("n_texts", n_texts)
    if isinstance(formats, str) or not formats or any(
            f not in STATIC_FORMATS + ("html",) for f in formats):
        raise InputError(f"formats={formats!r}: pass a tuple of 'pdf', 'svg', 'png' or 'html'")
    if isinstance(width, str):
        size_px(width)
    else:           # NaN, inf, a bool: refused here, not deep in the exporter
        check_finite("width", width, low=0, high=100, low_open=True)
    check_bool("progress", progress)
    check_bool("strict", strict)
    if eval_data is not None and not isinstance(eval_data, pd.DataFrame):
        raise InputError(f"eval_data is a {type(eval_data).__name__}: pass a labelled DataFrame "
                         "(text, label) or None")
    if isinstance(out_dir, bool) or not isinstance(out_dir, (str, Path)) or not str(out_dir).strip():
        raise InputError(f"out_dir={out_dir!r}: pass a folder path")
    lm = load(lm) if isinstance(lm, (str, Path)) else check_lm(lm)
    if texts is None:
        from .training.demo_data import sentiment_demo

        texts = sentiment_demo(n=n_texts)["text"].tolist()
    texts = as_text_list(texts)
    run_list = _open_runs(runs)                  # a broken run is refused before anything is written
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    specs = _model_specs(lm, texts) + _run_specs(lm, run_list, texts, eval_data)

    rows, manifest = [], []
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    skipped_before = len(skipped_exports())
    for i, spec in enumerate(specs, 1):
        _make_one(spec, i, len(specs), out, formats, width, strict, progress, rows, manifest,
                  stamp=stamp, version=__version__)
    (out / "figures.json").write_text(json.dumps(manifest, indent=2, default=str))
    (out / "SOURCES.md").write_text(_sources_text(manifest))
    summary = skipped_summary(skipped_exports()[skipped_before:])
    if summary:
        print(summary, flush=True)
    return pd.DataFrame(rows)


def _make_one(spec: FigureSpec, i: int, n: int, out: Path, formats, width, strict: bool,
              progress: bool, rows: list, manifest: list, *, stamp: str, version: str) -> None:
    """Make and export one figure; append its row, and its provenance when it was made."""
    from .figures import export

    start = time.perf_counter()
    if progress:
        print(f"[{i}/{n}] {spec.name}", flush=True)
    try:
        fig = spec.make()
        # without a browser each static format falls back to the same .html: list it once
        with warnings.catch_warnings():  # make_report ends with one summary line instead
            warnings.filterwarnings("ignore", message="no browser for static export")
            files = list(dict.fromkeys(str(export(fig, out / f"{spec.name}.{fmt}", width=width,
                                                  fallback="html")) for fmt in formats))
    except Exception as err:  # noqa: BLE001 - one broken figure must not lose the others
        if strict and not isinstance(err, MissingHeadError):
            raise
        note = f"{type(err).__name__}: {str(err)[:300]}"
        print(f"    figure {spec.name} not made: {note}", flush=True)
        rows.append({"figure": spec.name, "caption": spec.caption, "files": [],
                     "seconds": round(time.perf_counter() - start, 2), "note": note})
        return
    rows.append({"figure": spec.name, "caption": spec.caption, "files": files,
                 "seconds": round(time.perf_counter() - start, 2), "note": ""})
    wanted = [f"{spec.name}.{fmt}" for fmt in formats]
    made = [Path(f).name for f in files]
    manifest.append({"figure": spec.name, "caption": spec.caption, "files": made,
                     "skipped_static": [name for name in wanted if name not in made],
                     "source": {**spec.source, "workbench": version, "created": stamp}})


def _md(value) -> str:
    """User text made inert in Markdown: HTML escaped, no backticks to break out of code spans."""
    return html.escape(str(value)).replace("`", "'")


def _sources_text(manifest: list[dict]) -> str:
    lines = ["# Sources of the figures", "",
             "Each figure was made by the RoBERTa Workbench from the call and inputs below.", ""]
    for item in manifest:
        src = item["source"]
        lines.append(f"## {_md(item['figure'])}")
        lines.append(f"{_md(item['caption'])}  ")
        lines.append(f"Files: {_md(', '.join(item['files']))}  ")
        if item.get("skipped_static"):
            lines.append(f"Not written (no browser for static export): "
                         f"{_md(', '.join(item['skipped_static']))}  ")
        for key in sorted(src):
            lines.append(f"- {_md(key)}: `{_md(src[key])}`")
        lines.append("")
    return "\n".join(lines)
