"""Run store: atomic files, torn metrics lines, broken folders, lookups, the writer lock."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import workbench as wb
from workbench.errors import InputError, RunLockedError
from workbench.store import STATUSES, Run, default_root, read_jsonl, runs

REPO = Path(__file__).resolve().parent.parent


def _writer(root, n):
    for i in range(n):
        run = Run.create("finetune", {"i": i}, name=f"w{i}", base_model="tiny", root=root)
        with run.lock():
            run.log_metrics({"step": i, "loss": 1.0 / (i + 1)})
            run.set_status("completed")


def test_two_processes_writing_at_once_do_not_corrupt_the_store(tmp_path):
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(tmp_path, 8)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    table = runs(tmp_path)
    assert len(table) == 16 and set(table["status"]) == {"completed"}
    assert table["id"].is_unique and table["created"].is_monotonic_decreasing


def test_listing_columns_and_summary_metrics(tmp_path):
    run = Run.create("finetune", {"lr": 1e-3}, name="one", base_model="tiny", root=tmp_path)
    run.write_summary({"eval_accuracy": 0.75, "steps": 10, "curve": [1, 2], "status": "x"})
    table = wb.runs(tmp_path)
    row = table.iloc[0]
    assert list(table.columns[:9]) == ["id", "short_id", "kind", "name", "status", "reason",
                                       "created", "base_model", "path"]
    assert (row["id"], row["short_id"], row["name"], row["kind"]) == (
        run.id, run.id[-6:], "one", "finetune")
    assert row["status"] == "created" and row["reason"] is None  # summary keys never override
    assert row["eval_accuracy"] == 0.75 and row["steps"] == 10 and "curve" not in table.columns
    assert Path(row["path"]) == run.path and run.config == {"lr": 1e-3}
    empty = wb.runs(tmp_path / "nothing-here")
    assert len(empty) == 0 and "short_id" in empty.columns and "reason" in empty.columns


def test_torn_metrics_line_is_skipped(tmp_path):
    run = Run.create("pretrain", {}, root=tmp_path)
    run.log_metrics({"step": 1, "loss": 2.0})
    with open(run.path / "metrics.jsonl", "a") as f:
        f.write('{"step": 2, "lo')  # a kill mid-append
    assert read_jsonl(run.path / "metrics.jsonl") == [{"step": 1, "loss": 2.0}]
    assert len(run.metrics()) == 1


def test_truncate_metrics_keeps_rows_up_to_the_step_byte_for_byte(tmp_path):
    run = Run.create("pretrain", {}, root=tmp_path)
    for step in (1, 2, 3, 4):
        run.log_metrics({"step": step, "kind": "step", "loss": 1 / step})
    run.log_metrics({"step": 2, "kind": "eval", "eval_loss": 0.1})
    run.log_metrics({"note": "no step"})
    with open(run.path / "metrics.jsonl", "a") as f:
        f.write('{"step": 5, "lo')  # torn
    lines = (run.path / "metrics.jsonl").read_text().splitlines(keepends=True)
    assert run.truncate_metrics(2) == 2  # steps 3 and 4
    assert (run.path / "metrics.jsonl").read_text() == "".join(lines[i] for i in (0, 1, 4, 5))
    assert list(run.metrics()["step"].fillna(-1)) == [1, 2, 2, -1]
    assert run.truncate_metrics(0) == 3 and list(run.metrics().columns) == ["note"]
    with pytest.raises(InputError, match="step=-1"):
        run.truncate_metrics(-1)
    assert Run.create("pretrain", {}, root=tmp_path).truncate_metrics(5) == 0  # no file yet


def test_failed_checkpoint_write_leaves_no_checkpoint(tmp_path):
    run = Run.create("pretrain", {}, root=tmp_path)
    try:
        with run.writing_checkpoint(5) as folder:
            (folder / "half").write_text("x")
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    assert run.checkpoints() == []
    assert not any(p.name.startswith(".tmp") for p in (run.path / "checkpoints").iterdir())


def test_a_running_run_whose_process_is_gone_reads_as_interrupted(tmp_path):
    mine = Run.create("finetune", {}, name="mine", root=tmp_path)
    mine.set_status("running")  # this process: alive
    assert mine.info["pid"] == os.getpid() and mine.status == "running"
    gone = Run.create("finetune", {}, name="gone", root=tmp_path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    gone.set_status("running", pid=int(dead.stdout))  # a process that has exited
    elsewhere = Run.create("finetune", {}, name="elsewhere", root=tmp_path)
    elsewhere.set_status("running", pid=int(dead.stdout), host="another-machine")
    assert gone.status == "interrupted" and gone.info["status"] == "running"  # nothing rewritten
    assert elsewhere.status == "running"  # another machine's process cannot be checked from here
    table = runs(tmp_path)
    assert dict(zip(table["id"], table["status"])) == {
        mine.id: "running", gone.id: "interrupted", elsewhere.id: "running"}


def test_status_vocabulary_is_closed(tmp_path):
    assert {"created", "running", "completed", "interrupted", "failed", "broken"} <= set(STATUSES)
    run = Run.create("finetune", {}, root=tmp_path)
    for bad in ("finished", "broken", None):
        with pytest.raises(InputError, match="status="):
            run.set_status(bad)
    assert run.set_status("failed", error="boom")["error"] == "boom" and run.status == "failed"


@pytest.mark.parametrize("content, reason", [
    (b"[1, 2]", "holds a JSON list"),
    (b"{}", "lacks 'kind', 'status', 'created'"),
    (b'{"kind": "x", "status": "finished", "created": 1}', "unknown status 'finished'"),
    (b'{"kind": "x", "status": "created", "created": "today"}', "'created' is not a timestamp"),
    (b"\xff\xfe not text", "not UTF-8"),
    (b'{"kind": ', "not valid JSON"),
    (None, "no run.json"),
])
def test_a_malformed_run_folder_is_listed_as_broken_and_hides_nothing(tmp_path, content, reason):
    good = Run.create("finetune", {}, name="good", root=tmp_path)
    bad = tmp_path / "20260101-000000-finetune-bad001"
    bad.mkdir()
    if content is not None:
        (bad / "run.json").write_bytes(content)
    table = wb.runs(tmp_path)
    assert len(table) == 2 and table.set_index("id").loc[good.id, "status"] == "created"
    row = table.set_index("id").loc[bad.name]
    assert row["status"] == "broken" and reason in row["reason"] and row["name"] == bad.name
    opened = Run.open(bad.name, root=tmp_path)  # by id: still opens, to inspect or delete
    assert opened.status == "broken" and reason in opened.reason and bad.name in repr(opened)
    with pytest.raises(InputError, match="broken"):
        opened.info
    assert Run.open("good", root=tmp_path) == good  # lookups by name still work


def test_a_malformed_summary_marks_the_run_broken(tmp_path):
    run = Run.create("finetune", {}, root=tmp_path)
    (run.path / "summary.json").write_text("[]")
    row = wb.runs(tmp_path).iloc[0]
    assert row["status"] == "broken" and "summary.json holds a JSON list" in row["reason"]


def test_lookup_by_id_short_id_unique_name_and_ambiguous_name(tmp_path):
    first = Run.create("finetune", {}, name="same", root=tmp_path)
    second = Run.create("finetune", {}, name="same", root=tmp_path)
    solo = Run.create("pretrain", {}, name="solo", root=tmp_path)
    with pytest.raises(InputError, match="2 runs .* named 'same'") as err:
        Run.open("same", root=tmp_path)
    for run in (first, second):
        assert run.id in str(err.value)
    assert "created 20" in str(err.value)
    assert Run.open(first.id, root=tmp_path) == first and Run.open(second.path) == second
    assert Run.open("solo", root=tmp_path) == solo == Run.open(solo.short_id, root=tmp_path)
    assert Run.open(solo) is solo
    with pytest.raises(InputError, match="no run 'nope'.*3 runs"):
        Run.open("nope", root=tmp_path)
    with pytest.raises(InputError, match="not a run"):
        Run.open(tmp_path.parent, root=tmp_path)
    with pytest.raises(InputError, match="run=None"):
        Run.open(None, root=tmp_path)


def test_a_root_that_is_not_a_folder_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    for bad, match in [(5, "root=5"), (tmp_path / "file", "root=.*is a file"), ("", "root=''")]:
        with pytest.raises(InputError, match=match):
            wb.runs(bad)
        with pytest.raises(InputError, match=match):
            Run.create("finetune", {}, root=bad)
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def test_create_refuses_bad_arguments_before_writing(tmp_path):
    for kwargs, match in [({"kind": "Fine Tune"}, "kind="), ({"config": [1]}, "config=list"),
                          ({"name": ""}, "name=''"), ({"name": "a/b"}, "cannot contain"),
                          ({"base_model": 3}, "base_model=3")]:
        args = {"kind": "finetune", "config": {}, **kwargs}
        with pytest.raises(InputError, match=match):
            Run.create(args.pop("kind"), args.pop("config"), root=tmp_path, **args)
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_a_killed_create_leaves_nothing_listed(tmp_path):
    Run.create("finetune", {}, root=tmp_path)
    half = tmp_path / ".tmp-run-20260101-000000-finetune-dead00"  # killed before its rename
    half.mkdir()
    (half / "config.json").write_text("{}")
    assert len(runs(tmp_path)) == 1
    old = time.time() - 7200
    os.utime(half, (old, old))
    Run.create("finetune", {}, root=tmp_path)
    assert not half.exists() and len(runs(tmp_path)) == 2


_HOLD = """
import sys, time
from workbench.store import Run
run = Run.open(sys.argv[1])
run.lock().acquire()
print("locked", flush=True)
time.sleep(600)
"""


def _hold_lock_in_child(run):
    child = subprocess.Popen([sys.executable, "-c", _HOLD, str(run.path)], stdout=subprocess.PIPE,
                             text=True, cwd=REPO)
    assert child.stdout.readline().strip() == "locked"
    return child


def test_lock_held_by_another_process_names_it_and_frees_when_it_is_killed(tmp_path):
    run = Run.create("finetune", {}, root=tmp_path)
    child = _hold_lock_in_child(run)
    try:
        with pytest.raises(RunLockedError, match=f"pid {child.pid} on host {socket.gethostname()}"):
            run.lock().acquire()
        with pytest.raises(RuntimeError):  # RunLockedError is also a RuntimeError
            with run.lock(timeout=0.2):
                pass
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    assert child.returncode == -signal.SIGKILL
    with run.lock() as held:  # the kernel released the dead holder's flock
        assert held.is_locked
        assert json.loads((run.path / ".run.lock.json").read_text())["pid"] == os.getpid()
    assert not (run.path / ".run.lock.json").exists() and not held.is_locked


def test_lock_is_exclusive_within_one_process_too(tmp_path):
    run = Run.create("finetune", {}, root=tmp_path)
    with run.lock():
        for again in (run, Run.open(run.id, root=tmp_path)):  # same handle or another one
            with pytest.raises(RunLockedError, match=f"pid {os.getpid()}.*already being written"):
                again.lock().acquire()
        assert run.lock().is_locked
    with Run.open(run.id, root=tmp_path).lock():
        pass
    held = run.lock().acquire()
    held.release()
    held.release()  # a second release is harmless
    assert not held.is_locked


def test_taking_the_lock_cleans_what_a_killed_writer_left(tmp_path):
    run = Run.create("pretrain", {}, root=tmp_path)
    with run.writing_checkpoint(10) as folder:
        (folder / "w").write_text("x")
    ckpts = run.path / "checkpoints"
    child = _hold_lock_in_child(run)
    try:  # the live writer's partial files, which a refused contender must not touch
        (ckpts / ".tmp-step-00000020-dead0000").mkdir()
        (ckpts / ".tmp-step-00000020-dead0000" / "model.safetensors").write_text("half")
        (ckpts / ".old-step-00000010-dead0000").mkdir()
        (run.path / ".run.json.0123abcd.tmp").write_text("{")
        with pytest.raises(RunLockedError):
            run.lock().acquire()
        assert len(list(ckpts.iterdir())) == 3 and (run.path / ".run.json.0123abcd.tmp").exists()
    finally:
        child.send_signal(signal.SIGKILL)  # ... until the writer dies
        child.wait(30)
    with run.lock():
        assert sorted(p.name for p in ckpts.iterdir()) == ["step-00000010"]
        assert not (run.path / ".run.json.0123abcd.tmp").exists()
    assert [s for s, _ in run.checkpoints()] == [10] and run.status == "created"


def test_default_root_is_the_checkout_runs_folder_whatever_the_cwd(monkeypatch, tmp_path):
    monkeypatch.delenv("WORKBENCH_RUNS", raising=False)
    monkeypatch.chdir(tmp_path)
    assert default_root() == REPO / "runs"
    ignored = subprocess.run(["git", "check-ignore", "-q", str(REPO / "runs" / "x" / "run.json")],
                             cwd=REPO)
    assert ignored.returncode == 0  # git ignores the default run store
    monkeypatch.setenv("WORKBENCH_RUNS", str(tmp_path / "elsewhere"))
    assert default_root() == tmp_path / "elsewhere"


def test_deprecated_names_point_at_the_one_run_class():
    from workbench.store import RunFolder
    from workbench.training.run import Run as TrainingRun

    assert RunFolder is Run is TrainingRun is wb.Run
