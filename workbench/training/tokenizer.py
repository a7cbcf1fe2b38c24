"""Training a byte-level BPE tokenizer the RoBERTa way and saving it so `wb.load` reads it.

RoBERTa's scheme: byte-level BPE with `<s>`, `<pad>`, `</s>`, `<unk>`, `<mask>` as ids 0-4, and a
mask token with `lstrip=True` so that ` <mask>` swallows the space before it (as roberta-base does).
Build the fast tokenizer with `from_pretrained(folder)`: in transformers 5 the
`RobertaTokenizerFast(vocab_file=..., merges_file=...)` constructor silently builds an empty one.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Iterable, Iterator

SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


def capped_texts(texts: Iterable[str], max_bytes: int) -> Iterator[str]:
    """The first texts of `texts` up to `max_bytes` of UTF-8 (the last one may cross it): the
    sample a tokenizer is trained on, so training reads a bounded prefix of any corpus."""
    seen = 0
    for text in texts:
        if seen >= max_bytes:
            return
        seen += len(text.encode("utf-8"))
        yield text


def train_bpe_tokenizer(texts: Iterable[str], folder: str | Path, *, vocab_size: int = 8000,
                        min_frequency: int = 2, model_max_length: int = 512):
    """Train a byte-level BPE tokenizer on `texts`, save it to `folder`, return the fast tokenizer."""
    from tokenizers import AddedToken, ByteLevelBPETokenizer
    from transformers import RobertaTokenizerFast

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=min_frequency,
                            special_tokens=SPECIAL_TOKENS, show_progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        bpe.save_model(tmp)
        tok = RobertaTokenizerFast.from_pretrained(
            tmp, model_max_length=model_max_length,
            mask_token=AddedToken("<mask>", lstrip=True, rstrip=False))
    if len(tok) < len(SPECIAL_TOKENS) + 256:
        raise RuntimeError(f"tokenizer training produced only {len(tok)} tokens")
    tok.save_pretrained(folder)
    return tok
