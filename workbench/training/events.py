"""Training events and the callbacks that subscribe to them: progress bar, metrics log, stop flag.

A training loop (pretraining, fine-tuning) knows nothing about widgets: it builds an `Event` at each
step, evaluation, checkpoint and at the end, and hands it to `emit(callbacks, event)`. A widget is one
subscriber, the run folder's metrics log (`MetricsLogger`) another, a tqdm bar (`ProgressBar`) a
third. A failing callback is logged and ignored: a broken plot must never kill a training run.

Graceful stop: the loop checks `StopFlag.requested` after each optimiser step; a widget's Stop
button (another thread) calls `StopFlag.request()`. The loop then saves a checkpoint, marks the run
"stopped" and emits a "stopped" event.
"""

from __future__ import annotations

import logging
import threading
import time as _time
from dataclasses import dataclass, field
from typing import Callable, Iterable

logger = logging.getLogger(__name__)

EVENT_KINDS = ("start", "step", "eval", "checkpoint", "end", "stopped", "error")


@dataclass
class Event:
    """One thing that happened in a training run.

    `kind`: one of EVENT_KINDS. `step`: optimiser steps done so far; `total_steps`: planned steps
    (0 when unknown). `metrics`: numbers for this event (train loss and lr for "step"; held-out
    metrics for "eval"; "path" of the checkpoint for "checkpoint"; "message" for "error").
    """

    kind: str
    step: int
    total_steps: int
    metrics: dict = field(default_factory=dict)
    time: float = field(default_factory=_time.time)
    run_id: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in EVENT_KINDS:
            raise ValueError(f"Event kind {self.kind!r}; use one of {EVENT_KINDS}")


Callback = Callable[[Event], None]


class StopFlag:
    """A thread-safe request to stop training gracefully (after the current step)."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def request(self) -> None:
        self._event.set()

    def clear(self) -> None:
        self._event.clear()

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def __repr__(self) -> str:
        return f"StopFlag(requested={self.requested})"


def emit(callbacks: Iterable[Callback] | None, event: Event) -> None:
    """Call every callback with `event`; a callback that raises is logged and skipped."""
    for cb in callbacks or ():
        try:
            cb(event)
        except Exception as err:  # noqa: BLE001 - a subscriber must never stop training
            logger.warning("training callback %r failed on %s event at step %d: %s: %s",
                           cb, event.kind, event.step, type(err).__name__, err)


class ProgressBar:
    """A tqdm progress bar over optimiser steps with ETA, showing the latest loss and eval metrics.

    `keys`: which metrics to show in the bar's postfix (default: loss and the eval loss/accuracy).
    """

    def __init__(self, desc: str = "training", keys: tuple[str, ...] = (
            "loss", "eval_loss", "eval_accuracy"), leave: bool = True, **tqdm_kwargs):
        self.desc = desc
        self.keys = keys
        self.leave = leave
        self.tqdm_kwargs = tqdm_kwargs
        self._bar = None
        self._post: dict = {}

    def __call__(self, event: Event) -> None:
        if event.kind == "start":
            self._open(event)
        elif self._bar is None:
            self._open(event)
        if event.kind in ("step", "eval"):
            for k in self.keys:
                v = event.metrics.get(k)
                if isinstance(v, (int, float)):
                    self._post[k] = f"{v:.4g}"
            if self._post:
                self._bar.set_postfix(self._post, refresh=False)
            if event.total_steps and self._bar.total != event.total_steps:
                self._bar.total = event.total_steps
            self._bar.update(max(0, event.step - self._bar.n))
        elif event.kind in ("end", "stopped", "error"):
            self._bar.update(max(0, event.step - self._bar.n))
            self._bar.close()
            self._bar = None

    def _open(self, event: Event) -> None:
        from tqdm.auto import tqdm

        self._bar = tqdm(total=event.total_steps or None, initial=event.step, desc=self.desc,
                         unit="step", leave=self.leave, **self.tqdm_kwargs)


class MetricsLogger:
    """Append every "step" and "eval" event's metrics to the run folder's `metrics.jsonl`.

    Each row is `{"step", "kind", "time", **metrics}` (non-numeric metrics are dropped), so
    `Run.metrics()` returns one tidy frame with a `kind` column ("step" or "eval"). `skip`: the
    (kind, step) rows already in the log (a resumed run's rows at its restored step), not written
    again.
    """

    def __init__(self, run, kinds: tuple[str, ...] = ("step", "eval"), skip=()):
        self.run = run
        self.kinds = kinds
        self.skip = set(skip)

    def __call__(self, event: Event) -> None:
        if event.kind not in self.kinds or (event.kind, event.step) in self.skip:
            return
        row = {"step": event.step, "kind": event.kind, "time": event.time}
        for k, v in event.metrics.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            row[k] = float(v) if isinstance(v, float) else v
        self.run.log_metrics(row)
