"""Minimum description length probing with the online code (Voita & Titov 2020).

What belongs here: the code length of a dataset's labels given its features, transmitted block by
block: the first block with the uniform code (t_1 * log2 K bits), every later block with a probe
trained on all the blocks before it (sum of -log2 p(y | x) bits). A representation that makes
the labels easy to learn compresses them early, so the code length reads both how well and how
fast a probe learns: it is less fooled by probe capacity than accuracy is.

- `FRACTIONS`: the block ends of the paper, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.25, 12.5, 25, 50 and
  100 % of the data; block end t_i = max(1, floor(f_i * n)), repeated ends merged.
- `online_codelength(x, y, ...)`: the code length in bits of one labelling, with any probe given
  as `fit_predict(x_train, y_train, x_next) -> probabilities (n_next, K)`; the default is the
  same probe as `linear_probe` (standardised features, scikit-learn logistic regression), its
  probabilities mixed with the uniform distribution by `SMOOTHING` so a class absent from the
  blocks seen so far costs a finite log2(K / SMOOTHING) bits instead of infinity.
- `mdl_rows(...)`: the tidy rows `linear_probe(..., mdl=True)` and `edge_probe(..., mdl=True)`
  add: code length (kbits), the uniform code's length, compression = uniform / online, and the
  same for the control task's labels (Hewitt & Liang 2019).

Rows are ordered by a seeded permutation of their groups (texts), so a sentence's words travel in
one block, as `linear_probe` splits train and test by text.
"""

from __future__ import annotations

import warnings
from typing import Callable

import numpy as np

from ..config import check_sequence
from ..errors import InputError

FRACTIONS = (0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.0625, 0.125, 0.25, 0.5, 1.0)
SMOOTHING = 1e-3


def block_ends(n: int, fractions=FRACTIONS) -> list[int]:
    """Sorted unique block ends t_1 < ... < n: max(1, floor(f * n)) for each fraction."""
    fractions = [float(f) for f in check_sequence("fractions", fractions)]
    if not fractions or any(not 0 < f <= 1 for f in fractions) or fractions != sorted(fractions):
        raise InputError(f"fractions={fractions}; pass increasing fractions in (0, 1]")
    if fractions[-1] != 1.0:
        raise InputError(f"fractions end at {fractions[-1]}; the last block must end at 1.0 "
                         "(all of the data is transmitted)")
    if n < 2:
        raise InputError(f"{n} example(s): the online code needs at least 2")
    return sorted({max(1, int(f * n)) for f in fractions})


def logistic_fit_predict(C: float = 1.0, max_iter: int = 1000) -> Callable:
    """`linear_probe`'s probe as a `fit_predict` over classes 0..K-1 (K from the call)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def fit_predict(x_tr, y_tr, x_next, n_classes: int) -> np.ndarray:
        probs = np.zeros((len(x_next), n_classes))
        seen = np.unique(y_tr)
        if len(seen) == 1:                      # one class so far: the probe can only say it
            probs[:, seen[0]] = 1.0
        else:
            probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                probe.fit(x_tr, y_tr)
            probs[:, probe.classes_] = probe.predict_proba(x_next)
        return (1 - SMOOTHING) * probs + SMOOTHING / n_classes

    return fit_predict


def online_codelength(x, y, *, fit_predict: Callable | None = None, n_classes: int | None = None,
                      fractions=FRACTIONS, groups=None, seed: int | None = 0) -> dict:
    """Online code length of labels `y` given features `x` (rows in a seeded order of `groups`;
    `seed=None` keeps the given order).

    `y`: integer classes 0..K-1 (`n_classes` = K, default max + 1). `fit_predict(x_tr, y_tr,
    x_next, n_classes)` returns (len(x_next), K) probabilities. Returns bits (online), uniform
    bits (n log2 K), compression (uniform / online) and the block ends used.
    """
    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(y):
        raise InputError(f"{len(y)} labels for {len(x)} feature rows: they must align")
    k = int(n_classes if n_classes is not None else y.max() + 1)
    if k < 2:
        raise InputError("a single class: the code length of one label is zero bits, nothing to probe")
    fit_predict = fit_predict or logistic_fit_predict()
    if seed is not None:
        groups = np.arange(len(y)) if groups is None else np.asarray(groups)
        uniq, inverse = np.unique(groups, return_inverse=True)
        rank = np.random.default_rng(seed).permutation(len(uniq))[inverse]
        order = np.lexsort((np.arange(len(y)), rank))   # groups in a random order, rows kept
        x, y = x[order], y[order]
    ends = block_ends(len(y), fractions)
    bits = ends[0] * np.log2(k)                          # first block: the uniform code
    for start, stop in zip(ends[:-1], ends[1:]):
        probs = fit_predict(x[:start], y[:start], x[start:stop], k)
        bits += float(-np.log2(probs[np.arange(stop - start), y[start:stop]]).sum())
    uniform = len(y) * np.log2(k)
    return {"bits": float(bits), "uniform_bits": float(uniform),
            "compression": float(uniform / bits), "ends": ends}


def mdl_rows(x, labels, control, *, groups, seed: int = 0, C: float = 1.0,
             max_iter: int = 1000, fractions=FRACTIONS) -> list[tuple[str, float]]:
    """(metric, value) rows of one layer: code lengths in kbits and compression, real and control."""
    values, y = np.unique(np.asarray(labels).astype(str), return_inverse=True)
    fit = logistic_fit_predict(C, max_iter)
    real = online_codelength(x, y, fit_predict=fit, n_classes=len(values), fractions=fractions,
                             groups=groups, seed=seed)
    rows = [("codelength_kbits", real["bits"] / 1000), ("uniform_kbits", real["uniform_bits"] / 1000),
            ("compression", real["compression"])]
    if control is not None:
        yc = np.searchsorted(values, np.asarray(control).astype(str))   # drawn from the labels
        ctrl = online_codelength(x, yc, fit_predict=fit, n_classes=len(values),
                                 fractions=fractions, groups=groups, seed=seed)
        rows += [("control_codelength_kbits", ctrl["bits"] / 1000),
                 ("control_compression", ctrl["compression"])]
    return rows
