"""Fine-tuning an encoder for sequence classification or regression: `finetune(lm, data, config=...)`.

This file holds only what is particular to fine-tuning: the data (read and check the table,
`tables`; batches grouped by length and padded only to their own longest row), the model (a
classifier head on the encoder's weights, sdpa attention), the loss (the model's own) and the
evaluation (loss and task metrics on the validation split; the best evaluation's weights are
kept, and early stopping reads them). Processes, device, precision, optimizer (`engine`), the
schedule (`schedule`), the run lifecycle, checkpoints and the resume rule (`spine`) are the spine
both loops share: `finetune(..., resume=run)` after a SIGKILL continues at the same step with the
same optimizer state and batch order; a run killed before its first checkpoint starts over.

Several GPUs: `accelerate launch --num_processes N -m workbench finetune ...` (or torchrun);
each process takes every N-th batch and DDP averages the gradients. Only rank 0 writes the run.
"""

from __future__ import annotations

import copy
import math
import os
import time
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from ..errors import InputError
from ..models import LM, load
from .checkpoint import load_training_state, weights_dtype
from .configs import FineTuneConfig
from .engine import Engine, clip_gradients, make_optimizer
from .events import Callback, StopFlag
from .metrics import HIGHER_IS_BETTER, task_metrics
from .run import Run
from .schedule import make_scheduler
from .spine import Spine, resume_config, run_lifecycle
from ..capture import check_max_length
from .tables import LABEL, TaskData, load_task_data, tokenize

KIND = "finetune"


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
    if device.type == "cuda":  # page-locked, so the copy is truly asynchronous (as the Trainer's
        batch = {k: v.pin_memory() for k, v in batch.items()}  # DataLoader pins its batches)
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


# ----------------------------------------------------------------------------- the loop

class _Trainer:
    """The fine-tuning loop: model, optimizer, schedule and the position in the epochs."""

    def __init__(self, model, tokenizer, data: TaskData, config: FineTuneConfig, engine: Engine):
        self.cfg, self.data, self.engine, self.tokenizer = config, data, engine, tokenizer
        self.device = engine.device
        # "auto" (0) resolved once, by the config, for this model
        self.learning_rate = config.peak_learning_rate(model.config.hidden_size)
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
        self.raw_optimizer = make_optimizer(model, lr=self.learning_rate,
                                            weight_decay=config.weight_decay)
        self.scheduler = make_scheduler(self.raw_optimizer, warmup, self.total_steps)
        self.raw_model = model
        self.model, self.optimizer = engine.prepare(model, self.raw_optimizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.pad_multiple = pad_multiple(self.device)
        self.state = {"epoch": 0, "group": 0, "best": None, "best_step": None, "bad_evals": 0,
                      "examples": 0, "train_s": 0.0, "fingerprint": data.fingerprint()}
        self.step, self.last_eval = 0, None

    def restore(self, checkpoint) -> None:
        """Load weights, optimizer, scheduler, RNG states and the position in the data."""
        state = load_training_state(checkpoint, self.raw_model, self.raw_optimizer, self.scheduler)
        self.step = int(state.pop("step"))
        self.state.update(state)

    # ---- evaluation ---------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Loss and task metrics on the whole validation split. Each process scores every
        world-th row by length (shares of equal cost), and the per-row predictions and the loss
        sum are added up across processes; one process scores every row in the same batches."""
        model = self.engine.unwrap(self.model)
        model.eval()
        lengths = [len(x) for x in self.val_ids["input_ids"]]
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        mine = order[self.engine.rank::self.engine.world]
        size = self.cfg.batch_size * 2
        preds = np.zeros(len(lengths), dtype=np.float64)  # 0 where another process scores the row
        loss_sum = 0.0
        for start in range(0, len(mine), size):
            rows = mine[start:start + size]
            batch = collate(self.val_ids, self.val_labels, rows, self.pad_id, self.device,
                            self.pad_multiple, self.cfg.max_length)
            with self.engine.autocast():
                out = model(**batch)
            loss_sum += float(out.loss) * len(rows)
            logits = out.logits.float()  # (B, num_labels)
            preds[rows] = (logits[:, 0] if self.data.task == "regression"
                           else logits.argmax(-1)).cpu().numpy()
        model.train()
        summed = self.engine.sum_across(np.append(preds, loss_sum))
        preds, loss_sum = summed[:-1], float(summed[-1])
        if self.data.task != "regression":
            preds = preds.astype(np.int64)
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

    # ---- training -----------------------------------------------------------------------------
    def _groups(self, epoch: int) -> list[list[list[int]]]:
        """This process's batches of `epoch`, `grad_accumulation` to an optimiser step."""
        cfg = self.cfg
        mine = self.engine.shard(length_grouped_batches(self.lengths, cfg.batch_size, cfg.seed + epoch))
        return [mine[i:i + cfg.grad_accumulation] for i in range(0, len(mine), cfg.grad_accumulation)]

    def _train_step(self, group: list[list[int]]) -> tuple[torch.Tensor, int]:
        """One optimiser step over `group`'s micro-batches; (summed loss on the device, examples)."""
        total, examples = torch.zeros((), device=self.device), 0
        for k, rows in enumerate(group):
            batch = collate(self.train_ids, self.train_labels, rows, self.pad_id, self.device,
                            self.pad_multiple, self.cfg.max_length)
            with self.engine.no_sync(self.model, sync=k == len(group) - 1), self.engine.autocast():
                loss = self.model(**batch).loss / len(group)
            self.engine.backward(loss)
            total += loss.detach().float()
            examples += len(rows)
        clip_gradients(self.model, self.cfg.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.state["group"] += 1
        self.state["examples"] += examples * self.engine.world
        return total, examples

    def _evaluate_now(self, spine: Spine, eval_every: int) -> str | None:
        """Evaluate if due; returns 'early_stopped' when patience ran out. Sets `self.improved`."""
        self.improved = False
        if self.step % eval_every and self.step != self.total_steps:
            return None
        self.last_eval = self.evaluate()
        spine.emit("eval", self.step, **self.last_eval)
        self.improved = self._improved(self.last_eval)
        self.state["bad_evals"] = 0 if self.improved else self.state["bad_evals"] + 1
        patience = self.cfg.early_stopping_patience
        return "early_stopped" if patience and self.state["bad_evals"] >= patience else None

    def fit(self, spine: Spine, stop: StopFlag | None) -> str:
        """Train to the end (or early stop / stop request); return the final run status."""
        cfg, engine = self.cfg, self.engine
        self.model.train()
        eval_every = cfg.eval_every or self.steps_per_epoch
        ckpt_every = cfg.checkpoint_every or eval_every
        window = [torch.zeros((), device=self.device), 0, 0, time.perf_counter()]  # loss, n, ex, t0
        while self.step < self.total_steps:
            epoch, groups = self.state["epoch"], self._groups(self.state["epoch"])
            while self.state["group"] < len(groups) and self.step < self.total_steps:
                t0 = time.perf_counter()
                loss, examples = self._train_step(groups[self.state["group"]])
                self.state["train_s"] += time.perf_counter() - t0
                window = [window[0] + loss, window[1] + 1, window[2] + examples, window[3]]
                if self.step % cfg.log_every == 0 or self.step == self.total_steps:
                    window = self._log(spine, window, epoch + self.state["group"] / len(groups))
                status = self._evaluate_now(spine, eval_every)
                stopped = engine.agree([stop is not None and stop.requested])[0]
                status = status or ("stopped" if stopped else None)
                # the best evaluation's weights are always saved (and kept): wb.load(run) opens them
                if (status or self.improved or self.step == self.total_steps
                        or spine.checkpoint_due(self.step, ckpt_every)):
                    self._save(spine)
                if status:
                    return status
            if self.state["group"] >= len(groups):
                self.state["epoch"] += 1
                self.state["group"] = 0
        return "completed"

    def _log(self, spine: Spine, window: list, epoch: float) -> list:
        """Emit the mean train loss of the steps since the last row; return a fresh window."""
        loss, n, examples, start = window
        elapsed = time.perf_counter() - start
        spine.emit("step", self.step, loss=float(loss) / n, lr=self.scheduler.get_last_lr()[0],
                   epoch=epoch, examples_per_s=examples * self.engine.world / max(elapsed, 1e-9))
        return [torch.zeros((), device=self.device), 0, 0, time.perf_counter()]

    def _save(self, spine: Spine) -> None:
        spine.save(self.step, self.model, self.tokenizer, self.raw_optimizer, self.scheduler,
                   self.state, keep_last=self.cfg.keep_checkpoints,
                   keep_steps=[self.state.get("best_step")])

    def finish(self, spine: Spine, status: str) -> None:
        """A last evaluation if none was made (resumed at the end), then the summary."""
        if status in ("completed", "early_stopped") and self.last_eval is None:
            self.last_eval = self.evaluate()
            spine.emit("eval", self.step, **self.last_eval)
        final = self.last_eval or {}
        summary = {"task": self.data.task, "num_labels": self.data.num_labels,
                   "epochs": round(self.step / self.steps_per_epoch, 3),
                   "train_examples": len(self.data.train),
                   "validation_examples": len(self.data.validation),
                   "examples_seen": self.state["examples"], "train_s": round(self.state["train_s"], 2),
                   "learning_rate": self.learning_rate, **final}
        if self.state["best"] is not None:
            summary[f"best_{self.cfg.early_stopping_metric}"] = self.state["best"]
            summary["best_step"] = self.state.get("best_step")
        spine.finish(status, self.step, summary, final)


# ----------------------------------------------------------------------------- entry point

def finetune(lm_or_name: LM | str | None, data: Any = None, *, config: FineTuneConfig | None = None,
             resume: Run | str | os.PathLike | None = None, callbacks: Iterable[Callback] = (),
             stop: StopFlag | None = None, name: str | None = None, root: str | None = None,
             progress: bool = True, restart: bool = False) -> Run | None:
    """Fine-tune `lm_or_name` (an `LM`, a model name or folder, a run) on `data`; return the `Run`.

    `data`: a DataFrame, a CSV/TSV/JSONL path, a GLUE-style folder, a `datasets` Dataset or
    DatasetDict, or a hub name such as "glue/sst2"; columns named in `config`. Every check on the
    data and on `max_length` runs before the run folder exists. `resume`: a run (or its id/path)
    to continue from its newest intact checkpoint (an older one if the newest is damaged; the
    run says so), or from step 0 if it was killed before one; `restart=True` starts it over when
    no checkpoint can resume it. The model
    and data default to the run's own (a table given by path or name; pass a DataFrame again).
    `callbacks` receive every `Event`; `stop` ends the run gracefully. `root`: run store folder.
    On extra processes of a multi-GPU launch the function returns None.

    >>> run = finetune("demo", "data/sentiment/rotten_tomatoes.tsv",           # doctest: +SKIP
    ...                config=FineTuneConfig(epochs=1))
    >>> run.summary["eval_accuracy"], wb.load(run)                             # doctest: +SKIP
    """
    loop = _FineTuneLoop(lm_or_name, data, config)
    return run_lifecycle(loop, resume=resume, restart=restart, name=name, root=root,
                         callbacks=callbacks, stop=stop, progress=progress)


class _FineTuneLoop:
    """What fine-tuning gives the lifecycle template (`spine.run_lifecycle`, `spine.Loop`)."""

    kind, adapt_threads = KIND, True

    def __init__(self, lm_or_name, data, config):
        self.lm_or_name, self.data, self.requested = lm_or_name, data, config

    def configure(self, run: Run | None) -> FineTuneConfig:
        config = self.requested
        if run is not None:
            config = resume_config(FineTuneConfig, run, config)
        config = FineTuneConfig() if config is None else config
        if not isinstance(config, FineTuneConfig):
            raise InputError(f"config={config!r}; pass a FineTuneConfig")
        self.config = config
        return config

    def load_data(self, run: Run | None, engine) -> None:
        cfg = self.config
        self.task_data = load_task_data(_data_source(self.data, run), text_column=cfg.text_column,
                                        pair_column=cfg.pair_column, label_column=cfg.label_column,
                                        task=cfg.task, validation_split=cfg.validation_split,
                                        seed=cfg.seed)
        _check_labels(self.task_data, cfg.label_column)

    def same_data(self, run: Run) -> None:
        """The table's fingerprint (rows, columns, split) against the one run.json records."""
        saved, mine = run.info.get("fingerprint"), self.task_data.fingerprint()
        if saved is not None and saved != mine:
            raise InputError(f"the data differ from the data run {run.id} was trained on "
                             f"(fingerprint {saved}; these data: {mine}): pass the same table and "
                             "columns to resume, or start a new run")

    def build(self, engine, run: Run | None, checkpoint) -> "_Trainer":
        """The classifier on the base model's (or the checkpoint's) weights, and its trainer;
        tokenising and planning can still refuse the input."""
        lm, base = _base_model(self.lm_or_name, run, checkpoint)
        self.base_model = str(base)
        self.weights_dtype = (run.info.get("weights_dtype") if checkpoint is not None
                              else weights_dtype(lm.path))  # the base's storage (fp16: demo)
        check_max_length(lm, self.config.max_length, minimum=2)
        model = _build_classifier(lm, self.task_data, self.config.seed)
        return _Trainer(model, lm.tokenizer, self.task_data, self.config, engine)

    def created(self, run: Run) -> dict:
        return {}

    def begin_info(self, trainer: "_Trainer", run: Run | None) -> dict:
        data = self.task_data
        return {"task": data.task, "label_names": data.label_names, "data": data.source,
                "data_ref": _data_ref(self.data, run), "fingerprint": data.fingerprint(),
                "learning_rate": trainer.learning_rate,
                "attention": trainer.raw_model.config._attn_implementation,
                "weights_dtype": self.weights_dtype}

    def progress_label(self, run: Run) -> str:
        return f"fine-tuning {run.name}"


def _data_ref(data: Any, run: Run | None) -> str | None:
    """What `data` can be read from again on resume: its path or hub name (None for objects)."""
    if data is None and run is not None:
        return run.info.get("data_ref")
    return str(data) if isinstance(data, (str, os.PathLike)) else None


def _data_source(data: Any, run: Run | None) -> Any:
    if data is not None:
        return data
    ref = run.info.get("data_ref") if run is not None else None
    if ref is None:
        raise InputError("pass the training data (a DataFrame, a CSV/TSV/JSONL path, a folder or "
                         "a datasets name)" + (f"; run {run.id} was trained on "
                                               f"{run.info.get('data', 'an object')}: pass it again"
                                               if run is not None else ""))
    return ref


def _check_labels(data: TaskData, label_column: str) -> None:
    """Regression targets must be finite numbers (an inf gives NaN metrics in a 'completed' run)."""
    if data.task != "regression":
        return
    for split, frame in (("train", data.train), ("validation", data.validation)):
        values = frame[LABEL].to_numpy(dtype=float)
        bad = ~np.isfinite(values)
        if bad.any():
            rows = ", ".join(map(str, list(frame.index[bad][:5])))
            raise InputError(f"label column {label_column!r} of the {split} split holds "
                             f"{int(bad.sum())} non-finite value(s) (rows {rows}): regression "
                             "needs finite numbers; drop or fix those rows")


def _base_model(lm_or_name, run: Run | None, checkpoint) -> tuple[LM, str]:
    """The LM to start from and the base model's name: the checkpoint's classifier when resuming,
    else `lm_or_name`, else (a run killed before its first checkpoint) the run's base model."""
    if checkpoint is not None:
        return load(checkpoint, device="cpu", dtype="fp32", task="classifier"), run.info.get("base_model")
    if lm_or_name is None and run is not None:
        lm_or_name = run.info.get("base_model")
    if lm_or_name is None:
        raise InputError("pass the model to fine-tune (an LM, a name or a folder)")
    lm = lm_or_name if isinstance(lm_or_name, LM) else load(lm_or_name, device="cpu", dtype="fp32")
    base = (run.info.get("base_model") if run is not None else None) or lm.path or lm.name
    return lm, base


__all__ = ["FineTuneConfig", "finetune", "collate", "length_grouped_batches", "pad_multiple",
           "KIND"]
