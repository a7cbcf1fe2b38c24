"""The run lifecycle that pretraining and fine-tuning share: one template, one resume rule, one
status machine. Both `wb.pretrain` and `wb.finetune` are `run_lifecycle(loop, ...)`, where the
loop (`Loop`) supplies only what differs: its config, its data and the check that a resumed run
gets the same data, how to build its trainer (`Trainer`: restore, fit, finish). The steps, in
this one order:

    run = open_for_resume(resume, kind, root)     # None for a new run; checked kind, not broken
    with RunHold() as held: held.take(run)        # run.lock() for the life of the process
    config = loop.configure(run)                  # a resumed run's own (`resume_config`)
    engine = Engine(config.device, config.precision)
    loop.load_data(run, engine); loop.same_data(run)    # a resumed run's data, checked
    checkpoint, fallback = resume_point(run, restart)   # where to resume (nothing deleted yet)
    trainer = loop.build(engine, run, checkpoint)       # may still refuse: nothing written yet
    discard_checkpoints(run, fallback)            # restart=True only, now that nothing refuses
    run = Run.create(...)                         # a new run, on rank 0, locked at once
    with Spine(run, engine, callbacks, ...) as spine:   # TF32 scope; an exception -> status
        trainer.restore(checkpoint)
        spine.begin(trainer.step, config, resumed, **info)  # truncate metrics, "running", "start"
        status = trainer.fit(spine, stop)         # spine.emit(...), spine.checkpoint_due/save;
                                                  # CPU threads per `Loop.adapt_threads`
        trainer.finish(spine, status)             # -> spine.finish(status, step, summary)

Every refusal of the input (config, data, model, a resume point that cannot resume) comes before
the run folder is made or changed; an exception inside the Spine block is the only one that
changes a run's status (`Spine.__exit__`).

Resume rule (both loops): a run resumes from its newest whole checkpoint that passes its hash
check (`resume_point`: the newest two keep their optimizer state while the run is live, so a
damaged newest one falls back to the one before, and run.json's `fallback` says so), or, when it
was killed before its first one, from step 0 with the same id and config. A run whose every
checkpoint is damaged (or weights only) starts over only when asked (`restart=True`). Either way
the metric rows after the restored step are dropped first and rows already logged at that step
are not written again, so no step appears twice; taking the run's lock removes a killed
checkpoint's temporary folder. The lock is held for the whole life of the training process. Only
the fields a task lists as free (budgets, intervals, the machine) may change on resume, and the
data must be the run's own.

Statuses: created -> running -> completed | stopped | early_stopped | interrupted (Ctrl-C) |
failed; an ended run's `error` in run.json says what happened (cleared when it runs again), and
the exception carries `workbench_run` (kind, id, step) for the CLI's one-paragraph message. An
ended run (completed, early_stopped) keeps its optimizer state only if `keep_optimizer_state`
(`checkpoint.finalize`). Summary keys shared by both loops: steps, total_steps, status, wall_s (this session's wall
time), train_s (training time over all sessions), precision, processes, disk_mb (the run folder).
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Iterable, Protocol

from ..device import describe_machine
from ..errors import InputError
from .checkpoint import discard_checkpoints, disk_mb, finalize, resume_point, save_checkpoint
from .engine import Engine
from .events import Callback, Event, MetricsLogger, ProgressBar, StopFlag, emit
from .run import Run

HEARTBEAT_S = 30.0  # run.json's "heartbeat" is rewritten at most this often while running
ENDED = ("completed", "early_stopped")  # statuses after which a run is not resumed
logger = logging.getLogger(__name__)


def open_for_resume(resume, kind: str, root, restart: bool = False) -> Run | None:
    """The run to resume, checked to be of `kind` and not broken; None for a new run."""
    if resume is None:
        if restart:
            raise InputError("restart=True (--restart) starts a run you resume over from step 0: "
                             "pass resume=ID (--resume ID) with it")
        return None
    run = Run.open(resume, root=root)
    if run.status == "broken":
        raise InputError(f"run {run.id} cannot be resumed: it is broken ({run.reason}; "
                         f"{run.path}). Repair or delete that folder, or start a new run")
    if run.kind != kind:
        raise InputError(f"run {run.id} is a {run.kind!r} run; resume it with "
                         f"wb.{'pretrain' if run.kind == 'pretrain' else 'finetune'}")
    return run


class RunHold(contextlib.ExitStack):
    """Holds a run's writer lock from `take(run)` until the block ends: for a resumed run from
    before anything is read, for a new run from its creation (the lock is not re-entrant)."""

    def take(self, run: Run | None) -> Run | None:
        if run is not None:
            self.enter_context(run.lock())
        return run


def resume_config(cls, run: Run, requested):
    """The run's saved config with the `requested` changes (a config, or a dict of fields), which
    may touch only `cls.resumable_changes` (`Spine.begin` writes the result to config.json)."""
    free = cls.resumable_changes
    saved = cls.from_dict({k: v for k, v in run.config.items() if not k.startswith("_")})
    if requested is None:
        return saved
    asked = requested if isinstance(requested, dict) else requested.to_dict()
    asked = {cls.renamed_fields.get(k, k): v for k, v in asked.items()}  # old spellings
    changes = {k: v for k, v in asked.items() if v != getattr(saved, k, None)}
    refused = sorted(k for k in changes if k not in free)
    if refused:
        raise InputError(f"resuming run {run.id} cannot change {refused} (saved: "
                         f"{ {k: getattr(saved, k, None) for k in refused} }; only {sorted(free)} may "
                         "change); omit them to reuse the run's config, or start a new run")
    return saved.replace(**changes) if changes else saved


class Spine:
    """One process's part in a run: lock, events, heartbeat, checkpoints, status and summary.

    On processes other than rank 0 of a multi-process launch `run` is None: events, checkpoints
    and the summary are rank 0's alone."""

    def __init__(self, run: Run | None, engine: Engine, callbacks: Iterable[Callback], *,
                 total_steps: int, checkpoint_minutes: float = 0.0, progress: str | None = None,
                 keep_checkpoints: int = 1, keep_optimizer_state: bool = True,
                 weights_dtype: str | None = None, fallback: dict | None = None):
        self.run, self.engine, self.total_steps = run, engine, total_steps
        # what `finish` keeps (checkpoint.finalize) and what `begin` records about the resume
        self.keep_last, self.keep_state = keep_checkpoints, keep_optimizer_state
        self.weights_dtype, self.fallback = weights_dtype, fallback
        self.checkpoint_s = checkpoint_minutes * 60
        self.callbacks = list(callbacks)
        if run is not None:
            self.logger = MetricsLogger(run)
            self.callbacks.insert(0, self.logger)
            if progress:
                self.callbacks.append(ProgressBar(desc=progress))
        self._stack = contextlib.ExitStack()
        self.started = time.time()
        self._last_save = self._last_beat = time.monotonic()

    # ---- life ---------------------------------------------------------------------------------
    def __enter__(self) -> "Spine":
        self._stack.enter_context(self.engine.tf32())
        return self

    def __exit__(self, kind, err, tb) -> bool:
        try:
            if err is not None:
                self._record_error(err)
            else:  # every process leaves together, after rank 0's last write: a rank that exits
                self.engine.barrier()  # early can abort at gloo's teardown (exit -6)
        finally:
            self._stack.close()
        return False

    def _record_error(self, err: BaseException) -> None:
        """Status and `error` in run.json, an "error" event, and `err.workbench_run`. A store that
        cannot be written any more (disk full) is logged: the run then reads as "interrupted"."""
        step = getattr(self, "step", 0)
        interrupted = isinstance(err, KeyboardInterrupt)
        message = (f"interrupted by Ctrl-C (KeyboardInterrupt) at step {step}" if interrupted
                   else f"{type(err).__name__}: {err}")
        if self.run is not None:
            err.workbench_run = (self.run.kind, self.run.id, step)
            try:
                self.run.set_status("interrupted" if interrupted else "failed",
                                    error=message[:1000])
            except OSError as write_err:
                logger.warning("could not record the end of run %s (%s): %s", self.run.id,
                               message[:200], write_err)
        self.emit("error", step, message=message)

    def begin(self, step: int, config, resumed: bool, **info) -> None:
        """Drop metric rows after `step` (the restored step, 0 when starting over), record the
        config (a resume may have changed its free fields), mark the run running."""
        self.step = step
        if self.run is not None:
            if resumed:  # rows after `step` go; those at `step` stay and are not written twice
                self.run.write_config(config.to_dict())
                self.run.truncate_metrics(step)
                rows = self.run.metrics()
                if len(rows):
                    at = rows[rows["step"] == step]
                    self.logger.skip = set(zip(at["kind"], at["step"].astype(int)))
            self.run.set_status("running", total_steps=self.total_steps,
                                device=str(self.engine.device), precision=self.engine.precision,
                                processes=self.engine.world, heartbeat=time.time(), error=None,
                                fallback=self.fallback, **info)
        fell_back = {"fallback_from": self.fallback["newest_step"]} if self.fallback else {}
        self.emit("start", step, resumed_from=step, **fell_back)

    def finish(self, status: str, step: int, summary: dict, final: dict) -> None:
        """Write the summary (shared keys + `summary`), the final status, the last event."""
        if self.run is not None:
            if status in ENDED:  # the best evaluation's checkpoint stays (wb.load opens it)
                self._finalize(keep_steps=[summary.get("best_step")])
            self.run.write_summary({
                "steps": step, "total_steps": self.total_steps, "status": status,
                "wall_s": round(time.time() - self.started, 2), "precision": self.engine.precision,
                "processes": self.engine.world, **summary, "disk_mb": disk_mb(self.run.path)})
            self.run.set_status(status)
        self.emit("stopped" if status == "stopped" else "end", step, **final)

    def _finalize(self, keep_steps) -> None:
        """Drop the optimizer state (unless kept) and store the weights in the base's dtype; a
        failure here (disk full) leaves the checkpoints as they were and is only logged."""
        from safetensors import SafetensorError

        try:
            finalize(self.run, self.keep_last, keep_steps, keep_state=self.keep_state,
                     dtype=self.weights_dtype)
        except (OSError, SafetensorError) as err:
            logger.warning("run %s: could not shrink its checkpoints (%s); they stay as they are",
                           self.run.id, err)

    # ---- during the run -------------------------------------------------------------------------
    def emit(self, kind: str, step: int, **metrics) -> None:
        self.step = step
        if self.run is None:
            return
        emit(self.callbacks, Event(kind, step, self.total_steps, metrics, run_id=self.run.id))
        now = time.monotonic()
        if now - self._last_beat >= HEARTBEAT_S and kind != "error":
            self._last_beat = now
            self.run.set_status("running", heartbeat=time.time())

    def checkpoint_due(self, step: int, every: int) -> bool:
        """Every `every` steps, or when `checkpoint_minutes` have passed since the last save."""
        late = self.checkpoint_s > 0 and time.monotonic() - self._last_save >= self.checkpoint_s
        return step % every == 0 or late

    def save(self, step: int, model, tokenizer, optimizer, scheduler, state: dict,
             keep_last: int = 1, keep_steps=()) -> None:
        """A whole checkpoint at `step` (rank 0 only; the others go on to the next all-reduce)."""
        self._last_save = time.monotonic()
        if self.run is None:
            return
        path = save_checkpoint(self.run, step, self.engine.unwrap(model), tokenizer, optimizer,
                               scheduler, dict(state), keep_last=keep_last, keep_steps=keep_steps)
        self.emit("checkpoint", step, path=str(path))


# ---- the template ------------------------------------------------------------------------------

class Trainer(Protocol):
    """One loop's model, optimizer, schedule and position in the data (built by `Loop.build`)."""

    step: int         # optimiser steps done (the restored one after `restore`)
    total_steps: int  # where the run ends (read again after `restore`: a schedule may set it)

    def restore(self, checkpoint: Path) -> None:
        """Weights, optimizer, schedule, RNG states and the position in the data."""

    def fit(self, spine: Spine, stop: StopFlag | None) -> str:
        """Train until the end, a stop request or an early stop; return the status."""

    def finish(self, spine: Spine, status: str) -> None:
        """Last evaluation and checkpoint as the loop needs; then `spine.finish(...)`."""


class Loop(Protocol):
    """What a training loop gives `run_lifecycle`; the steps and their order are the template's."""

    kind: str                    # Run.kind and the CLI's command: "pretrain" or "finetune"
    adapt_threads: bool          # CPU threads follow the free cores (`Engine.cpu_threads`)
    base_model: str | None       # run.json's base_model of a new run (known after `build`)
    weights_dtype: str | None    # what `Spine.finish` stores the weights in (None: as trained)

    def configure(self, run: Run | None):
        """The config: a resumed run's own with the free changes (`resume_config`), or the
        caller's, checked."""

    def load_data(self, run: Run | None, engine: Engine) -> None:
        """Read and check the data (a resumed run's own when none is given)."""

    def same_data(self, run: Run) -> None:
        """Raise InputError when the data are not those the resumed `run` was trained on."""

    def build(self, engine: Engine, run: Run | None, checkpoint: Path | None) -> Trainer:
        """The trainer, its model and optimizer prepared by `engine`; may refuse the input."""

    def created(self, run: Run) -> dict:
        """Fields run.json records when a new run is created."""

    def begin_info(self, trainer: Trainer, run: Run | None) -> dict:
        """Fields run.json records at each start of the run (`Spine.begin`)."""

    def progress_label(self, run: Run) -> str:
        """The progress bar's label."""


def run_lifecycle(loop: Loop, *, resume, restart: bool, name: str | None, root,
                  callbacks: Iterable[Callback], stop: StopFlag | None,
                  progress: bool) -> Run | None:
    """Train `loop` as a new run or resume one, the steps in the module docstring's order; return
    the run (None on the extra processes of a multi-process launch)."""
    run = open_for_resume(resume, loop.kind, root, restart)
    with RunHold() as held:  # a resumed run is locked before anything is read or written
        held.take(run)
        resumed = run is not None
        config = loop.configure(run)
        engine = Engine(config.device, config.precision)
        loop.load_data(run, engine)
        if resumed:
            loop.same_data(run)
        checkpoint, fallback = resume_point(run, restart) if resumed else (None, None)
        trainer = loop.build(engine, run, checkpoint)  # may still refuse: nothing written yet
        if fallback and fallback.get("restart"):
            discard_checkpoints(run, fallback)
        if run is None and engine.is_main:
            run = held.take(Run.create(loop.kind, config.to_dict(), name=name, root=root,
                                       base_model=loop.base_model))
            info = loop.created(run)
            if info:
                run.set_status("created", **info)
        main = run if engine.is_main else None
        with Spine(main, engine, callbacks, total_steps=trainer.total_steps,
                   checkpoint_minutes=config.checkpoint_minutes,
                   progress=loop.progress_label(main) if progress and main is not None else None,
                   keep_checkpoints=config.keep_checkpoints,
                   keep_optimizer_state=config.keep_optimizer_state,
                   weights_dtype=loop.weights_dtype, fallback=fallback) as spine:
            if checkpoint is not None:
                trainer.restore(checkpoint)
            spine.total_steps = trainer.total_steps
            with _threads(loop, engine, run if resumed else None) as threads:
                spine.begin(trainer.step, config, resumed, machine=describe_machine(), **threads,
                            **loop.begin_info(trainer, run))
                status = trainer.fit(spine, stop)
            trainer.finish(spine, status)
        return main


@contextlib.contextmanager
def _threads(loop: Loop, engine: Engine, resumed: Run | None):
    """The CPU thread count for `fit` (a resumed run keeps its first session's count: a resume
    is bit-identical only with the same count); yields the run.json field that records it."""
    if not loop.adapt_threads:
        yield {}
        return
    with engine.cpu_threads(resumed.info.get("cpu_threads") if resumed else None) as n:
        yield {"cpu_threads": n}
