"""wb.make_report: every figure written, provenance recorded, failures reported not swallowed."""

from __future__ import annotations

import hashlib
import json

import plotly.graph_objects as go
import pytest

from workbench.errors import MissingHeadError
from workbench.report import FigureSpec, _make_one, texts_digest


def test_texts_digest_is_sha256_of_the_lines():
    assert texts_digest(["a", "b"]) == hashlib.sha256(b"a\nb").hexdigest()


def _spec(name, make):
    return FigureSpec(name, f"caption of {name}", make, {"call": "test"})


def test_a_failing_figure_is_noted_or_raised(tmp_path):
    def broken():
        raise ValueError("bad frame")

    rows, manifest = [], []
    _make_one(_spec("ok", lambda: go.Figure(go.Bar(x=[1], y=[2]))), 1, 2, tmp_path, ("html",),
              "column", False, False, rows, manifest, stamp="now", version="x")
    _make_one(_spec("broken", broken), 2, 2, tmp_path, ("html",), "column", False, False, rows,
              manifest, stamp="now", version="x")
    assert [r["figure"] for r in rows] == ["ok", "broken"]
    assert rows[0]["files"] == [str(tmp_path / "ok.html")] and (tmp_path / "ok.html").exists()
    assert rows[1]["files"] == [] and "ValueError: bad frame" in rows[1]["note"]
    assert [m["figure"] for m in manifest] == ["ok"]  # no provenance for a figure not made
    with pytest.raises(ValueError, match="bad frame"):
        _make_one(_spec("broken", broken), 1, 1, tmp_path, ("html",), "column", True, False, [],
                  [], stamp="now", version="x")

    def headless():
        raise MissingHeadError("no MLM head")

    rows = []
    _make_one(_spec("needs_head", headless), 1, 1, tmp_path, ("html",), "column", True, False,
              rows, [], stamp="now", version="x")
    assert "no MLM head" in rows[0]["note"]  # strict still notes a missing head


def test_make_report_on_the_tiny_model(tiny_lm, tmp_path, run_root):
    import workbench as wb

    texts = ["The cat sat on the mat.", "A dog barked.", "Birds sing at dawn, loudly."]
    report = wb.make_report(tiny_lm, tmp_path, runs=[], texts=texts, formats=("html",),
                            progress=False, strict=True)
    assert (report["note"] == "").all()
    assert {"attention_example", "heads_attn_bos", "head_clusters", "cka_layers",
            "fill_mask_example", "logit_lens", "probe_set", "pair_margins"} <= set(report["figure"])
    for files in report["files"]:
        assert files and all((tmp_path / f).exists() for f in files)
    manifest = json.loads((tmp_path / "figures.json").read_text())
    heads = next(m for m in manifest if m["figure"] == "heads_attn_bos")
    assert heads["source"]["texts_sha256"] == texts_digest(texts)
    assert heads["source"]["n_texts"] == 3 and heads["source"]["model_path"] == tiny_lm.path
    assert "## heads_attn_bos" in (tmp_path / "SOURCES.md").read_text()


def test_paper_widths_and_a_misspelt_one():
    from workbench.errors import InputError
    from workbench.figures import WIDTHS_IN, size_px

    assert size_px("column")[0] < size_px("page")[0] and size_px(2.0, aspect=0.5)[1] == size_px(2.0)[1] * 2 // 3
    with pytest.raises(InputError, match="colum.*use one of"):  # not a bare KeyError
        size_px("colum")
    assert set(WIDTHS_IN) >= {"column", "page"}


def test_report_keys_run_files_by_id_and_skips_broken_runs(tiny_lm, tmp_path, run_root, capsys):
    """Two runs named alike keep their own files; a broken folder does not stop the report."""
    import workbench as wb
    from workbench.report import _open_runs, _run_specs

    first = wb.Run.create("pretrain", {}, name="same <img src=x onerror=alert(1)> name")
    second = wb.Run.create("pretrain", {}, name="same <img src=x onerror=alert(1)> name")
    (run_root / "not-a-run").mkdir()
    (run_root / "not-a-run" / "run.json").write_text("[1, 2]")
    runs = _open_runs(None)
    assert {r.id for r in runs} == {first.id, second.id}
    assert "skipped: broken" in capsys.readouterr().out
    names = [s.name for s in _run_specs(tiny_lm, runs, ["A text."], None)]
    assert [n for n in names if n.endswith("_curves")] == [
        f"run_{r.id.replace('-', '_')}_curves" for r in runs]
    assert len(set(names)) == len(names)
    from workbench.report import _sources_text
    text = _sources_text([{"figure": "f", "caption": "run same <b>name</b>", "files": ["f.svg"],
                           "source": {"run_name": "same <b>name</b> `x`"}}])
    assert "<b>" not in text and "&lt;b&gt;" in text and "`x`" not in text


def test_a_run_without_metrics_is_noted_not_drawn_empty(tmp_path, run_root):
    """A run with no metric rows used to come out as an empty figure; now its row says why."""
    import workbench as wb
    from workbench.report import FigureSpec, _curves, _make_one

    run = wb.Run.create("pretrain", {}, name="never trained")
    with pytest.raises(wb.InputError, match="no metrics yet"):
        _curves(run)
    rows: list = []
    _make_one(FigureSpec("curves", "c", lambda: _curves(run)), 1, 1, tmp_path, ("html",), "column",
              False, False, rows, [], stamp="now", version="x")
    assert rows[0]["files"] == [] and "no metrics yet" in rows[0]["note"]
