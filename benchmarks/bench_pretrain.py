"""Pretraining throughput: `wb.pretrain` vs transformers' `Trainer` + `DataCollatorForLanguageModeling`
+ `RobertaForMaskedLM` (full LM head), same model size, data, batch, precision, same process.

Both sides train a randomly initialised RoBERTa on the same packed sequences (the offline pydoc
text, tokenised once by `workbench.training.corpus.pack`), 15% masking with 80/10/10, AdamW, the
same batch size and sequence length; bf16 autocast on a GPU, fp32 on a CPU. Tokens/s counts
`batch x seq_len` per optimiser step between the end of the warm-up steps and the last step
(callbacks on both sides), so tokenisation, model building and CUDA start-up are outside the timing.
What differs is what the workbench does differently: the LM head runs only at masked positions,
masks are made on the device, and (on CUDA) the encoder is compiled with torch.compile; the Trainer
runs with its defaults (no compile), as a user would call it.

On CUDA, model FLOPs utilisation is reported for ours: (6·N + attention + masked-only decoder)
FLOPs per token x tokens/s over the device's dense bf16 peak (989 TFLOP/s for H100/H200).

    python benchmarks/bench_pretrain.py [--quick]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

WARMUP_STEPS = 3


def _sizes(quick: bool, cuda: bool) -> dict:
    if quick:
        return dict(num_layers=2, hidden_size=64, num_heads=2, intermediate_size=256, seq_len=64,
                    batch_size=8, steps=8)
    if cuda:  # the embedded default model's shape
        return dict(num_layers=6, hidden_size=384, num_heads=6, intermediate_size=1536, seq_len=256,
                    batch_size=128, steps=60)
    return dict(num_layers=4, hidden_size=256, num_heads=4, intermediate_size=1024, seq_len=128,
                batch_size=16, steps=12)


class _Clock:
    """Timestamps of optimiser steps."""

    def __init__(self):
        self.times: list[float] = []

    def tokens_per_s(self, tokens_per_step: int) -> float:
        t = self.times[WARMUP_STEPS:]
        if len(t) < 2:
            return float("nan")
        return tokens_per_step * (len(t) - 1) / (t[-1] - t[0])


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def run(quick: bool = False) -> list[dict]:
    from transformers import (DataCollatorForLanguageModeling, RobertaConfig, RobertaForMaskedLM,
                              Trainer, TrainerCallback, TrainingArguments)

    from workbench.testing import offline_text
    from workbench.training.corpus import Corpus, pack
    from workbench.training.pretrain import PretrainConfig, model_flops_per_token, peak_flops, pretrain
    from workbench.training.tokenizer import train_bpe_tokenizer

    cuda = torch.cuda.is_available()
    s = _sizes(quick, cuda)
    steps = s.pop("steps")
    tokens_per_step = s["batch_size"] * s["seq_len"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        corpus = Corpus.from_texts(offline_text(), name="pydoc")
        tok = train_bpe_tokenizer(corpus.texts(), tmp / "tok", vocab_size=8000,
                                  model_max_length=s["seq_len"])
        packed = pack(corpus, tok, seq_len=s["seq_len"], heldout=0.02, cache_dir=tmp / "packed",
                      tokenizer_dir=tmp / "tok")

        # --- ours
        clock = _Clock()

        def on_event(e):
            if e.kind == "step":
                _sync()
                clock.times.append(time.perf_counter())

        config = PretrainConfig(**s, max_steps=steps + WARMUP_STEPS, warmup_steps=2, log_every=1,
                                eval_every=10**9, checkpoint_every=10**9, eval_sequences=8,
                                vocab_size=len(tok), lr=5e-4)
        run_ = pretrain(packed, config=config, tokenizer=tok, root=tmp / "runs", callbacks=[on_event])
        ours = clock.tokens_per_s(tokens_per_step)
        compiled = run_.summary.get("compiled")

        # --- peer: Trainer + DataCollatorForLanguageModeling + RobertaForMaskedLM (full head)
        rc = RobertaConfig(vocab_size=len(tok), hidden_size=s["hidden_size"],
                           num_hidden_layers=s["num_layers"], num_attention_heads=s["num_heads"],
                           intermediate_size=s["intermediate_size"],
                           max_position_embeddings=s["seq_len"] + 2, type_vocab_size=1,
                           pad_token_id=tok.pad_token_id, hidden_dropout_prob=0.0,
                           attention_probs_dropout_prob=0.0)
        torch.manual_seed(0)
        model = RobertaForMaskedLM._from_config(rc, attn_implementation="sdpa")
        rows = [{"input_ids": r.astype("int64").tolist(),
                 "attention_mask": (r != tok.pad_token_id).astype("int64").tolist()}
                for r in packed.train]
        peer_clock = _Clock()

        class Timer(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                _sync()
                peer_clock.times.append(time.perf_counter())

        args = TrainingArguments(
            output_dir=str(tmp / "trainer"), per_device_train_batch_size=s["batch_size"],
            max_steps=steps + WARMUP_STEPS, learning_rate=5e-4, warmup_steps=2,
            adam_beta2=0.98, adam_epsilon=1e-6, weight_decay=0.01, logging_steps=10**6,
            save_strategy="no", report_to=[], bf16=cuda, dataloader_num_workers=0,
            use_cpu=not cuda, disable_tqdm=True, seed=0)
        collator = DataCollatorForLanguageModeling(tok, mlm=True, mlm_probability=0.15)
        trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=collator,
                          callbacks=[Timer()])
        trainer.train()
        peer = peer_clock.tokens_per_s(tokens_per_step)

    size = f"{s['num_layers']}x{s['hidden_size']}, vocab {len(tok)}, batch {s['batch_size']}x{s['seq_len']}"
    precision = "bf16 autocast" if cuda else "fp32"
    rows_out = [{
        "benchmark": "pretrain", "measure": "training tokens/s", "unit": "tokens/s",
        "ours": ours, "peer": peer, "peer_name": "transformers Trainer + DataCollatorForLanguageModeling "
                                                 "+ RobertaForMaskedLM (full head)",
        "higher_is_better": True,
        "notes": f"{size}, {precision}, {steps} timed steps after {WARMUP_STEPS} warm-up; "
                 f"ours compiled={compiled}, masked-only head",
    }]
    if cuda:
        dev = torch.device("cuda")
        peak = peak_flops(dev)
        if peak:
            cfg = PretrainConfig(**s)
            ours_flops = model_flops_per_token(cfg, len(tok), 0.15)
            peer_flops = model_flops_per_token(cfg, len(tok), 1.0)  # the full head's real work
            rows_out.append({
                "benchmark": "pretrain", "measure": "MFU (model FLOPs / bf16 peak)", "unit": "fraction",
                "ours": ours * ours_flops / peak, "peer": peer * peer_flops / peak,
                "peer_name": "transformers Trainer (full head FLOPs counted)", "higher_is_better": True,
                "notes": f"{torch.cuda.get_device_name(dev)}, peak {peak:.3g} FLOP/s; "
                         "6N + 12·L·T·d per token, decoder counted where computed",
            })
    return rows_out


if __name__ == "__main__":
    import json

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    for row in run(quick="--quick" in sys.argv):
        print(json.dumps(row))
