"""RunMonitor, FineTuneRun and the training plots, tested on traits and figure data (no browser)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import workbench as wb
from workbench.errors import InputError
from workbench.plots.training import (clean_metrics, compare_runs, confusion_heatmap,
                                      training_curves)
from workbench.training.events import Event, StopFlag


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _events(total=10):
    yield Event("start", 0, total, time=100.0, run_id="r1")
    for step in range(1, 6):
        yield Event("step", step, total, {"loss": 1.0 / step, "lr": 0.1}, time=100.0 + step)
    yield Event("eval", 5, total, {"eval_loss": 0.4, "eval_accuracy": 0.75}, time=105.5)


def test_monitor_follows_events_and_draws_curves():
    monitor = wb.widgets.RunMonitor(redraw_s=0.0)
    for event in _events():
        monitor(event)
    names = {t.name: t for t in monitor.figure.data}
    assert set(names) == {"loss", "eval_loss", "eval_accuracy"}  # lr is not a curve
    assert list(names["loss"].x) == [1, 2, 3, 4, 5]
    assert list(names["loss"].y) == pytest.approx([1, 1 / 2, 1 / 3, 1 / 4, 1 / 5])
    assert list(names["eval_accuracy"].y) == [0.75]
    assert monitor.progress.max == 10 and monitor.progress.value == 5
    # 5 steps in 5.5 s -> 5 more steps take 5.5 s
    assert monitor.eta_seconds(5, 10, 105.5) == pytest.approx(5.5)
    assert "ETA 0:05" in monitor.status.value and "eval_accuracy 0.75" in monitor.status.value
    monitor(Event("end", 10, 10, {}, time=111.0))
    assert monitor.state == "completed" and monitor.stop_button.disabled


def test_monitor_with_chosen_metrics_draws_them_as_they_appear():
    """Pretraining logs an eval at step 0, before any training loss: the live view must draw what
    exists (no callback failure) and, at the end, name a chosen metric that never came."""
    monitor = wb.widgets.RunMonitor(redraw_s=0.0, metrics=["loss", "eval_loss", "eval_f1"])
    monitor(Event("start", 0, 10, time=100.0))
    monitor(Event("eval", 0, 10, {"eval_loss": 9.0}, time=100.0))  # raised InputError before
    assert [t.name for t in monitor.figure.data] == ["eval_loss"]
    for event in list(_events())[1:]:
        monitor(event)
    assert {t.name for t in monitor.figure.data} == {"loss", "eval_loss"}
    monitor(Event("end", 10, 10, {}, time=111.0))
    assert "never logged: eval_f1" in monitor.status.value


class _FakeRun:
    """What RunMonitor reads from a store run: id, name, kind, metrics()."""

    def __init__(self, name, frame):
        self.name, self.kind, self._frame = name, "finetune", frame
        self.id = f"20261201-000000-finetune-{name}"

    def metrics(self):
        return self._frame


def test_monitor_keeps_each_run_apart_and_a_resume_reloads_its_history():
    """Issue 17.1: a second run never joins the first run's curves nor keeps its scores; a
    resume starts from the run's own metrics up to the restored step (no step twice)."""
    logged = pd.DataFrame({"step": [1, 2, 3, 3, 4], "kind": ["step", "step", "step", "eval", "step"],
                           "loss": [0.9, 0.8, 0.7, None, 0.65], "eval_accuracy": [None] * 3 + [0.6, None]})
    runs = {"r1": _FakeRun("first", logged), "r2": _FakeRun("second", logged.iloc[0:0])}
    monitor = wb.widgets.RunMonitor(redraw_s=0.0, open_run=runs.__getitem__)
    for event in _events():
        monitor(event)
    monitor(Event("start", 0, 4, time=200.0, run_id="r2"))
    assert all(len(t.x) == 0 for t in monitor.figure.data)  # old curves gone at once
    assert "eval_accuracy" not in monitor.status.value and "second" in str(monitor.figure.layout.title.text)
    monitor(Event("step", 1, 4, {"loss": 2.0}, time=201.0, run_id="r2"))
    monitor(Event("step", 6, 10, {"loss": 0.1}, time=201.0, run_id="r1"))  # stray: ignored
    (loss,) = [t for t in monitor.figure.data if t.name == "loss"]
    assert list(loss.x) == [1] and list(loss.y) == [2.0]

    monitor(Event("start", 3, 10, time=300.0, run_id="r1"))   # resume r1 from step 3
    monitor(Event("step", 4, 10, {"loss": 0.5}, time=301.0, run_id="r1"))
    names = {t.name: t for t in monitor.figure.data}
    assert list(names["loss"].x) == [1, 2, 3, 4] and list(names["loss"].y) == [0.9, 0.8, 0.7, 0.5]
    assert list(names["eval_accuracy"].y) == [0.6] and "eval_accuracy 0.6" in monitor.status.value


def test_monitor_of_a_stopped_then_resumed_run_ends_with_all_its_curves():
    """Issue 28.6 (notebook 06): a monitor with no store to read (no `open_run`) follows a run
    that stops at step 3 and resumes; it ends "completed" over steps 1-6, not an empty grid, and
    the resume redraws the traces already in the page instead of replacing them."""
    monitor = wb.widgets.RunMonitor(redraw_s=0.0)
    monitor(Event("start", 0, 6, time=100.0, run_id="r1"))
    for step in (1, 2, 3):
        monitor(Event("step", step, 6, {"loss": 1.0 / step}, time=100.0 + step, run_id="r1"))
    monitor(Event("eval", 3, 6, {"eval_loss": 0.5, "eval_accuracy": 0.6}, time=103.5, run_id="r1"))
    monitor(Event("stopped", 3, 6, time=104.0, run_id="r1"))
    shown = {t.name: t for t in monitor.figure.data}
    monitor(Event("start", 3, 6, time=200.0, run_id="r1"))          # the resume
    assert {t.name: t for t in monitor.figure.data} == shown       # the same trace objects
    for step in (4, 5, 6):
        monitor(Event("step", step, 6, {"loss": 1.0 / step}, time=200.0 + step, run_id="r1"))
    monitor(Event("eval", 6, 6, {"eval_loss": 0.4, "eval_accuracy": 0.7}, time=206.5, run_id="r1"))
    monitor(Event("end", 6, 6, time=207.0, run_id="r1"))
    names = {t.name: t for t in monitor.figure.data}
    assert list(names["loss"].x) == [1, 2, 3, 4, 5, 6]
    assert list(names["eval_accuracy"].x) == [3, 6] and list(names["eval_accuracy"].y) == [0.6, 0.7]
    assert monitor.state == "completed" and "completed" in monitor.status.value


def test_preparing_note_is_wrapped_not_cut_off():
    """Issue 28.6: PretrainRun's "preparing: …" note (115 characters) was one plotly line, cut
    off at both edges of the figure; it is wrapped into lines that fit."""
    from workbench.widgets.common import PLACEHOLDER_CHARS

    what = ("preparing: tokenizer, corpus packing and model (the first start trains a tokenizer; "
            "later starts reuse the cache) <b>")
    monitor = wb.widgets.RunMonitor()
    monitor.preparing(what)
    monitor.state = "idle"  # ends the status line's ticking thread
    (note,) = monitor.figure.layout.annotations
    lines = note.text.split("<br>")
    assert len(lines) >= 2 and all(len(line) <= PLACEHOLDER_CHARS + 6 for line in lines), lines
    assert " ".join(lines) == f"{what} …".replace("<b>", "&lt;b&gt;")  # nothing lost, escaped


def test_monitor_stop_button_sets_the_flag_and_escapes_errors():
    flag = StopFlag()
    monitor = wb.widgets.RunMonitor(flag)
    monitor(Event("start", 0, 3))
    assert not monitor.stop_button.disabled
    monitor.stop_button.click()
    assert flag.requested and monitor.stop_button.disabled
    monitor(Event("error", 1, 3, {"message": "<b>boom</b>"}))
    assert monitor.state == "failed" and "&lt;b&gt;boom" in monitor.status.value


def test_curves_deduplicate_resumed_steps_and_validate_names():
    frame = pd.DataFrame({"step": [1, 2, 2, 3], "kind": "step", "loss": [3.0, 2.0, 2.5, 1.0]})
    clean = clean_metrics(frame)
    assert list(clean["step"]) == [1, 2, 3] and list(clean["loss"]) == [3.0, 2.5, 1.0]
    fig = training_curves(frame)
    assert [t.name for t in fig.data] == ["loss"] and list(fig.data[0].y) == [3.0, 2.5, 1.0]
    with pytest.raises(InputError, match="eval_f1"):
        training_curves(frame, metrics_shown=["eval_f1"])
    assert len(training_curves(pd.DataFrame()).data) == 0
    both = compare_runs({"a": frame, "b": frame.assign(loss=frame["loss"] / 2)}, "loss")
    assert [t.name for t in both.data] == ["a", "b"] and list(both.data[1].y) == [1.5, 1.25, 0.5]


def test_confusion_heatmap_counts_and_shares():
    cm = pd.DataFrame([[3, 1], [0, 4]], index=pd.Index(["neg", "pos"], name="true"),
                      columns=pd.Index(["neg", "pos"], name="predicted"))
    fig = confusion_heatmap(cm, normalize=True)
    z = np.array(fig.data[0].z)
    assert z[0].tolist() == [0.75, 0.25] and z[1].tolist() == [0.0, 1.0]
    assert fig.data[0].text[0][0].startswith("3")
    assert np.array(confusion_heatmap(cm).data[0].z).tolist() == [[3, 1], [0, 4]]
    with pytest.raises(InputError, match="square"):
        confusion_heatmap(cm.iloc[:, :1])


def _separable(n=64):
    rng = np.random.default_rng(0)
    return pd.DataFrame({"text": [f"the film was {rng.choice(['a', 'the', 'it'])} "
                                  + ("excellent" if i % 2 else "dreadful") for i in range(n)],
                         "label": ["pos" if i % 2 else "neg" for i in range(n)]})


def test_finetune_widget_trains_in_the_background_stops_and_resumes(tiny_model_dir, run_root):
    w = wb.widgets.FineTuneRun(str(tiny_model_dir), _separable())
    assert w.data_text.disabled  # a DataFrame was given
    w.learning_rate.value, w.batch_size.value, w.max_steps.value = 3e-3, 8, 6
    w.base_config = w.base_config.replace(device="cpu", log_every=1)
    w.start_button.click()  # the thread is loading the model for a while ...
    assert w.running
    w.start()  # ... so a second start is refused
    assert "already in progress" in w.message.value
    w.stop()  # pressed before the first step ends: the run stops after step 1
    run = w.wait(120)
    assert w.error is None and run.status == "stopped" and run.summary["steps"] == 1
    assert run.name == "model-table"  # a readable name by default: the model's and the data's
    assert "stopped" in w.message.value and w.monitor.state == "stopped"
    assert len(w.runs_select.options) == 1 and "stopped" in w.runs_table.value

    w.runs_select.value = (w.runs_select.options[0][1],)
    w.resume_button.click()
    run = w.wait(120)
    assert w.error is None and run.status == "completed" and run.summary["steps"] == 6
    assert [t.name for t in w.monitor.figure.data][0] == "loss"
    assert max(next(t for t in w.monitor.figure.data if t.name == "loss").x) == 6

    # the resumed run's curve holds its own history once, no point twice (issue 17.1)
    loss = next(t for t in w.monitor.figure.data if t.name == "loss")
    assert list(loss.x) == list(range(1, 7)) and run.name in w.monitor.figure.layout.title.text

    w.compare_metric.value = "loss"
    (trace,) = w.compare_figure.data
    assert list(trace.x) == list(range(1, 7))
    w.compare_metric.value = "eval_pearson"  # not logged by a classifier: said, not empty axes
    assert "no eval_pearson logged" in w.compare_figure.layout.annotations[0].text
    w.compare_metric.value = "loss"

    # a second run with the same name: its own curves only, and both runs compared apart
    w.run_name.value = run.name
    w.max_steps.value = 3
    w.start()
    second = w.wait(120)
    assert w.error is None and second.id != run.id
    loss = next(t for t in w.monitor.figure.data if t.name == "loss")
    assert list(loss.x) == [1, 2, 3]
    assert "steps 3" not in w.runs_table.value and "wrapped" not in w.runs_table.value
    w.runs_select.value = tuple(o[1] for o in w.runs_select.options)
    assert sorted(len(t.x) for t in w.compare_figure.data) == [3, 6]
    assert len({t.name for t in w.compare_figure.data}) == 2  # named apart by short id
    w.runs_select.value = (w.runs_select.options[-1][1],)

    # the attribution section explains the selected run's classifier on the first training text
    w.explain.selected_index = 0
    view = w.explain.view
    assert view.lm.kind == "classifier" and view.text.value == _separable()["text"].iloc[0]
    # named by the run's name and short id (two runs share the name), not folder id + checkpoint
    selected = wb.runs(run_root).set_index("path").loc[w.runs_select.value[0]]
    assert view.lm.name == f"{selected['name']} ({selected['id'].rsplit('-', 1)[-1]})"
    assert view.lm.name in w.explain.titles[0] and "/" not in w.explain.titles[0]
    assert view.result["target"].iloc[0] in ("pos", "neg") and "delta" in view.status.value


def test_finetune_widget_reports_bad_form_values(tiny_model_dir, run_root):
    w = wb.widgets.FineTuneRun(str(tiny_model_dir), _separable())
    w.label_column.value = "nope"
    w.base_config = w.base_config.replace(device="cpu")
    w.start()
    w.wait(60)
    assert isinstance(w.error, InputError) and "column &#x27;nope&#x27; is missing" in w.message.value
    w.learning_rate.value = -1.0  # (0 now means "by model size")
    w.start()  # refused by the config before any thread starts
    assert "learning_rate" in w.message.value and not w.running


def test_pretrain_widget_resume_keeps_the_curve_history(tmp_path):
    """Issue 17.4: Resume continues the curves from the run's own history (steps before the stop
    stay drawn, none twice), and the first Start says what it prepares."""
    from pydoc_data.topics import topics

    corpus = wb.Corpus.from_texts(list(topics.values())[:60], name="pydoc")
    cfg = wb.PretrainConfig.from_preset("tiny", seq_len=32, vocab_size=400, batch_size=4,
                                        max_steps=8, warmup_steps=1, eval_every=4,
                                        eval_sequences=8, checkpoint_every=2, log_every=1,
                                        heldout=0.05, device="cpu")
    w = wb.widgets.PretrainRun(corpus, config=cfg, root=tmp_path / "runs",
                               cache_dir=tmp_path / "cache")
    w.max_steps.value = 8
    seen = []
    original = w.monitor.redraw

    def redraw():  # stop the run once its third step is drawn
        original()
        seen.append(w.monitor.state)
        if any(r.get("step", 0) >= 3 for r in w.monitor.rows):
            w.monitor.stop.request()

    w.monitor.redraw = redraw
    w.start()
    assert "preparing: tokenizer, corpus" in w.monitor.status.value
    w._thread.join(300)
    assert w.error is None and w.run.status == "stopped", w.message.value
    stopped_at = w.run.summary["steps"]
    assert 3 <= stopped_at < 8 and w.run.name in w.message.value and str(w.run.path) not in w.message.value
    w.monitor.redraw = original
    w.start(resume=True, block=True)
    assert w.error is None and w.run.status == "completed", w.message.value
    loss = next(t for t in w.monitor.figure.data if t.name == "loss")
    assert list(loss.x) == list(range(1, 9))  # history 1..stop, then the resumed steps, once each
    assert w.run.name in w.monitor.figure.layout.title.text


def test_runs_table_is_short_and_readable():
    """Issue 17.7: one short row per run: name, status, short id, 'minutes ago', the base model's
    name and key metrics; no nanosecond timestamps, no full paths, no wrapped ids."""
    import re

    from workbench.widgets.runs_table import ago, run_label, runs_table_html

    now = 1_800_000_000.0
    created = pd.to_datetime([now - 30, now - 12 * 60 - 5, now - 3 * 3600, now - 2 * 86400],
                             unit="s") - pd.Timedelta(nanoseconds=123456789)
    frame = pd.DataFrame({
        "id": [f"20261201-0{i}0000-finetune-{h}" for i, h in enumerate(["a1b2c3", "d4e5f6",
                                                                         "0a0b0c", "ffeedd"])],
        "name": ["sst2-lr1e-4", "sst2-lr1e-4", "tiny <b>run</b>", "old"],
        "status": ["running", "completed", "stopped", "failed"],
        "created": created,
        "base_model": ["/home/me/models/roberta-base/", "roberta-base", "demo", None],
        "path": [f"/home/me/runs/20261201-0{i}0000-finetune" for i in range(4)],
        "eval_accuracy": [0.8123456, 0.9, np.nan, np.nan], "loss": [0.5, 0.25, 1.0, np.nan]})
    html = runs_table_html(frame, now=now)
    cells = [re.sub("<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", html)]
    rows = [cells[i:i + 7] for i in range(0, len(cells), 7)]
    assert rows[0] == ["sst2-lr1e-4", "running", "a1b2c3", "just now", "roberta-base", "0.8123",
                       "0.5"]
    assert [r[3] for r in rows] == ["just now", "12 min ago", "3 h ago", "2 d ago"]
    assert [r[2] for r in rows] == ["a1b2c3", "d4e5f6", "0a0b0c", "ffeedd"]
    assert rows[3][4] == "" and rows[2][5] == ""          # nothing shown for a missing value
    assert "/home/me" not in html and "123456789" not in html and "20261201" not in html
    assert "&lt;b&gt;run&lt;/b&gt;" in html              # user text escaped
    assert html.count("white-space:nowrap") == len(cells) + 7  # no cell wraps (7 headers)
    assert re.findall(r"<th [^>]*>(.*?)</th>", html) == [
        "name", "status", "id", "created", "base model", "eval_accuracy", "loss"]
    assert ago(None) == "?" and ago(pd.NaT) == "?" and ago(now - 61, now=now) == "1 min ago"
    assert run_label("a", "x-123abc", ["a", "a"]) == "a (123abc)"
    assert run_label("a", "x-123abc", ["a", "b"]) == "a"
    assert runs_table_html(frame.iloc[:0]) == "<i>no runs yet</i>"
