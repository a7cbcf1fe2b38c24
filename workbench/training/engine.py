"""Where and how both training loops compute: processes, device, precision, optimizer.

`Engine` is one process, or several launched by `torchrun`/`accelerate launch` (WORLD_SIZE > 1),
in which case accelerate wraps the model in DDP (bucketed gradient all-reduce overlapped with the
backward pass; gloo on CPU, nccl on GPUs) and only rank 0 writes the run folder. The loops call
`engine.prepare`, `engine.no_sync` (inside gradient accumulation), `engine.backward`,
`engine.agree` (rank 0's decisions, so every process stops and saves at the same step).

Precision is decided once (`resolve_precision`): bf16 autocast on a GPU that supports it when
"auto", fp32 elsewhere; master weights and optimizer state stay fp32. TF32 matmuls are allowed
only inside `tf32_scope`, which restores the previous torch.backends flags when the run ends.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
from typing import Iterator, Sequence

import numpy as np
import torch

from ..device import resolve_device


def resolve_precision(precision: str, device: torch.device) -> str:
    """'bf16' or 'fp32' for `precision` ('auto', 'bf16', 'fp32') on `device`."""
    if precision in ("bf16", "fp32"):
        return precision
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


@contextlib.contextmanager
def tf32_scope(enabled: bool) -> Iterator[None]:
    """Allow TF32 matmuls and convolutions inside the block; restore the previous flags after."""
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def busy_cores_of_others(sample_s: float = 0.25) -> float:
    """How many cores other processes keep busy, measured over `sample_s` seconds now (system CPU
    time minus this process's, per second of wall time); 0.0 where it cannot be read."""
    try:
        import time

        import psutil

        me, start = psutil.Process(), time.perf_counter()
        busy = lambda t: sum(t) - t.idle - getattr(t, "iowait", 0.0)  # noqa: E731
        system0, own0 = busy(psutil.cpu_times()), sum(me.cpu_times()[:2])
        time.sleep(sample_s)
        system1, own1 = busy(psutil.cpu_times()), sum(me.cpu_times()[:2])
        return max(0.0, (system1 - system0) - (own1 - own0)) / (time.perf_counter() - start)
    except Exception:  # noqa: BLE001 - no psutil or no /proc: behave as on an idle machine
        return 0.0


def contended_threads(threads: int, cores: int, others_busy: float) -> int:
    """Intra-op threads for a CPU training loop: `threads` (torch's, one per core) when the cores
    are free; fewer when other processes already keep `others_busy` of the `cores` busy.

    Each of torch's parallel regions ends at a barrier where every OpenMP thread must arrive;
    with another process on a core, one thread is often descheduled and the others spin there.
    Measured on the 2-core machine under load (issue 28.5), `wb.finetune` on the demo model ran
    3.5x faster and used 3.8x less CPU per example with 1 thread than with 2."""
    free = cores - others_busy
    return max(1, min(threads, int(free + 0.5)))


@contextlib.contextmanager
def threads_scope(threads: int) -> Iterator[int]:
    """torch's intra-op thread count set to `threads` inside the block, restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(before)


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: weight decay on matrices, none on biases and LayerNorm weights."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: torch.nn.Module, *, lr: float, weight_decay: float,
                   betas: tuple[float, float] = (0.9, 0.98), eps: float = 1e-6) -> torch.optim.AdamW:
    """AdamW over `param_groups`, fused (one pass over each parameter per step instead of about
    ten) on CUDA and on the CPU, as the Trainer's default optimizer is (`adamw_torch_fused`);
    measured on the CPU, the unfused loop took a sixth of a small pretraining step."""
    fused = next(model.parameters()).device.type in ("cuda", "cpu")
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=betas, eps=eps,
                             fused=fused)


@functools.cache
def _destroy_process_group_at_exit() -> None:
    """Destroy the default process group when the interpreter exits (once per process), so a
    rank never exits with it alive: gloo's threads then abort the process at C++ teardown
    ('terminate called without an active exception', exit -6), failing a finished launch.
    At exit, not after a run, so a second run in the same process reuses the group."""
    def destroy():
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()

    atexit.register(destroy)


class Engine:
    """One process, or several through accelerate's DDP (when launched with torchrun/accelerate)."""

    def __init__(self, device: str, precision: str):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.accelerator = None
        if self.world > 1:
            from accelerate import Accelerator

            # precision is our own autocast (below), so accelerate never changes it
            cpu = device == "cpu" or not torch.cuda.is_available()  # gloo on CPU, nccl on GPUs
            self.accelerator = Accelerator(mixed_precision="no", cpu=cpu)
            _destroy_process_group_at_exit()
            self.device = self.accelerator.device
            self.rank = self.accelerator.process_index
        else:
            self.device = resolve_device(device)
            self.rank = 0
        self.requested_precision = precision
        self.precision = resolve_precision(precision, self.device)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def autocast(self):
        """bf16 autocast when the precision is bf16, else a no-op."""
        if self.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def cpu_threads(self, fixed: int | None = None):
        """A single CPU process trains with as many threads as there are free cores
        (`contended_threads`, measured once at the start), or with `fixed` threads (a resumed
        run takes its first session's count: 1 and 2 threads round differently, and a resume is
        bit-identical only with the same count); on a GPU, or with several processes (accelerate
        sets their threads), nothing changes."""
        if self.device.type != "cpu" or self.world > 1:
            return contextlib.nullcontext(torch.get_num_threads())
        if fixed is not None:
            return threads_scope(int(fixed))
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
            os.cpu_count() or 1)
        return threads_scope(contended_threads(torch.get_num_threads(), cores,
                                               busy_cores_of_others()))

    def tf32(self):
        """TF32 matmuls allowed for the run (they act on CUDA only) unless fp32 was asked for."""
        return tf32_scope(self.requested_precision != "fp32")

    def prepare(self, model, optimizer):
        if self.accelerator is None:
            return model.to(self.device), optimizer
        return self.accelerator.prepare(model, optimizer)

    def unwrap(self, model):
        return model if self.accelerator is None else self.accelerator.unwrap_model(model)

    def no_sync(self, model, sync: bool):
        """Skip the gradient all-reduce on micro-batches before the last of an accumulation."""
        if self.accelerator is None or sync:
            return contextlib.nullcontext()
        return self.accelerator.no_sync(model)

    def backward(self, loss) -> None:
        if self.accelerator is None:
            loss.backward()
        else:
            self.accelerator.backward(loss)

    def barrier(self) -> None:
        if self.accelerator is not None:
            self.accelerator.wait_for_everyone()

    def agree(self, values: Sequence[float]) -> list[float]:
        """Rank 0's `values` on every process (decisions that read a clock or a stop flag)."""
        if self.world == 1:
            return list(values)
        t = torch.tensor(list(values), dtype=torch.float64, device=self.device)
        torch.distributed.broadcast(t, src=0)
        return t.tolist()

    def sum_across(self, values: np.ndarray) -> np.ndarray:
        """Element-wise sum of a float64 array over the processes (the array itself for one)."""
        if self.world == 1:
            return values
        t = torch.as_tensor(values, dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(t)
        return t.cpu().numpy()

    def shard(self, batches: list) -> list:
        """This process's batches: every world-th one, the same count on every process."""
        usable = len(batches) - len(batches) % self.world if len(batches) >= self.world else 0
        return batches[self.rank:usable:self.world] if self.world > 1 else batches


def clip_gradients(model, max_norm: float | None):
    """Clip the global gradient norm to `max_norm` (0 or None: off); return the norm or None."""
    if not max_norm:
        return None
    return torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
