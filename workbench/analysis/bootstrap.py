"""The one bootstrap of the workbench: percentile intervals over texts (Efron & Tibshirani 1993).

What belongs here: drawing resamples and turning per-text statistics into intervals. Every
analysis that reports an interval (`head_stat_intervals`, `head_roles(n_boot=...)`,
`head_importance(n_boot=...)`, `linear_probe(n_boot=...)`, `similarity(n_boot=...)`,
`compare_models(n_boot=...)`) computes its statistic once per text, then calls these functions:
the model never runs again per resample.

A resample draws N texts with replacement from the N texts (seeded by `BOOT_SEED`, so a result is
reproducible). It is stored as a count matrix `C` (n_boot, N), `C[b, i]` = how often text i was
drawn, so a statistic that is a ratio of per-text sums, `sum_i num_i / sum_i den_i` (a mean over
texts: den = 1; a mean over tokens: num = the text's summed value, den = its number of tokens),
is `C @ num / C @ den` for every resample at once. Rows that belong to texts (tokens, words) are
resampled with their text (`row_weights`): tokens of one sentence are not independent.

The interval is the percentile interval: the (1 - level)/2 and (1 + level)/2 quantiles of the
resampled statistic (numpy's default linear interpolation).

Why `N_BOOT = 200` by default: 200 resamples put about 5 of them beyond each end of a 95% interval,
so an end is the 2.5% quantile estimated to within about +-1.1 percentage points of probability
(binomial standard error sqrt(0.025 * 0.975 / 200)); that is enough to tell a head whose role
holds in 60% of resamples from one at 95%, and it keeps the costly cases cheap (CKA recomputes a
Gram matrix per resample; head roles reclassify every head per resample). For an interval quoted
in a paper pass `n_boot=1000` or more: the cost is one (n_boot, N) matrix product.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..config import check_finite, check_positive_int
from ..errors import InputError

N_BOOT = 200
LEVEL = 0.95
BOOT_SEED = 0
STABLE_AT = 0.9     # a chosen label is "stable" when it holds in at least this share of resamples


def check_boot(n_boot, level) -> tuple[int | None, float]:
    """Validate `n_boot` (None = no intervals, else >= 2) and `level` (in (0, 1))."""
    if n_boot is not None:
        n_boot = check_positive_int("n_boot", n_boot)
        if n_boot < 2:
            raise InputError(f"n_boot={n_boot}: a bootstrap needs at least 2 resamples "
                             f"(default {N_BOOT}; pass None for no intervals)")
    level = check_finite("level", level, low=0, high=1, low_open=True, high_open=True)
    return n_boot, float(level)


def resample_indices(n: int, n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> np.ndarray:
    """(n_boot, n) indices drawn with replacement from range(n): one resample per row."""
    if n < 1:
        raise InputError("a bootstrap needs at least one text")
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def resample_counts(n: int, n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> np.ndarray:
    """(n_boot, n) float counts: how often each of n units is drawn in each resample."""
    idx = resample_indices(n, n_boot, seed)
    counts = np.zeros((n_boot, n))
    np.add.at(counts, (np.arange(n_boot)[:, None], idx), 1.0)
    return counts


def row_weights(groups, n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> np.ndarray:
    """(n_boot, R) weights of R rows resampled by group (text): a row weighs its group's count."""
    _, inverse = np.unique(np.asarray(groups), return_inverse=True)
    return resample_counts(int(inverse.max()) + 1, n_boot, seed)[:, inverse]


def resample_ratio(counts: np.ndarray, num: np.ndarray, den: np.ndarray | None = None
                   ) -> np.ndarray:
    """`sum_i C[b, i] num[i] / sum_i C[b, i] den[i]` for every resample b: (n_boot, ...).

    `num`: (N, ...) per-text sums (or per-text means with `den=None`, a mean over texts); `den`:
    (N,) or (N, ...) per-text counts. A resample with a zero denominator gives NaN.
    """
    num = np.asarray(num, dtype=np.float64)
    flat = num.reshape(num.shape[0], -1)                          # (N, K)
    top = counts @ flat                                           # (n_boot, K)
    if den is None:
        bottom = counts.sum(1, keepdims=True)                     # (n_boot, 1)
    else:
        den = np.asarray(den, dtype=np.float64)
        bottom = counts @ den.reshape(den.shape[0], -1)           # (n_boot, 1 or K)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(bottom > 0, top / np.where(bottom > 0, bottom, 1), np.nan)
    return out.reshape((counts.shape[0],) + num.shape[1:])


def percentile_interval(samples: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """(low, high): the percentile interval of the resampled statistic along axis 0."""
    tail = (1.0 - level) / 2.0
    with warnings.catch_warnings():      # a statistic that is NaN in every resample stays NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = np.nanquantile(np.asarray(samples, dtype=np.float64), [tail, 1.0 - tail],
                                   axis=0)
    return low, high


def ratio_interval(num: np.ndarray, den: np.ndarray | None = None, *, n_boot: int = N_BOOT,
                   level: float = LEVEL, seed: int = BOOT_SEED, counts: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(point, low, high) of the ratio statistic of `resample_ratio` over the N texts (axis 0)."""
    n = np.asarray(num).shape[0]
    ones = np.ones((1, n))
    point = resample_ratio(ones, num, den)[0]
    if counts is None:
        counts = resample_counts(n, n_boot, seed)
    low, high = percentile_interval(resample_ratio(counts, num, den), level)
    return point, low, high


def label_stability(chosen: np.ndarray, resampled: np.ndarray) -> np.ndarray:
    """Share of resamples whose label equals the chosen one: chosen (...), resampled (B, ...)."""
    return (np.asarray(resampled) == np.asarray(chosen)[None]).mean(0)


def add_interval(df, low, high, *, n_texts: int, n_boot: int, level: float):
    """`df` with the documented interval columns ci_low, ci_high, n_texts, n_boot, level added
    (low/high align with df's rows)."""
    from .. import schema as S

    return df.assign(**{S.CI_LOW: np.asarray(low, dtype=np.float64).reshape(-1),
                        S.CI_HIGH: np.asarray(high, dtype=np.float64).reshape(-1),
                        S.N_TEXTS: int(n_texts), S.N_BOOT: int(n_boot), S.LEVEL: float(level)})


def bootstrap_interval(values, *, n_boot: int = N_BOOT, level: float = LEVEL
                       ) -> tuple[float, float, float]:
    """(mean, low, high) of per-text numbers `values` (N,): the percentile interval of their mean
    over texts, as every workbench analysis computes it (for a statistic of your own)."""
    n_boot, level = check_boot(n_boot, level)
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or not len(values):
        raise InputError(f"values: pass one number per text, a non-empty 1-D array (got shape "
                         f"{values.shape})")
    point, low, high = ratio_interval(values, n_boot=n_boot, level=level)
    return float(point), float(low), float(high)
