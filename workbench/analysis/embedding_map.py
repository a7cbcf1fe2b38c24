"""Embedding maps: 2-D projections of token, word or sentence vectors, one map per layer.

What belongs here: `embedding_map(lm, texts, ...)`, which computes `features` (or takes ready ones)
and projects each layer separately with PCA (scikit-learn) or UMAP (when `umap-learn` is
installed) into a tidy frame (model, layer, method, x, y, text_id, token/word/text, label) that
`workbench.plots.representations.embedding_scatter` draws with a layer slider. Each layer gets
its own projection, so axes are comparable within a layer, not across layers.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from .. import schema as S
from ..errors import InputError, MissingDependencyError
from .features import Features, features
from ..config import check_positive_int
from .streaming import is_streamed, pca2_streamed

METHODS = ("pca", "umap")


def _project(x: np.ndarray, method: str, seed: int) -> tuple[np.ndarray, list[float]]:
    """(N, D) -> (N, 2) and the explained variance ratio of each axis (PCA; NaN otherwise)."""
    if method == "pca":
        from sklearn.decomposition import PCA

        pca = PCA(n_components=2, random_state=seed).fit(x)
        return pca.transform(x), pca.explained_variance_ratio_.tolist()
    try:
        import umap
    except ImportError:
        raise MissingDependencyError(
            "method='umap' needs the umap-learn package: `pip install umap-learn`, or use method='pca'"
        ) from None
    return umap.UMAP(n_components=2, random_state=seed).fit_transform(x), [np.nan, np.nan]


def _row_labels(feats: Features, labels) -> np.ndarray | None:
    if labels is None:
        return None
    if isinstance(labels, str):
        if labels not in feats.index:
            raise InputError(f"labels={labels!r} is not a column of the features' index "
                             f"{list(feats.index.columns)}; pass a column name or a list")
        return feats.index[labels].to_numpy()
    labels = np.asarray(labels, dtype=object)
    if len(labels) == len(feats):
        return labels
    if len(labels) == len(feats.texts):  # one label per text, spread over its tokens/words
        return labels[feats.index[S.TEXT_ID].to_numpy()]
    raise InputError(f"{len(labels)} labels for {len(feats)} rows and {len(feats.texts)} texts: "
                     "pass one label per row or one per text")


def embedding_map(source, texts=None, *, layers="all", pool: str = "tokens", method: str = "pca",
                  labels: Sequence | str | None = None, max_points: int | None = 5000, seed: int = 0,
                  batch_size: int = 32, progress: bool = True, cache: bool = True) -> pd.DataFrame:
    """Per-layer 2-D map of vectors: an `LM` with `texts`, or ready `Features`.

    `labels`: one per row, one per text, or the name of an index column (e.g. "token") to colour
    by. Rows beyond `max_points` are subsampled (seeded) before projecting; features on disk
    (`features(..., out=...)`) get their PCA axes from every row, in blocks (`streaming`).
    Columns: model, layer, method, x, y, variance_x, variance_y (the share of the layer's variance
    along each axis: PCA's explained variance ratio; NaN for UMAP), the features' index columns,
    label (when given) and text.
    """
    check_positive_int("max_points", max_points, allow_none=True)
    if method not in METHODS:
        raise InputError(f"method={method!r}; use one of {METHODS}")
    if isinstance(source, Features):
        feats = source
    else:
        if texts is None:
            raise InputError("embedding_map(lm, texts): pass the texts to map")
        feats = features(source, texts, layers=layers, pool=pool, batch_size=batch_size,
                         progress=progress, cache=cache)
    if len(feats) < 3:
        raise InputError(f"only {len(feats)} vectors: a 2-D map needs at least 3 (add texts)")
    y = _row_labels(feats, labels)
    keep = np.arange(len(feats))
    if max_points is not None and len(feats) > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(len(feats), size=max_points, replace=False))
    index = feats.index.iloc[keep].reset_index(drop=True)
    parts = []
    for j, layer in enumerate(feats.layers):
        if method == "pca" and is_streamed(feats.array):   # fitted on every row, in blocks
            mean, comps, ratio = pca2_streamed(feats.array, j)
            xy = (np.asarray(feats.array[keep, j], np.float64) - mean) @ comps.T
        else:
            xy, ratio = _project(feats.layer(layer)[keep], method, seed)
        part = index.copy()
        part.insert(0, S.VARIANCE_Y, ratio[1])
        part.insert(0, S.VARIANCE_X, ratio[0])
        part.insert(0, S.Y, xy[:, 1])
        part.insert(0, S.X, xy[:, 0])
        part.insert(0, S.METHOD, method)
        part.insert(0, S.LAYER, layer)
        if y is not None:
            part[S.LABEL] = y[keep]
        parts.append(part)
    out = pd.concat(parts, ignore_index=True)
    out.insert(0, S.MODEL, feats.model)
    if S.TEXT not in out:  # hover text for token/word maps
        out[S.TEXT] = [feats.texts[i] for i in out[S.TEXT_ID]]
    return out
