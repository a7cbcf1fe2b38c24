"""Figure export with and without a browser: static files when one exists, HTML and a clear
record of what was skipped when none does, and a clear error for a direct static export.

"No browser" is simulated honestly: BROWSER_PATH points at a file that does not exist, which is
what kaleido itself would be told; the CI also reruns these tests with every browser binary
hidden (scripts/without_browser.sh).
"""

from __future__ import annotations

import json

import plotly.graph_objects as go
import pytest

import workbench as wb
from workbench import browser, figures
from workbench.errors import InputError, MissingDependencyError


@pytest.fixture()
def no_browser(monkeypatch, tmp_path):
    monkeypatch.setenv("BROWSER_PATH", str(tmp_path / "no-such-chrome"))
    monkeypatch.setattr(figures, "_skipped", [])
    assert browser.find_browser() is None


@pytest.fixture()
def a_browser():
    found = browser.find_browser()
    if found is None:
        pytest.skip(f"no Chrome/Chromium on this machine: {browser.ENABLE_HINT}")
    return found


def _fig():
    return go.Figure(go.Bar(x=["a", "b"], y=[1, 2]))


def test_static_export_without_a_browser_names_the_fix(no_browser, tmp_path):
    with pytest.raises(MissingDependencyError, match="apt install chromium.*html works"):
        wb.figures.export(_fig(), tmp_path / "x.pdf")
    assert not list(tmp_path.glob("x.*"))  # nothing half-written


def test_fallback_writes_html_and_records_the_skip(no_browser, tmp_path, monkeypatch):
    log = tmp_path / "skipped.jsonl"
    monkeypatch.setenv(figures.EXPORT_LOG_ENV, str(log))
    with pytest.warns(UserWarning, match="wrote x.html instead of x.svg"):
        written = wb.figures.export(_fig(), tmp_path / "x.svg", fallback="html")
    assert written == tmp_path / "x.html" and written.exists()
    assert (tmp_path / "plotly.min.js").exists()  # shared by every fallback page, offline
    assert "plotly.min.js" in written.read_text() and "cdn" not in written.read_text()
    skipped = figures.skipped_exports()
    assert skipped == figures.skipped_exports(log) == [
        {"requested": str(tmp_path / "x.svg"), "written": str(written)}]
    line = figures.skipped_summary(skipped)
    assert line.startswith("1 static figure export(s) skipped") and "apt install chromium" in line
    assert figures.skipped_summary([]) == ""


def test_html_export_never_needs_a_browser(no_browser, tmp_path):
    path = wb.figures.export(_fig(), tmp_path / "x.html")
    assert path.exists() and figures.skipped_exports() == []


@pytest.mark.parametrize("fmt", ["pdf", "svg", "png"])
def test_static_export_with_a_browser(a_browser, tmp_path, fmt):
    path = wb.figures.export(_fig(), tmp_path / f"x.{fmt}", fallback="html")
    head = path.read_bytes()[:64]
    assert path.suffix == f".{fmt}"
    assert {"pdf": b"%PDF", "svg": b"<svg", "png": b"\x89PNG"}[fmt] in head


@pytest.mark.parametrize("kwargs, match", [
    ({"fig": "not a figure"}, "fig: expected a plotly Figure"),
    ({"path": "x.doc"}, "use .pdf, .svg, .png or .html"),
    ({"path": ""}, "path=''"),
    ({"width": -3}, "width=-3"),
    ({"width": "colum"}, "width='colum'"),
    ({"aspect": 0}, "aspect=0"),
    ({"scale": float("nan")}, "scale=nan"),
    ({"fallback": "png"}, "fallback='png'"),
])
def test_bad_export_arguments_are_named(tmp_path, kwargs, match):
    args = {"fig": _fig(), "path": tmp_path / "x.html", **kwargs}
    with pytest.raises(InputError, match=match):
        wb.figures.export(args.pop("fig"), args.pop("path"), **args)
    assert not list(tmp_path.iterdir())


def test_provision_says_what_it_did(no_browser):
    path, line = browser.provision(allow_download=False, allow_apt=False)
    assert path is None and "none could be provisioned" in line and "HTML instead" in line


def test_provision_accepts_a_browser_that_starts(a_browser):
    path, line = browser.provision(allow_download=False, allow_apt=False)
    assert path == a_browser and browser.starts(path) and "using the browser" in line


def test_report_without_a_browser_writes_html_and_lists_the_skips(no_browser, tiny_lm, tmp_path,
                                                                 run_root, capsys):
    texts = ["The cat sat on the mat.", "A dog barked."]
    report = wb.make_report(tiny_lm, tmp_path, runs=[], texts=texts, formats=("pdf", "svg"),
                            progress=False, strict=True)
    assert (report["note"] == "").all()
    assert all(files == [str(tmp_path / f"{name}.html")]
               for name, files in zip(report["figure"], report["files"]))
    manifest = json.loads((tmp_path / "figures.json").read_text())
    assert all(m["skipped_static"] == [f"{m['figure']}.pdf", f"{m['figure']}.svg"]
               for m in manifest)
    assert "Not written (no browser for static export)" in (tmp_path / "SOURCES.md").read_text()
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[-1].startswith(f"{2 * len(report)} static figure export(s) skipped")
