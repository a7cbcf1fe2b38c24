"""A 2-D map of heads by how alike their attention is, and a pattern label for each head.

Distance. We follow Clark et al. 2019 (section 6): two heads are close when, token by token, they
spread their attention alike. For every non-padding query token of the sample, the two heads'
attention rows over the same keys are compared with the Jensen-Shannon divergence (base 2, in
[0, 1]); the divergences are averaged over all query tokens and the distance is the square root
(the Jensen-Shannon distance, a metric). We chose this over the two cheaper alternatives because
(a) average maps resampled to a fixed length keep only positional behaviour and blur heads that
attend by content (to punctuation, to a syntactic head) into one grey map, and (b) behaviour
feature vectors (the `head_stats` columns) only see the behaviours we thought to measure. The
cost is O(heads^2 x tokens x keys), so `max_texts` (default 200 sentences) bounds the sample.
The heads are placed in 2-D by metric MDS (scikit-learn) on the precomputed distances.

Patterns, in the spirit of Kovaleva et al. 2019, from the same pass's `head_stats` (thresholds
are arguments):

1. "diagonal": attn_self + attn_prev + attn_next >= `threshold` (default 0.5): attention to the
   token itself or a neighbour;
2. "vertical": attn_bos + attn_eos + attn_punct >= `threshold`: most attention goes to a few
   fixed tokens (<s>, </s>, punctuation) whatever the query, which draws vertical stripes;
3. "block": neither, but local: the mean attention distance is at most `block_ratio` (0.5) of
   the distance uniform attention over the same texts would give, so each query looks within a
   window around itself (Kovaleva's blocks are sentence-wide for sentence pairs; on single
   sentences the analogue is a local window);
4. "heterogeneous": everything else.
When both 1 and 2 hold the larger share wins.
"""

from __future__ import annotations

import inspect

import numpy as np
import pandas as pd
import torch

from .. import schema as S
from ..capture import as_text_list, forward
from ..config import check_finite, check_int
from ..errors import InputError
from ..models import LM
from .heads import HeadStatsAccumulator, KeyMasks, iter_batches, key_masks

PATTERNS = ("diagonal", "vertical", "block", "heterogeneous")


def js_divergence_sums(att: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Summed per-query Jensen-Shannon divergences between every pair of heads.

    `att`: (N, B, T, T) attention of N heads on one batch; `valid`: (B, T) non-padding tokens.
    Returns (N, N): sum over valid queries of JS(att[i, b, q], att[j, b, q]), base 2.
    """
    rows = att[:, valid].float()                                  # (N, R, T) valid query rows
    log2 = np.log(2.0)
    ent = -torch.special.xlogy(rows, rows).sum(-1) / log2         # (N, R) row entropies, bits
    ent_sum = ent.sum(-1)                                         # (N,)
    n = rows.shape[0]
    out = torch.zeros(n, n, dtype=torch.float64, device=att.device)
    for i in range(n):
        mid = 0.5 * (rows[i][None] + rows[i:])                    # (N - i, R, T)
        h_mid = -torch.special.xlogy(mid, mid).sum((-1, -2)) / log2  # (N - i,)
        js = h_mid - 0.5 * (ent_sum[i] + ent_sum[i:])
        out[i, i:] = js.double()
        out[i:, i] = js.double()
    out.fill_diagonal_(0.0)
    return out.clamp_(min=0.0)


def label_patterns(stats: pd.DataFrame, *, threshold: float = 0.5, block_ratio: float = 0.5,
                   uniform_distance: float | None = None) -> pd.Series:
    """Pattern of each row of a `head_stats` frame (rule in the module docstring); the uniform
    reference is the frame's `uniform_distance` column unless `uniform_distance` is given."""
    diag = stats[S.ATTN_SELF] + stats[S.ATTN_PREV] + stats[S.ATTN_NEXT]
    vert = stats[S.ATTN_BOS] + stats[S.ATTN_EOS] + stats[S.ATTN_PUNCT]
    if uniform_distance is not None:
        ref = uniform_distance
    elif S.UNIFORM_DISTANCE in stats:
        ref = stats[S.UNIFORM_DISTANCE]              # per row: frames of several corpora may mix
    else:
        raise InputError("label_patterns needs the mean distance of uniform attention: pass "
                         "uniform_distance=, or a frame from head_stats (its uniform_distance "
                         "column)")
    local = stats[S.DISTANCE] <= block_ratio * ref
    label = np.where(diag >= threshold, "diagonal", "heterogeneous").astype(object)
    label = np.where((vert >= threshold) & (vert > diag), "vertical", label)
    label = np.where((label == "heterogeneous") & local, "block", label)
    return pd.Series(label, index=stats.index, name=S.PATTERN)


def _mds(dist: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.manifold import MDS

    params = inspect.signature(MDS).parameters
    if "metric_mds" in params:            # scikit-learn >= 1.8
        mds = MDS(n_components=2, metric="precomputed", metric_mds=True, init="classical_mds",
                  random_state=seed)
    else:
        mds = MDS(n_components=2, dissimilarity="precomputed", n_init=4, random_state=seed)
    return mds.fit_transform(dist)


def head_clusters(lm: LM, texts, *, max_texts: int = 200, batch_size: int = 16,
                  threshold: float = 0.5, block_ratio: float = 0.5, seed: int = 0,
                  max_length: int | None = None, return_distances: bool = False,
                  progress: bool = True):
    """Map the heads of `lm` in 2-D by Jensen-Shannon distance and label their pattern.

    One pass over the first `max_texts` texts gives both the distances and `head_stats`.
    Returns a frame with one row per (layer, head): model, layer, head, x, y, pattern and the
    `head_stats` columns. With `return_distances=True`, returns `(frame, distances)` where
    `distances` is a square DataFrame indexed by (layer, head) on both axes.
    """
    check_int("max_texts", max_texts, minimum=1)
    check_finite("threshold", threshold, low=0, high=1), check_finite("block_ratio", block_ratio, low=0, high=1)
    texts = as_text_list(texts)[:max_texts]
    L, H = lm.num_layers, lm.num_heads
    acc = HeadStatsAccumulator(L, H, lm.device)
    js = torch.zeros(L * H, L * H, dtype=torch.float64, device=lm.device)
    for _, batch in iter_batches(lm, texts, batch_size=batch_size, max_length=max_length,
                                 progress=progress, desc="head clusters"):
        att = forward(lm, batch, attentions=True).attentions      # L x (B, H, T, T)
        masks: KeyMasks = key_masks(lm, batch).to(lm.device)
        acc.update(att, masks)
        stacked = torch.stack(att, 0).transpose(1, 2).flatten(0, 1)  # (L * H, B, T, T)
        js += js_divergence_sums(stacked, masks.valid)
    queries = max(float(acc.queries.item()), 1.0)
    dist = np.sqrt((js / queries).cpu().numpy())
    df = acc.frame(lm.name)
    xy = _mds(dist, seed) if L * H > 2 else np.zeros((L * H, 2))
    df.insert(3, S.X, xy[:, 0])
    df.insert(4, S.Y, xy[:, 1])
    df.insert(5, S.PATTERN, label_patterns(df, threshold=threshold, block_ratio=block_ratio))
    if not return_distances:
        return df
    index = pd.MultiIndex.from_arrays([df[S.LAYER], df[S.HEAD]])
    return df, pd.DataFrame(dist, index=index, columns=index)
