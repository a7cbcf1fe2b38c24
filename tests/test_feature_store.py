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
