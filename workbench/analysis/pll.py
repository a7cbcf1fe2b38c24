"""Pseudo-log-likelihood (PLL) sentence scores for masked LMs, computed in batches of masked copies.

PLL (Salazar et al., 2020) masks each token of a sentence in turn and sums the log-probability the
model gives the true token at the masked position:  PLL(s) = sum_t log P(s_t | s without s_t).
`method="pll-word-l2r"` is Kauf & Ivanova's (2023) within-word left-to-right variant: when scoring
token t of a word, the word's tokens to the *right* of t are masked as well, which removes the
inflated scores of multi-token words (the model otherwise sees "Ġp iz _ a" and guesses "z").

How it is computed here: every sentence becomes one masked copy per scored token; all copies of all
sentences are packed into batches holding at most `max_tokens` (rows x padded length) tokens,
longest first so padding stays small; each batch is one encoder pass, and the MLM head runs only at
the one scored position per copy (N x H -> N x V, not B x T x V). A long sentence is spread over as
many batches as its copies need, never one pass per token.

The engine `masked_item_logprobs` takes arbitrary (sequence, target, positions-to-mask) items, so
`workbench.analysis.candidates` reuses it for left-to-right chains over candidate fillers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import pandas as pd
import torch

from .. import schema as S
from ..capture import as_text_list
from ..errors import InputError
from ..models import LM, as_lm_dict
from ..tokens import token_view, tokenize
from .fill_mask import count_masks, masked_logprobs
from ..config import check_positive_int

METHODS = ("pll", "pll-word-l2r")
METHOD = "method"                  # column: scoring method
N_TOKENS = "n_tokens"              # column: number of scored tokens
TOKENS = "tokens"                  # column: list of readable scored tokens
TOKEN_LOGPROBS = "token_logprobs"  # column: list of per-token log-probs, aligned with `tokens`


@dataclass
class Item:
    """Score `ids[target]` with the tokens at `masked` (which includes `target`) replaced by <mask>."""

    seq: int                  # index into the list of sequences
    target: int               # position whose true token is scored
    masked: Sequence[int]     # positions replaced by the mask token


def default_max_tokens(lm: LM) -> int:
    """Tokens per forward pass: modest on CPU (cache-friendly), large on a GPU."""
    return 65536 if lm.device.type == "cuda" else 4096


def masked_item_logprobs(lm: LM, sequences: list[list[int]], items: list[Item],
                         max_tokens: int | None = None) -> torch.Tensor:
    """log P(true token at target | sequence with `masked` positions masked), one value per item.

    Items are packed into batches of at most `max_tokens` tokens (rows x longest row), grouped by
    sequence length; returns a float64 CPU tensor (len(items),) in the order of `items`.
    """
    budget = max_tokens or default_max_tokens(lm)
    if budget < 1:
        raise InputError(f"max_tokens={max_tokens}; pass a positive number of tokens per batch")
    mask_id = lm.tokenizer.mask_token_id
    pad_id = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    out = torch.empty(len(items), dtype=torch.float64)
    seq_t = [torch.tensor(s, dtype=torch.long) for s in sequences]
    order = sorted(range(len(items)), key=lambda i: (-len(sequences[items[i].seq]), i))
    start = 0
    while start < len(order):
        width = len(sequences[items[order[start]].seq])       # longest row of this batch
        rows = max(1, budget // width)
        chunk = order[start:start + rows]
        start += len(chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)   # (B, T)
        att = torch.zeros((len(chunk), width), dtype=torch.long)          # (B, T)
        for r, i in enumerate(chunk):
            seq = seq_t[items[i].seq]
            ids[r, :len(seq)] = seq
            att[r, :len(seq)] = 1
        mrows = torch.tensor([r for r, i in enumerate(chunk) for _ in items[i].masked])
        mcols = torch.tensor([p for i in chunk for p in items[i].masked])
        truth = ids[torch.arange(len(chunk)), torch.tensor([items[i].target for i in chunk])]
        ids[mrows, mcols] = mask_id
        targets = torch.tensor([items[i].target for i in chunk])
        logp = masked_logprobs(lm, ids, att, torch.arange(len(chunk)), targets)  # (B, V)
        picked = logp.gather(1, truth.to(logp.device)[:, None])[:, 0]          # (B,)
        out[torch.tensor(chunk)] = picked.double().cpu()
    return out


def pll_items(seq: int, positions: Sequence[int], word_ids: Sequence[int | None],
              method: str) -> list[Item]:
    """Items scoring `positions` of one sequence with PLL or its within-word l2r variant."""
    items = []
    for p in positions:
        masked = [p]
        if method == "pll-word-l2r" and word_ids[p] is not None:
            masked += [q for q in positions if q > p and word_ids[q] == word_ids[p]]
        items.append(Item(seq, p, masked))
    return items


def check_method(method: str, allowed: Sequence[str] = METHODS) -> None:
    if method not in allowed:
        raise InputError(f"method={method!r}; use one of {list(allowed)}")


def tokenize_for_scoring(lm: LM, texts: list[str]):
    """Encode texts (no padding); return the fast encodings, checked against the length limit."""
    limit = lm.max_length
    enc = tokenize(lm.tokenizer, texts, truncation=False, return_special_tokens_mask=True)
    for i, e in enumerate(enc.encodings):
        if len(e.ids) > limit:
            raise InputError(
                f"text {i} has {len(e.ids)} tokens, more than the model's {limit}: split it into "
                "sentences (a PLL of a truncated text would silently drop its end)")
    return enc


def scored_positions(encoding) -> list[int]:
    """Positions of the text's own tokens (no <s>, </s>, padding)."""
    return [p for p, s in enumerate(encoding.special_tokens_mask) if not s]


def _score_one(lm: LM, texts: list[str], method: str, max_tokens: int | None) -> pd.DataFrame:
    enc = tokenize_for_scoring(lm, texts)
    sequences = [list(e.ids) for e in enc.encodings]
    items, owner = [], []
    for i, e in enumerate(enc.encodings):
        new = pll_items(i, scored_positions(e), e.word_ids, method)
        items += new
        owner += [i] * len(new)
    values = masked_item_logprobs(lm, sequences, items, max_tokens) if items else torch.empty(0)
    rows = []
    per_text: dict[int, list[int]] = {}
    for k, i in enumerate(owner):
        per_text.setdefault(i, []).append(k)
    for i, text in enumerate(texts):
        view = token_view(lm.tokenizer, text, encoding=enc.encodings[i])
        ks = per_text.get(i, [])
        lps = [float(values[k]) for k in ks]
        rows.append({S.TEXT_ID: i, S.TEXT: text, METHOD: method, S.LOGPROB: sum(lps),
                     N_TOKENS: len(ks), TOKENS: [view.tokens[items[k].target] for k in ks],
                     TOKEN_LOGPROBS: lps})
    return pd.DataFrame(rows)


def score(lm_or_dict, sentences: str | Sequence[str], *, method: str = "pll",
          max_tokens: int | None = None) -> pd.DataFrame:
    """Pseudo-log-likelihood of each sentence, one row per (model, sentence).

    Columns: model, text_id, text, method, logprob (the sentence's total PLL, natural log),
    n_tokens, tokens (readable scored tokens), token_logprobs (their values; they sum to logprob).
    `method` is "pll" (Salazar et al. 2020) or "pll-word-l2r" (Kauf & Ivanova 2023).
    `max_tokens` bounds the tokens per forward pass (default 4096 on CPU, 65536 on CUDA).

    >>> wb.score(lm, ["The cat sat.", "The cat sit."])      # doctest: +SKIP
    """
    check_positive_int("max_tokens", max_tokens, allow_none=True)
    check_method(method)
    texts = as_text_list(sentences, "sentences")
    for i, t in enumerate(texts):
        if count_masks(t):
            raise InputError(
                f"sentence {i} contains a mask ({t[:60]!r}); score() scores complete sentences. "
                "To compare fillers of a mask use wb.score_candidates(lm, text, candidates)")
    frames = []
    for name, lm in as_lm_dict(lm_or_dict).items():
        lm.require_mlm_head("score (pseudo-log-likelihood)")
        df = _score_one(lm, texts, method, max_tokens)
        df.insert(0, S.MODEL, name)
        frames.append(df)
    return pd.concat(frames, ignore_index=True)
