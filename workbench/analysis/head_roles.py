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
a cross-check: `pattern_agrees` says, for each head whose role implies a class
(`EXPECTED_PATTERN`), whether it carries that class (NA otherwise); its mean is the agreement.

How sure a name is: `margin` (score - runner-up score), `support` (the query tokens, or arcs, the
score is computed on) and, from `n_boot` resamples of the texts (`analysis.bootstrap`; the rule
above re-applied to each resample's scores, `resampled_roles`), `stable_fraction` (share of
resamples giving the head the same role) and `stable` (>= 0.9). A role read off 100 texts can
change with the sample; an unstable head is reported as such rather than silently renamed.
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
from .bootstrap import (LEVEL, N_BOOT, STABLE_AT, add_interval, check_boot, percentile_interval,
                        resample_counts, resample_ratio)
from .head_clusters import label_patterns
from .heads import STATS, accumulate
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
    if average not in ("text", "token"):
        raise InputError(f"average={average!r}; use 'text' or 'token'")
    sums, queries = offset_sums_per_text(lm, as_text_list(texts), max_offset=max_offset,
                                         batch_size=batch_size, max_length=max_length)
    if average == "text":
        return offset_frame(torch.from_numpy(
            (sums / np.maximum(queries, 1)[:, None, None, None, None]).sum(0)), len(queries))
    return offset_frame(torch.from_numpy(sums.sum(0)), int(queries.sum()))


def offset_sums_per_text(lm: LM, texts: list[str], *, max_offset: int = 4, batch_size: int = 16,
                         max_length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`offset_sums` of every text and layer, (N, L, H, 2K+1, 2), and each text's queries (N,)."""
    if max_offset < 1:
        raise InputError(f"max_offset={max_offset}; use 1 or more tokens")
    L, H, K = lm.num_layers, lm.num_heads, max_offset
    sums = np.zeros((len(texts), L, H, 2 * K + 1, 2))
    queries = np.zeros(len(texts))
    for idx in batches(token_lengths(lm, texts, max_length=max_length), batch_size):
        batch = encode(lm, [texts[i] for i in idx], max_length=max_length)
        valid = batch.inputs["attention_mask"].bool()
        att = forward(lm, batch, attentions=True).attentions       # L x (B, H, T, T)
        for layer in range(L):
            sums[idx, layer] = offset_sums(att[layer], valid, K).cpu().numpy()  # (B, H, 2K+1, 2)
        queries[idx] = valid.sum(1).cpu().numpy()
    return sums, queries


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
    runner_up_score, entropy (normalised by uniform attention's), pattern (Kovaleva et al.),
    pattern_agrees (the pattern is the one the role implies, `EXPECTED_PATTERN`; NA for a role
    that implies none: `df.pattern_agrees.mean()` is the share of checked heads that agree,
    `.count()` how many were checked), threshold and broad_threshold (the arguments).
    """
    if not 0 < threshold <= 1 or not 0 < broad <= 1:
        raise InputError(f"threshold={threshold}, broad={broad}: both must lie in (0, 1]")
    if S.UNIFORM_ENTROPY not in stats or not (stats[S.UNIFORM_ENTROPY] > 0).all():
        raise InputError("classify_heads needs a head_stats frame (its uniform_entropy column "
                         "holds the entropy of uniform attention); pass the frame wb.head_stats "
                         "returned")
    ranked = scores.assign(_dep=scores[S.ROLE].str.startswith("dep:"))
    ranked = ranked.sort_values([S.SCORE], ascending=False, kind="stable")
    spread = dict(zip(zip(stats[S.LAYER], stats[S.HEAD]),
                      stats[S.ENTROPY] / stats[S.UNIFORM_ENTROPY]))
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
    df[S.PATTERN_AGREES] = pd.array([None if e is None else p in e
                                     for p, e in zip(df[S.PATTERN], expected)], dtype="boolean")
    return df.assign(**{S.THRESHOLD: threshold, S.BROAD_THRESHOLD: broad})


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
               min_arcs: int = 20, average: str = "text", n_boot: int | None = N_BOOT,
               level: float = LEVEL, batch_size: int = 16, max_length: int | None = None,
               progress: bool = True) -> pd.DataFrame:
    """Name every head of `lm` from the closed vocabulary `ROLES`, with the score behind it.

    Returns one row per (layer, head): model, layer, head, role, score, weight, runner_up,
    runner_up_score, entropy (normalised), pattern, and how sure the name is: `margin` (score -
    runner_up_score; NaN for broad / mixed), `support` (query tokens the role is scored on; arcs
    for a dependency role), `n_texts`, and with `n_boot` resamples of the texts (default 200, None
    for none): `stable_fraction` (share of resamples in which the head gets the same role),
    `stable` (>= 0.9), `ci_low`/`ci_high` (the score's percentile interval at `level`), `n_boot`,
    `level`. Dependency roles keep their full-sample accuracy in every resample (the parse is not
    resampled). `syntax="auto"` adds dependency roles when spaCy and an English pipeline are
    installed (True: require them; False: skip). `average` ("text": Clark et al.'s mean of
    per-text means; "token") is that of `head_stats`. Also `pattern_agrees`, `threshold`,
    `broad_threshold` (`classify_heads`) and `syntax` (whether dependency roles were candidates:
    False when `syntax=False`, or "auto" found no spaCy English pipeline). Share of checked heads
    whose role agrees with Kovaleva's class: `df.pattern_agrees.mean()`.

    >>> wb.head_roles(wb.load("demo"), sentences).query("role == 'previous token'")  # doctest: +SKIP
    """
    _check_role_args(lm, syntax, threshold, broad, max_offset, syntax_margin, min_arcs, average,
                     batch_size, progress)
    check_nlp(nlp)
    n_boot, level = check_boot(n_boot, level)
    texts = as_text_list(texts)
    acc = accumulate(lm, texts, per_text=True, batch_size=batch_size, max_length=max_length,
                     progress=progress, desc="head roles")
    stats = acc.frame(lm.name, average, pooled=True)
    per_text = _PerText(acc, *offset_sums_per_text(lm, texts, max_offset=max_offset,
                                                   batch_size=batch_size, max_length=max_length),
                        average)
    offsets = per_text.offsets_frame()
    parsed = None
    if syntax:
        from .syntax_heads import syntax_heads

        try:
            parsed = syntax_heads(lm, texts, nlp=nlp, all_heads=True, batch_size=batch_size,
                                  max_length=max_length, progress=progress)
        except MissingDependencyError:
            if syntax is True:
                raise
    scores = role_scores(stats, offsets, parsed, syntax_margin=syntax_margin, min_arcs=min_arcs)
    df = classify_heads(stats, scores, threshold=threshold, broad=broad)
    df.insert(0, S.MODEL, lm.name)
    df = _add_support(df, scores, parsed, per_text.queries)
    if n_boot is not None:
        df = _add_stability(df, per_text, scores, threshold, broad, n_boot, level)
    return df.assign(**{S.SYNTAX: parsed is not None})


class _PerText:
    """Per-text numerators (and denominators) of every positional and token role score and of the
    normalised entropy, so a resample of texts re-weights them (`bootstrap.resample_ratio`)."""

    def __init__(self, acc, offset_sums: np.ndarray, queries: np.ndarray, average: str):
        self.queries, self.offset_sums, self.average = queries, offset_sums, average
        sums = acc.per_text.numpy()                                   # (N, L, H, F) sums
        cols = [STATS.index(top) for top, _ in _STAT_ROLES.values()]
        top = np.concatenate([offset_sums[..., 1], sums[..., cols]], -1)  # (N, L, H, R)
        n = np.maximum(queries, 1)
        uniform = np.log(n)                                           # entropy of uniform rows
        if average == "text":        # per-text means, then the mean over texts
            self.num, self.den = top / n[:, None, None, None], None
            self.ent, self.uni = sums[..., STATS.index(S.ENTROPY)] / n[:, None, None], uniform
        else:                        # every query pooled
            self.num, self.den = top, queries
            self.ent, self.uni = sums[..., STATS.index(S.ENTROPY)], n * uniform
        K = (offset_sums.shape[3] - 1) // 2
        self.names = [offset_role(k) for k in range(-K, K + 1)] + list(_STAT_ROLES)

    def offsets_frame(self) -> pd.DataFrame:
        s = self.offset_sums
        if self.average == "text":
            s = s / np.maximum(self.queries, 1)[:, None, None, None, None]
            return offset_frame(torch.from_numpy(s.sum(0)), len(self.queries))
        return offset_frame(torch.from_numpy(s.sum(0)), int(self.queries.sum()))

    def resampled(self, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(scores (B, L, H, R), normalised entropy (B, L, H)) of each resample."""
        uniform = resample_ratio(counts, self.uni, self.den)          # (B,)
        ent = resample_ratio(counts, self.ent, self.den) / uniform[:, None, None]
        return resample_ratio(counts, self.num, self.den), ent


def resampled_roles(scores: np.ndarray, entropy: np.ndarray, dep: np.ndarray, *,
                    threshold: float, broad: float) -> np.ndarray:
    """The rule of `classify_heads`, vectorised over resamples: role codes (B, L, H).

    `scores` (B, L, H, R): positional and token role scores; `dep` (L, H, D): dependency role
    scores (NaN where not a candidate). Code r < R is `scores`' role r, R + d dependency role d,
    R + D "broad", R + D + 1 "mixed". Ties go to the first role, as `classify_heads`' stable sort.
    """
    R, D = scores.shape[-1], dep.shape[-1]
    passing = np.nan_to_num(scores, nan=-np.inf) >= threshold
    best = np.where(passing, scores, -np.inf).argmax(-1)              # (B, L, H)
    dep_ok = np.nan_to_num(dep, nan=-np.inf) >= threshold             # (L, H, D)
    dep_best = (np.where(dep_ok, dep, -np.inf).argmax(-1) if D else np.zeros(dep.shape[:2], int))
    dep_code = np.where(dep_ok.any(-1), R + dep_best, R + D + 1) if D else np.full(
        dep.shape[:2], R + D + 1)
    code = np.where(passing.any(-1), best, dep_code[None])
    return np.where(entropy >= broad, R + D, code)


def _dep_candidates(scores: pd.DataFrame, L: int, H: int) -> tuple[list[str], np.ndarray]:
    deps = scores[scores[S.ROLE].str.startswith("dep:")]
    names = list(dict.fromkeys(deps[S.ROLE]))
    table = np.full((L, H, len(names)), np.nan)
    for la, h, role, sc in zip(deps[S.LAYER], deps[S.HEAD], deps[S.ROLE], deps[S.SCORE]):
        table[la, h, names.index(role)] = sc
    return names, table


def _add_support(df: pd.DataFrame, scores: pd.DataFrame, parsed, queries: np.ndarray
                 ) -> pd.DataFrame:
    """margin, support (queries, or arcs for a dependency role) and n_texts columns."""
    targeted = ~df[S.ROLE].isin(["broad", "mixed"])
    margin = np.where(targeted, df[S.SCORE] - df[S.RUNNER_UP_SCORE], np.nan)
    support = np.full(len(df), int(queries.sum()))
    if parsed is not None and len(parsed):
        arcs = {(la, h, f"dep: {r}"): n for la, h, r, n in zip(
            parsed[S.LAYER], parsed[S.HEAD], parsed[S.RELATION], parsed[S.COUNT])}
        support = np.array([arcs.get((la, h, r), s) for la, h, r, s in zip(
            df[S.LAYER], df[S.HEAD], df[S.ROLE], support)])
    return df.assign(**{S.MARGIN: margin, S.SUPPORT: support, S.N_TEXTS: len(queries)})


def _add_stability(df: pd.DataFrame, per_text: _PerText, scores: pd.DataFrame, threshold: float,
                   broad: float, n_boot: int, level: float) -> pd.DataFrame:
    """stable_fraction, stable and the chosen score's interval from `n_boot` resamples."""
    L, H = int(df[S.LAYER].max()) + 1, int(df[S.HEAD].max()) + 1
    dep_names, dep = _dep_candidates(scores, L, H)
    names = per_text.names + dep_names + ["broad", "mixed"]
    counts = resample_counts(len(per_text.queries), n_boot)
    boot_scores, boot_entropy = per_text.resampled(counts)           # (B, L, H, R), (B, L, H)
    codes = resampled_roles(boot_scores, boot_entropy, dep, threshold=threshold, broad=broad)
    la, h = df[S.LAYER].to_numpy(), df[S.HEAD].to_numpy()
    chosen = np.array([names.index(r) for r in df[S.ROLE]])
    fraction = (codes[:, la, h] == chosen[None]).mean(0)
    R = len(per_text.names)
    picked = np.full((n_boot, len(df)), np.nan)                       # the chosen role's score
    own = chosen < R
    picked[:, own] = boot_scores[:, la[own], h[own], chosen[own]]
    is_broad = df[S.ROLE].to_numpy() == "broad"
    picked[:, is_broad] = boot_entropy[:, la[is_broad], h[is_broad]]
    low, high = percentile_interval(picked, level)
    df = add_interval(df, low, high, n_texts=len(per_text.queries), n_boot=n_boot, level=level)
    return df.assign(**{S.STABLE_FRACTION: fraction, S.STABLE: fraction >= STABLE_AT})
