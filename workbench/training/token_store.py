"""Out-of-core corpora: text streamed from files or datasets, token files written and read in chunks.

What belongs here is the I/O that lets pretraining scale past the host's memory, nothing about
sentences or packing (training.corpus defines those):

- `TextSource`: documents read lazily from a folder or glob of `.txt`/`.txt.gz`/`.jsonl(.gz)`
  files, one big text file (documents separated by blank lines, the convention of BERT's
  `create_pretraining_data.py`), a `datasets.Dataset` (read in Arrow batches, never turned into
  one Python list) or a streaming `IterableDataset`. Files are decoded as UTF-8 (or a declared
  `encoding=`); anything else is refused naming the file, the line and the byte offset.
  `fingerprint` identifies the input without reading it (see `TextSource.fingerprint`).
- `TokenFiles`: the per-sentence token stream of a corpus on disk (tokens, sentence lengths,
  sentences per document), appended chunk by chunk and read back sequentially.
- `NpyWriter`: an `.npy` array written row block by row block (its header rewritten in place at
  the end), so `np.load(mmap_mode="r")` opens the result; it hashes what it writes.
- `chunked_rows`: an `.npy` file read in blocks by plain file reads (no mapped pages pile up).

Everything is written under a temporary name and renamed when complete (training.corpus.pack).
"""

from __future__ import annotations

import codecs
import glob as globmod
import gzip
import hashlib
import json
import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..errors import InputError

TEXT_SUFFIXES = (".txt", ".txt.gz", ".jsonl", ".jsonl.gz")
DOCUMENT_MODES = ("auto", "file", "blank-lines", "lines")


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return next((s for s in sorted(TEXT_SUFFIXES, key=len, reverse=True) if name.endswith(s)), "")


class TextSource:
    """Documents of a corpus read lazily (see the module docstring); `texts()` yields them
    stripped, empty ones dropped, in a fixed order. `hash` is the `fingerprint`.

    What lets `wb.pretrain` follow RoBERTa's lesson that more data helps (Liu et al. 2019, §3.2:
    160 GB of text) in constant host memory; one big file is split into documents at blank lines
    as in BERT's `create_pretraining_data.py` (Devlin et al. 2019)."""

    def __init__(self, *, files: Sequence[Path] = (), dataset=None, column: str = "text",
                 documents: str = "auto", encoding: str = "utf-8", name: str | None = None,
                 key: str | None = None):
        if documents not in DOCUMENT_MODES:
            raise InputError(f"documents={documents!r}; use one of {DOCUMENT_MODES}")
        try:
            self.encoding = codecs.lookup(encoding).name
        except (LookupError, TypeError):
            raise InputError(f"encoding={encoding!r} is not a known text encoding (e.g. 'utf-8', "
                             "'utf-16', 'latin-1')") from None
        self.files, self.dataset, self.column = [Path(f) for f in files], dataset, column
        self.documents_mode, self.key = documents, key
        self.name = name or (self.files[0].stem if self.files else "dataset")

    # constructors -----------------------------------------------------------------------------
    @classmethod
    def from_files(cls, paths, *, documents: str = "auto", encoding: str = "utf-8",
                   column: str = "text", name: str | None = None) -> "TextSource":
        """A file, a folder (every text file under it, sorted by path) or a glob pattern.
        `documents`: 'file' (one per .txt file), 'blank-lines' (blocks between blank lines),
        'lines' (one per line); 'auto' = one per line of a .jsonl, blank-line blocks of a single
        .txt file given alone, one per .txt file of a folder or glob."""
        if isinstance(paths, (str, Path)):
            paths = [paths]
        files, single = [], False
        for p in map(Path, paths):
            if p.is_dir():
                files += [f for f in p.rglob("*") if f.is_file() and _suffix(f)]
            elif p.is_file():
                files.append(p)
                single = len(paths) == 1
            elif any(ch in str(p) for ch in "*?["):
                files += [Path(f) for f in globmod.glob(str(p), recursive=True) if Path(f).is_file()]
            else:
                raise InputError(f"no such file or folder: {p}")
        if not files:
            raise InputError(f"no text files ({', '.join(TEXT_SUFFIXES)}) found in "
                             f"{[str(p) for p in paths]}")
        if documents == "auto" and single and _suffix(files[0]) in (".txt", ".txt.gz"):
            documents = "blank-lines"
        return cls(files=sorted(files), documents=documents, encoding=encoding, column=column,
                   name=name)

    @classmethod
    def from_dataset(cls, dataset, column: str = "text", name: str | None = None,
                     key: str | None = None) -> "TextSource":
        """One document per row of a `datasets.Dataset` or `IterableDataset`, read in batches."""
        names = getattr(dataset, "column_names", None)
        if names is not None and column not in names:
            raise InputError(f"column {column!r} not in the dataset (columns: {names})")
        info_name = getattr(getattr(dataset, "info", None), "dataset_name", None)
        return cls(dataset=dataset, column=column, name=name or info_name or "dataset", key=key)

    # identity ---------------------------------------------------------------------------------
    @property
    def fingerprint(self) -> str:
        """What identifies the input without reading its text: for files, their resolved paths,
        sizes and modification times (plus how they are split and decoded); for a Dataset, its
        Arrow fingerprint; for a streaming dataset, `key=` if given, else a hash of its whole
        text (one extra pass, remembered by this TextSource)."""
        if getattr(self, "_fingerprint", None):  # a stream is hashed once per TextSource
            return self._fingerprint
        h = hashlib.sha256(f"{self.documents_mode}|{self.encoding}|{self.column}".encode())
        if self.files:
            for f in self.files:
                st = f.stat()
                h.update(f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        elif self.key or getattr(self.dataset, "_fingerprint", None):
            h.update(str(self.key or self.dataset._fingerprint).encode())
        else:
            for text in self.texts():
                h.update(text.encode("utf-8") + b"\x00")
            self._fingerprint = h.hexdigest()[:16]
        return h.hexdigest()[:16]

    hash = fingerprint

    @property
    def sources(self) -> list[str]:
        return [str(f) for f in self.files] or [repr(type(self.dataset).__name__)]

    @property
    def total_bytes(self) -> int | None:
        """Bytes of the input files (the progress bar's total; None for datasets)."""
        return sum(f.stat().st_size for f in self.files) if self.files else None

    def __repr__(self) -> str:
        what = f"files={len(self.files)}" if self.files else f"dataset={type(self.dataset).__name__}"
        return f"TextSource(name={self.name!r}, {what}, documents={self.documents_mode!r})"

    # reading ----------------------------------------------------------------------------------
    def texts(self) -> Iterator[str]:
        """Every non-empty document, stripped, in order."""
        raw = self._dataset_texts() if self.dataset is not None else \
            (d for f in self.files for d in self._file_texts(f))
        for doc in raw:
            doc = doc.strip()
            if doc:
                yield doc

    def _dataset_texts(self) -> Iterator[str]:
        ds = self.dataset
        if hasattr(ds, "select_columns"):
            ds = ds.select_columns([self.column])
        if hasattr(ds, "iter"):
            for batch in ds.iter(batch_size=1000):  # Arrow batches: never the whole column
                yield from (str(t) for t in batch[self.column] if t)
        else:
            yield from (str(row[self.column]) for row in ds if row[self.column])

    def _file_texts(self, path: Path) -> Iterator[str]:
        suffix, mode = _suffix(path), self.documents_mode
        if mode == "auto":
            mode = "lines" if suffix.startswith(".jsonl") else "file"
        found = False
        lines = _decoded_lines(path, self.encoding)
        if suffix.startswith(".jsonl"):
            lines = _jsonl_texts(path, lines, self.column)
        if mode == "file":
            docs = iter(["".join(lines)])
        elif mode == "lines":
            docs = lines
        else:
            docs = _blank_line_blocks(lines)
        for doc in docs:
            found = found or bool(doc.strip())
            yield doc
        if not found:
            raise InputError(f"{path} holds no text (an empty shard): remove it from the corpus")


def _decoded_lines(path: Path, encoding: str) -> Iterator[str]:
    """Lines of `path` (gzip-decompressed for .gz) decoded strictly, newlines universal ('\\n').
    UTF-8 is decoded line by line so that an error names the line and the byte offset."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    where = " of the decompressed text" if opener is gzip.open else ""
    try:
        f = opener(path, "rb")
    except OSError as err:
        raise InputError(f"cannot read corpus file {path}: {err.strerror or err}") from None
    with f:
        if encoding != "utf-8":  # a declared encoding (e.g. utf-16): decoded as a stream
            import io

            try:
                yield from io.TextIOWrapper(f, encoding=encoding, newline=None)
            except UnicodeDecodeError as err:
                raise InputError(f"{path} is not valid {encoding} text ({err.reason}); pass the "
                                 "encoding the file is written in") from None
            return
        offset = 0
        try:
            for number, raw in enumerate(f, 1):
                try:  # decoded once; a failure or a NUL byte is explained by _check_utf8
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    text = "\x00"
                if "\x00" in text:
                    _check_utf8(path, raw, number, offset, where)
                offset += len(raw)
                if "\r" in text:  # universal newlines, as open(..., newline=None) reads them
                    text = text.replace("\r\n", "\n").replace("\r", "\n")
                    parts = text.split("\n")
                    yield from (p + "\n" for p in parts[:-1])
                    if parts[-1]:
                        yield parts[-1]
                else:
                    yield text
        except (OSError, EOFError) as err:  # e.g. a truncated .gz or a read error
            raise InputError(f"cannot read corpus file {path} after byte {offset}{where}: "
                             f"{getattr(err, 'strerror', None) or err}") from None


def _check_utf8(path: Path, raw: bytes, number: int, offset: int, where: str) -> None:
    """Refuse a line that is not UTF-8, or holds NUL bytes (binary data, or UTF-16 text)."""
    utf16 = raw[:2] in (b"\xff\xfe", b"\xfe\xff") or raw[1:64:2].count(0) > len(raw[1:64:2]) // 2
    hint = " (it looks like UTF-16: pass encoding='utf-16')" if utf16 else ""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not UTF-8 at byte {offset + err.start}{where} (line {number}): "
                         f"{raw[err.start:err.start + 4]!r}{hint}; convert the file to UTF-8 or "
                         "pass the encoding it is written in (encoding=..., --encoding)") from None
    if b"\x00" in raw:
        at = offset + raw.index(b"\x00")
        raise InputError(f"{path}: NUL byte at byte {at}{where} (line {number})"
                         f"{hint or ' (it looks like a binary file, not text)'}; corpus files are "
                         "read as UTF-8 text")


def _jsonl_texts(path: Path, lines: Iterator[str], column: str) -> Iterator[str]:
    """The `column` field of each JSON line (blank lines skipped)."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputError(f"{path} line {number} is not JSON ({err.msg}); a .jsonl corpus holds "
                             f"one object per line with a {column!r} field") from None
        if not isinstance(row, dict) or column not in row:
            raise InputError(f"{path} line {number} has no {column!r} field; pass column=... "
                             "naming the text field")
        if row[column]:
            yield str(row[column]) + "\n"


def _blank_line_blocks(lines: Iterator[str]) -> Iterator[str]:
    """Blocks of lines separated by blank (whitespace-only) lines, as `re.split(r"\\n\\s*\\n")`."""
    block: list[str] = []
    for line in lines:
        if line.strip():
            block.append(line)
        elif block:
            yield "".join(block)
            block = []
    if block:
        yield "".join(block)


# --------------------------------------------------------------------------- token files

def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits (ids < 65535), else uint32."""
    return np.dtype(np.uint16) if vocab_size <= 65535 else np.dtype(np.uint32)


class TokenFiles:
    """The token stream of a corpus: `tokens.bin` (every sentence's ids, concatenated),
    `sentences.bin` (uint32 length of each sentence) and `documents.bin` (uint32 sentences per
    document). Written by `append`, read back in blocks of whole documents by `blocks`."""

    NAMES = ("tokens.bin", "sentences.bin", "documents.bin")

    def __init__(self, folder: Path, dtype: np.dtype):
        self.folder, self.dtype = Path(folder), np.dtype(dtype)
        self.n_documents = 0

    def append(self, tokens: np.ndarray, sentence_lengths: np.ndarray,
               document_sentences: np.ndarray) -> None:
        """Add a chunk of documents: their ids concatenated, each sentence's length, and each
        document's count of sentences (`encode_chunk`'s three arrays)."""
        with _guarded(self.folder):
            for name, arr, dtype in zip(self.NAMES, (tokens, sentence_lengths, document_sentences),
                                        (self.dtype, np.uint32, np.uint32)):
                with open(self.folder / name, "ab") as f:
                    np.asarray(arr, dtype=dtype).tofile(f)
        self.n_documents += len(document_sentences)

    def blocks(self, tokens_per_block: int = 1 << 22,
               documents_per_read: int = 1 << 16) -> Iterator[tuple[np.ndarray, ...]]:
        """(tokens (N,), sentence lengths (S,) uint32, sentences per document (D,) uint32) of
        consecutive whole documents, about `tokens_per_block` tokens at a time (a larger
        document alone), read sequentially: memory stays bounded by the block, not the corpus."""
        tokens = _BlockReader(self.folder / "tokens.bin", self.dtype)
        lengths = _BlockReader(self.folder / "sentences.bin", np.uint32)
        documents = _BlockReader(self.folder / "documents.bin", np.uint32)
        while True:
            per_doc = documents.take_upto(documents_per_read)                      # (D,)
            if not len(per_doc):
                return
            sent_lengths = lengths.take(int(per_doc.sum(dtype=np.int64)))          # (S,)
            sent_end = np.concatenate([[0], np.cumsum(sent_lengths, dtype=np.int64)])
            doc_sent_end = np.concatenate([[0], np.cumsum(per_doc, dtype=np.int64)])
            doc_token_end = sent_end[doc_sent_end]                                 # (D + 1,)
            first = 0
            while first < len(per_doc):  # whole documents up to the token budget, at least one
                last = int(np.searchsorted(doc_token_end, doc_token_end[first] + tokens_per_block,
                                           side="right")) - 1
                last = min(max(last, first + 1), len(per_doc))
                s0, s1 = doc_sent_end[first], doc_sent_end[last]
                yield (tokens.take(int(doc_token_end[last] - doc_token_end[first])),
                       sent_lengths[s0:s1], per_doc[first:last])
                first = last

    def remove(self) -> None:
        for name in self.NAMES:
            (self.folder / name).unlink(missing_ok=True)


class _BlockReader:
    """Sequential reads of a flat binary file of `dtype` in blocks of `block` values."""

    def __init__(self, path: Path, dtype, block: int = 1 << 20):
        self.path, self.dtype, self.block = path, np.dtype(dtype), block
        self.f = open(path, "rb") if path.exists() else None
        self.buf, self.pos = np.zeros(0, self.dtype), 0

    def _fill(self, need: int) -> None:
        if len(self.buf) - self.pos >= need or self.f is None:
            return
        more = np.fromfile(self.f, dtype=self.dtype, count=max(self.block, need))
        self.buf, self.pos = np.concatenate([self.buf[self.pos:], more]), 0

    def take(self, n: int) -> np.ndarray:
        self._fill(n)
        out = self.buf[self.pos:self.pos + n]
        if len(out) < n:
            raise InputError(f"{self.path} is truncated; delete the cache folder and pack again")
        self.pos += n
        return out

    def take_upto(self, n: int) -> np.ndarray:
        """The next `n` values, fewer at the end of the file."""
        self._fill(n)
        out = self.buf[self.pos:self.pos + n]
        self.pos += len(out)
        return out


class NpyWriter:
    """An `.npy` file of shape (N, *tail) written in row blocks; `close()` fixes N in the header.

    numpy pads every header for 21 digits of the first axis, so the header written for N=0 has
    the same length as the final one and is rewritten in place. `sha256` hashes the data bytes."""

    def __init__(self, path: Path, tail: tuple[int, ...], dtype):
        self.path, self.tail, self.dtype, self.rows = Path(path), tuple(tail), np.dtype(dtype), 0
        self.sha = hashlib.sha256()
        self.f = open(self.path, "wb")
        self.header = self._header(0)
        with _guarded(self.path.parent):
            self.f.write(self.header)

    def _header(self, n: int) -> bytes:
        import io

        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            buf, {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                  "shape": (n, *self.tail)})
        return buf.getvalue()

    def write(self, block: np.ndarray) -> None:
        block = np.ascontiguousarray(block, dtype=self.dtype)
        data = block.tobytes()
        with _guarded(self.path.parent):
            self.f.write(data)
        self.sha.update(data)
        self.rows += len(block)

    def close(self) -> None:
        header = self._header(self.rows)
        if len(header) != len(self.header):  # never expected: numpy's growth padding
            raise RuntimeError(f"npy header of {self.path} changed length")
        with _guarded(self.path.parent):
            self.f.seek(0)
            self.f.write(header)
            self.f.flush()
            os.fsync(self.f.fileno())
            self.f.close()


def chunked_rows(array: np.ndarray, rows: int = 8192) -> Iterator[np.ndarray]:
    """Blocks of rows of `array`; for a memory-mapped `.npy` read by plain file reads, so a pass
    over the whole file leaves no mapped pages behind in this process."""
    path = getattr(array, "filename", None)
    if path is None or not isinstance(array, np.memmap):
        for start in range(0, len(array), rows):
            yield np.asarray(array[start:start + rows])
        return
    width = int(np.prod(array.shape[1:], dtype=np.int64))
    with open(path, "rb") as f:
        f.seek(array.offset)
        done = 0
        while done < len(array):
            n = min(rows, len(array) - done)
            block = np.fromfile(f, dtype=array.dtype, count=n * width)
            yield block.reshape((n, *array.shape[1:]))
            done += n


class _guarded:
    """Turn a disk-full or unwritable-folder OSError into a clear InputError naming the folder."""

    def __init__(self, folder: Path):
        self.folder = folder

    def __enter__(self):
        return self

    def __exit__(self, kind, err, tb):
        if isinstance(err, OSError) and not isinstance(err, InputError):
            import errno

            why = {errno.ENOSPC: "the disk is full", errno.EROFS: "the file system is read-only",
                   errno.EACCES: "permission denied", errno.EDQUOT: "the disk quota is exceeded"}
            reason = why.get(err.errno, err.strerror or str(err))
            raise InputError(f"cannot write the corpus cache in {self.folder}: {reason}. Nothing "
                             "was kept; free space or point WORKBENCH_CACHE (or cache_dir=) at "
                             "another disk, then run again") from None
        return False
