"""What a researcher sees: every registered widget rendered and driven in a real JupyterLab.

Starts JupyterLab on a free local port with a token, in a temp folder holding a notebook that
displays each widget of `workbench.widgets.__all__` on the tiny model (plus a plain ipywidgets +
plotly FigureWidget baseline that proves the front-end extensions load). Headless Chromium
(system /usr/bin/chromium through Playwright) opens it with every non-local request blocked,
runs all cells and checks per widget: no "Error displaying widget", its expected controls are
present, a figure is drawn, and interacting (a layer picker, a text box) changes what is drawn.
Screenshots go to tests/artifacts/. Without chromium the test skips, unless
WORKBENCH_REQUIRE_BROWSER=1 (CI) makes that a failure.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import pytest

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
FIGURE = ".js-plotly-plot .main-svg, svg"  # plotly figure, or any SVG the view draws
ERROR_TEXT = "Error displaying widget"


@dataclass
class WidgetCase:
    """How to build one widget in the notebook, what it must show, and how to poke it.

    Each interaction is a list of steps; after the steps the drawn SVG must differ. Steps:
    ("select", label) picks the next option of the dropdown described `label`;
    ("type", label, text) types into the text box described `label` and leaves it (Tab);
    ("click", text) clicks the button whose text is `text`;
    ("open", title) opens the collapsed section (accordion) whose title starts with `title`.
    """

    make: str                                   # expression evaluated in the notebook
    controls: list[str] = field(default_factory=list)  # CSS selectors that must be present
    interactions: list[list[tuple]] = field(default_factory=list)
    figure: bool = True                         # must draw a plotly figure / SVG
    setup: str = ""                             # statements run before `make`
    note: str = ""                              # why a widget has no interaction here


TEXTBOX = "textarea, input[type=text]"
# One row per widget the families register; a registered widget missing here fails the test.
CASES: dict[str, WidgetCase] = {
    "_Baseline": WidgetCase(
        setup=("import ipywidgets as W, plotly.graph_objects as go\n"
               "_fig = go.FigureWidget(go.Bar(x=[0, 1], y=[1, 2]))\n"
               "_layer = W.Dropdown(options=[0, 1], value=0, description='layer')\n"
               "_layer.observe(lambda ch: _fig.data[0].update(y=[1 + ch['new'] * 5, 2]), 'value')"),
        make="W.VBox([_layer, _fig])", controls=["select"],
        interactions=[[("select", "layer")]]),
    "AttentionExplorer": WidgetCase(
        make="wb.widgets.AttentionExplorer(lm, TEXTS)", controls=["select", TEXTBOX, "button"],
        interactions=[[("select", "layer")],
                      [("type", "texts", "Birds sing in the early morning light."),
                       ("click", "Run")]]),
    "MaskProbe": WidgetCase(
        make="wb.widgets.MaskProbe(lm)", controls=[TEXTBOX, "button"],
        interactions=[[("type", "text", "The river flows into the <mask> sea.")],
                      [("open", "why this answer?")]]),  # the attribution strip appears
    "HeadExplorer": WidgetCase(
        make="wb.widgets.HeadExplorer(lm, TEXTS)", controls=["select"],
        interactions=[[("select", "statistic")]]),
    "FineTuneRun": WidgetCase(
        make="wb.widgets.FineTuneRun(lm)", controls=[TEXTBOX, "button", "select"],
        interactions=[[("select", "compare")]]),
    "RunMonitor": WidgetCase(
        make="wb.widgets.RunMonitor(title='a run')", controls=["button", "[class*=progress]"],
        note="driven by training events, not by the user: nothing to poke besides Stop"),
    "PretrainRun": WidgetCase(
        setup=("from pydoc_data.topics import topics\n"
               "_corpus = wb.Corpus.from_texts(list(topics.values())[:60], name='pydoc')\n"
               "_cfg = wb.PretrainConfig.from_preset('tiny', seq_len=32, vocab_size=400, "
               "batch_size=4, max_steps=6, warmup_steps=1, eval_every=3, eval_sequences=8, "
               "checkpoint_every=6, log_every=1, heldout=0.05)"),
        make="wb.widgets.PretrainRun(_corpus, config=_cfg)", controls=["select", "button"],
        # the live curves: training runs in a thread and the figure must update in the page
        interactions=[[("click", "Start")]]),
    "ProbeLab": WidgetCase(
        make="wb.widgets.ProbeLab(lm, PROBE_DATA)", controls=["select", "button"],
        interactions=[[("click", "Run probes")]]),
    "AttributionView": WidgetCase(
        make="wb.widgets.AttributionView(lm, 'The capital of France is <mask>.')",
        controls=[TEXTBOX, "button"], interactions=[[("click", "Attribute")]]),
    "attribution_view": WidgetCase(
        make="wb.widgets.attribution_view(lm, 'A dog barked at the <mask>.')",
        controls=[TEXTBOX, "button"],
        interactions=[[("type", "text", "The <mask> barked at the mailman."),
                       ("click", "Attribute")]]),
}


def _chromium() -> str:
    """The browser static export would use; skips (or fails in CI's full run) without one."""
    from workbench.testing import browser_for_tests

    return browser_for_tests()[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _notebook(names: list[str], model_dir) -> dict:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells.append(nbformat.v4.new_code_cell(
        "import workbench as wb\n"
        f"lm = wb.load({str(model_dir)!r}, device='cpu')\n"
        "TEXTS = ['The cat sat on the mat.', 'A dog barked at the mailman.', "
        "'Paris is the capital of France.']\n"
        "import pandas as pd\n"
        "PROBE_DATA = pd.DataFrame({'text': [f'{w} movie number {i}.' for i in range(12) "
        "for w in ('good', 'bad')], 'label': [0, 1] * 12})\n"
        "print('loaded', lm)"))
    for name in names:
        case = CASES[name]
        src = (case.setup + "\n" if case.setup else "") + case.make
        nb.cells.append(nbformat.v4.new_code_cell(f"# widget: {name}\n{src}"))
    return nb


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A running JupyterLab (url, token, folder) with isolated settings; stopped afterwards."""
    _chromium()
    root = tmp_path_factory.mktemp("lab")
    settings = root / ".settings"
    tracker = settings / "@jupyterlab" / "notebook-extension"
    tracker.mkdir(parents=True)
    # every cell attached to the DOM, so off-screen widgets render and can be inspected
    (tracker / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    notices = settings / "@jupyterlab" / "apputils-extension"
    notices.mkdir(parents=True)  # no "get notified about Jupyter news?" toast over the widgets
    (notices / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
    port, token = _free_port(), "wbtest" + os.urandom(8).hex()
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               JUPYTERLAB_SETTINGS_DIR=str(settings),
               JUPYTERLAB_WORKSPACES_DIR=str(root / ".workspaces"),
               JUPYTER_RUNTIME_DIR=str(root / ".runtime"),
               JUPYTER_CONFIG_DIR=str(root / ".config"), WORKBENCH_RUNS=str(root / ".runs"))
    log = open(root / "lab.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1",
         f"--port={port}", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
         "--allow-root", "--LabApp.news_url=None",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    log_text = (root / "lab.log").read_text()[-3000:]
                    pytest.fail("JupyterLab did not start:\n" + log_text)
                time.sleep(0.5)
        yield url, token, root
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_labextensions_are_installed():
    """The ipywidgets, anywidget and plotly front-ends are prebuilt labextensions in this env."""
    out = subprocess.run([sys.executable, "-m", "jupyter", "labextension", "list"],
                         capture_output=True, text=True, timeout=60)
    text = out.stdout + out.stderr
    for ext in ("@jupyter-widgets/jupyterlab-manager", "anywidget", "jupyterlab-plotly"):
        line = next((ln for ln in text.splitlines() if ext in ln), "")
        assert "enabled" in line and "OK" in line, f"labextension {ext} not enabled/OK:\n{text}"


def _local_only(route):
    host = urlparse(route.request.url).hostname
    if host in ("127.0.0.1", "localhost") or route.request.url.startswith(("data:", "blob:")):
        route.continue_()
    else:
        route.abort()


def _run_all(page, n_code: int, timeout_s: float = 240) -> None:
    """Run > Run All Cells, then wait until every code cell has an execution number."""
    def click_run_all():
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()

    click_run_all()
    start = time.time()
    deadline = start + timeout_s
    clicked_again = False
    while time.time() < deadline:
        prompts = [p.strip() for p in
                   page.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()]
        done = [p for p in prompts if p[1:-2].strip().isdigit()]
        if len(done) >= n_code and not any("*" in p for p in prompts):
            return
        if not clicked_again and time.time() - start > 15 and all(p == "[ ]:" for p in prompts):
            click_run_all()  # the first click can land before the notebook panel is ready
            clicked_again = True
        page.wait_for_timeout(500)
    raise AssertionError(f"cells did not finish running in {timeout_s} s: prompts {prompts}")


def _figure_state(output) -> str:
    """A fingerprint of what the output area draws (SVG markup), to detect an update."""
    return output.evaluate(
        "el => Array.from(el.querySelectorAll('svg')).map(s => s.outerHTML).join('')")


def _labelled(output, kind: str, label: str):
    """The control of ipywidgets class `kind` whose description is `label`."""
    return output.locator(f".widget-{kind}").filter(
        has=output.page.locator("label", has_text=re.compile(f"^{re.escape(label)}$", re.I)))


def _step(output, step: tuple) -> None:
    verb = step[0]
    if verb == "select":
        sel = _labelled(output, "dropdown", step[1]).locator("select").first
        options = sel.locator("option").all_inner_texts()
        assert len(options) > 1, f"dropdown {step[1]!r} has one option: {options}"
        current = sel.evaluate("s => s.selectedIndex")
        sel.select_option(index=(current + 1) % len(options))
    elif verb == "type":
        box = output.locator(".widget-textarea, .widget-text").filter(
            has=output.page.locator("label", has_text=step[1])).locator(TEXTBOX).first
        box.fill(step[2])
        box.press("Tab")  # leave the box: widgets with continuous_update=False sync on blur
    elif verb == "click":  # button text, ignoring the icon's whitespace
        output.locator("button").filter(
            has_text=re.compile(rf"^\s*{re.escape(step[1])}\s*$")).first.click()
    elif verb == "open":
        output.get_by_text(re.compile(rf"^\s*{re.escape(step[1])}")).first.click()
    else:
        raise AssertionError(f"unknown step {step!r}")


def test_widgets_render_and_react_in_jupyterlab(lab, tiny_model_dir):
    from playwright.sync_api import sync_playwright

    import workbench.widgets as widgets

    registered = sorted(widgets.__all__)
    unknown = [n for n in registered if n not in CASES]
    assert not unknown, f"widgets registered without a browser case here: {unknown}"
    names = ["_Baseline"] + registered
    url, token, root = lab
    # WORKBENCH_BROWSER_MODEL=<folder or name> renders the same notebook on a trained model
    # (used to make the README screenshots); the test itself runs on the tiny random model
    model = os.environ.get("WORKBENCH_BROWSER_MODEL") or tiny_model_dir
    (root / "widgets.ipynb").write_text(json.dumps(_notebook(names, model)))
    ARTIFACTS.mkdir(exist_ok=True)

    problems, rendered = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
        try:
            ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
            ctx.route("**/*", _local_only)
            page = ctx.new_page()
            page.goto(f"{url}/lab/tree/widgets.ipynb?token={token}")
            page.locator(".jp-Notebook .jp-CodeCell").first.wait_for(timeout=90_000)
            # the status bar says "Python 3 (ipykernel) | Idle" once the kernel is connected
            page.get_by_text("| Idle").first.wait_for(timeout=90_000)
            t0 = time.time()
            _run_all(page, n_code=len(names) + 1)
            print(f"cells ran in {time.time() - t0:.1f} s")
            cells = page.locator(".jp-Notebook .jp-CodeCell")
            for i, name in enumerate(names, start=1):
                case = CASES[name]
                output = cells.nth(i).locator(".jp-OutputArea")
                output.scroll_into_view_if_needed()
                text = output.inner_text()
                if ERROR_TEXT in text or "Traceback" in text:
                    problems.append(f"{name}: {text[:800]}")
                    continue
                try:
                    output.locator(".jupyter-widgets").first.wait_for(timeout=30_000)
                    for sel in case.controls:
                        assert output.locator(sel).count() > 0, f"no control {sel!r}"
                    if case.figure:
                        output.locator(FIGURE).first.wait_for(timeout=30_000)
                    output.screenshot(path=str(ARTIFACTS / f"{name.strip('_').lower()}.png"))
                    for k, steps in enumerate(case.interactions):
                        before = _figure_state(output)
                        for step in steps:
                            _step(output, step)
                        deadline = time.time() + 60
                        while _figure_state(output) == before and time.time() < deadline:
                            page.wait_for_timeout(300)
                        assert _figure_state(output) != before, \
                            f"interaction {steps} did not change the view"
                        assert ERROR_TEXT not in output.inner_text()
                        output.screenshot(
                            path=str(ARTIFACTS / f"{name.strip('_').lower()}_after{k}.png"))
                    rendered.append(name)
                    print(f"{name} checked at {time.time() - t0:.1f} s")
                except Exception as err:  # noqa: BLE001 - collect every widget's problem
                    problems.append(f"{name}: {type(err).__name__}: {str(err)[:600]}")
            page.screenshot(path=str(ARTIFACTS / "jupyterlab_full.png"), full_page=True)
        finally:
            browser.close()
    assert not problems, "\n".join(problems)
    assert rendered == names, f"rendered {rendered}, expected {names}"
