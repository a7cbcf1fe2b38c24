"""Fine-tuning throughput: `wb.finetune` vs transformers' `Trainer`, same model, data, batch, precision.

Both train a sequence classifier on the same train/validation split (`_tables`: 20,000 SST-2
sentences for 2 epochs on a GPU; the offline sentiment demo, data/sentiment, for 1 epoch on a
CPU), with the same optimiser settings (AdamW 0.9/0.98, eps 1e-6, weight decay 0.1, 6% linear
warm-up, clipping 1.0), batch size, max length and precision (bf16 autocast on a GPU, fp32 on a
CPU). The Trainer gets its fair fast path: `DataCollatorWithPadding` (dynamic padding) and the
`group_by_length` sampler, no checkpoints, no evaluation during training; ours likewise evaluates
once, after the last step. Examples/s counts training examples between the start of training and
the last optimiser step (callbacks on both sides); model loading, tokenisation and the final
evaluation are outside the timing, and a 3-step warm-up run of each side comes first, so neither
pays for CUDA start-up alone. Each side runs in its own fresh process (on a GPU, cuDNN keeps the
attention plans it built for each padded shape, and a side run second in the same process would
find the first side's plans ready: profiled in benchmarks/results/h200-2026-11-28-session2/), the
order alternates over 3 pairs, and the rows give the medians with every sample. Both validation
accuracies are reported so speed is not bought with worse training.

Model: `$WORKBENCH_BENCH_MODEL` if set, else the embedded default ('demo') when present, else a
random RoBERTa (4 layers, 256 wide; roberta-base-shaped on a GPU) with the tiny test tokenizer.
Quick mode: the tiny test model on 160 examples, no warm-up. The pairs run twice: on the machine
as it is, then with one busy process per core started by the benchmark (`busy_cores`; issue 28.5:
on a machine shared with other jobs, `wb.finetune` had fallen to 0.24x the Trainer).

    python benchmarks/bench_finetune.py [--quick] [--no-load]
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling helper below

from fresh_process import load_average, side_result  # noqa: E402

BATCH = 32
MAX_LENGTH = 128
WARMUP_STEPS = 3
REPO = Path(__file__).resolve().parent.parent


def _model(folder: Path, quick: bool) -> tuple[str, str]:
    """(path or name, description) of the model both sides train."""
    from transformers import RobertaConfig, RobertaForMaskedLM

    from workbench.resources import demo_model_dir
    from workbench.testing import make_tiny_model

    if os.environ.get("WORKBENCH_BENCH_MODEL"):
        path = os.environ["WORKBENCH_BENCH_MODEL"]
        return path, os.environ.get("WORKBENCH_BENCH_MODEL_DESC", path)
    if not quick and (demo_model_dir() / "config.json").exists():
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


def _ours(model: str, data, cfg, callbacks=()) -> tuple[float, float, float]:
    """(examples/s, validation accuracy, examples per CPU-second) of `wb.finetune`."""
    import workbench as wb

    times = {}

    def clock(event):
        if event.kind == "start":
            times["start"], times["cpu0"] = time.perf_counter(), time.process_time()
        elif event.kind == "step":
            times["last"], times["cpu1"] = time.perf_counter(), time.process_time()

    run = wb.finetune(model, data, config=cfg, callbacks=[clock, *callbacks], progress=False,
                      root=tempfile.mkdtemp(prefix="bench_runs_"))
    examples = run.summary["examples_seen"]
    # the first step's examples are timed from the start event, so count them all
    return (examples / (times["last"] - times["start"]), run.summary["eval_accuracy"],
            examples / (times["cpu1"] - times["cpu0"]))


def _trainer(model: str, data, cfg, bf16: bool, max_steps: int = -1,
             callbacks=()) -> tuple[float, float, float]:
    """(examples/s, validation accuracy, examples per CPU-second) of the Trainer."""
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer,
                              DataCollatorWithPadding, Trainer, TrainerCallback, TrainingArguments)

    from workbench.resources import demo_model_dir

    path = str(demo_model_dir()) if model == "demo" else model
    tok = AutoTokenizer.from_pretrained(path)
    torch.manual_seed(cfg.seed)
    # fp32 weights as ours (the Trainer's bf16 flag autocasts over them): transformers 5 loads
    # a checkpoint in its stored dtype by default, and the embedded model is stored in fp16,
    # whose matmuls on a CPU ran 67x slower than fp32 ones (profile_finetune.py)
    net = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=data.num_labels, attn_implementation="sdpa", dtype=torch.float32)

    def encode(frame):  # a plain list of examples: the Trainer needs no `datasets` for it
        enc = tok(frame["text"].tolist(), truncation=True, max_length=cfg.max_length)
        return [{"input_ids": i, "attention_mask": m, "labels": int(y)}
                for i, m, y in zip(enc["input_ids"], enc["attention_mask"], frame["label"])]

    times = {}

    class Clock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            times["start"], times["cpu0"] = time.perf_counter(), time.process_time()

        def on_step_end(self, args, state, control, **kw):
            times["last"], times["cpu1"] = time.perf_counter(), time.process_time()

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
    return (seen / (times["last"] - times["start"]), trainer.evaluate()["eval_accuracy"],
            seen / (times["cpu1"] - times["cpu0"]))


SST2 = Path(os.environ.get("WORKBENCH_BENCH_SST2", REPO.parent / "shared" / "data" / "sst2"))


def _tables(quick: bool):
    """(train, validation frames with `text` and `label`, description, epochs).

    On a GPU with SST-2's TSVs at hand ($WORKBENCH_BENCH_SST2, default ../shared/data/sst2): 20,000
    training sentences (WORKBENCH_BENCH_FT_EXAMPLES) for 2 epochs, 2,000 validation sentences.
    Elsewhere the offline sentiment demo (800 rows, 1 epoch; 160 rows in quick mode)."""
    import pandas as pd

    from workbench.resources import sentiment_sample_path
    from workbench.training.tables import load_task_data

    if torch.cuda.is_available() and not quick and (SST2 / "train.tsv").is_file():
        n = int(os.environ.get("WORKBENCH_BENCH_FT_EXAMPLES", 20_000))
        read = lambda name, k: pd.read_csv(SST2 / name, sep="\t", quoting=3).rename(  # noqa: E731
            columns={"sentence": "text"}).sample(frac=1.0, random_state=0).head(k)
        train, val = read("train.tsv", n), read("dev.tsv", 2000)
        return train, val, f"SST-2 ({SST2})", int(os.environ.get("WORKBENCH_BENCH_FT_EPOCHS", 2))
    n = 160 if quick else 800
    table = pd.read_csv(sentiment_sample_path(), sep="\t", quoting=3).head(n)
    data = load_task_data(table, seed=0)
    names = data.label_names
    return (data.train.assign(label=[names[i] for i in data.train["label"]]),
            data.validation.assign(label=[names[i] for i in data.validation["label"]]),
            "data/sentiment", 1)


def setup(tmp: Path, quick: bool):
    """(model, description, TaskData, the same split as a dict of frames, FineTuneConfig, bf16)."""
    import workbench as wb
    from workbench.training.tables import load_task_data

    bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    model, described = _model(tmp, quick)
    train, val, source, epochs = _tables(quick)
    split = {"train": train[["text", "label"]], "validation": val[["text", "label"]]}
    data = load_task_data(split, seed=0)
    # one evaluation, after the last step (outside the timing, as the Trainer's); no checkpoint
    # before it: both sides spend the timed window on training alone
    cfg = wb.FineTuneConfig(batch_size=BATCH, epochs=epochs, max_length=MAX_LENGTH,
                            learning_rate=1e-3 if quick else 5e-5, eval_every=10**9,
                            checkpoint_minutes=0, precision="bf16" if bf16 else "fp32",
                            log_every=10**6)
    return model, f"{described}; {source}", data, split, cfg, bf16


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
        speed, accuracy, cpu = (_ours(model, split, cfg) if side == "ours"
                                else _trainer(model, data, cfg, bf16))
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    notes = (f"{described}; {len(data.train)} train / {len(data.validation)} validation "
             f"examples; batch {BATCH}, {cfg.epochs} epoch(s), max_length {MAX_LENGTH}, "
             f"{'bf16 autocast' if bf16 else 'fp32'} on {device}")
    return {"speed": speed, "accuracy": accuracy, "cpu_speed": cpu, "notes": notes}


def _child(side: str, quick: bool, env: dict) -> dict:
    cmd = [sys.executable, __file__, "--side", side] + (["--quick"] if quick else [])
    got = side_result(cmd, env, f"bench_finetune --side {side}")
    print(f"[bench_finetune] {side}: {got['speed']:.2f} examples/s, {got['cpu_speed']:.2f} per "
          f"CPU-second, accuracy {got['accuracy']:.3f} ({load_average()})", flush=True)
    return got


@contextlib.contextmanager
def busy_cores(n: int | None = None):
    """`n` (default: one per core) processes that only spin, at normal priority, for the block:
    the controlled load of a machine where other work runs beside the notebook."""
    n = n or os.cpu_count() or 1
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        time.sleep(1.0)  # let them reach the run queue before the first side starts
        yield n
    finally:
        for proc in spinners:
            proc.kill()
            proc.wait()


def _pairs(quick: bool, repeats: int, env: dict) -> tuple[dict, list[str]]:
    """`repeats` pairs, each side in a fresh process, the order alternated: samples and loads."""
    samples = {"ours": [], "trainer": []}
    loads = [load_average()]
    for r in range(repeats):
        for side in (("ours", "trainer") if r % 2 == 0 else ("trainer", "ours")):
            samples[side].append(_child(side, quick, env))
        loads.append(load_average())
    return samples, loads


def _rows(samples: dict, loads: list[str], repeats: int, condition: str = "") -> list[dict]:
    """The medians, every sample and the pairwise ratios; `condition` names a background load."""
    speed, cpu, accuracy = ({k: [x[m] for x in v] for k, v in samples.items()}
                            for m in ("speed", "cpu_speed", "accuracy"))
    pairs = [a / b for a, b in zip(speed["ours"], speed["trainer"])]
    cpu_pairs = [a / b for a, b in zip(cpu["ours"], cpu["trainer"])]
    notes = (f"{samples['ours'][0]['notes']}; median of {repeats} fresh processes per side, order "
             f"alternated; pairwise ratios of examples/s {', '.join(f'{x:.2f}' for x in pairs)}, of "
             f"examples per CPU-second {', '.join(f'{x:.2f}' for x in cpu_pairs)}; {'; '.join(loads)}")
    med, under = statistics.median, f", {condition}" if condition else ""
    peer = {"peer_name": "transformers Trainer", "higher_is_better": True}
    rows = [
        {"benchmark": "finetune", "measure": f"training examples/s{under}", "unit": "examples/s",
         "ours": med(speed["ours"]), "peer": med(speed["trainer"]), **peer, "notes": notes,
         "median_pair_ratio": med(pairs),
         "samples": {"ours": speed["ours"], "peer": speed["trainer"], "pair_ratios": pairs}},
        {"benchmark": "finetune", "measure": f"validation accuracy after training{under}",
         "unit": "accuracy", "ours": med(accuracy["ours"]), "peer": med(accuracy["trainer"]),
         **peer, "notes": "same split; different random head initialisation; medians",
         "samples": {"ours": accuracy["ours"], "peer": accuracy["trainer"]}},
    ]
    if not torch.cuda.is_available():  # the steadier figure on a shared CPU
        rows.append({"benchmark": "finetune", "measure": f"training examples per CPU-second{under}",
                     "unit": "examples/CPU-s", "ours": med(cpu["ours"]), "peer": med(cpu["trainer"]),
                     **peer, "median_pair_ratio": med(cpu_pairs),
                     "notes": "process CPU time (all threads) over the same timed window",
                     "samples": {"ours": cpu["ours"], "peer": cpu["trainer"], "pair_ratios": cpu_pairs}})
    return rows


def run(quick: bool = False, repeats: int | None = None, loaded: bool | None = None) -> list[dict]:
    """`repeats` pairs (3; 1 in quick mode), each side in a fresh process, the order alternated;
    the rows hold the medians, every sample and the pairwise ratios. `loaded`: the same pairs
    again with one busy process per core beside them (`busy_cores`), where a loop that spins
    or oversubscribes the cores loses most (issue 28.5); by default in a measurement, not in
    quick mode (a smoke test of the code path; tests/test_training_threads.py covers the load)."""
    repeats = repeats or (1 if quick else 3)
    loaded = (not quick) if loaded is None else loaded
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    with tempfile.TemporaryDirectory() as tmp:
        if "WORKBENCH_BENCH_MODEL" not in env:  # build the random model once, not per process
            env["WORKBENCH_BENCH_MODEL"], env["WORKBENCH_BENCH_MODEL_DESC"] = _model(Path(tmp), quick)
        rows = _rows(*_pairs(quick, repeats, env), repeats)
        if loaded:
            with busy_cores() as n:
                rows += _rows(*_pairs(quick, repeats, env), repeats,
                              f"{n} busy processes beside it (one per core)")
    return rows


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(REPO))
    quick = "--quick" in sys.argv
    if "--side" in sys.argv:  # one side, in this process: print its result as one JSON line
        print(json.dumps(measure_side(sys.argv[sys.argv.index("--side") + 1], quick)))
    else:
        for row in run(quick=quick, loaded="--no-load" not in sys.argv):
            ratio = row["ours"] / row["peer"] if row["peer"] else float("nan")
            print(f"{row['measure']}: ours {row['ours']:.4g}  {row['peer_name']} {row['peer']:.4g}  "
                  f"ratio {ratio:.2f}  ({row['notes']})")
