"""Issue 28.5: a CPU fine-tune beside other busy processes trains with as many threads as there
are free cores (OpenMP threads spinning at barriers while a sibling is descheduled made
`wb.finetune` 3.5x slower than with one thread on the loaded 2-core machine)."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
import torch

import workbench as wb
from workbench.training.engine import Engine, busy_cores_of_others, contended_threads


@pytest.mark.parametrize("threads, cores, others, expected", [
    (2, 2, 0.0, 2), (2, 2, 0.4, 2), (2, 2, 0.6, 1), (2, 2, 1.0, 1), (2, 2, 5.0, 1),
    (8, 8, 3.0, 5), (4, 8, 0.0, 4)])
def test_threads_follow_the_free_cores(threads, cores, others, expected):
    assert contended_threads(threads, cores, others) == expected


@pytest.fixture()
def spinners():
    """One process per core that only spins, as bench_finetune's controlled load."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
             for _ in range(torch.get_num_threads())]
    yield procs
    for p in procs:
        p.kill()
        p.wait()


def test_a_finetune_beside_busy_cores_trains_on_one_thread(tiny_model_dir, tmp_path, spinners):
    assert busy_cores_of_others(0.5) >= 0.5  # the spinners are seen (whatever else runs)
    seen = []
    data = pd.DataFrame({"text": [f"the film was {w}" for w in ("great", "awful") * 16],
                         "label": ["pos", "neg"] * 16})
    before = torch.get_num_threads()
    wb.finetune(str(tiny_model_dir), data, progress=False, root=tmp_path,
                config=wb.FineTuneConfig(batch_size=8, max_steps=2, device="cpu"),
                callbacks=[lambda e: seen.append(torch.get_num_threads())
                           if e.kind == "step" else None])
    assert seen and set(seen) == {1}, seen
    assert torch.get_num_threads() == before  # restored after the run


def test_cpu_threads_scope_restores_and_leaves_gpus_alone():
    engine, before = Engine("cpu", "fp32"), torch.get_num_threads()
    with engine.cpu_threads() as n:
        assert 1 <= n <= before and torch.get_num_threads() == n
    assert torch.get_num_threads() == before


def test_a_resumed_run_keeps_its_first_sessions_thread_count(tiny_model_dir, tmp_path, monkeypatch):
    """1 and 2 threads round differently: a resume is bit-identical only with the same count, so
    the count chosen at the run's start is recorded and reused, whatever the load is then."""
    import workbench.training.engine as engine_mod

    data = pd.DataFrame({"text": ["good film", "bad film"] * 16, "label": ["pos", "neg"] * 16})
    cfg = wb.FineTuneConfig(batch_size=8, max_steps=4, checkpoint_every=1, log_every=1, device="cpu")

    def interrupt(event):
        if event.kind == "step" and event.step == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(engine_mod, "busy_cores_of_others", lambda: 0.0)   # an idle machine
    try:  # Ctrl-C in a callback: the run ends "interrupted" at its step-2 checkpoint
        wb.finetune(str(tiny_model_dir), data, progress=False, root=tmp_path, config=cfg,
                    callbacks=[interrupt])
    except KeyboardInterrupt:
        pass
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert wb.Run(folder).status == "interrupted"
    first = wb.Run(folder).info["cpu_threads"]
    monkeypatch.setattr(engine_mod, "busy_cores_of_others", lambda: 64.0)  # now a busy one
    seen = []
    wb.finetune(None, data, resume=folder, progress=False, root=tmp_path,
                callbacks=[lambda e: seen.append(torch.get_num_threads()) if e.kind == "step" else None])
    assert seen and set(seen) == {first}
