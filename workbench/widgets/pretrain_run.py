"""`PretrainRun`: pretrain a masked LM from a form and watch it live (shared `RunMonitor`).

Controls (corpus, preset, masking, whole-word, steps, learning rate) -> `training.pretrain.pretrain`
in a background thread (other notebook cells keep running) -> `RunMonitor` (live train and
held-out loss and masked-token accuracy beside the unigram baseline, progress with ETA, Stop)
-> the finished `Run` in `.run`, ready for `wb.load(run)` and every analysis.
"""

from __future__ import annotations

import html
import threading
from pathlib import Path
from typing import Any

import ipywidgets as widgets

from ..errors import InputError
from ..training.pretrain import PRESETS, PretrainConfig, pretrain
from ..training.run import Run
from ..training.schedule import capped_warmup
from .common import error_html
from .runs_table import short_id
from .training_monitor import RunMonitor

CURVES = ["loss", "eval_loss", "eval_accuracy", "eval_unigram_accuracy"]


class PretrainRun(widgets.VBox):
    """A pretraining form with Start / Stop (graceful) / Resume and live curves.

    `corpus`: anything `wb.pretrain` reads (texts, a Corpus, a DataFrame, a file or folder path,
    'demo'); when given it replaces the corpus-path field. `config` fills the form's defaults.
    `root`: the run store folder (default `store.default_root()`: `$WORKBENCH_RUNS`, else
    `<repo>/runs` in a source checkout).
    """

    def __init__(self, corpus: Any = None, *, config: PretrainConfig | None = None,
                 root: str | Path | None = None, cache_dir: str | Path | None = None):
        if config is not None and not isinstance(config, PretrainConfig):
            raise InputError(f"PretrainRun(config={config!r}): pass a PretrainConfig, e.g. "
                             "wb.PretrainConfig.from_preset('tiny')")
        self._corpus = corpus
        self._base = config or PretrainConfig.from_preset("tiny")
        self.root, self.cache_dir = root, cache_dir
        self.run: Run | None = None
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self.monitor = RunMonitor(title="pretraining", metrics=CURVES, open_run=self._open_run)

        b = self._base
        style = {"description_width": "110px"}
        self.corpus_path = widgets.Text(value="demo" if corpus is None else "(given in Python)",
                                        description="corpus", disabled=corpus is not None, style=style,
                                        placeholder="'demo', a .txt file or a folder")
        self.preset = widgets.Dropdown(options=sorted(PRESETS), value=b.preset or "tiny",
                                       description="model size", style=style)
        self.masking = widgets.ToggleButtons(options=["dynamic", "static"], value=b.masking,
                                             description="masking", style=style)
        self.static_copies = widgets.BoundedIntText(value=b.static_copies, min=1, max=100,
                                                    description="static copies K", style=style)
        self.whole_word = widgets.Checkbox(value=b.whole_word, description="whole-word masking")
        self.max_steps = widgets.BoundedIntText(value=b.max_steps, min=1, max=10**7,
                                                description="steps", style=style)
        self.learning_rate = widgets.FloatLogSlider(value=b.learning_rate, base=10, min=-5, max=-2,
                                                    step=0.1, description="peak lr", style=style,
                                                    readout_format=".1e")
        self.start_button = widgets.Button(description="Start", icon="play", button_style="success")
        self.resume_button = widgets.Button(description="Resume", icon="redo",
                                            tooltip="continue the last run from its latest checkpoint",
                                            disabled=True)
        self.message = widgets.HTML()
        self.start_button.on_click(lambda _b: self.start())
        self.resume_button.on_click(lambda _b: self.start(resume=True))
        self.preset.observe(self._on_preset, names="value")
        form = widgets.VBox([self.corpus_path, self.preset, self.masking, self.static_copies,
                             self.whole_word, self.max_steps, self.learning_rate,
                             widgets.HBox([self.start_button, self.resume_button])])
        super().__init__([form, self.monitor.widget, self.message])

    def _open_run(self, run_id: str) -> Run:
        return Run.open(run_id, root=self.root)

    def _on_preset(self, change) -> None:
        preset = PRESETS[change["new"]]
        self.max_steps.value = preset.get("max_steps", self.max_steps.value)
        self.learning_rate.value = preset.get("learning_rate", self.learning_rate.value)

    def config(self) -> PretrainConfig:
        """The PretrainConfig the form describes: the given config (or the chosen preset's
        settings when the preset was changed), then the form's choices."""
        cfg = self._base
        if self.preset.value != cfg.preset:
            cfg = cfg.replace(preset=self.preset.value, **PRESETS[self.preset.value])
        steps = int(self.max_steps.value)
        return cfg.replace(masking=self.masking.value, static_copies=int(self.static_copies.value),
                           whole_word=bool(self.whole_word.value), max_steps=steps,
                           learning_rate=float(self.learning_rate.value),
                           warmup_steps=capped_warmup(cfg.warmup_steps, steps))

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, resume: bool = False, block: bool = False) -> None:
        """Train in a background thread (`block=True` waits, e.g. in a script or a test)."""
        if self.running:
            self.message.value = "a run is already in progress"
            return
        corpus = self._corpus if self._corpus is not None else self.corpus_path.value.strip()
        self.monitor.stop.clear()
        self.error = None
        kwargs = dict(callbacks=[self.monitor], stop=self.monitor.stop, root=self.root,
                      cache_dir=self.cache_dir)
        if resume and self.run is not None:
            kwargs["resume"] = self.run
        else:
            kwargs["config"] = config = self.config()
            kwargs["name"] = f"{config.preset or 'custom'}-{config.masking}"  # the curves' title

        def work() -> None:
            try:
                self.run = pretrain(corpus, **kwargs)
                self.message.value = html.escape(
                    f"run {self.run.name} ({short_id(self.run)}): {self.run.status}")
            except Exception as err:  # noqa: BLE001 - shown in the widget, kept in .error
                self.error = err
                self.message.value = error_html(err)
            finally:
                if self.monitor.state == "preparing":  # failed before the loop started
                    self.monitor.state = "failed"
                    self.monitor.status.value = "failed before training started (see below)"
                self.start_button.disabled = False
                self.resume_button.disabled = self.run is None or self.run.status == "completed"

        self.start_button.disabled = True
        self.resume_button.disabled = True
        self.message.value = ""
        self.monitor.preparing("resuming: reading the checkpoint and the packed corpus" if resume
                               else "preparing: tokenizer, corpus packing and model (the first "
                               "start trains a tokenizer; later starts reuse the cache)")
        self._thread = threading.Thread(target=work, daemon=True, name="workbench-pretrain")
        self._thread.start()
        if block:
            self._thread.join()
