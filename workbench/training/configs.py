"""The two training configs, `PretrainConfig` and `FineTuneConfig`, and their validation.

Kept free of torch, transformers and pandas so that the command line (`workbench --help`) can turn
every field into a flag without loading them. Each field carries its help text in
`field(metadata={"help": ...})`: the CLI (`training.flags`), the docs and the widgets read it there.
Every field is checked at construction (`__post_init__` -> `validate`), before any run folder
exists, with an `InputError` that names the field, the value and what to use instead.
"""

from __future__ import annotations

import dataclasses
import re
import typing
import warnings
from dataclasses import dataclass, field

from ..config import ConfigBase, require
from ..errors import DeviceError, InputError

MASK_MODES = ("dynamic", "static")
# field names of earlier releases -> today's (one vocabulary for both configs); the old spellings
# still work, with a FutureWarning, until the next release
RENAMED_FIELDS = {"lr": "learning_rate", "grad_accum": "grad_accumulation"}
TASKS = ("auto", "classification", "regression")
PRECISIONS = ("auto", "bf16", "fp32")
CLASSIFICATION_METRICS = ("accuracy", "macro_f1", "mcc")
REGRESSION_METRICS = ("pearson", "spearman", "mse")
EVAL_METRICS = ("eval_loss",) + tuple(f"eval_{m}" for m in CLASSIFICATION_METRICS + REGRESSION_METRICS)

# model sizes: layers, hidden, heads, intermediate; and the training settings that suit them
PRESETS: dict[str, dict] = {
    "tiny": dict(num_layers=2, hidden_size=64, num_heads=2, intermediate_size=256, seq_len=64,
                 vocab_size=2000, batch_size=16, learning_rate=1e-3, max_steps=200, warmup_steps=20,
                 eval_every=50, checkpoint_every=100),
    "mini": dict(num_layers=4, hidden_size=256, num_heads=4, intermediate_size=1024, seq_len=128,
                 vocab_size=8000, batch_size=64, learning_rate=1e-3, max_steps=5000, warmup_steps=300),
    "small": dict(num_layers=6, hidden_size=512, num_heads=8, intermediate_size=2048, seq_len=128,
                  vocab_size=16000, batch_size=128, learning_rate=7e-4, max_steps=20000, warmup_steps=1000),
    "base": dict(num_layers=12, hidden_size=768, num_heads=12, intermediate_size=3072, seq_len=512,
                 vocab_size=50265, batch_size=32, grad_accumulation=8, learning_rate=6e-4, max_steps=100000,
                 warmup_steps=6000),
    # the embedded default model (data/demo-model): 6 x 384, 16k BPE, 256-token sequences
    "demo": dict(num_layers=6, hidden_size=384, num_heads=6, intermediate_size=1536, seq_len=256,
                 vocab_size=16000, batch_size=256, learning_rate=7e-4, max_steps=20000, warmup_steps=1000,
                 dropout=0.1, eval_every=500, checkpoint_every=2000, eval_sequences=400),
}


def _f(default, help: str, **metadata):
    """A dataclass field with its help text (and e.g. `choices`) in the metadata."""
    return field(default=default, metadata={"help": help, **metadata})


def field_types(cls) -> dict[str, tuple[type, bool]]:
    """{field name: (base type, None allowed)} from the annotations (`int | None` -> (int, True))."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        args = typing.get_args(hints[f.name]) or (hints[f.name],)
        base = [a for a in args if a is not type(None)][0]
        out[f.name] = (base, type(None) in args)
    return out


_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _check_device(config) -> None:
    """The device's spelling, checked here (torch-free); availability is checked when a run starts."""
    if not isinstance(config.device, str) or not _DEVICE.match(config.device):
        raise DeviceError(f"device={config.device!r} is not a device the workbench can use; pass "
                          "'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")


def _at_least(config, names: tuple[str, ...], low: int | float, what: str) -> None:
    for name in names:
        value = getattr(config, name)
        if value is not None:
            require(value >= low, f"{name}={value!r}; use {what}")


@dataclass(frozen=True)
class PretrainConfig(ConfigBase):
    """Settings of one pretraining run; `PretrainConfig.from_preset("mini", learning_rate=5e-4)`
    starts from a preset."""

    renamed_fields = RENAMED_FIELDS
    # what may change when a run is resumed: budgets, intervals and the machine, never the model,
    # data, masking or optimiser (those would make the resumed curve a different experiment)
    resumable_changes = ("time_budget_s", "max_steps", "eval_every", "eval_sequences",
                         "checkpoint_every", "checkpoint_minutes", "keep_checkpoints",
                         "keep_optimizer_state", "log_every", "device", "precision", "compile")
    preset: str | None = _f(None, "preset the sizes came from", choices=tuple(PRESETS))
    # model (RobertaConfig sizes)
    num_layers: int = _f(4, "transformer layers")
    hidden_size: int = _f(256, "hidden size (a multiple of num_heads)")
    num_heads: int = _f(4, "attention heads per layer")
    intermediate_size: int = _f(1024, "feed-forward size")
    dropout: float = _f(0.0, "hidden and attention dropout (0 suits short runs)")
    # data
    seq_len: int = _f(128, "tokens per packed sequence, <s> and </s> included")
    pack_mode: str = _f("full", "'full' (FULL-SENTENCES) or 'doc' (DOC-SENTENCES)", choices=("full", "doc"))
    vocab_size: int = _f(8000, "BPE vocabulary size of a tokenizer trained on the corpus")
    heldout: float = _f(0.02, "fraction of documents held out for evaluation")
    # masking
    masking: str = _f("dynamic", "'dynamic' (new mask each epoch) or 'static' (K fixed masks)",
                      choices=MASK_MODES)
    static_copies: int = _f(10, "K fixed masks per sequence in static mode (paper: 10)")
    mask_probability: float = _f(0.15, "fraction of tokens selected for prediction")
    mask_token_rate: float = _f(0.8, "of the selected tokens: replaced by <mask>")
    random_token_rate: float = _f(0.1, "of the selected tokens: replaced by a random token (rest kept)")
    whole_word: bool = _f(False, "mask every piece of a selected word")
    # optimisation
    batch_size: int = _f(64, "sequences per micro-batch (per process)")
    grad_accumulation: int = _f(1, "micro-batches per optimiser step")
    learning_rate: float = _f(1e-3, "peak learning rate (AdamW)")
    warmup_steps: int = _f(300, "linear warm-up steps (transformers' schedule), then linear decay to 0")
    weight_decay: float = _f(0.01, "AdamW weight decay (not on biases and LayerNorm)")
    beta1: float = _f(0.9, "AdamW beta1")
    beta2: float = _f(0.98, "AdamW beta2")
    eps: float = _f(1e-6, "AdamW epsilon")
    max_grad_norm: float | None = _f(1.0, "gradient clipping norm (0 or None = off)")
    max_steps: int = _f(5000, "optimiser steps")
    time_budget_s: float | None = _f(None, "stop after this much training time; the schedule fits it")
    # evaluation and checkpoints
    eval_every: int = _f(200, "steps between held-out evaluations")
    eval_sequences: int = _f(256, "held-out sequences per evaluation (fixed mask)")
    eval_seed: int = _f(1234, "seed of the fixed evaluation mask")
    checkpoint_every: int = _f(1000, "steps between checkpoints")
    checkpoint_minutes: float = _f(10.0, "also checkpoint after this many minutes (0 = off)")
    keep_checkpoints: int = _f(1, "newest checkpoints kept; the newest two keep optimiser state "
                                  "while the run is live")
    keep_optimizer_state: bool = _f(True, "keep the newest optimiser state when the run completes, "
                                          "so it can be extended (max_steps, time_budget_s)")
    log_every: int = _f(10, "steps between train-loss rows")
    # machine
    device: str = _f("auto", "'auto', 'cpu', 'cuda', 'cuda:1', 'mps'")
    precision: str = _f("auto", "'auto' (bf16 autocast on a GPU that has it), 'bf16' or 'fp32'",
                        choices=PRECISIONS)
    compile: str = _f("auto", "torch.compile the encoder: 'auto' (on CUDA), 'yes' or 'no'",
                      choices=("auto", "yes", "no"))
    seed: int = _f(0, "seed of the weights, data order and masks")

    def validate(self) -> None:
        _check_device(self)
        require(self.preset is None or self.preset in PRESETS,
                f"preset={self.preset!r}; use one of {sorted(PRESETS)}")
        _at_least(self, ("num_layers", "num_heads", "hidden_size", "intermediate_size", "batch_size",
                         "grad_accumulation", "max_steps", "eval_every", "eval_sequences", "checkpoint_every",
                         "keep_checkpoints", "log_every", "static_copies"), 1, "1 or more")
        _at_least(self, ("warmup_steps", "weight_decay", "checkpoint_minutes", "seed", "eval_seed",
                         "max_grad_norm"), 0, "0 or more")
        require(self.hidden_size % self.num_heads == 0,
                f"hidden_size={self.hidden_size} must be divisible by num_heads={self.num_heads}")
        require(self.pack_mode in ("full", "doc"), f"pack_mode={self.pack_mode!r}; use 'full' or 'doc'")
        require(self.masking in MASK_MODES, f"masking={self.masking!r}; use one of {MASK_MODES}")
        require(0 < self.mask_probability < 1, f"mask_probability={self.mask_probability}; use (0, 1)")
        require(self.mask_token_rate >= 0 and self.random_token_rate >= 0
                and self.mask_token_rate + self.random_token_rate <= 1,
                f"mask_token_rate={self.mask_token_rate} + random_token_rate={self.random_token_rate} "
                "must be within [0, 1]")
        require(self.seq_len >= 8, f"seq_len={self.seq_len}; use 8 or more")
        require(self.vocab_size >= 262, f"vocab_size={self.vocab_size}; use 262 or more "
                                        "(256 bytes + 5 special tokens, plus merges)")
        require(0 < self.heldout < 1, f"heldout={self.heldout}; use a fraction in (0, 1)")
        require(0 < self.learning_rate < 1,
                f"learning_rate={self.learning_rate}; use a positive value such as 1e-3")
        require(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "beta1 and beta2 must be in [0, 1)")
        require(self.eps > 0, f"eps={self.eps}; use a small positive value such as 1e-6")
        require(self.precision in PRECISIONS, f"precision={self.precision!r}; use one of {PRECISIONS}")
        require(self.compile in ("auto", "yes", "no"), f"compile={self.compile!r}; use 'auto', 'yes' or 'no'")
        require(0 <= self.dropout < 1, f"dropout={self.dropout}; use [0, 1)")
        require(self.time_budget_s is None or self.time_budget_s > 0,
                f"time_budget_s={self.time_budget_s}; use None or a positive number of seconds")

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "PretrainConfig":
        if name not in PRESETS:
            raise InputError(f"unknown preset {name!r}; use one of {sorted(PRESETS)}")
        for old, new in RENAMED_FIELDS.items():
            if old in overrides and new not in overrides:
                warnings.warn(f"PretrainConfig.from_preset({old}=...) is deprecated: use {new}=...",
                              FutureWarning, stacklevel=2)
                overrides[new] = overrides.pop(old)
        return cls(preset=name, **{**PRESETS[name], **overrides})

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.grad_accumulation * self.seq_len


@dataclass(frozen=True)
class FineTuneConfig(ConfigBase):
    """How to fine-tune. Defaults follow the RoBERTa paper's GLUE recipe where it gives one."""

    renamed_fields = RENAMED_FIELDS
    # what may change when a run is resumed (nothing that changes what is computed)
    resumable_changes = ("eval_every", "checkpoint_every", "checkpoint_minutes", "keep_checkpoints",
                         "keep_optimizer_state", "log_every", "device")

    # data
    text_column: str = _f("text", "column with the (first) sentence")
    pair_column: str | None = _f(None, "column with the second sentence of a pair, if any")
    label_column: str = _f("label", "column with the label")
    task: str = _f("auto", "'auto', 'classification' or 'regression'", choices=TASKS)
    validation_split: float = _f(0.1, "fraction held out for validation when one table is given")
    max_length: int = _f(128, "tokens per example (pair included), at most the model's")
    # optimisation
    learning_rate: float = _f(0.0, "peak learning rate; 0 = by model size: 2e-5 for hidden size "
                                   ">= 768 (roberta-base, the paper's GLUE range), 1e-4 below "
                                   "(the 6x384 demo model learns little at 2e-5)")
    batch_size: int = _f(32, "examples per micro-batch (per process)")
    grad_accumulation: int = _f(1, "micro-batches per optimiser step")
    epochs: int = _f(3, "passes over the training split")
    max_steps: int | None = _f(None, "optimiser steps; overrides epochs when set")
    warmup_ratio: float = _f(0.06, "linear warm-up over this fraction of the steps ...")
    warmup_steps: int = _f(0, "... or over this many steps when > 0")
    weight_decay: float = _f(0.1, "AdamW weight decay (not on biases and LayerNorm weights)")
    max_grad_norm: float | None = _f(1.0, "gradient clipping norm (0 or None = off)")
    seed: int = _f(0, "seed of the new head, dropout and batch order")
    precision: str = _f("auto", "'auto' (bf16 on a GPU that has it, else fp32), 'bf16' or 'fp32'",
                        choices=PRECISIONS)
    device: str = _f("auto", "'auto', 'cpu', 'cuda', 'cuda:1', 'mps'")
    # bookkeeping
    eval_every: int = _f(0, "optimiser steps between evaluations (0 = each epoch)")
    checkpoint_every: int = _f(0, "steps between checkpoints (0 = at each evaluation)")
    checkpoint_minutes: float = _f(10.0, "also checkpoint after this many minutes (0 = off)")
    keep_checkpoints: int = _f(1, "newest checkpoints kept (the newest two keep optimiser state "
                                  "while the run is live); the best evaluation's weights as well")
    keep_optimizer_state: bool = _f(False, "keep the optimiser state (and float32 weights) when the "
                                           "run completes or stops early")
    early_stopping_patience: int = _f(0, "evaluations without improvement before stopping (0 = off)")
    early_stopping_metric: str = _f("eval_loss", "metric that decides the best checkpoint",
                                    choices=EVAL_METRICS)
    log_every: int = _f(10, "steps between train-loss rows")

    def peak_learning_rate(self, hidden_size: int) -> float:
        """The peak learning rate for a model of `hidden_size`: `learning_rate`, or for 0 ("auto")
        2e-5 at hidden size 768 or more (roberta-base; the RoBERTa paper's GLUE runs used
        1e-5..3e-5) and 1e-4 below (the embedded 6x384 demo model barely moves at 2e-5; notebook 06
        measured 1e-4 best, 1e-3 unstable)."""
        if self.learning_rate:
            return self.learning_rate
        return 2e-5 if hidden_size >= 768 else 1e-4

    def validate(self) -> None:
        _check_device(self)
        require(self.task in TASKS, f"task={self.task!r}; use one of {list(TASKS)}")
        require(0.0 < self.validation_split < 1.0,
                f"validation_split={self.validation_split}; use a fraction in (0, 1)")
        require(2 <= self.max_length <= 100_000, f"max_length={self.max_length}; use 2..model max")
        require(0.0 <= self.learning_rate < 1.0,
                f"learning_rate={self.learning_rate}; use 0 (by model size) or a value such as 2e-5")
        _at_least(self, ("batch_size", "grad_accumulation", "keep_checkpoints", "log_every",
                         "max_steps"), 1, "1 or more")
        _at_least(self, ("epochs", "warmup_steps", "weight_decay", "max_grad_norm", "seed",
                         "eval_every", "checkpoint_every", "checkpoint_minutes",
                         "early_stopping_patience"), 0, "0 (off) or more")
        require(self.epochs >= 1 or self.max_steps is not None,
                f"epochs={self.epochs}; use 1 or more, or set max_steps")
        require(0.0 <= self.warmup_ratio < 1.0, f"warmup_ratio={self.warmup_ratio}; use [0, 1)")
        require(self.precision in PRECISIONS,
                f"precision={self.precision!r}; use one of {list(PRECISIONS)}")
        require(self.early_stopping_metric in EVAL_METRICS,
                f"early_stopping_metric={self.early_stopping_metric!r}; use one of "
                f"{sorted(EVAL_METRICS)}")


__all__ = ["PretrainConfig", "FineTuneConfig", "PRESETS", "field_types"]
