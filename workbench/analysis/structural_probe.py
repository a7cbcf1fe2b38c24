"""Hewitt & Manning (2019)'s structural probe: is a dependency tree a linear map of a layer away?

What belongs here: `structural_probe(lm, train, test, kind=..., rank=..., layers=...)`, and the
model-free `fit_tree_probe` / `score_tree_probe` it runs on each layer's word vectors (tests feed
them synthetic vectors). Trees, MSTs and the metrics live in `trees`; word vectors in
`word_vectors` (a word = the mean of its subword tokens).

The probe is a matrix B (D x rank). Distance probe: ||B(h_i - h_j)||^2 is trained to match the
tree distance d(i, j); depth probe: ||B h_i||^2 matches the depth of word i. The loss is L1 on
those squared norms, summed over a sentence and divided by the squared sentence length
(distance) or the sentence length (depth), then averaged over the sentences of a batch, exactly
as the reference code's `L1DistanceLoss` / `L1DepthLoss`. Adam (lr 1e-3), B initialised
uniformly in [-0.05, 0.05] as there; the epoch with the lowest loss on a held-out tenth of the
training sentences is kept (the reference stops early on the dev set).

Metrics on `test` (reference `reporter.py`): UUAS = edges of the MST of the predicted distances
that are in the gold tree, both spanning the non-punctuation words (UPOS PUNCT), pooled over all
edges; DSpr = Spearman of each word's predicted vs gold distances, averaged per sentence length
and then over lengths 5-50; root accuracy = the least deep predicted non-punctuation word is the
root; NSpr = Spearman of predicted vs gold depths per sentence, averaged the same way.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pandas as pd
import torch

from .. import schema as S
from ..config import check_choice, check_int
from ..errors import InputError
from ..models import check_lm
from . import trees as T
from .word_vectors import sentence_trees, word_vectors

KINDS = ("distance", "depth")


@contextlib.contextmanager
def one_thread():
    """torch on one thread for the probes' small matmuls: on a busy 2-core machine two threads
    made a (20 x 384) @ (384 x 128) product ~100x slower (thread hand-offs), none made it faster."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _targets(tree: dict, kind: str) -> np.ndarray:
    return T.tree_distances(tree["heads"]) if kind == "distance" else T.tree_depths(tree["heads"])


def _batches(xs, golds, batch_size: int):
    """Padded batches of sentences of similar length: X (B, T, D), gold, mask, lengths (B,)."""
    order = sorted(range(len(xs)), key=lambda i: len(xs[i]))
    out = []
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        n = max(len(xs[i]) for i in idx)
        x = torch.zeros(len(idx), n, xs[idx[0]].shape[1])
        g = torch.zeros((len(idx), n, n) if golds[idx[0]].ndim == 2 else (len(idx), n))
        mask = torch.zeros_like(g)
        for b, i in enumerate(idx):
            k = len(xs[i])
            x[b, :k] = torch.from_numpy(np.asarray(xs[i], dtype=np.float32))
            if g.ndim == 3:
                g[b, :k, :k] = torch.from_numpy(golds[i].astype(np.float32))
                mask[b, :k, :k] = 1
            else:
                g[b, :k] = torch.from_numpy(golds[i].astype(np.float32))
                mask[b, :k] = 1
        out.append((x, g, mask, torch.tensor([len(xs[i]) for i in idx], dtype=torch.float32)))
    return out


def _predict(x: torch.Tensor, proj: torch.Tensor, kind: str) -> torch.Tensor:
    t = x @ proj                                             # (B, T, r)
    sq = (t * t).sum(-1)                                     # (B, T) squared norms
    if kind == "depth":
        return sq
    return (sq[:, :, None] + sq[:, None, :] - 2 * t @ t.transpose(1, 2)).clamp_min(0)  # (B, T, T)


def _loss(pred, gold, mask, lengths, kind: str) -> torch.Tensor:
    dims = (1, 2) if kind == "distance" else (1,)
    norm = lengths ** 2 if kind == "distance" else lengths
    return ((pred - gold).abs() * mask).sum(dims).div(norm).mean()


def fit_tree_probe(xs: list[np.ndarray], golds: list[np.ndarray], *, kind: str = "distance",
                   rank: int | None = None, epochs: int = 10, lr: float = 1e-3,
                   batch_size: int = 20, seed: int = 0) -> np.ndarray:
    """Train B (D, rank) on sentences' word vectors `xs` [(n_i, D)] against `golds` (tree
    distances (n_i, n_i) or depths (n_i,)); returns the best epoch's B on a held-out tenth."""
    dim = xs[0].shape[1]
    rank = dim if rank is None else rank
    if rank > dim:
        raise InputError(f"rank={rank} is larger than the hidden size {dim}: a projection cannot "
                         f"have more useful dimensions than its input; use rank <= {dim}")
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(xs), generator=gen).tolist()
    n_dev = max(1, len(xs) // 10) if len(xs) >= 10 else 0
    dev, train = perm[:n_dev], perm[n_dev:]
    tr = _batches([xs[i] for i in train], [golds[i] for i in train], batch_size)
    dv = _batches([xs[i] for i in dev], [golds[i] for i in dev], 256) if dev else tr
    proj = torch.empty(dim, rank).uniform_(-0.05, 0.05, generator=gen).requires_grad_()
    opt = torch.optim.Adam([proj], lr=lr)
    best, best_loss = proj.detach().clone(), float("inf")
    for _ in range(epochs):
        for b in torch.randperm(len(tr), generator=gen).tolist():
            x, g, m, n = tr[b]
            opt.zero_grad()
            _loss(_predict(x, proj, kind), g, m, n, kind).backward()
            opt.step()
        with torch.no_grad():
            dev_loss = sum(_loss(_predict(x, proj, kind), g, m, n, kind).item() * len(n)
                           for x, g, m, n in dv)
        if dev_loss < best_loss:
            best, best_loss = proj.detach().clone(), dev_loss
    return best.numpy()


def predict_tree(proj: np.ndarray, xs, kind: str, batch_size: int = 256) -> list[np.ndarray]:
    """Each sentence's predicted squared distances (n_i, n_i) or depths (n_i,), batched by length."""
    p = torch.from_numpy(np.asarray(proj, dtype=np.float32))
    order = sorted(range(len(xs)), key=lambda i: len(xs[i]))
    out: list = [None] * len(xs)
    with torch.no_grad():
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            n = max(len(xs[i]) for i in idx)
            x = torch.zeros(len(idx), n, p.shape[0])
            for b, i in enumerate(idx):
                x[b, :len(xs[i])] = torch.from_numpy(np.asarray(xs[i], dtype=np.float32))
            pred = _predict(x, p, kind).numpy()
            for b, i in enumerate(idx):
                k = len(xs[i])
                out[i] = pred[b, :k, :k] if kind == "distance" else pred[b, :k]
    return out


def score_tree_probe(proj: np.ndarray, xs, trees: list[dict], kind: str,
                     punct=T.PUNCT_UPOS) -> dict[str, tuple[float, int]]:
    """Metric -> (value, count) of a trained B on held-out sentences (module docstring)."""
    preds, golds, correct, total, roots = [], [], 0, 0, 0
    for pred, tree in zip(predict_tree(proj, xs, kind), trees):
        keep = ~np.isin(tree["pos"], punct)
        gold = _targets(tree, kind)
        preds.append(pred), golds.append(gold)
        if kind == "distance":
            c, t = T.uuas_counts(pred, gold, keep)
            correct, total = correct + c, total + t
        else:
            roots += T.root_correct(pred, tree["heads"], keep)
    rho, used = T.spearman_by_length(preds, golds)
    if kind == "distance":
        return {"uuas": (correct / total if total else float("nan"), total), "dspr": (rho, used)}
    return {"root_acc": (roots / len(trees), len(trees)), "nspr": (rho, used)}


def linear_baseline(trees: list[dict], punct=T.PUNCT_UPOS) -> tuple[float, int]:
    """UUAS of the right-branching chain (each word attached to the next non-punctuation word)."""
    correct = total = 0
    for tree in trees:
        n = len(tree["heads"])
        chain = np.abs(np.arange(n)[:, None] - np.arange(n)[None, :]).astype(float)
        c, t = T.uuas_counts(chain, T.tree_distances(tree["heads"]), ~np.isin(tree["pos"], punct))
        correct, total = correct + c, total + t
    return (correct / total if total else float("nan")), total


def shuffled_trees(trees: list[dict], seed: int = 0) -> list[dict]:
    """Each sentence gets the tree of a random sentence of the same length (a permutation)."""
    rng = np.random.default_rng(seed)
    by_len: dict[int, list[int]] = {}
    for i, t in enumerate(trees):
        by_len.setdefault(len(t["heads"]), []).append(i)
    out = list(trees)
    for idx in by_len.values():
        for i, j in zip(idx, rng.permutation(idx)):
            out[i] = {**trees[i], "heads": trees[j]["heads"]}
    return out


def _ranks(rank, dim: int) -> list[int | None]:
    if rank is None:
        return [None]
    ranks = [rank] if isinstance(rank, (int, np.integer)) else list(rank)
    for r in ranks:
        check_int("rank", r, minimum=1)
        if r > dim:
            raise InputError(f"rank={r} is larger than the model's hidden size {dim}; pass ranks "
                             f"in 1..{dim} (the paper sweeps 1, 2, 4, ..., 512 on 1024-wide BERT)")
    return [int(r) for r in ranks]


def structural_probe(lm, train, test, *, kind: str = "distance", rank=None, layers="all",
                     epochs: int = 10, lr: float = 1e-3, batch_size: int = 20, seed: int = 0,
                     chunk_size: int = 1000, progress: bool = False,
                     cache: bool = True) -> pd.DataFrame:
    """Per-layer (and per-rank) structural probe of Hewitt & Manning (2019) on UD trees.

    `train`, `test`: CoNLL-U paths (plain or gzipped) or `wb.read_conll(path, format="conllu")`
    frames. `rank`: an int, a list of ints (the rank curve) or None (the hidden size, full rank).
    Baselines: "uuas_linear" (the right-branching chain) beside UUAS, and layer 0 (the
    non-contextual embeddings), as the paper reads its curves. A probe trained on shuffled trees
    is no control here: a representation that encodes the tree keeps a high UUAS under any
    well-conditioned map (checked in the tests), so control tasks live in `edge_probe` and `mdl`.

    Returns a tidy frame: model, layer, kind, probe_rank, metric (distance: "uuas", "dspr",
    "uuas_linear" (right-branching baseline); depth: "root_acc", "nspr"),
    value, count (edges for UUAS, sentences otherwise), split ("test").
    """
    check_lm(lm), check_choice("kind", kind, KINDS)
    check_int("epochs", epochs, minimum=1), check_int("batch_size", batch_size, minimum=1)
    ranks = _ranks(rank, lm.config.hidden_size)
    tr = word_vectors(lm, train, layers=layers, chunk_size=chunk_size, progress=progress,
                      cache=cache, what="train")
    te = word_vectors(lm, test, layers=layers, chunk_size=chunk_size, progress=progress,
                      cache=cache, what="test")
    tr_trees, te_trees = sentence_trees(tr.frame, tr.kept), sentence_trees(te.frame, te.kept)
    if len(tr_trees) < 2 or not te_trees:
        raise InputError(f"train has {len(tr_trees)} and test {len(te_trees)} usable sentences; "
                         "the probe needs at least 2 to train and 1 to test")
    golds = [_targets(t, kind) for t in tr_trees]
    rows = []
    base = linear_baseline(te_trees) if kind == "distance" else None
    for lay in tr.layers:
        xs, xt = tr.sentences(lay), te.sentences(lay)
        for r in ranks:
            with one_thread():
                proj = fit_tree_probe(xs, golds, kind=kind, rank=r, epochs=epochs, lr=lr,
                                      batch_size=batch_size, seed=seed)
                scores = score_tree_probe(proj, xt, te_trees, kind)
            for metric, (value, count) in scores.items():
                rows.append((lay, r or tr.dim, metric, value, count))
            if base is not None:
                rows.append((lay, r or tr.dim, "uuas_linear", base[0], base[1]))
    out = pd.DataFrame(rows, columns=[S.LAYER, S.PROBE_RANK, S.METRIC, S.VALUE, S.COUNT])
    out.insert(0, S.MODEL, lm.name)
    out.insert(2, S.KIND, kind)
    out[S.SPLIT] = "test"
    return out
