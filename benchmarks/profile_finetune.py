"""Where a fine-tuning step's time goes: `wb.finetune` vs transformers' `Trainer` under torch.profiler.

A diagnostic companion of bench_finetune.py (same model, data, batch and precision; see its
docstring), not a benchmark row: after one warm-up run of each side, it profiles STEPS optimiser
steps of each, from the start of training to the last step (no per-step hook, so the profiler adds
no synchronisation of its own), and prints for each side the wall time per step, the operators
with the most self CPU time, and how often the host waited for the device.

    PYTHONPATH=. python benchmarks/profile_finetune.py [--steps 40] [--rows 25]
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

import bench_finetune as bench  # noqa: E402

# host-side calls that block until the device catches up (or copy through pageable memory)
WAITS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize", "cudaMemcpyAsync",
         "aten::item", "aten::_local_scalar_dense", "aten::nonzero", "aten::pin_memory")


class Window:
    """Starts the profiler when training starts and stops it after the last optimiser step."""

    def __init__(self, last_step: int):
        self.last_step = last_step
        acts = [torch.profiler.ProfilerActivity.CPU]
        if torch.cuda.is_available():
            acts.append(torch.profiler.ProfilerActivity.CUDA)
        self.prof = torch.profiler.profile(activities=acts)
        self.t0 = self.t1 = 0.0

    def start(self):
        self.prof.start()
        self.t0 = time.perf_counter()

    def stop(self):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.t1 = time.perf_counter()
        self.prof.stop()

    # wb.finetune callback
    def __call__(self, event):
        if event.kind == "start":
            self.start()
        elif event.kind == "step" and event.step == self.last_step:
            self.stop()

    def report(self, name: str, rows: int) -> None:
        ms = 1e3 * (self.t1 - self.t0) / self.last_step
        print(f"\n===== {name}: {ms:.1f} ms per step over {self.last_step} steps (profiled)")
        averages = self.prof.key_averages()
        print(averages.table(sort_by="self_cpu_time_total", row_limit=rows))
        counts = {a.key: a.count for a in averages if a.key in WAITS}
        print(f"{name} host waits / copies: {counts}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--rows", type=int, default=25)
    ap.add_argument("--quick", action="store_true", help="the tiny model (a smoke test)")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import TrainerCallback

    with tempfile.TemporaryDirectory() as tmp:
        model, described, data, split, cfg, bf16 = bench.setup(Path(tmp), args.quick)
        # log_every stays above the window: a step event would read the loss (a sync) every step
        cfg = cfg.replace(max_steps=args.steps, log_every=10**6)
        bench._ours(model, split, cfg.replace(max_steps=bench.WARMUP_STEPS))
        bench._trainer(model, data, cfg, bf16, max_steps=bench.WARMUP_STEPS)

        ours = Window(args.steps)
        bench._ours(model, split, cfg, callbacks=[ours])
        peer = Window(args.steps)

        class Hook(TrainerCallback):
            def on_train_begin(self, a, state, control, **kw):
                peer.start()

            def on_step_end(self, a, state, control, **kw):
                if state.global_step == args.steps:
                    peer.stop()

        bench._trainer(model, data, cfg, bf16, max_steps=args.steps, callbacks=[Hook()])
    print(f"model: {described}; batch {cfg.batch_size}, max_length {cfg.max_length}, "
          f"{'bf16' if bf16 else 'fp32'}")
    ours.report("wb.finetune", args.rows)
    peer.report("Trainer", args.rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
