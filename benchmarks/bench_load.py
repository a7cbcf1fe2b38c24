"""wb.load + a batched forward pass vs plain transformers on the same folder, same run.

The peer is what a user writes by hand: AutoTokenizer + AutoModelForMaskedLM.from_pretrained and
one forward over the same padded batch. Shows the workbench adds no overhead on the hot path.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch


def _roberta_base_shaped(folder: Path, layers: int) -> Path:
    from transformers import RobertaConfig, RobertaForMaskedLM

    from workbench.testing import make_tiny_model

    make_tiny_model(folder)  # tokenizer; the model is replaced below
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    cfg = RobertaConfig(vocab_size=len(tok), num_hidden_layers=layers, pad_token_id=tok.pad_token_id,
                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    RobertaForMaskedLM(cfg).save_pretrained(folder)
    return folder


def _interleaved(ours, peer, repeats: int) -> tuple[float, float]:
    """Median seconds of each, alternating calls so machine noise hits both alike."""
    ours(), peer()  # warm-up
    a, b = [], []
    for _ in range(repeats):
        for fn, acc in ((ours, a), (peer, b)):
            t0 = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - t0)
    return statistics.median(a), statistics.median(b)


def run(quick: bool = False) -> list[dict]:
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    import workbench as wb
    from workbench.testing import offline_text

    layers = 2 if quick else 12
    texts = [t[:400] for t in offline_text(60_000)][: (8 if quick else 32)]
    with tempfile.TemporaryDirectory() as tmp:
        folder = _roberta_base_shaped(Path(tmp) / "m", layers)
        def load_ours():
            return wb.load(folder, device="cpu")

        def load_peer():
            return AutoTokenizer.from_pretrained(folder), AutoModelForMaskedLM.from_pretrained(folder).eval()

        # interleaved, best of 3 each: the first load of a process pays import costs
        ours_load, peer_load = [], []
        for _ in range(3):
            t0 = time.perf_counter()
            lm = load_ours()
            ours_load.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            tok, model = load_peer()
            peer_load.append(time.perf_counter() - t0)
        ours_load, peer_load = min(ours_load), min(peer_load)

        enc = tok(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")

        def ours():
            with torch.inference_mode():
                lm.model(**enc)

        def peer():
            with torch.inference_mode():
                model(**enc)

        reps = 2 if quick else 5
        ours_fwd, peer_fwd = _interleaved(ours, peer, reps)
    n = len(texts)
    note = f"{layers}-layer roberta-base-width random model, batch {n}, max_len 128, CPU"
    return [
        {"measure": "load time", "unit": "s", "ours": ours_load, "peer": peer_load,
         "peer_name": "transformers from_pretrained", "higher_is_better": False, "notes": note},
        {"measure": "forward throughput", "unit": "texts/s", "ours": n / ours_fwd,
         "peer": n / peer_fwd, "peer_name": "transformers forward", "higher_is_better": True,
         "notes": note},
    ]
