"""`FineTuneRun`: fine-tune from a form, watch it live, stop it, resume it, compare runs.

Controls -> `training.finetune.finetune` (in a background thread, so other notebook cells keep
running while it trains) -> `RunMonitor` (live curves, progress with ETA, Stop) -> a runs table
(`wb.runs()`) whose selected runs are compared with `plots.training.compare_runs`. A collapsed
"why this label?" section (`ExplainPanel`) attributes the classifier of the finished or selected
run (its best checkpoint, as `wb.load(run)` opens it) on an example text, once opened.
"""

from __future__ import annotations

import html
import threading
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import pandas as pd
import plotly.graph_objects as go

from ..errors import InputError
from ..models import LM, load
from ..plots.training import compare_runs
from ..store import runs as list_runs
from ..resources import sentiment_sample_path
from ..training.events import StopFlag
from ..training.finetune import KIND, FineTuneConfig, finetune
from ..training.run import Run
from .attribution_panel import ExplainPanel
from .common import in_widget, placeholder, replace_figure
from .runs_table import run_details_html, run_label, runs_table_html, short_id
from .training_monitor import RunMonitor

DEFAULT_EXAMPLE = "A gripping, funny and beautifully acted film."
EXPLAIN_TITLE = "why this label? attributions of {run}'s classifier"
_COMPARE_METRICS = ["eval_accuracy", "eval_loss", "eval_macro_f1", "eval_mcc", "loss",
                    "eval_pearson", "eval_spearman"]


STYLE = {"description_width": "110px"}
WIDE = "420px"  # form and runs-list width


class FineTuneRun(widgets.VBox):
    """A fine-tuning form with Start / Stop / Resume, live curves and a runs table.

    `model`: an `LM` or a model name/folder; `data`: a DataFrame or anything `wb.finetune` reads
    (when given, it replaces the data-path field). `config` fills the form's defaults.
    `root`: the run store folder (default `store.default_root()`: `$WORKBENCH_RUNS`, else
    `<repo>/runs` in a source checkout).
    """

    def __init__(self, model: Any = "demo", data: Any = None, *,
                 config: FineTuneConfig | None = None, root: str | None = None):
        if config is not None and not isinstance(config, FineTuneConfig):
            raise InputError(f"FineTuneRun(config={config!r}): pass a FineTuneConfig, e.g. "
                             "wb.FineTuneConfig(epochs=1)")
        if not isinstance(model, (str, Path, LM)):
            raise InputError(f"FineTuneRun(model={model!r}): pass a model name, a folder or an "
                             "LM from wb.load(...)")
        cfg = config or FineTuneConfig()
        self.lm = model if not isinstance(model, (str, Path)) else None
        self.data = data
        self.base_config = cfg
        self.root = root
        self.run: Run | None = None
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None
        self.stop_flag = StopFlag()
        self.start_button = widgets.Button(description="Start", icon="play", button_style="primary")
        self.resume_button = widgets.Button(description="Resume selected", icon="repeat",
                                            tooltip="continue the selected run from its last checkpoint")
        self.refresh_button = widgets.Button(description="Refresh runs", icon="refresh")
        self.message = widgets.HTML()
        self.monitor = RunMonitor(self.stop_flag, title="fine-tuning", open_run=self._open_run)
        self.runs_select = widgets.SelectMultiple(options=[], description="runs", rows=6,
                                                  style=STYLE, layout=widgets.Layout(width=WIDE))
        self.compare_metric = widgets.Dropdown(options=_COMPARE_METRICS, value="eval_accuracy",
                                               description="compare", style=STYLE)
        self.runs_table = widgets.HTML()
        self.run_details = widgets.HTML()
        self.compare_figure = go.FigureWidget(placeholder("select runs above to compare them",
                                                          height=300))
        self.explain = ExplainPanel(EXPLAIN_TITLE.format(run="the selected (or last) run"),
                                    text=self._example_text())
        self._names: list[str] = []   # run names in the table (a shared name gets its short id)
        self.start_button.on_click(lambda _: self.start())
        self.resume_button.on_click(lambda _: self.resume())
        self.refresh_button.on_click(lambda _: self.refresh_runs())
        self.runs_select.observe(lambda _: self.compare(), names="value")
        self.runs_select.observe(self._on_select, names="value")
        self.compare_metric.observe(lambda _: self.compare(), names="value")
        super().__init__([self._form(model, data, cfg),
                          widgets.HBox([self.start_button, self.message]),
                          self.monitor.widget, self._runs_panel(), self.explain])
        self.refresh_runs()

    def _form(self, model, data, cfg: FineTuneConfig) -> widgets.HBox:
        """The model, data and hyper-parameter fields, filled from `cfg`."""
        self.model_text = widgets.Text(value=str(model) if self.lm is None else self.lm.name,
                                       description="model", style=STYLE,
                                       layout=widgets.Layout(width=WIDE),
                                       disabled=self.lm is not None)
        default_path = "" if data is not None else str(sentiment_sample_path())
        self.data_text = widgets.Text(value=default_path if not isinstance(data, (str, Path))
                                      else str(data), description="data",
                                      placeholder="CSV / TSV / JSONL path or datasets name",
                                      style=STYLE, layout=widgets.Layout(width=WIDE),
                                      disabled=data is not None and not isinstance(data, (str, Path)))
        self.text_column = widgets.Text(value=cfg.text_column, description="text column", style=STYLE)
        self.pair_column = widgets.Text(value=cfg.pair_column or "", description="pair column",
                                        placeholder="(none)", style=STYLE)
        self.label_column = widgets.Text(value=cfg.label_column, description="label column",
                                         style=STYLE)
        self.learning_rate = widgets.FloatText(value=cfg.learning_rate, description="learning rate",
                                               style=STYLE)
        # what 0 ("auto") stands for, from the config's own rule, updated as the value changes
        self.learning_rate_hint = widgets.HTML(self._learning_rate_hint(cfg.learning_rate))
        self.learning_rate.observe(
            lambda change: setattr(self.learning_rate_hint, "value",
                                   self._learning_rate_hint(change["new"])), names="value")
        self.batch_size = widgets.BoundedIntText(value=cfg.batch_size, min=1, max=4096,
                                                 description="batch size", style=STYLE)
        self.epochs = widgets.BoundedIntText(value=cfg.epochs, min=1, max=1000,
                                             description="epochs", style=STYLE)
        self.max_steps = widgets.BoundedIntText(value=cfg.max_steps or 0, min=0, max=10_000_000,
                                                description="max steps", style=STYLE,
                                                tooltip="0 = train for the epochs above")
        self.max_length = widgets.BoundedIntText(value=cfg.max_length, min=2, max=100_000,
                                                 description="max length", style=STYLE)
        self.eval_every = widgets.BoundedIntText(value=cfg.eval_every, min=0, max=10_000_000,
                                                 description="eval every", style=STYLE,
                                                 tooltip="steps; 0 = once per epoch")
        self.run_name = widgets.Text(value="", description="run name",
                                     placeholder="(model-data, e.g. demo-rotten_tomatoes)",
                                     style=STYLE)
        return widgets.HBox([
            widgets.VBox([self.model_text, self.data_text, self.text_column, self.pair_column,
                          self.label_column, self.run_name]),
            widgets.VBox([self.learning_rate, self.learning_rate_hint, self.batch_size, self.epochs,
                          self.max_steps, self.max_length, self.eval_every]),
        ])

    def _learning_rate_hint(self, value) -> str:
        """One line under the field: the rate the run will use when the field is 0 (auto)."""
        if value:
            return ""
        if self.lm is not None:
            hidden = self.lm.model.config.hidden_size
            rate = FineTuneConfig(learning_rate=0.0).peak_learning_rate(hidden)
            return f"<small>0 = auto: {rate:.0e} for this model (hidden size {hidden})</small>"
        return ("<small>0 = auto: 2e-05 for hidden size &ge; 768 (roberta-base), "
                "1e-04 below</small>")

    def _runs_panel(self) -> widgets.VBox:
        """The runs list, the comparison metric, the table, details and comparison plot."""
        return widgets.VBox([widgets.HBox([self.runs_select,
                                           widgets.VBox([self.compare_metric, self.refresh_button,
                                                         self.resume_button])]),
                             self.runs_table, self.run_details, self.compare_figure])

    # ------------------------------------------------------------------ form -> config
    def config(self) -> FineTuneConfig:
        """The FineTuneConfig the form describes (raises InputError naming a bad field)."""
        return self.base_config.replace(
            text_column=self.text_column.value.strip(),
            pair_column=self.pair_column.value.strip() or None,
            label_column=self.label_column.value.strip(),
            learning_rate=float(self.learning_rate.value), batch_size=int(self.batch_size.value),
            epochs=int(self.epochs.value), max_steps=int(self.max_steps.value) or None,
            max_length=int(self.max_length.value), eval_every=int(self.eval_every.value))

    def _data(self):
        if self.data is not None and not isinstance(self.data, (str, Path)):
            return self.data
        return self.data_text.value.strip()

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    # ------------------------------------------------------------------ actions
    def start(self) -> None:
        """Start a new run in a background thread (the notebook stays usable)."""
        self._launch(resume=None)

    def resume(self) -> None:
        """Continue the run selected in the runs table from its latest checkpoint."""
        if len(self.runs_select.value) != 1:
            self._say("select exactly one run to resume", error=True)
            return
        self._launch(resume=self.runs_select.value[0])

    def stop(self) -> None:
        """Ask the running run to stop gracefully (it saves and is marked 'stopped')."""
        self.monitor._on_stop()

    def wait(self, timeout: float | None = None) -> Run | None:
        """Block until the background run ends (for scripts and tests); return its Run."""
        if self.thread is not None:
            self.thread.join(timeout)
        return self.run

    def _launch(self, resume) -> None:
        if self.running:
            self._say("a run is already in progress: stop it first", error=True)
            return
        try:
            config = None if resume is not None else self.config()
        except Exception as err:  # noqa: BLE001 - shown in the widget
            self._say(f"{type(err).__name__}: {err}", error=True)
            return
        self.stop_flag.clear()
        self.error = None
        model = self.lm if self.lm is not None else self.model_text.value.strip()
        data = self._data()
        name = self.run_name.value.strip() or (None if resume else self._default_name())
        self.start_button.disabled = True
        self._say("resuming ..." if resume else "starting ...")

        def work():
            try:
                self.run = finetune(model, data, config=config, resume=resume,
                                    callbacks=[self.monitor], stop=self.stop_flag, name=name,
                                    root=self.root, progress=False)
                self._say(f"run {self.run.name} ({short_id(self.run)}): {self.run.status}")
            except BaseException as err:  # noqa: BLE001 - shown in the widget, kept for callers
                self.error = err
                self._say(f"{type(err).__name__}: {err}", error=True)
            finally:
                self.start_button.disabled = False
                self.refresh_runs()
                if self.run is not None and self.run.checkpoints():
                    self._explain(self.run)

        self.thread = threading.Thread(target=work, name="workbench-finetune", daemon=True)
        self.thread.start()

    def _default_name(self) -> str:
        """A readable run name when none is typed: the model's and the data's names."""
        model = self.lm.name if self.lm is not None else Path(self.model_text.value.strip()).name
        data = self._data()
        data = Path(data).stem if isinstance(data, (str, Path)) else "table"
        return f"{Path(model).name or 'model'}-{data or 'data'}"

    def _say(self, text: str, error: bool = False) -> None:
        colour = "#b00020" if error else "#333"
        self.message.value = f'<span style="color:{colour}">{html.escape(text)}</span>'

    # ------------------------------------------------------------------ runs table
    def runs_frame(self) -> pd.DataFrame:
        """The fine-tuning runs in the store, newest first."""
        frame = list_runs(self.root)
        if len(frame) and "kind" in frame.columns:
            frame = frame[frame["kind"] == KIND]
        return frame.reset_index(drop=True)

    def _open_run(self, run_id_or_path) -> Run:
        return Run.open(run_id_or_path, root=self.root)

    @in_widget(status="message")
    def refresh_runs(self) -> None:
        frame = self.runs_frame()
        self.runs_table.value = runs_table_html(frame)
        names = self._names = list(frame["name"]) if len(frame) else []
        selected = [v for v in self.runs_select.value if v in set(frame.get("path", []))]
        self.runs_select.options = [
            (f"{run_label(r['name'], r['id'], names)} · {r['status']}", r["path"])
            for _, r in frame.iterrows()]
        self.runs_select.value = tuple(selected)

    def _example_text(self) -> str:
        """The first text of the training data when it is a table in memory, else a sample."""
        data, column = self.data, self.base_config.text_column
        if isinstance(data, pd.DataFrame) and column in data.columns and len(data):
            return str(data[column].iloc[0])
        return DEFAULT_EXAMPLE

    def _on_select(self, change) -> None:
        """One run selected: its details below the table, and the attribution section on it."""
        chosen = change["new"]
        if len(chosen) != 1:
            self.run_details.value = ""
            return
        try:
            run = self._open_run(chosen[0])
            self.run_details.value = run_details_html(run)
        except Exception as err:  # noqa: BLE001 - a broken run is described, not raised
            self.run_details.value = f"<b>error:</b> {html.escape(str(err))}"
            return
        if run.checkpoints():
            self._explain(run)

    def _explain(self, run: Run) -> None:
        """Point the attribution section at a run's classifier (loaded when the section opens),
        named by the run's name (not its folder id and checkpoint path)."""
        label = run_label(run.name, run.id, self._names)

        def open_classifier() -> LM:
            lm = load(run.path, task="classifier")
            lm.name = label
            return lm

        self.explain.set_title(0, EXPLAIN_TITLE.format(run=f"run {label}"))
        self.explain.set_source(lm=open_classifier)

    @in_widget(status="message")
    def compare(self) -> None:
        """Redraw the comparison figure: one curve per selected run, keyed by run id."""
        metric = self.compare_metric.value
        runs = []
        for path in self.runs_select.value:
            try:
                runs.append(self._open_run(path))
            except InputError:
                continue  # removed since the list was drawn
        names = [r.name for r in runs]
        frames = {run_label(r.name, r.id, names): r.metrics() for r in runs}
        fresh = compare_runs(frames, metric)
        shown = [t for t in fresh.data if t.x is not None and len(t.x)]
        note = None
        if not runs:
            note = f"select runs above to compare their {metric}"
        elif not shown:
            note = f"no {metric} logged yet in the selected runs: pick another metric"
        replace_figure(self.compare_figure, fresh if note is None else placeholder(note))
        self.compare_figure.layout.height = 300
