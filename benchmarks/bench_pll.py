"""PLL sentence scoring: `wb.score` vs minicons' MaskedLMScorer, same model, sentences and run.

Two models: the tiny random test model (2 layers, 32 wide, 1k vocabulary: the head dominates) and
a roberta-base-shaped random model (`RobertaConfig()` defaults: 12 layers, 768 wide, 50,265-entry
head; random weights are fine for throughput) with the tiny model's 1k byte-level BPE, so
sentences come out longer in tokens than with roberta-base's own vocabulary (see the notes).

minicons is used as documented: `sequence_score(batch, reduction=sum)` on batches of 8 sentences;
it builds every masked copy of the batch and runs the full-vocabulary head at every position.
`wb.score` packs copies into ~4k-token batches and applies the head at the masked positions only.
A third row isolates that head: the same batches of masked copies through encoder + head at the
masked rows vs the stock `model(...).logits` over all positions.
"""

from __future__ import annotations

import copy
import statistics
import tempfile
import time
from pathlib import Path

import torch

MINICONS_BATCH = 8


def _sentences(n: int) -> list[str]:
    import re

    from workbench.testing import offline_text

    out = []
    for para in offline_text(200_000):
        for s in re.split(r"(?<=[.!?])\s+", para):
            if 6 <= len(s.split()) <= 14 and s[0].isupper():
                out.append(s)
    return out[:n]


def _models(folder: Path, base_layers: int, device: str):
    from transformers import RobertaConfig, RobertaForMaskedLM

    import workbench as wb
    from workbench.testing import make_tiny_model

    tiny = make_tiny_model(folder / "tiny")
    tiny_lm = wb.load(tiny, device=device, dtype="float32")
    tok = tiny_lm.tokenizer
    cfg = RobertaConfig(num_hidden_layers=base_layers, pad_token_id=tok.pad_token_id,
                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    RobertaForMaskedLM(cfg).save_pretrained(folder / "base")
    tok.save_pretrained(folder / "base")
    return {"tiny": tiny_lm, "roberta-base-shaped": wb.load(folder / "base", device=device,
                                                              dtype="float32")}


def _minicons(lm):
    from minicons import scorer

    tok = copy.copy(lm.tokenizer)
    tok.batch_encode_plus = tok.__call__  # minicons 0.3.39 calls an API transformers 5 removed
    return scorer.MaskedLMScorer(lm.model, str(lm.device), tokenizer=tok)


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _once(fn):
    """(seconds, result) of one call, with the GPU drained before and after."""
    _sync()
    t0 = time.perf_counter()
    out = fn()
    _sync()
    return time.perf_counter() - t0, out


def _timed(fn, repeats: int) -> float:
    return statistics.median(_once(fn)[0] for _ in range(repeats))


def _head_cost(lm, sentences: list[str], repeats: int) -> tuple[float, float, int]:
    """Seconds for the same masked batches: head at masked rows vs the full (B, T, V) logits."""
    from workbench.analysis.fill_mask import masked_logprobs

    enc = lm.tokenizer(sentences, padding=True, return_tensors="pt")
    ids, att = enc["input_ids"], enc["attention_mask"]                  # (S, T)
    t = ids.shape[1]
    rows = torch.arange(ids.shape[0]).repeat_interleave(t - 2)
    cols = torch.arange(1, t - 1).repeat(ids.shape[0])
    copies, copy_att = ids[rows].clone(), att[rows]                     # (S*(T-2), T)
    copies[torch.arange(len(rows)), cols] = lm.tokenizer.mask_token_id
    per = max(1, 4096 // t)
    chunks = [(copies[i:i + per], copy_att[i:i + per], cols[i:i + per])
              for i in range(0, len(rows), per)]

    def masked_only():
        for x, a, c in chunks:
            masked_logprobs(lm, x, a, torch.arange(len(c)), c)

    def full_head():
        for x, a, c in chunks:
            with torch.inference_mode():
                logits = lm.model(input_ids=x.to(lm.device),
                                  attention_mask=a.to(lm.device)).logits    # (B, T, V)
                torch.log_softmax(logits[torch.arange(len(c)), c.to(lm.device)].float(), -1)

    masked_only(), full_head()  # warm-up
    return _timed(masked_only, repeats), _timed(full_head, repeats), len(rows)


def measure(n_tiny: int, n_base: int, base_layers: int = 12, repeats: int = 3,
            device: str = "cpu", warmup: bool = True,
            minicons_batch: int = MINICONS_BATCH) -> list[dict]:
    """Rows for both models; interleaved timing (median of `repeats`) after an agreement check."""
    import workbench as wb

    torch.manual_seed(0)
    sizes = {"tiny": n_tiny, "roberta-base-shaped": n_base}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        lms = _models(Path(tmp), base_layers, device)
        for name, lm in lms.items():
            sents = _sentences(sizes[name])
            n_tok = sum(len(x) - 2 for x in lm.tokenizer(sents)["input_ids"])
            mc = _minicons(lm)

            def ours():
                return wb.score(lm, sents).logprob.tolist()

            def peer():
                out = []
                for i in range(0, len(sents), minicons_batch):
                    out += mc.sequence_score(sents[i:i + minicons_batch],
                                             reduction=lambda x: x.sum(0).item())
                return out

            if warmup or name == "tiny":
                ours(), peer()
            t_ours, t_peer, agree = [], [], 0.0
            for _ in range(repeats):  # interleaved so machine noise hits both alike
                (ta, a), (tb, b) = _once(ours), _once(peer)
                t_ours.append(ta)
                t_peer.append(tb)
                agree = max(agree, max(abs(x - y) for x, y in zip(a, b)))
            t_ours, t_peer = statistics.median(t_ours), statistics.median(t_peer)
            where = (torch.cuda.get_device_name(0) if lm.device.type == "cuda"
                     else f"{torch.get_num_threads()} CPU threads")
            note = (f"{len(sents)} sentences, {n_tok / len(sents):.1f} tokens each, "
                    f"{lm.num_layers} layers x {lm.config.hidden_size}, vocab "
                    f"{lm.config.vocab_size}, fp32, {where}; minicons batches of {minicons_batch} "
                    f"sentences; max |ours - minicons| = {agree:.1e}")
            rows.append({"benchmark": "pll", "measure": f"PLL throughput ({name})",
                         "unit": "sentences/s", "ours": len(sents) / t_ours,
                         "peer": len(sents) / t_peer, "peer_name": "minicons MaskedLMScorer",
                         "higher_is_better": True, "notes": note})
            if name == "roberta-base-shaped":
                t_m, t_f, n_copies = _head_cost(lm, sents, repeats)
                rows.append({"benchmark": "pll", "measure": f"MLM head on masked rows ({name})",
                             "unit": "copies/s", "ours": n_copies / t_m, "peer": n_copies / t_f,
                             "peer_name": "full-vocabulary head (model(...).logits)",
                             "higher_is_better": True,
                             "notes": f"{n_copies} masked copies in ~4k-token batches, same "
                                      f"inputs; {lm.num_layers} layers, {where}"})
    return rows


def run(quick: bool = False) -> list[dict]:
    # quick: a 2-layer roberta-base-width model and a handful of sentences (smoke test size)
    if quick:
        return measure(12, 2, base_layers=2, repeats=1, warmup=False)
    return measure(200, 24, base_layers=12, repeats=3)


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", type=int, default=200, help="sentences for the tiny model")
    ap.add_argument("--base", type=int, default=24, help="sentences for the roberta-base shape")
    ap.add_argument("--layers", type=int, default=12, help="layers of the roberta-base shape")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--minicons-batch", type=int, default=MINICONS_BATCH)
    args = ap.parse_args()
    for row in measure(args.tiny, args.base, args.layers, args.repeats, args.device,
                       minicons_batch=args.minicons_batch):
        print(f"{row['measure']:<48} ours {row['ours']:9.2f}  {row['peer_name']} "
              f"{row['peer']:9.2f}  ratio {row['ours'] / row['peer']:.2f}  [{row['unit']}]  "
              f"{row['notes']}")
