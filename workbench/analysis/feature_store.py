"""Rows of a corpus on disk: written in shards as computed, resumable, returned memory-mapped.

What belongs here: the folder behind `wb.features(lm, texts, out=FOLDER)` (issue 22, part 3), so
that a million sentences' vectors never sit in host memory. It knows nothing of models: the caller
(analysis.features) passes the manifest and a function computing a shard. Layout of FOLDER:

- `manifest.json`: what the folder holds (model fingerprint, texts hash and count, layers, pool,
  max_length, shard size). A folder holding anything else is refused, naming what differs.
- `shards/NNNNN.npy` + `NNNNN.parquet` (index rows) + `NNNNN.json`: texts [k*S, (k+1)*S) of the
  corpus. Each file is written under a `.tmp` name and renamed; the `.json` (row count and the
  array's sha256) comes last, so a shard without it, or whose array disagrees with it, is
  unfinished and is recomputed: a half-written shard is never mistaken for a finished one.
- `features.npy` (N, L', D) float32 + `index.parquet`: the shards merged in text order (block by
  block, `training.token_store.NpyWriter`), then `done.json`; the shards are deleted.

A rerun after a kill recomputes only the shards without their `.json`. Launched by `torchrun` /
`accelerate launch` (`training.engine.Engine`), process r takes shards r, r + W, ...; after a
barrier rank 0 merges and every process opens the merged memory map.
The returned `Features.array` is `np.load(mmap_mode="r")`; its index (text ids, and the texts for
the cls/mean pools) is an ordinary DataFrame, small beside the vectors.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from ..errors import InputError
from ..training.token_store import NpyWriter, chunked_rows

FORMAT = 1
SHARD_BYTES = 32 << 20     # default shard: about this many bytes of float32 vectors in memory


RESUMES = "Finished shards are kept and a rerun resumes from them"


def return_freed_memory() -> None:
    """Hand the C heap's freed pages back to the operating system (glibc's `malloc_trim`); a
    no-op where there is no glibc. Called between shards and parquet blocks: batches of varied
    shapes fragment the heap, and a pass over many texts otherwise keeps ever more freed memory
    resident (features of 48,000 texts: RSS 820 -> 1,011 MB over 7 shards, 665 MB after each
    trim, while the live Python objects stayed at 34 MB)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    """glibc's `malloc_trim` from the symbols already loaded in this process (no library search,
    which would start `ldconfig`), or None (macOS, musl, Windows)."""
    import ctypes

    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None


@contextlib.contextmanager
def disk_errors(folder: Path, what: str = "features", kept: str = RESUMES):
    """A full disk or an unwritable folder -> InputError naming `folder`, what was written, and
    what `kept` of the work."""
    try:
        yield
    except (OSError, InputError) as err:
        # NpyWriter turns an OSError into its own InputError; the OSError stays its __context__
        cause = err.__context__ if isinstance(err, InputError) else err
        if not isinstance(cause, OSError):
            raise
        reason = os.strerror(cause.errno) if cause.errno else str(cause)
        raise InputError(f"cannot write {what} in {folder}: {reason}. {kept}: free space (or "
                         "pass another out=), then run again") from None


def default_shard_texts(pool: str, n_layers: int, dim: int, mean_tokens: float) -> int:
    """Texts per shard so that one shard's vectors take about SHARD_BYTES."""
    rows_per_text = 1.0 if pool in ("cls", "mean") else max(mean_tokens, 1.0)
    return max(1, int(SHARD_BYTES / (n_layers * dim * 4 * rows_per_text)))


def texts_digest(strings: list[str], words) -> str:
    h = hashlib.sha256()
    for t in strings:                        # streamed: no second copy of the corpus
        h.update(t.encode("utf-8", "surrogatepass") + b"\0")
    if words is not None:
        h.update(json.dumps(words).encode())
    return h.hexdigest()


def _check_manifest(folder: Path, manifest: dict) -> None:
    """Write `manifest` into a new folder, or refuse a folder whose manifest differs."""
    path = folder / "manifest.json"
    if not path.exists():
        if folder.exists() and any(p.name != "shards" for p in folder.iterdir()):
            raise InputError(f"out={str(folder)!r} is a non-empty folder without a features "
                             "manifest.json: pass a new or empty folder")
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / "manifest.json.tmp"
        tmp.write_text(json.dumps(manifest, indent=1))
        os.replace(tmp, path)
        return
    try:
        held = json.loads(path.read_text())
    except ValueError:
        raise InputError(f"{path} is not valid JSON: delete the folder {folder} and run again") from None
    diffs = [f"{k} ({held.get(k)!r} there, {v!r} now)" if k not in ("model", "texts") else
             f"{k} (hash {str(held.get(k))[:12]} there, {str(v)[:12]} now)"
             for k, v in manifest.items() if held.get(k) != v]
    if diffs:
        raise InputError(f"out={str(folder)!r} holds features of a different " + "; ".join(diffs)
                         + ": pass another out= folder, or delete this one to recompute")


def _npy_rows(path: Path) -> int | None:
    """Rows of a complete .npy (header shape agrees with the file size), else None."""
    try:
        arr = np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return None
    want = arr.offset + arr.size * arr.itemsize
    return arr.shape[0] if path.stat().st_size == want else None


def _finished(shards: Path, k: int) -> bool:
    """Whether shard k's marker exists and its array has the rows the marker promises."""
    marker = shards / f"{k:05d}.json"
    try:
        rows = json.loads(marker.read_text())["rows"]
    except (OSError, ValueError, KeyError):
        return False
    return (shards / f"{k:05d}.parquet").exists() and _npy_rows(shards / f"{k:05d}.npy") == rows


def _write_shard(shards: Path, k: int, array: np.ndarray, index: pd.DataFrame) -> None:
    """Array, then index, then the marker, each renamed into place when complete."""
    base = shards / f"{k:05d}"
    with disk_errors(shards):
        writer = NpyWriter(Path(f"{base}.npy.tmp"), array.shape[1:], np.float32)
        writer.write(array)
        writer.close()
        os.replace(f"{base}.npy.tmp", f"{base}.npy")
        index.to_parquet(f"{base}.parquet.tmp", index=False)
        os.replace(f"{base}.parquet.tmp", f"{base}.parquet")
        Path(f"{base}.json.tmp").write_text(json.dumps(
            {"rows": len(array), "sha256": writer.sha.hexdigest()}))
        os.replace(f"{base}.json.tmp", f"{base}.json")


def _merge(folder: Path, n_shards: int, tail: tuple[int, ...]) -> None:
    """Shards -> features.npy + index.parquet in text order, block by block; then done.json."""
    import pyarrow.parquet as pq

    shards = folder / "shards"
    with disk_errors(folder):
        writer, index_writer = NpyWriter(folder / "features.npy.tmp", tail, np.float32), None
        for k in range(n_shards):
            for block in chunked_rows(np.load(shards / f"{k:05d}.npy", mmap_mode="r")):
                writer.write(block)
            table = pq.read_table(shards / f"{k:05d}.parquet")
            if index_writer is None:
                index_writer = pq.ParquetWriter(folder / "index.parquet.tmp", table.schema)
            index_writer.write_table(table.cast(index_writer.schema))
        writer.close()
        index_writer.close()
        os.replace(folder / "features.npy.tmp", folder / "features.npy")
        os.replace(folder / "index.parquet.tmp", folder / "index.parquet")
        (folder / "done.json.tmp").write_text(json.dumps(
            {"rows": writer.rows, "sha256": writer.sha.hexdigest()}))
        os.replace(folder / "done.json.tmp", folder / "done.json")
    shutil.rmtree(shards, ignore_errors=True)


def _done(folder: Path) -> bool:
    try:
        rows = json.loads((folder / "done.json").read_text())["rows"]
    except (OSError, ValueError, KeyError):
        return False
    return (folder / "index.parquet").exists() and _npy_rows(folder / "features.npy") == rows


def open_rows(folder: Path) -> tuple[np.ndarray, pd.DataFrame]:
    """The merged folder: (read-only memory-mapped array, index frame)."""
    array = np.load(folder / "features.npy", mmap_mode="r")
    index = pd.read_parquet(folder / "index.parquet")
    if len(index) != len(array):
        raise InputError(f"{folder}: index.parquet has {len(index)} rows, features.npy "
                         f"{len(array)}: delete the folder and run again")
    return array, index


def sharded_rows(folder, manifest: dict, n_items: int, shard_size: int, compute: Callable,
                 tail: tuple[int, ...], *, progress: bool = True, desc: str = "features -> disk",
                 device: str = "cpu") -> tuple[np.ndarray, pd.DataFrame, bool]:
    """Rows of items [0, n_items) computed `shard_size` items at a time by `compute(lo, hi, bar)`
    -> (array (R, *tail), index frame), stored in `folder` (see the module docstring).

    Returns (memory-mapped array, index, whether everything was already on disk). `device` (the
    model's) picks the launch's backend: gloo on CPU, nccl on GPUs."""
    from ..training.engine import Engine

    folder = Path(folder)
    engine = Engine(device, "fp32")   # rank and world of a torchrun launch
    if engine.is_main:
        _check_manifest(folder, manifest)
    engine.barrier()
    if not engine.is_main:
        _check_manifest(folder, manifest)
    if _done(folder):
        return (*open_rows(folder), True)
    shards = folder / "shards"
    shards.mkdir(parents=True, exist_ok=True)
    n_shards = math.ceil(n_items / shard_size)
    mine = range(engine.rank, n_shards, engine.world)
    todo = [k for k in mine if not _finished(shards, k)]
    size = lambda k: min(shard_size, n_items - k * shard_size)   # noqa: E731
    from tqdm.auto import tqdm

    total = sum(map(size, mine))
    bar = tqdm(total=total, initial=total - sum(map(size, todo)), desc=desc, unit="text",
               disable=not progress, leave=False)
    for k in todo:
        array, index = compute(k * shard_size, k * shard_size + size(k), bar)
        if len(array) == 0:
            raise InputError(f"items {k * shard_size}..{k * shard_size + size(k) - 1} gave no "
                             "rows: every text needs at least one token or word")
        _write_shard(shards, k, array, index)
        del array, index
        return_freed_memory()
    bar.close()
    engine.barrier()
    if engine.is_main:
        missing = [k for k in range(n_shards) if not _finished(shards, k)]
        if missing:
            raise InputError(f"{folder}: shards {missing[:5]} are unfinished after every process "
                             "ended: run again to compute them")
        _merge(folder, n_shards, tail)
    engine.barrier()
    return (*open_rows(folder), not todo)
