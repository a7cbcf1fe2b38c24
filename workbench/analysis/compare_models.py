"""One call, every difference: `compare_models(lm_a, lm_b, texts)` -> a `ModelDiff` of tidy frames.

For two checkpoints that share a tokenizer and a (layers, heads) shape (a model and its
fine-tuned run, two runs, two pretraining checkpoints), on the same texts:

- `heads`: per (layer, head) the attention change of `compare_attention` (Jensen-Shannon
  distance, cosine), head importance in each model (`head_importance`, gradient method, masked-LM
  loss; both models need an MLM head) and its change, and the role of the head in each model
  (`head_roles`) with `role_changed`;
- `layers`: per transformer layer the mean JS distance over its heads, the linear CKA between
  the two models' outputs of that layer (`similarity`, token rows), the mean |importance change|
  and the number of heads whose role changed. Layer l's attention produces hidden state l + 1,
  so the CKA of layer l is read at representation layer l + 1 (0 = embeddings, in `cka`);
- `cka`: the full layer x layer CKA table of `similarity`;
- `predictions` (masked LMs): every non-special token of every text masked in turn (the
  positions `score` uses for PLL), each model's top-1 filler and whether they agree;
- `pll`: each text's pseudo-log-likelihood under each model (`score`) and the change.

Parts that cannot be computed for these models (no MLM head) are None, with the reason in
`skipped`. Identical models give JS 0, CKA 1, no role change and full agreement.

How sure (issue 28):

- `n_boot=200` adds `intervals`: per (layer, head) and metric (js_distance, cosine,
  importance_change) the percentile bootstrap interval over texts (paired: both models see the
  same resampled texts), and `layer_intervals` (the layer's mean js_distance, and its CKA);
- `lm_b` may be a list of fine-tuned runs (seeds of one recipe). Then `heads`, `layers` and `cka`
  hold the mean over runs (`role_b` the most frequent role, `role_changed` when most runs
  changed it), and `seeds` holds, per (layer, head) and metric (js_distance,
  importance_change), the mean over runs (`value`), the between-run standard deviation
  (`seed_sd`, ddof=1), `n_seeds` and `exceeds_seeds` = |mean| > 2 x seed_sd: the change is
  larger than twice its own run-to-run variation, so it is unlikely to be a property of one
  seed. With k runs this SD is itself uncertain (2 runs give one degree of freedom); use 3 or
  more. Predictions and PLL are per run and are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .. import schema as S
from ..capture import as_text_list
from ..errors import InputError
from ..config import check_bool, check_positive_int
from ..models import LM, check_lm
from ..store import Run, is_run_folder
from .ablation import head_importance
from .bootstrap import LEVEL, add_interval, check_boot, ratio_interval, resample_counts
from .compare import attention_change_by_text, attention_change_frame
from .fill_mask import masked_logprobs
from .head_roles import head_roles
from .pll import default_max_tokens, score, scored_positions, tokenize_for_scoring
from .similarity import similarity


@dataclass
class ModelDiff:
    """The frames of `compare_models`; None where a part was skipped (reason in `skipped`)."""

    model_a: str
    model_b: str
    heads: pd.DataFrame
    layers: pd.DataFrame
    cka: pd.DataFrame | None
    predictions: pd.DataFrame | None
    pll: pd.DataFrame | None
    skipped: dict[str, str] = field(default_factory=dict)
    intervals: pd.DataFrame | None = None        # per head and metric, with n_boot
    layer_intervals: pd.DataFrame | None = None  # per layer: mean js_distance and cka
    seeds: pd.DataFrame | None = None            # several runs: mean, seed_sd, exceeds_seeds

    def summary(self) -> pd.Series:
        """A handful of headline numbers (means over heads, layers or positions)."""
        out = {S.JS_DISTANCE: self.heads[S.JS_DISTANCE].mean(),
               S.ROLE_CHANGED: int(self.heads[S.ROLE_CHANGED].sum())
               if S.ROLE_CHANGED in self.heads else np.nan,
               "most_changed_layer": int(self.layers.loc[self.layers[S.JS_DISTANCE].idxmax(),
                                                         S.LAYER])}
        if S.CKA in self.layers:
            out["min_layer_cka"] = self.layers[S.CKA].min()
        if self.predictions is not None:
            out["top1_agreement"] = self.predictions[S.AGREE].mean()
        if self.pll is not None:
            out["mean_pll_change"] = self.pll[S.LOGPROB_CHANGE].mean()
        return pd.Series(out, name=f"{self.model_a} -> {self.model_b}")


def top1_predictions(lm: LM, texts, *, max_tokens: int | None = None) -> pd.DataFrame:
    """Each model token of each text masked in turn: the top-1 filler. One row per position.

    Columns: text_id, position, token (the true token id's text), prediction (top-1 piece).
    Copies are packed into batches of at most `max_tokens` tokens (rows x longest row).
    """
    lm.require_mlm_head("top-1 prediction changes")
    texts = as_text_list(texts)
    enc = tokenize_for_scoring(lm, texts)
    seqs = [list(e.ids) for e in enc.encodings]
    items = [(i, p) for i, e in enumerate(enc.encodings) for p in scored_positions(e)]
    items.sort(key=lambda it: -len(seqs[it[0]]))
    budget = max_tokens or default_max_tokens(lm)
    tok, mask_id = lm.tokenizer, lm.tokenizer.mask_token_id
    preds: list[int] = []
    start = 0
    while start < len(items):
        width = len(seqs[items[start][0]])                 # longest row of this batch
        chunk = items[start:start + max(1, budget // width)]
        ids = torch.full((len(chunk), width), tok.pad_token_id, dtype=torch.long)   # (N, T)
        att = torch.zeros_like(ids)
        for r, (i, p) in enumerate(chunk):
            ids[r, :len(seqs[i])] = torch.tensor(seqs[i])
            att[r, :len(seqs[i])] = 1
            ids[r, p] = mask_id
        rows, cols = torch.arange(len(chunk)), torch.tensor([p for _, p in chunk])
        preds += masked_logprobs(lm, ids, att, rows, cols).argmax(-1).tolist()     # (N,)
        start += len(chunk)
    return pd.DataFrame({
        S.TEXT_ID: [i for i, _ in items], S.POSITION: [p for _, p in items],
        S.TOKEN: [tok.convert_ids_to_tokens(seqs[i][p]) for i, p in items],
        S.PREDICTION: tok.convert_ids_to_tokens(preds)}).sort_values(
            [S.TEXT_ID, S.POSITION], ignore_index=True)


def _a_side(lm_a: LM, texts, importance: bool, roles: bool, syntax, batch_size: int,
            progress: bool) -> dict:
    """Model a's per-text importances and roles, computed once for every run compared with it."""
    out = {}
    if importance and lm_a.has_mlm_head:
        out["importance"] = head_importance(lm_a, texts, by_text=True, batch_size=batch_size,
                                            progress=progress)
    if roles:
        out["roles"] = head_roles(lm_a, texts, syntax=syntax, n_boot=None, batch_size=batch_size,
                                  progress=progress)
    return out


def _model_label(lm: LM) -> str:
    """The name a diff shows for `lm`: a run's own name and its checkpoint ("sentiment
    (step-60)") for a model loaded from a run, else `lm.name` (a checkpoint folder alone says
    nothing about which run it came from)."""
    path = Path(lm.path) if lm.path else None
    if path is not None and is_run_folder(path.parent.parent):
        return f"{Run(path.parent.parent).name} ({path.name})"
    return lm.name


def _head_frame(lm_a: LM, lm_b: LM, texts, importance: bool, roles: bool, syntax,
                batch_size: int, progress: bool, skipped: dict, a_side: dict,
                n_boot: int | None, level: float) -> tuple[pd.DataFrame, tuple | None]:
    """The per-head frame and, with `n_boot`, its `_head_intervals`."""
    js, cos, queries = attention_change_by_text(lm_a, lm_b, texts, batch_size=batch_size,
                                                progress=progress)   # (N, L, H) x 2, (N,)
    heads = attention_change_frame(lm_a, lm_b, js, cos, queries)
    parts = {S.JS_DISTANCE: (js, queries), S.COSINE: (cos, None)}   # ratio numerators, dens
    key = [S.LAYER, S.HEAD]
    if importance and "importance" in a_side and lm_b.has_mlm_head:
        per_a = a_side["importance"]
        per_b = head_importance(lm_b, texts, by_text=True, batch_size=batch_size,
                                progress=progress)
        L, H = lm_a.num_layers, lm_a.num_heads
        ia, ib = (f[S.SCORE].to_numpy().reshape(-1, L, H) for f in (per_a, per_b))  # (N, L, H)
        keep = ~np.isnan(ia[:, 0, 0]) & ~np.isnan(ib[:, 0, 0])   # texts with masked targets
        heads[S.IMPORTANCE_A] = np.nanmean(ia[keep], 0).reshape(-1)
        heads[S.IMPORTANCE_B] = np.nanmean(ib[keep], 0).reshape(-1)
        heads[S.IMPORTANCE_CHANGE] = heads[S.IMPORTANCE_B] - heads[S.IMPORTANCE_A]
        parts[S.IMPORTANCE_CHANGE] = (np.where(keep[:, None, None], ib - ia, 0.0),
                                      keep.astype(float))
    elif importance:
        skipped["importance"] = ("head importance is measured on the masked-LM loss and one of "
                                 "the models has no MLM head")
    if roles:
        rb = head_roles(lm_b, texts, syntax=syntax, n_boot=None, batch_size=batch_size,
                        progress=progress)
        for side, frame in zip((S.ROLE_A, S.ROLE_B), (a_side["roles"], rb)):
            heads = heads.merge(frame[key + [S.ROLE]].rename(columns={S.ROLE: side}), on=key)
        heads[S.ROLE_CHANGED] = heads[S.ROLE_A] != heads[S.ROLE_B]
    return heads, None if n_boot is None else _head_intervals(parts, n_boot, level)


def _head_intervals(parts: dict, n_boot: int, level: float
                    ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per head and metric, and per layer (mean js_distance over its heads): the value and its
    paired percentile interval over texts (the same resamples for every metric)."""
    n = len(next(iter(parts.values()))[0])
    counts = resample_counts(n, n_boot)               # one set of resamples for every metric
    frames = []
    for metric, (num, den) in parts.items():
        point, low, high = ratio_interval(num, den, level=level, counts=counts)   # (L, H)
        L, H = point.shape
        frames.append(add_interval(pd.DataFrame({
            S.LAYER: np.repeat(np.arange(L), H), S.HEAD: np.tile(np.arange(H), L),
            S.METRIC: metric, S.VALUE: point.reshape(-1)}), low, high, n_texts=n,
            n_boot=n_boot, level=level))
    layer_js = parts[S.JS_DISTANCE]
    point, low, high = ratio_interval(layer_js[0].mean(2), layer_js[1], level=level,
                                      counts=counts)                      # (L,) mean over heads
    return pd.concat(frames, ignore_index=True), add_interval(pd.DataFrame({S.LAYER: np.arange(len(point)),
                                           S.METRIC: S.JS_DISTANCE, S.VALUE: point}),
                             low, high, n_texts=n, n_boot=n_boot, level=level)


def _layer_frame(heads: pd.DataFrame, cka: pd.DataFrame | None) -> pd.DataFrame:
    agg = {S.JS_DISTANCE: (S.JS_DISTANCE, "mean"), S.COSINE: (S.COSINE, "mean")}
    if S.IMPORTANCE_CHANGE in heads:
        agg[S.IMPORTANCE_CHANGE] = (S.IMPORTANCE_CHANGE, lambda d: float(np.abs(d).mean()))
    if S.ROLE_CHANGED in heads:
        agg[S.ROLE_CHANGED] = (S.ROLE_CHANGED, "sum")
    layers = heads.groupby(S.LAYER, as_index=False).agg(**agg)
    if cka is not None:
        diag = cka[cka[S.LAYER_A] == cka[S.LAYER_B]]
        out = dict(zip(diag[S.LAYER_A] - 1, diag[S.VALUE]))   # hidden state l+1 = layer l's output
        layers[S.CKA] = layers[S.LAYER].map(out)
    return layers


def compare_models(lm_a: LM, lm_b, texts, *, importance: bool = True, roles: bool = True,
                   cka: bool = True, predictions: bool = True, syntax: bool | str = False,
                   n_boot: int | None = None, level: float = LEVEL,
                   max_rows: int | None = 5000, batch_size: int = 16,
                   progress: bool = True) -> ModelDiff:
    """Every difference between two checkpoints with one tokenizer on `texts` (see module doc).

    `lm_b`: one model, or a list of fine-tuned runs (seeds) compared with `lm_a` together (the
    `seeds` frame says which changes exceed the spread between them). `n_boot` (e.g. 200; one
    run only) adds bootstrap intervals over texts at `level` (`intervals`, `layer_intervals`,
    and on `cka`'s same-layer rows). Raises `InputError` when the models do not share a
    tokenizer or a (layers, heads) shape. `syntax` is passed to `head_roles` (off by default:
    it parses the texts twice).

    >>> diff = wb.compare_models(wb.load("demo"), wb.load(run), sentences)  # doctest: +SKIP
    >>> diff.layers                                                          # doctest: +SKIP
    """
    runs = list(lm_b) if isinstance(lm_b, (list, tuple)) else [lm_b]
    check_lm(lm_a, "lm_a")
    if not runs:
        raise InputError("lm_b=[]: pass a model loaded with wb.load, or a list of fine-tuned runs "
                         "(e.g. one per seed)")
    for i, model in enumerate(runs):
        check_lm(model, "lm_b" if len(runs) == 1 else f"lm_b[{i}]")
    for name, value in (("importance", importance), ("roles", roles), ("cka", cka),
                        ("predictions", predictions), ("progress", progress)):
        check_bool(name, value)
    if not (isinstance(syntax, bool) or syntax == "auto"):
        raise InputError(f"syntax={syntax!r}; use True, False or 'auto'")
    check_positive_int("max_rows", max_rows, allow_none=True)
    check_positive_int("batch_size", batch_size)
    n_boot, level = check_boot(n_boot, level)
    if len(runs) > 1 and n_boot is not None:
        raise InputError("n_boot with several runs: the runs' spread is the uncertainty reported "
                         "(`seeds`); pass n_boot=None, or compare one run with n_boot")
    texts = as_text_list(texts)
    a_side = _a_side(lm_a, texts, importance, roles, syntax, batch_size, progress)
    diffs = [_one_diff(lm_a, b, texts, a_side, importance=importance, roles=roles, cka=cka,
                       predictions=predictions and len(runs) == 1, syntax=syntax, n_boot=n_boot,
                       level=level, max_rows=max_rows, batch_size=batch_size, progress=progress)
             for b in runs]
    return diffs[0] if len(runs) == 1 else _combine_runs(diffs, predictions)


def _one_diff(lm_a: LM, lm_b: LM, texts: list[str], a_side: dict, *, importance: bool,
              roles: bool, cka: bool, predictions: bool, syntax, n_boot: int | None,
              level: float, max_rows: int | None, batch_size: int, progress: bool) -> ModelDiff:
    skipped: dict[str, str] = {}
    heads, bounds = _head_frame(lm_a, lm_b, texts, importance, roles, syntax, batch_size,
                                progress, skipped, a_side, n_boot, level)
    table = similarity(lm_a, lm_b, texts, pool="tokens", max_rows=max_rows, n_boot=n_boot,
                       level=level, batch_size=batch_size, progress=progress,
                       cache=False) if cka else None
    preds = pll = None
    both_mlm = lm_a.has_mlm_head and lm_b.has_mlm_head
    if predictions and both_mlm:
        pa, pb = top1_predictions(lm_a, texts), top1_predictions(lm_b, texts)
        preds = pa.rename(columns={S.PREDICTION: S.PREDICTION_A})
        preds[S.PREDICTION_B] = pb[S.PREDICTION].to_numpy()
        preds[S.AGREE] = preds[S.PREDICTION_A] == preds[S.PREDICTION_B]
        sa, sb = score(lm_a, texts), score(lm_b, texts)
        pll = pd.DataFrame({S.TEXT_ID: sa[S.TEXT_ID], S.TEXT: sa[S.TEXT],
                            S.LOGPROB_A: sa[S.LOGPROB], S.LOGPROB_B: sb[S.LOGPROB].to_numpy()})
        pll[S.LOGPROB_CHANGE] = pll[S.LOGPROB_B] - pll[S.LOGPROB_A]
    elif predictions:
        skipped["predictions"] = ("fill-mask predictions and PLL need an MLM head in both models "
                                  f"({lm_a.name}: {lm_a.kind}, {lm_b.name}: {lm_b.kind})")
    diff = ModelDiff(_model_label(lm_a), _model_label(lm_b), heads, _layer_frame(heads, table),
                     table, preds, pll, skipped)
    if bounds is not None:
        diff.intervals, diff.layer_intervals = bounds
        if table is not None:
            same = table[table[S.LAYER_A] == table[S.LAYER_B]]
            cka_rows = same.assign(**{S.LAYER: same[S.LAYER_A] - 1, S.METRIC: S.CKA})
            cka_rows = cka_rows[cka_rows[S.LAYER] >= 0][diff.layer_intervals.columns]
            diff.layer_intervals = pd.concat([diff.layer_intervals, cka_rows], ignore_index=True)
    return diff


SEED_METRICS = (S.JS_DISTANCE, S.IMPORTANCE_CHANGE)


def seed_spread(per_run: pd.DataFrame, metrics=SEED_METRICS) -> pd.DataFrame:
    """Which per-head changes exceed the spread between runs.

    `per_run`: one row per (run, layer, head) with the change columns `metrics` (e.g. the
    `heads` frames of several single-run diffs, concatenated). Returns one row per (layer, head,
    metric): value (mean over runs), seed_sd (standard deviation over runs, ddof=1), n_seeds and
    exceeds_seeds = |value| > 2 x seed_sd.
    """
    metrics = [m for m in metrics if m in per_run]
    long = per_run.melt(id_vars=[S.LAYER, S.HEAD], value_vars=metrics, var_name=S.METRIC)
    out = long.groupby([S.LAYER, S.HEAD, S.METRIC], as_index=False, sort=True)[S.VALUE].agg(
        value="mean", seed_sd=lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else np.nan,
        n_seeds="count").rename(columns={"seed_sd": S.SEED_SD, "n_seeds": S.N_SEEDS})
    if (out[S.N_SEEDS] < 2).any():
        raise InputError("a spread between seeds needs at least two runs per head")
    out[S.EXCEEDS_SEEDS] = out[S.VALUE].abs() > 2 * out[S.SEED_SD]
    return out


def _combine_runs(diffs: list[ModelDiff], predictions: bool) -> ModelDiff:
    """One diff for several runs: means over runs, the modal new role, and `seed_spread`."""
    key = [S.LAYER, S.HEAD]
    per_run = pd.concat([d.heads for d in diffs], ignore_index=True)
    numeric = [c for c in (S.JS_DISTANCE, S.COSINE, S.IMPORTANCE_A, S.IMPORTANCE_B,
                           S.IMPORTANCE_CHANGE) if c in per_run]
    heads = per_run.groupby(key, as_index=False, sort=True)[numeric].mean()
    heads.insert(0, S.MODEL_B, ", ".join(d.model_b for d in diffs))
    heads.insert(0, S.MODEL_A, diffs[0].model_a)
    if S.ROLE_B in per_run:
        modal = per_run.groupby(key, sort=True)[S.ROLE_B].agg(lambda r: r.value_counts().index[0])
        changed = per_run.groupby(key, sort=True)[S.ROLE_CHANGED].mean()
        heads[S.ROLE_A] = per_run.groupby(key, sort=True)[S.ROLE_A].first().to_numpy()
        heads[S.ROLE_B] = modal.to_numpy()
        heads[S.ROLE_CHANGED] = changed.to_numpy() > 0.5
    cka = None
    if all(d.cka is not None for d in diffs):
        both = pd.concat([d.cka for d in diffs], ignore_index=True)
        cka = both.groupby([S.LAYER_A, S.LAYER_B], as_index=False, sort=True)[S.VALUE].mean()
        cka.insert(0, S.MODEL_B, heads[S.MODEL_B].iloc[0])
        cka.insert(0, S.MODEL_A, diffs[0].model_a)
        cka[S.METRIC] = "linear_cka"
    skipped = dict(diffs[0].skipped)
    if predictions:
        skipped["predictions"] = ("fill-mask predictions and PLL are per run: call "
                                  "compare_models(lm_a, run, texts) for each run")
    return ModelDiff(diffs[0].model_a, heads[S.MODEL_B].iloc[0], heads,
                     _layer_frame(heads, cka), cka, None, None, skipped,
                     seeds=seed_spread(per_run))
