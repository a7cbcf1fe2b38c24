"""Readable tokens: display text without `Ġ`/`▁` markers, special-token flags and word spans.

Byte-level BPE (RoBERTa) marks a leading space with `Ġ`, SentencePiece (XLM-R) with `▁`, WordPiece
(BERT) marks continuations with `##`. `TokenView` hides all three behind one shape: `tokens` holds
the text each token covers (sliced from the input by offsets), `word_start` says which tokens begin
a word, and `words` lists, for each word, the token positions that make it up, so analyses can
merge subwords into words.

One display convention for every figure, view and widget (`display_token`): a piece that continues
the word before it gets a leading `·` ("p ·iz ·zer ·ia"), a piece that starts a word is shown
bare, and a piece that is only whitespace shows as `␣`. A vocabulary token out of context (a
fill-mask candidate) starts a word when it has a leading space (`Ġ`): ' Paris' shows as `Paris`,
'Paris' as `·Paris`.

`tokenize(tokenizer, ...)` is the one way the package calls a tokenizer: transformers' fast
tokenizers switch padding/truncation ON in their Rust backend on every padded or truncated call and
never switch them off, so the next user of the backend (corpus packing) silently gets `<pad>` ids.
`tokenize` puts the backend back as it found it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Iterator

CONTINUATION = "·"  # display prefix for a token that continues a word
SPACE = "␣"         # display text of a token that covers only whitespace


def display_token(text: str, continues: bool) -> str:
    """The one display form of a token: `·` before a piece that continues a word (see module doc)."""
    if not text.strip():
        return SPACE
    return CONTINUATION + text if continues else text


def display_vocab_token(token: str) -> str:
    """Display form of a vocabulary token out of context: a leading space starts a word."""
    if token.startswith(" ") and token.strip():
        return display_token(token[1:], continues=False)
    return display_token(token, continues=not token.isspace() and not _is_special(token))


def plain_token(label: str) -> str:
    """A displayed token back to its text (drops the continuation mark)."""
    return label[len(CONTINUATION):] if label.startswith(CONTINUATION) and len(label) > 1 else label


def _is_special(token: str) -> bool:
    return len(token) > 2 and token.startswith("<") and token.endswith(">")


@dataclass(frozen=True)
class TokenView:
    """One encoded text as a person reads it. Lists are aligned with the model's input positions."""

    text: str
    ids: list[int]
    raw: list[str]                 # the tokenizer's own pieces, e.g. 'Ġpizza'
    tokens: list[str]              # readable text of each token, e.g. 'pizza', '<s>'
    special: list[bool]            # True for <s>, </s>, <pad>, ...
    word_start: list[bool]         # True where a token begins a word (False for specials)
    word_ids: list[int | None]     # index into `words` for each token, None for specials
    segment: list[int]             # 0 for the first text, 1 for the second of a pair
    words: list[str] = field(default_factory=list)
    word_spans: list[list[int]] = field(default_factory=list)  # token positions of each word

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def display(self) -> list[str]:
        """Tokens for labels (`display_token`): continuation pieces get a `·` prefix."""
        return [t if s else display_token(t, continues=not ws)
                for t, s, ws in zip(self.tokens, self.special, self.word_start)]

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame({
            "position": range(len(self)), "token": self.tokens, "token_id": self.ids,
            "raw": self.raw, "special": self.special, "word_start": self.word_start,
            "word_id": self.word_ids, "segment": self.segment,
        })


@contextlib.contextmanager
def backend_unchanged(tokenizer) -> Iterator[None]:
    """Restore the fast tokenizer's backend padding and truncation settings when the block ends."""
    backend = getattr(tokenizer, "_tokenizer", None)       # tokenizers.Tokenizer, fast only
    if backend is None or not hasattr(backend, "padding"):
        yield
        return
    padding, truncation = backend.padding, backend.truncation
    try:
        yield
    finally:
        if backend.padding != padding:
            if padding is None:
                backend.no_padding()
            else:
                backend.enable_padding(**padding)
        if backend.truncation != truncation:
            if truncation is None:
                backend.no_truncation()
            else:
                backend.enable_truncation(**truncation)


def tokenize(tokenizer, *args, **kwargs):
    """`tokenizer(*args, **kwargs)` that leaves the tokenizer's backend as it was (module doc)."""
    with backend_unchanged(tokenizer):
        return tokenizer(*args, **kwargs)


def _clean_piece(piece: str) -> str:
    """Strip tokenizer markers from a piece when offsets cannot give its text."""
    return piece.replace("Ġ", " ").replace("▁", " ").replace("Ċ", "\n").removeprefix("##").strip()


def token_view(tokenizer, text: str, text_pair: str | None = None, *, encoding=None) -> TokenView:
    """Build a `TokenView` for `text` (and `text_pair`) with a fast tokenizer.

    `encoding` may be a ready `tokenizers.Encoding` (one row of a batch) to avoid re-tokenising;
    it must come from the same text(s).
    """
    if encoding is None:
        batch = tokenize(tokenizer, text, text_pair, return_offsets_mapping=True,
                         return_special_tokens_mask=True)
        encoding = batch.encodings[0]
    ids = list(encoding.ids)
    raw = list(encoding.tokens)
    special_ids = set(tokenizer.all_special_ids)
    attn = list(encoding.attention_mask)
    n = sum(attn) if attn else len(ids)
    ids, raw = ids[:n], raw[:n]
    offsets = list(encoding.offsets)[:n]
    seq_ids = list(encoding.sequence_ids)[:n]
    enc_word_ids = list(encoding.word_ids)[:n]
    special = [(i in special_ids) or s is None for i, s in zip(ids, seq_ids)]

    sources = [text, text_pair if text_pair is not None else ""]
    tokens, word_start, word_ids, segment = [], [], [], []
    words: list[str] = []
    spans: list[list[int]] = []
    last_key = None
    for pos, (tid, piece, (a, b), sid, wid, sp) in enumerate(
        zip(ids, raw, offsets, seq_ids, enc_word_ids, special)
    ):
        segment.append(sid if sid is not None else (segment[-1] if segment else 0))
        if sp:
            tokens.append(piece.strip())  # '<mask>' with lstrip=True carries the space it ate
            word_start.append(False)
            word_ids.append(None)
            last_key = None
            continue
        src = sources[sid or 0]
        shown = src[a:b] if b > a else _clean_piece(piece)
        if not shown.strip():
            shown = SPACE  # a token that is only whitespace (e.g. a lone 'Ġ')
        tokens.append(shown)
        key = (sid, wid)
        if key != last_key:
            words.append("")
            spans.append([])
        words[-1] = src[offsets[spans[-1][0]][0]:b] if spans[-1] else src[a:b]
        spans[-1].append(pos)
        word_start.append(key != last_key)
        word_ids.append(len(words) - 1)
        last_key = key
    return TokenView(text=text, ids=ids, raw=raw, tokens=tokens, special=special,
                     word_start=word_start, word_ids=word_ids, segment=segment,
                     words=words, word_spans=spans)
