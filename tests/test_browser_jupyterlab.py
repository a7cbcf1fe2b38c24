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

from workbench.browser import HEADLESS_ARGS

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
FIGURE = ".js-plotly-plot .main-svg, svg"  # plotly figure, or any SVG the view draws
ERROR_TEXT = "Error displaying widget"
NOTES = ("gd => (gd._fullLayout.annotations || []).filter(a => a.visible !== false)"
         ".map(a => a.text)")  # the notes (and subplot titles) a plotly chart shows


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
    settled: str = ""                           # text shown once the last interaction is over


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
        interactions=[[("click", "Start")]], settled="completed"),
    "QKAtlas": WidgetCase(  # a head and a query selected, as two clicks would: the detail
        # view with the query's attention row and the sentence's head view are drawn too
        setup="qk = wb.widgets.QKAtlas(lm, TEXTS)\nqk.select_head(1, 0)\nqk.select_query(0, 2)",
        make="qk", controls=["select"],
        interactions=[[("select", "colour")]]),  # the all-heads grid is recoloured
    "ProbeLab": WidgetCase(
        make="wb.widgets.ProbeLab(lm, PROBE_DATA)", controls=["select", "button"],
        interactions=[[("click", "Run probes")]]),
    "PatchProbe": WidgetCase(  # a minimal pair of equal token length for the tiny tokenizer
        make=("wb.widgets.PatchProbe(lm, 'The man near the door <mask> here.', "
              "'The men near the door <mask> here.', ('is', 'are'))"),
        controls=["select", TEXTBOX, "button"],
        interactions=[[("select", "site")]]),  # the head grid replaces the position heatmap
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


def _stop_lab(proc, log) -> None:
    """Stop a JupyterLab server a test started (terminate, kill after 15 s) and close its log."""
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def _wait_for_lab(url: str, token: str, proc, log: Path) -> None:
    """Until the JupyterLab server at `url` answers; fail with its log's end if it never does."""
    deadline = time.time() + 90
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
            return
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                pytest.fail("JupyterLab did not start:\n" + log.read_text()[-3000:])
            time.sleep(0.5)


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
        _wait_for_lab(url, token, proc, root / "lab.log")
        yield url, token, root
    finally:
        _stop_lab(proc, log)


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


@pytest.mark.slow  # ~50 s: .ci/run runs it after the default suite (10-minute budget)
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
        browser = p.chromium.launch(executable_path=_chromium(), args=HEADLESS_ARGS)
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
                        if case.settled and k == len(case.interactions) - 1:
                            output.get_by_text(case.settled).first.wait_for(timeout=120_000)
                            page.wait_for_timeout(1000)  # the last redraw
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


# ------------------------------------------------------------------ issue 17: what is on screen
# One notebook with the widgets the issue found wrong on screen; the test drives each in the page
# and reads the answer back from what is drawn (plotly's own data and the SVG's boxes).

SCREENS = {  # cell name -> source; evaluated in order after the setup cell
    "finetune": ("FT = wb.widgets.FineTuneRun(MODEL_DIR, FT_DATA, config=wb.FineTuneConfig("
                 "max_steps=4, batch_size=8, learning_rate=3e-3, eval_every=2, log_every=1, "
                 "device='cpu'))\nFT"),
    "maskprobe": "wb.widgets.MaskProbe(lm, candidates='cat, dog')",
    "qk": "wb.widgets.AttentionExplorer(lm, QK_TEXT, view='qk')",
    "heads": "wb.widgets.HeadExplorer(lm, TEXTS, examples=1)",
    "ticks10": "wb.widgets.AttentionExplorer(lm, LONG_WORDS)",
    "ticks128": "wb.widgets.AttentionExplorer(lm, TEXT_128)",
}
QK_TEXT = "The pizzeria reopened unexpectedly."
LONG_WORDS = ("Extraordinarily circumnavigation antidisestablishmentarianism "
              "incomprehensibilities overcapitalisation.")


def _text_of_tokens(lm, n: int) -> str:
    """A text that the tiny model's tokenizer turns into exactly `n` tokens (specials included)."""
    words = [w for para in __import__("workbench.testing", fromlist=["x"]).offline_text(20_000)
             for w in para.split()]
    text = ""
    for w in words:
        longer = f"{text} {w}".strip()
        if len(lm.tokens(longer).tokens) > n:
            break
        text = longer
    assert len(lm.tokens(text).tokens) >= n - 3, "could not build a long enough text"
    return text


def _screens_notebook(model_dir, text_128: str) -> dict:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells.append(nbformat.v4.new_code_cell(
        "import workbench as wb, pandas as pd\n"
        f"MODEL_DIR = {str(model_dir)!r}\n"
        "lm = wb.load(MODEL_DIR, device='cpu')\n"
        "TEXTS = ['The cat sat on the mat.', 'A dog barked at the mailman.', "
        "'Paris is the capital of France.']\n"
        "FT_DATA = pd.DataFrame({'text': [f'the film was {w}' for w in "
        "('excellent', 'dreadful') * 32], 'label': ['pos', 'neg'] * 32})\n"
        f"QK_TEXT, LONG_WORDS, TEXT_128 = {QK_TEXT!r}, {LONG_WORDS!r}, {text_128!r}"))
    for name, src in SCREENS.items():
        nb.cells.append(nbformat.v4.new_code_cell(f"# screen: {name}\n{src}"))
    return nb


def _plotly(output, index: int = 0, expr: str = "gd => gd._fullData.map(t => ({name: t.name, "
            "type: t.type, x: Array.from(t.x || []), y: Array.from(t.y || [])}))"):
    """Evaluate `expr` on the index-th plotly graph div of `output` (its live data/layout)."""
    return output.locator(".js-plotly-plot").nth(index).evaluate(expr)


def _wait_for(page, check, what: str, timeout_s: float = 60):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        value = check()
        if value:
            return value
        page.wait_for_timeout(250)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def _open(page, url: str, token: str, name: str, n_code: int) -> None:
    """Open notebook `name` alone (a workspace of its own: the module's other notebook stays
    closed, so page-wide cell locators see this one only) and run all its cells."""
    page.goto(f"{url}/lab/workspaces/{Path(name).stem}/tree/{name}?reset&token={token}")
    page.locator(".jp-Notebook .jp-CodeCell").first.wait_for(timeout=90_000)
    page.get_by_text("| Idle").first.wait_for(timeout=90_000)
    _run_all(page, n_code=n_code)


def _finished_message(output) -> str | None:
    """FineTuneRun's message line once a run ended ("run NAME: completed")."""
    return next((t.strip() for t in output.locator(".widget-html").all_inner_texts()
                 if re.fullmatch(r"run .+: completed", t.strip())), None)


def _check_finetune(page, output) -> None:
    """17.1: a second run shows only its own points and names; the comparison draws both runs."""
    def run_once(previous: str | None) -> str:
        _step(output, ("click", "Start"))
        return _wait_for(page, lambda: (_finished_message(output) or previous) != previous
                         and _finished_message(output), "the run to complete", 120)

    def loss_steps() -> list:
        return next((t["x"] for t in _plotly(output) if t["name"] == "loss"), [])

    first = run_once(None)
    _wait_for(page, lambda: loss_steps() == [1, 2, 3, 4], f"the first run's curve {loss_steps()}")
    steps = output.locator(".widget-text").filter(
        has=page.locator("label", has_text="max steps")).locator("input").first
    steps.fill("2")
    steps.press("Tab")
    second = run_once(first)
    name = second[len("run "):-len(": completed")]
    _wait_for(page, lambda: loss_steps() == [1, 2],
              f"the second run's curve alone, not {loss_steps()}", 20)
    title = _plotly(output, 0, "gd => gd._fullLayout.title.text")
    # "run NAME (short id): completed"; both runs have the default name, the short ids differ
    assert name in title and first[len("run "):-len(": completed")] not in title, (title, first)
    status = output.locator(".widget-html").filter(has_text="step 2/2").first.inner_text()
    assert "completed" in status, status
    runs = output.locator("select[multiple]").first
    runs.select_option(runs.locator("option").evaluate_all("os => os.map(o => o.value)"))
    _wait_for(page, lambda: len(_plotly(output, 1)) == 2, "two runs in the comparison")
    points = sorted(len(t["x"]) for t in _plotly(output, 1))
    assert points == [1, 2], f"eval_accuracy points per run in the comparison: {points}"


def _check_maskprobe(page, output) -> None:
    """17.2: after an input error no chart keeps the previous sentence: the top-k chart says why it
    is empty, the candidate chart is gone, the opened "why this answer?" strip is cleared."""
    _step(output, ("open", "why this answer?"))
    _wait_for(page, lambda: output.locator(".js-plotly-plot").count() == 3
              and all(_plotly(output, i) for i in range(3)),
              "top-k, candidate and attribution charts")
    _step(output, ("type", "text", "A sentence without any mask."))
    _wait_for(page, lambda: output.locator(".js-plotly-plot").count() == 2,
              "the candidate chart to go after the error")
    plots = output.locator(".js-plotly-plot")
    assert plots.count() == 2, "the candidate chart is still shown"  # top-k + attribution
    for i in range(2):
        assert _plotly(output, i) == [] or all(not t["x"] for t in _plotly(output, i)), \
            f"chart {i} still draws the previous sentence"
        notes = _plotly(output, i, NOTES)
        assert any("fix the input above" in n for n in notes), notes
    assert "error" in output.inner_text().lower()
    # a valid sentence again: the charts come back and no stale note stays on them
    _step(output, ("type", "text", "The dog chased the <mask>."))
    _wait_for(page, lambda: _plotly(output, 0) and not any(
        "fix the input" in n for n in _plotly(output, 0, NOTES)), "the top-k chart without its "
        f"old note (notes: {_plotly(output, 0, NOTES)})", 30)


def _check_qk(page, output, view) -> None:
    """17.3: with merge subwords and drop specials on, clicking a token in the query/key view
    selects that token there and its word in the heatmap and the selection line."""
    for label in ("drop specials", "merge subwords"):
        output.locator(".widget-checkbox", has_text=label).locator("input").check()
    tokens = output.locator(".wb-attn-queries .wb-attn-token")
    _wait_for(page, lambda: tokens.count() == len(view), "the query/key token list")
    for p in range(len(view)):
        if view.special[p]:
            continue
        tokens.nth(p).click()
        word = view.words[view.word_ids[p]]
        _wait_for(page, lambda: _plotly(output, 0, "gd => gd._fullLayout.yaxis.ticktext")
                  == [word], f"the heatmap to show query {word!r} (clicked token {p})", 20)
        picked = [i for i in range(len(view)) if tokens.nth(i).evaluate(
            "e => getComputedStyle(e).backgroundColor") == "rgb(255, 233, 168)"]
        assert picked == [p], f"clicked token {p}, the view highlights {picked}"
        assert f"selected: {word}" in output.inner_text()


def _click_head(page, output, layer: int, head: int) -> None:
    """Click cell (layer, head) of HeadExplorer's heatmap (its first plotly graph).

    The graph is scrolled into view first and its position read just before the click: opening
    the embedded attention views below it reflows the page, and a click at coordinates read
    before that lands elsewhere. One more click if the first was lost in a reflow."""
    graph = output.locator(".js-plotly-plot").first
    shown = lambda: f"layer {layer}, head {head}" in output.inner_text()  # noqa: E731
    for attempt, wait_s in enumerate((10, 30)):
        graph.scroll_into_view_if_needed()
        x, y = _plotly(output, 0, f"""gd => {{
            const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
            const box = gd.getBoundingClientRect();
            return [box.left + xa._offset + xa.l2p({head}), box.top + ya._offset + ya.l2p({layer})];
        }}""")
        page.mouse.move(x, y)
        page.mouse.click(x, y)
        try:
            _wait_for(page, shown, f"HeadExplorer to show layer {layer}, head {head}", wait_s)
            return
        except AssertionError:
            if attempt:
                raise


def _check_heads(page, output) -> None:
    """17.4: the opened attention views follow a newly clicked head."""
    _click_head(page, output, 0, 1)
    _step(output, ("click", "open in the attention views"))
    explorer = output.locator(".widget-vbox").filter(has=page.locator(".widget-toggle-buttons"))
    _wait_for(page, lambda: explorer.count() > 0, "the embedded attention views")
    for layer, head in ((1, 3), (0, 2)):
        _click_head(page, output, layer, head)
        def shown() -> tuple:
            picked = tuple(_labelled(output, "dropdown", lab).last.locator("select").evaluate(
                "s => s.options[s.selectedIndex].text") for lab in ("layer", "head"))
            title = _plotly(output, output.locator(".js-plotly-plot").count() - 1,
                            "gd => gd._fullLayout.title.text")
            return picked, title

        want = ((str(layer), str(head)), f"layer {layer}, head {head}")
        try:
            _wait_for(page, lambda: shown() == want, "the attention views to follow", 20)
        except AssertionError:
            raise AssertionError(f"clicked {want}, the attention views show {shown()}") from None


def _boxes(output, selector: str) -> list[dict]:
    return output.locator(selector).evaluate_all(
        "es => es.map(e => { const r = e.getBoundingClientRect(); "
        "return {x0: r.left, x1: r.right, y0: r.top, y1: r.bottom, text: e.textContent}; })")


def _overlap(a: dict, b: dict) -> bool:
    return a["x0"] < b["x1"] - 1 and b["x0"] < a["x1"] - 1 and a["y0"] < b["y1"] - 1 \
        and b["y0"] < a["y1"] - 1


def _check_ticks(page, output, n_labels: int) -> None:
    """17.5: every tick label of the heatmap lies inside the figure and clear of the axis titles
    and the colour bar; the title is clear of the plotly toolbar."""
    plot = output.locator(".js-plotly-plot").first
    (frame,) = _boxes(plot, ".main-svg >> nth=0")
    ticks = _boxes(plot, ".xtick text") + _boxes(plot, ".ytick text")
    assert len(ticks) >= n_labels, f"{len(ticks)} tick labels drawn, expected {n_labels}"
    titles = _boxes(plot, ".g-xtitle text") + _boxes(plot, ".g-ytitle text")
    assert len(titles) == 2
    for t in ticks:
        assert frame["x0"] - 1 <= t["x0"] and t["x1"] <= frame["x1"] + 1 \
            and frame["y0"] - 1 <= t["y0"] and t["y1"] <= frame["y1"] + 1, f"clipped: {t}"
        hits = [a["text"] for a in titles if _overlap(t, a)]
        assert not hits, f"tick {t['text']!r} overlaps the axis title {hits}"
    assert not _plotly(output, 0, NOTES), "a note (e.g. 'computing…') is left on the heatmap"
    (title,) = _boxes(plot, ".gtitle")
    modebar = _boxes(plot, ".modebar")
    assert not any(_overlap(title, m) for m in modebar if m["x1"] > m["x0"]), "title under toolbar"
    assert all(len(t["text"]) <= 12 for t in ticks), [t["text"] for t in ticks if len(t["text"]) > 12]


@pytest.mark.slow  # ~55 s: .ci/run runs it after the default suite (10-minute budget)
def test_wrong_on_screen_cases_are_right_in_jupyterlab(lab, tiny_model_dir, tiny_lm):
    """Issue 17 items 1-5, each driven in the real page: the current run's points only, charts
    cleared on an input error, the clicked token selected, the clicked head shown, heatmap
    labels inside the figure at about 10 and 128 tokens."""
    from playwright.sync_api import sync_playwright

    url, token, root = lab
    text_128 = _text_of_tokens(tiny_lm, 128)
    (root / "screens.ipynb").write_text(json.dumps(_screens_notebook(tiny_model_dir, text_128)))
    qk_view = tiny_lm.tokens(QK_TEXT)
    n_words = len(tiny_lm.tokens(LONG_WORDS).words) + 2  # with <s> and </s>
    ARTIFACTS.mkdir(exist_ok=True)
    checks = {
        "finetune": _check_finetune,
        "maskprobe": _check_maskprobe,
        "qk": lambda page, out: _check_qk(page, out, qk_view),
        "heads": _check_heads,
        "ticks10": lambda page, out: (
            out.locator(".widget-checkbox", has_text="merge subwords").locator("input").check(),
            _wait_for(page, lambda: len(_plotly(out, 0, "gd => gd._fullLayout.yaxis.ticktext"))
                      == n_words, "merged words"),
            _check_ticks(page, out, 2 * n_words)),
        "ticks128": lambda page, out: _check_ticks(page, out, 128),
    }
    problems = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=HEADLESS_ARGS)
        try:
            ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
            ctx.route("**/*", _local_only)
            page = ctx.new_page()
            console = []
            page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: console.append(str(e)))
            t0 = time.time()
            _open(page, url, token, "screens.ipynb", n_code=len(SCREENS) + 1)
            print(f"cells ran in {time.time() - t0:.1f} s")
            cells = page.locator(".jp-Notebook .jp-CodeCell")
            for i, (name, check) in enumerate(checks.items(), start=1):
                output = cells.nth(i).locator(".jp-OutputArea")
                output.scroll_into_view_if_needed()
                try:
                    output.locator(".jupyter-widgets").first.wait_for(timeout=30_000)
                    assert ERROR_TEXT not in output.inner_text()
                    check(page, output)
                    assert "Traceback" not in output.inner_text()
                except Exception as err:  # noqa: BLE001 - collect every case's problem
                    problems.append(f"{name}: {type(err).__name__}: {str(err)[:800]}")
                output.screenshot(path=str(ARTIFACTS / f"screen_{name}.png"))
                print(f"{name} checked at {time.time() - t0:.1f} s")
        finally:
            browser.close()
    assert not problems, "\n".join(problems + ["browser console errors:"] + console[-10:])


# --- issue 28.4: using the notebooks leaves the repository clean -----------------------------

REPO = Path(__file__).resolve().parent.parent
CLEAN_NOTEBOOKS = ("00_encoder_by_hand", "02_attention")  # no training: quick on the tiny model


def _clone(dest: Path) -> Path:
    """The worktree's package and notebooks as they are now (committed or not), as a fresh
    repository with one commit: `git status` there says what using the notebooks changed, and
    nothing the developer has lying around can hide or fake a change."""
    import shutil

    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard",
                             "--", "workbench", "notebooks", "pyproject.toml", ".gitignore"],
                            cwd=REPO, capture_output=True, text=True, check=True).stdout
    for name in filter(None, listed.split("\0")):
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "clone"]):
        subprocess.run(git + cmd, cwd=dest, check=True, capture_output=True)
    return dest


@pytest.mark.slow  # ~40 s: .ci/run runs it by name after the default suite
def test_run_all_and_save_in_jupyterlab_leaves_the_tree_clean(tmp_path, tiny_model_dir):
    """Issue 28.4: `make lab`'s JupyterLab (workbench.cli.lab_command) on a clone; two guided
    notebooks are opened, run top to bottom (on the tiny model, as "demo") and saved, and a
    widget's Export button is pressed: `git status --porcelain` stays empty, the outputs are in
    the ignored .ipynb, the export is under outputs/."""
    from playwright.sync_api import sync_playwright

    from workbench.cli import lab_command
    from workbench.notebook_runner import read_notebook

    clone = _clone(tmp_path / "clone")
    settings = tmp_path / "settings"
    tracker = settings / "@jupyterlab" / "notebook-extension"
    tracker.mkdir(parents=True)
    (tracker / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    port, token = _free_port(), "wbtest" + os.urandom(8).hex()
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               PYTHONPATH=str(clone), WORKBENCH_DEMO_MODEL=str(tiny_model_dir),
               JUPYTERLAB_SETTINGS_DIR=str(settings),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               JUPYTER_CONFIG_DIR=str(tmp_path / "config"))
    env.pop("WORKBENCH_RUNS", None)  # the default store, <clone>/runs
    cmd = lab_command(clone) + [
        "--no-browser", "--ip=127.0.0.1", f"--port={port}", f"--IdentityProvider.token={token}",
        "--allow-root", "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    log = open(tmp_path / "lab.log", "w")
    proc = subprocess.Popen(cmd, cwd=clone, env=env, stdout=log, stderr=subprocess.STDOUT)
    url, problems = f"http://127.0.0.1:{port}", []
    try:
        _wait_for_lab(url, token, proc, tmp_path / "lab.log")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=_chromium(), args=HEADLESS_ARGS)
            try:
                ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
                ctx.route("**/*", _local_only)
                page = ctx.new_page()
                for stem in CLEAN_NOTEBOOKS:
                    n_code = sum(c.cell_type == "code" for c in
                                 read_notebook(clone / "notebooks" / f"{stem}.py").cells)
                    t0 = time.time()
                    _open(page, url, token, f"{stem}.ipynb", n_code=n_code)
                    print(f"{stem}: Run All took {time.time() - t0:.1f} s")
                    errors = [t for t in page.locator(".jp-OutputArea-output").all_inner_texts()
                              if "Traceback" in t or ERROR_TEXT in t]
                    if errors:
                        problems.append(f"{stem}: {errors[0][:600]}")
                    export = page.locator(".jp-OutputArea button").filter(
                        has_text=re.compile(r"^\s*Export\s*$"))
                    if export.count():
                        export.first.click()
                        _wait_for(page, lambda: page.get_by_text(re.compile("^wrote ")).count(),
                                  "the Export button's 'wrote …' line", 60)
                    page.locator(".jp-Notebook").first.click()
                    page.keyboard.press("Control+s")
                    _wait_for(page, lambda: page.locator(".jp-mod-dirty").count() == 0,
                              f"{stem}.ipynb to be saved", 30)
            finally:
                browser.close()
    finally:
        _stop_lab(proc, log)
    assert not problems, "\n".join(problems)
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"],
                            cwd=clone, capture_output=True, text=True, check=True).stdout
    assert status == "", f"using the notebooks changed the repository:\n{status}"
    for stem in CLEAN_NOTEBOOKS:  # the run really was saved, into the ignored .ipynb
        saved = json.loads((clone / "notebooks" / f"{stem}.ipynb").read_text())
        assert any(c.get("outputs") for c in saved["cells"]), f"{stem}.ipynb has no outputs"
    exported = sorted(p.name for p in (clone / "outputs" / "notebooks").glob("attention.*"))
    assert exported, "the Export button wrote nothing under outputs/notebooks"
