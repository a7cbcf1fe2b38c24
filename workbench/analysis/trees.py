"""Dependency trees as numbers: distances, depths, minimum spanning trees and the structural-probe
metrics of Hewitt & Manning (2019), computed the way their reference code (`reporter.py`) does.

What belongs here: pure numpy functions of one sentence's heads or of predicted matrices; no model.

- `tree_distances(heads)`: (n, n) path lengths in the undirected tree; `tree_depths(heads)`: (n,);
- `mst_edges(dist, keep)`: Prim's minimum spanning tree over the kept words (punctuation dropped);
- `uuas(...)`: undirected unlabelled attachment score, pooled over all edges of all sentences;
- `spearman_by_length(...)`: Spearman per row (distance) or per sentence (depth), averaged within
  each sentence length, then over lengths 5..50 (the paper's DSpr / NSpr).

`heads` are 0-based word indices of each word's head, -1 for the root (the `dep_head` column of
`read_conll(..., format="conllu")`).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

SPEARMAN_LENGTHS = (5, 50)   # sentence lengths averaged in DSpr / NSpr (inclusive), as the paper
PUNCT_UPOS = ("PUNCT",)      # UD's punctuation tag: the UD counterpart of the PTB tags the
                             # reference code drops ('' , . : `` -LRB- -RRB-)


def tree_depths(heads) -> np.ndarray:
    """(n,) number of edges from each word to the root (root = 0)."""
    heads = np.asarray(heads, dtype=int)
    depth = np.full(len(heads), -1, dtype=int)
    for i in range(len(heads)):
        path, node = [], i
        while node != -1 and depth[node] < 0:
            path.append(node)
            node = heads[node]
        base = -1 if node == -1 else depth[node]
        for k, p in enumerate(reversed(path), 1):
            depth[p] = base + k
    return depth


def tree_distances(heads) -> np.ndarray:
    """(n, n) path length between every pair of words in the undirected dependency tree."""
    heads = np.asarray(heads, dtype=int)
    n = len(heads)
    # ancestors of each word with their distance, then d(i, j) = min over common ancestors
    anc = np.full((n, n), -1, dtype=int)           # anc[i, a] = edges from i up to ancestor a
    for i in range(n):
        node, k = i, 0
        while node != -1:
            anc[i, node] = k
            node, k = heads[node], k + 1
    both = (anc[:, None, :] >= 0) & (anc[None, :, :] >= 0)          # (n, n, n)
    total = np.where(both, anc[:, None, :] + anc[None, :, :], np.iinfo(np.int32).max)
    return total.min(axis=2)


def mst_edges(dist: np.ndarray, keep=None) -> set[tuple[int, int]]:
    """Edges (i, j), i < j, of a minimum spanning tree of `dist` over the words where `keep` is true.

    Prim's algorithm with ties broken by the lower index, as the reference code's Prim does.
    """
    dist = np.asarray(dist, dtype=float)
    nodes = np.arange(len(dist)) if keep is None else np.flatnonzero(keep)
    if len(nodes) < 2:
        return set()
    sub = dist[np.ix_(nodes, nodes)]
    m = len(nodes)
    in_tree = np.zeros(m, dtype=bool)
    in_tree[0] = True
    best, parent = sub[0].copy(), np.zeros(m, dtype=int)   # cheapest link of each node to the tree
    edges = set()
    for _ in range(m - 1):
        cand = np.where(in_tree, np.inf, best)
        j = int(np.argmin(cand))
        i = int(parent[j])
        edges.add((int(min(nodes[i], nodes[j])), int(max(nodes[i], nodes[j]))))
        in_tree[j] = True
        closer = sub[j] < best
        best = np.where(closer, sub[j], best)
        parent = np.where(closer, j, parent)
    return edges


def uuas_counts(pred: np.ndarray, gold: np.ndarray, keep=None) -> tuple[int, int]:
    """(correct, total) undirected edges of one sentence: MST of `pred` against MST of `gold`.

    As in the reference code, both trees span the non-punctuation words only and the gold edges
    are the MST of the gold distances over those words.
    """
    gold_edges = mst_edges(gold, keep)
    return len(gold_edges & mst_edges(pred, keep)), len(gold_edges)


def _row_spearman(pred: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """Spearman rho of each row of `pred` with the same row of `gold` (average ranks for ties)."""
    from scipy.stats import rankdata

    rp, rg = rankdata(pred, axis=-1), rankdata(gold, axis=-1)
    rp = rp - rp.mean(axis=-1, keepdims=True)
    rg = rg - rg.mean(axis=-1, keepdims=True)
    den = np.sqrt((rp ** 2).sum(-1) * (rg ** 2).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (rp * rg).sum(-1) / den, np.nan)


def spearman_by_length(preds, golds, lengths=SPEARMAN_LENGTHS) -> tuple[float, int]:
    """The paper's DSpr (matrices: one rho per word's row) or NSpr (vectors: one per sentence).

    Rhos are averaged within each sentence length, then those means over the lengths in
    `lengths` (inclusive) that occur. Returns (mean, sentences used); a row whose prediction or
    gold is constant has no rho and is left out (the reference code would return NaN).
    """
    per_length = defaultdict(list)
    for p, g in zip(preds, golds):
        rhos = _row_spearman(np.atleast_2d(p), np.atleast_2d(g))
        per_length[len(g)].extend(rhos[np.isfinite(rhos)].tolist())
    lo, hi = lengths
    means = [np.mean(v) for n, v in per_length.items() if lo <= n <= hi and v]
    used = sum(1 for p, g in zip(preds, golds) if lo <= len(g) <= hi)
    return (float(np.mean(means)) if means else float("nan")), used


def root_correct(pred_depth: np.ndarray, heads, keep=None) -> bool:
    """Whether the least deep non-punctuation word (predicted) is the gold root."""
    pred = np.asarray(pred_depth, dtype=float)
    if keep is not None:
        pred = np.where(keep, pred, np.inf)
    return int(np.argmin(pred)) == int(np.flatnonzero(np.asarray(heads) == -1)[0])
