"""The guided notebooks run top to bottom, and using them in JupyterLab rewrites none of them.

Every `notebooks/NN_*.py` (jupytext percent source) is executed headless against the tiny random
model with `MODEL=<tiny folder>, QUICK=True` injected after its parameters cell; any error fails
the test with the notebook and cell named. The `slow` variant runs them on the default model.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from workbench.errors import InputError
from workbench.notebook_runner import (INJECTED_TAG, NotebookExecutionError, execute_notebook,
                                       guided_sources, inject_parameters, read_notebook,
                                       sync_notebooks)

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = guided_sources(NOTEBOOK_DIR)
IDS = [p.stem for p in NOTEBOOKS]


def _run(path: Path, tmp_path: Path, model: str, quick: bool):
    return execute_notebook(
        path, tmp_path / f"{path.stem}.ipynb", parameters={"MODEL": model, "QUICK": quick},
        cwd=tmp_path / "work", timeout=600, env={"WORKBENCH_RUNS": str(tmp_path / "runs")})


def test_there_are_notebooks():
    assert NOTEBOOKS, f"no notebooks/NN_*.py found in {NOTEBOOK_DIR}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_runs_on_tiny_model(path, tiny_model_dir, tmp_path):
    nb = _run(path, tmp_path, str(tiny_model_dir), quick=True)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.get("execution_count") for c in code), "some cells did not run"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_runs_on_default_model(path, tmp_path):
    _run(path, tmp_path, "demo", quick=False)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_source_has_one_parameters_cell(path):
    params = [c for c in read_notebook(path).cells
              if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, f"{path.name} needs exactly one cell tagged 'parameters'"
    assert re.search(r"^MODEL\s*=", params[0].source, re.M), "parameters cell must set MODEL"
    assert re.search(r"^QUICK\s*=", params[0].source, re.M), "parameters cell must set QUICK"


def _jupyterlab_touches(nb) -> None:
    """What opening, running and saving in JupyterLab adds to a notebook model."""
    import nbformat

    nb["metadata"]["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                    "language": "python"}
    nb["metadata"]["language_info"] = {"name": "python", "version": "3.11.9"}
    nb["metadata"]["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    for i, cell in enumerate(nb["cells"]):
        cell["metadata"]["jupyter"] = {"source_hidden": False}
        if cell["cell_type"] == "code":
            cell["metadata"]["execution"] = {"iopub.status.busy": "2026-12-06T21:00:00.0Z"}
            cell["metadata"]["scrolled"] = True
            cell["execution_count"] = i + 1
            cell["outputs"] = [nbformat.v4.new_output("stream", text=f"out {i}\n")]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_saving_in_jupyterlab_leaves_the_source_byte_identical(path, tmp_path):
    """Issue 28.4 without a browser: the .ipynb `make lab` writes, opened, run and saved through
    jupytext's contents manager (what JupyterLab calls), writes the .py back byte for byte and
    keeps the outputs in the .ipynb alone."""
    import shutil

    from jupytext import TextFileContentsManager

    shutil.copy(NOTEBOOK_DIR / "jupytext.toml", tmp_path / "jupytext.toml")
    shutil.copy(path, tmp_path / path.name)
    assert sync_notebooks(tmp_path) == [tmp_path / f"{path.stem}.ipynb"]
    cm = TextFileContentsManager(root_dir=str(tmp_path))
    model = cm.get(f"{path.stem}.ipynb")
    _jupyterlab_touches(model["content"])
    cm.save(model, f"{path.stem}.ipynb")
    assert (tmp_path / path.name).read_bytes() == path.read_bytes(), (
        f"saving {path.stem}.ipynb rewrote {path.name}: keep it as `jupytext --to py:percent` "
        "writes it with notebooks/jupytext.toml (no header, only cell tags)")
    reopened = cm.get(f"{path.stem}.ipynb")["content"]
    assert any(c.get("outputs") for c in reopened.cells), "the outputs were not kept in the .ipynb"
    assert sync_notebooks(tmp_path) == [], "an existing .ipynb (the user's outputs) was rewritten"


def test_notebooks_are_tracked_as_py_only():
    """A tracked .ipynb would be dirtied by every Run All (its outputs); the .py is the source."""
    import subprocess

    out = subprocess.run(["git", "ls-files", "--", "*.ipynb"], cwd=NOTEBOOK_DIR,
                         capture_output=True, text=True)
    if out.returncode:
        pytest.skip(f"not a git checkout: {out.stderr.strip()[:200]}")
    tracked = out.stdout.split()
    assert not tracked, (f"notebooks tracked as .ipynb: {tracked}; track the jupytext .py only "
                         "(`git rm --cached` them; `make lab` writes the .ipynb)")
    ignored = subprocess.run(["git", "check-ignore", "-q", "--no-index", "x.ipynb"],
                             cwd=NOTEBOOK_DIR)
    assert ignored.returncode == 0, "notebooks/*.ipynb must be ignored by git (.gitignore)"


# --- the runner itself, on hand-made notebooks (no model needed) -------------------------------

_TOY = '''# %% [markdown]
# A toy notebook.

# %% tags=["parameters"]
N = 2
WORD = "a"

# %%
result = WORD * N
assert result == EXPECTED
print('result:', result)
'''


def test_injected_parameters_override_the_defaults(tmp_path):
    src = tmp_path / "toy.py"
    src.write_text(_TOY.replace("EXPECTED", "'bbb'"))
    nb = execute_notebook(src, tmp_path / "out.ipynb", parameters={"N": 3, "WORD": "b"},
                          html=tmp_path / "out.html", timeout=60)
    tags = [c.metadata.get("tags", []) for c in nb.cells]
    assert tags.index(["parameters"]) + 1 == tags.index([INJECTED_TAG])
    assert (tmp_path / "out.ipynb").exists()
    assert "result: bbb" in (tmp_path / "out.html").read_text()


def test_a_failing_cell_is_named(tmp_path):
    src = tmp_path / "toy.py"
    src.write_text(_TOY.replace("EXPECTED", "'zz'"))
    with pytest.raises(NotebookExecutionError) as info:
        execute_notebook(src, tmp_path / "out.ipynb", timeout=60)
    err = info.value
    assert err.notebook == "toy.py" and err.ename == "AssertionError"
    assert err.cell_index == 2 and "toy.py failed in cell 2" in str(err)
    assert (tmp_path / "out.ipynb").exists(), "the failed run must be kept for debugging"


def test_parameters_need_a_tagged_cell_and_literals(tmp_path):
    nb = read_notebook(_write(tmp_path, _TOY.replace(' tags=["parameters"]', "")))
    with pytest.raises(InputError, match="tagged 'parameters'"):
        inject_parameters(nb, {"N": 1})
    nb = read_notebook(_write(tmp_path, _TOY))
    with pytest.raises(InputError, match="not a literal"):
        inject_parameters(nb, {"N": object()})


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "toy.py"
    path.write_text(text)
    return path


# --- make demo, on hand-made notebooks ---------------------------------------------------------

_DEMO_TOY = '''# %% [markdown]
# # Toy NAME

# %% tags=["parameters"]
MODEL = "demo"
QUICK = False

# %%
import plotly.graph_objects as go
import workbench as wb
print("model is", MODEL, "quick", QUICK)
wb.figures.export(go.Figure(go.Bar(x=[1], y=[2])), "figures/NAME_bar.html")
assert not NAME_FAILS
'''


def test_run_demo_writes_report_and_falls_back_loudly(tmp_path, monkeypatch, capsys):
    from workbench.demo import run_demo
    from workbench.errors import WorkbenchError

    monkeypatch.setenv("WORKBENCH_DEMO_MODEL", str(tmp_path / "no-such-model"))
    sources = []
    for name, fails in (("01_ok", False), ("02_bad", True)):
        path = tmp_path / f"{name}.py"
        path.write_text(_DEMO_TOY.replace("NAME_FAILS", str(fails)).replace("NAME", name))
        sources.append(path)
    out = tmp_path / "out"
    with pytest.raises(WorkbenchError, match="1 notebook\\(s\\) failed: 02_bad"):
        run_demo(out, quick=True, notebooks=sources)
    printed = capsys.readouterr().out
    assert "tiny RANDOM model" in printed and "[1/2] 01_ok: ok" in printed
    assert "[2/2] 02_bad: FAILED" in printed
    index = (out / "index.html").read_text()
    assert "tiny RANDOM model" in index and "http" not in index  # no external URL
    assert "figures/01_ok/figures/01_ok_bar.html" in index and "AssertionError" in index
    for stem in ("01_ok", "02_bad"):
        assert (out / "notebooks" / f"{stem}.ipynb").exists()
        assert (out / "notebooks" / f"{stem}.html").exists()
    executed = (out / "notebooks" / "01_ok.html").read_text()
    assert f"model is {(out / 'tiny-random-model').resolve()} quick True" in executed


_PLOT_TOY = '''# %% [markdown]
# # A figure, and a formula $x^2$

# %%
import plotly.graph_objects as go
go.Figure(go.Bar(x=["first", "second"], y=[1, 2])).show()
'''


@pytest.mark.browser
def test_html_export_draws_its_figures_offline(tmp_path):
    """make demo's notebook pages must open with no network: plotly.js inline, no CDN script."""
    from test_attention_views import _browser

    sync_playwright, exe = _browser()
    source = tmp_path / "plot.py"
    source.write_text(_PLOT_TOY)
    page_path = tmp_path / "plot.html"
    execute_notebook(source, tmp_path / "plot.ipynb", html=page_path, cwd=tmp_path, timeout=120)
    assert not re.search(r'<script[^>]*src="(https?:)?//', page_path.read_text())
    tried, errors = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        try:
            page = browser.new_context(offline=True).new_page()
            page.route("**/*", lambda route: route.continue_()
                       if route.request.url.startswith("file:")
                       else (tried.append(route.request.url), route.abort()))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(page_path.as_uri())
            page.wait_for_selector(".js-plotly-plot .main-svg", timeout=20_000)
            ticks = [t.text_content() for t in page.locator(".xtick text").all()]
        finally:
            browser.close()
    assert not tried, f"the page tried the network: {tried}"
    assert not errors, errors
    assert ticks == ["first", "second"]  # drawn by the inline plotly.js
