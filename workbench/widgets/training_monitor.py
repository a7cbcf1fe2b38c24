"""`RunMonitor`: a live view of any training run (fine-tuning, pretraining) fed by its events.

Pass it as a callback (`wb.finetune(..., callbacks=[monitor], stop=monitor.stop)`): it collects
"step" and "eval" metrics, redraws `plots.training.training_curves` into a plotly FigureWidget
(at most every `redraw_s` seconds, and always on evaluations and at the end), moves a progress bar
with steps/s and ETA, and its Stop button requests a graceful stop through a `StopFlag`.
It knows nothing about a particular loop: any `Event` stream drives it.

Curves are keyed by run id: a "start" event for another run starts empty curves (and a clean
status line); a resumed run starts from its own history up to the restored step (read from the
run, or, with no `open_run`, the rows this monitor drew before the stop). Hosts pass
`open_run(run_id)` (returning the store's `Run`) so the curves' title names the run and a resume
reads the run's own metrics.
"""

from __future__ import annotations

import html
import threading
import time
from typing import Any, Callable, Sequence

import ipywidgets as widgets
import pandas as pd
import plotly.graph_objects as go

from ..errors import InputError
from ..plots.labels import plot_text
from ..plots.training import training_curves
from ..training.events import Event, StopFlag
from .common import SPINNER, placeholder, replace_figure
from .runs_table import short_id

HEIGHT = 320


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class RunMonitor:
    """Live curves + progress bar with ETA + Stop button; call it with each training `Event`."""

    def __init__(self, stop: StopFlag | None = None, *, title: str | None = None,
                 metrics: Sequence[str] | None = None, redraw_s: float = 0.5,
                 show_keys: Sequence[str] = ("loss", "eval_loss", "eval_accuracy"),
                 open_run: Callable[[str], Any] | None = None):
        if stop is not None and not isinstance(stop, StopFlag):
            raise InputError(f"RunMonitor(stop={stop!r}): pass a StopFlag (or nothing)")
        if not isinstance(redraw_s, (int, float)) or redraw_s < 0:
            raise InputError(f"RunMonitor(redraw_s={redraw_s!r}): pass seconds >= 0")
        self.stop = stop or StopFlag()
        self.metrics_shown = list(metrics) if metrics is not None else None
        self.redraw_s = redraw_s
        self.show_keys = tuple(show_keys)
        self.open_run = open_run
        self.title = title
        self.curves: dict[str | None, list[dict]] = {None: []}   # run id -> its metric rows
        self.state = "idle"
        self.run_id: str | None = None
        self._lock = threading.Lock()
        self._last_draw = 0.0
        self._t0 = self._step0 = None
        self._latest: dict = {}
        self._title = plot_text(title) if title else None
        self.figure = go.FigureWidget(placeholder("no run yet", height=HEIGHT))
        self.progress = widgets.IntProgress(value=0, min=0, max=1, description="steps",
                                            layout=widgets.Layout(width="320px"))
        self.status = widgets.HTML(value="not started")
        self.stop_button = widgets.Button(description="Stop", icon="stop", button_style="warning",
                                          tooltip="finish the current step, save, mark the run stopped",
                                          disabled=True)
        self.stop_button.on_click(self._on_stop)
        self.widget = widgets.VBox([widgets.HBox([self.progress, self.stop_button, self.status]),
                                    self.figure])

    # ------------------------------------------------------------------ events in
    def __call__(self, event: Event) -> None:
        with self._lock:
            if event.kind == "start":
                self._start(event)
            elif event.kind in ("step", "eval"):
                if event.run_id is not None and event.run_id != self.run_id:
                    return  # a stray event of another run never joins this run's curves
                self.rows.append({"step": event.step, "kind": event.kind, **{
                    k: v for k, v in event.metrics.items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool)}})
                self._latest.update({k: v for k, v in event.metrics.items()
                                     if k in self.show_keys and isinstance(v, (int, float))})
            elif event.kind in ("end", "stopped", "error"):
                self.state = {"end": "completed", "stopped": "stopped", "error": "failed"}[event.kind]
                self.stop_button.disabled = True
                if event.kind == "error":
                    self._latest["error"] = str(event.metrics.get("message", ""))[:200]
                never = [m for m in self.metrics_shown or () if m not in self.frame().columns]
                if never and self.rows and "error" not in self._latest:  # e.g. a misspelt name
                    self._latest["error"] = f"never logged: {', '.join(never)}"
            self._progress(event)
            final = event.kind in ("eval", "end", "stopped", "error")
            if final or time.monotonic() - self._last_draw >= self.redraw_s:
                self.redraw()

    @property
    def rows(self) -> list[dict]:
        """The current run's metric rows (each run's curves are kept apart, keyed by run id)."""
        return self.curves.setdefault(self.run_id, [])

    def _start(self, event: Event) -> None:
        self.state = "running"
        self.run_id = event.run_id
        self._t0, self._step0 = event.time, event.step
        self._latest = {}
        self._title = plot_text(self.title) if self.title else None  # until the run is read
        history = self._history_rows(event.run_id, event.step)
        if not history and event.step > 0:  # no store to read: the rows this monitor saw itself
            history = [r for r in self.curves.get(event.run_id, []) if r["step"] <= event.step]
        self.curves[event.run_id] = history
        for row in self.curves[event.run_id]:
            self._latest.update({k: v for k, v in row.items() if k in self.show_keys
                                 and isinstance(v, (int, float)) and v == v})
        self.stop_button.disabled = False
        self.progress.max = max(1, event.total_steps)
        self.redraw()

    def _history_rows(self, run_id: str | None, step: int) -> list[dict]:
        """A resumed run's rows logged up to the restored `step` (none for a new run)."""
        if self.open_run is None or run_id is None:
            return []
        try:
            run = self.open_run(run_id)
            self._title = plot_text(f"{self.title or run.kind}: {run.name} ({short_id(run)})")
            frame = run.metrics() if step > 0 else None
        except Exception as err:  # noqa: BLE001 - the live curves still work without history
            self._latest["error"] = f"run history not read: {err}"[:200]
            return []
        if frame is None or not len(frame) or "step" not in frame.columns:
            return []
        frame = frame[frame["step"] <= step]
        return [{k: v for k, v in row.items() if k == "kind" or (
                 isinstance(v, (int, float)) and not isinstance(v, bool) and v == v)}
                for row in frame.to_dict("records")]

    def preparing(self, what: str) -> None:
        """Busy state until the loop's "start" event: a spinner, `what`, and the seconds elapsed
        (ticking once a second), so the preparation (tokenizer, corpus, model) is never silent."""
        self.state = "preparing"
        t0 = time.monotonic()
        replace_figure(self.figure, placeholder(f"{what} …", height=HEIGHT))

        def tick() -> None:
            while self.state == "preparing":
                self.status.value = (f"{SPINNER}{html.escape(what)} … "
                                     f"{_duration(time.monotonic() - t0)} elapsed")
                time.sleep(1.0)

        threading.Thread(target=tick, daemon=True, name="workbench-preparing").start()

    def _on_stop(self, _button=None) -> None:
        self.stop.request()
        self.stop_button.disabled = True
        self.status.value = html.escape("stopping after this step ...")

    # ------------------------------------------------------------------ views out
    def frame(self) -> pd.DataFrame:
        """The metrics seen so far (same columns as `Run.metrics()`)."""
        return pd.DataFrame(self.rows)

    def eta_seconds(self, step: int, total: int, now: float) -> float | None:
        if self._t0 is None or step <= self._step0 or not total:
            return None
        rate = (step - self._step0) / max(now - self._t0, 1e-9)
        return (total - step) / rate

    def _progress(self, event: Event) -> None:
        if event.total_steps:
            self.progress.max = max(1, event.total_steps)
        self.progress.value = min(event.step, self.progress.max)
        parts = [f"{self.state}", f"step {event.step}/{event.total_steps or '?'}"]
        eta = self.eta_seconds(event.step, event.total_steps, event.time)
        if self.state == "running" and eta is not None:
            rate = (event.step - self._step0) / max(event.time - self._t0, 1e-9)
            parts += [f"{rate:.2f} steps/s", f"ETA {_duration(eta)}"]
        parts += [f"{k} {v:.4g}" for k, v in self._latest.items() if k != "error"]
        if "error" in self._latest:
            parts.append(f"error: {self._latest['error']}")
        self.status.value = html.escape(" · ".join(parts))

    def redraw(self) -> None:
        """Copy the latest curves into the FigureWidget (traces matched by name)."""
        self._last_draw = time.monotonic()
        frame = self.frame()
        shown = self.metrics_shown
        if shown is not None:  # a metric may not be logged yet (an eval at step 0 comes first)
            shown = [m for m in shown if m in frame.columns]
        if not len(frame):  # a note, not empty axes, until the first point arrives
            note = "waiting for the first logged step …" if self.state == "running" else (
                f"{self.state}: no points logged")
            replace_figure(self.figure, placeholder(note, height=HEIGHT))
            self.figure.update_layout(title=dict(text=self._title, x=0.01, xanchor="left"))
            return
        new = training_curves(frame, metrics_shown=shown, title=self._title)
        old_names = [t.name for t in self.figure.data]
        new_names = [t.name for t in new.data]
        if old_names != new_names:
            replace_figure(self.figure, new)
            self.figure.layout.height = HEIGHT
            return
        with self.figure.batch_update():
            self.figure.layout.title.text = self._title
            for old, fresh in zip(self.figure.data, new.data):
                old.x, old.y = fresh.x, fresh.y

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)
