"""Value zeroing and activation patching: batched (ours) vs one run per zeroed token / per site.

Model: a roberta-base-shaped random RoBERTa (`RobertaConfig()` defaults: 12 layers, 768 wide,
12 heads; random weights are fine for timing) with the tiny test model's 1k byte-level BPE (the
MLM head is then small, so the encoder dominates as with roberta-base's own head on masked rows).

1. Value zeroing of every layer on one 64-token text: `context_mixing.mixing_matrices`
   (per layer, all T zeroings as one batched re-run of that layer) vs the plain loop the issue
   names, one full forward pass of the model per (layer, zeroed token), 12 x 64 = 768 passes,
   and vs the paper code's loop (hmohebbi/ValueZeroing: the layer alone re-run once per zeroed
   token, unbatched). The three matrices are compared (max |difference|).
2. Activation patching of the 12-layer x 32-position residual grid of a 32-token text:
   `wb.patch(sites="resid", batch_size=32)` vs one forward pass per site (384 passes) with one
   hook patching that site; the metric values are compared.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F


def _model(folder: Path, layers: int):
    from transformers import RobertaConfig, RobertaForMaskedLM

    import workbench as wb
    from workbench.testing import make_tiny_model

    tok = wb.load(make_tiny_model(folder / "tiny"), device="cpu").tokenizer
    cfg = RobertaConfig(num_hidden_layers=layers, vocab_size=len(tok),
                        pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                        eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    RobertaForMaskedLM(cfg).save_pretrained(folder / "base")
    tok.save_pretrained(folder / "base")
    return wb.load(folder / "base", device="cpu", dtype="float32")


def _text(lm, n_tokens: int, mask: bool = False) -> str:
    """A text of exactly `n_tokens` tokens (specials included), optionally ending in `<mask>.`:
    the decoded first tokens of the offline prose, re-encoded to check the count."""
    from workbench.testing import offline_text

    tail = f" {lm.mask_token}." if mask else ""
    for para in offline_text(200_000):
        ids = lm.tokenizer(para, add_special_tokens=False)["input_ids"]
        for cut in range(n_tokens - 2, n_tokens - 8, -1):
            text = lm.tokenizer.decode(ids[:cut]).strip() + tail
            if len(lm.tokens(text)) == n_tokens:
                return text
    raise RuntimeError(f"no text of exactly {n_tokens} tokens found in the offline prose")


def _hidden(lm, ids, pairs=()):
    from workbench.capture import hooks

    with torch.inference_mode(), hooks(pairs):
        return lm.encoder(**ids, output_hidden_states=True).hidden_states


def value_zeroing_rows(lm, n_tokens: int, repeats: int, full_loop: bool = True) -> list[dict]:
    from workbench.analysis import context_mixing as cm
    from workbench.capture import attention_modules, encoder_layers, hooks
    from workbench.testing import value_zeroing_by_full_forwards

    text = _text(lm, n_tokens)
    parts, layers = attention_modules(lm), encoder_layers(lm)

    def ours():
        return cm.mixing_matrices(lm, text, "value_zeroing")[1]          # (L, T, T)

    def full():
        out = value_zeroing_by_full_forwards(lm, text)                   # (L, T, T)
        return out / out.sum(-1, keepdim=True)

    def paper_loop():
        _, traces = cm.trace_layers(lm, text)
        out = torch.empty(lm.num_layers, n_tokens, n_tokens)
        with torch.inference_mode():
            for layer, (part, tr) in enumerate(zip(parts, traces)):
                for j in range(n_tokens):
                    def zero(module, args, o, j=j):
                        o = o.clone()
                        o[:, j] = 0.0
                        return o
                    with hooks([(part.value, zero, "forward")]):
                        y = cm.rerun_layer(layers[layer], tr.inputs[None], tr.kwargs)[0]
                    out[layer, :, j] = 1 - F.cosine_similarity(y, tr.output, -1)
        out = out.clamp_min(0)
        return out / out.sum(-1, keepdim=True)

    times = {"ours": [], "full": [], "paper": []}
    sides = [("ours", ours), ("paper", paper_loop)] + ([("full", full)] if full_loop else [])
    d_full = None
    for _ in range(repeats):                                   # interleaved: A, B, (C), A, B...
        for name, fn in sides:
            t0 = time.perf_counter()
            res = fn()
            times[name].append(time.perf_counter() - t0)
            if name == "ours":
                mine = res
            elif name == "full":
                d_full = float((res - mine).abs().max())
            else:
                d_paper = float((res - mine).abs().max())
    t = {k: statistics.median(v) for k, v in times.items() if v}
    def ratios(peer):
        r = [p / o for p, o in zip(times[peer], times["ours"])]
        return f"median per-repeat ratio {statistics.median(r):.2f}x of " + \
            ", ".join(f"{x:.2f}" for x in r)

    note = (f"one {n_tokens}-token text, {lm.num_layers} layers x {lm.config.hidden_size}, fp32, "
            f"{torch.get_num_threads()} CPU threads, median of {repeats}")
    rows = [] if d_full is None else [
        {"benchmark": "context_mixing", "measure": "value zeroing, all layers", "unit": "s",
         "ours": t["ours"], "peer": t["full"], "higher_is_better": False,
         "peer_name": f"loop of full forwards ({lm.num_layers * n_tokens})",
         "notes": f"{note}; max |ours - loop| = {d_full:.1e} (row-normalised scores); "
                  f"{ratios('full')}"}]
    return rows + [
        {"benchmark": "context_mixing", "measure": "value zeroing, all layers", "unit": "s",
         "ours": t["ours"], "peer": t["paper"], "higher_is_better": False,
         "peer_name": "paper code's loop (one layer re-run per token)",
         "notes": f"{note}; max |ours - loop| = {d_paper:.1e}; {ratios('paper')}"},
    ]


def patching_rows(lm, n_tokens: int, repeats: int) -> list[dict]:
    import workbench as wb
    from workbench.analysis import patching as P

    text = _text(lm, n_tokens, mask=True)
    corrupted = text.replace(text.split()[0], "A", 1) if len(lm.tokens(
        text.replace(text.split()[0], "A", 1))) == n_tokens else text
    cands = ("the", "a")
    kw = dict(candidates=cands, sites="resid", batch_size=32)
    ids_b = lm.tokenizer(corrupted, return_tensors="pt")
    ids_a = lm.tokenizer(text, return_tensors="pt")
    pos = int((ids_a["input_ids"][0] == lm.tokenizer.mask_token_id).nonzero())
    tok = [P.single_token_id(lm, text, c) for c in cands]

    def ours():
        return wb.patch(lm, text, corrupted, **kw)["value"].to_numpy()

    def loop():
        clean = _hidden(lm, ids_a)                        # (1, T, D) per layer: [l + 1] = out
        head = P.mlm_head(lm)
        vals = []
        for layer, mod in enumerate(P.encoder_layers(lm)):
            for p in range(n_tokens):
                def put(module, args, o, layer=layer, p=p):
                    o = (o[0] if isinstance(o, tuple) else o).clone()
                    o[0, p] = clean[layer + 1][0, p]
                    return o
                h = _hidden(lm, ids_b, [(mod, put, "forward")])[-1][0, pos]
                with torch.inference_mode():
                    lp = torch.log_softmax(head(h).float(), -1)
                vals.append(float(lp[tok[0]] - lp[tok[1]]))
        return torch.tensor(vals, dtype=torch.float64).numpy()

    t_ours, t_loop, diff = [], [], 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        a = ours()
        t_ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        b = loop()
        t_loop.append(time.perf_counter() - t0)
        diff = max(diff, float(abs(a - b).max()))
    n_sites = lm.num_layers * n_tokens
    r = [b / a for a, b in zip(t_ours, t_loop)]
    return [{"benchmark": "context_mixing",
             "measure": f"patching, {lm.num_layers} layers x {n_tokens} positions (resid)",
             "unit": "s", "ours": statistics.median(t_ours), "peer": statistics.median(t_loop),
             "higher_is_better": False, "peer_name": f"one forward per site ({n_sites})",
             "notes": f"batch_size 32, {torch.get_num_threads()} CPU threads, fp32, median of "
                      f"{repeats}; max |ours - loop| = {diff:.1e} (logprob difference); median "
                      f"per-repeat ratio {statistics.median(r):.2f}x of "
                      + ", ".join(f"{x:.2f}" for x in r)}]


def run(quick: bool = False, repeats: int = 1, only: str | None = None,
        full_loop: bool = True) -> list[dict]:
    """quick: 2 layers, short texts (a smoke test of the code paths, not a measurement);
    `only`: "value_zeroing" or "patching"; `full_loop=False` drops the slow loop of 768 full
    forwards (value zeroing's first peer) and keeps the paper code's per-token layer loop."""
    layers, vz_tokens, patch_tokens = (2, 8, 8) if quick else (12, 64, 32)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        lm = _model(Path(tmp), layers)
        if only in (None, "value_zeroing"):
            rows += value_zeroing_rows(lm, vz_tokens, repeats, full_loop)
        if only in (None, "patching"):
            rows += patching_rows(lm, patch_tokens, repeats)
    return rows


if __name__ == "__main__":
    import argparse
    import os

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=1, help="interleaved repeats (median)")
    ap.add_argument("--only", choices=["value_zeroing", "patching"])
    ap.add_argument("--no-full-loop", action="store_true",
                    help="skip value zeroing's loop of 768 full forwards (keep the paper loop)")
    args = ap.parse_args()
    print(f"load average before: {os.getloadavg()}")
    for row in run(quick=args.quick, repeats=args.repeats, only=args.only,
                   full_loop=not args.no_full_loop):
        print(f"{row['measure']:<45} ours {row['ours']:8.2f} s  {row['peer_name']:<50} "
              f"{row['peer']:8.2f} s  ratio {row['peer'] / row['ours']:.2f}x  {row['notes']}")
    print(f"load average after: {os.getloadavg()}")
