"""Pretraining throughput: `wb.pretrain` vs transformers' `Trainer` + `DataCollatorForLanguageModeling`
+ `RobertaForMaskedLM` (full LM head), same model size, data, batch and precision; and MFU.

Both sides train a randomly initialised RoBERTa on the same packed sequences (the offline pydoc
text, tokenised once by `workbench.training.corpus.pack` in the parent process), 15% masking with
80/10/10, AdamW (the Trainer's default, fused), the same batch size and sequence length, no
dropout; bf16 autocast on a GPU, fp32 on a CPU. Each side runs in its own fresh process (no
allocator, cuDNN or compile cache warmed by the other side in memory), the order alternates
between repeats (ours first, then the Trainer first, ...), and the row reports the median of the
repeats for each side, with every repeat and the pairwise ratios in `samples`.

Tokens/s counts `batch x seq_len` per optimiser step from the end of the warm-up steps to the last
step; the device is synchronised only at those two points, so neither side pays a per-step sync
the benchmark added. Tokenisation, model building, torch.compile and CUDA start-up are outside
the timing. What differs is what the workbench does differently (the LM head only at masked
positions, masks made on the device, a static head shape, the encoder compiled on CUDA); the
Trainer runs with its defaults (no compile), as a user would call it.

MFU (CUDA only) = model FLOPs per token (`model_flops_per_token`: 6·N for the dense weights + the
attention matmuls + the decoder at the positions where it runs) x tokens/s over the device's dense
bf16 peak (989 TFLOP/s for H100/H200). Ours counts the decoder at the masked positions only; the
Trainer's row counts it at every position, because it computes it there.

    python benchmarks/bench_pretrain.py [--quick] [--shape cpu|demo|base128|base512] [--repeats 3]
    python benchmarks/bench_pretrain.py --mfu base128      # ours only, one process, MFU row
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling helper below

from fresh_process import load_average, side_result  # noqa: E402

WARMUP_STEPS = 5
REPO = Path(__file__).resolve().parent.parent
MODEL = ("num_layers", "hidden_size", "num_heads", "intermediate_size")
# model shape, sequence length, micro-batch and timed steps of each benchmark shape
SHAPES = {
    "quick": dict(num_layers=2, hidden_size=64, num_heads=2, intermediate_size=256, seq_len=64,
                  batch_size=8, steps=5),
    "cpu": dict(num_layers=4, hidden_size=256, num_heads=4, intermediate_size=1024, seq_len=128,
                batch_size=16, steps=15),
    # the embedded default model's shape (data/demo-model)
    "demo": dict(num_layers=6, hidden_size=384, num_heads=6, intermediate_size=1536, seq_len=256,
                 batch_size=128, steps=40),
    # roberta-base's shape at its two pretraining lengths (vocabulary: the bench's 8k BPE)
    "base128": dict(num_layers=12, hidden_size=768, num_heads=12, intermediate_size=3072,
                    seq_len=128, batch_size=256, steps=30),
    "base512": dict(num_layers=12, hidden_size=768, num_heads=12, intermediate_size=3072,
                    seq_len=512, batch_size=64, steps=30),
}


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class _Clock:
    """Wall and process CPU time at the end of the warm-up steps and at the last step (device
    synchronised). CPU time (all threads of this process) is the steadier figure on a CPU shared
    with other jobs: it does not count the time others held the cores."""

    def __init__(self, last: int):
        self.last, self.t, self.cpu = last, {}, {}

    def at(self, step: int) -> None:
        if step in (WARMUP_STEPS, self.last):
            _sync()
            self.t[step], self.cpu[step] = time.perf_counter(), time.process_time()

    def result(self, tokens_per_step: int) -> dict:
        tokens = tokens_per_step * (self.last - WARMUP_STEPS)
        return {"tokens_per_s": tokens / (self.t[self.last] - self.t[WARMUP_STEPS]),
                "tokens_per_cpu_s": tokens / (self.cpu[self.last] - self.cpu[WARMUP_STEPS])}


def prepare(folder: Path, seq_len: int) -> None:
    """Train the 8k BPE tokenizer on the pydoc text and pack it into `folder` (once, in the parent)."""
    from workbench.testing import offline_text
    from workbench.training.corpus import Corpus, pack
    from workbench.training.tokenizer import train_bpe_tokenizer

    corpus = Corpus.from_texts(offline_text(), name="pydoc")
    tok = train_bpe_tokenizer(corpus.texts(), folder / "tok", vocab_size=8000, model_max_length=seq_len)
    pack(corpus, tok, seq_len=seq_len, heldout=0.02, tokenizer_dir=folder / "tok",
         use_cache=False).save(folder / "packed")


def ours(folder: Path, s: dict, steps: int) -> dict:
    """`wb.pretrain` for WARMUP_STEPS + steps optimiser steps; tokens/s of the timed steps."""
    from workbench.training.corpus import PackedCorpus
    from workbench.training.pretrain import PretrainConfig, pretrain

    packed = PackedCorpus.load(folder / "packed")
    tok = packed.tokenizer()
    clock = _Clock(WARMUP_STEPS + steps)

    def on_event(e):
        if e.kind == "step":
            clock.at(e.step)

    # a step row (which reads the loss) every WARMUP_STEPS steps, as a run logs every log_every
    config = PretrainConfig(**s, max_steps=WARMUP_STEPS + steps, warmup_steps=2,
                            log_every=WARMUP_STEPS, eval_every=10**9, checkpoint_every=10**9,
                            checkpoint_minutes=0, eval_sequences=8, vocab_size=len(tok), learning_rate=5e-4)
    run = pretrain(packed, config=config, tokenizer=tok, root=folder / f"runs-{os.getpid()}",
                   callbacks=[on_event])
    return {**clock.result(config.tokens_per_step), "compiled": run.summary.get("compiled"),
            "masked_fraction": run.summary.get("masked_fraction")}


def peer(folder: Path, s: dict, steps: int) -> dict:
    """The Trainer + DataCollatorForLanguageModeling + RobertaForMaskedLM with the same settings."""
    from transformers import (DataCollatorForLanguageModeling, RobertaConfig, RobertaForMaskedLM,
                              Trainer, TrainerCallback, TrainingArguments)

    from workbench.training.corpus import PackedCorpus

    packed = PackedCorpus.load(folder / "packed")
    tok = packed.tokenizer()
    cuda = torch.cuda.is_available()
    rc = RobertaConfig(vocab_size=len(tok), hidden_size=s["hidden_size"],
                       num_hidden_layers=s["num_layers"], num_attention_heads=s["num_heads"],
                       intermediate_size=s["intermediate_size"],
                       max_position_embeddings=s["seq_len"] + 2, type_vocab_size=1,
                       pad_token_id=tok.pad_token_id, hidden_dropout_prob=0.0,
                       attention_probs_dropout_prob=0.0, layer_norm_eps=1e-5)
    torch.manual_seed(0)
    model = RobertaForMaskedLM._from_config(rc, attn_implementation="sdpa")
    rows = [{"input_ids": r.astype("int64").tolist(),
             "attention_mask": (r != tok.pad_token_id).astype("int64").tolist()}
            for r in packed.train]
    clock = _Clock(WARMUP_STEPS + steps)

    class Timer(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            clock.at(state.global_step)

    args = TrainingArguments(
        output_dir=str(folder / f"trainer-{os.getpid()}"), per_device_train_batch_size=s["batch_size"],
        max_steps=WARMUP_STEPS + steps, learning_rate=5e-4, warmup_steps=2,
        adam_beta2=0.98, adam_epsilon=1e-6, weight_decay=0.01, logging_steps=WARMUP_STEPS,
        save_strategy="no", report_to=[], bf16=cuda, dataloader_num_workers=0,
        use_cpu=not cuda, disable_tqdm=True, seed=0)
    collator = DataCollatorForLanguageModeling(tok, mlm=True, mlm_probability=0.15)
    trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=collator,
                      callbacks=[Timer()])
    trainer.train()
    return {**clock.result(s["batch_size"] * s["seq_len"]), "optim": args.optim}


def _child(side: str, folder: Path, shape: str) -> dict:
    """Run one side in a fresh process; its result (one JSON line)."""
    cmd = [sys.executable, __file__, "--side", side, "--data", str(folder), "--shape", shape]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    got = side_result(cmd, env, f"bench_pretrain --side {side} --shape {shape}")
    print(f"[bench_pretrain] {shape} {side}: {got['tokens_per_s']:.1f} tokens/s, "
          f"{got['tokens_per_cpu_s']:.1f} tokens per CPU-second ({load_average()})", flush=True)
    return got


def compare(shape: str, repeats: int) -> list[dict]:
    """Ours vs the Trainer at `shape`: `repeats` pairs, order alternated, medians."""
    s = SHAPES[shape]
    got = {"ours": [], "peer": []}
    loads = [load_average()]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        prepare(folder, s["seq_len"])
        for r in range(repeats):
            for side in (("ours", "peer") if r % 2 == 0 else ("peer", "ours")):
                got[side].append(_child(side, folder, shape))
            loads.append(load_average())
    o, p = ([x["tokens_per_s"] for x in got[k]] for k in ("ours", "peer"))
    oc, pc = ([x["tokens_per_cpu_s"] for x in got[k]] for k in ("ours", "peer"))
    pairs, cpu_pairs = [a / b for a, b in zip(o, p)], [a / b for a, b in zip(oc, pc)]
    size = (f"{s['num_layers']}x{s['hidden_size']}, vocab 8k, batch {s['batch_size']}x{s['seq_len']}, "
            f"{'bf16 autocast' if torch.cuda.is_available() else 'fp32'}")
    notes = (f"{size}; median of {repeats} fresh processes per side, order alternated; "
             f"{s['steps']} timed steps after {WARMUP_STEPS}; pairwise ratios of tokens/s "
             f"{', '.join(f'{x:.2f}' for x in pairs)}, of tokens per CPU-second "
             f"{', '.join(f'{x:.2f}' for x in cpu_pairs)}; {'; '.join(loads)}")
    peer_name = "transformers Trainer + DataCollatorForLanguageModeling + RobertaForMaskedLM (full head)"
    med = statistics.median
    rows = [{"benchmark": "pretrain", "measure": f"training tokens/s ({shape})", "unit": "tokens/s",
             "ours": med(o), "peer": med(p), "peer_name": peer_name, "higher_is_better": True,
             "notes": notes, "median_pair_ratio": med(pairs),
             "samples": {"ours": o, "peer": p, "pair_ratios": pairs,
                         "masked_fraction": [x.get("masked_fraction") for x in got["ours"]]}}]
    if not torch.cuda.is_available():  # the steadier figure on a shared CPU
        rows.append({"benchmark": "pretrain", "measure": f"training tokens per CPU-second ({shape})",
                     "unit": "tokens/CPU-s", "ours": med(oc), "peer": med(pc), "peer_name": peer_name,
                     "higher_is_better": True, "median_pair_ratio": med(cpu_pairs),
                     "notes": "process CPU time (all threads) over the same timed steps",
                     "samples": {"ours": oc, "peer": pc, "pair_ratios": cpu_pairs}})
    if torch.cuda.is_available():
        rows.append(_mfu_row(shape, med(o), med(p), got["ours"][0].get("masked_fraction")))
    return rows


def _mfu_row(shape: str, ours_tps: float, peer_tps: float | None, fraction: float | None) -> dict:
    from workbench.training.pretrain import PretrainConfig, model_flops_per_token, peak_flops

    s = {k: v for k, v in SHAPES[shape].items() if k != "steps"}
    dev = torch.device("cuda")
    peak = peak_flops(dev) or float("nan")
    cfg = PretrainConfig(**s)
    fraction = fraction or cfg.mask_probability  # the run's measured share of selected positions
    ours_flops = model_flops_per_token(cfg, 8000, fraction)
    peer_flops = model_flops_per_token(cfg, 8000, 1.0)  # the full head's real work
    return {"benchmark": "pretrain", "measure": f"MFU ({shape})", "unit": "fraction of bf16 peak",
            "ours": ours_tps * ours_flops / peak, "peer": peer_tps * peer_flops / peak if peer_tps else None,
            "peer_name": "transformers Trainer (full head FLOPs counted)" if peer_tps else "none (ours alone)",
            "higher_is_better": True,
            "notes": f"{torch.cuda.get_device_name(dev)}, peak {peak:.3g} FLOP/s; "
                     f"{ours_flops / 1e6:.1f} MFLOP/token for ours (LM head at the {fraction:.3f} of "
                     f"positions selected), {peer_flops / 1e6:.1f} for the Trainer's full head"}


def run(quick: bool = False) -> list[dict]:
    """The runner's rows. On a CPU: the ratio at the 4x256 shape. On CUDA, what
    $WORKBENCH_BENCH_PRETRAIN lists (default "demo,base128,base512"): "demo" = the ratio at the
    demo model's shape with both sides' MFU, "base128"/"base512" = the MFU of ours alone at
    roberta-base's shape. Quick: the tiny shape, one pair (and one MFU process per MFU item)."""
    if not torch.cuda.is_available():
        return compare("quick", 1) if quick else compare("cpu", repeats=3)
    plan = os.environ.get("WORKBENCH_BENCH_PRETRAIN", "demo,base128,base512").split(",")
    rows = []
    for item in filter(None, plan):
        if item == "demo":
            rows += compare("quick", 1) if quick else compare("demo", 3)
        else:
            rows.append(mfu("quick" if quick else item))
    return rows


def mfu(shape: str) -> dict:
    """MFU of ours alone at `shape` (one fresh process)."""
    with tempfile.TemporaryDirectory() as tmp:
        prepare(Path(tmp), SHAPES[shape]["seq_len"])
        got = _child("ours", Path(tmp), shape)
    if not torch.cuda.is_available():  # no peak to divide by: report tokens/s only
        return {"benchmark": "pretrain", "measure": f"training tokens/s ({shape}, ours only)",
                "unit": "tokens/s", "ours": got["tokens_per_s"], "peer": None,
                "peer_name": "none (ours alone)", "higher_is_better": True,
                "notes": "no CUDA device: MFU needs a bf16 peak"}
    return _mfu_row(shape, got["tokens_per_s"], None, got.get("masked_fraction"))


def _arg(name: str, default=None):
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.path.insert(0, str(REPO))
    if "--side" in sys.argv:  # one side in this process: one JSON line
        shape = SHAPES[_arg("--shape")]
        sizes = {k: v for k, v in shape.items() if k != "steps"}
        fn = ours if _arg("--side") == "ours" else peer
        print(json.dumps(fn(Path(_arg("--data")), sizes, shape["steps"])))
    elif "--mfu" in sys.argv:
        print(json.dumps(mfu(_arg("--mfu"))))
    else:
        quick = "--quick" in sys.argv
        shape = _arg("--shape")
        rows = compare(shape, int(_arg("--repeats", 3))) if shape else run(quick=quick)
        for row in rows:
            print(json.dumps(row))
