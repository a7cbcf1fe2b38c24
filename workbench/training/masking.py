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
applies to every piece. Special tokens and padding are never selected.

Words are the tokenizer's own words, the ones `encoding.word_ids()` numbers (`WordBoundaries`):
- byte-level BPE (RoBERTa, GPT-2): the ids between two special tokens are turned back into their
  exact bytes and text, the tokenizer's own pre-tokeniser splits that text (spaces, `Ġ(`, newlines,
  contractions as it does when encoding), and a token begins a word where its first byte is a word's
  first byte. So a word never breaks inside a UTF-8 character (`ĠSÃ £ o` is one word, "São"), and
  a token that begins inside a character never begins a word. This runs on the CPU, row by row
  (about 1 us per token: 9 ms for a 64 x 128 batch, against 0.6 ms for token-level masking).
- WordPiece (BERT): a token begins a word unless it carries the continuation prefix (`##`), which
  is exactly how BERT's pre-tokeniser and WordPiece split words.
Other tokenizers are refused for whole-word masking (an InputError names the tokenizer). A row that
was cut from a longer text starts a word at its first token; a character cut by the row's edge
counts as a letter. Sentences packed into one row are joined as `corpus.pack` joins them (a space
between sentences of a paragraph, none between paragraphs), and their words are read from the
joined text.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InputError
from .configs import MASK_MODES

IGNORE_INDEX = -100
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


def _byte_alphabet() -> dict[str, int]:
    """GPT-2's byte-level alphabet: the printable character that stands for each byte."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), 256)]
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


_CUT = {0xDC80 + i: "x" for i in range(128)}  # surrogateescape'd bytes -> a one-byte letter


def _decode(data: bytes) -> tuple[str, np.ndarray]:
    """`data` as text, and the byte offset of each character (len(text) + 1,).

    A byte that is not valid UTF-8 (a character cut by the edge of a row) reads as the letter "x",
    so it stays in the word next to it."""
    text = data.decode("utf-8", "surrogateescape").translate(_CUT)
    cps = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    lengths = 1 + (cps >= 0x80).astype(np.int64) + (cps >= 0x800) + (cps >= 0x10000)
    return text, np.concatenate([[0], np.cumsum(lengths)])


class WordBoundaries:
    """Which tokens of an id sequence begin a word, as the tokenizer's own pre-tokeniser splits
    text (see the module docstring): `starts(ids)` (B, T) -> (B, T) bool."""

    def __init__(self, tokenizer):
        from tokenizers import decoders, models

        backend = getattr(tokenizer, "backend_tokenizer", None)
        size = max(len(tokenizer), max(tokenizer.get_vocab().values()) + 1)
        tokens = tokenizer.convert_ids_to_tokens(list(range(size)))
        added = set(tokenizer.all_special_ids) | set(getattr(tokenizer, "added_tokens_decoder", {}))
        self.alone = np.array([i in added or t is None for i, t in enumerate(tokens)])  # (V,)
        self.kind = self.pieces = self.pre_tokenizer = self.prefix = None
        if backend is not None and isinstance(backend.decoder, decoders.ByteLevel):
            alphabet = _byte_alphabet()
            self.kind, self.pre_tokenizer = "byte-level", backend.pre_tokenizer
            self.pieces = [b"" if self.alone[i] else bytes(alphabet[c] for c in t)
                           if all(c in alphabet for c in t) else t.encode("utf-8")
                           for i, t in enumerate(tokens)]          # (V,) each token's bytes
            self.lengths = np.array([len(p) for p in self.pieces])  # (V,) bytes per token
            first = np.array([p[0] if p else 0 for p in self.pieces])
            self.inside_char = (first >= 0x80) & (first < 0xC0)     # (V,) a UTF-8 continuation byte
        elif backend is not None and isinstance(backend.model, models.WordPiece):
            self.kind, self.prefix = "wordpiece", backend.model.continuing_subword_prefix
            self.continues = np.array([t is not None and t.startswith(self.prefix)
                                       for t in tokens])
        self.name = type(backend.model).__name__ if backend is not None else type(tokenizer).__name__

    def check(self) -> None:
        if self.kind is None:
            raise InputError(f"whole_word=True: whole-word masking needs a byte-level BPE or "
                             f"WordPiece tokenizer to find word boundaries; this one is "
                             f"{self.name}: use whole_word=False or such a tokenizer")

    def starts(self, ids: torch.Tensor) -> torch.Tensor:
        self.check()
        rows = ids.detach().cpu().numpy()                             # (B, T)
        if self.kind == "wordpiece":
            out = ~self.continues[rows] | self.alone[rows]
        else:
            out = np.stack([self._row_starts(r) for r in rows])
        return torch.from_numpy(out).to(ids.device)

    def _row_starts(self, ids: np.ndarray) -> np.ndarray:
        """(T,) bool for one row of byte-level BPE ids."""
        out = self.alone[ids].copy()                                  # specials stand alone
        bounds = np.flatnonzero(np.diff(np.concatenate([[1], out, [1]]).astype(np.int8)))
        for a, b in zip(bounds[::2], bounds[1::2]):                   # runs [a, b) of text tokens
            seg = ids[a:b]
            lengths = self.lengths[seg]
            text, char_at = _decode(b"".join([self.pieces[i] for i in seg.tolist()]))
            begins = np.zeros(char_at[-1] + 1, dtype=bool)             # per byte: a word starts
            begins[char_at[[s for _, (s, _) in self.pre_tokenizer.pre_tokenize_str(text)]]] = True
            flags = begins[np.cumsum(lengths) - lengths] & ~self.inside_char[seg]
            flags[0] = True
            out[a:b] = flags
        return out


@dataclass
class TokenTables:
    """Per-vocabulary lookups: special ids, candidate random replacements, word boundaries."""

    special: torch.Tensor       # (V,) bool: never masked
    replacements: torch.Tensor  # (R,) int64: ids drawn for the 10% random replacement
    mask_id: int
    words: WordBoundaries

    @classmethod
    def from_tokenizer(cls, tokenizer, device="cpu") -> "TokenTables":
        vocab = tokenizer.get_vocab()
        size = max(len(tokenizer), max(vocab.values()) + 1)
        special = torch.zeros(size, dtype=torch.bool)
        special[sorted(set(tokenizer.all_special_ids))] = True
        replacements = torch.nonzero(~special).flatten()
        return cls(special.to(device), replacements.to(device), int(tokenizer.mask_token_id),
                   WordBoundaries(tokenizer))

    def to(self, device) -> "TokenTables":
        return TokenTables(self.special.to(device), self.replacements.to(device), self.mask_id,
                           self.words)


def word_start_positions(input_ids: torch.Tensor, tables: TokenTables) -> torch.Tensor:
    """`(B, T)` index of the first piece of the word each token belongs to."""
    start = tables.words.starts(input_ids)                            # (B, T) bool
    pos = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(start)
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
        if self.whole_word:
            self.tables.words.check()

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
