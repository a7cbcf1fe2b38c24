"""MLM pretraining the RoBERTa way: `wb.pretrain(corpus, config=...) -> Run`.

The loop, top to bottom: pack the corpus (training.corpus) -> build a RobertaForMaskedLM from the
config -> for each optimiser step, `grad_accum` micro-batches of packed sequences, masked on the
device (training.masking: dynamic, static ×K, whole-word) -> encoder forward (sdpa; bf16 autocast
and optionally torch.compile on CUDA) -> gather the hidden states at masked positions only and run
the LM head there (B·T·15% rows instead of B·T: the head is the biggest matmul of a small model)
-> AdamW with linear warm-up and linear decay -> events to callbacks; held-out loss, perplexity
and masked top-1 accuracy with a fixed evaluation mask every `eval_every` steps, beside the
unigram baseline (always predicting the most frequent training token); checkpoints that resume
exactly (training.checkpoint).

A time budget (`time_budget_s`) turns the step count into an estimate, re-fitted from the
measured step time during the first half of the run, so warm-up and decay still span the budget.

Multi-GPU: launch the same script with `torchrun --nproc_per_node=N` or `accelerate launch`
(both set WORLD_SIZE/RANK/LOCAL_RANK); each process trains on its own slice of every epoch and
gradients are averaged with `torch.distributed.all_reduce` after each step; only rank 0 evaluates
and writes the run folder.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from ..config import ConfigBase, require
from ..errors import InputError
from .checkpoint import load_training_state, save_checkpoint
from .corpus import PackedCorpus, as_corpus, default_cache_dir, pack
from .events import Callback, Event, MetricsLogger, ProgressBar, StopFlag, emit
from .masking import IGNORE_INDEX, MASK_MODES, Masker, TokenTables
from .run import Run

logger = logging.getLogger(__name__)

# model sizes: layers, hidden, heads, intermediate; and the training settings that suit them
PRESETS: dict[str, dict] = {
    "tiny": dict(num_layers=2, hidden_size=64, num_heads=2, intermediate_size=256, seq_len=64,
                 vocab_size=2000, batch_size=16, lr=1e-3, max_steps=200, warmup_steps=20,
                 eval_every=50, checkpoint_every=100),
    "mini": dict(num_layers=4, hidden_size=256, num_heads=4, intermediate_size=1024, seq_len=128,
                 vocab_size=8000, batch_size=64, lr=1e-3, max_steps=5000, warmup_steps=300),
    "small": dict(num_layers=6, hidden_size=512, num_heads=8, intermediate_size=2048, seq_len=128,
                  vocab_size=16000, batch_size=128, lr=7e-4, max_steps=20000, warmup_steps=1000),
    "base": dict(num_layers=12, hidden_size=768, num_heads=12, intermediate_size=3072, seq_len=512,
                 vocab_size=50265, batch_size=32, grad_accum=8, lr=6e-4, max_steps=100000,
                 warmup_steps=6000),
    # the embedded default model (data/demo-model): 6 x 384, 16k BPE, 256-token sequences
    "demo": dict(num_layers=6, hidden_size=384, num_heads=6, intermediate_size=1536, seq_len=256,
                 vocab_size=16000, batch_size=256, lr=7e-4, max_steps=20000, warmup_steps=1000,
                 dropout=0.1, eval_every=500, checkpoint_every=2000, eval_sequences=400),
}


@dataclass(frozen=True)
class PretrainConfig(ConfigBase):
    """Settings of one pretraining run; `PretrainConfig.preset("mini", lr=5e-4)` starts from a preset."""

    preset: str | None = None
    # model (RobertaConfig sizes)
    num_layers: int = 4
    hidden_size: int = 256
    num_heads: int = 4
    intermediate_size: int = 1024
    dropout: float = 0.0              # hidden and attention dropout (0 suits short runs)
    # data
    seq_len: int = 128                # tokens per packed sequence, <s> and </s> included
    pack_mode: str = "full"           # "full" (FULL-SENTENCES) or "doc" (DOC-SENTENCES)
    vocab_size: int = 8000            # for a tokenizer trained on the corpus
    heldout: float = 0.02             # fraction of documents held out for evaluation
    # masking
    masking: str = "dynamic"          # "dynamic" or "static"
    static_copies: int = 10           # K fixed masks per sequence in static mode (paper: 10)
    mask_probability: float = 0.15
    mask_token_rate: float = 0.8      # of the selected tokens: replaced by <mask>
    random_token_rate: float = 0.1    # ... by a random token (the rest are kept)
    whole_word: bool = False
    # optimisation
    batch_size: int = 64              # sequences per micro-batch
    grad_accum: int = 1               # micro-batches per optimiser step
    lr: float = 1e-3
    warmup_steps: int = 300
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1e-6
    max_grad_norm: float = 1.0
    max_steps: int = 5000
    time_budget_s: float | None = None  # stop after this much training time; schedule fits it
    # evaluation and checkpoints
    eval_every: int = 200
    eval_sequences: int = 256         # held-out sequences per evaluation (fixed mask)
    eval_seed: int = 1234
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    log_every: int = 10
    # machine
    device: str = "auto"
    precision: str = "auto"           # "auto" (bf16 autocast on CUDA), "bf16", "fp32"
    compile: str = "auto"             # "auto" (on CUDA), "yes", "no"
    seed: int = 0

    def validate(self) -> None:
        require(self.preset is None or self.preset in PRESETS,
                f"preset={self.preset!r}; use one of {sorted(PRESETS)}")
        require(self.hidden_size % self.num_heads == 0,
                f"hidden_size={self.hidden_size} must be divisible by num_heads={self.num_heads}")
        require(self.pack_mode in ("full", "doc"), f"pack_mode={self.pack_mode!r}; use 'full' or 'doc'")
        require(self.masking in MASK_MODES, f"masking={self.masking!r}; use one of {MASK_MODES}")
        require(0 < self.mask_probability < 1, "mask_probability must be in (0, 1)")
        require(self.mask_token_rate >= 0 and self.random_token_rate >= 0
                and self.mask_token_rate + self.random_token_rate <= 1,
                "mask_token_rate + random_token_rate must be within [0, 1]")
        require(self.static_copies >= 1, "static_copies must be >= 1")
        require(self.seq_len >= 8, "seq_len must be >= 8")
        require(self.batch_size >= 1 and self.grad_accum >= 1, "batch_size and grad_accum must be >= 1")
        require(self.lr > 0 and self.max_steps >= 1, "lr must be > 0 and max_steps >= 1")
        require(self.precision in ("auto", "bf16", "fp32"), "precision: 'auto', 'bf16' or 'fp32'")
        require(self.compile in ("auto", "yes", "no"), "compile: 'auto', 'yes' or 'no'")
        require(0 <= self.dropout < 1, "dropout must be in [0, 1)")
        require(self.time_budget_s is None or self.time_budget_s > 0, "time_budget_s must be > 0")

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "PretrainConfig":
        if name not in PRESETS:
            raise InputError(f"unknown preset {name!r}; use one of {sorted(PRESETS)}")
        return cls(preset=name, **{**PRESETS[name], **overrides})

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.grad_accum * self.seq_len


class WarmupLinear:
    """lr factor: linear warm-up to 1 over `warmup` steps, then linear decay to 0 at `total`.

    A callable object (not a lambda) so LambdaLR saves `warmup`/`total` in its state_dict."""

    def __init__(self, warmup: int, total: int):
        self.warmup = int(warmup)
        self.total = int(total)

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / max(1, self.warmup)
        return max(0.0, (self.total - step) / max(1, self.total - self.warmup))


# --------------------------------------------------------------------------- building blocks

def build_model(config: PretrainConfig, tokenizer):
    """A randomly initialised RobertaForMaskedLM sized by `config`, with sdpa attention."""
    from transformers import RobertaConfig, RobertaForMaskedLM

    rc = RobertaConfig(
        vocab_size=len(tokenizer), hidden_size=config.hidden_size,
        num_hidden_layers=config.num_layers, num_attention_heads=config.num_heads,
        intermediate_size=config.intermediate_size, max_position_embeddings=config.seq_len + 2,
        hidden_dropout_prob=config.dropout, attention_probs_dropout_prob=config.dropout,
        type_vocab_size=1, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, layer_norm_eps=1e-5,
    )
    torch.manual_seed(config.seed)
    model = RobertaForMaskedLM._from_config(rc, attn_implementation="sdpa")
    return model


def make_optimizer(model, config: PretrainConfig, device: torch.device):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name else decay).append(p)
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    kwargs = dict(lr=config.lr, betas=(config.beta1, config.beta2), eps=config.eps)
    if device.type == "cuda":
        kwargs["fused"] = True
    return torch.optim.AdamW(groups, **kwargs)


def masked_lm_loss(model, encoder, input_ids, attention_mask, labels):
    """Cross-entropy over masked positions only: gather hidden states, then run the LM head.

    Returns (loss, logits (M, V), targets (M,)) where M = number of masked tokens."""
    hidden = encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, H)
    sel = labels != IGNORE_INDEX                                                             # (B, T)
    picked = hidden[sel]                                                                     # (M, H)
    logits = model.lm_head(picked)                                                           # (M, V)
    targets = labels[sel]                                                                    # (M,)
    loss = torch.nn.functional.cross_entropy(logits.float(), targets)
    return loss, logits, targets


def unigram_baseline(packed: PackedCorpus, special_ids: Iterable[int]) -> tuple[int, int]:
    """(most frequent non-special token id in the training split, vocab size used for counting)."""
    counts = np.bincount(packed.train.reshape(-1).astype(np.int64))
    counts[[i for i in special_ids if i < len(counts)]] = 0
    return int(counts.argmax()), len(counts)


def model_flops_per_token(config: PretrainConfig, vocab: int, masked_fraction: float) -> float:
    """Training FLOPs per token: 6·N (encoder + head dense) + attention + masked-only decoder."""
    d, L, T = config.hidden_size, config.num_layers, config.seq_len
    layer = 4 * d * d + 2 * d * config.intermediate_size
    n = L * layer + d * d
    attention = 12 * L * T * d  # QK^T and AV, forward + backward
    return 6 * n + attention + 6 * d * vocab * masked_fraction


PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12}


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_BF16_FLOPS.items():
        if key in name:
            return value
    return None


# --------------------------------------------------------------------------- data

def prepare_data(corpus, config: PretrainConfig, tokenizer=None, cache_dir=None) -> tuple[PackedCorpus, object]:
    """Return (packed corpus, tokenizer), training a BPE tokenizer on the corpus if none is given."""
    if isinstance(corpus, PackedCorpus):
        packed = corpus
    elif isinstance(corpus, (str, Path)) and (Path(corpus) / "meta.json").exists():
        packed = PackedCorpus.load(corpus)
    else:
        corpus = as_corpus(corpus)
        tok_dir = None
        if tokenizer is None:
            from .tokenizer import train_bpe_tokenizer

            tok_dir = Path(cache_dir or default_cache_dir()) / "tokenizers" / \
                f"{corpus.hash}-bpe{config.vocab_size}-len{config.seq_len}"
            if (tok_dir / "tokenizer.json").exists():
                from transformers import AutoTokenizer

                tokenizer = AutoTokenizer.from_pretrained(tok_dir)
            else:
                tokenizer = train_bpe_tokenizer(corpus.texts(), tok_dir, vocab_size=config.vocab_size,
                                                model_max_length=config.seq_len)
        packed = pack(corpus, tokenizer, seq_len=config.seq_len, mode=config.pack_mode,
                      heldout=config.heldout, seed=config.seed, tokenizer_dir=tok_dir,
                      cache_dir=Path(cache_dir) / "packed" if cache_dir else None)
    if packed.seq_len != config.seq_len:
        raise InputError(f"the packed corpus has sequences of {packed.seq_len} tokens but "
                         f"config.seq_len={config.seq_len}; repack or set seq_len={packed.seq_len}")
    if tokenizer is None:
        tokenizer = packed.tokenizer()
    if len(packed.heldout) == 0:
        raise InputError("the corpus has no held-out sequences; use more documents or heldout > 0")
    return packed, tokenizer


class Batches:
    """Deterministic epoch order: sequence order of epoch e is a permutation seeded by (seed, e)."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        if n < batch_size * world:
            raise InputError(f"only {n} training sequences for batch_size={batch_size} x {world} "
                             "process(es): use a smaller batch or more text")
        self.n, self.batch_size, self.seed, self.rank, self.world = n, batch_size, seed, rank, world
        self.per_epoch = n // (batch_size * world)
        self._epoch, self._order = None, None  # the current epoch's permutation, drawn once

    def rows(self, epoch: int, index: int, rank: int | None = None) -> np.ndarray:
        """Rows of micro-batch `index` of `epoch` for `rank` (default: this process's)."""
        if self._epoch != epoch:
            self._epoch, self._order = epoch, np.random.default_rng([self.seed, epoch]).permutation(self.n)
        order = self._order
        start = (index * self.world + (self.rank if rank is None else rank)) * self.batch_size
        return order[start:start + self.batch_size]


# --------------------------------------------------------------------------- the run

def pretrain(corpus=None, *, config: PretrainConfig | str | dict | None = None, tokenizer=None,
             resume=None, callbacks: Iterable[Callback] = (), stop: StopFlag | None = None,
             name: str | None = None, root: str | Path | None = None, progress: bool = False,
             cache_dir: str | Path | None = None) -> Run:
    """Pretrain a RoBERTa-style masked LM on `corpus`; return its `Run` (open it with `run.load()`).

    `corpus`: a `Corpus`, "demo", texts, a text file/folder, a DataFrame with a 'text' column, a
    `datasets.Dataset`, a `PackedCorpus` or a packed-corpus folder. `config`: a PretrainConfig,
    a preset name ('tiny', 'mini', 'small', 'base', 'demo') or a dict. `resume`: a run (or its
    path/id) to continue from its latest checkpoint; its config is reused and `corpus` must be the
    same (checked by hash); `config` may then change only RESUMABLE_CHANGES (e.g. a larger
    `max_steps` or `time_budget_s`, which counts training time across sessions). `stop`: a StopFlag for a graceful stop from another thread.
    """
    callbacks = list(callbacks)
    rank, world = _distributed_rank()
    run: Run | None = None
    if resume is not None:
        run = Run.open(resume, root=root)
        saved = PretrainConfig.from_dict({k: v for k, v in run.config.items() if not k.startswith("_")})
        config = _resume_config(saved, config, run)
        if corpus is None:
            corpus = run.info.get("packed_corpus")
            if not corpus or not Path(corpus).exists():
                raise InputError(f"pass the corpus of run {run.id} again to resume it")
    elif isinstance(config, str):
        config = PretrainConfig.from_preset(config)
    elif isinstance(config, dict):
        config = PretrainConfig.from_dict(config)
    elif config is None:
        config = PretrainConfig.from_preset("mini")
    if corpus is None:
        raise InputError("pass a corpus: texts, a file or folder, a DataFrame, a dataset or 'demo'")

    # several processes: rank 0 trains the tokenizer and packs the corpus into the disk cache
    # first, the others then read that cache (all writing the same files at once could tear them)
    if world > 1 and rank != 0:
        torch.distributed.barrier()
    packed, tokenizer = prepare_data(corpus, config, tokenizer, cache_dir)
    if world > 1 and rank == 0:
        torch.distributed.barrier()
    from ..device import describe_machine, resolve_device

    device = resolve_device(config.device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    if run is None and rank == 0:
        run = Run.create("pretrain", config.to_dict(), name=name, root=root,
                         base_model=f"scratch:{config.preset or 'custom'}")
        run.set_status("created", corpus_hash=packed.meta.get("corpus_hash"),
                       corpus_name=packed.meta.get("corpus_name"),
                       packed_corpus=str(_packed_folder(packed, run)))
    elif run is not None and packed.meta.get("corpus_hash") != run.info.get("corpus_hash"):
        raise InputError(f"run {run.id} was trained on corpus {run.info.get('corpus_hash')}, "
                         f"not {packed.meta.get('corpus_hash')}: pass the same corpus to resume")
    if run is not None and rank == 0:
        callbacks = [MetricsLogger(run)] + callbacks
        if progress:
            callbacks.append(ProgressBar(desc="pretraining"))
    run_id = run.id if run is not None else None

    model = build_model(config, tokenizer).to(device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    optimizer = make_optimizer(model, config, device)
    schedule = WarmupLinear(config.warmup_steps, config.max_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    state = {"epoch": 0, "batch_in_epoch": 0, "draw": 0, "tokens_seen": 0, "train_time": 0.0}
    step = 0
    if resume is not None:
        ckpt = run.checkpoint()
        state.update(load_training_state(ckpt, model, optimizer, scheduler))
        step = int(state.pop("step"))  # the schedule's warmup/total came back with the scheduler

    tables = TokenTables.from_tokenizer(tokenizer, device)
    masker = Masker(tables, mode=config.masking, probability=config.mask_probability,
                    rates=(config.mask_token_rate, config.random_token_rate),
                    whole_word=config.whole_word, static_copies=config.static_copies, seed=config.seed)
    train = torch.from_numpy(packed.train.astype(np.int32))
    held = torch.from_numpy(packed.heldout[:config.eval_sequences].astype(np.int32)).to(device)
    batches = Batches(len(train), config.batch_size, config.seed, rank, world)
    pad_id = packed.pad_id
    top_id, _ = unigram_baseline(packed, tokenizer.all_special_ids)

    use_bf16 = config.precision == "bf16" or (config.precision == "auto" and device.type == "cuda"
                                               and torch.cuda.is_bf16_supported())
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if use_bf16 else _null
    encoder = model.roberta
    want_compile = config.compile == "yes" or (config.compile == "auto" and device.type == "cuda")
    compiled = torch.compile(encoder, dynamic=False) if want_compile else encoder

    peak = peak_flops(device)
    flops_tok = model_flops_per_token(config, len(tokenizer), config.mask_probability)

    def evaluate() -> dict:
        model.eval()
        total_loss, total_correct, total_n, base_correct = 0.0, 0, 0, 0
        with torch.no_grad(), autocast():
            for start in range(0, len(held), config.batch_size):
                ids = held[start:start + config.batch_size].long()
                rows = torch.arange(start, start + len(ids), device=device)
                inputs, labels = masker.evaluation(ids, rows, config.eval_seed)
                loss, logits, targets = masked_lm_loss(model, encoder, inputs, ids != pad_id, labels)
                n = len(targets)
                total_loss += loss.item() * n
                total_correct += int((logits.argmax(-1) == targets).sum())
                base_correct += int((targets == top_id).sum())
                total_n += n
        model.train()
        loss = total_loss / max(1, total_n)
        return {"eval_loss": loss, "eval_perplexity": math.exp(min(loss, 50)),
                "eval_accuracy": total_correct / max(1, total_n),
                "eval_unigram_accuracy": base_correct / max(1, total_n), "eval_tokens": total_n}

    saved_at = {"step": -1}

    def save() -> None:
        if run is None or saved_at["step"] == step:
            return
        saved_at["step"] = step
        path = save_checkpoint(run, step, model, tokenizer, optimizer, scheduler, dict(state),
                               keep_last=config.keep_checkpoints)
        emit(callbacks, Event("checkpoint", step, schedule.total, {"path": str(path)}, run_id=run_id))

    if run is not None:
        run.set_status("running", hardware=describe_machine())
    emit(callbacks, Event("start", step, schedule.total, {"tokens_per_step": config.tokens_per_step},
                          run_id=run_id))
    last_eval: dict = {}
    if step == 0 and rank == 0:  # the untrained model's score: where every curve starts
        last_eval = evaluate()
        emit(callbacks, Event("eval", 0, schedule.total, {**last_eval, "tokens_seen": 0}, run_id=run_id))
    model.train()
    t_begin = time.time()
    t_budget_start = time.time() - state["train_time"]
    step_times: list[float] = []
    first_step = step
    if not config.time_budget_s and schedule.total != config.max_steps:  # max_steps was changed
        schedule.total = config.max_steps
    status = "completed"
    try:
        while step < schedule.total:
            t0 = time.time()
            loss_sum = 0.0
            for _ in range(config.grad_accum):
                if state["batch_in_epoch"] >= batches.per_epoch:
                    state["epoch"] += 1
                    state["batch_in_epoch"] = 0
                rows_np = batches.rows(state["epoch"], state["batch_in_epoch"])
                cpu_ids = train[rows_np]                                       # (B, T) int32
                n_tokens = int((cpu_ids != pad_id).sum())  # counted on the CPU: no device sync
                for other in range(world):  # every process holds the data: count theirs too
                    if other != rank:
                        theirs = train[batches.rows(state["epoch"], state["batch_in_epoch"], other)]
                        n_tokens += int((theirs != pad_id).sum())
                ids = cpu_ids.to(device, non_blocking=True).long()
                rows = torch.from_numpy(rows_np).to(device)
                inputs, labels = masker(ids, rows, epoch=state["epoch"], draw=state["draw"])
                try:
                    loss = _forward_backward(model, compiled, inputs, ids != pad_id, labels,
                                             autocast, config.grad_accum)
                except Exception as err:  # noqa: BLE001 - a compile failure falls back to eager
                    if compiled is encoder:
                        raise
                    logger.warning("torch.compile failed (%s: %s); continuing without it",
                                   type(err).__name__, str(err)[:500])
                    compiled = encoder
                    if state["draw"] == 0 and step == 0:
                        optimizer.zero_grad(set_to_none=True)
                    loss = _forward_backward(model, compiled, inputs, ids != pad_id, labels,
                                             autocast, config.grad_accum)
                loss_sum += loss.detach()
                state["batch_in_epoch"] += 1
                state["draw"] += 1
                state["tokens_seen"] += n_tokens
            if world > 1:
                _all_reduce_grads(model, world)
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            log_now = step % config.log_every == 0 or step == schedule.total
            dt = time.time() - t0
            state["train_time"] += dt
            step_times.append(dt)
            if config.time_budget_s:
                _fit_schedule(schedule, step, step_times, config, time.time() - t_budget_start,
                              first_step)
            if log_now:
                recent = step_times[-config.log_every:]
                tps = config.tokens_per_step * world * len(recent) / max(1e-9, sum(recent))
                metrics = {"loss": float(loss_sum) / config.grad_accum, "lr": scheduler.get_last_lr()[0],
                           "grad_norm": float(grad_norm), "tokens_seen": state["tokens_seen"],
                           "epoch": state["epoch"], "tokens_per_s": tps,
                           "elapsed_s": time.time() - t_begin}
                if peak:
                    metrics["mfu"] = tps * flops_tok / (peak * world)
                emit(callbacks, Event("step", step, schedule.total, metrics, run_id=run_id))
            if step % config.eval_every == 0 and rank == 0:
                last_eval = evaluate()
                emit(callbacks, Event("eval", step, schedule.total,
                                      {**last_eval, "tokens_seen": state["tokens_seen"]}, run_id=run_id))
            if step % config.checkpoint_every == 0 and rank == 0:
                save()
            if stop is not None and stop.requested:
                status = "stopped"
                break
            if config.time_budget_s and time.time() - t_budget_start >= config.time_budget_s:
                break
    except BaseException as err:
        if run is not None:
            run.set_status("failed", error=f"{type(err).__name__}: {err}")
        emit(callbacks, Event("error", step, schedule.total, {"message": str(err)}, run_id=run_id))
        raise
    if rank == 0:
        if not last_eval or step % config.eval_every:
            last_eval = evaluate()
            emit(callbacks, Event("eval", step, schedule.total,
                                  {**last_eval, "tokens_seen": state["tokens_seen"]}, run_id=run_id))
        save()
        train_time = state["train_time"]
        tps = state["tokens_seen"] / max(1e-9, train_time)
        summary = {**last_eval, "steps": step, "tokens_seen": state["tokens_seen"],
                   "epochs": state["tokens_seen"] / max(1, packed.tokens("train")),
                   "train_time_s": train_time, "tokens_per_s": tps,
                   "wall_time_s": time.time() - t_begin,
                   "unigram_token": tokenizer.convert_ids_to_tokens(top_id),
                   "parameters": sum(p.numel() for p in model.parameters()),
                   "corpus_hash": packed.meta.get("corpus_hash"),
                   "compiled": compiled is not encoder, "bf16": use_bf16}
        if peak:
            summary["mfu"] = tps * flops_tok / (peak * world)
        if run is not None:
            run.write_summary(summary)
            run.set_status(status)
    emit(callbacks, Event("stopped" if status == "stopped" else "end", step, schedule.total,
                          dict(last_eval), run_id=run_id))
    return run


# what may change when a run is resumed: budgets, intervals and the machine, never the model,
# data, masking or optimiser (those would make the resumed curve a different experiment)
RESUMABLE_CHANGES = ("time_budget_s", "max_steps", "eval_every", "eval_sequences", "checkpoint_every",
                     "keep_checkpoints", "log_every", "device", "precision", "compile")


def _resume_config(saved: PretrainConfig, requested, run: Run) -> PretrainConfig:
    """The saved config, with the requested changes from RESUMABLE_CHANGES (others must match)."""
    if requested is None:
        return saved
    if isinstance(requested, str):
        requested = PretrainConfig.from_preset(requested)
    asked = requested if isinstance(requested, dict) else requested.to_dict()
    changes = {k: v for k, v in asked.items() if v != getattr(saved, k, None)}
    refused = sorted(k for k in changes if k not in RESUMABLE_CHANGES)
    if refused:
        raise InputError(f"resuming run {run.id} cannot change {refused} (only {list(RESUMABLE_CHANGES)}); "
                         "start a new run for a different model, data, masking or optimiser")
    if changes:
        config = saved.replace(**changes)
        from ..store import atomic_write_json

        atomic_write_json(run.path / "config.json", config.to_dict())
        return config
    return saved


def _forward_backward(model, encoder, inputs, attention_mask, labels, autocast, grad_accum: int):
    with autocast():
        loss, _, _ = masked_lm_loss(model, encoder, inputs, attention_mask, labels)
    (loss / grad_accum).backward()
    return loss


def _fit_schedule(schedule: WarmupLinear, step: int, step_times: list[float],
                  config: PretrainConfig, elapsed: float, first_step: int = 0) -> None:
    """Under a time budget (total training time, across resumed sessions too), re-estimate the
    total steps from this session's step times until it is half way through what remains, so
    warm-up and decay span the budget (never beyond `max_steps`)."""
    done = step - first_step
    if done < 20 or step % 10 or done > (schedule.total - first_step) / 2:
        return
    recent = step_times[-200:]
    per_step = sorted(recent)[len(recent) // 2] * 1.03  # median, plus eval/checkpoint overhead
    remaining = max(0.0, config.time_budget_s - elapsed)
    total = min(config.max_steps, step + int(remaining / max(per_step, 1e-6)))
    schedule.total = max(step + 1, total)
    schedule.warmup = min(config.warmup_steps, max(1, schedule.total // 10))


def _packed_folder(packed: PackedCorpus, run: Run) -> Path:
    """Where the packed corpus lives (saved into the run folder when it has no cache folder)."""
    key = packed.meta.get("key")
    cached = default_cache_dir() / "packed" / str(key)
    if key and (cached / "meta.json").exists():
        return cached
    return packed.save(run.path / "data")


def _distributed_rank() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and torch.distributed.is_available() and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if world > 1:
        return torch.distributed.get_rank(), world
    return 0, 1


def _all_reduce_grads(model, world: int) -> None:
    for p in model.parameters():
        if p.grad is not None:
            torch.distributed.all_reduce(p.grad)
            p.grad.div_(world)


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


__all__ = ["PretrainConfig", "PRESETS", "pretrain", "build_model", "masked_lm_loss", "WarmupLinear"]
