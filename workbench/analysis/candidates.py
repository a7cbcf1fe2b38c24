"""Scoring candidate fillers of one or several masks, words of any number of tokens, jointly.

`score_candidates(lm, "I ate a <mask> for lunch.", ["pizza", "sandwich", "salad"])`

How a candidate is scored (no first-piece shortcut, ever):

1. The candidate *replaces the mask in the text* (its surrounding whitespace stripped), and the
   filled sentence is tokenised as a whole. So the leading-space rule is handled for you: in
   "I ate a <mask>" the filler "pizza" is scored as RoBERTa's " pizza" (`Ġpizza`, or its pieces
   `Ġp iz za` in a small vocabulary), exactly as the word would appear in running text, while
   "un<mask>" + "likely" gives "unlikely". BERT's WordPiece has no such rule; the same code works.
   The candidate's tokens are the tokens whose characters overlap the filler (`pieces` column).
   A prefix or suffix touching the mask ("un<mask>", "<mask>s") is context: it stays in the
   text, unmasked, and the candidate's tokens must lie inside the filler's characters. When the
   tokenizer fuses them into one token (RoBERTa encodes " unlikely" as the single token
   `Ġunlikely`), the candidate's probability cannot be separated from the prefix's, and
   method="chain" refuses it with an InputError (pass the whole word: "<mask>" + "unlikely").
2. `method` decides the number:
   - "pll" (default): pseudo-log-likelihood of the filled sentence (Salazar et al. 2020); every
     token, candidate or context, masked one at a time. `logprob` is the sentence total,
     `span_logprob` the part of it at the candidate's tokens.
   - "pll-word-l2r": the same with Kauf & Ivanova's (2023) within-word left-to-right masking,
     which stops multi-token words from scoring too well.
   - "chain": a left-to-right chain over the candidate tokens only: all candidate tokens (of every
     mask) start masked, and token i is predicted with tokens < i filled in and tokens > i still
     masked. `logprob` = `span_logprob` = log P(filler tokens | context, their number), a proper
     joint log-probability of the filling. For one single-token candidate it equals fill-mask's.
3. Several masks: pass one tuple per candidate, one string per mask,
   e.g. `[("New", "York"), ("Los", "Angeles")]`; they are scored jointly by the chosen method.
4. Lengths. `logprob` is a sum of `n_scored` log-probabilities (the candidate's tokens for
   "chain", every token of the filled sentence for the PLL methods), so candidates of different
   token counts are not on one scale: `mean_logprob` = logprob / n_scored is the per-token
   (length-normalised) score, `rank_by="mean_logprob"` ranks by it, and when the default ranking
   by the total mixes counts, a warning says so and `mixed_lengths` is True on those rows.
"""

from __future__ import annotations

import re
import warnings
from typing import Sequence

import pandas as pd

from .. import schema as S
from ..capture import as_text_list
from ..errors import InputError
from ..models import LM, as_lm_dict
from ..tokens import token_view
from .fill_mask import MASK_SPELLINGS
from .pll import (METHOD, N_TOKENS, Item, check_method, masked_item_logprobs, pll_items,
                  scored_positions, tokenize_for_scoring)
from ..config import check_positive_int, check_sequence

METHODS = ("pll", "pll-word-l2r", "chain")
CANDIDATE = "candidate"        # column: the filler as given (several masks joined by " | ")
FILLED = "filled"              # column: the text with the filler in place of the mask(s)
SPAN_LOGPROB = "span_logprob"  # column: log-prob at the candidate's own tokens
PIECES = "pieces"              # column: readable tokens of the candidate in context
N_SCORED = "n_scored"          # column: number of log-prob terms summed into `logprob`
MEAN_LOGPROB = "mean_logprob"  # column: logprob / n_scored, the per-token score
MIXED_LENGTHS = "mixed_lengths"  # column: this ranking compares different n_scored
RANK_BY = (S.LOGPROB, MEAN_LOGPROB)


def _as_fillers(candidate, n_masks: int) -> tuple[str, ...]:
    parts = (candidate,) if isinstance(candidate, str) else tuple(candidate)
    if len(parts) != n_masks or not all(isinstance(p, str) for p in parts):
        raise InputError(
            f"candidate {candidate!r} does not fit a text with {n_masks} mask(s): pass one string "
            f"per mask, e.g. {tuple(f'word{i + 1}' for i in range(n_masks))!r}")
    parts = tuple(p.strip() for p in parts)
    if not all(parts):
        raise InputError(f"candidate {candidate!r} is empty after stripping whitespace")
    return parts


def fill_text(text: str, fillers: Sequence[str | None]) -> tuple[str, list[tuple[int, int]]]:
    """Replace the masks of `text` in order (a None filler keeps its mask); return the filled text
    and the char span of each filler that was put in."""
    masks = MASK_SPELLINGS.findall(text)
    if len(fillers) != len(masks):
        raise InputError(f"{len(fillers)} filler(s) for {len(masks)} mask(s) in {text[:60]!r}")
    pieces = MASK_SPELLINGS.split(text)
    out, spans = pieces[0], []
    for filler, mask, rest in zip(fillers, masks, pieces[1:]):
        if filler is None:
            out += mask + rest
            continue
        spans.append((len(out), len(out) + len(filler)))
        out += filler + rest
    return out, spans


def _span_positions(encoding, spans) -> list[int]:
    """Token positions whose characters overlap any of the char `spans` (specials excluded)."""
    out = []
    for p, ((a, b), special) in enumerate(zip(encoding.offsets, encoding.special_tokens_mask)):
        if not special and b > a and any(a < e and b > s for s, e in spans):
            out.append(p)
    return out


def _check_inside(encoding, positions: list[int], spans, sentence: str, candidate: str) -> None:
    """Refuse a candidate token that also covers characters outside the filler (a prefix or
    suffix fused with it): its probability is not the candidate's alone."""
    for p in positions:
        a, b = encoding.offsets[p]
        if not any(s <= a and b <= e for s, e in spans):
            raise InputError(
                f"candidate {candidate!r}: in {sentence!r} the token {sentence[a:b]!r} covers "
                "both the candidate and the text touching the mask, so the candidate's "
                "probability cannot be separated from the context's; put the whole word in "
                "the candidate (e.g. '<mask>' + 'unlikely' rather than 'un<mask>' + 'likely') "
                "or use method='pll'")


def _score_one(lm: LM, texts: list[str], candidates: list, method: str,
               max_tokens: int | None) -> pd.DataFrame:
    meta, filled = [], []
    for t_id, text in enumerate(texts):
        n_masks = len(MASK_SPELLINGS.findall(text))
        for cand in candidates:
            fillers = _as_fillers(cand, n_masks)
            sent, spans = fill_text(text, fillers)
            meta.append((t_id, " | ".join(fillers), spans))
            filled.append(sent)
    enc = tokenize_for_scoring(lm, filled)
    sequences = [list(e.ids) for e in enc.encodings]
    items, owner, in_span = [], [], []
    for i, (e, (_, _, spans)) in enumerate(zip(enc.encodings, meta)):
        span = _span_positions(e, spans)
        if method == "chain":
            _check_inside(e, span, spans, filled[i], meta[i][1])
            new = [Item(i, p, span[k:]) for k, p in enumerate(span)]
        else:
            new = pll_items(i, scored_positions(e), e.word_ids, method)
        items += new
        owner += [i] * len(new)
        in_span += [it.target in span for it in new]
    values = masked_item_logprobs(lm, sequences, items, max_tokens)
    by_owner: dict[int, list[int]] = {}
    for k, o in enumerate(owner):
        by_owner.setdefault(o, []).append(k)
    rows = []
    for i, ((t_id, cand, spans), sent) in enumerate(zip(meta, filled)):
        ks = by_owner.get(i, [])
        view = token_view(lm.tokenizer, sent, encoding=enc.encodings[i])
        span = _span_positions(enc.encodings[i], spans)
        rows.append({
            S.TEXT_ID: t_id, S.TEXT: texts[t_id], CANDIDATE: cand, FILLED: sent, METHOD: method,
            S.LOGPROB: float(sum(values[k] for k in ks)),
            SPAN_LOGPROB: float(sum(values[k] for k in ks if in_span[k])),
            N_TOKENS: len(span), PIECES: [view.tokens[p] for p in span], N_SCORED: len(ks),
        })
    df = pd.DataFrame(rows)
    df[MEAN_LOGPROB] = df[S.LOGPROB] / df[N_SCORED].clip(lower=1)
    df[MIXED_LENGTHS] = df.groupby(S.TEXT_ID)[N_SCORED].transform("nunique") > 1
    return df


def _rank(df: pd.DataFrame, rank_by: str) -> pd.DataFrame:
    """Rank within (model, text), 1 = best; warn when a ranking by totals mixes lengths."""
    df[S.RANK] = df.groupby([S.MODEL, S.TEXT_ID])[rank_by].rank(
        ascending=False, method="min").astype(int)
    if rank_by == S.LOGPROB and df[MIXED_LENGTHS].any():
        mixed = df[df[MIXED_LENGTHS]]
        counts = dict(zip(mixed[CANDIDATE], mixed[N_SCORED]))
        warnings.warn(
            f"score_candidates ranks candidates by a total log-probability over different "
            f"numbers of tokens ({dict(list(counts.items())[:6])} log-prob terms): a longer "
            "candidate adds more negative terms. Compare the per-token 'mean_logprob' (or pass "
            "rank_by='mean_logprob'), or use candidates of one token count; the rows are "
            "flagged in 'mixed_lengths'", UserWarning, stacklevel=3)
    return df


def score_candidates(lm_or_dict, text: str | Sequence[str], candidates: Sequence, *,
                     method: str = "pll", rank_by: str = "logprob",
                     max_tokens: int | None = None) -> pd.DataFrame:
    """Score each candidate filler of the mask(s) in `text`; one row per (model, text, candidate).

    Columns: model, text_id, text, candidate, filled, method, logprob (a total; see the module
    docstring for each method), span_logprob, n_tokens (tokens of the filler in context), pieces
    (those tokens, readable), n_scored (log-prob terms in logprob), mean_logprob (logprob /
    n_scored), mixed_lengths (the ranking of this text compares different n_scored), rank (1 =
    best within model and text, by `rank_by`: "logprob" or the per-token "mean_logprob"). Ranking
    totals over different token counts warns (see the module docstring, point 4).

    >>> wb.score_candidates(lm, "I ate a <mask>.", ["pizza", "sandwich"], method="chain")  # doctest: +SKIP
    """
    if not isinstance(candidates, str):
        check_sequence("candidates", candidates)
    check_positive_int("max_tokens", max_tokens, allow_none=True)
    check_method(method, METHODS)
    if rank_by not in RANK_BY:
        raise InputError(f"rank_by={rank_by!r}; use 'logprob' (the total) or 'mean_logprob' "
                         "(per token, comparable across candidate lengths)")
    texts = as_text_list(text, "text")
    for i, t in enumerate(texts):
        if not MASK_SPELLINGS.search(t):
            raise InputError(f"text {i} ({t[:60]!r}) has no mask: write <mask> (or [MASK]) "
                             "where the candidates go")
    if isinstance(candidates, str):
        candidates = [candidates]
    candidates = list(candidates)
    if not candidates:
        raise InputError("candidates is empty: pass a list of fillers, e.g. ['pizza', 'pasta']")
    frames = []
    for name, lm in as_lm_dict(lm_or_dict).items():
        lm.require_mlm_head("score_candidates")
        df = _score_one(lm, texts, candidates, method, max_tokens)
        df.insert(0, S.MODEL, name)
        frames.append(df)
    return _rank(pd.concat(frames, ignore_index=True), rank_by)


def split_candidates(field: str) -> list:
    """Parse a typed candidate list: commas separate candidates, '|' separates the fillers of
    several masks within one candidate ("pizza, pasta" or "New|York, Los|Angeles")."""
    out = []
    for part in field.split(","):
        part = part.strip()
        if part:
            bits = [b.strip() for b in re.split(r"\|", part)]
            out.append(bits[0] if len(bits) == 1 else tuple(bits))
    return out
