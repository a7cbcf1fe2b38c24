"""Fine-tuning throughput: `wb.finetune` vs transformers' `Trainer`, same model, data, batch, precision.

Both train a sequence classifier for one epoch on the same train/validation split of the offline
sentiment demo (data/sentiment), with the same optimiser settings (AdamW 0.9/0.98, eps 1e-6, weight
decay 0.1, 6% linear warm-up, clipping 1.0), batch size, max length and precision (bf16 autocast
on a GPU, fp32 on a CPU). The Trainer gets its fair fast path: `DataCollatorWithPadding` (dynamic
padding) and the `group_by_length` sampler, no checkpoints, no evaluation during training. Examples/s
counts training examples between the start of training and the last optimiser step (callbacks on
both sides); model loading, tokenisation and the final evaluation are outside the timing, and a
3-step warm-up run of each side comes first, so neither pays for CUDA start-up alone. Each side
runs in its own process: on a GPU, cuDNN keeps the attention plans it built for each padded shape,
and a side run second in the same process would find the first side's plans ready (profiled in
benchmarks/results/h200-2026-11-28-session2/). Both final validation accuracies are reported so
speed is not bought with worse training.

Model: `$WORKBENCH_BENCH_MODEL` if set, else the embedded default ('demo') when present, else a
random RoBERTa (4 layers, 256 wide; roberta-base-shaped on a GPU) with the tiny test tokenizer.
Quick mode: the tiny test model on 160 examples, no warm-up.

    python benchmarks/bench_finetune.py [--quick]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

BATCH = 32
MAX_LENGTH = 128
WARMUP_STEPS = 3


def _model(folder: Path, quick: bool) -> tuple[str, str]:
    """(path or name, description) of the model both sides train."""
    from transformers import RobertaConfig, RobertaForMaskedLM

    from workbench.models import demo_model_path
    from workbench.testing import make_tiny_model

    if os.environ.get("WORKBENCH_BENCH_MODEL"):
        return os.environ["WORKBENCH_BENCH_MODEL"], os.environ["WORKBENCH_BENCH_MODEL"]
    if not quick and (demo_model_path() / "config.json").exists():
        return "demo", "demo (embedded default)"
    tiny = make_tiny_model(folder / "tiny")
    if quick:
        return str(tiny), "tiny random RoBERTa (2x32)"
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny)
    big = torch.cuda.is_available()
    cfg = RobertaConfig(vocab_size=len(tok), pad_token_id=tok.pad_token_id,
                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                        max_position_embeddings=514,
                        **({} if big else dict(hidden_size=256, num_hidden_layers=4,
                                               num_attention_heads=4, intermediate_size=1024)))
    torch.manual_seed(0)
    RobertaForMaskedLM(cfg).save_pretrained(folder / "random")
    tok.model_max_length = 512
    tok.save_pretrained(folder / "random")
    shape = "roberta-base-shaped (12x768)" if big else "4x256"
    return str(folder / "random"), f"random RoBERTa {shape}, 1k BPE vocabulary"


def _ours(model: str, data, cfg, callbacks=()) -> tuple[float, float]:
    import workbench as wb

    times = {}

    def clock(event):
        if event.kind == "start":
            times["start"] = time.perf_counter()
        elif event.kind == "step":
            times["last"] = time.perf_counter()

    run = wb.finetune(model, data, config=cfg, callbacks=[clock, *callbacks], progress=False,
                      root=tempfile.mkdtemp(prefix="bench_runs_"))
    examples = run.summary["examples_seen"]
    # the first step's examples are timed from the start event, so count them all
    return examples / (times["last"] - times["start"]), run.summary["eval_accuracy"]


def _trainer(model: str, data, cfg, bf16: bool, max_steps: int = -1,
             callbacks=()) -> tuple[float, float]:
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer,
                              DataCollatorWithPadding, Trainer, TrainerCallback, TrainingArguments)

    from workbench.models import demo_model_path

    path = str(demo_model_path()) if model == "demo" else model
    tok = AutoTokenizer.from_pretrained(path)
    torch.manual_seed(cfg.seed)
    net = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=data.num_labels, attn_implementation="sdpa")

    def encode(frame):  # a plain list of examples: the Trainer needs no `datasets` for it
        enc = tok(frame["text"].tolist(), truncation=True, max_length=cfg.max_length)
        return [{"input_ids": i, "attention_mask": m, "labels": int(y)}
                for i, m, y in zip(enc["input_ids"], enc["attention_mask"], frame["label"])]

    times = {}

    class Clock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            times["start"] = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            times["last"] = time.perf_counter()

    import inspect

    accepted = inspect.signature(TrainingArguments.__init__).parameters
    # transformers 5.x renamed these; pass whichever this version takes
    sampling = ({"train_sampling_strategy": "group_by_length"}
                if "train_sampling_strategy" in accepted else {"group_by_length": True})
    warmup = ({"warmup_ratio": cfg.warmup_ratio} if "warmup_ratio" in accepted
              else {"warmup_steps": cfg.warmup_ratio})  # a float below 1 is a fraction of steps
    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="bench_trainer_"), per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size * 2, num_train_epochs=cfg.epochs,
        max_steps=max_steps,
        learning_rate=cfg.learning_rate, weight_decay=cfg.weight_decay, **warmup, **sampling,
        adam_beta2=0.98, adam_epsilon=1e-6, max_grad_norm=cfg.max_grad_norm,
        lr_scheduler_type="linear", bf16=bf16, save_strategy="no",
        eval_strategy="no", logging_strategy="no", report_to=[], dataloader_num_workers=0,
        seed=cfg.seed, disable_tqdm=True, use_cpu=not torch.cuda.is_available())
    trainer = Trainer(model=net, args=args, train_dataset=encode(data.train),
                      eval_dataset=encode(data.validation),
                      data_collator=DataCollatorWithPadding(tok), callbacks=[Clock(), *callbacks],
                      compute_metrics=lambda p: {"accuracy": float(
                          (np.argmax(p.predictions, -1) == p.label_ids).mean())})
    out = trainer.train()
    seen = min(len(data.train) * cfg.epochs, out.global_step * cfg.batch_size)
    return seen / (times["last"] - times["start"]), trainer.evaluate()["eval_accuracy"]


def setup(tmp: Path, quick: bool):
    """(model, description, TaskData, the same split as a dict of frames, FineTuneConfig, bf16)."""
    import pandas as pd

    import workbench as wb
    from workbench.training.demo_data import sentiment_demo_path
    from workbench.training.tables import load_task_data

    bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    n = 160 if quick else (4000 if torch.cuda.is_available() else 1500)
    model, described = _model(tmp, quick)
    table = pd.read_csv(sentiment_demo_path(), sep="\t", quoting=3).head(n)
    data = load_task_data(table, seed=0)
    names = data.label_names
    split = {"train": data.train.assign(label=[names[i] for i in data.train["label"]]),
             "validation": data.validation.assign(label=[names[i] for i in data.validation["label"]])}
    cfg = wb.FineTuneConfig(batch_size=BATCH, epochs=1, max_length=MAX_LENGTH,
                            learning_rate=1e-3 if quick else 5e-5,
                            precision="bf16" if bf16 else "fp32", log_every=1000)
    return model, described, data, split, cfg, bf16


def measure_side(side: str, quick: bool) -> dict:
    """Warm up, then time one side ("ours" or "trainer") in this process."""
    with tempfile.TemporaryDirectory() as tmp:
        model, described, data, split, cfg, bf16 = setup(Path(tmp), quick)
        # warm-up: CUDA context, kernel loading and allocator growth are not the loop's cost
        if not quick:  # (quick mode is a smoke test of the code path, not a measurement)
            if side == "ours":
                _ours(model, split, cfg.replace(max_steps=WARMUP_STEPS))
            else:
                _trainer(model, data, cfg, bf16, max_steps=WARMUP_STEPS)
        speed, accuracy = _ours(model, split, cfg) if side == "ours" else _trainer(model, data, cfg, bf16)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    notes = (f"{described}; {len(data.train)} train / {len(data.validation)} validation "
             f"examples of data/sentiment; batch {BATCH}, 1 epoch, max_length {MAX_LENGTH}, "
             f"{'bf16 autocast' if bf16 else 'fp32'} on {device}; each side in its own process")
    return {"speed": speed, "accuracy": accuracy, "notes": notes}


def run(quick: bool = False) -> list[dict]:
    repo = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")])))
    sides = {}
    for side in ("ours", "trainer"):
        cmd = [sys.executable, __file__, "--side", side] + (["--quick"] if quick else [])
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
        if done.returncode != 0 or not lines:
            raise RuntimeError(f"bench_finetune --side {side} failed:\n{done.stderr[-3000:]}")
        sides[side] = json.loads(lines[-1])
    ours, peer = sides["ours"], sides["trainer"]
    return [
        {"benchmark": "finetune", "measure": "training examples/s", "unit": "examples/s",
         "ours": ours["speed"], "peer": peer["speed"], "peer_name": "transformers Trainer",
         "higher_is_better": True, "notes": ours["notes"]},
        {"benchmark": "finetune", "measure": "validation accuracy after 1 epoch", "unit": "accuracy",
         "ours": ours["accuracy"], "peer": peer["accuracy"], "peer_name": "transformers Trainer",
         "higher_is_better": True, "notes": "same split; different random head initialisation"},
    ]


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    quick = "--quick" in sys.argv
    if "--side" in sys.argv:  # one side, in this process: print its result as one JSON line
        print(json.dumps(measure_side(sys.argv[sys.argv.index("--side") + 1], quick)))
    else:
        for row in run(quick=quick):
            ratio = row["ours"] / row["peer"] if row["peer"] else float("nan")
            print(f"{row['measure']}: ours {row['ours']:.4g}  {row['peer_name']} {row['peer']:.4g}  "
                  f"ratio {ratio:.2f}  ({row['notes']})")
