"""Attention views vs bertviz: page bytes and render time in headless chromium, same input.

Input: the attention of a randomly initialised roberta-base-shaped RobertaModel (RobertaConfig():
12 layers x 12 heads, eager attention) on random token ids, at 128 and 512 tokens (quick: 32, no bertviz model-view render).
Ours: `wb.views.head_view` / `model_view` saved as standalone HTML. Peer: bertviz's `head_view` /
`model_view` (`html_action="return"`), made to load offline by `wb.views.bertviz_offline` with
local d3/jQuery (see that module); without local copies only bertviz's bytes are measured.
Render time: wall time from navigation to "drawn" (our root's data-wb-drawn, bertviz's first SVG
shapes) in headless chromium with network refused; layer switch: time of the select's change
handler in the page. At 512 tokens bertviz's page is ~700 MB of JSON: its bytes are computed
exactly layer by layer (json.dumps of each layer, as bertviz does) and the page is not built.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from workbench.browser import HEADLESS_ARGS

RENDER_TIMEOUT_MS = 120_000
BERTVIZ_PAGE_LIMIT = 256  # tokens: above this bertviz's page is not built (bytes only)
NEEDS_BROWSER = True  # renders in headless Chrome/Chromium (tests skip it without one)


def _attention(n_tokens: int):
    import torch
    from transformers import RobertaConfig, RobertaModel

    torch.manual_seed(0)
    model = RobertaModel(RobertaConfig(max_position_embeddings=514),  # as roberta-base
                         add_pooling_layer=False).eval()
    model.set_attn_implementation("eager")
    ids = torch.randint(5, 50_000, (1, n_tokens))
    ids[0, 0], ids[0, -1] = 0, 2
    with torch.inference_mode():
        att = model(input_ids=ids, output_attentions=True).attentions
    x = torch.stack(att)[:, 0].float()                    # (L, H, T, T)
    tokens = [f"tok{i}" for i in range(n_tokens)]
    return x, tokens


def _bertviz_bytes_streamed(x, tokens) -> int:
    """Exact length of bertviz's params JSON without holding the whole page in memory."""
    total = len(json.dumps({"left_text": tokens, "right_text": tokens}))
    for layer in x:
        total += len(json.dumps(layer.tolist())) + 1
    return total


def _render(path: Path, ready_js: str, switch_js: str | None) -> tuple[float, float | None]:
    from playwright.sync_api import sync_playwright

    from workbench.browser import ENABLE_HINT, find_browser

    exe = find_browser()
    if exe is None:
        raise RuntimeError(f"this benchmark renders in a browser and none was found: {ENABLE_HINT}")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=HEADLESS_ARGS)
        try:
            page = browser.new_context(offline=True).new_page()
            page.route("**/*", lambda r: r.continue_() if r.request.url.startswith("file:")
                       else r.abort())
            t0 = time.perf_counter()
            page.goto(path.as_uri(), timeout=RENDER_TIMEOUT_MS)
            page.wait_for_function(ready_js, timeout=RENDER_TIMEOUT_MS)
            render_ms = (time.perf_counter() - t0) * 1000
            switch_ms = page.evaluate(switch_js) if switch_js else None
        finally:
            browser.close()
    return render_ms, switch_ms


OURS_READY = "() => document.querySelector('[data-wb-drawn=\"1\"]') !== null"
BV_READY = "() => document.querySelectorAll('#vis svg rect, #vis svg line, #vis svg text').length > 0"
OURS_SWITCH = """() => { const s = document.querySelector('.wb-attn-layer');
  s.value = '11'; const t = performance.now(); s.dispatchEvent(new Event('change'));
  return performance.now() - t; }"""
BV_SWITCH = """() => { const s = document.querySelector('#layer');
  s.value = '11'; const t = performance.now(); s.dispatchEvent(new Event('change'));
  return performance.now() - t; }"""


def run(quick: bool = False) -> list[dict]:
    import workbench as wb
    from workbench.errors import MissingDependencyError
    from workbench.views.bertviz_adapter import find_assets

    try:
        find_assets()
        have_assets = True
    except MissingDependencyError:
        have_assets = False
    rows: list[dict] = []
    sizes = [32] if quick else [128, 512]
    tmp = Path(tempfile.mkdtemp(prefix="wb-bench-attn-"))

    def row(measure, unit, ours, peer, notes=""):
        rows.append({"benchmark": "attention_views", "measure": measure, "unit": unit,
                     "ours": float(ours), "peer": None if peer is None else float(peer),
                     "peer_name": "bertviz", "higher_is_better": False, "notes": notes})

    for n in sizes:
        x, tokens = _attention(n)
        for kind in ("head", "model"):
            view = (wb.views.head_view if kind == "head" else wb.views.model_view)(x, tokens)
            ours_path = view.save(tmp / f"ours_{kind}_{n}.html")
            ours_bytes = ours_path.stat().st_size
            ours_ms, ours_switch = _render(ours_path, OURS_READY,
                                           OURS_SWITCH if kind == "head" else None)
            bv_bytes = bv_ms = bv_switch = None
            note = ""
            if n <= BERTVIZ_PAGE_LIMIT:
                from bertviz import head_view as bv_head, model_view as bv_model

                per_layer = tuple(x[i].unsqueeze(0) for i in range(x.shape[0]))
                raw = (bv_head if kind == "head" else bv_model)(per_layer, tokens,
                                                                 html_action="return").data
                bv_bytes = len(raw.encode("utf-8"))   # as bertviz ships it (libs from its CDN)
                if have_assets and not (quick and kind == "model"):
                    bv = wb.views.bertviz_offline(x, tokens, view=kind)
                    bv_path = bv.save(tmp / f"bertviz_{kind}_{n}.html")
                    try:
                        bv_ms, bv_switch = _render(bv_path, BV_READY,
                                                   BV_SWITCH if kind == "head" else None)
                    except Exception as err:  # noqa: BLE001 - a timeout is a result here
                        note = f"bertviz did not draw within {RENDER_TIMEOUT_MS} ms ({type(err).__name__})"
                elif quick:
                    note = "quick run: bertviz model view render skipped"
                else:
                    note = "no local d3/jQuery: bertviz render not measured (bytes only)"
            else:
                bv_bytes = _bertviz_bytes_streamed(x, tokens)
                note = (f"bertviz bytes computed layer by layer; its {bv_bytes / 1e6:.0f} MB page "
                        "was not built or rendered")
            row(f"{kind} view page bytes @{n} tokens", "bytes", ours_bytes, bv_bytes,
                "ours: standalone file incl. JS; bertviz: its returned HTML without d3/jQuery/"
                "require (loaded from CDN)")
            row(f"{kind} view render @{n} tokens", "ms", ours_ms, bv_ms, note)
            if kind == "head":
                row(f"head view layer switch @{n} tokens", "ms", ours_switch, bv_switch, note)
    return rows


if __name__ == "__main__":
    import sys

    for r in run(quick="--quick" in sys.argv):
        print(f"{r['measure']:<34} ours {r['ours']:>14.1f}  bertviz {r['peer']:>14.1f} {r['unit']}"
              f"  {r['notes']}")
