"""Representation figures and widgets, tested on their data and traits (no browser)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import workbench as wb
from workbench import schema as S
from workbench.plots import representations as rp


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))


def _probe_frame():
    rows = [("m", layer, metric, v) for layer in range(3) for metric, v in
            (("accuracy", 0.5 + 0.1 * layer), ("majority", 0.3), ("control_accuracy", 0.4),
             ("selectivity", 0.1 + 0.1 * layer))]
    return pd.DataFrame(rows, columns=[S.MODEL, S.LAYER, S.METRIC, S.VALUE])


def test_probe_curve_draws_probe_and_baselines():
    fig = rp.probe_curve(_probe_frame())
    assert [t.name for t in fig.data] == ["probe", "control task", "majority"]
    np.testing.assert_allclose(fig.data[0].y, [0.5, 0.6, 0.7])
    assert fig.data[1].line.dash == "dash" and fig.layout.template.layout.font.family


def test_embedding_scatter_has_a_layer_slider_and_escaped_hover():
    df = pd.DataFrame({S.LAYER: [0, 0, 0, 1, 1, 1], S.X: np.arange(6.0), S.Y: np.arange(6.0),
                       S.TEXT_ID: 0, S.TOKEN: ["<b>", "x", "y"] * 2, S.TEXT: "<b>x</b> y",
                       S.LABEL: ["A", "B", "A"] * 2})
    fig = rp.embedding_scatter(df)
    assert len(fig.layout.sliders[0].steps) == 2
    visible = [t.visible for t in fig.data]
    assert visible == [True, True, False, False]
    assert fig.layout.sliders[0].steps[1].args[0]["visible"] == [False, False, True, True]
    hover = " ".join(fig.data[0].text)
    assert "&lt;b&gt;" in hover and "<b>&lt;b&gt;</b>" in hover and "<b>x</b>" not in hover


def test_cka_heatmap_and_attribution_strip_escape_and_scale():
    cka = pd.DataFrame({S.MODEL_A: "a", S.MODEL_B: "b", S.LAYER_A: [0, 0, 1, 1],
                        S.LAYER_B: [0, 1, 0, 1], S.VALUE: [1.0, 0.5, 0.5, 1.0]})
    fig = rp.cka_heatmap(cka)
    np.testing.assert_allclose(np.asarray(fig.data[0].z), [[1.0, 0.5], [0.5, 1.0]])
    att = pd.DataFrame({S.TEXT_ID: 0, S.METHOD: ["ig"] * 3 + ["rollout"] * 3,
                        S.POSITION: [0, 1, 2] * 2, S.TOKEN: ["<s>", "a&b", "</s>"] * 2,
                        S.SCORE: [0.0, -2.0, 1.0, 0.2, 0.5, 0.3], S.TARGET: "<x>",
                        S.DELTA: [1e-4] * 3 + [np.nan] * 3})
    fig = rp.attribution_strip(att)
    z = np.asarray(fig.data[0].z, dtype=float)
    np.testing.assert_allclose(z, [[0.0, -1.0, 0.5], [0.4, 1.0, 0.6]])
    assert list(fig.layout.xaxis.ticktext) == ["&lt;s&gt;", "a&amp;b", "&lt;/s&gt;"]
    assert "&lt;x&gt;" in fig.layout.title.text and "delta" in fig.layout.title.text


def test_probe_lab_reruns_when_controls_change(tiny_lm):
    pairs = [(t, i % 2) for i, t in enumerate(["good film", "bad film", "great plot", "awful plot",
                                               "fine acting", "poor acting", "nice", "dull"] * 2)]
    lab = wb.widgets.ProbeLab(tiny_lm, pairs, layers=[0, -1])
    assert lab.result is None and len(lab.figure.data) == 0
    lab.run_button.click()
    assert {t.name for t in lab.figure.data} == {"probe", "control task", "majority"}
    assert "best layer" in lab.status.value
    lab.control.value = False
    lab.pool.value = "cls"
    lab.run()
    assert {t.name for t in lab.figure.data} == {"probe", "majority"}
    assert (lab.result[S.POOL] == "cls").all()


def test_attribution_view_follows_its_controls(tiny_lm):
    view = wb.widgets.attribution_view(tiny_lm, "The <b>cat</b> sat on the <mask>.", n_steps=8)
    assert len(view.figure.data[0].y) == 3 and "delta" in view.status.value
    view.methods.value = ("rollout",)
    view.level.value = "token"
    view.run()
    assert list(view.figure.data[0].y) == ["attention rollout"]
    assert set(view.result[S.METHOD]) == {"rollout"}
    view.text.value = "no mask here"
    view.run()
    assert "error" in view.status.value and "&lt;mask&gt;" in view.status.value


def test_attribution_view_stays_a_function_after_its_module_is_imported():
    """A submodule named like the function would replace it on the package once imported."""
    import importlib

    import workbench as wb

    importlib.import_module("workbench.widgets.attribution_panel")
    assert callable(wb.widgets.attribution_view)
    assert not isinstance(wb.widgets.attribution_view, type(importlib))


def test_widget_callbacks_show_busy_state_and_errors_in_the_widget(tiny_lm, monkeypatch):
    """Issue 17.9: while a slow computation runs the status shows a spinner and what it does and
    the figure says "computing…"; an error ends in the status line (ours: the message; anything
    else: its type and a 'details' traceback), never as a traceback in the cell."""
    import workbench.widgets.probe_lab as probe_lab
    from workbench.errors import InputError

    data = pd.DataFrame({"text": [f"{w} movie number {i}." for i in range(12)
                                  for w in ("good", "bad")], "label": [0, 1] * 12})
    lab = wb.widgets.ProbeLab(tiny_lm, data)
    seen = {}

    def slow_probe(*args, **kwargs):
        seen["status"] = lab.status.value
        seen["notes"] = [a.text for a in lab.figure.layout.annotations]
        raise RuntimeError("boom")

    monkeypatch.setattr(probe_lab, "linear_probe", slow_probe)
    lab.run_button.click()  # no exception reaches the cell
    assert "wb-busy" in seen["status"] and "fitting one probe per layer" in seen["status"]
    assert seen["notes"] == ["computing…"]
    assert isinstance(lab.last_error, RuntimeError)
    assert "RuntimeError: boom" in lab.status.value and "<details>" in lab.status.value
    assert [a.text for a in lab.figure.layout.annotations] == []  # no stale "computing…"

    def bad_probe(*args, **kwargs):
        raise InputError("layers=[7]: the model has 2 layers")

    monkeypatch.setattr(probe_lab, "linear_probe", bad_probe)
    lab.run()
    assert "layers=[7]" in lab.status.value and "<details>" not in lab.status.value
