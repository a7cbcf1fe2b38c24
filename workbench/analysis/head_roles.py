"""Every head named: `head_roles(lm, texts)` -> one row per (layer, head) with a role and its score.

The vocabulary is closed (`ROLES`). Every targeted role is scored on ONE scale, the share of
query tokens whose most-attended key is the role's target (Clark et al. 2019's "top" statistics;
for a syntax role, the share of dependents whose most-attended other word is their governor,
which is Clark et al.'s head accuracy). One scale makes roles comparable. A head is, in this
order: (1) "broad" when its attention is spread nearly uniformly (then its top key is noise, or
a tie); else (2) the best-scoring positional or token role reaching `threshold` (it describes
what the head does for most tokens); else (3) the best dependency role reaching it (a behaviour
on one relation's dependents only); else (4) "mixed". `runner_up` is the best-scoring other
candidate. The vocabulary:

- "previous token", "next token", "self", "offset -k" / "offset +k" (2 <= k <= `max_offset`):
  the top key sits at a fixed distance from the query;
- "<s>", "</s>", "punctuation": the top key is the first special token, a separator, or a
  punctuation token (Clark et al.'s no-op heads);
- "dep: REL" (with the syntax extra): the head points from dependents of relation REL to their
  governors (via `syntax_heads`); only relations seen at least `min_arcs` times whose accuracy
  beats the best fixed-offset baseline by `syntax_margin` count, so a previous-token head is not
  renamed after a relation whose governor merely sits next door;
- "broad": the attention entropy is at least `broad` times the entropy uniform attention would
  have on the same texts (bag-of-words heads, Clark et al. section 3's broad attention of the
  lower layers);
- "mixed": none of the above (its `score` is NaN: no role is behind it).

Thresholds (arguments, with defaults):

- `threshold=0.5`: a role needs its target to be the top key for a MAJORITY of queries. Chance
  is far below that: a random top key hits one position with probability 1/n, about 0.04 on
  25-token sentences, so 0.5 is >10x chance, and on the demo model the best-role shares are
  bimodal (the clear positional heads score 0.8-0.95, the next group below 0.5; see notebook 09).
- `broad=0.8`: normalised entropy. A head that puts half its mass on one token and spreads the
  rest uniformly over n=25 keys has (ln 2 + 0.5 ln 25) / ln 25 = 0.72, so 0.8 separates "spread
  over everything" from "half on one token".
- `syntax_margin=0.1` over the fixed-offset baseline and `min_arcs=20` arcs: an accuracy on
  fewer arcs has a standard error above 0.1.

Each row also carries `weight`, the attention MASS on the role's target (Clark's attn_*
statistics), and Kovaleva et al. 2019's pattern class from `head_clusters.label_patterns` as
a cross-check: `df.attrs["pattern_agreement"]` is the share of heads whose role implies a class
(`EXPECTED_PATTERN`) that carry that class.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .. import schema as S
from ..capture import as_text_list, batches, encode, forward, token_lengths
from ..errors import InputError, MissingDependencyError
from ..config import (check_bool, check_choice, check_finite, check_int,
                      check_positive_int)
from ..models import LM, check_lm
from .head_clusters import label_patterns
from .heads import head_stats
from .syntax_heads import check_nlp

ROLES = {
    "previous token": "top key is the token before the query",
    "next token": "top key is the token after the query",
    "self": "top key is the query itself",
    "offset": "top key at a fixed distance k (2 <= |k| <= max_offset), named 'offset -k'/'offset +k'",
    "<s>": "top key is <s> / [CLS]",
    "</s>": "top key is a </s> / [SEP] separator",
    "punctuation": "top key is a punctuation token",
    "dep": "points from dependents of one relation to their governor, named 'dep: REL'",
    "broad": "no target; attention spread almost uniformly (normalised entropy >= broad)",
    "mixed": "no target and not broad",
}
# role family -> the Kovaleva et al. 2019 classes consistent with it
EXPECTED_PATTERN = {
    "previous token": {"diagonal"}, "next token": {"diagonal"}, "self": {"diagonal"},
    "offset": {"diagonal", "block"}, "<s>": {"vertical"}, "</s>": {"vertical"},
    "punctuation": {"vertical"}, "broad": {"heterogeneous", "block"},
}
# targeted roles read off head_stats: role -> (top-key share column, attention-mass column)
_STAT_ROLES = {"<s>": (S.TOP_BOS, S.ATTN_BOS), "</s>": (S.TOP_EOS, S.ATTN_EOS),
               "punctuation": (S.TOP_PUNCT, S.ATTN_PUNCT)}


def family(role: str) -> str:
    """The vocabulary entry of a role string: 'offset -2' -> 'offset', 'dep: det' -> 'dep'."""
    if role.startswith("offset "):
        return "offset"
    return "dep" if role.startswith("dep:") else role


def offset_role(k: int) -> str:
    return {-1: "previous token", 0: "self", 1: "next token"}.get(k, f"offset {k:+d}")


def offset_sums(att: torch.Tensor, valid: torch.Tensor, max_offset: int) -> torch.Tensor:
    """Sums over each text's valid queries at each offset -K..K: (B, H, T, T) -> (B, H, 2K+1, 2).

    `[..., 0]` sums the attention mass on key q+k, `[..., 1]` counts queries whose top key is q+k.
    """
    B, H, T, _ = att.shape
    a = att.float()
    rel = a.argmax(-1) - torch.arange(T, device=a.device)          # (B, H, T) top key - query
    q = valid[:, None, :].to(a.dtype)                              # (B, 1, T)
    out = torch.zeros(B, H, 2 * max_offset + 1, 2, dtype=torch.float64, device=a.device)
    for j, k in enumerate(range(-max_offset, max_offset + 1)):
        if abs(k) >= T:
            continue
        diag = a.diagonal(offset=k, dim1=-2, dim2=-1)              # (B, H, T - |k|)
        rows = q[..., :T - k] if k >= 0 else q[..., -k:]           # queries with key q+k inside
        out[:, :, j, 0] = (diag * rows).sum(2).double()
        out[:, :, j, 1] = ((rel == k).to(a.dtype) * q).sum(2).double()
    return out


def offset_profile(lm: LM, texts, *, max_offset: int = 4, average: str = "text",
                   batch_size: int = 16, max_length: int | None = None) -> pd.DataFrame:
    """Mean attention mass (`weight`) and top-key share (`score`) at each relative offset.

    One row per (layer, head, offset), averaged as `head_stats` does: `average="text"` (Clark et
    al.) the mean over each text's queries, then over texts; `"token"` the mean over all queries.
    Offset -1 gives head_stats' attn_prev / top_prev.
    """
    if max_offset < 1:
        raise InputError(f"max_offset={max_offset}; use 1 or more tokens")
    if average not in ("text", "token"):
        raise InputError(f"average={average!r}; use 'text' or 'token'")
    texts = as_text_list(texts)
    L, H, K = lm.num_layers, lm.num_heads, max_offset
    sums = torch.zeros(L, H, 2 * K + 1, 2, dtype=torch.float64)
    over = 0                                                       # texts or queries
    for idx in batches(token_lengths(lm, texts, max_length=max_length), batch_size):
        batch = encode(lm, [texts[i] for i in idx], max_length=max_length)
        valid = batch.inputs["attention_mask"].bool()
        n = valid.sum(1).double()[:, None, None, None]             # (B, 1, 1, 1) queries per text
        att = forward(lm, batch, attentions=True).attentions       # L x (B, H, T, T)
        for layer in range(L):
            per_text = offset_sums(att[layer], valid, K).cpu()     # (B, H, 2K+1, 2)
            sums[layer] += (per_text / n if average == "text" else per_text).sum(0)
        over += len(idx) if average == "text" else int(valid.sum())
    return offset_frame(sums, over)


def offset_frame(sums: torch.Tensor, queries: int) -> pd.DataFrame:
    """Offset sums over texts, stacked over layers (L, H, 2K+1, 2), divided by `queries` (the
    number of queries, or of texts for per-text means) -> tidy rows."""
    L, H, n, _ = sums.shape
    K = (n - 1) // 2
    means = (sums.double() / max(queries, 1)).cpu().numpy()       # (L, H, 2K+1, 2)
    grid = np.stack(np.meshgrid(np.arange(L), np.arange(H), np.arange(-K, K + 1),
                                indexing="ij"), -1).reshape(-1, 3)
    return pd.DataFrame({S.LAYER: grid[:, 0], S.HEAD: grid[:, 1], S.OFFSET: grid[:, 2],
                         S.SCORE: means[..., 1].reshape(-1), S.WEIGHT: means[..., 0].reshape(-1)})


def role_scores(stats: pd.DataFrame, offsets: pd.DataFrame, syntax: pd.DataFrame | None = None,
                *, syntax_margin: float = 0.1, min_arcs: int = 20) -> pd.DataFrame:
    """Every candidate role of every head with its score: one row per (layer, head, role).

    `stats`: a `head_stats` frame; `offsets`: an `offset_profile` frame; `syntax`: a
    `syntax_heads(..., all_heads=True)` frame or None. Columns: layer, head, role, score, weight.
    """
    parts = [pd.DataFrame({S.LAYER: offsets[S.LAYER], S.HEAD: offsets[S.HEAD],
                           S.ROLE: [offset_role(int(k)) for k in offsets[S.OFFSET]],
                           S.SCORE: offsets[S.SCORE], S.WEIGHT: offsets[S.WEIGHT]})]
    for role, (top, mass) in _STAT_ROLES.items():
        parts.append(pd.DataFrame({S.LAYER: stats[S.LAYER], S.HEAD: stats[S.HEAD], S.ROLE: role,
                                   S.SCORE: stats[top], S.WEIGHT: stats[mass]}))
    if syntax is not None and len(syntax):
        keep = syntax[(syntax[S.COUNT] >= min_arcs)
                      & (syntax[S.ACCURACY] >= syntax[S.BASELINE] + syntax_margin)]
        parts.append(pd.DataFrame({S.LAYER: keep[S.LAYER], S.HEAD: keep[S.HEAD],
                                   S.ROLE: "dep: " + keep[S.RELATION].astype(str),
                                   S.SCORE: keep[S.ACCURACY], S.WEIGHT: np.nan}))
    out = pd.concat(parts, ignore_index=True)
    out[S.LAYER], out[S.HEAD] = out[S.LAYER].astype(int), out[S.HEAD].astype(int)
    return out


def classify_heads(stats: pd.DataFrame, scores: pd.DataFrame, *, threshold: float = 0.5,
                   broad: float = 0.8) -> pd.DataFrame:
    """Pick each head's role from `role_scores` (rule in the module docstring).

    Returns one row per head of `stats`: layer, head, role, score, weight, runner_up,
    runner_up_score, entropy (normalised by uniform attention's), pattern (Kovaleva et al.).
    """
    if not 0 < threshold <= 1 or not 0 < broad <= 1:
        raise InputError(f"threshold={threshold}, broad={broad}: both must lie in (0, 1]")
    uniform = stats.attrs.get("uniform_entropy")
    if not uniform:
        raise InputError("classify_heads needs a head_stats frame (its attrs hold the entropy "
                         "of uniform attention); pass the frame wb.head_stats returned")
    ranked = scores.assign(_dep=scores[S.ROLE].str.startswith("dep:"))
    ranked = ranked.sort_values([S.SCORE], ascending=False, kind="stable")
    spread = dict(zip(zip(stats[S.LAYER], stats[S.HEAD]), stats[S.ENTROPY] / uniform))
    rows = []
    for (layer, head), cand in ranked.groupby([S.LAYER, S.HEAD], sort=True):
        passing = cand[cand[S.SCORE] >= threshold]
        passing = pd.concat([passing[~passing["_dep"]], passing[passing["_dep"]]])  # tiers
        chosen = passing.iloc[0] if len(passing) else None
        entropy = float(spread[(layer, head)])
        if entropy >= broad:         # near-uniform rows: their top key is noise (or a tie)
            role, score, weight = "broad", entropy, np.nan
        elif chosen is not None:
            role, score, weight = chosen[S.ROLE], float(chosen[S.SCORE]), float(chosen[S.WEIGHT])
        else:
            role, score, weight = "mixed", np.nan, np.nan
        others = cand[cand[S.ROLE] != role]
        rows.append({S.LAYER: layer, S.HEAD: head, S.ROLE: role, S.SCORE: score,
                     S.WEIGHT: weight,
                     S.RUNNER_UP: others[S.ROLE].iloc[0] if len(others) else None,
                     S.RUNNER_UP_SCORE: float(others[S.SCORE].iloc[0]) if len(others) else np.nan,
                     S.ENTROPY: entropy})
    df = pd.DataFrame(rows)
    pattern = label_patterns(stats)                               # aligned with stats' rows
    lookup = dict(zip(zip(stats[S.LAYER], stats[S.HEAD]), pattern))
    df[S.PATTERN] = [lookup[(la, h)] for la, h in zip(df[S.LAYER], df[S.HEAD])]
    expected = [EXPECTED_PATTERN.get(family(r)) for r in df[S.ROLE]]
    checked = [(p in e) for p, e in zip(df[S.PATTERN], expected) if e is not None]
    df.attrs.update(threshold=threshold, broad=broad,
                    pattern_agreement=float(np.mean(checked)) if checked else float("nan"),
                    pattern_checked=len(checked))
    return df


def _check_role_args(lm, syntax, threshold, broad, max_offset, syntax_margin, min_arcs, average,
                     batch_size, progress) -> None:
    """Every argument of `head_roles` checked at the boundary (InputError naming it)."""
    check_lm(lm)
    if not (isinstance(syntax, bool) or syntax == "auto"):
        raise InputError(f"syntax={syntax!r}; use True, False or 'auto'")
    check_finite("threshold", threshold, low=0.0, high=1.0, low_open=True)   # a share of queries
    check_finite("broad", broad, low=0.0, high=1.0, low_open=True)     # a normalised entropy
    check_finite("syntax_margin", syntax_margin, low=0.0, high=1.0)
    check_int("max_offset", max_offset, minimum=1)
    check_int("min_arcs", min_arcs, minimum=1)
    check_choice("average", average, ("text", "token"))
    check_positive_int("batch_size", batch_size)
    check_bool("progress", progress)


def head_roles(lm: LM, texts, *, syntax: bool | str = "auto", nlp=None, threshold: float = 0.5,
               broad: float = 0.8, max_offset: int = 4, syntax_margin: float = 0.1,
               min_arcs: int = 20, average: str = "text", batch_size: int = 16,
               max_length: int | None = None, progress: bool = True) -> pd.DataFrame:
    """Name every head of `lm` from the closed vocabulary `ROLES`, with the score behind it.

    Returns one row per (layer, head): model, layer, head, role, score, weight, runner_up,
    runner_up_score, entropy (normalised), pattern. `syntax="auto"` adds dependency roles when
    spaCy and an English pipeline are installed (True: require them; False: skip).
    `average` ("text": Clark et al.'s mean of per-text means; "token") is that of `head_stats`.
    `df.attrs` records the thresholds, the texts and queries counted, and the pattern agreement.

    >>> wb.head_roles(wb.load("demo"), sentences).query("role == 'previous token'")  # doctest: +SKIP
    """
    _check_role_args(lm, syntax, threshold, broad, max_offset, syntax_margin, min_arcs, average,
                     batch_size, progress)
    check_nlp(nlp)
    texts = as_text_list(texts)
    stats = head_stats(lm, texts, batch_size=batch_size, max_length=max_length, average=average,
                       progress=progress)
    offsets = offset_profile(lm, texts, max_offset=max_offset, average=average,
                             batch_size=batch_size, max_length=max_length)
    parsed, note = None, ""
    if syntax:
        from .syntax_heads import syntax_heads

        try:
            parsed = syntax_heads(lm, texts, nlp=nlp, all_heads=True, batch_size=batch_size,
                                  max_length=max_length, progress=progress)
        except MissingDependencyError as err:
            if syntax is True:
                raise
            note = str(err)
    scores = role_scores(stats, offsets, parsed, syntax_margin=syntax_margin, min_arcs=min_arcs)
    df = classify_heads(stats, scores, threshold=threshold, broad=broad)
    df.insert(0, S.MODEL, lm.name)
    df.attrs.update(texts=stats.attrs.get("texts"), queries=stats.attrs.get("queries"),
                    syntax=parsed is not None, syntax_note=note)
    return df
