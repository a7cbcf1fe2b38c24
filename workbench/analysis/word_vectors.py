"""Word vectors of a treebank, per layer, for the syntax probes (structural, edge, MDL).

What belongs here: reading the probes' data argument (a CoNLL-U path or a `read_conll` frame)
and running `features(..., pool="words")` over it in chunks of sentences, so that host memory does
not grow with the corpus: each layer's (words, D) matrix goes into a `.npy` memory map in a
temporary folder once it would pass `MEMORY_LIMIT_BYTES`, and a probe reads one layer at a time.

Subword pooling: a word's vector is the mean of its subword tokens' hidden states (the words are
the treebank's, joined with single spaces, `features.word_groups`). Hewitt & Manning average
BERT's word pieces the same way. A sentence whose words do not all fit the model's window is
dropped and counted (`dropped`), never silently cut.
"""

from __future__ import annotations

import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import schema as S
from ..capture import check_max_length
from ..tokens import tokenize
from ..errors import InputError
from .features import features, resolve_layers

MEMORY_LIMIT_BYTES = 512 * 2 ** 20   # above this the layers live in memory maps on disk
UD_COLUMNS = [S.TEXT_ID, S.WORD_ID, S.WORD, S.POS, S.DEP_HEAD, S.RELATION]


def treebank(data, what: str = "data") -> pd.DataFrame:
    """A CoNLL-U path/text or a `read_conll(..., format="conllu")` frame, sorted and checked."""
    from .pos_data import read_conll

    if isinstance(data, pd.DataFrame):
        frame = data
    elif isinstance(data, (str, Path)):
        frame = read_conll(data, format="conllu")
    else:
        raise InputError(f"{what} is a {type(data).__name__}; pass a CoNLL-U path or the frame "
                         "wb.read_conll(path, format='conllu') returns")
    missing = set(UD_COLUMNS) - set(frame.columns)
    if missing:
        raise InputError(f"{what} lacks column(s) {sorted(missing)}: the syntax probes need gold "
                         "trees; read the file with wb.read_conll(path, format='conllu')")
    if frame.empty:
        raise InputError(f"{what} holds no words")
    return frame.sort_values([S.TEXT_ID, S.WORD_ID]).reset_index(drop=True)


@dataclass
class WordVectors:
    """`layer(l)` is an (N_words, D) float32 array aligned with `frame`'s rows (zeros for the
    words of `dropped` sentences); `offsets[k]:offsets[k+1]` are sentence k's rows."""

    frame: pd.DataFrame
    layers: list[int]
    arrays: dict[int, np.ndarray]
    offsets: np.ndarray
    kept: np.ndarray                  # (n_sentences,) bool: all words have vectors
    model: str
    _tmp: object = field(default=None, repr=False)   # keeps the memory-map folder alive

    @property
    def dim(self) -> int:
        return next(iter(self.arrays.values())).shape[1]

    @property
    def dropped(self) -> int:
        return int((~self.kept).sum())

    def layer(self, layer: int) -> np.ndarray:
        return self.arrays[layer]

    def sentences(self, layer: int) -> list[np.ndarray]:
        """Each kept sentence's (n_words, D) matrix at `layer`, in memory."""
        x = np.asarray(self.arrays[layer])
        return [x[a:b] for k, (a, b) in enumerate(zip(self.offsets[:-1], self.offsets[1:]))
                if self.kept[k]]


def fits_window(lm, texts: list[str]) -> np.ndarray:
    """(n,) bool: which texts fit the model's window with their special tokens."""
    lengths = [len(x) for x in tokenize(lm.tokenizer, texts, truncation=False,
                                        verbose=False)["input_ids"]]
    return np.asarray(lengths, dtype=int) <= check_max_length(lm, None)


def word_vectors(lm, data, *, layers="all", chunk_size: int = 1000, batch_size: int = 32,
                 progress: bool = False, cache: bool = True, what: str = "data") -> WordVectors:
    """Word-pooled vectors of every sentence of a treebank at `layers` (see module docstring)."""
    frame = treebank(data, what)
    layer_ids = resolve_layers(lm, layers)
    words = [list(g[S.WORD]) for _, g in frame.groupby(S.TEXT_ID, sort=True)]
    sizes = np.array([len(w) for w in words])
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    dim = lm.config.hidden_size
    nbytes = int(offsets[-1]) * dim * 4 * len(layer_ids)
    tmp = tempfile.TemporaryDirectory(prefix="wb-words-") if nbytes > MEMORY_LIMIT_BYTES else None
    arrays = {}
    for lay in layer_ids:
        shape = (int(offsets[-1]), dim)
        arrays[lay] = (np.lib.format.open_memmap(Path(tmp.name) / f"layer{lay}.npy", mode="w+",
                                                 dtype=np.float32, shape=shape)
                       if tmp else np.zeros(shape, dtype=np.float32))
    # analyses refuse a text longer than the model's window: such sentences are dropped (counted)
    kept = fits_window(lm, [" ".join(w) for w in words])
    for start in range(0, len(words), chunk_size):
        chosen = [k for k in range(start, min(start + chunk_size, len(words))) if kept[k]]
        if not chosen:
            continue
        feats = features(lm, [words[k] for k in chosen], layers=layer_ids, pool="words",
                         batch_size=batch_size, progress=progress, cache=cache)
        sentence = np.asarray(chosen)[feats.index[S.TEXT_ID].to_numpy()]  # rows -> sentence ids
        counts = np.bincount(sentence - start, minlength=min(chunk_size, len(words) - start))
        for k in chosen:
            kept[k] = counts[k - start] == len(words[k])
        ok = kept[sentence]
        dest = offsets[sentence[ok]] + feats.index[S.WORD_ID].to_numpy()[ok]
        for j, lay in enumerate(layer_ids):
            arrays[lay][dest] = feats.array[ok, j]
    if not kept.all():
        warnings.warn(f"{what}: {int((~kept).sum())} of {len(kept)} sentences do not fit "
                      f"{lm.name!r}'s window and were dropped", stacklevel=3)
    return WordVectors(frame=frame, layers=layer_ids, arrays=arrays, offsets=offsets, kept=kept,
                       model=lm.name, _tmp=tmp)


def sentence_trees(frame: pd.DataFrame, kept: np.ndarray | None = None) -> list[dict]:
    """Per (kept) sentence: heads (0-based, -1 root), UPOS, relations, words."""
    out = []
    for k, (_, g) in enumerate(frame.groupby(S.TEXT_ID, sort=True)):
        if kept is not None and not kept[k]:
            continue
        out.append({"heads": g[S.DEP_HEAD].to_numpy(int), "pos": g[S.POS].to_numpy(str),
                    "rel": g[S.RELATION].to_numpy(str), "words": g[S.WORD].to_numpy(str)})
    return out
