"""Corpus-scale features (`features(..., out=FOLDER)`) and the analyses that stream over them.

Oracles: the in-memory `features` of the same texts (vectors and index); a counter of the shards
actually computed (resume); sklearn's LogisticRegression, PCA and the in-memory `linear_cka` on
the same vectors (streamed consumers).
"""

from __future__ import annotations

import errno
import json

import numpy as np
import pytest

import workbench as wb
from workbench.analysis import features as feat_mod
from workbench.errors import InputError

_REAL_COMPUTE = feat_mod.compute_rows


class Killed(Exception):
    """Stands for a kill -9 between two shards."""


TEXTS = [f"The cat number {i} sat on the mat {'and ran away ' * (i % 5)}." for i in range(40)]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))


def _count_shards(monkeypatch, fail_after: int | None = None) -> list[int]:
    """Record the first text of each shard computed; raise (a kill) after `fail_after` shards."""
    seen: list[int] = []
    real = _REAL_COMPUTE      # not the attribute: an earlier patch may sit there

    def counting(*args, first_id=0, **kw):
        if fail_after is not None and len(seen) >= fail_after:
            raise Killed
        seen.append(first_id)
        return real(*args, first_id=first_id, **kw)

    monkeypatch.setattr(feat_mod, "compute_rows", counting)
    return seen


@pytest.mark.parametrize("pool", ["tokens", "cls"])
def test_out_folder_equals_in_memory_features_and_is_memory_mapped(tiny_lm, tmp_path, pool):
    mem = wb.features(tiny_lm, TEXTS, layers=[0, 2], pool=pool, cache=False, progress=False)
    disk = wb.features(tiny_lm, TEXTS, layers=[0, 2], pool=pool, out=tmp_path / "f",
                       shard_texts=7, progress=False)
    assert isinstance(disk.array, np.memmap) and not disk.array.flags.writeable
    assert disk.array.shape == mem.array.shape and disk.layers == mem.layers
    np.testing.assert_allclose(disk.array, mem.array, atol=1e-5)   # batches differ in padding only
    assert disk.index.equals(mem.index)
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == [
        "done.json", "features.npy", "index.parquet", "manifest.json"]     # shards merged away


def test_rerun_after_a_kill_computes_only_the_missing_shards(tiny_lm, tmp_path, monkeypatch):
    out = tmp_path / "f"
    first = _count_shards(monkeypatch, fail_after=3)
    with pytest.raises(Killed):
        wb.features(tiny_lm, TEXTS, layers=[1], pool="mean", out=out, shard_texts=6, progress=False)
    assert first == [0, 6, 12] and not (out / "done.json").exists()
    # a shard killed mid-write: its array is there, its marker is not -> recomputed, not trusted
    (out / "shards" / "00001.json").unlink()
    second = _count_shards(monkeypatch)
    feats = wb.features(tiny_lm, TEXTS, layers=[1], pool="mean", out=out, shard_texts=6,
                        progress=False)
    assert second == [6, 18, 24, 30, 36] and not feats.cached
    mem = wb.features(tiny_lm, TEXTS, layers=[1], pool="mean", cache=False, progress=False)
    np.testing.assert_allclose(feats.array, mem.array, atol=1e-5)
    third = _count_shards(monkeypatch)
    again = wb.features(tiny_lm, TEXTS, layers=[1], pool="mean", out=out, shard_texts=6,
                        progress=False)
    assert third == [] and again.cached


def test_a_truncated_shard_array_is_recomputed(tiny_lm, tmp_path, monkeypatch):
    out = tmp_path / "f"
    _count_shards(monkeypatch, fail_after=2)
    with pytest.raises(Killed):
        wb.features(tiny_lm, TEXTS, layers=[1], pool="cls", out=out, shard_texts=10, progress=False)
    npy = out / "shards" / "00000.npy"
    npy.write_bytes(npy.read_bytes()[:-50])              # marker says N rows, the file holds fewer
    seen = _count_shards(monkeypatch)
    wb.features(tiny_lm, TEXTS, layers=[1], pool="cls", out=out, shard_texts=10, progress=False)
    assert seen == [0, 20, 30]


def test_a_folder_of_other_features_is_refused_naming_what_differs(tiny_lm, tmp_path):
    out = tmp_path / "f"
    wb.features(tiny_lm, TEXTS[:8], layers=[1], pool="cls", out=out, progress=False)
    with pytest.raises(InputError, match=r"f'? holds features of a different layers \(\[1\]"):
        wb.features(tiny_lm, TEXTS[:8], layers=[0], pool="cls", out=out, progress=False)
    with pytest.raises(InputError, match="different texts .*n_texts"):
        wb.features(tiny_lm, TEXTS[:9], layers=[1], pool="cls", out=out, progress=False)
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="non-empty folder without a features manifest"):
        wb.features(tiny_lm, TEXTS[:8], out=tmp_path / "g", progress=False)


def test_a_full_disk_is_a_clear_error_and_leaves_nothing_looking_finished(tiny_lm, tmp_path,
                                                                           monkeypatch):
    from workbench.training import token_store

    real, calls = token_store.NpyWriter.write, []

    def full(self, block):
        calls.append(1)
        if len(calls) > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, block)

    monkeypatch.setattr(token_store.NpyWriter, "write", full)
    out = tmp_path / "f"
    with pytest.raises(InputError, match=r"cannot write features in .*No space left.*rerun resumes"):
        wb.features(tiny_lm, TEXTS, layers=[1], pool="cls", out=out, shard_texts=10, progress=False)
    assert not (out / "done.json").exists()
    finished = sorted(p.name for p in (out / "shards").glob("*.json"))
    assert finished == ["00000.json", "00001.json"]
    monkeypatch.setattr(token_store.NpyWriter, "write", real)
    feats = wb.features(tiny_lm, TEXTS, layers=[1], pool="cls", out=out, shard_texts=10,
                        progress=False)
    assert json.loads((out / "done.json").read_text())["rows"] == len(feats) == len(TEXTS)


def test_out_is_refused_while_hooks_change_the_model(tiny_lm, tmp_path):
    with wb.ablate(tiny_lm, {(0, 0)}):
        with pytest.raises(InputError, match="hooks"):
            wb.features(tiny_lm, TEXTS[:4], out=tmp_path / "f", progress=False)


# ----------------------------------------------------------------------------- streamed consumers
def _on_disk(feats, path):
    """The same Features with its array memory-mapped from an .npy file."""
    from dataclasses import replace

    np.save(path, np.asarray(feats.array))
    return replace(feats, array=np.load(path, mmap_mode="r"))


def _planted(n_texts: int, classes: int, seed: int = 0):
    """(N, 2, 12) vectors whose labels are a noisy linear function of layer 1 (layer 0 is noise)."""
    import pandas as pd
    from workbench import schema as S
    from workbench.analysis.features import Features

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_texts, 2, 12)).astype(np.float32)
    x[:, 1, 3] *= 50.0                                     # a badly scaled column: the scaler matters
    score = x[:, 1] @ rng.normal(size=(12, classes)) + rng.normal(scale=1.0, size=(n_texts, classes))
    labels = score.argmax(1)
    index = pd.DataFrame({S.TEXT_ID: np.arange(n_texts)})
    texts = [f"t{i}" for i in range(n_texts)]
    return Features(array=x, index=index, layers=[0, 1], pool="cls", model="planted",
                    texts=texts), labels


@pytest.mark.parametrize("classes", [2, 3])
def test_streamed_probe_predicts_as_sklearns_probe(tmp_path, classes):
    """Oracle: sklearn's StandardScaler + LogisticRegression (the in-memory path's settings)
    predicts every test row as the streamed L-BFGS does, on planted and on control labels."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupShuffleSplit
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from workbench.analysis.linear_probe import control_labels
    from workbench.analysis.streaming import fit_score_streamed

    feats, labels = _planted(400, classes)
    disk = _on_disk(feats, tmp_path / "x.npy").array
    groups = np.arange(len(labels))
    tr, te = next(GroupShuffleSplit(1, test_size=0.25, random_state=0).split(labels, labels, groups))
    for y in (labels, control_labels(groups, labels, 0)):
        for j in (0, 1):
            hits, converged = fit_score_streamed(disk, j, tr, te, y, 1.0, 1000)
            sk = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))
            sk.fit(feats.array[tr, j], y[tr])
            assert converged and np.array_equal(hits, sk.predict(feats.array[te, j]) == y[te])


@pytest.mark.parametrize("classes", [2, 3])
def test_streamed_probe_frame_matches_the_in_memory_frame(tmp_path, classes):
    """Same accuracies as the in-memory path (both stop where sklearn's L-BFGS settings stop)."""
    from workbench.analysis.linear_probe import probe_features

    feats, labels = _planted(400, classes)
    mem = probe_features(feats, labels, control=True)
    disk = probe_features(_on_disk(feats, tmp_path / "x.npy"), labels, control=True)
    assert mem[["layer", "metric"]].equals(disk[["layer", "metric"]])
    np.testing.assert_allclose(disk["value"], mem["value"], atol=1e-12)
    acc = mem.set_index(["layer", "metric"])["value"]
    assert acc[(1, "accuracy")] > acc[(1, "majority")] + 0.2      # the planted layer is read
    assert disk.set_index(["layer", "metric"])["value"][(1, "accuracy")] == acc[(1, "accuracy")]


def test_streamed_cka_equals_in_memory_cka(tiny_lm, tmp_path):
    from workbench.analysis.similarity import linear_cka
    from workbench.analysis.streaming import cka_matrix_streamed

    disk = wb.features(tiny_lm, TEXTS, layers="all", pool="tokens", out=tmp_path / "f",
                       shard_texts=9, progress=False)
    mem = wb.similarity(tiny_lm, TEXTS, max_rows=None, progress=False, cache=False)
    streamed = wb.similarity(disk, max_rows=None)
    np.testing.assert_allclose(streamed["value"], mem["value"], atol=1e-6)
    # two different arrays, against linear_cka pair by pair (float64 rounding only)
    rng = np.random.default_rng(1)
    a = rng.normal(size=(5000, 2, 6))
    b = np.concatenate([a @ rng.normal(size=(6, 9)), rng.normal(size=(5000, 2, 9))], axis=1)
    np.save(tmp_path / "a.npy", a), np.save(tmp_path / "b.npy", b)
    got = cka_matrix_streamed(np.load(tmp_path / "a.npy", mmap_mode="r"),
                              np.load(tmp_path / "b.npy", mmap_mode="r"))
    want = [[linear_cka(a[:, j], b[:, k]) for k in range(4)] for j in range(2)]
    np.testing.assert_allclose(got, want, atol=1e-10)
    a[:, 0] = a[0, 0]                      # a constant layer (the cls pool's <s> embedding): NaN
    np.save(tmp_path / "a.npy", a)
    got = cka_matrix_streamed(*[np.load(tmp_path / "a.npy", mmap_mode="r")] * 2)
    assert np.isnan(got[0]).all() and np.isnan(got[:, 0]).all() and got[1, 1] == pytest.approx(1)


def test_minibatch_cka_is_close_to_full_cka_but_another_estimator():
    from workbench.analysis.similarity import linear_cka
    from workbench.analysis.streaming import minibatch_cka

    rng = np.random.default_rng(2)
    x = rng.normal(size=(600, 20))
    y = np.tanh(x @ rng.normal(size=(20, 15))) + 0.5 * rng.normal(size=(600, 15))
    full = linear_cka(x, y)
    mb = minibatch_cka(x, y, batch_size=200)
    assert abs(mb - full) < 0.03 and mb != pytest.approx(full, abs=1e-6)
    assert minibatch_cka(x, x, batch_size=200) == pytest.approx(1.0)


def test_streamed_pca_map_equals_sklearn_pca(tmp_path):
    feats, labels = _planted(300, 2)
    mem = wb.embedding_map(feats, labels=labels)
    disk = wb.embedding_map(_on_disk(feats, tmp_path / "x.npy"), labels=labels)
    np.testing.assert_allclose(disk[["x", "y"]].to_numpy(), mem[["x", "y"]].to_numpy(), atol=1e-4)
    ratios = ["variance_x", "variance_y"]  # the explained variance ratio, from the (D, D) covariance
    np.testing.assert_allclose(disk[ratios].to_numpy(), mem[ratios].to_numpy(), rtol=1e-6)
    assert disk.drop(columns=["x", "y", *ratios]).equals(mem.drop(columns=["x", "y", *ratios]))


# ----------------------------------------------------------------------------- several processes
# torchrun with 2 CPU processes on gloo, as a multi-GPU launch runs them. Oracle: one process's
# features of the same texts; each rank must have computed only its own shards (k % 2 == rank).
_TWO = """
import json, sys, torch
torch.set_num_threads(1)
import workbench as wb
from workbench.analysis import features as feat_mod
model, out, texts = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
seen, real = [], feat_mod.compute_rows
def counting(*a, first_id=0, **kw):
    seen.append(first_id)
    return real(*a, first_id=first_id, **kw)
feat_mod.compute_rows = counting
feats = wb.features(wb.load(model, device="cpu"), texts, layers=[0, 2], pool="words", out=out,
                    shard_texts=5, progress=False)
rank = torch.distributed.get_rank()
json.dump({"shards": seen, "rows": len(feats)}, open(f"{out}.rank{rank}.json", "w"))
"""


def test_two_processes_split_the_shards_and_match_one(tiny_lm, tiny_model_dir, tmp_path):
    from workbench.testing import run_two_processes

    out = tmp_path / "f"
    run_two_processes(_TWO, [tiny_model_dir, out, json.dumps(TEXTS)], tmp_path, 29531)
    ranks = [json.loads((tmp_path / f"f.rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["shards"] == [0, 10, 20, 30] and ranks[1]["shards"] == [5, 15, 25, 35]
    assert ranks[0]["rows"] == ranks[1]["rows"]                   # both opened the merged map
    mem = wb.features(tiny_lm, TEXTS, layers=[0, 2], pool="words", cache=False, progress=False)
    disk = wb.features(tiny_lm, TEXTS, layers=[0, 2], pool="words", out=out, shard_texts=5,
                       progress=False)
    assert disk.cached and disk.index.equals(mem.index)
    np.testing.assert_allclose(disk.array, mem.array, atol=1e-5)


# ----------------------------------------------------------------------------- head stats to parquet
def test_head_stats_by_text_streams_to_parquet_equal_to_the_frame(tiny_lm, tmp_path, monkeypatch):
    import pandas as pd

    from workbench.analysis import heads

    monkeypatch.setattr(heads, "PARQUET_TEXTS", 7)          # several blocks of texts
    mem = wb.head_stats(tiny_lm, TEXTS, by_text=True, progress=False)
    path = wb.head_stats(tiny_lm, TEXTS, by_text=True, out=tmp_path / "h.parquet", progress=False)
    disk = pd.read_parquet(path)
    assert list(disk.columns) == list(mem.columns) and len(disk) == len(mem)
    pd.testing.assert_frame_equal(disk, mem.reset_index(drop=True), check_exact=False, atol=1e-9)
    assert [p.name for p in tmp_path.iterdir()] == ["h.parquet"]   # no temporary file left
    with pytest.raises(InputError, match="by_text=True"):
        wb.head_stats(tiny_lm, TEXTS, out=tmp_path / "x.parquet", progress=False)


def test_head_stats_parquet_on_a_full_disk_leaves_no_file(tiny_lm, tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    def full(self, table, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pq.ParquetWriter, "write_table", full)
    with pytest.raises(InputError, match=r"cannot write head stats in .*No space left"):
        wb.head_stats(tiny_lm, TEXTS[:5], by_text=True, out=tmp_path / "h.parquet", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_bad_shard_settings_and_an_empty_shard_are_named(tiny_lm, tmp_path, monkeypatch):
    with pytest.raises(InputError, match="shard_texts"):
        wb.features(tiny_lm, TEXTS[:4], out=tmp_path / "a", shard_texts=0, progress=False)
    empty = lambda *a, **k: (np.zeros((0, 1, 32), np.float32), None)  # noqa: E731
    monkeypatch.setattr(feat_mod, "compute_rows", empty)
    with pytest.raises(InputError, match=r"items 0\.\.3 gave no rows"):
        wb.features(tiny_lm, TEXTS[:8], layers=[1], out=tmp_path / "b", shard_texts=4,
                    progress=False)
    assert not list((tmp_path / "b" / "shards").iterdir())          # nothing looks finished


def test_freed_memory_goes_back_to_the_system_between_shards_and_blocks(tiny_lm, tmp_path,
                                                                        monkeypatch):
    """Without a trim between shards the C heap keeps every shard's freed pages resident (RSS
    rose with the number of texts in bench_features_scale): one call per shard of features and
    per block of head_stats' parquet; the real call is harmless here (glibc) and elsewhere."""
    from workbench.analysis import feature_store, heads

    feature_store.return_freed_memory()
    calls: list[int] = []
    monkeypatch.setattr(feature_store, "return_freed_memory", lambda: calls.append(1))
    wb.features(tiny_lm, TEXTS, layers=[1], pool="cls", out=tmp_path / "f", shard_texts=6,
                progress=False)
    assert len(calls) == 7                                   # 40 texts, 6 per shard
    monkeypatch.setattr(heads, "PARQUET_TEXTS", 7)
    wb.head_stats(tiny_lm, TEXTS, by_text=True, out=tmp_path / "h.parquet", progress=False)
    assert len(calls) == 7 + 6                               # 40 texts, 7 per block
