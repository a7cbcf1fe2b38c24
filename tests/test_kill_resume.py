"""Any kill is resumable: SIGKILL the CLI's training processes at random points, resume with
`--resume ID` alone, and compare with an uninterrupted run.

Oracle: the same command run once without interruption (a fresh process with the same thread
count). After the kills and resumes, the run must be "completed" with final weights bit-identical
to the uninterrupted run's, the same train-loss rows, no (kind, step) row twice and no temporary
file or folder left. Kill points: before the first checkpoint (the run restarts from step 0 with
the same id), while a checkpoint's temporary folder exists (watched for at millisecond intervals)
and at random times within a launch's training. The default suite runs a fast subset; `-m slow`
runs 32 kill points (at least 10 per loop must land).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors.torch import load_file

import workbench as wb

ENV = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_model_dir):
    """A text file for pretraining and a separable table for fine-tuning."""
    from workbench.testing import offline_text

    folder = tmp_path_factory.mktemp("kill-inputs")
    (folder / "corpus").mkdir()
    for i, text in enumerate(offline_text(60_000)):  # one document per file
        (folder / "corpus" / f"{i:04d}.txt").write_text(text)
    # the same documents in one file, separated by blank lines (streamed, memory-mapped rows)
    (folder / "big.txt").write_text("\n\n".join(offline_text(60_000)))
    rng = np.random.default_rng(0)
    fill = ["the", "film", "was", "a", "story", "of", "it", "and", "plot", "with"]
    rows = [{"text": " ".join([*rng.choice(fill, 5), "excellent" if i % 2 else "dreadful"]),
             "label": "pos" if i % 2 else "neg"} for i in range(128)]
    pd.DataFrame(rows).to_csv(folder / "data.csv", index=False)
    return folder


def commands(kind: str, inputs: Path, model: Path, steps: int) -> list[str]:
    """The CLI arguments of one small training run of `kind` (checkpoints every 4 steps)."""
    common = ["--max-steps", str(steps), "--checkpoint-every", "4", "--log-every", "1",
              "--device", "cpu", "--no-progress"]
    if kind.startswith("pretrain"):
        corpus = inputs / ("big.txt" if kind == "pretrain-file" else "corpus")
        return ["pretrain", str(corpus), "--preset", "tiny", "--seq-len", "48", "--heldout", "0.1",
                "--vocab-size", "600", "--batch-size", "8", "--warmup-steps", "4", "--eval-every",
                "6", "--eval-sequences", "16", "--dropout", "0.1", *common]
    return ["finetune", str(inputs / "data.csv"), "--model", str(model), "--batch-size", "16",
            "--learning-rate", "0.003", "--eval-every", "6", "--validation-split", "0.25", *common]


class Harness:
    """Launches `python -m workbench ...` under one run store and cache, kills and resumes it."""

    def __init__(self, folder: Path, args: list[str]):
        self.root, self.args = folder / "runs", args
        self.env = dict(ENV, WORKBENCH_CACHE=str(folder / "cache"))
        self.kills: list[str] = []

    def run_id(self) -> str | None:
        found = [p.name for p in self.root.iterdir() if not p.name.startswith(".")] \
            if self.root.is_dir() else []
        assert len(found) <= 1, found  # a resume never makes a second run
        return found[0] if found else None

    def launch(self) -> subprocess.Popen:
        rid = self.run_id()
        args = [self.args[0], "--resume", rid] if rid else self.args  # `--resume ID` alone
        return subprocess.Popen([sys.executable, "-m", "workbench", *args, "--root", str(self.root)],
                                env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)

    def kill_when(self, proc: subprocess.Popen, point: str, delay: float) -> bool:
        """SIGKILL `proc` at `point`; False if it ended first."""
        deadline = time.monotonic() + 120
        launched, trained = time.time(), None
        while proc.poll() is None and time.monotonic() < deadline:
            rid = self.run_id()
            run = self.root / rid if rid else None
            if point == "training" and run is not None:
                trained = trained or _first_row_since(run / "metrics.jsonl", launched)
                if trained is not None and time.time() - trained >= delay:
                    break
            if point == "before-checkpoint" and run is not None and (run / "metrics.jsonl").exists() \
                    and not (run / "checkpoints").exists():
                break
            if point == "checkpoint-write" and run is not None and (run / "checkpoints").is_dir() \
                    and any(p.name.startswith(".tmp-step") for p in (run / "checkpoints").iterdir()):
                break
            time.sleep(0.001)
        if proc.poll() is not None:
            return False
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        self.kills.append(point)
        return True

    def resumed_step(self) -> int:
        """The step the next launch resumes from: the newest checkpoint's, 0 before the first."""
        rid = self.run_id()
        folder = self.root / rid / "checkpoints" if rid else None
        steps = [int(p.name.split("-")[1]) for p in folder.glob("step-*")] if folder and folder.is_dir() else []
        return max(steps, default=0)

    def finish(self) -> wb.Run:
        """Resume the run to its end, unless a launch meant to be killed completed it already (a
        completed fine-tune keeps no optimizer state, so resuming it again is refused)."""
        rid = self.run_id()
        if rid is not None and wb.Run.open(self.root / rid).status == "completed":
            return wb.Run.open(self.root / rid)
        proc = self.launch()
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        return wb.Run.open(self.root / self.run_id())


def uninterrupted(tmp_path: Path, args: list[str]) -> wb.Run:
    return Harness(tmp_path / "reference", args).finish()


def assert_same_run(resumed: wb.Run, reference: wb.Run, steps: int) -> None:
    assert resumed.status == "completed" and resumed.summary["steps"] == steps
    final = [load_file(str(r.checkpoint() / "model.safetensors")) for r in (resumed, reference)]
    assert final[0].keys() == final[1].keys()
    for key in final[0]:
        assert (final[0][key] == final[1][key]).all(), key  # bit-identical
    rows = resumed.metrics()
    assert not rows.duplicated(["kind", "step"]).any(), rows[rows.duplicated(["kind", "step"])]
    mine, theirs = resumed.metrics("step"), reference.metrics("step")
    assert mine["step"].tolist() == theirs["step"].tolist() == list(range(1, steps + 1))
    assert mine["loss"].tolist() == theirs["loss"].tolist()
    assert resumed.metrics("eval")["step"].tolist() == reference.metrics("eval")["step"].tolist()
    leftovers = [p.name for p in resumed.path.rglob(".*") if p.name not in (".run.lock",)]
    assert not [n for n in leftovers if "tmp" in n or n.startswith(".old")], leftovers


def _first_row_since(metrics: Path, since: float) -> float | None:
    """Wall time of the newest step row if this launch (started at `since`) wrote it, else None."""
    try:
        last = json.loads(metrics.read_text().splitlines()[-1])
    except (OSError, IndexError, ValueError):  # no file yet, empty, or a line being written
        return None
    return last["time"] if last.get("kind") == "step" and last["time"] >= since else None


def kill_and_resume(tmp_path: Path, args: list[str], points: list[tuple[str, float]],
                    timing: tuple[float, int] | None = None) -> Harness:
    """Launch and kill at each point in turn. A "training" point's value is a fraction of the
    training time this launch has left, counted from its first step row; `timing` = (training
    s, steps) of the uninterrupted run. (A delay counted from the launch would outlive a resumed
    launch with few steps left, or fall in a start-up that varies more than training lasts.)"""
    harness = Harness(tmp_path / "killed", args)
    for point, value in points:
        delay = value
        if point == "training" and timing is not None:
            training, steps = timing
            delay = value * training * (steps - harness.resumed_step()) / steps
        harness.kill_when(harness.launch(), point, delay)
    return harness


def timed_reference(tmp_path: Path, args: list[str]) -> tuple[wb.Run, tuple[float, int]]:
    """The uninterrupted run and its (training s, steps): from its first step row (the rows carry
    wall-clock times) to its last."""
    reference = uninterrupted(tmp_path, args)
    rows = reference.metrics("step")
    return reference, (float(rows["time"].iloc[-1] - rows["time"].iloc[0]), int(rows["step"].iloc[-1]))


@pytest.mark.parametrize("kind, point", [("pretrain", "checkpoint-write"),
                                         ("finetune", "before-checkpoint"),
                                         ("pretrain-file", "before-checkpoint")])
def test_a_kill_resumes_exactly_from_the_cli(kind, point, inputs, tiny_model_dir, tmp_path):
    """The fast subset: each loop killed once at a point the slow test also covers for the other."""
    steps = 10
    args = commands(kind, inputs, tiny_model_dir, steps)
    reference = uninterrupted(tmp_path, args)
    harness = kill_and_resume(tmp_path, args, [(point, 0)])
    assert harness.kills == [point]
    assert_same_run(harness.finish(), reference, steps)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["pretrain", "finetune"])
def test_twelve_random_kills_per_loop_resume_exactly(kind, inputs, tiny_model_dir, tmp_path):
    steps = 48
    args = commands(kind, inputs, tiny_model_dir, steps)
    reference, timing = timed_reference(tmp_path, args)
    # random kill times within each launch's training, scaled to this machine and to the steps
    # that launch has left, so they land on a fast machine as on a loaded one
    rng = np.random.default_rng(1 if kind == "pretrain" else 2)
    points = [("before-checkpoint", 0), ("checkpoint-write", 0)]
    points += [("checkpoint-write", 0) if rng.random() < 0.3
               else ("training", float(rng.uniform(0.1, 0.9))) for _ in range(14)]
    harness = kill_and_resume(tmp_path, args, points, timing)
    assert harness.kills[:2] == ["before-checkpoint", "checkpoint-write"]
    assert len(harness.kills) >= 10, harness.kills  # some launches may finish before their kill
    assert_same_run(harness.finish(), reference, steps)
