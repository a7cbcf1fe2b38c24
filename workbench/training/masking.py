"""Masking for MLM pretraining: dynamic, static (×K copies), whole-word, and a fixed evaluation mask.

Every random number here comes from a counter-based hash of (seed, copy, sequence index, position),
so a mask is a pure function of those four numbers, computed in a few vectorised integer ops on the
device that holds the batch:

- `dynamic`: `copy` = a fresh draw counter each time a batch is formed, so the same sequence gets
  a new mask every time it is seen (RoBERTa's dynamic masking);
- `static`:  `copy` = epoch % K, so sequence i always gets one of K fixed masks (the paper's
  baseline duplicated the data K=10 times; K=1 is BERT's single static mask);
- evaluation: a fixed seed and copy 0, so held-out numbers are comparable across runs.

No generator state needs saving for an exact resume: the step counters are enough.
Selection (15%) and the 80/10/10 rule (80% `<mask>`, 10% a random non-special token, 10% kept) are
decided per token; with `whole_word=True` selection is decided per word (its first piece) and
applies to every piece. Word starts for byte-level BPE come from the vocabulary: a token that starts
with `Ġ` (a space), a token that starts with a non-alphanumeric character, or the token after a
special token or a punctuation token. Special tokens and padding are never selected.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

IGNORE_INDEX = -100
MASK_MODES = ("dynamic", "static")
_M32 = 0xFFFFFFFF


def _mul32(x, c: int):
    """(x * c) mod 2**32 for x < 2**32 without int64 overflow (works on ints and int64 tensors)."""
    return (x * (c & 0xFFFF) + (((x * (c >> 16)) & 0xFFFF) << 16)) & _M32


def hash32(x):
    """A 32-bit integer mixer (lowbias32); `x` is a python int or an int64 tensor."""
    x = x & _M32
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def uniform(seed: int, copy: int, salt: int, rows: torch.Tensor, seq_len: int) -> torch.Tensor:
    """`(B, T)` floats in [0, 1), a pure function of (seed, copy, salt, row index, position)."""
    key = hash32(hash32(hash32(seed) ^ copy) ^ (salt * 0x9E3779B1 & _M32))
    pos = torch.arange(seq_len, device=rows.device, dtype=torch.int64)
    counter = (rows.to(torch.int64)[:, None] * seq_len + pos[None, :]) & _M32  # (B, T)
    h = hash32(hash32(counter ^ key) ^ (key >> 7))
    return h.to(torch.float64).div_(2.0 ** 32).to(torch.float32)


@dataclass
class TokenTables:
    """Per-vocabulary lookups: special ids, word-start flags and candidate random replacements."""

    special: torch.Tensor       # (V,) bool: never masked
    word_start: torch.Tensor    # (V,) bool: token begins a new word
    after_break: torch.Tensor   # (V,) bool: the token after this one begins a new word
    replacements: torch.Tensor  # (R,) int64: ids drawn for the 10% random replacement
    mask_id: int

    @classmethod
    def from_tokenizer(cls, tokenizer, device="cpu") -> "TokenTables":
        vocab = tokenizer.get_vocab()
        size = max(len(tokenizer), max(vocab.values()) + 1)
        special = torch.zeros(size, dtype=torch.bool)
        special[sorted(set(tokenizer.all_special_ids))] = True
        word_start = torch.zeros(size, dtype=torch.bool)
        punct = torch.zeros(size, dtype=torch.bool)
        for token, idx in vocab.items():
            first = token[:1]
            word_start[idx] = first == "Ġ" or not first.isalnum()
            punct[idx] = first != "Ġ" and not first.isalnum()
        word_start |= special
        replacements = torch.nonzero(~special).flatten()
        return cls(special.to(device), word_start.to(device), (special | punct).to(device),
                   replacements.to(device), int(tokenizer.mask_token_id))

    def to(self, device) -> "TokenTables":
        return TokenTables(self.special.to(device), self.word_start.to(device),
                           self.after_break.to(device), self.replacements.to(device), self.mask_id)


def word_start_positions(input_ids: torch.Tensor, tables: TokenTables) -> torch.Tensor:
    """`(B, T)` index of the first piece of the word each token belongs to."""
    ids = input_ids.long()
    start = tables.word_start[ids]                                    # (B, T)
    after = torch.zeros_like(start)
    after[:, 1:] = tables.after_break[ids[:, :-1]]                   # after a special or punctuation
    start = start | after
    pos = torch.arange(ids.shape[1], device=ids.device).expand_as(ids)
    return torch.where(start, pos, torch.zeros_like(pos)).cummax(dim=1).values


def mask_tokens(input_ids: torch.Tensor, rows: torch.Tensor, tables: TokenTables, *, seed: int,
                copy: int, probability: float = 0.15, rates: tuple[float, float] = (0.8, 0.1),
                whole_word: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Return `(masked_ids, labels)`, both `(B, T)` int64; labels are IGNORE_INDEX where unmasked.

    `rows`: `(B,)` index of each sequence in its dataset (keys the mask); `copy`: which mask draw.
    `rates`: fractions of selected tokens replaced by `<mask>` and by a random token (rest kept).
    """
    ids = input_ids.long()
    B, T = ids.shape
    maskable = ~tables.special[ids]                                   # (B, T)
    u_select = uniform(seed, copy, 1, rows, T)
    if whole_word:
        starts = word_start_positions(ids, tables)
        u_select = torch.gather(u_select, 1, starts)                  # one draw per word
    selected = (u_select < probability) & maskable
    u_kind = uniform(seed, copy, 2, rows, T)
    to_mask = selected & (u_kind < rates[0])
    to_random = selected & (u_kind >= rates[0]) & (u_kind < rates[0] + rates[1])
    u_token = uniform(seed, copy, 3, rows, T)
    pick = (u_token * len(tables.replacements)).long().clamp_(max=len(tables.replacements) - 1)
    random_ids = tables.replacements[pick]                            # (B, T)
    masked = torch.where(to_mask, torch.full_like(ids, tables.mask_id), ids)
    masked = torch.where(to_random, random_ids, masked)
    labels = torch.where(selected, ids, torch.full_like(ids, IGNORE_INDEX))
    return masked, labels


@dataclass
class Masker:
    """The masking policy of one run: `mode` 'dynamic' or 'static' (with `static_copies` K)."""

    tables: TokenTables
    mode: str = "dynamic"
    probability: float = 0.15
    rates: tuple[float, float] = (0.8, 0.1)
    whole_word: bool = False
    static_copies: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MASK_MODES:
            raise ValueError(f"masking mode {self.mode!r}; use one of {MASK_MODES}")

    def copy_for(self, epoch: int, draw: int) -> int:
        """Which mask: a new one per draw (dynamic) or one of K fixed per epoch (static)."""
        return draw + 1 if self.mode == "dynamic" else epoch % max(1, self.static_copies)

    def __call__(self, input_ids: torch.Tensor, rows: torch.Tensor, *, epoch: int, draw: int):
        return mask_tokens(input_ids, rows, self.tables, seed=self.seed,
                           copy=self.copy_for(epoch, draw), probability=self.probability,
                           rates=self.rates, whole_word=self.whole_word)

    def evaluation(self, input_ids: torch.Tensor, rows: torch.Tensor, eval_seed: int = 1234):
        """The fixed evaluation mask (same for every run with the same held-out data)."""
        return mask_tokens(input_ids, rows, self.tables, seed=eval_seed, copy=0,
                           probability=self.probability, rates=self.rates,
                           whole_word=self.whole_word)
