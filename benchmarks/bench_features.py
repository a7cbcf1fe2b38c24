"""wb.features throughput vs a plain transformers loop with output_hidden_states=True, same run.

Both produce the same thing: for every text, the mean over its non-special tokens of every
layer's hidden states (embeddings + each block), as a (N, L+1, D) float32 array. The peer is the
loop a user writes by hand: batches in input order, `tokenizer(padding=True)`, one forward with
`output_hidden_states=True`, a masked mean. Ours batches by length (less padding) and pools in
one einsum per text. A second row measures a notebook re-run: ours reads the disk cache, the
peer recomputes. Inputs: prose paragraphs of varied length from `workbench.testing.offline_text`.
Full: a roberta-base-shaped model (12 layers x 768, random weights); quick: the tiny test model.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _model(folder: Path, quick: bool) -> Path:
    from transformers import AutoTokenizer, RobertaConfig, RobertaForMaskedLM

    from workbench.testing import make_tiny_model

    make_tiny_model(folder, max_positions=258)
    if quick:
        return folder
    tok = AutoTokenizer.from_pretrained(folder)
    cfg = RobertaConfig(vocab_size=len(tok), max_position_embeddings=258,
                        pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                        eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    RobertaForMaskedLM(cfg).save_pretrained(folder)
    return folder


def _texts(n: int) -> list[str]:
    from workbench.testing import offline_text

    rng = np.random.default_rng(0)
    paras = offline_text(400_000)
    return [p[: int(rng.integers(40, 500))] for p in paras[:n]]


def _peer(model, tok, texts: list[str], batch_size: int, max_length: int) -> np.ndarray:
    out = []
    special_ids = torch.tensor(sorted(tok.all_special_ids))
    for start in range(0, len(texts), batch_size):
        enc = tok(texts[start:start + batch_size], padding=True, truncation=True,
                  max_length=max_length, return_tensors="pt")
        with torch.inference_mode():
            hs = model(**enc, output_hidden_states=True).hidden_states
        states = torch.stack(hs, 1)                                      # (B, L+1, T, D)
        keep = (enc["attention_mask"].bool() & ~torch.isin(enc["input_ids"], special_ids)).float()
        pooled = (states * keep[:, None, :, None]).sum(2) / keep.sum(1)[:, None, None]
        out.append(pooled.numpy())
    return np.concatenate(out)


def run(quick: bool = False) -> list[dict]:
    from transformers import AutoModel, AutoTokenizer

    import workbench as wb

    n, batch_size = (24, 8) if quick else (64, 16)
    texts = _texts(n)
    saved_cache = os.environ.get("WORKBENCH_CACHE")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["WORKBENCH_CACHE"] = str(Path(tmp) / "cache")  # a cold, private cache
        folder = _model(Path(tmp) / "m", quick)
        lm = wb.load(folder, device="cpu")
        tok, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder, add_pooling_layer=False).eval()
        max_length = 128
        # analyses refuse a text above max_length (never cut it): both sides get texts that fit
        texts = [t for t in texts if len(tok(t)["input_ids"]) <= max_length]
        lengths = [len(v) for v in tok(texts)["input_ids"]]

        def ours():
            return wb.features(lm, texts, pool="mean", batch_size=batch_size, progress=False,
                               cache=False, max_length=max_length).array

        def peer():
            return _peer(model, tok, texts, batch_size, max_length)

        ours(), peer()                          # warm-up
        times, results = {"ours": [], "peer": []}, {}
        for _ in range(2):                      # interleaved so machine noise hits both alike
            for name, fn in (("ours", ours), ("peer", peer)):
                t0 = time.perf_counter()
                results[name] = fn()
                times[name].append(time.perf_counter() - t0)
        diff = float(np.abs(results["ours"] - results["peer"]).max())
        t_ours, t_peer = min(times["ours"]), min(times["peer"])
        wb.features(lm, texts, pool="mean", batch_size=batch_size, progress=False,
                    max_length=max_length)          # fill the cache
        t0 = time.perf_counter()
        cached = wb.features(lm, texts, pool="mean", batch_size=batch_size, progress=False,
                             max_length=max_length)
        t_cached = time.perf_counter() - t0
        assert cached.cached
    if saved_cache is None:
        os.environ.pop("WORKBENCH_CACHE", None)
    else:
        os.environ["WORKBENCH_CACHE"] = saved_cache
    shape = f"{lm.num_layers} layers x {lm.config.hidden_size}"
    notes = (f"{n} texts of {min(lengths)}-{max(lengths)} tokens, batch {batch_size}, "
             f"{shape}, CPU fp32; max |ours - peer| = {diff:.1e}")
    return [
        {"benchmark": "features", "measure": "mean-pooled all-layer features, texts/s",
         "unit": "texts/s", "ours": n / t_ours, "peer": n / t_peer,
         "peer_name": "transformers loop, output_hidden_states=True", "higher_is_better": True,
         "notes": notes},
        {"benchmark": "features", "measure": "notebook re-run (ours: disk cache), texts/s",
         "unit": "texts/s", "ours": n / t_cached, "peer": n / t_peer,
         "peer_name": "transformers loop, output_hidden_states=True", "higher_is_better": True,
         "notes": notes},
    ]


if __name__ == "__main__":
    import sys

    for row in run(quick="--quick" in sys.argv):
        print(row)
