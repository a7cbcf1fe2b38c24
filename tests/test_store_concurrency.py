"""Concurrent writers and readers of one run store, in real processes: no listing may be short
or hold a run twice, and no lookup of a run known to exist may fail.

Each writer creates runs (under their lock: status changes, metric rows, a summary) and, once
`Run.create` has returned, appends the run's id and name to a shared "known" file. Each reader
repeatedly reads that file first, then lists the store and opens known runs by id, short id and
name, so every run it checks existed before the check began. The old store (a SQLite index
rebuilt with DELETE + INSERTs on every listing) failed this with short listings and lookups that
missed existing runs.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import random
import time
from pathlib import Path

import pytest

STATIC_RUNS = 6


def _known(path: Path) -> dict[str, str]:
    """id -> name of the runs written so far (a torn last line is still being appended)."""
    text = path.read_text() if path.exists() else ""
    lines = text.split("\n")[:-1]  # the part after the last newline may be torn
    return dict(line.split("\t") for line in lines)


def _writer(root: str, known: str, tag: str, n_runs: int, rows: int) -> None:
    from workbench.store import Run

    for i in range(n_runs):
        run = Run.create("finetune", {"i": i}, name=f"{tag}-{i}", base_model="tiny", root=root)
        with open(known, "a") as f:
            f.write(f"{run.id}\t{run.name}\n")
        with run.lock():
            run.set_status("running")
            for step in range(rows):
                run.log_metrics({"step": step, "kind": "step", "loss": 1.0 / (step + 1)})
            run.write_summary({"steps": rows, "eval_accuracy": 0.5})
            run.set_status("completed")


def _reader(root: str, known: str, done: str, out: str, min_s: float, seed: int) -> None:
    import workbench as wb
    from workbench.store import Run

    rng = random.Random(seed)
    counts = {"listings": 0, "short": 0, "duplicated": 0, "broken": 0, "lookups": 0,
              "failed": 0, "errors": []}
    start = time.monotonic()
    while time.monotonic() - start < min_s or not Path(done).exists():
        expected = _known(Path(known))
        table = wb.runs(root)
        counts["listings"] += 1
        ids = list(table["id"])
        counts["short"] += not set(expected) <= set(ids)
        counts["duplicated"] += len(ids) != len(set(ids))
        counts["broken"] += int((table["status"] == "broken").sum())
        for run_id in rng.sample(sorted(expected), min(3, len(expected))):
            name = expected[run_id]
            for key in (run_id, name, run_id[-6:]):
                counts["lookups"] += 1
                try:
                    assert Run.open(key, root=root).id == run_id
                except Exception as err:  # noqa: BLE001 - counted and reported to the parent
                    counts["failed"] += 1
                    counts["errors"].append(f"{key}: {err!r}"[:300])
    Path(out).write_text(json.dumps(counts))


def _hammer(tmp_path: Path, writers: int, runs_each: int, rows: int, readers: int, min_s: float):
    from workbench.store import Run

    root, known, done = tmp_path / "runs", tmp_path / "known.tsv", tmp_path / "done"
    with open(known, "w") as f:
        for i in range(STATIC_RUNS):
            run = Run.create("pretrain", {}, name=f"static-{i}", root=root)
            f.write(f"{run.id}\t{run.name}\n")
    ctx = mp.get_context("spawn")  # fresh interpreters: nothing shared but the folder
    outs = [tmp_path / f"reader{k}.json" for k in range(readers)]
    procs = [ctx.Process(target=_reader, args=(str(root), str(known), str(done), str(out),
                                               min_s, k)) for k, out in enumerate(outs)]
    procs += [ctx.Process(target=_writer, args=(str(root), str(known), f"w{k}", runs_each, rows))
              for k in range(writers)]
    for p in procs:
        p.start()
    for p in procs[readers:]:
        p.join(300)
        assert p.exitcode == 0, "a writer failed"
    done.touch()
    for p in procs[:readers]:
        p.join(300)
        assert p.exitcode == 0, "a reader crashed"
    counts = [json.loads(out.read_text()) for out in outs]
    total = {k: sum(c[k] for c in counts) for k in counts[0] if k != "errors"}
    total["errors"] = [e for c in counts for e in c["errors"]][:5]
    return total, len(_known(known))


def _check(total: dict, n_known: int, expected_runs: int) -> None:
    assert n_known == expected_runs
    assert total["listings"] >= 10 and total["lookups"] >= 30, total  # the readers really read
    assert (total["short"], total["duplicated"], total["broken"], total["failed"]) == (0, 0, 0, 0), \
        total


def test_concurrent_writers_and_readers_never_miss_a_run(tmp_path):
    total, n_known = _hammer(tmp_path, writers=2, runs_each=12, rows=20, readers=3, min_s=4.0)
    _check(total, n_known, STATIC_RUNS + 24)


@pytest.mark.slow
def test_concurrent_writers_and_readers_never_miss_a_run_long(tmp_path):
    total, n_known = _hammer(tmp_path, writers=2, runs_each=150, rows=50, readers=4, min_s=45.0)
    _check(total, n_known, STATIC_RUNS + 300)
