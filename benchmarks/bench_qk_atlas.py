"""wb.qk_atlas at roberta-base shape: 144 heads x 2,000 tokens, PCA, on the CPU; and page size.

Time. Ours: `wb.qk_atlas(lm, texts)` end to end (capture, AttentionViz alignment, one joint PCA
per head, tidy frame); target from issue 19: under 120 s on 2 CPU cores. The notes time the
capture and the projections alone as well, and give the process's CPU seconds and the
load average: on a shared machine wall time overstates what a free 2-core machine needs.

Page. Ours: `plots.qk_atlas.atlas_grid` (WebGL, 300 points per head, float32 binary arrays,
integer colour codes, no per-point hover). Peer: the naive figure, every point of every head as
an SVG `go.Scatter` in the same grid, with its token as hover text. Bytes of `fig.to_json()`
(what a notebook output and an exported HTML page carry, plotly.js aside). Render time needs a
browser and is not measured here.

Model: RobertaConfig() defaults (12 layers, 768 wide, 12 heads; the demo tokenizer's vocabulary)
with random weights, which is what the timing depends on. Quick mode: the tiny test model.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


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


def _naive_page(atlas) -> int:
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
    return len(fig.to_json())


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
        ours_bytes = len(atlas_grid(atlas, max_points=300).to_json())
        peer_bytes = _naive_page(atlas)
    n_tok = int(atlas.attrs["tokens"])
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
    ]


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=1))
