"""The one learning-rate schedule of both loops: linear warm-up, then linear decay to 0.

The factor at step s is transformers' `get_linear_schedule_with_warmup`: s / w during the w warm-up
steps (0 at the first step), then (total - s) / (total - w). It is a callable object, not a
closure, so `LambdaLR.state_dict()` saves `warmup` and `total` and a resumed run gets them back;
under a time budget (`fit_to_budget`) both are re-estimated from measured step times.
"""

from __future__ import annotations

import torch


def capped_warmup(warmup_steps: int, total_steps: int) -> int:
    """Warm-up of a run of `total_steps`: the asked `warmup_steps`, but at most a tenth of the run
    (at least 1), so a short run (a time budget, a few-step run from the widget) still decays."""
    return min(warmup_steps, max(1, total_steps // 10))


class WarmupLinear:
    """lr factor: `step / warmup` during warm-up, then `(total - step) / (total - warmup)`, >= 0."""

    def __init__(self, warmup: int, total: int):
        self.warmup = int(warmup)
        self.total = int(total)

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return step / max(1, self.warmup)
        return max(0.0, (self.total - step) / max(1, self.total - self.warmup))


def make_scheduler(optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR over `WarmupLinear(warmup, total)` (its `lr_lambdas[0]` is that object)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupLinear(warmup, total))


def fit_to_budget(schedule: WarmupLinear, step: int, step_times: list[float], *, budget_s: float,
                  elapsed_s: float, max_steps: int, warmup_steps: int, first_step: int = 0) -> None:
    """Under a time budget (training time across resumed sessions), re-estimate the total steps from
    this session's step times until half of what remains is done, so warm-up and decay span the
    budget (never beyond `max_steps`)."""
    done = step - first_step
    if done < 20 or step % 10 or done > (schedule.total - first_step) / 2:
        return
    recent = step_times[-200:]
    per_step = sorted(recent)[len(recent) // 2] * 1.03  # median, plus eval/checkpoint overhead
    remaining = max(0.0, budget_s - elapsed_s)
    total = min(max_steps, step + int(remaining / max(per_step, 1e-6)))
    schedule.total = max(step + 1, total)
    schedule.warmup = capped_warmup(warmup_steps, schedule.total)
