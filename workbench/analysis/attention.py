"""Attention as numbers: `attention(lm, texts)` (tidy DataFrame) and `attention_tensor(lm, text)`.

One pipeline serves every table, figure, view and widget:

1. `capture_attention`: eager forward passes over length-grouped, padded batches; each row is cut
   to its own tokens, so padding never leaks into a result. With `norms=True` it also keeps what
   norm-based attention needs (value-vector norms and Gram matrices, from forward hooks).
   The result (`AttentionCapture`) is cheap to re-transform: the widget caches it.
2. `AttentionCapture.transform(...)`: the mode (weights | rollout | flow | norm, see
   `attention_modes`) and the shared options, applied in this order:
   - `drop_special=True`: remove <s>, </s>, ... as queries and keys and renormalise every row
     over the remaining keys so it sums to 1 again (mode="norm": no renormalisation, norms are
     not a distribution; the remaining ||alpha_ij f(x_j)|| are kept as they are);
   - `merge_subwords=True`: merge tokens into words: SUM over the keys of a word (a row still sums
     to 1) and MEAN over the queries of a word. For mode="norm" a key word gets the norm of its
     pieces' summed vectors ||sum_{j in W} c_j f(x_j)|| (not the sum of their norms), where a
     query word's c_j is the mean of its pieces' attention (`attention_modes.merged_norms`);
   - `select=[...]`: keep only these query rows (unit indices or token/word strings);
     `aggregate` containing "queries" reduces them to one row (query = -1);
   - `aggregate` containing "heads" / "layers": reduce over them (`reduce` = mean | sum | max);
     the reduced axis is reported as -1. For mode="norm", aggregating heads gives the exact
     whole-layer norm ||sum_h alpha^h f_h(x)|| (Kobayashi et al.), not a mean of per-head norms.
3. `to_frame`: one row per (text_id, layer, head, query, key).

`query`/`key` index the units shown (tokens, or words with `merge_subwords`, after dropping
specials); `query_token`/`key_token` are readable text (no `Ġ`; a piece that
continues a word starts with `·`, see `tokens.display_token`). Sentence pairs
(`<s> A </s></s> B </s>`) are passed as `(a, b)` tuples or `pairs=`; `segment`/`key_segment`
say which sentence the query/key belongs to (0 = A, 1 = B).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import torch

from .. import schema as S
from ..capture import as_one_text, check_text_container, encode, forward, token_lengths
from ..config import check_positive_int
from ..errors import InputError
from ..models import LM, as_lm_dict
from ..tokens import TokenView, plain_token
from . import attention_modes as modes

ALL = -1  # value of an aggregated axis (head, layer or query) in frames
REDUCERS = ("mean", "sum", "max")
AGGREGATES = ("heads", "layers", "queries")
_BATCH_BYTES = 256 * 2**20  # cap on a batch's stacked attention tensor


@dataclass
class AttentionCapture:
    """One text's cached forward pass: everything every mode and option needs, on the CPU."""

    view: TokenView
    weights: torch.Tensor                   # (L, H, T, T) softmax weights, float32
    value_norms: torch.Tensor | None = None  # (L, H, T) ||f_h(x_j)||, for mode="norm"
    value_gram: torch.Tensor | None = None   # (L, T, H, H) <f_h(x_j), f_g(x_j)>
    pair_index: torch.Tensor | None = None   # (P, 2) token pairs (j, k), j != k, of one word
    pair_gram: torch.Tensor | None = None    # (L, P, H, H) <f_h(x_j), f_g(x_k)> for those pairs
    model: str = ""
    text_id: int = 0

    @property
    def num_layers(self) -> int:
        return self.weights.shape[0]

    @property
    def num_heads(self) -> int:
        return self.weights.shape[1]

    def transform(self, *, mode: str = "weights", layers: Sequence[int] | None = None,
                  heads: Sequence[int] | None = None, drop_special: bool = False,
                  merge_subwords: bool = False, select: Sequence[int | str] | None = None,
                  aggregate: Iterable[str] | str | None = None, reduce: str = "mean"):
        """Apply a mode and the shared options (see the module docstring).

        Returns `(tensor (L', H', Q, K), Units)` where `Units` names the query and key rows, the
        layers and the heads kept (-1 for an aggregate).
        """
        modes.check_mode(mode)
        agg = _check_aggregate(aggregate)
        if reduce not in REDUCERS:
            raise InputError(f"reduce={reduce!r}; use one of {REDUCERS}")
        layer_ids = _pick(layers, self.num_layers, "layer")
        head_ids = _pick(heads, self.num_heads, "head")
        w = self.weights[:, head_ids]                                   # (L, H', T, T)
        if mode == "weights":
            x = w[layer_ids]
        elif mode == "rollout":
            x = modes.attention_rollout(w)[layer_ids][:, None]                    # (L', 1, T, T)
            head_ids = [ALL]
        elif mode == "flow":
            x = modes.attention_flow(w, layer_ids)[:, None]
            head_ids = [ALL]
        else:  # norm
            if self.value_norms is None:
                raise InputError("mode='norm' needs value norms: capture with norms=True")
            if merge_subwords:
                x = self._word_norms(w[layer_ids], layer_ids, head_ids, drop_special,
                                     "heads" in agg)                    # (L', H' or 1, U, U)
                head_ids = [ALL] if "heads" in agg else head_ids
            elif "heads" in agg:
                g = self.value_gram[layer_ids][:, :, head_ids][:, :, :, head_ids]
                x = modes.norm_layer(w[layer_ids], g)[:, None]          # (L', 1, T, T)
                head_ids = [ALL]
            else:
                x = modes.norm_weights(w[layer_ids], self.value_norms[layer_ids][:, head_ids])
        units = _units(self.view, drop_special, merge_subwords)
        if not (mode == "norm" and merge_subwords):
            x = _apply_units(x, units, drop_special and mode != "norm")  # (L', H', U, U)
        query_ids = list(range(len(units.labels)))
        if select is not None:
            query_ids = _resolve_select(select, units.labels)
            x = x[:, :, query_ids]
        selected = [units.labels[q] for q in query_ids]
        if "queries" in agg:
            x = _reduce(x, 2, reduce)
            query_ids = [ALL]
        if "heads" in agg and head_ids != [ALL]:
            x = _reduce(x, 1, reduce)
            head_ids = [ALL]
        if "layers" in agg:
            x = _reduce(x, 0, reduce)
            layer_ids = [ALL]
        return x, Units(labels=units.labels, segments=units.segments, queries=query_ids,
                        layers=list(layer_ids), heads=list(head_ids), selected=selected)

    def _word_norms(self, w: torch.Tensor, layer_ids, head_ids, drop_special: bool,
                    whole_layer: bool) -> torch.Tensor:
        """Norm-based attention between words (see `attention_modes.merged_norms`)."""
        if self.pair_gram is None:
            raise InputError("mode='norm' with merge_subwords needs the word pairs' Gram "
                             "matrices: capture with capture_attention(..., norms=True)")
        units = _units(self.view, drop_special, True)
        keep = torch.tensor(units.keep)
        queries = units.members / units.members.sum(1, keepdim=True)    # (U, T_kept) means
        contrib = torch.einsum("ut,lhtk->lhuk", queries, w[:, :, keep])  # (L', H', U, T)
        heads = torch.tensor(head_ids)
        diag = self.value_gram[layer_ids][:, :, heads][..., heads]      # (L', T, H', H')
        pairs = {(int(j), int(k)): p for p, (j, k) in enumerate(self.pair_index)}
        grams = self.pair_gram[layer_ids][:, :, heads][..., heads]     # (L', P, H', H')

        def gram(j: int, k: int) -> torch.Tensor:
            return diag[:, j] if j == k else grams[:, pairs[(j, k)]]

        groups = [[units.keep[c] for c in row.nonzero().flatten().tolist()]
                  for row in units.members]
        return modes.merged_norms(contrib, gram, groups, whole_layer)

    def unit_positions(self, *, drop_special: bool = False,
                       merge_subwords: bool = False) -> list[list[int]]:
        """Token positions that make up each unit (query/key index) under these options."""
        units = _units(self.view, drop_special, merge_subwords)
        return [[units.keep[c] for c in row.nonzero().flatten().tolist()] for row in units.members]

    def to_frame(self, **options) -> pd.DataFrame:
        """The tidy frame of `transform(**options)` for this text."""
        x, u = self.transform(**options)
        return _frame(x.numpy(), u, self.model, self.text_id)


@dataclass
class Units:
    """Names of a transformed tensor's axes."""

    labels: list[str]         # key units (tokens or words), readable
    segments: list[int]       # sentence of each key unit (0 = A, 1 = B)
    queries: list[int]        # unit index of each query row (-1 = aggregated selection)
    layers: list[int]
    heads: list[int]

    selected: list[str]       # labels of the selected query units (before aggregation)

    @property
    def query_labels(self) -> list[str]:
        if self.queries == [ALL]:
            return [" + ".join(self.selected)]
        return [self.labels[q] for q in self.queries]


@dataclass
class _UnitMap:
    labels: list[str]
    segments: list[int]
    keep: list[int]            # token positions kept (specials dropped or not)
    members: torch.Tensor      # (U, T_kept) 1 where a kept token belongs to a unit


def _units(view: TokenView, drop_special: bool, merge: bool) -> _UnitMap:
    keep = [i for i, s in enumerate(view.special) if not (drop_special and s)]
    shown = view.display
    if not merge:
        members = torch.eye(len(keep))
        return _UnitMap([shown[i] for i in keep], [view.segment[i] for i in keep],
                        keep, members)
    labels, segments, groups = [], [], []
    seen = set()
    for col, pos in enumerate(keep):
        wid = view.word_ids[pos]
        if wid is None:
            labels.append(shown[pos])
            segments.append(view.segment[pos])
            groups.append([col])
        elif wid not in seen:
            seen.add(wid)
            labels.append(view.words[wid])
            segments.append(view.segment[pos])
            groups.append([keep.index(p) for p in view.word_spans[wid] if p in keep])
    members = torch.zeros(len(groups), len(keep))
    for u, cols in enumerate(groups):
        members[u, cols] = 1.0
    return _UnitMap(labels, segments, keep, members)


def _apply_units(x: torch.Tensor, units: _UnitMap, renormalise: bool) -> torch.Tensor:
    """(L, H, T, T) -> (L, H, U, U): drop tokens (renormalising rows), then merge into units."""
    if len(units.keep) != x.shape[-1]:
        idx = torch.tensor(units.keep)
        x = x[..., idx, :][..., idx]
        if renormalise:
            x = x / x.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    m = units.members.to(x.dtype)                                   # (U, T)
    if m.shape[0] == m.shape[1]:
        return x
    x = x @ m.T                                                     # keys: sum over a word
    return (m / m.sum(dim=1, keepdim=True)) @ x                     # queries: mean over a word


def _reduce(x: torch.Tensor, dim: int, how: str) -> torch.Tensor:
    if how == "mean":
        return x.mean(dim=dim, keepdim=True)
    if how == "sum":
        return x.sum(dim=dim, keepdim=True)
    return x.amax(dim=dim, keepdim=True)


def _pick(ids: Sequence[int] | int | None, n: int, what: str) -> list[int]:
    if ids is None:
        return list(range(n))
    if isinstance(ids, (int, np.integer)):
        ids = [ids]
    out = []
    for i in ids:
        i = int(i)
        if not -n <= i < n:
            raise InputError(f"{what} {i} does not exist: the model has {n} {what}s (0..{n - 1})")
        out.append(i % n)
    if not out:
        raise InputError(f"no {what}s selected: pass at least one, or None for all")
    return out


def _check_aggregate(aggregate) -> set[str]:
    if aggregate is None:
        return set()
    if isinstance(aggregate, str):
        aggregate = [aggregate]
    agg = set(aggregate)
    bad = agg - set(AGGREGATES)
    if bad:
        raise InputError(f"aggregate={sorted(bad)} is unknown; use any of {AGGREGATES}")
    return agg


def _resolve_select(select, labels: list[str]) -> list[int]:
    if isinstance(select, (str, int, np.integer)):
        select = [select]
    out = []
    for s in select:
        if isinstance(s, str):
            hits = [i for i, t in enumerate(labels) if t.strip() == s.strip()
                    or plain_token(t).strip() == s.strip()]
            if not hits:
                raise InputError(f"select: {s!r} is not one of the tokens {labels}")
            out += hits
        else:
            i = int(s)
            if not -len(labels) <= i < len(labels):
                raise InputError(f"select: position {i} is outside 0..{len(labels) - 1}")
            out.append(i % len(labels))
    if not out:
        raise InputError("select is empty: pass token positions or token strings, or None")
    return sorted(set(out))


def _frame(x: np.ndarray, u: Units, model: str, text_id: int) -> pd.DataFrame:
    """(L', H', Q, K) array -> tidy rows."""
    n_l, n_h, n_q, n_k = x.shape
    size = x.size
    l_idx = np.repeat(np.asarray(u.layers), n_h * n_q * n_k)
    h_idx = np.tile(np.repeat(np.asarray(u.heads), n_q * n_k), n_l)
    q_pos = np.tile(np.repeat(np.arange(n_q), n_k), n_l * n_h)
    k_pos = np.tile(np.arange(n_k), n_l * n_h * n_q)
    queries = np.asarray(u.queries)
    q_ids = queries[q_pos]
    q_labels = u.query_labels
    cats = list(dict.fromkeys(u.labels + q_labels))
    code = {c: i for i, c in enumerate(cats)}
    q_codes = np.asarray([code[t] for t in q_labels])[q_pos]
    k_codes = np.asarray([code[t] for t in u.labels])[k_pos]
    seg = np.asarray(u.segments)
    q_seg = np.where(q_ids >= 0, seg[np.clip(q_ids, 0, None)], -1)
    return pd.DataFrame({
        S.MODEL: pd.Categorical([model] * size) if size else [],
        S.TEXT_ID: np.full(size, text_id),
        S.SEGMENT: q_seg,
        S.KEY_SEGMENT: seg[k_pos],
        S.LAYER: l_idx,
        S.HEAD: h_idx,
        S.QUERY: q_ids,
        S.KEY: k_pos,
        S.QUERY_TOKEN: pd.Categorical.from_codes(q_codes, cats),
        S.KEY_TOKEN: pd.Categorical.from_codes(k_codes, cats),
        S.WEIGHT: x.reshape(-1).astype(np.float64),
    })


def _as_inputs(texts, pairs) -> list[tuple[str, str | None]]:
    if isinstance(texts, (str, tuple)):
        texts = [texts]
    check_text_container(texts, "texts")
    texts = list(texts)
    if not texts:
        raise InputError("texts is empty: pass a string, a list of strings or (a, b) pairs")
    if pairs is not None:
        pairs = [pairs] if isinstance(pairs, str) else list(pairs)
        if len(pairs) != len(texts):
            raise InputError(f"{len(texts)} texts but {len(pairs)} pairs: pass one pair per text")
        texts = list(zip(texts, pairs))
    out = []
    for i, t in enumerate(texts):
        a, b = (t if isinstance(t, tuple) else (t, None))
        if isinstance(t, tuple) and len(t) != 2:
            raise InputError(f"texts[{i}] is a tuple of {len(t)}; a sentence pair is (a, b)")
        for part in (a, b):
            if (part is not None or b is a) and (not isinstance(part, str) or not part.strip()):
                raise InputError(f"texts[{i}] has an empty or non-string part: {part!r}")
        out.append((a, b))
    return out


def capture_attention(lm: LM, texts, pairs: Sequence[str] | None = None, *, norms: bool = False,
                      batch_size: int = 8, max_length: int | None = None) -> list[AttentionCapture]:
    """Run `lm` once over `texts` and keep each text's attention (and value norms if `norms`).

    `texts`: a string, a list of strings, or (a, b) tuples for sentence pairs. Batches group texts
    of similar length; every capture is cut to its own tokens (no padding rows or columns).
    An input longer than `max_length` (None: the model's limit) is refused, never truncated.
    """
    batch_size = check_positive_int("batch_size", batch_size)
    items = _as_inputs(texts, pairs)
    lengths = _lengths(lm, items, max_length)       # refuses a text above max_length
    order = sorted(range(len(items)), key=lambda i: (items[i][1] is not None, -lengths[i]))
    out: list[AttentionCapture | None] = [None] * len(items)
    per_token = lm.num_layers * lm.num_heads * 4
    i = 0
    while i < len(order):
        longest = max(lengths[order[i]], 1)
        cap = max(1, min(batch_size, _BATCH_BYTES // (per_token * longest * longest)))
        group = [order[i]]
        while (len(group) < cap and i + len(group) < len(order)
               and (items[order[i + len(group)]][1] is None) == (items[order[i]][1] is None)):
            group.append(order[i + len(group)])
        i += len(group)
        a_list = [items[j][0] for j in group]
        b_list = [items[j][1] for j in group] if items[group[0]][1] is not None else None
        batch = encode(lm, a_list, b_list, max_length=max_length)
        pairs = [_word_pairs(v) for v in batch.views]
        if norms:
            with modes.value_capture(lm, [p.to(lm.device) for p in pairs]) as values:
                res = forward(lm, batch, attentions=True)
        else:
            res = forward(lm, batch, attentions=True)
        att = torch.stack(res.attentions, dim=1)                      # (B, L, H, T, T)
        for row, j in enumerate(group):
            n = len(batch.views[row])
            w = att[row, :, :, :n, :n].float().cpu().clone()         # (L, H, n, n)
            vn = vg = pg = None
            if norms:
                vn, vg = values.stacked(row, n)
                pg = values.pairs(row)
            out[j] = AttentionCapture(view=batch.views[row], weights=w, value_norms=vn,
                                      value_gram=vg, pair_index=pairs[row] if norms else None,
                                      pair_gram=pg, model=lm.name, text_id=j)
    return out  # type: ignore[return-value]


def _lengths(lm: LM, items: list[tuple[str, str | None]], max_length: int | None) -> list[int]:
    """Token count of each input (single texts and pairs tokenised apart)."""
    lengths = [0] * len(items)
    for is_pair in (False, True):
        idx = [i for i, (_, b) in enumerate(items) if (b is not None) == is_pair]
        if idx:
            found = token_lengths(lm, [items[i][0] for i in idx],
                                  [items[i][1] for i in idx] if is_pair else None, max_length)
            for i, n in zip(idx, found):
                lengths[i] = n
    return lengths


def _word_pairs(view: TokenView) -> torch.Tensor:
    """(P, 2) ordered pairs (j, k), j != k, of token positions inside one word of `view`."""
    pairs = [(j, k) for span in view.word_spans for j in span for k in span if j != k]
    return torch.tensor(pairs, dtype=torch.long).reshape(-1, 2)


def attention(lm, texts, *, pairs: Sequence[str] | None = None,
              layers: Sequence[int] | int | None = None, heads: Sequence[int] | int | None = None,
              mode: str = "weights", drop_special: bool = False, merge_subwords: bool = False,
              select: Sequence[int | str] | None = None,
              aggregate: Iterable[str] | str | None = None, reduce: str = "mean",
              batch_size: int = 8, max_length: int | None = None) -> pd.DataFrame:
    """Attention of `lm` (or a dict {name: LM}) on `texts` as a tidy DataFrame.

    One row per (model, text_id, layer, head, query, key) with columns `segment`, `key_segment`,
    `query_token`, `key_token`, `weight`. `mode`: "weights" (softmax weights per head),
    "rollout" / "flow" (Abnar & Zuidema 2020; heads averaged, reported as head -1), "norm"
    (Kobayashi et al. 2020: ||alpha f(x)||, not a distribution). Options (drop_special,
    merge_subwords, select, aggregate, reduce) are described in the module docstring.
    Rows of "weights", "rollout" and "flow" sum to 1 (also after dropping specials).

    >>> wb.attention(lm, "The cat sat.", layers=[0], heads=[0])        # doctest: +SKIP
    >>> wb.attention(lm, [("A man eats.", "He is hungry.")], merge_subwords=True)  # doctest: +SKIP
    """
    modes.check_mode(mode)
    options = dict(mode=mode, layers=layers, heads=heads, drop_special=drop_special,
                   merge_subwords=merge_subwords, select=select, aggregate=aggregate,
                   reduce=reduce)
    frames = []
    for name, lm_one in as_lm_dict(lm).items():
        caps = capture_attention(lm_one, texts, pairs, norms=(mode == "norm"),
                                 batch_size=batch_size, max_length=max_length)
        for c in caps:
            c.model = name
        frames += [c.to_frame(**options) for c in caps]
    df = pd.concat(frames, ignore_index=True)
    for col in (S.MODEL, S.QUERY_TOKEN, S.KEY_TOKEN):
        df[col] = df[col].astype("category")
    return df


def attention_tensor(lm: LM, text, *, pair: str | None = None, mode: str = "weights",
                     layers: Sequence[int] | int | None = None,
                     heads: Sequence[int] | int | None = None, drop_special: bool = False,
                     merge_subwords: bool = False, select: Sequence[int | str] | None = None,
                     aggregate: Iterable[str] | str | None = None, reduce: str = "mean",
                     max_length: int | None = None) -> tuple[torch.Tensor, list[str]]:
    """The tensor twin of `attention` for one text: `(tensor[layer, head, query, key], tokens)`.

    `tokens` names the key axis (tokens, or words with `merge_subwords`); the same options as
    `attention` apply, and an aggregated axis has length 1. Tensor on the CPU, float32.
    """
    if isinstance(text, (list, tuple)) and not (isinstance(text, tuple) and len(text) == 2
                                                and pair is None):
        raise InputError("attention_tensor takes one text (or one (a, b) pair); "
                         "use wb.attention for many texts")
    cap = capture_attention(lm, [text], [pair] if pair is not None else None,
                            norms=(mode == "norm"), max_length=max_length)[0]
    x, u = cap.transform(mode=mode, layers=layers, heads=heads, drop_special=drop_special,
                         merge_subwords=merge_subwords, select=select, aggregate=aggregate,
                         reduce=reduce)
    return x, u.labels


def attention_qk(lm: LM, text, *, pair: str | None = None,
                 max_length: int | None = None) -> dict:
    """Query and key vectors of every head for one text (the query/key view's data).

    Returns {"queries": (L, H, T, d), "keys": (L, H, T, d), "weights": (L, H, T, T), "tokens"}
    as CPU float32 tensors, captured with forward hooks on the stock model's projections, so
    softmax(q k^T / sqrt(d)) reproduces `weights` (RoBERTa-style scaled dot-product attention).
    """
    text, pair = as_one_text(text), None if pair is None else as_one_text(pair, "pair")
    batch = encode(lm, [text], [pair] if pair is not None else None, max_length=max_length)
    with modes.qk_capture(lm) as store:
        res = forward(lm, batch, attentions=True)
    n = len(batch.views[0])
    return {
        "queries": torch.stack([x[0, :, :n] for x in store["queries"]]).cpu(),
        "keys": torch.stack([x[0, :, :n] for x in store["keys"]]).cpu(),
        "weights": torch.stack([a[0, :, :n, :n] for a in res.attentions]).float().cpu(),
        "tokens": batch.views[0].tokens,
    }
