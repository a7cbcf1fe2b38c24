"""Where a pretraining step's time goes, and whether it waits for the device: `wb.pretrain`'s step
under torch.profiler.

A diagnostic companion of bench_pretrain.py (same data and shapes), not a benchmark row: it builds
the pretraining loop at one of bench_pretrain's shapes, runs the warm-up steps (torch.compile
included on CUDA), then profiles STEPS optimiser steps and prints the wall time per step, the
operators with the most self CPU time, and the host-side calls that wait for the device
(`aten::item`, `aten::nonzero`, `cudaStreamSynchronize`, ...) per step: on CUDA a step of ours
should have none (the data, masks and head shape stay on the device; the loss is read only
when a row is logged).

    PYTHONPATH=. python benchmarks/profile_pretrain.py [--shape cpu] [--steps 10] [--rows 25]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench_pretrain as bench  # noqa: E402

WAITS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize", "aten::item",
         "aten::_local_scalar_dense", "aten::nonzero", "aten::is_nonzero", "aten::pin_memory")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", default="cpu", choices=sorted(bench.SHAPES))
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--rows", type=int, default=25)
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from workbench.training.corpus import PackedCorpus
    from workbench.training.engine import Engine
    from workbench.training.pretrain import PretrainConfig, _Pretrainer

    sizes = {k: v for k, v in bench.SHAPES[args.shape].items() if k != "steps"}
    with tempfile.TemporaryDirectory() as tmp:
        bench.prepare(Path(tmp), sizes["seq_len"])
        packed = PackedCorpus.load(Path(tmp) / "packed")
        tok = packed.tokenizer()
    config = PretrainConfig(**sizes, max_steps=1000, warmup_steps=2, vocab_size=len(tok), learning_rate=5e-4)
    loop = _Pretrainer(config, packed, tok, Engine(config.device, config.precision))
    loop.mlm.train()
    for _ in range(bench.WARMUP_STEPS):
        loop.train_step()
    bench._sync()
    acts = [torch.profiler.ProfilerActivity.CPU]
    if torch.cuda.is_available():
        acts.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=acts) as prof:
        t0 = time.perf_counter()
        for _ in range(args.steps):
            loop.train_step()
        bench._sync()
        wall = time.perf_counter() - t0
    print(f"===== wb.pretrain at {args.shape} ({sizes}), {loop.engine.precision}, compiled "
          f"{loop.compiled}: {1e3 * wall / args.steps:.1f} ms per step over {args.steps} steps "
          f"({config.tokens_per_step * args.steps / wall:.0f} tokens/s, profiled)")
    averages = prof.key_averages()
    print(averages.table(sort_by="self_cpu_time_total", row_limit=args.rows))
    waits = {a.key: round(a.count / args.steps, 2) for a in averages if a.key in WAITS}
    print(f"host waits per step: {waits or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
