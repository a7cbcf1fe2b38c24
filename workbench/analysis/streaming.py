"""Passes over memory-mapped features in row blocks: CKA, a logistic probe and PCA without loading.

What belongs here: the out-of-core twins of the in-memory computations of `similarity`,
`linear_probe` and `embedding_map`, used when `Features.array` is a memory map
(`features(..., out=FOLDER)`). Blocks are read by plain file reads (`token_store.chunked_rows`), so
host memory holds one block and a few (D, D) float64 matrices, whatever the number of rows.

- `cka_matrix_streamed`: linear CKA, exact. Centred cross-products are accumulated as
  sum(x y^T) - n mean_x mean_y^T in float64, one pass per layer of the first set, so the value is
  the in-memory `linear_cka` (feature-space form) up to float64 rounding. `minibatch_cka` is the
  other estimator, Nguyen, Raghu & Kornblith 2021 (unbiased HSIC averaged over minibatches), for
  comparison: it is not the same number.
- `fit_score_streamed`: the in-memory probe's model (StandardScaler + L2 logistic regression,
  sklearn's objective: binary logistic for 2 classes, multinomial above) fitted by L-BFGS with
  sklearn's settings, whose every loss/gradient evaluation is one pass over the training rows.
  Rather than SGD (`SGDClassifier.partial_fit`, a different probe that depends on its learning
  rate and epochs): the same objective and stopping rule give the in-memory probe's predictions
  (tested), so its accuracies; the price is one pass per iteration.
- `pca2_streamed`: the two leading principal axes from the accumulated (D, D) covariance (exact,
  one pass), instead of IncrementalPCA, whose truncation to 2 components at each batch makes it an
  approximation.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from ..training.token_store import chunked_rows

BLOCK_ROWS = 4096


def is_streamed(array) -> bool:
    """Whether `array` is a memory map on disk (then the analyses stream over it)."""
    return isinstance(array, np.memmap)


def blocks(array: np.ndarray, rows: int = BLOCK_ROWS) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, block) pairs over `array`'s rows."""
    start = 0
    for block in chunked_rows(array, rows):
        yield start, block
        start += len(block)


def _moments(array: np.ndarray, j: int, mask: np.ndarray | None = None):
    """Rows (where `mask`), column sums (D,) and x^T x (D, D) of layer slot j, float64."""
    n, s, g = 0, 0.0, 0.0
    for lo, block in blocks(array):
        x = block[:, j].astype(np.float64)
        if mask is not None:
            x = x[mask[lo:lo + len(block)]]
        n, s, g = n + len(x), s + x.sum(0), g + x.T @ x
    return n, s, g


def _centred_norm(gram: np.ndarray, sums: np.ndarray, n: int) -> float:
    """|Xc^T Xc|_F from x^T x and the column sums; 0 for a constant layer (every row the same,
    e.g. the `<s>` embedding of the cls pool), whose centred Gram is only rounding error: CKA
    is then NaN (undefined), not a ratio of rounding errors."""
    norm = np.linalg.norm(gram - np.outer(sums, sums) / n)
    return 0.0 if norm <= 1e-9 * np.linalg.norm(gram) else float(norm)


def cka_matrix_streamed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(L_a, L_b) linear CKA between the layer slots of two (N, L, D) arrays of the same rows."""
    n = len(a)
    self_b = [_moments(b, k) for k in range(b.shape[1])]
    norm_b = [_centred_norm(g, s, n) for _, s, g in self_b]
    out = np.full((a.shape[1], b.shape[1]), np.nan)
    for j in range(a.shape[1]):
        cross = np.zeros((b.shape[1], a.shape[2], b.shape[2]))   # (L_b, D_a, D_b)
        sa, ga = 0.0, 0.0
        for (_, xa), (_, xb) in zip(blocks(a), blocks(b)):
            x = xa[:, j].astype(np.float64)                        # (rows, D_a)
            sa, ga = sa + x.sum(0), ga + x.T @ x
            for k in range(b.shape[1]):
                cross[k] += x.T @ xb[:, k].astype(np.float64)
        norm_a = _centred_norm(ga, sa, n)
        for k, (_, sb, _) in enumerate(self_b):
            num = np.linalg.norm(cross[k] - np.outer(sa, sb) / n) ** 2
            den = norm_a * norm_b[k]
            out[j, k] = num / den if den > 0 else np.nan
    return out


def _hsic1(k: np.ndarray, l_: np.ndarray) -> float:
    """Unbiased HSIC of two (n, n) Gram matrices (Song et al. 2012), n >= 4."""
    n = len(k)
    k, l_ = k - np.diag(np.diag(k)), l_ - np.diag(np.diag(l_))
    ones_k, ones_l = k.sum(0), l_.sum(0)
    value = (np.sum(k * l_) + ones_k.sum() * ones_l.sum() / ((n - 1) * (n - 2))
             - 2 / (n - 2) * ones_k @ ones_l)
    return float(value / (n * (n - 3)))


def minibatch_cka(x: np.ndarray, y: np.ndarray, batch_size: int = 1024, seed: int = 0) -> float:
    """Minibatch linear CKA of Nguyen, Raghu & Kornblith 2021: unbiased HSIC averaged over random
    minibatches, then normalised. A different estimator from `linear_cka` (which is the biased,
    full-data one): on the 600-row, 20 x 15-dim test data the two differ by 0.013-0.015 at
    minibatch sizes 100-600, mostly the bias of the full-data estimator, not minibatch noise.
    A last minibatch of fewer than 4 rows is dropped."""
    order = np.random.default_rng(seed).permutation(len(x))
    kl = kk = ll = 0.0
    for start in range(0, len(x) - 3, batch_size):
        rows = np.sort(order[start:start + batch_size])
        if len(rows) < 4:
            break
        xb, yb = np.asarray(x[rows], np.float64), np.asarray(y[rows], np.float64)
        k, l_ = xb @ xb.T, yb @ yb.T
        kl, kk, ll = kl + _hsic1(k, l_), kk + _hsic1(k, k), ll + _hsic1(l_, l_)
    return kl / np.sqrt(kk * ll)


def _scaler(array: np.ndarray, j: int, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """StandardScaler's mean and scale over the masked rows (scale 1 where the variance is 0)."""
    n, s, g = _moments(array, j, mask)
    mean = s / n
    var = np.maximum(np.diag(g) / n - mean ** 2, 0.0)
    scale = np.sqrt(var)
    scale[scale < 10 * np.finfo(np.float64).eps] = 1.0
    return mean, scale


def fit_score_streamed(array: np.ndarray, j: int, tr: np.ndarray, te: np.ndarray, y: np.ndarray,
                       C: float, max_iter: int) -> tuple[np.ndarray, bool]:
    """As `linear_probe._fit_score` on layer slot j of a memory map: (hits on te rows in te's
    order (n_test,) bool, converged)."""
    from scipy.optimize import minimize

    classes, codes = np.unique(y, return_inverse=True)
    train = np.zeros(len(array), bool)
    train[tr] = True
    mean, scale = _scaler(array, j, train)
    d, k = array.shape[2], (1 if len(classes) == 2 else len(classes))
    n = int(train.sum())

    def objective(theta):
        w, b = theta[:d * k].reshape(d, k), theta[d * k:]
        loss, gw, gb = 0.0, np.zeros((d, k)), np.zeros(k)
        for lo, block in blocks(array):
            m = train[lo:lo + len(block)]
            x = (block[m, j].astype(np.float64) - mean) / scale      # (rows, D)
            c, z = codes[lo:lo + len(block)][m], x @ w + b           # (rows, k)
            if k == 1:
                t = (c == 1).astype(np.float64)[:, None]
                loss += np.sum(np.logaddexp(0, z) - t * z)
                g = 1 / (1 + np.exp(-z)) - t
            else:
                top = z.max(1, keepdims=True)
                lse = top[:, 0] + np.log(np.exp(z - top).sum(1))
                loss += np.sum(lse - z[np.arange(len(c)), c])
                g = np.exp(z - lse[:, None])
                g[np.arange(len(c)), c] -= 1
            gw, gb = gw + x.T @ g, gb + g.sum(0)
        # sklearn's objective divided by n C: mean loss + |w|^2 / (2 C n); the intercept is free
        value = loss / n + (w ** 2).sum() / (2 * C * n)
        grad = np.concatenate([(gw / n + w / (C * n)).ravel(), gb / n])
        return value, grad

    # sklearn's own L-BFGS settings (tol=1e-4), so both stop at the same point, not just near
    fit = minimize(objective, np.zeros(d * k + k), jac=True, method="L-BFGS-B",
                   options={"maxiter": max_iter, "maxls": 50, "gtol": 1e-4,
                            "ftol": 64 * np.finfo(float).eps})
    w, b = fit.x[:d * k].reshape(d, k), fit.x[d * k:]
    test = np.zeros(len(array), bool)
    test[te] = True
    pred = np.full(len(array), -1)
    for lo, block in blocks(array):
        m = test[lo:lo + len(block)]
        z = ((block[m, j].astype(np.float64) - mean) / scale) @ w + b
        pred[lo:lo + len(block)][m] = (z[:, 0] > 0).astype(int) if k == 1 else z.argmax(1)
    return pred[te] == codes[te], bool(fit.success)


def pca2_streamed(array: np.ndarray, j: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list]:
    """(mean (D,), components (2, D), explained variance ratio) of layer slot j, exact.
    Signs as sklearn's PCA: the largest-magnitude loading of each component is positive."""
    del seed  # exact: nothing random
    n, s, g = _moments(array, j)
    mean = s / n
    cov = (g - n * np.outer(mean, mean)) / max(n - 1, 1)
    values, vectors = np.linalg.eigh(cov)                            # ascending
    comps = vectors[:, ::-1][:, :2].T                                # (2, D)
    signs = np.sign(comps[np.arange(2), np.abs(comps).argmax(1)])
    comps = comps * signs[:, None]
    total = values.sum()
    return mean, comps, (values[::-1][:2] / total).tolist() if total > 0 else [np.nan, np.nan]
