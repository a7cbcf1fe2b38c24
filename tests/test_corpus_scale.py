"""The out-of-core corpus path: files, datasets and streams tokenised to disk and packed into
memory-mapped rows, identical to the in-memory definition; the UTF-8 rule and I/O errors.

Oracle: `_in_memory_pack`, the packing as it was defined before the out-of-core path (documents
in a Python list, every sentence tokenised at once, the held-out documents drawn by
`default_rng(seed).permutation(n_docs)`, rows packed by a plain loop), written out here.
"""

from __future__ import annotations

import errno
import gzip
import json
import os

import numpy as np
import pytest

from workbench.errors import InputError
from workbench.training.corpus import Corpus, PackedCorpus, pack, split_sentences
from workbench.training.token_store import NpyWriter, TextSource


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def texts():
    from workbench.testing import offline_text

    paras = offline_text(40_000)
    # documents of one to three paragraphs (newlines inside), a long one crossing rows
    docs = ["\n".join(paras[i:i + 1 + i % 3]) for i in range(0, len(paras), 3)]
    return docs + [" ".join(paras[:6])]


def _in_memory_pack(documents, tokenizer, seq_len, mode, heldout, seed):
    """(train, heldout) as the in-memory path defined them (see the module docstring)."""
    flat, owners = [], []
    for d, doc in enumerate(documents):
        for para in split_sentences(doc):
            for i, sent in enumerate(para):
                flat.append(sent if i == 0 else " " + sent)
                owners.append(d)
    ids = tokenizer(flat, add_special_tokens=False)["input_ids"]
    docs = [[] for _ in documents]
    for d, sent in zip(owners, ids):
        if sent:
            docs[d].append(sent)
    n = len(documents)
    n_held = max(1, round(n * heldout)) if heldout > 0 and n > 1 else 0
    held = set(np.random.default_rng(seed).permutation(n)[:n_held].tolist())
    bos, eos, pad = tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id

    def rows_of(split_docs):
        rows, buf, budget = [], [], seq_len - 2
        for doc in split_docs:
            if not doc:
                continue
            if mode == "doc" and buf:
                rows.append([bos, *buf, eos])
                buf = []
            elif buf:
                if len(buf) + 1 > budget:
                    rows.append([bos, *buf, eos])
                    buf = []
                else:
                    buf.append(eos)
            for sent in doc:
                for s in range(0, len(sent), budget):
                    if len(buf) + len(sent[s:s + budget]) > budget:
                        rows.append([bos, *buf, eos])
                        buf = []
                    buf += sent[s:s + budget]
        if buf:
            rows.append([bos, *buf, eos])
        return np.array([r + [pad] * (seq_len - len(r)) for r in rows], dtype=np.uint16)

    return (rows_of([d for i, d in enumerate(docs) if i not in held]),
            rows_of([d for i, d in enumerate(docs) if i in held]))


def _write_folder(folder, docs):
    folder.mkdir(parents=True, exist_ok=True)
    for i, doc in enumerate(docs):
        (folder / f"{i:04d}.txt").write_text(doc, encoding="utf-8")
    return folder


@pytest.mark.parametrize("mode", ["full", "doc"])
def test_files_pack_byte_identical_to_the_in_memory_definition(mode, texts, tokenizer, tmp_path):
    folder = _write_folder(tmp_path / "docs", texts)
    packed = pack(folder, tokenizer, seq_len=40, mode=mode, heldout=0.1, seed=3,
                  cache_dir=tmp_path / "cache")
    train, held = _in_memory_pack(texts, tokenizer, 40, mode, 0.1, 3)
    assert isinstance(packed.train, np.memmap) and isinstance(packed.heldout, np.memmap)
    assert packed.train.dtype == train.dtype and len(held) > 0
    assert packed.train.tobytes() == train.tobytes() and packed.heldout.tobytes() == held.tobytes()
    # the index written beside the rows: non-pad tokens per row and the unigram counts
    assert packed.row_tokens().tolist() == (train != tokenizer.pad_token_id).sum(1).tolist()
    counts = np.bincount(train.reshape(-1).astype(np.int64), minlength=len(tokenizer))
    assert packed.token_counts().tolist() == counts.tolist()
    assert packed.meta["train_tokens"] == int((train != tokenizer.pad_token_id).sum())
    # the same counts streamed from an old-style cache that lacks the index files
    for name in ("train_counts.npy", "train_row_tokens.npy"):
        (packed.folder / name).unlink()
    again = PackedCorpus.load(packed.folder)
    assert again.token_counts()[:len(counts)].tolist() == counts.tolist()
    assert again.row_tokens().tolist() == (train != tokenizer.pad_token_id).sum(1).tolist()


def test_one_big_file_splits_documents_on_blank_lines(texts, tokenizer, tmp_path):
    """BERT's create_pretraining_data.py convention; \\r\\n line ends read as \\n."""
    big = tmp_path / "big.txt"
    big.write_bytes("\n\n  \n".join(texts).replace("\n", "\r\n").encode("utf-8"))
    packed = pack(big, tokenizer, seq_len=40, heldout=0.1, cache_dir=tmp_path / "cache")
    train, held = _in_memory_pack(texts, tokenizer, 40, "full", 0.1, 0)
    assert packed.meta["documents"] == len(texts)
    assert packed.train.tobytes() == train.tobytes() and packed.heldout.tobytes() == held.tobytes()
    # the in-memory reader of the same file agrees
    assert Corpus.from_files(big, split_on_blank_lines=True).documents == [t.strip() for t in texts]


def test_jsonl_gz_and_datasets_stream_the_same_rows(texts, tokenizer, tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr("workbench.training.corpus.CHUNK_BYTES", 3000)  # many chunks

    shards = tmp_path / "shards"
    shards.mkdir()
    for k in range(2):
        with gzip.open(shards / f"part-{k}.jsonl.gz", "wt", encoding="utf-8") as f:
            for t in texts[k::2]:
                f.write(json.dumps({"text": t}) + "\n")
    order = texts[0::2] + texts[1::2]
    want = _in_memory_pack(order, tokenizer, 40, "full", 0.1, 0)
    ds = datasets.Dataset.from_dict({"text": order})
    cases = [(shards, 1), (str(shards / "*.jsonl.gz"), 2), (ds, 1), (ds.to_iterable_dataset(), 1)]
    for corpus, workers in cases:  # 2: chunks tokenised by two processes, written in order
        got = pack(corpus, tokenizer, seq_len=40, heldout=0.1, cache_dir=tmp_path / f"cache{workers}",
                   num_proc=workers)
        assert got.train.tobytes() == want[0].tobytes(), type(corpus)
        assert got.heldout.tobytes() == want[1].tobytes(), type(corpus)


def test_cache_key_reads_no_text_and_follows_file_changes(texts, tokenizer, tmp_path, monkeypatch):
    folder = _write_folder(tmp_path / "docs", texts[:20])
    first = pack(folder, tokenizer, seq_len=40, heldout=0.1, cache_dir=tmp_path / "cache")

    def no_reading(self):
        raise AssertionError("the corpus text was read to find its cache")

    with monkeypatch.context() as m:
        m.setattr(TextSource, "texts", no_reading)
        again = pack(folder, tokenizer, seq_len=40, heldout=0.1, cache_dir=tmp_path / "cache")
    assert again.folder == first.folder
    (folder / "0000.txt").write_text(texts[0] + " One more sentence.", encoding="utf-8")
    changed = pack(folder, tokenizer, seq_len=40, heldout=0.1, cache_dir=tmp_path / "cache")
    assert changed.folder != first.folder
    assert changed.meta["tokens_sha256"] != first.meta["tokens_sha256"]
    os.utime(folder / "0001.txt")  # touched, same text: a new key, the same token content
    touched = pack(folder, tokenizer, seq_len=40, heldout=0.1, cache_dir=tmp_path / "cache")
    assert touched.folder != changed.folder
    assert touched.meta["tokens_sha256"] == changed.meta["tokens_sha256"]
    assert sorted(p.name for p in (tmp_path / "cache").iterdir() if p.name.startswith(".")) == []


def test_files_are_utf8_or_a_declared_encoding(texts, tokenizer, tmp_path):
    bad = tmp_path / "latin"
    bad.mkdir()
    (bad / "a.txt").write_text("Fine text.\nStill fine.\n", encoding="utf-8")
    (bad / "b.txt").write_bytes("First line.\nCaf\xe9 au lait.\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"b\.txt: not UTF-8 at byte 15 \(line 2\).*encoding"):
        pack(bad, tokenizer, seq_len=40, cache_dir=tmp_path / "cache")
    utf16 = tmp_path / "utf16.txt"
    utf16.write_text("\n\n".join(texts[:30]), encoding="utf-16")
    with pytest.raises(InputError, match=r"utf16\.txt.*byte 0.*encoding='utf-16'"):
        pack(utf16, tokenizer, seq_len=40, cache_dir=tmp_path / "cache")
    declared = pack(TextSource.from_files(utf16, encoding="utf-16"), tokenizer, seq_len=40,
                    cache_dir=tmp_path / "cache")
    assert declared.train.tobytes() == _in_memory_pack(texts[:30], tokenizer, 40, "full", 0.02,
                                                       0)[0].tobytes()
    binary = tmp_path / "model.bin"
    binary.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 4)
    with pytest.raises(InputError, match=r"model\.bin.*(NUL byte|not UTF-8)"):
        pack(binary, tokenizer, seq_len=40, cache_dir=tmp_path / "cache")
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [declared.folder.name]  # no temp left


def test_empty_shard_truncated_gzip_and_missing_path_are_named(texts, tokenizer, tmp_path):
    folder = _write_folder(tmp_path / "docs", texts[:5])
    (folder / "zz-empty.txt").write_text("  \n\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"zz-empty\.txt holds no text \(an empty shard\)"):
        pack(folder, tokenizer, seq_len=40, cache_dir=tmp_path / "cache")
    cut = tmp_path / "cut.jsonl.gz"
    data = gzip.compress("".join(json.dumps({"text": t}) + "\n" for t in texts).encode())
    cut.write_bytes(data[:len(data) // 2])
    with pytest.raises(InputError, match=r"cannot read corpus file .*cut\.jsonl\.gz"):
        pack(cut, tokenizer, seq_len=40, cache_dir=tmp_path / "cache")
    with pytest.raises(InputError, match="no such file or folder"):
        pack(tmp_path / "nowhere", tokenizer, seq_len=40, cache_dir=tmp_path / "cache")


def test_disk_full_mid_write_leaves_no_cache_behind(texts, tokenizer, tmp_path, monkeypatch):
    folder = _write_folder(tmp_path / "docs", texts)
    real = NpyWriter.write
    calls = []

    def full_disk(self, block):
        calls.append(1)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, block)

    monkeypatch.setattr(NpyWriter, "write", full_disk)
    with pytest.raises(InputError, match="the disk is full.*Nothing was kept"):
        pack(folder, tokenizer, seq_len=40, cache_dir=tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []  # no temp folder, no half cache
    monkeypatch.setattr(NpyWriter, "write", real)
    done = pack(folder, tokenizer, seq_len=40, cache_dir=tmp_path / "cache")
    assert done.train.tobytes() == _in_memory_pack(texts, tokenizer, 40, "full", 0.02, 0)[0].tobytes()


def test_cli_corpus_flags_make_a_text_source(texts, tmp_path, monkeypatch):
    from workbench import cli
    from workbench.training import pretrain_cli

    seen = {}

    def fake_pretrain(corpus, **kwargs):
        seen["corpus"] = corpus
        raise SystemExit(0)

    monkeypatch.setattr("workbench.training.pretrain.pretrain", fake_pretrain)
    big = tmp_path / "big.txt"
    big.write_text("\n".join(texts[:4]), encoding="latin-1")
    args = cli.build_parser().parse_args(["pretrain", str(big), "--encoding", "latin-1",
                                          "--documents", "lines"])
    with pytest.raises(SystemExit):
        pretrain_cli._cmd_pretrain(args)
    source = seen["corpus"]
    assert isinstance(source, TextSource) and source.encoding == "iso8859-1"
    assert list(source.texts()) == [t.strip() for t in texts[:4]]  # one document per line


def test_chunk_arrays_equal_the_per_sentence_lists(texts, tokenizer):
    """The worker's compact arrays (built without a Python loop over tokens) hold exactly the
    per-document, per-sentence ids of `_tokenize_documents`, including a sentence-less gap."""
    from workbench.training.corpus import _clean_backend, _encode_chunk, _tokenize_documents

    docs = texts[:40] + ["Short.", "Two sentences. Here they are!\nA new paragraph? Yes."]
    want = _tokenize_documents(docs, tokenizer)
    for backend in (_clean_backend(tokenizer), None):  # the fast path and the slow tokenizer's
        tokens, lengths, per_doc, text_bytes = _encode_chunk(docs, tokenizer, backend, np.uint16)
        assert tokens.dtype == np.uint16 and lengths.dtype == per_doc.dtype == np.uint32
        assert per_doc.tolist() == [len(d) for d in want]
        assert lengths.tolist() == [len(s) for d in want for s in d]
        assert tokens.tolist() == [t for d in want for s in d for t in s]
        assert text_bytes == sum(len(d.encode("utf-8")) for d in docs)


@pytest.mark.parametrize("mode", ["full", "doc"])
def test_many_chunks_two_workers_pack_the_same_bytes(mode, texts, tokenizer, tmp_path, monkeypatch):
    """Chunks far smaller than a document run (CHUNK_BYTES) across two tokenising processes
    give the files of the in-memory definition, in both packing modes."""
    monkeypatch.setattr("workbench.training.corpus.CHUNK_BYTES", 2000)
    big = tmp_path / "big.txt"
    big.write_text("\n\n".join(texts), encoding="utf-8")
    got = pack(big, tokenizer, seq_len=40, mode=mode, heldout=0.1, seed=5,
               cache_dir=tmp_path / "cache", num_proc=2)
    train, held = _in_memory_pack(texts, tokenizer, 40, mode, 0.1, 5)
    assert got.train.tobytes() == train.tobytes() and got.heldout.tobytes() == held.tobytes()
