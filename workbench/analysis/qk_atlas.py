"""The joint query-key atlas (Yeh et al. 2023, "AttentionViz"), for any checkpoint, offline.

What belongs here: `qk_vectors(lm, texts)` captures the query and key vector of every token for
every (layer, head) — the outputs of the query/key projections split into heads, before the
1/sqrt(d) scaling; `align_qk(q, k)` applies AttentionViz's two softmax-preserving changes; and
`qk_atlas(lm, texts)` projects each head's queries and keys JOINTLY into 2-D (one projection for
both, so a query lies near the keys it attends to) and returns one tidy row per
(layer, head, kind, token).

Why the alignment leaves attention unchanged. Head h's weights are softmax_k(q . k / sqrt(d))
over the keys of one sentence. In AttentionViz's order:
- Translation first: k -> k + c changes q . k by q . c, which is the same for every key of a
  given query, and softmax is invariant to adding a constant to a row. With c = mean(q) - mean(k)
  the key cloud is moved onto the query cloud, so distance can track the dot product:
  |q - k|^2 = |q|^2 + |k|^2 - 2 q . k, near where norms are alike.
- Then scaling: q -> a q and k -> k / a leaves every q . k unchanged. With
  a = sqrt(mean|k + c| / mean|q|) queries and translated keys end with exactly the same mean norm
  (scaling after translating keeps that equality; scaling first, as this module once did, lets
  the translation undo it), so neither cloud collapses to a point in the plot.
`tests/test_qk_atlas.py` checks that softmax(q' k'^T / sqrt(d)) equals the model's attention.

Projection: "pca" (scikit-learn, always; linear, so the grid of all heads is fast), "tsne"
(scikit-learn) or "umap" (umap-learn, when installed); the non-linear ones cost seconds per head,
so restrict them with `layers=`/`heads=`. Labels per token: `token_type` (special / punct / word
start / continuation), `position_bucket` (0, 1-3, 4-7, 8-15, ...), and `pos` (spaCy's coarse
part of speech, with the syntax extra).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from .. import schema as S
from ..capture import as_text_list, batches, encode, forward, token_lengths
from ..errors import InputError, MissingDependencyError
from ..config import (check_bool, check_choice, check_indices, check_int,
                      check_positive_int, check_sequence)
from ..models import LM, check_lm
from ..tokens import tokenize
from .attention_modes import qk_capture
from .heads import is_punctuation
from .syntax_heads import check_nlp

METHODS = ("pca", "tsne", "umap")
LABELS = (S.TOKEN_TYPE, S.POSITION_BUCKET, S.POS)
KINDS = ("query", "key")


@dataclass
class QKVectors:
    """Query and key vectors of every token: `queries`/`keys` (L, H, N, d) float32 numpy arrays.

    `tokens` has one row per token (N): text_id, position, token, token_type, position_bucket.
    """

    queries: np.ndarray
    keys: np.ndarray
    tokens: pd.DataFrame
    layers: list[int]
    texts: list[str]


def token_type(token: str, special: bool, word_start: bool) -> str:
    if special:
        return "special"
    if is_punctuation(token):
        return "punct"
    return "word" if word_start else "continuation"


def position_bucket(position: int) -> str:
    """0, 1-3, 4-7, 8-15, ... (powers of two), so early and late positions separate."""
    if position == 0:
        return "0"
    if position < 4:
        return "1-3"
    low = 1 << (int(position).bit_length() - 1)
    return f"{low}-{2 * low - 1}"


def _check_layers(lm: LM, layers) -> list[int]:
    return check_indices("layers", layers, lm.num_layers, "layer")


def qk_vectors(lm: LM, texts, *, layers="all", batch_size: int = 16,
               max_length: int | None = None) -> QKVectors:
    """Capture the per-head query and key vectors of every token of `texts` (see module doc)."""
    check_lm(lm)
    texts = as_text_list(texts)
    keep = _check_layers(lm, layers)
    batch_size = check_positive_int("batch_size", batch_size)
    per_text: dict[int, tuple] = {}
    for idx in batches(token_lengths(lm, texts, max_length=max_length), batch_size):  # by length
        batch = encode(lm, [texts[i] for i in idx], max_length=max_length)
        with qk_capture(lm) as store:
            forward(lm, batch)
        q_all = torch.stack([store["queries"][la] for la in keep], 1).cpu()  # (B, L', H, T, d)
        k_all = torch.stack([store["keys"][la] for la in keep], 1).cpu()
        for r, i in enumerate(idx):
            view, n = batch.views[r], len(batch.views[r])
            rows = [{S.TEXT_ID: i, S.POSITION: p, S.TOKEN: t,
                     S.TOKEN_TYPE: token_type(t, sp, ws), S.POSITION_BUCKET: position_bucket(p)}
                    for p, (t, sp, ws) in enumerate(zip(view.tokens, view.special,
                                                        view.word_start))]
            per_text[i] = (q_all[r, :, :, :n].numpy(), k_all[r, :, :, :n].numpy(), rows)
    order = [per_text[i] for i in range(len(texts))]               # back to text order
    return QKVectors(np.concatenate([o[0] for o in order], 2),     # (L', H, N, d)
                     np.concatenate([o[1] for o in order], 2),
                     pd.DataFrame([row for o in order for row in o[2]]), keep, texts)


def align_qk(q: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """AttentionViz's translation then scaling of one head: (N, d), (N, d) -> q', k', scale a.

    Afterwards mean|q'| == mean|k'| (module doc); softmax over any subset of keys is unchanged.
    """
    q, k = q.astype(np.float64), k.astype(np.float64)
    k = k + (q.mean(0) - k.mean(0))                                # keys onto the queries' centroid
    nq, nk = np.linalg.norm(q, axis=1).mean(), np.linalg.norm(k, axis=1).mean()
    a = float(np.sqrt(nk / nq)) if nq > 0 and nk > 0 else 1.0
    return q * a, k / a, a


def project(x: np.ndarray, method: str, seed: int) -> tuple[np.ndarray, float]:
    """(M, d) -> (M, 2) and the share of variance the 2-D map keeps (PCA; NaN otherwise)."""
    if method == "pca":
        from sklearn.decomposition import PCA

        pca = PCA(n_components=2, random_state=seed).fit(x)   # exact for (M, d) with d small
        return pca.transform(x), float(pca.explained_variance_ratio_.sum())
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = float(min(30, max(2, (len(x) - 1) // 3)))
        return TSNE(n_components=2, perplexity=perplexity, init="pca",
                    random_state=seed).fit_transform(x), float("nan")
    try:
        import umap
    except ImportError:
        raise MissingDependencyError("method='umap' needs umap-learn: `pip install umap-learn`, "
                                     "or use method='pca' or 'tsne'") from None
    return umap.UMAP(n_components=2, random_state=seed).fit_transform(x), float("nan")


def pos_tags(lm: LM, texts: Sequence[str], tokens: pd.DataFrame, nlp=None) -> list[str]:
    """spaCy's coarse POS of the word each token starts in ('special' for <s>, </s>)."""
    from .syntax_heads import load_parser

    parser = load_parser(nlp)
    docs = list(parser.pipe(texts))
    out = []
    for text_id, part in tokens.groupby(S.TEXT_ID, sort=False):
        enc = tokenize(lm.tokenizer, texts[text_id], return_offsets_mapping=True,
                       truncation=True, max_length=len(part))
        starts = {t.idx + j: t.pos_ for t in docs[text_id] for j in range(len(t.text))}
        for (a, b), kind in zip(enc["offset_mapping"], part[S.TOKEN_TYPE]):
            first = next((c for c in range(a, b) if c in starts), None)
            out.append("special" if kind == "special" or first is None else starts[first])
    return out


def _check_options(method: str, labels, heads, lm: LM, align, seed) -> tuple[list[str], list[int]]:
    check_choice("method", method, METHODS)
    check_bool("align", align)
    check_int("seed", seed, minimum=0, maximum=2**32 - 1)        # scikit-learn's random_state
    if labels is not None and not isinstance(labels, str):
        labels = check_sequence("labels", labels)
    labels = [labels] if isinstance(labels, str) else list(labels or [])
    bad = [x for x in labels if not isinstance(x, str) or x not in LABELS]
    if bad:
        raise InputError(f"labels={bad!r}: choose from {LABELS}")
    return labels, check_indices("heads", heads, lm.num_heads, "head")


def qk_atlas(lm: LM, texts, *, layers="all", heads="all", method: str = "pca",
             align: bool = True, labels=(S.TOKEN_TYPE, S.POSITION_BUCKET), nlp=None,
             seed: int = 0, batch_size: int = 16, max_length: int | None = None) -> pd.DataFrame:
    """Queries and keys of every token, every head, jointly projected to 2-D (see module doc).

    Returns one row per (layer, head, kind, token): model, layer, head, kind ("query"/"key"),
    text_id, position, token, x, y and the requested `labels` columns. `align=False` skips the
    AttentionViz scaling/translation. Per head, repeated on its rows: `scale` (the query scale
    factor; 1 without `align`), `variance_kept` (the share of variance the 2-D map keeps: PCA; NaN
    for t-SNE / UMAP); on every row `method` and `align` (the arguments). Tokens per head:
    `(df.kind == "query").sum() // df.groupby(["layer", "head"]).ngroups`.

    >>> atlas = wb.qk_atlas(lm, sentences)                       # doctest: +SKIP
    >>> wb.plots.qk_atlas.atlas_grid(atlas)                      # doctest: +SKIP
    """
    check_lm(lm)
    labels, head_ids = _check_options(method, labels, heads, lm, align, seed)
    check_nlp(nlp)
    vec = qk_vectors(lm, texts, layers=layers, batch_size=batch_size, max_length=max_length)
    n = len(vec.tokens)
    blocks, info = [], []
    for li, layer in enumerate(vec.layers):
        for h in head_ids:
            q, k = vec.queries[li, h], vec.keys[li, h]                      # (N, d)
            q, k, a = align_qk(q, k) if align else (q, k, 1.0)
            xy, kept = project(np.concatenate([q, k]), method, seed)        # (2N, 2)
            blocks.append(xy.astype(np.float32))
            info.append({S.LAYER: layer, S.HEAD: h, S.SCALE: a, S.VARIANCE_KEPT: kept})
    xy = np.concatenate(blocks)                                             # (P * 2N, 2)
    per = len(blocks)
    df = pd.DataFrame({
        S.MODEL: lm.name,
        S.LAYER: np.repeat([i[S.LAYER] for i in info], 2 * n).astype(np.int16),
        S.HEAD: np.repeat([i[S.HEAD] for i in info], 2 * n).astype(np.int16),
        S.KIND: pd.Categorical(np.tile(np.repeat(KINDS, n), per), categories=KINDS),
        S.TEXT_ID: np.tile(vec.tokens[S.TEXT_ID].to_numpy(), 2 * per).astype(np.int32),
        S.POSITION: np.tile(vec.tokens[S.POSITION].to_numpy(), 2 * per).astype(np.int32),
        S.X: xy[:, 0], S.Y: xy[:, 1],
        S.SCALE: np.repeat([float(i[S.SCALE]) for i in info], 2 * n),       # float64: the
        S.VARIANCE_KEPT: np.repeat([i[S.VARIANCE_KEPT] for i in info], 2 * n),  # fits' values
        S.METHOD: pd.Categorical.from_codes(np.zeros(2 * n * per, np.int8), categories=[method]),
        S.ALIGN: align})
    columns = {c: vec.tokens[c] for c in [S.TOKEN] + [c for c in labels if c != S.POS]}
    if S.POS in labels:
        columns[S.POS] = pd.Series(pos_tags(lm, vec.texts, vec.tokens, nlp))
    for col, values in columns.items():     # factorise the N tokens once, then repeat the codes
        codes, uniques = pd.factorize(values, sort=True)
        df[col] = pd.Categorical.from_codes(np.tile(codes, 2 * per), categories=uniques)
    df[S.MODEL] = df[S.MODEL].astype("category")
    return df
