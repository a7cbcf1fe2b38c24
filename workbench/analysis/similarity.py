"""Representation similarity between layers: linear CKA (Kornblith et al. 2019).

What belongs here: `linear_cka(X, Y)` for two (n, d) matrices of the same n inputs, and
`similarity(lm_a, lm_b, texts)`, the layer x layer CKA table of two models (base vs fine-tuned:
where did fine-tuning change the model?) or of one model with itself (how do its layers relate?).

Linear CKA of column-centred X, Y is ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F): 1 for identical
representations, invariant to orthogonal transforms and isotropic scaling of either side, not to
arbitrary invertible linear maps. Computed in float64 in whichever of the feature-space (d x d) or
example-space (n x n) forms is cheaper.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import schema as S
from ..errors import InputError
from .bootstrap import LEVEL, add_interval, check_boot, percentile_interval, row_weights
from .features import Features, features
from .streaming import cka_matrix_streamed, is_streamed
from ..config import check_finite_array, check_positive_int


def _centre(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise InputError(f"CKA needs 2-D (n, d) matrices, got shape {x.shape}")
    return x - x.mean(axis=0, keepdims=True)


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA between (n, p) and (n, q) representations of the same n inputs (rows)."""
    x, y = check_finite_array("x", x, ndim=2), check_finite_array("y", y, ndim=2)
    x, y = _centre(x), _centre(y)
    if x.shape[0] != y.shape[0]:
        raise InputError(f"CKA compares the same inputs: {x.shape[0]} rows vs {y.shape[0]} rows")
    if x.shape[0] < 2:
        raise InputError("CKA needs at least two rows (inputs)")
    return _cka_of_centred(x, y)


def _cka_of_centred(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA of two column-centred (n, p), (n, q) float64 matrices."""
    n, p, q = x.shape[0], x.shape[1], y.shape[1]
    if n < max(p, q):          # example space: <K, L> / (|K| |L|) with K = X X^T
        k, l_ = x @ x.T, y @ y.T                                         # (n, n)
        num, den = np.sum(k * l_), np.linalg.norm(k) * np.linalg.norm(l_)
    else:                      # feature space: |Y^T X|^2 / (|X^T X| |Y^T Y|)
        num = np.linalg.norm(y.T @ x) ** 2                               # (q, p)
        den = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    return float(num / den) if den > 0 else float("nan")


def weighted_cka(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    """Linear CKA with row i counted `w[i]` times (a bootstrap resample), without copying rows:
    centre with the weighted mean, scale each row by sqrt(w)."""
    keep = w > 0
    x, y, w = np.asarray(x, np.float64)[keep], np.asarray(y, np.float64)[keep], w[keep]
    root = np.sqrt(w / w.sum())[:, None]
    return _cka_of_centred(root * (x - w @ x / w.sum()), root * (y - w @ y / w.sum()))


def cka_intervals(a: Features, b: Features, table: pd.DataFrame, n_boot: int, level: float
                  ) -> pd.DataFrame:
    """`table` (from `cka_matrix`) with percentile bootstrap intervals over texts on its
    same-layer rows (layer_a == layer_b; NaN elsewhere: each pair costs n_boot CKAs)."""
    weights = row_weights(a.index[S.TEXT_ID], n_boot)                 # (n_boot, rows)
    low, high = np.full(len(table), np.nan), np.full(len(table), np.nan)
    for i, (la, lb) in enumerate(zip(table[S.LAYER_A], table[S.LAYER_B])):
        if la != lb:
            continue
        x, y = a.layer(la), b.layer(lb)
        low[i], high[i] = percentile_interval(
            np.array([weighted_cka(x, y, w) for w in weights]), level)
    return add_interval(table, low, high, n_texts=a.index[S.TEXT_ID].nunique(), n_boot=n_boot,
                        level=level)


def cka_matrix(a: Features, b: Features) -> pd.DataFrame:
    """Tidy layer x layer CKA between two feature sets whose rows are the same inputs."""
    if len(a) != len(b):
        raise InputError(
            f"the two models give {len(a)} and {len(b)} rows: their tokenizers split the texts "
            "differently. Compare with pool='mean' (one row per text) or pool='words'.")
    for col in (S.TEXT_ID, S.WORD_ID, S.POSITION):
        if col in a.index and col in b.index and not np.array_equal(a.index[col], b.index[col]):
            raise InputError(f"rows of the two feature sets differ in {col!r}: use pool='mean' or "
                             "pool='words' to compare models with different tokenizers")
    if is_streamed(a.array) or is_streamed(b.array):     # on disk: exact, in row blocks
        values = cka_matrix_streamed(a.array, b.array)
        rows = [(la, lb, values[j, k]) for j, la in enumerate(a.layers)
                for k, lb in enumerate(b.layers)]
    else:
        rows = [(la, lb, linear_cka(a.layer(la), b.layer(lb))) for la in a.layers
                for lb in b.layers]
    out = pd.DataFrame(rows, columns=[S.LAYER_A, S.LAYER_B, S.VALUE])
    out.insert(0, S.MODEL_B, b.model)
    out.insert(0, S.MODEL_A, a.model)
    out[S.METRIC] = "linear_cka"
    return out


def similarity(lm_a, lm_b=None, texts=None, *, pool: str = "tokens", layers="all",
               max_rows: int | None = 5000, seed: int = 0, n_boot: int | None = None,
               level: float = LEVEL, batch_size: int = 32, progress: bool = True,
               cache: bool = True) -> pd.DataFrame:
    """Layer x layer linear CKA between `lm_a` and `lm_b` (or `lm_a` with itself) on `texts`.

    `pool`: "tokens" (one row per token: needs the same tokenizer), "words" or "mean"/"cls" (one
    row per text). Rows beyond `max_rows` are subsampled (seeded) to bound the cost.
    `similarity(lm, texts)` is short for `similarity(lm, None, texts)`. `lm_a` (and `lm_b`) may
    be ready `Features`; on disk (`features(..., out=...)`) with `max_rows=None`, CKA over every
    row is computed exactly in row blocks (`streaming.cka_matrix_streamed`).

    Returns a tidy frame: model_a, model_b, layer_a, layer_b, value (CKA), metric. `n_boot`
    (e.g. 200; default None) adds percentile bootstrap intervals over texts (a text's rows are
    resampled together) to the same-layer rows: ci_low, ci_high, n_texts, n_boot, level.
    """
    check_positive_int("max_rows", max_rows, allow_none=True)
    n_boot, level = check_boot(n_boot, level)
    if isinstance(lm_a, Features):        # ready features (e.g. from features(..., out=...))
        fa = lm_a
        fb = fa if lm_b is None else lm_b
        if not isinstance(fb, Features):
            raise InputError("similarity(features_a, features_b): pass Features for both or neither")
    else:
        if texts is None and lm_b is not None and not hasattr(lm_b, "model"):
            lm_b, texts = None, lm_b
        if texts is None:
            raise InputError("similarity needs texts: similarity(lm_a, lm_b, texts) or "
                             "similarity(lm, texts)")
        opts = dict(layers=layers, pool=pool, batch_size=batch_size, progress=progress, cache=cache)
        fa = features(lm_a, texts, **opts)
        fb = fa if lm_b is None else features(lm_b, texts, **opts)
    if max_rows is not None and len(fa) > max_rows and len(fa) == len(fb):
        keep = np.sort(np.random.default_rng(seed).choice(len(fa), size=max_rows, replace=False))
        fa = Features(fa.array[keep], fa.index.iloc[keep].reset_index(drop=True), fa.layers,
                      fa.pool, fa.model, fa.texts)
        fb = fa if lm_b is None else Features(fb.array[keep], fb.index.iloc[keep].reset_index(drop=True),
                                              fb.layers, fb.pool, fb.model, fb.texts)
    table = cka_matrix(fa, fb)
    return table if n_boot is None else cka_intervals(fa, fb, table, n_boot, level)
