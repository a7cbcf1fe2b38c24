"""wb.qk_atlas at roberta-base shape: 144 heads x 2,000 tokens, PCA, on the CPU; and page size.

Time. Ours: `wb.qk_atlas(lm, texts)` end to end (capture, AttentionViz alignment, one joint PCA
per head, tidy frame); target from issue 19: under 120 s on 2 CPU cores. The notes time the
capture and the projections alone as well, and give the process's CPU seconds and the
load average: on a shared machine wall time overstates what a free 2-core machine needs.

Page. Ours: `plots.qk_atlas.atlas_grid` (WebGL, 300 points per head, float32 binary arrays,
integer colour codes, no per-point hover). Peer: the naive figure, every point of every head as
an SVG `go.Scatter` in the same grid, with its token as hover text. Bytes of `fig.to_json()`
(what a notebook output and an exported HTML page carry, plotly.js aside). Render time: each
figure drawn by `Plotly.newPlot` in one headless Chromium page with plotly.js loaded, from the
call to its promise resolving (median of 3 draws, the page purged in between; WebGL in a
headless browser runs on the CPU, as both sides do here).

Model: RobertaConfig() defaults (12 layers, 768 wide, 12 heads; the demo tokenizer's vocabulary)
with random weights, which is what the timing depends on. Quick mode: the tiny test model.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

NEEDS_BROWSER = True  # the render-time row draws both figures in headless Chrome/Chromium
DRAW = """async (fig) => {
  const div = document.getElementById('g'); const times = [];
  for (let i = 0; i < 3; i++) {
    const t = performance.now(); await Plotly.newPlot(div, fig.data, fig.layout);
    times.push(performance.now() - t); Plotly.purge(div);
  }
  times.sort((a, b) => a - b); return times[1];
}"""


def _lm(quick: bool, tmp: Path):
    import workbench as wb
    from workbench.models import LM
    from workbench.testing import make_tiny_model

    if quick:
        return wb.load(make_tiny_model(tmp / "tiny"), device="cpu"), "tiny random RoBERTa"
    from transformers import RobertaConfig, RobertaForMaskedLM

    demo = wb.load("demo", device="cpu")
    tok = demo.tokenizer
    config = RobertaConfig(vocab_size=len(tok), pad_token_id=tok.pad_token_id,
                           bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    model = RobertaForMaskedLM(config).eval()
    return (LM(model=model, tokenizer=tok, device=torch.device("cpu"), name="roberta-base-shaped"),
            "roberta-base-shaped random model (12 layers x 12 heads, 768 wide)")


def _texts(lm, tokens: int) -> list[str]:
    import workbench as wb

    out, total = [], 0
    for text in wb.sentiment_demo(n=2000)["text"]:
        out.append(text)
        total += len(lm.tokens(text))
        if total >= tokens:
            break
    return out


def _naive_figure(atlas):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    layers, heads = sorted(atlas["layer"].unique()), sorted(atlas["head"].unique())
    fig = make_subplots(rows=len(layers), cols=len(heads))
    for (layer, head), one in atlas.groupby(["layer", "head"], sort=True):
        fig.add_trace(go.Scatter(x=one["x"].tolist(), y=one["y"].tolist(), mode="markers",
                                 text=one["token"].astype(str).tolist(),
                                 marker=dict(color=np.where(one["kind"] == "query", "#0072B2",
                                                            "#E69F00").tolist())),
                      row=layers.index(layer) + 1, col=heads.index(head) + 1)
    return fig


def _render_ms(figures: list) -> list[float]:
    """Median ms of `Plotly.newPlot` for each figure, in one headless browser page."""
    import plotly
    from playwright.sync_api import sync_playwright

    from workbench.browser import ENABLE_HINT, HEADLESS_ARGS, find_browser

    exe = find_browser()
    if exe is None:
        raise RuntimeError(f"this benchmark renders in a browser and none was found: {ENABLE_HINT}")
    plotly_js = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=HEADLESS_ARGS)
        try:
            page = browser.new_context(offline=True).new_page()
            page.set_content('<div id="g"></div>')
            page.add_script_tag(path=str(plotly_js))
            return [page.evaluate(DRAW, json.loads(fig.to_json())) for fig in figures]
        finally:
            browser.close()


def run(quick: bool = False) -> list[dict]:
    import workbench as wb
    from workbench.analysis.qk_atlas import align_qk, project, qk_vectors
    from workbench.plots.qk_atlas import atlas_grid

    with tempfile.TemporaryDirectory() as tmp:
        lm, what = _lm(quick, Path(tmp))
        texts = _texts(lm, 200 if quick else 2000)
        t0, c0 = time.perf_counter(), time.process_time()
        atlas = wb.qk_atlas(lm, texts)
        ours_s, ours_cpu = time.perf_counter() - t0, time.process_time() - c0
        t0 = time.perf_counter()
        vec = qk_vectors(lm, texts)
        capture_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for li in range(len(vec.layers)):
            for h in range(lm.num_heads):
                project(np.concatenate(align_qk(vec.queries[li, h], vec.keys[li, h])[:2]),
                        "pca", 0)
        project_s = time.perf_counter() - t0
        ours_fig, peer_fig = atlas_grid(atlas, max_points=300), _naive_figure(atlas)
        ours_bytes, peer_bytes = len(ours_fig.to_json()), len(peer_fig.to_json())
        ours_ms, peer_ms = _render_ms([ours_fig, peer_fig])
    n_tok = int((atlas["kind"] == "query").sum()) // (lm.num_layers * lm.num_heads)
    heads = lm.num_layers * lm.num_heads
    load = os.getloadavg()[0]
    notes = (f"{what}; {heads} heads, {n_tok} tokens, {len(texts)} texts, "
             f"{torch.get_num_threads()} threads, {ours_cpu:.0f} CPU s, load average {load:.1f}; "
             f"alone: capture {capture_s:.1f} s, align + PCA of all heads {project_s:.1f} s")
    return [
        {"benchmark": "qk_atlas", "measure": "atlas end to end (capture+align+PCA+frame)",
         "unit": "s", "ours": ours_s, "peer": None, "peer_name": "target: < 120 s",
         "higher_is_better": False, "notes": notes},
        {"benchmark": "qk_atlas", "measure": "all-heads figure JSON", "unit": "MB",
         "ours": ours_bytes / 1e6, "peer": peer_bytes / 1e6,
         "peer_name": "naive go.Scatter of all points", "higher_is_better": False,
         "notes": f"ours: WebGL, 300 points per head; peer: {2 * n_tok} points per head"},
        {"benchmark": "qk_atlas", "measure": "all-heads figure render (Plotly.newPlot)",
         "unit": "ms", "ours": ours_ms, "peer": peer_ms,
         "peer_name": "naive go.Scatter of all points", "higher_is_better": False,
         "notes": "headless Chromium on the CPU, median of 3 draws each, plotly.js aside"},
    ]


if __name__ == "__main__":
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=1))
