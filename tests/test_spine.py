"""The lifecycle template both training loops run (`spine.run_lifecycle`, issue 25).

Oracle: a stand-in loop that records which of its steps the template calls, in what order, and
with what; the order is the one spine.py's docstring lists. The real loops' behaviour through the
template (exact resume, fallback, statuses, CLI messages) is tested in test_finetune.py,
test_pretraining.py, test_integrity.py and test_kill_resume.py.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pytest

import workbench as wb
from workbench.errors import InputError
from workbench.training.spine import run_lifecycle


@dataclass(frozen=True)
class ToyConfig:
    device: str = "cpu"
    precision: str = "fp32"
    checkpoint_minutes: float = 0.0
    keep_checkpoints: int = 1
    keep_optimizer_state: bool = False
    steps: int = 3

    def to_dict(self) -> dict:
        return asdict(self)


class ToyTrainer:
    def __init__(self, calls: list, fail: BaseException | None):
        self.calls, self.fail, self.step, self.total_steps = calls, fail, 0, 3

    def restore(self, checkpoint):
        self.calls.append("restore")

    def fit(self, spine, stop):
        self.calls.append("fit")
        while self.step < self.total_steps:
            self.step += 1
            spine.emit("step", self.step, loss=1.0 / self.step)
            if self.fail is not None:
                raise self.fail
        return "completed"

    def finish(self, spine, status):
        self.calls.append("finish")
        spine.finish(status, self.step, {"train_s": 0.0}, {})


class ToyLoop:
    """Records each call; `refuse` names a step that raises InputError, `fail` what fit raises."""

    kind, adapt_threads, base_model, weights_dtype = "toy", False, "toy-base", None

    def __init__(self, refuse: str | None = None, fail: BaseException | None = None):
        self.calls, self.refuse, self.fail = [], refuse, fail

    def _call(self, step: str):
        self.calls.append(step)
        if step == self.refuse:
            raise InputError(f"{step} refused")

    def configure(self, run):
        self._call("configure")
        return ToyConfig() if run is None else ToyConfig(**{k: v for k, v in run.config.items()})

    def load_data(self, run, engine):
        self._call("load_data")

    def same_data(self, run):
        self._call("same_data")

    def build(self, engine, run, checkpoint):
        self._call("build")
        return ToyTrainer(self.calls, self.fail)

    def created(self, run):
        self._call("created")
        return {"toy_data": "rows"}

    def begin_info(self, trainer, run):
        self._call("begin_info")
        return {"toy_step": trainer.step}

    def progress_label(self, run):
        return "toy"


def lifecycle(loop: ToyLoop, root, resume=None, callbacks=()):
    return run_lifecycle(loop, resume=resume, restart=False, name=None, root=root,
                         callbacks=callbacks, stop=None, progress=False)


def test_a_new_run_goes_through_the_steps_once_in_the_documented_order(tmp_path):
    loop, events = ToyLoop(), []
    run = run_lifecycle(loop, resume=None, restart=False, name="toy run", root=tmp_path,
                        callbacks=[events.append], stop=None, progress=False)
    assert loop.calls == ["configure", "load_data", "build", "created", "begin_info", "fit",
                          "finish"]  # no same_data and no restore for a new run
    assert run.status == "completed" and run.name == "toy run" and run.kind == "toy"
    info = run.info
    assert info["toy_data"] == "rows" and info["toy_step"] == 0 and info["base_model"] == "toy-base"
    assert info["machine"] and info["processes"] == 1 and info["fallback"] is None
    assert [e.kind for e in events] == ["start", "step", "step", "step", "end"]
    assert run.summary["steps"] == 3 and run.metrics("step")["step"].tolist() == [1, 2, 3]


@pytest.mark.parametrize("step", ["configure", "load_data", "build"])
def test_a_refused_input_leaves_no_run_folder(step, tmp_path):
    loop = ToyLoop(refuse=step)
    with pytest.raises(InputError, match=f"{step} refused"):
        lifecycle(loop, tmp_path)
    assert loop.calls[-1] == step
    assert not [p for p in tmp_path.iterdir() if not p.name.startswith(".")]


@pytest.mark.parametrize("fault, status", [(RuntimeError("boom"), "failed"),
                                           (KeyboardInterrupt(), "interrupted")])
def test_an_exception_in_fit_sets_the_status_in_one_place(fault, status, tmp_path):
    events = []
    with pytest.raises(type(fault)) as caught:
        lifecycle(ToyLoop(fail=fault), tmp_path, callbacks=[events.append])
    (run_id,) = wb.runs(tmp_path)["id"].tolist()
    run = wb.Run.open(run_id, root=tmp_path)
    assert run.info["status"] == status and run.info["error"]
    assert caught.value.workbench_run == ("toy", run.id, 1)  # the CLI's message reads this
    assert [(e.kind, e.step) for e in events][-2:] == [("step", 1), ("error", 1)]


def test_a_resume_checks_the_data_before_anything_is_written(tmp_path):
    with pytest.raises(RuntimeError):
        lifecycle(ToyLoop(fail=RuntimeError("boom")), tmp_path)
    run = wb.Run.open(wb.runs(tmp_path)["id"][0], root=tmp_path)
    refused = ToyLoop(refuse="same_data")
    with pytest.raises(InputError, match="same_data refused"):
        lifecycle(refused, tmp_path, resume=run.id)
    assert refused.calls == ["configure", "load_data", "same_data"]
    assert run.info["status"] == "failed" and "boom" in run.info["error"]  # untouched
    # the run has no checkpoint (failed before its first): it resumes from step 0
    again = ToyLoop()
    resumed = lifecycle(again, tmp_path, resume=run.id)
    assert again.calls == ["configure", "load_data", "same_data", "build", "begin_info", "fit",
                           "finish"]  # restore only with a checkpoint; created only when new
    assert resumed.id == run.id and resumed.status == "completed" and run.info["error"] is None
    assert resumed.metrics("step")["step"].tolist() == [1, 2, 3]  # no step twice
