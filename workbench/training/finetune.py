"""Fine-tuning an encoder for sequence classification or regression: `finetune(lm, data, config=...)`.

One loop you can read top to bottom (`_Trainer.fit`): read and check the table (`tables`), build a
classifier on the encoder's weights, then for each optimiser step run `grad_accumulation`
micro-batches that are grouped by length and padded only to their own longest row, under bf16
autocast on a GPU with sdpa attention. Every event (step, eval, checkpoint, end) goes to the
callbacks (`events`); the run folder's metrics log is one of them. Checkpoints (`checkpoint`) hold
the model, tokenizer, optimizer, scheduler, RNG states and the position in the epoch, so
`finetune(..., resume=run)` after a SIGKILL continues at the same step with the same optimizer
state and the same batch order. A `StopFlag` stops gracefully: finish the step, save, mark the run
"stopped".

Several GPUs: launch the same script with `accelerate launch --num_processes N script.py` (or
`torchrun --nproc_per_node N`); each process then takes every N-th batch and accelerate's DDP
averages the gradients. Only the main process writes the run folder.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import time
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from ..config import ConfigBase, require
from ..device import describe_machine, resolve_device
from ..errors import InputError
from ..models import LM, load
from .checkpoint import load_training_state, save_checkpoint
from .events import Callback, Event, MetricsLogger, ProgressBar, StopFlag, emit
from .metrics import CLASSIFICATION_METRICS, HIGHER_IS_BETTER, REGRESSION_METRICS, task_metrics
from .run import Run
from .tables import (LABEL, TASKS, TaskData, check_max_length, load_task_data, tokenize)

KIND = "finetune"
PRECISIONS = ("auto", "fp32", "bf16")
_EVAL_METRICS = {"eval_loss"} | {f"eval_{m}" for m in CLASSIFICATION_METRICS + REGRESSION_METRICS}
# config fields that may differ when a run is resumed (they do not change what is computed)
_RESUME_FREE = {"eval_every", "checkpoint_every", "keep_checkpoints", "log_every", "device"}


@dataclass(frozen=True)
class FineTuneConfig(ConfigBase):
    """How to fine-tune. Defaults follow the RoBERTa paper's GLUE recipe where it gives one."""

    # data
    text_column: str = "text"              # column with the (first) sentence
    pair_column: str | None = None         # column with the second sentence of a pair, if any
    label_column: str = "label"
    task: str = "auto"                     # "auto", "classification" or "regression"
    validation_split: float = 0.1          # fraction held out when only one table is given
    max_length: int = 128                  # tokens per example (pair included), at most the model's
    # optimisation
    learning_rate: float = 2e-5
    batch_size: int = 32                   # examples per micro-batch (per process)
    grad_accumulation: int = 1             # micro-batches per optimiser step
    epochs: int = 3
    max_steps: int | None = None           # optimiser steps; overrides epochs when set
    warmup_ratio: float = 0.06             # linear warm-up over this fraction of the steps ...
    warmup_steps: int = 0                  # ... or over this many steps when > 0
    weight_decay: float = 0.1              # AdamW, not applied to biases and LayerNorm weights
    max_grad_norm: float = 1.0             # gradient clipping (0 = off)
    seed: int = 0
    precision: str = "auto"                # "auto" (bf16 on a GPU that has it, else fp32), "fp32", "bf16"
    device: str = "auto"
    # bookkeeping
    eval_every: int = 0                    # optimiser steps between evaluations (0 = each epoch)
    checkpoint_every: int = 0              # steps between checkpoints (0 = at each evaluation)
    keep_checkpoints: int = 2              # newest checkpoints kept on disk
    early_stopping_patience: int = 0       # evaluations without improvement before stopping (0 = off)
    early_stopping_metric: str = "eval_loss"
    log_every: int = 10                    # steps between train-loss events

    def validate(self) -> None:
        require(self.task in TASKS, f"task={self.task!r}; use one of {list(TASKS)}")
        require(0.0 < self.validation_split < 1.0,
                f"validation_split={self.validation_split}; use a fraction in (0, 1)")
        require(2 <= self.max_length <= 100_000, f"max_length={self.max_length}; use 2..model max")
        require(0.0 < self.learning_rate < 1.0,
                f"learning_rate={self.learning_rate}; use a positive value such as 2e-5")
        require(self.batch_size >= 1, f"batch_size={self.batch_size}; use 1 or more")
        require(self.grad_accumulation >= 1,
                f"grad_accumulation={self.grad_accumulation}; use 1 or more")
        require(self.epochs >= 1 or self.max_steps is not None,
                f"epochs={self.epochs}; use 1 or more, or set max_steps")
        require(self.max_steps is None or self.max_steps >= 1,
                f"max_steps={self.max_steps}; use None (train for `epochs`) or 1 or more")
        require(0.0 <= self.warmup_ratio < 1.0, f"warmup_ratio={self.warmup_ratio}; use [0, 1)")
        require(self.warmup_steps >= 0, f"warmup_steps={self.warmup_steps}; use 0 or more")
        require(self.weight_decay >= 0, f"weight_decay={self.weight_decay}; use 0 or more")
        require(self.max_grad_norm >= 0, f"max_grad_norm={self.max_grad_norm}; use 0 (off) or more")
        require(self.precision in PRECISIONS,
                f"precision={self.precision!r}; use one of {list(PRECISIONS)}")
        for name in ("eval_every", "checkpoint_every", "early_stopping_patience"):
            require(getattr(self, name) >= 0, f"{name}={getattr(self, name)}; use 0 (off) or more")
        require(self.keep_checkpoints >= 1, f"keep_checkpoints={self.keep_checkpoints}; use 1+")
        require(self.log_every >= 1, f"log_every={self.log_every}; use 1 or more")
        require(self.early_stopping_metric in _EVAL_METRICS,
                f"early_stopping_metric={self.early_stopping_metric!r}; use one of "
                f"{sorted(_EVAL_METRICS)}")


# ----------------------------------------------------------------------------- batching

def length_grouped_batches(lengths: Sequence[int], batch_size: int, seed: int,
                           group: int = 50) -> list[list[int]]:
    """Shuffle, sort by length inside windows of `group` batches, then shuffle the batches.

    Each batch holds rows of similar length (little padding) while the order stays random.
    Deterministic in `seed`, so a resumed run sees the same batches in the same order.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(lengths))
    window = batch_size * group
    out = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start:start + window].tolist(), key=lambda i: -lengths[i])
        out += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [out[i] for i in rng.permutation(len(out))]


def pad_multiple(device: torch.device) -> int:
    """Round padded lengths up to this multiple (8 on CUDA, none elsewhere).

    On a GPU, every new (batch, length) shape makes cuDNN's attention build a new execution plan
    on the host: profiled on an H200 (benchmarks/results/h200-2026-11-28-session2/), that planning
    took most of a fine-tuning step's time, at 11 ms of host time per attention call. With
    multiples of 8, an epoch meets 8 times fewer shapes, and those shapes suit the tensor cores.
    On a CPU there is nothing to plan, and the extra padding would only cost compute."""
    return 8 if device.type == "cuda" else 1


def collate(ids: dict[str, list[list[int]]], labels: np.ndarray, rows: Sequence[int],
            pad_id: int, device: torch.device, multiple: int = 1,
            max_length: int | None = None) -> dict[str, torch.Tensor]:
    """Pad `rows` to their own longest length, rounded up to `multiple` but never beyond
    `max_length` (models with absolute positions have no embedding past it):
    input_ids and attention_mask (B, T), labels (B,)."""
    longest = max(len(ids["input_ids"][i]) for i in rows)
    rounded = -(-longest // multiple) * multiple
    longest = min(rounded, max(longest, max_length or rounded))
    input_ids = torch.full((len(rows), longest), pad_id, dtype=torch.long)  # (B, T)
    mask = torch.zeros((len(rows), longest), dtype=torch.long)              # (B, T)
    types = torch.zeros((len(rows), longest), dtype=torch.long) if "token_type_ids" in ids else None
    for b, i in enumerate(rows):
        seq = ids["input_ids"][i]
        input_ids[b, :len(seq)] = torch.tensor(seq)
        mask[b, :len(seq)] = 1
        if types is not None:
            types[b, :len(seq)] = torch.tensor(ids["token_type_ids"][i])
    target = torch.as_tensor(labels[list(rows)])  # (B,) class ids, or float targets
    batch = {"input_ids": input_ids, "attention_mask": mask,
             "labels": target.float() if target.is_floating_point() else target}
    if types is not None:
        batch["token_type_ids"] = types
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


# ----------------------------------------------------------------------------- model

def _build_classifier(lm: LM, data: TaskData, seed: int) -> torch.nn.Module:
    """A fresh sequence classifier (fp32, sdpa) carrying `lm`'s encoder weights; `lm` is untouched."""
    from transformers import AutoModelForSequenceClassification

    cfg = copy.deepcopy(lm.config)
    cfg.num_labels = data.num_labels
    names = data.label_names or ["score"]
    cfg.id2label = dict(enumerate(names))
    cfg.label2id = {n: i for i, n in enumerate(names)}
    cfg.problem_type = "regression" if data.task == "regression" else "single_label_classification"
    cfg.architectures = None
    torch.manual_seed(seed)  # the new head's initial weights
    model = AutoModelForSequenceClassification.from_config(cfg).float()
    model.set_attn_implementation("sdpa")
    same_head = (lm.kind == "classifier" and lm.config.num_labels == cfg.num_labels
                 and [str(v) for v in lm.config.id2label.values()] == names)
    if same_head:  # continue from a fine-tuned classifier with the same labels
        model.load_state_dict(lm.model.state_dict())
        return model
    missing, unexpected = model.base_model.load_state_dict(lm.encoder.state_dict(), strict=False)
    missing = [k for k in missing if not k.startswith("pooler.")]
    unexpected = [k for k in unexpected if not k.startswith("pooler.")]
    if missing or unexpected:
        raise InputError(f"cannot put {lm.name!r}'s encoder under a classifier head: missing "
                         f"{missing[:3]}, unexpected {unexpected[:3]}")
    return model


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def _linear_schedule(optimizer, warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class _Engine:
    """One process, or several through accelerate (when launched with `accelerate launch`/torchrun)."""

    def __init__(self, device: str):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.accelerator = None
        if self.world > 1:
            from accelerate import Accelerator

            # precision is handled by our own autocast, so accelerate never has to change it
            cpu = device == "cpu" or not torch.cuda.is_available()  # gloo on CPU, nccl on GPUs
            self.accelerator = Accelerator(mixed_precision="no", cpu=cpu)
            self.device = self.accelerator.device
            self.rank = self.accelerator.process_index
        else:
            self.device = resolve_device(device)
            self.rank = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def prepare(self, model, optimizer):
        if self.accelerator is None:
            return model.to(self.device), optimizer
        return self.accelerator.prepare(model, optimizer)

    def unwrap(self, model):
        return model if self.accelerator is None else self.accelerator.unwrap_model(model)

    def no_sync(self, model, sync: bool):
        if self.accelerator is None or sync:
            return contextlib.nullcontext()
        return self.accelerator.no_sync(model)

    def backward(self, loss):
        if self.accelerator is None:
            loss.backward()
        else:
            self.accelerator.backward(loss)

    def barrier(self) -> None:
        if self.accelerator is not None:
            self.accelerator.wait_for_everyone()

    def shard(self, batches: list[list[int]]) -> list[list[int]]:
        """This process's batches: every world-th one, the same count on every process."""
        usable = len(batches) - len(batches) % self.world if len(batches) >= self.world else 0
        return batches[self.rank:usable:self.world] if self.world > 1 else batches


# ----------------------------------------------------------------------------- the loop

class _Trainer:
    def __init__(self, model, tokenizer, data: TaskData, config: FineTuneConfig, run: Run | None,
                 engine: _Engine, callbacks: list[Callback], stop: StopFlag | None):
        self.cfg, self.data, self.run, self.engine = config, data, run, engine
        self.tokenizer, self.callbacks, self.stop = tokenizer, callbacks, stop
        self.device = engine.device
        self.dtype = _autocast_dtype(config.precision, self.device)
        self.train_ids = tokenize(tokenizer, data.train, config.max_length)
        self.val_ids = tokenize(tokenizer, data.validation, config.max_length)
        self.train_labels = data.train[LABEL].to_numpy()
        self.val_labels = data.validation[LABEL].to_numpy()
        self.lengths = [len(x) for x in self.train_ids["input_ids"]]
        n_batches = len(engine.shard(length_grouped_batches(self.lengths, config.batch_size, 0)))
        if n_batches == 0:
            raise InputError(f"{len(self.lengths)} training rows make no batch for each of "
                             f"{engine.world} processes: use a smaller batch_size or more data")
        self.steps_per_epoch = math.ceil(n_batches / config.grad_accumulation)
        self.total_steps = config.max_steps or self.steps_per_epoch * config.epochs
        warmup = config.warmup_steps or int(round(config.warmup_ratio * self.total_steps))
        model.to(self.device)  # before the optimizer: fused AdamW wants its params on the GPU
        optimizer = torch.optim.AdamW(_param_groups(model, config.weight_decay),
                                      lr=config.learning_rate, betas=(0.9, 0.98), eps=1e-6,
                                      fused=engine.device.type == "cuda")  # one kernel per step
        self.scheduler = _linear_schedule(optimizer, warmup, self.total_steps)
        self.raw_model, self.raw_optimizer = model, optimizer
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.pad_multiple = pad_multiple(self.device)
        self.state = {"epoch": 0, "group": 0, "best": None, "best_step": None, "bad_evals": 0,
                      "examples": 0, "fingerprint": data.fingerprint()}
        self.step = 0

    # ---- resume -------------------------------------------------------------------------------
    def restore(self, checkpoint) -> None:
        """Load weights, optimizer, scheduler, RNG states and the position in the data."""
        state = load_training_state(checkpoint, self.raw_model, self.raw_optimizer, self.scheduler)
        if state.get("fingerprint") != self.state["fingerprint"]:
            raise InputError("the data differ from the data this run was trained on (fingerprint "
                             f"{state.get('fingerprint')} vs {self.state['fingerprint']}): pass the "
                             "same table and columns to resume, or start a new run")
        self.step = int(state.pop("step"))
        self.state.update(state)

    # ---- events -------------------------------------------------------------------------------
    def _emit(self, kind: str, **metrics) -> None:
        if self.engine.is_main:
            emit(self.callbacks, Event(kind, self.step, self.total_steps, metrics,
                                       run_id=self.run.id if self.run else None))

    def _save(self) -> None:
        if self.engine.is_main and self.run is not None:
            path = save_checkpoint(self.run, self.step, self.engine.unwrap(self.model),
                                   self.tokenizer, self.raw_optimizer, self.scheduler,
                                   dict(self.state), keep_last=self.cfg.keep_checkpoints,
                                   keep_steps=[self.state.get("best_step")])
            self._emit("checkpoint", path=str(path))
        self.engine.barrier()

    # ---- evaluation ---------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Loss and task metrics on the whole validation split (every process computes all of it)."""
        model = self.engine.unwrap(self.model)
        model.eval()
        lengths = [len(x) for x in self.val_ids["input_ids"]]
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        size = self.cfg.batch_size * 2
        preds = np.zeros(len(lengths), dtype=float if self.data.task == "regression" else np.int64)
        loss_sum = 0.0
        for start in range(0, len(order), size):
            rows = order[start:start + size]
            batch = collate(self.val_ids, self.val_labels, rows, self.pad_id, self.device,
                            self.pad_multiple, self.cfg.max_length)
            with self._autocast():
                out = model(**batch)
            loss_sum += float(out.loss) * len(rows)
            logits = out.logits.float()  # (B, num_labels)
            preds[rows] = (logits[:, 0] if self.data.task == "regression"
                           else logits.argmax(-1)).cpu().numpy()
        model.train()
        scores = task_metrics(self.data.task, self.val_labels, preds)
        out = {"eval_loss": loss_sum / len(lengths)}
        out.update({f"eval_{k}": v for k, v in scores.items()})
        return out

    def _improved(self, metrics: dict) -> bool:
        name = self.cfg.early_stopping_metric
        value, best = metrics.get(name), self.state["best"]
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return False
        higher = name.removeprefix("eval_") in HIGHER_IS_BETTER
        if best is None or (value > best if higher else value < best):
            self.state["best"] = float(value)
            self.state["best_step"] = self.step
            return True
        return False

    def _autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    # ---- training -----------------------------------------------------------------------------
    def fit(self) -> str:
        """Train to the end (or early stop / stop request); return the final run status."""
        cfg, engine = self.cfg, self.engine
        self.model, self.optimizer = engine.prepare(self.raw_model, self.raw_optimizer)
        self.model.train()
        self._emit("start", resumed_from=self.step, examples=len(self.lengths))
        status, last_eval = "completed", None
        # the running loss stays on the device: reading it every step would stall a GPU
        window_loss = torch.zeros((), device=self.device)
        window_n, window_examples, window_start = 0, 0, time.perf_counter()
        eval_every = cfg.eval_every or self.steps_per_epoch
        ckpt_every = cfg.checkpoint_every or eval_every
        while self.step < self.total_steps and status == "completed":
            epoch = self.state["epoch"]
            mine = engine.shard(length_grouped_batches(self.lengths, cfg.batch_size, cfg.seed + epoch))
            groups = [mine[i:i + cfg.grad_accumulation]
                      for i in range(0, len(mine), cfg.grad_accumulation)]
            while self.state["group"] < len(groups) and self.step < self.total_steps:
                group = groups[self.state["group"]]
                for k, rows in enumerate(group):
                    batch = collate(self.train_ids, self.train_labels, rows, self.pad_id,
                                    self.device, self.pad_multiple, cfg.max_length)
                    with engine.no_sync(self.model, sync=k == len(group) - 1), self._autocast():
                        loss = self.model(**batch).loss / len(group)
                    engine.backward(loss)
                    window_loss += loss.detach().float()
                    window_examples += len(rows)
                if cfg.max_grad_norm:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.step += 1
                window_n += 1
                self.state["group"] += 1
                self.state["examples"] += sum(len(r) for r in group) * engine.world
                if self.step % cfg.log_every == 0 or self.step == self.total_steps:
                    elapsed = time.perf_counter() - window_start
                    self._emit("step", loss=float(window_loss) / window_n,
                               lr=self.scheduler.get_last_lr()[0],
                               epoch=epoch + self.state["group"] / len(groups),
                               examples_per_s=window_examples * engine.world / max(elapsed, 1e-9))
                    window_loss.zero_()
                    window_n, window_examples = 0, 0
                    window_start = time.perf_counter()
                at_eval = self.step % eval_every == 0 or self.step == self.total_steps
                improved = False
                if at_eval:
                    last_eval = self.evaluate()
                    self._emit("eval", **last_eval)
                    improved = self._improved(last_eval)
                    self.state["bad_evals"] = 0 if improved else self.state["bad_evals"] + 1
                    if cfg.early_stopping_patience and self.state["bad_evals"] >= cfg.early_stopping_patience:
                        status = "early_stopped"
                stopping = self.stop is not None and self.stop.requested
                if stopping and status == "completed":
                    status = "stopped"
                # the best evaluation's weights are always saved (and kept): wb.load(run) opens them
                if (self.step % ckpt_every == 0 or status != "completed"
                        or self.step == self.total_steps or improved):
                    self._save()
                if status != "completed":
                    break
            if self.state["group"] >= len(groups):
                self.state["epoch"] += 1
                self.state["group"] = 0
        if status in ("completed", "early_stopped") and last_eval is None:
            last_eval = self.evaluate()  # e.g. resumed exactly at the end
            self._emit("eval", **last_eval)
        self.final_eval = last_eval or {}
        return status


def _autocast_dtype(precision: str, device: torch.device):
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


# ----------------------------------------------------------------------------- entry point

def _check_resume_config(stored: FineTuneConfig, given: FineTuneConfig | None) -> FineTuneConfig:
    if given is None:
        return stored
    a, b = stored.to_dict(), given.to_dict()
    changed = sorted(k for k in a if a[k] != b[k] and k not in _RESUME_FREE)
    if changed:
        raise InputError(f"resume with a different config: {changed} differ from the run's "
                         f"({ {k: a[k] for k in changed} }); omit config= to reuse the run's, or "
                         "start a new run")
    return given


def finetune(lm_or_name: LM | str | None, data: Any, *, config: FineTuneConfig | None = None,
             resume: Run | str | os.PathLike | None = None, callbacks: Iterable[Callback] = (),
             stop: StopFlag | None = None, name: str | None = None, root: str | None = None,
             progress: bool = True) -> Run | None:
    """Fine-tune `lm_or_name` (an `LM`, a model name or folder, a run) on `data`; return the `Run`.

    `data`: a DataFrame, a CSV/TSV/JSONL path, a GLUE-style folder, a `datasets` Dataset or
    DatasetDict, or a hub name such as "glue/sst2"; columns named in `config`. Every check on the
    data and on `max_length` runs before training. `resume`: a run (or its id/path) to continue
    from its latest checkpoint; pass the same data. `callbacks` receive every `Event`; `stop`
    ends the run gracefully. `root`: run store folder (default `$WORKBENCH_RUNS` or ./runs).
    On extra processes of a multi-GPU launch the function returns None.

    >>> run = finetune("demo", "data/sentiment/rotten_tomatoes.tsv",           # doctest: +SKIP
    ...                config=FineTuneConfig(epochs=1))
    >>> run.summary["eval_accuracy"], wb.load(run)                             # doctest: +SKIP
    """
    run = Run.open(resume, root=root) if resume is not None else None
    if run is not None:
        if run.kind != KIND:
            raise InputError(f"run {run.id} is a {run.kind!r} run; resume it with its own function")
        config = _check_resume_config(FineTuneConfig.from_dict(run.config), config)
    config = config or FineTuneConfig()
    data_obj = load_task_data(data, text_column=config.text_column, pair_column=config.pair_column,
                              label_column=config.label_column, task=config.task,
                              validation_split=config.validation_split, seed=config.seed)
    engine = _Engine(config.device)
    checkpoint = run.checkpoints()[-1][1] if run is not None and run.checkpoints() else None
    if checkpoint is not None:
        lm = load(checkpoint, device="cpu", dtype="fp32", task="classifier")
        base_name = run.info.get("base_model")
    else:
        if lm_or_name is None:
            raise InputError("pass the model to fine-tune (an LM, a name or a folder)"
                             + (f"; run {run.id} has no checkpoint to resume from" if run else ""))
        lm = lm_or_name if isinstance(lm_or_name, LM) else load(lm_or_name, device="cpu",
                                                                dtype="fp32")
        base_name = (run.info.get("base_model") if run else None) or lm.path or lm.name
    check_max_length(config.max_length, lm.config, lm.tokenizer)
    model = _build_classifier(lm, data_obj, config.seed)
    tokenizer = lm.tokenizer

    # tokenising and planning can still refuse the input: do it before the run folder exists
    trainer = _Trainer(model, tokenizer, data_obj, config, None, engine, list(callbacks), stop)
    if checkpoint is not None:
        trainer.restore(checkpoint)
    if run is None and engine.is_main:
        run = Run.create(KIND, config.to_dict(), name=name, base_model=str(base_name), root=root)
    trainer.run = run
    if engine.is_main:
        trainer.callbacks = [MetricsLogger(run)] + trainer.callbacks
        if progress:
            trainer.callbacks.append(ProgressBar(desc=f"fine-tuning {run.name}"))
        run.set_status("running", task=data_obj.task, label_names=data_obj.label_names,
                       data=data_obj.source, fingerprint=data_obj.fingerprint(), pid=os.getpid(),
                       total_steps=trainer.total_steps, device=str(engine.device),
                       precision="bf16" if trainer.dtype == torch.bfloat16 else "fp32",
                       processes=engine.world, attention=model.config._attn_implementation,
                       machine=describe_machine())
    started = time.time()
    try:
        status = trainer.fit()
    except BaseException as err:
        if engine.is_main:
            run.set_status("interrupted" if isinstance(err, KeyboardInterrupt) else "failed",
                           error=f"{type(err).__name__}: {err}"[:500])
            trainer._emit("error", message=f"{type(err).__name__}: {err}")
        raise
    if not engine.is_main:
        return None
    summary = {"task": data_obj.task, "num_labels": data_obj.num_labels, "steps": trainer.step,
               "total_steps": trainer.total_steps,
               "epochs": round(trainer.step / trainer.steps_per_epoch, 3),
               "train_examples": len(data_obj.train), "validation_examples": len(data_obj.validation),
               "examples_seen": trainer.state["examples"], "wall_s": round(time.time() - started, 2),
               "status": status, **trainer.final_eval}
    if trainer.state["best"] is not None:
        summary[f"best_{config.early_stopping_metric}"] = trainer.state["best"]
        summary["best_step"] = trainer.state.get("best_step")
    run.write_summary(summary)
    run.set_status(status)
    trainer._emit("stopped" if status == "stopped" else "end", **trainer.final_eval)
    return run
