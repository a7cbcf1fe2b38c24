"""Nothing lost, nothing silently wrong (issue 27 items 1-3, issue 28's run size).

Oracles: a flipped byte or a truncated file in a copy of a checkpoint (the test knows which file
it damaged, so the error must name it); an uninterrupted run with the same config, whose final
weights a fallback resume must reproduce bit for bit; I/O faults injected by patching the writer
(OSError with ENOSPC / EROFS, or safetensors' own error text), which works as root, where chmod
does not stop writes; fp32 weights kept by `keep_optimizer_state=True`, which rounded to fp16
must equal the weights a default run stores.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import struct

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

import workbench as wb
from workbench import cli
from workbench.errors import CheckpointCorruptError, RunStoreError
from workbench.training import checkpoint as ckpt
from workbench.training.checkpoint import disk_mb
from workbench.training.events import StopFlag
from workbench.training.finetune import FineTuneConfig, finetune

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAST = dict(learning_rate=3e-3, batch_size=16, weight_decay=0.0, device="cpu", log_every=1,
            validation_split=0.25, warmup_ratio=0.0, max_steps=8, eval_every=4,
            checkpoint_every=2)
FILL = ["the", "film", "was", "a", "story", "of", "it", "and", "plot", "with"]


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """A separable sentiment table on disk (a resume reads the run's data from its path)."""
    rng = np.random.default_rng(0)
    rows = [{"text": " ".join([*rng.choice(FILL, 5), "excellent" if i % 2 else "dreadful"]),
             "label": "pos" if i % 2 else "neg"} for i in range(64)]
    path = tmp_path_factory.mktemp("integrity") / "data.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def whole(tiny_model_dir, table, tmp_path_factory):
    """The uninterrupted reference run (on one thread, as the tests: the same float sums)."""
    root, before = tmp_path_factory.mktemp("reference"), torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return finetune(tiny_model_dir, str(table), config=FineTuneConfig(**FAST), root=root,
                        progress=False)
    finally:
        torch.set_num_threads(before)


def stopped_at(step, tiny_model_dir, table, root) -> wb.Run:
    stop = StopFlag()

    def request(event):
        if event.kind == "step" and event.step == step:
            stop.request()

    run = finetune(tiny_model_dir, str(table), config=FineTuneConfig(**FAST), root=root,
                   stop=stop, callbacks=[request], progress=False)
    assert run.status == "stopped"
    return run


def flip_byte(path) -> None:
    """XOR one byte in the middle of the tensor data of a safetensors file (header intact)."""
    raw = bytearray(path.read_bytes())
    start = 8 + struct.unpack("<Q", raw[:8])[0]
    raw[start + (len(raw) - start) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))


def same_weights(a: wb.Run, b: wb.Run) -> None:
    x, y = (load_file(str(r.checkpoint() / "model.safetensors")) for r in (a, b))
    assert x.keys() == y.keys()
    for key in x:
        assert torch.equal(x[key], y[key]), key


def run_cli(args, capsys) -> tuple[int, str]:
    """The exit code and the CLI's last stderr line (its message; loading bars come before)."""
    code = cli.main(args)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, (err.strip().splitlines() or [""])[-1]


# --------------------------------------------------------------------------- integrity


def test_a_flipped_byte_in_the_weights_is_refused_by_load_naming_the_file(whole, tmp_path,
                                                                          caplog):
    run_copy = tmp_path / whole.id
    shutil.copytree(whole.path, run_copy)
    damaged = wb.Run.open(run_copy)
    weights = damaged.checkpoint() / "model.safetensors"
    flip_byte(weights)
    with pytest.raises(CheckpointCorruptError, match="model.safetensors") as err:
        wb.load(damaged, device="cpu")
    assert str(weights) in str(err.value) and "SHA-256" in str(err.value)
    with pytest.raises(CheckpointCorruptError, match="model.safetensors"):
        wb.load(damaged.checkpoint(), device="cpu")  # the checkpoint folder itself too
    # a checkpoint written before manifests existed still loads, with a one-line warning
    legacy = tmp_path / "legacy"
    shutil.copytree(whole.path, legacy)
    for manifest in legacy.rglob("manifest.json"):
        manifest.unlink()
    with caplog.at_level(logging.WARNING, logger="workbench.store"):
        lm = wb.load(legacy, device="cpu")
    assert lm.config.num_labels == 2 and "no manifest.json" in caplog.text
    # ... and a truncated one is refused by its safetensors header
    legacy_weights = wb.Run.open(legacy).checkpoint() / "model.safetensors"
    legacy_weights.write_bytes(legacy_weights.read_bytes()[:-100])
    with pytest.raises(CheckpointCorruptError, match="truncated"):
        wb.load(legacy, device="cpu")


def test_resume_falls_back_from_a_damaged_newest_state_and_says_so(whole, tiny_model_dir, table,
                                                                   tmp_path):
    run = stopped_at(4, tiny_model_dir, table, tmp_path)
    # the newest two checkpoints keep their optimizer state while the run is live
    assert [s for s, _ in run.checkpoints()] == [2, 4]
    assert all(ckpt.is_resumable(p) for _, p in run.checkpoints())
    flip_byte(run.checkpoint(4) / "training_state.safetensors")
    starts = []
    resumed = finetune(None, None, resume=run, progress=False,
                       callbacks=[lambda e: starts.append(e) if e.kind == "start" else None])
    assert resumed.status == "completed"
    note = resumed.info["fallback"]
    assert note["step"] == 2 and note["newest_step"] == 4
    assert "training_state.safetensors" in note["skipped"][0]["why"]
    assert starts[0].step == 2 and starts[0].metrics["fallback_from"] == 4
    same_weights(resumed, whole)  # the fallback resume is still exact
    steps = resumed.metrics("step")["step"].tolist()
    assert steps == list(range(1, 9))  # no step twice
    assert resumed.metrics("step")["loss"].tolist() == whole.metrics("step")["loss"].tolist()


def test_every_checkpoint_damaged_needs_restart_and_the_cli_says_so(whole, tiny_model_dir, table,
                                                                   tmp_path, capsys):
    run = stopped_at(4, tiny_model_dir, table, tmp_path)
    for _, path in run.checkpoints():  # truncated, as by a crash of the disk
        state = path / "training_state.safetensors"
        state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    with pytest.raises(CheckpointCorruptError, match="training_state.safetensors.*restart=True"):
        finetune(None, None, resume=run, progress=False)
    assert run.status == "stopped" and [s for s, _ in run.checkpoints()] == [2, 4]  # untouched
    code, err = run_cli(["finetune", "--resume", run.id, "--root", str(tmp_path),
                         "--no-progress"], capsys)
    assert code == 2 and "--restart" in err and "training_state.safetensors" in err
    code, _ = run_cli(["finetune", "--resume", run.id, "--root", str(tmp_path), "--restart",
                       "--no-progress"], capsys)
    assert code == 0 and run.status == "completed" and run.info["fallback"]["restart"]
    with pytest.raises(ValueError, match="pass resume=ID"):
        finetune(tiny_model_dir, str(table), restart=True, root=tmp_path, progress=False)
    assert run.metrics("step")["step"].tolist() == list(range(1, 9))
    same_weights(run, whole)


def test_a_restart_that_cannot_build_its_model_keeps_the_checkpoints(tiny_model_dir, table,
                                                                      tmp_path):
    """restart=True deletes the checkpoints only once nothing can refuse the input any more:
    here the base model's folder is gone, so the model cannot be built and nothing is deleted."""
    base = tmp_path / "base"
    shutil.copytree(tiny_model_dir, base)
    run = stopped_at(4, base, table, tmp_path / "runs")
    for _, path in run.checkpoints():
        (path / "training_state.safetensors").unlink()  # weights only: nothing can resume it
    shutil.rmtree(base)
    with pytest.raises(wb.ModelNotFoundError, match=f"no such folder: {base}"):
        finetune(None, None, resume=run, restart=True, progress=False)
    assert [s for s, _ in run.checkpoints()] == [2, 4] and run.status == "stopped"


# --------------------------------------------------------------------------- I/O faults


def _disk_full_os(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def _disk_full_safetensors(*args, **kwargs):
    from safetensors import SafetensorError

    raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, '
                          'message: "No space left on device" })')


@pytest.mark.parametrize("fault", [_disk_full_os, _disk_full_safetensors])
def test_disk_full_while_checkpointing_fails_cleanly_and_resumes_once_fixed(
        fault, whole, tiny_model_dir, table, tmp_path, monkeypatch, capsys):
    real, calls = ckpt.save_training_state, []

    def writer(*args, **kwargs):  # the second checkpoint (step 4) finds the disk full
        calls.append(1)
        return fault() if len(calls) == 2 else real(*args, **kwargs)

    monkeypatch.setattr(ckpt, "save_training_state", writer)
    code, err = run_cli(["finetune", str(table), "--model", str(tiny_model_dir), "--root",
                         str(tmp_path), "--no-progress",
                         *sum(([f"--{k.replace('_', '-')}", str(v)] for k, v in FAST.items()),
                              [])], capsys)
    (folder,) = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
    run = wb.Run.open(folder)
    assert code == 2 and "disk is full" in err and f"--resume {run.id}" in err
    assert err.startswith("error: could not write the checkpoint at step 4")  # one paragraph
    assert run.status == "failed" and "disk is full" in run.info["error"]
    assert [s for s, _ in run.checkpoints()] == [2]  # the one before is intact, nothing half
    assert not [p for p in (folder / "checkpoints").iterdir() if p.name.startswith(".")]
    monkeypatch.setattr(ckpt, "save_training_state", real)  # space freed
    code, _ = run_cli(["finetune", "--resume", run.id, "--root", str(tmp_path),
                       "--no-progress"], capsys)
    assert code == 0 and run.status == "completed" and run.info["error"] is None
    same_weights(run, whole)


def test_a_read_only_store_is_refused_in_one_paragraph(tiny_model_dir, table, tmp_path,
                                                       monkeypatch, capsys):
    real_mkdir, real_open = os.mkdir, os.open

    def read_only_mkdir(path, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(os, "mkdir", read_only_mkdir)
    code, err = run_cli(["finetune", str(table), "--model", str(tiny_model_dir), "--root",
                         str(tmp_path / "runs"), "--no-progress", "--max-steps", "2"], capsys)
    assert code == 2 and "read-only" in err and "Nothing was written" in err
    with pytest.raises(RunStoreError, match="read-only"):
        finetune(tiny_model_dir, str(table), config=FineTuneConfig(**FAST), root=tmp_path / "runs",
                 progress=False)
    monkeypatch.setattr(os, "mkdir", real_mkdir)

    run = stopped_at(2, tiny_model_dir, table, tmp_path / "runs")

    def read_only_open(path, flags, *args, **kwargs):
        if str(path).startswith(str(run.path)) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only_open)
    with pytest.raises(RunStoreError, match=f"cannot write run {run.id}.*read-only"):
        finetune(None, None, resume=run, progress=False)
    monkeypatch.setattr(os, "open", real_open)
    assert run.status == "stopped"  # nothing changed; once writable it resumes
    assert finetune(None, None, resume=run, progress=False).status == "completed"


def test_ctrl_c_in_both_clis_marks_the_run_interrupted_with_a_short_message(
        tiny_model_dir, table, tmp_path, monkeypatch, capsys):
    from workbench.testing import offline_text
    from workbench.training import finetune as ft
    from workbench.training import pretrain as pt

    def ctrl_c(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ft._Trainer, "_train_step", ctrl_c)
    monkeypatch.setattr(pt._Pretrainer, "train_step", ctrl_c)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, text in enumerate(offline_text(30_000)):  # one document per file
        (corpus / f"{i:04d}.txt").write_text(text)
    commands = {
        "finetune": ["finetune", str(table), "--model", str(tiny_model_dir), "--max-steps", "4"],
        "pretrain": ["pretrain", str(corpus), "--preset", "tiny", "--seq-len", "32",
                     "--vocab-size", "400", "--batch-size", "4", "--max-steps", "4", "--heldout", "0.1",
                     "--device", "cpu"]}
    for kind, args in commands.items():
        root = tmp_path / kind
        monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
        code, err = run_cli([*args, "--root", str(root), "--no-progress"], capsys)
        (folder,) = [p for p in root.iterdir() if not p.name.startswith(".")]
        run = wb.Run.open(folder)
        assert code == 130 and err.startswith("interrupted (Ctrl-C) at step 0"), err
        assert "interrupted" in err and f"workbench {kind} --resume {run.id}" in err
        assert run.info["status"] == "interrupted" and "Ctrl-C" in run.info["error"]


def test_ctrl_c_before_training_began_says_no_run_was_changed(table, tmp_path, monkeypatch,
                                                              capsys):
    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("workbench.training.finetune.load_task_data", ctrl_c)
    code, err = run_cli(["finetune", str(table), "--root", str(tmp_path), "--no-progress"], capsys)
    assert code == 130 and err == "interrupted (Ctrl-C) before training began: no run was changed."
    assert not list(tmp_path.iterdir())


def test_resuming_a_broken_run_says_it_is_broken(tmp_path, capsys):
    folder = tmp_path / "20260101-000000-pretrain-abcdef"
    folder.mkdir()
    (folder / "run.json").write_text("{not json")
    code, err = run_cli(["pretrain", "--resume", folder.name, "--root", str(tmp_path)], capsys)
    assert code == 2 and "broken" in err and "run.json is not valid JSON" in err
    assert "unknown" not in err


# --------------------------------------------------------------------------- run size


def test_a_completed_finetune_keeps_no_optimizer_state_and_the_base_dtype(tiny_model_dir, table,
                                                                           tmp_path):
    """A base stored in fp16 (as the demo model is): the completed run's weights are stored in
    fp16, equal to its fp32 weights rounded (kept by keep_optimizer_state=True); no optimizer
    state stays; summary["disk_mb"] is the folder's size."""
    base = tmp_path / "fp16-base"
    lm = wb.load(tiny_model_dir, device="cpu", dtype="fp16")
    lm.model.save_pretrained(base)
    lm.tokenizer.save_pretrained(base)
    assert ckpt.weights_dtype(base) == "float16"
    small = finetune(str(base), str(table), config=FineTuneConfig(**FAST), root=tmp_path / "a",
                     progress=False)
    kept = finetune(str(base), str(table), config=FineTuneConfig(**FAST, keep_optimizer_state=True),
                    root=tmp_path / "b", progress=False)
    assert small.status == kept.status == "completed"
    assert not any(ckpt.is_resumable(p) for _, p in small.checkpoints())
    assert ckpt.is_resumable(kept.checkpoint()) and ckpt.weights_dtype(kept.checkpoint()) == "float32"
    assert ckpt.weights_dtype(small.checkpoint()) == "float16"
    fp16, fp32 = (load_file(str(r.checkpoint() / "model.safetensors")) for r in (small, kept))
    for key in fp32:
        assert torch.equal(fp16[key], fp32[key].half()), key
    assert wb.load(small, device="cpu").config.num_labels == 2  # it verifies and loads
    assert small.summary["disk_mb"] == pytest.approx(disk_mb(small.path), abs=0.01)
    assert small.summary["disk_mb"] < kept.summary["disk_mb"] / 3
    with pytest.raises(ValueError, match="keep_optimizer_state=True"):
        finetune(None, None, resume=small, progress=False)  # nothing left to resume from
    config = json.loads((small.checkpoint() / "config.json").read_text())
    assert config["dtype"] == "float16"
