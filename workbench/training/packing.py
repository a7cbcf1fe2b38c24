"""FULL-SENTENCES / DOC-SENTENCES packing of a token stream into fixed-length rows.

What belongs here is the packing rule and nothing else (training.corpus reads documents, splits
sentences, tokenises and decides the held-out documents; training.token_store owns the files).
The rule, as RoBERTa's paper defines the two formats (Liu et al. 2019, §4.2):

- `"full"`: contiguous sentences fill each row, crossing document borders with an extra `</s>`
  between documents (left out when it would not fit: the row is closed instead);
- `"doc"`: the same, but a row never crosses a document border.

Each row is `<s> ... </s>` padded to `seq_len`; a sentence longer than a row's budget
(`seq_len - 2`) is cut into pieces of at most the budget. A sentence goes to the next row when it
does not fit in what is left of the current one.

`RowPacker` works on blocks of the stream as arrays (all tokens of a block, each sentence's start
and length, each document's number of sentences): the greedy decisions are one Python loop over
sentences (not tokens), and the tokens are copied into the rows by one numpy scatter per block.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError

PACK_MODES = ("full", "doc")


class RowPacker:
    """Pack blocks of documents into rows (module docstring). `add_block(...)` per block of
    whole documents, `close()` at the end; each block of finished rows goes to
    `emit(rows (R, seq_len), lengths (R,))`, lengths counting `<s>` and `</s>`. A row still open
    at the end of a block is carried into the next."""

    def __init__(self, seq_len: int, *, bos: int, eos: int, pad: int, mode: str, emit, dtype=np.int64):
        if mode not in PACK_MODES:
            raise InputError(f"pack mode {mode!r}; use one of {PACK_MODES}")
        self.seq_len, self.budget = seq_len, seq_len - 2
        self.bos, self.eos, self.pad, self.mode, self.emit = bos, eos, pad, mode, emit
        self.dtype = np.dtype(dtype)
        self.carry = np.zeros(0, dtype=self.dtype)  # the open row's tokens (without <s>)

    def add_block(self, tokens: np.ndarray, starts: np.ndarray, lengths: np.ndarray,
                  doc_sentences: np.ndarray) -> None:
        """Add whole documents: `tokens` (N,) holds their sentences' ids at `starts` (S,) with
        `lengths` (S,), sentences in order; `doc_sentences` (D,) counts each document's
        sentences (a document with none adds nothing)."""
        plan = self._plan(starts.tolist(), lengths.tolist(), doc_sentences.tolist())
        rows_fill, open_fill, pieces, separators = plan
        n_rows = len(rows_fill)
        out = np.full((n_rows + 1, self.seq_len), self.pad, dtype=self.dtype)  # + the open row
        out[0, 1:1 + len(self.carry)] = self.carry
        flat = out.reshape(-1)
        if pieces[2]:
            dst, src, size = (np.asarray(p, dtype=np.int64) for p in pieces)
            before = np.cumsum(size) - size     # (P,) tokens of earlier pieces
            step = np.arange(int(size.sum()))   # (n,) one per token copied
            flat[np.repeat(dst - before, size) + step] = tokens[np.repeat(src - before, size) + step]
        if separators:
            flat[np.asarray(separators, dtype=np.int64)] = self.eos
        self.carry = out[n_rows, 1:1 + open_fill].copy()
        if n_rows:
            fill = np.asarray(rows_fill, dtype=np.int64)
            done = out[:n_rows]
            done[:, 0] = self.bos
            done[np.arange(n_rows), fill + 1] = self.eos
            self.emit(done, fill + 2)

    def _plan(self, starts: list[int], lengths: list[int], doc_sentences: list[int]):
        """Where every piece of every sentence goes: (each finished row's token count, the open
        row's count, pieces as lists (destination, source start, length), separators' flat
        destinations). Row 0 is the row carried in; a destination is `row * seq_len + 1 +
        offset` in the block's (rows, seq_len) array, 1 for `<s>`."""
        budget, width, full = self.budget, self.seq_len, self.mode == "full"
        fill, base, sentence = len(self.carry), 1, 0  # base: flat index of the open row's first token
        rows_fill: list[int] = []
        dst, src, size, separators = [], [], [], []
        for n_sentences in doc_sentences:
            if not n_sentences:
                continue
            if fill and (not full or fill + 1 > budget):  # close the row at a document border
                rows_fill.append(fill)
                fill, base = 0, base + width
            elif fill:  # FULL-SENTENCES: an extra separator between documents
                separators.append(base + fill)
                fill += 1
            for k in range(sentence, sentence + n_sentences):
                length = lengths[k]
                cuts = range(0, length, budget) if length > budget else (0,)  # long: pieces
                for cut in cuts:
                    piece = min(budget, length - cut)
                    if fill + piece > budget:
                        rows_fill.append(fill)
                        fill, base = 0, base + width
                    dst.append(base + fill)
                    src.append(starts[k] + cut)
                    size.append(piece)
                    fill += piece
            sentence += n_sentences
        return rows_fill, fill, (dst, src, size), separators

    def close(self) -> None:
        """Emit the open row, if any."""
        if len(self.carry):
            row = np.full((1, self.seq_len), self.pad, dtype=self.dtype)
            row[0, 0], row[0, 1:1 + len(self.carry)], row[0, 1 + len(self.carry)] = \
                self.bos, self.carry, self.eos
            self.emit(row, np.asarray([len(self.carry) + 2]))
            self.carry = self.carry[:0]


def stream_arrays(docs: list[list[list[int]]]) -> tuple[np.ndarray, ...]:
    """(tokens (N,), sentence starts (S,), sentence lengths (S,), sentences per document (D,))
    of documents given as lists of sentences' ids: `RowPacker.add_block`'s arguments."""
    lengths = np.asarray([len(s) for d in docs for s in d], dtype=np.int64)
    tokens = np.asarray([t for d in docs for s in d for t in s], dtype=np.int64)
    starts = np.cumsum(lengths) - lengths
    return tokens, starts, lengths, np.asarray([len(d) for d in docs], dtype=np.int64)


def pack_sequences(docs: list[list[list[int]]], seq_len: int, *, bos: int, eos: int, pad: int,
                   mode: str = "full") -> np.ndarray:
    """Pack documents (lists of sentences' ids) into `(N, seq_len)` rows `<s> ... </s> <pad>...`
    in memory (uint16 when every id fits, else int32)."""
    blocks: list[np.ndarray] = []
    packer = RowPacker(seq_len, bos=bos, eos=eos, pad=pad, mode=mode,
                       emit=lambda rows, lengths: blocks.append(rows))
    packer.add_block(*stream_arrays(docs))
    packer.close()
    out = np.concatenate(blocks) if blocks else np.zeros((0, seq_len), dtype=np.int64)
    return out.astype(np.uint16 if out.max(initial=0) < 65535 and pad < 65535 else np.int32)
