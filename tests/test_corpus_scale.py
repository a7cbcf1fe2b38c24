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


def _per_sentence_ids(documents, tokenizer):
    """Per document, each sentence's ids as the in-memory path defined them: sentences of each
    paragraph (a space before all but the first), tokenised one by one, empty ones dropped."""
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
    return docs


def _in_memory_pack(documents, tokenizer, seq_len, mode, heldout, seed):
    """(train, heldout) as the in-memory path defined them (see the module docstring)."""
    docs = _per_sentence_ids(documents, tokenizer)
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
    per-document, per-sentence ids of the in-memory definition, including a sentence-less gap."""
    from workbench.training.corpus import _clean_backend, _encode_chunk

    docs = texts[:40] + ["Short.", "Two sentences. Here they are!\nA new paragraph? Yes."]
    want = _per_sentence_ids(docs, tokenizer)
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


@pytest.mark.parametrize("mode", ["full", "doc"])
@pytest.mark.parametrize("block", [1, 37, 500])
def test_packing_in_small_blocks_carries_the_open_row(mode, block, texts, tokenizer, tmp_path,
                                                      monkeypatch):
    """The token files read back in blocks of a few documents (`block` tokens, 3 documents per
    read: rows left open at a block's end, documents longer than a block, a sentence longer
    than a row) pack the same bytes as the in-memory definition."""
    import functools

    from workbench.training.token_store import TokenFiles

    monkeypatch.setattr(TokenFiles, "blocks", functools.partialmethod(
        TokenFiles.blocks, tokens_per_block=block, documents_per_read=3))
    docs = texts[:60] + ["Short.", "x " * 90 + "end."]  # the last: one 91-token sentence
    packed = pack(docs, tokenizer, seq_len=24, mode=mode, heldout=0.2, seed=7,
                  cache_dir=tmp_path / "cache")
    train, held = _in_memory_pack(docs, tokenizer, 24, mode, 0.2, 7)
    assert packed.train.tobytes() == train.tobytes() and packed.heldout.tobytes() == held.tobytes()
    assert packed.row_tokens().tolist() == (train != tokenizer.pad_token_id).sum(1).tolist()


def _trained_backends():
    """Small tokenizers of the families in use, trained offline: WordPiece (BERT), Unigram with
    Metaspace (each prepend scheme; sentencepiece models), byte-level BPE with a prefix space,
    BPE after a prepend normaliser (Llama-style)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    from workbench.testing import offline_text

    texts = offline_text(20_000)
    made = {}
    wordpiece = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=True)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wordpiece.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=600, special_tokens=["[UNK]"]))
    made["wordpiece"] = wordpiece
    for scheme in ("always", "first", "never"):
        unigram = Tokenizer(models.Unigram())
        unigram.normalizer = normalizers.NFKC()
        unigram.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme=scheme)
        unigram.train_from_iterator(texts, trainers.UnigramTrainer(vocab_size=600, unk_token="<unk>",
                                                                   special_tokens=["<unk>", "<mask>"]))
        made[f"metaspace-{scheme}"] = unigram
    byte_level = Tokenizer(models.BPE())
    byte_level.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    byte_level.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=600, special_tokens=["<mask>"]))
    made["byte-level-prefix"] = byte_level
    prepend = Tokenizer(models.BPE())
    prepend.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    prepend.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=600, special_tokens=["<mask>"]))
    made["prepend-normaliser"] = prepend
    return made


def test_grouped_encoding_gives_each_sentence_its_own_ids(texts, tokenizer):
    """Sentences encoded as the words of pre-tokenized inputs (`_encode_grouped`) get exactly
    the ids of encoding each alone, for every tokenizer family, odd text included; a backend
    whose grouped ids differ falls back to sentence-by-sentence encoding."""
    from workbench.training.corpus import _clean_backend, _encode_chunk, _encode_grouped, _sentences

    docs = texts[:80] + ["A <mask> here. 'Tis (so). Ünïcödé 日本語 test!\n\t tab. 123 456.",
                         "<s>Odd</s> too. \u200b Zero width. ..."]
    flat, _ = _sentences(docs)
    backends = {"tiny roberta": _clean_backend(tokenizer), **_trained_backends()}
    for name, backend in backends.items():
        alone = [e.ids for e in backend.encode_batch(flat, add_special_tokens=False)]
        tokens, lengths = _encode_grouped(flat, backend, np.uint32)
        assert lengths.tolist() == [len(ids) for ids in alone], name
        assert tokens.tolist() == [t for ids in alone for t in ids], name

    class Shifted:  # a backend whose pre-tokenized encoding differs from encoding alone
        def __init__(self, inner):
            self.inner = inner

        def encode_batch(self, inputs, is_pretokenized=False, add_special_tokens=True):
            if is_pretokenized:  # each group's sentences joined: ids no longer per sentence
                inputs = [[" ".join(group)] for group in inputs]
            return self.inner.encode_batch(inputs, is_pretokenized=is_pretokenized,
                                           add_special_tokens=add_special_tokens)

    shifted = Shifted(_clean_backend(tokenizer))
    assert _encode_grouped(flat, shifted, np.uint32) is None
    tokens, lengths, _, _ = _encode_chunk(docs, tokenizer, shifted, np.uint32)
    want = [e.ids for e in _clean_backend(tokenizer).encode_batch(flat, add_special_tokens=False)]
    assert tokens.tolist() == [t for ids in want for t in ids]


def test_unknown_pack_mode_is_refused_before_reading(tokenizer, tmp_path):
    class Unread(TextSource):
        def texts(self):
            raise AssertionError("the corpus was read before the mode was checked")

    with pytest.raises(InputError, match="mode='sentences'.*full"):
        pack(Unread(files=[tmp_path / "never.txt"]), tokenizer, mode="sentences",
             cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()
