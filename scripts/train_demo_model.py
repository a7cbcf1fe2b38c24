"""Train the embedded default model (data/demo-model) from a packed demo corpus, for a time budget.

Needs only torch, transformers, tokenizers, safetensors, numpy and pandas (no workbench install:
the package is imported from this repository). Build the corpus folder first, on any machine:

    .venv/bin/python scripts/build_demo_corpus.py --out .cache/demo_corpus
    python scripts/train_demo_model.py --data .cache/demo_corpus --out data/demo-model --minutes 5.5

It runs `workbench.training.pretrain` with the `demo` preset (6 layers x 384, 16k byte-level BPE,
256-token FULL-SENTENCES sequences, dynamic 15% masking with 80/10/10, AdamW beta2 0.98, warm-up
then linear decay fitted to the time budget, masked-only LM head, bf16 + torch.compile on CUDA),
keeps the checkpoint with the lowest held-out loss, and exports it to `--out` as fp16 safetensors
shards of at most 15 MB (so every file stays small), with the tokenizer and `workbench_record.json`
(config, corpus hash and sources, tokens seen, hardware, wall time, held-out loss / perplexity /
masked top-1 accuracy beside the unigram baseline, throughput and MFU, sample fill-mask answers).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from workbench.device import describe_machine  # noqa: E402
from workbench.training.corpus import PackedCorpus  # noqa: E402
from workbench.training.events import Event  # noqa: E402
from workbench.training.pretrain import PretrainConfig, pretrain  # noqa: E402

PROBES = [
    "The capital of France is <mask>.",
    "The president of the United <mask> spoke to reporters on Tuesday.",
    "She opened the door and walked into the <mask>.",
    "The company said its profits <mask> by 10% last year.",
    "He was arrested by the <mask> after the attack.",
    "The Prime Minister will answer questions in the House of <mask>.",
    "I would like a cup of <mask>, please.",
    "The film won an award for best <mask>.",
]


class Printer:
    """Print one line per step/eval event (plain text: the log is read as text, not a tty)."""

    def __init__(self, every: int = 100):
        self.every = every

    def __call__(self, e: Event) -> None:
        m = e.metrics
        if e.kind == "step" and e.step % self.every == 0:
            extra = f" mfu {m['mfu']:.3f}" if "mfu" in m else ""
            print(f"step {e.step}/{e.total_steps} loss {m['loss']:.3f} lr {m['lr']:.2e} "
                  f"{m['tokens_per_s'] / 1e3:.0f}k tok/s tokens {m['tokens_seen'] / 1e6:.1f}M "
                  f"epoch {m['epoch']} t {m['elapsed_s']:.0f}s{extra}", flush=True)
        elif e.kind == "eval":
            print(f"  eval @{e.step}: loss {m['eval_loss']:.3f} ppl {m['eval_perplexity']:.1f} "
                  f"acc {m['eval_accuracy']:.3f} (unigram {m['eval_unigram_accuracy']:.3f})", flush=True)
        elif e.kind in ("start", "end", "stopped", "error", "checkpoint"):
            print(f"[{e.kind}] step {e.step} {m if e.kind != 'end' else ''}", flush=True)


class KeepBest:
    """Keep only the checkpoint with the lowest held-out loss and the newest one."""

    def __init__(self):
        self.eval_loss: dict[int, float] = {}

    @property
    def best_step(self) -> int | None:
        return min(self.eval_loss, key=self.eval_loss.get) if self.eval_loss else None

    def __call__(self, e: Event) -> None:
        if e.kind == "eval":
            self.eval_loss[e.step] = e.metrics["eval_loss"]
        elif e.kind == "checkpoint":
            folder = Path(e.metrics["path"]).parent
            keep = {f"step-{e.step:08d}"}
            if self.best_step is not None:
                keep.add(f"step-{self.best_step:08d}")
            for child in folder.iterdir():
                if child.name.startswith("step-") and child.name not in keep:
                    shutil.rmtree(child, ignore_errors=True)


def fill_mask(model, tokenizer, sentences, k: int = 5) -> list[dict]:
    """Top-k answers of the model at each `<mask>` (plain forward, no pipeline)."""
    model.eval()
    out = []
    with torch.no_grad():
        for s in sentences:
            enc = tokenizer(s, return_tensors="pt").to(model.device)
            logits = model(**enc).logits[0]                                   # (T, V)
            pos = (enc["input_ids"][0] == tokenizer.mask_token_id).nonzero().flatten()
            probs = logits[pos[0]].float().softmax(-1)
            top = probs.topk(k)
            out.append({"text": s, "top": [[tokenizer.decode([int(i)]).strip(), round(float(p), 4)]
                                           for p, i in zip(top.values, top.indices)]})
    return out


KEEP = ("config.json", "tokenizer.json", "tokenizer_config.json", "workbench_record.json")


def export(checkpoint: Path, out: Path, record: dict) -> None:
    """fp16 shards <= 15 MB + tokenizer + record; only the files a loader needs (at most 8), then
    reload the exported folder and record its fill-mask answers (a check that it loads)."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    model = AutoModelForMaskedLM.from_pretrained(checkpoint, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    model.to(torch.float16).save_pretrained(out, max_shard_size="15MB")
    tokenizer.save_pretrained(out)
    for f in out.iterdir():
        if f.name not in KEEP and not f.name.startswith("model"):
            f.unlink()  # redundant copies (special_tokens_map.json, vocab.json/merges.txt, ...)
    reloaded = AutoModelForMaskedLM.from_pretrained(out, dtype=torch.float32)
    record["fill_mask_examples"] = fill_mask(reloaded, AutoTokenizer.from_pretrained(out), PROBES)
    (out / "workbench_record.json").write_text(json.dumps(record, indent=2, default=str))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=".cache/demo_corpus", help="folder from build_demo_corpus.py")
    ap.add_argument("--out", default="data/demo-model", help="where the exported model goes")
    ap.add_argument("--minutes", type=float, default=6.0,
                    help="training time budget (with --resume: the run's total across sessions)")
    ap.add_argument("--runs", default="/tmp/workbench-demo-runs", help="run store for checkpoints")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--learning-rate", type=float, default=None)
    ap.add_argument("--eval-every", type=int, default=None)
    ap.add_argument("--compile", choices=("auto", "yes", "no"), default="auto")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--max-steps", type=int, default=None, help="cap on steps (default: the preset's)")
    ap.add_argument("--tiny", action="store_true", help="a 2-layer model, for a CPU smoke test")
    ap.add_argument("--layers", type=int, default=None, help="override the preset's depth")
    ap.add_argument("--hidden", type=int, default=None, help="override the preset's width")
    ap.add_argument("--heads", type=int, default=None, help="override the preset's head count")
    ap.add_argument("--warmup", type=int, default=None, help="override the preset's warm-up steps")
    ap.add_argument("--resume", default=None, help="a run folder to continue (e.g. after a session ended)")
    args = ap.parse_args(argv)

    t_start = time.time()
    packed = PackedCorpus.load(args.data)
    print(packed, flush=True)
    overrides = {k: v for k, v in dict(batch_size=args.batch_size, learning_rate=args.learning_rate,
                                       eval_every=args.eval_every, max_steps=args.max_steps).items()
                 if v is not None}
    if args.tiny:
        overrides.update(num_layers=2, hidden_size=64, num_heads=2, intermediate_size=128)
    if args.layers:
        overrides["num_layers"] = args.layers
    if args.hidden:
        overrides.update(hidden_size=args.hidden, intermediate_size=4 * args.hidden)
    if args.heads:
        overrides["num_heads"] = args.heads
    if args.warmup is not None:
        overrides["warmup_steps"] = args.warmup
    config = PretrainConfig.from_preset(
        "demo", seq_len=packed.seq_len, time_budget_s=args.minutes * 60, compile=args.compile,
        device=args.device, keep_checkpoints=1, **overrides)
    config = config.replace(checkpoint_every=config.eval_every)
    keep = KeepBest()
    printer = Printer(every=max(1, config.eval_every // 5))
    if args.resume:  # the run keeps its config; --minutes / --max-steps may extend it
        config = {k: v for k, v in dict(time_budget_s=args.minutes * 60, max_steps=args.max_steps,
                                        compile=args.compile, device=args.device).items()
                  if v is not None}
    run = pretrain(packed, config=config, root=args.runs, name="demo-model", resume=args.resume,
                   callbacks=[printer, keep])
    config = PretrainConfig.from_dict(run.config)  # what the run really used
    summary = run.summary
    best = keep.best_step if keep.best_step is not None else summary["steps"]
    ckpt = run.checkpoint(best)
    best_eval = run.metrics("eval")
    best_row = best_eval[best_eval["step"] == best].iloc[-1].to_dict() if len(best_eval) else {}
    record = {
        "what": "the workbench's embedded default model, pretrained from scratch by "
                "scripts/train_demo_model.py on the offline demo corpus",
        "command": "python scripts/build_demo_corpus.py --out .cache/demo_corpus && "
                   "python scripts/train_demo_model.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "config": config.to_dict(),
        "corpus": {k: packed.meta.get(k) for k in ("corpus_name", "corpus_hash", "sources", "documents",
                                                    "heldout_documents", "train_tokens", "heldout_tokens",
                                                    "tokenizer_hash", "vocab_size", "seq_len", "mode")},
        "exported_step": int(best),
        "final_step": summary.get("steps"),
        "heldout": {k.removeprefix("eval_"): best_row.get(k) for k in (
            "eval_loss", "eval_perplexity", "eval_accuracy", "eval_unigram_accuracy", "eval_tokens")},
        "unigram_token": summary.get("unigram_token"),
        "tokens_seen": summary.get("tokens_seen"),
        "epochs": summary.get("epochs"),
        "parameters": summary.get("parameters"),
        "tokens_per_s": summary.get("tokens_per_s"),
        "mfu": summary.get("mfu"),
        "mfu_peak_flops": "989e12 bf16 dense (H100/H200)" if summary.get("mfu") else None,
        "compiled": summary.get("compiled"), "bf16": summary.get("precision") == "bf16",
        "train_time_s": summary.get("train_s"),  # the record keeps its key names
        "wall_time_s": time.time() - t_start,
        "hardware": describe_machine(),
        "eval_curve": best_eval[["step", "tokens_seen", "eval_loss", "eval_accuracy"]].to_dict("records")
        if len(best_eval) else [],
        "date": time.strftime("%Y-%m-%d"),
    }
    export(ckpt, Path(args.out), record)
    print(json.dumps({k: record[k] for k in ("exported_step", "heldout", "tokens_seen", "tokens_per_s",
                                             "mfu", "wall_time_s")}, indent=1, default=str))
    for ex in record["fill_mask_examples"]:
        print(f"  {ex['text']:70s} -> {[w for w, _ in ex['top']]}")
    print(f"exported to {args.out}: {sorted(p.name for p in Path(args.out).iterdir())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
