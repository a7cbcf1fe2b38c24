"""MLM pretraining the RoBERTa way: `wb.pretrain(corpus, config=...) -> Run`.

This file holds only what is particular to pretraining: the data (pack the corpus, training.corpus;
a deterministic epoch order, `Batches`), the model (a RobertaForMaskedLM built from the config),
the loss (`MaskedLM`: encoder forward with sdpa, then the LM head on the masked positions only:
B·T·15% rows instead of B·T, as the head is the biggest matmul of a small model; on a GPU with a
static row count, so a step never waits for the device and torch.compile sees one shape) and the
evaluation (held-out loss, perplexity and top-1 accuracy under a fixed mask, beside the unigram
baseline). The headline `eval_loss`/`eval_accuracy`/`eval_perplexity` count only positions shown
to the model as `<mask>`; `eval_selected_*` count every selected position, the 10% kept and 10%
random ones included (easier: a kept token is its own answer).

Everything else is the spine both loops share: processes, device, precision and optimizer
(`engine`), the schedule with transformers' warm-up (`schedule`; a time budget re-fits it from
measured step times), and the run lifecycle, checkpoints and the resume rule (`spine`).

Several GPUs: `torchrun --nproc_per_node=N` or `accelerate launch`; each process trains on its
own slice of every micro-batch, DDP averages gradients (bucketed), rank 0 evaluates and writes.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from ..errors import InputError
from .checkpoint import load_training_state
from .configs import PRESETS, PretrainConfig
from ..resources import cache_root
from .corpus import PackedCorpus, as_corpus, pack
from .engine import Engine, clip_gradients, make_optimizer
from .events import Callback, StopFlag
from .masking import IGNORE_INDEX, Masker, TokenTables
from .run import Run
from .schedule import WarmupLinear, fit_to_budget, make_scheduler
from .spine import Spine, resume_config, run_lifecycle

logger = logging.getLogger(__name__)
KIND = "pretrain"


# --------------------------------------------------------------------------- model and loss

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




class MaskedLM(torch.nn.Module):
    """The module the engine trains (and DDP wraps): the loss over the selected positions only.

    `capacity=None`: the head runs on exactly the M selected positions (`hidden[labels != -100]`;
    M varies per batch, and on a GPU finding it waits for the device). `capacity=C`: the head runs
    on C rows, the selected positions first (a stable sort, no host sync) and the rest ignored by
    the loss, so every tensor has a static shape; the loss is the same mean over the selected
    positions as long as there are at most C of them (`head_capacity` leaves 8 standard
    deviations of room; `overflow(labels)` counts any that would be left out, and the loop
    reports them). `compiled`: torch.compile the whole loss (encoder, gather, head, cross-entropy)
    with static shapes; the parameters and state_dict stay those of `model`."""

    def __init__(self, model, capacity: int | None = None, compiled: bool = False):
        super().__init__()
        self.model, self.capacity = model, capacity
        self.compiled = torch.compile(self._loss, dynamic=False) if compiled else None

    def forward(self, input_ids, attention_mask, labels):
        """(B, T) inputs -> (loss, logits (M or C, V), targets (M or C,), -100 where ignored)."""
        return (self.compiled or self._loss)(input_ids, attention_mask, labels)

    def exact(self, input_ids, attention_mask, labels):
        """Eager, and the head on exactly the selected positions (evaluation)."""
        return self._loss(input_ids, attention_mask, labels, capacity=None)

    def _loss(self, input_ids, attention_mask, labels, capacity: int | None = -1):
        capacity = self.capacity if capacity == -1 else capacity
        hidden = self.model.roberta(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if capacity is None:
            sel = labels != IGNORE_INDEX                                       # (B, T)
            rows, targets = hidden[sel], labels[sel]                           # (M, d), (M,)
        else:
            flat = labels.flatten()                                            # (B·T,)
            order = torch.argsort((flat == IGNORE_INDEX).to(torch.uint8), stable=True)[:capacity]
            rows, targets = hidden.flatten(0, 1)[order], flat[order]           # (C, d), (C,)
        logits = self.model.lm_head(rows)                                      # (M or C, V)
        loss = torch.nn.functional.cross_entropy(logits.float(), targets, ignore_index=IGNORE_INDEX)
        return loss, logits, targets

    def overflow(self, labels) -> torch.Tensor:
        """Selected positions beyond the capacity (0-dim tensor on the device; 0 without one)."""
        if self.capacity is None:
            return torch.zeros((), dtype=torch.long, device=labels.device)
        return ((labels != IGNORE_INDEX).sum() - self.capacity).clamp(min=0)


def head_capacity(batch_size: int, seq_len: int, probability: float, whole_word: bool) -> int:
    """Rows for the static-shape head: the expected selected count plus 8 standard deviations
    (a binomial over the batch's tokens; over words for whole-word masking, whose count of pieces
    per word raises the variance, taken as up to 4x), rounded up to a multiple of 64."""
    n = batch_size * seq_len
    spread = math.sqrt(n * probability * (1 - probability) * (4 if whole_word else 1))
    return min(n, math.ceil((n * probability + 8 * spread) / 64) * 64)


def unigram_baseline(packed: PackedCorpus, special_ids: Iterable[int]) -> tuple[int, int]:
    """(most frequent non-special token id in the training split, vocab size used for counting);
    the counts are streamed (`PackedCorpus.token_counts`), never a whole-corpus copy."""
    counts = packed.token_counts().copy()
    counts[[i for i in special_ids if i < len(counts)]] = 0
    return int(counts.argmax()), len(counts)


def model_flops_per_token(config: PretrainConfig, vocab: int, masked_fraction: float) -> float:
    """Training FLOPs per token (forward + backward = 3x forward): 6 per weight of the encoder's
    dense layers, the attention matmuls (QK^T and AV: 12·L·T·d), and the LM head (its dense
    transform and the decoder, 6·(d² + d·V)) only at the `masked_fraction` of positions where
    it runs (1.0 for a full head). Embedding lookups, LayerNorm, softmax and biases count 0."""
    d, L, T = config.hidden_size, config.num_layers, config.seq_len
    layer = 4 * d * d + 2 * d * config.intermediate_size
    attention = 12 * L * T * d
    head = 6 * (d * d + d * vocab)
    return 6 * L * layer + attention + head * masked_fraction


PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12}


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_BF16_FLOPS.items():
        if key in name:
            return value
    return None


@torch.no_grad()
def evaluate_held_out(mlm: MaskedLM, held: torch.Tensor, masker: Masker, *, pad_id: int,
                      top_id: int, batch_size: int, eval_seed: int,
                      autocast=contextlib.nullcontext) -> dict:
    """Held-out metrics of `mlm` on `held` (N, T) under the fixed evaluation mask
    (`masker.evaluation(ids, rows, eval_seed)`, rows = index in `held`), dropout off.

    Headline `eval_loss`/`eval_accuracy`/`eval_perplexity`/`eval_unigram_accuracy` count positions
    shown as `<mask>`; `eval_selected_*` every selected position (kept and random ones too);
    `top_id` is the unigram baseline's answer (`unigram_baseline`)."""
    sums = dict.fromkeys(("loss", "hit", "n", "unigram", "sel_loss", "sel_hit", "sel_n"), 0.0)
    was_training = mlm.model.training
    mlm.model.eval()
    with autocast():
        for start in range(0, len(held), batch_size):
            ids = held[start:start + batch_size].long()                           # (B, T)
            rows = torch.arange(start, start + len(ids), device=ids.device)
            inputs, labels = masker.evaluation(ids, rows, eval_seed)
            _, logits, targets = mlm.exact(inputs, ids != pad_id, labels)         # (M, V), (M,)
            shown = inputs[labels != IGNORE_INDEX] == masker.tables.mask_id       # (M,) <mask>
            loss = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="none")
            hit = logits.argmax(-1) == targets                                    # (M,)
            for prefix, keep in (("", shown), ("sel_", torch.ones_like(shown))):
                sums[prefix + "loss"] += float(loss[keep].sum())
                sums[prefix + "hit"] += int(hit[keep].sum())
                sums[prefix + "n"] += int(keep.sum())
            sums["unigram"] += int((targets[shown] == top_id).sum())
    mlm.model.train(was_training)
    return _eval_metrics(sums)


# --------------------------------------------------------------------------- data

TOKENIZER_SAMPLE_BYTES = 64 * 2 ** 20  # text the BPE tokenizer is trained on, at most


def prepare_data(corpus, config: PretrainConfig, tokenizer=None, cache_dir=None,
                 progress: bool = False) -> tuple[PackedCorpus, object]:
    """Return (packed corpus, tokenizer), training a BPE tokenizer on (the first
    TOKENIZER_SAMPLE_BYTES of) the corpus if none is given."""
    if isinstance(corpus, PackedCorpus):
        packed = corpus
    elif isinstance(corpus, (str, Path)) and (Path(corpus) / "meta.json").exists():
        packed = PackedCorpus.load(corpus)
    else:
        corpus = as_corpus(corpus)
        tok_dir = None
        if tokenizer is None:
            tokenizer, tok_dir = _corpus_tokenizer(corpus, config, cache_dir)
        packed = pack(corpus, tokenizer, seq_len=config.seq_len, mode=config.pack_mode,
                      heldout=config.heldout, seed=config.seed, tokenizer_dir=tok_dir,
                      cache_dir=Path(cache_dir) / "packed" if cache_dir else None, progress=progress)
    if packed.seq_len != config.seq_len:
        raise InputError(f"the packed corpus has sequences of {packed.seq_len} tokens but "
                         f"config.seq_len={config.seq_len}; repack or set seq_len={packed.seq_len}")
    if tokenizer is None:
        tokenizer = packed.tokenizer()
    if len(packed.heldout) == 0:
        n = packed.meta.get("documents")
        raise InputError(f"the corpus has no held-out sequences: it holds {n} document(s) and "
                         f"heldout={config.heldout}. Held-out text is whole documents: give more "
                         "documents (one file per document, a .jsonl with one per line, or one "
                         "text file with documents separated by blank lines) or heldout > 0")
    return packed, tokenizer


def _corpus_tokenizer(corpus, config: PretrainConfig, cache_dir):
    """(tokenizer, folder): the BPE tokenizer trained on a capped sample of `corpus`, cached by
    the corpus fingerprint."""
    from .tokenizer import capped_texts, train_bpe_tokenizer

    tok_dir = Path(cache_dir or cache_root()) / "tokenizers" / \
        f"{corpus.hash}-bpe{config.vocab_size}-len{config.seq_len}"
    if (tok_dir / "tokenizer.json").exists():
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(tok_dir), tok_dir
    texts = capped_texts(corpus.texts(), TOKENIZER_SAMPLE_BYTES)
    return train_bpe_tokenizer(texts, tok_dir, vocab_size=config.vocab_size,
                               model_max_length=config.seq_len), tok_dir


DEVICE_DATA_BYTES = 2 ** 30  # training sequences up to this size live on the GPU for the run


def _on_device(train: np.ndarray, device: torch.device):
    """`train` (N, T), memory-mapped, as an int32 tensor on `device` when it is an accelerator
    and the data fit in DEVICE_DATA_BYTES (copied there in blocks: a batch is then gathered on
    the device), else the array itself: each step then reads only its rows (`_gather`)."""
    if device.type == "cpu" or train.size * 4 > DEVICE_DATA_BYTES:
        return train
    from .token_store import chunked_rows

    out = torch.empty(train.shape, dtype=torch.int32, device=device)
    start = 0
    for block in chunked_rows(train, 65536):
        out[start:start + len(block)] = torch.from_numpy(block.astype(np.int32)).to(device)
        start += len(block)
    return out


def _gather(train, rows: torch.Tensor, rows_np: np.ndarray) -> torch.Tensor:
    """The micro-batch's rows (B, T) as int64: indexed on the device, or read from the mmap."""
    if isinstance(train, torch.Tensor):
        return train[rows].long()
    return torch.from_numpy(train[rows_np].astype(np.int64))


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
             cache_dir: str | Path | None = None, restart: bool = False) -> Run | None:
    """Pretrain a RoBERTa-style masked LM on `corpus`; return its `Run` (open it with `wb.load(run)`).

    `corpus`: a `Corpus`, "demo", texts, a DataFrame with a 'text' column, a `PackedCorpus` or a
    packed-corpus folder, or, streamed in constant memory (`TextSource`): a text file (documents
    separated by blank lines), a folder or glob of .txt/.txt.gz/.jsonl(.gz) files, a
    `datasets.Dataset` or `IterableDataset`. The corpus is tokenised once into a disk cache and
    read memory-mapped; `progress=True` also shows the tokenising pass (MB/s, ETA). `config`: a
    PretrainConfig, a preset name ('tiny', 'mini', 'small', 'base', 'demo') or a dict. `resume`: a run (or its
    path/id) to continue from its newest intact checkpoint (an older one if the newest is damaged;
    the run says so), or from step 0 if it was killed before one (`restart=True`: also when no
    checkpoint can resume it);
    its config and corpus are reused (a corpus passed again must be the same, checked by hash);
    `config` may then change only `PretrainConfig.resumable_changes` (e.g. a larger `max_steps` or `time_budget_s`,
    which counts training time across sessions). `stop`: a StopFlag for a graceful stop from
    another thread. On extra processes of a multi-GPU launch the function returns None.
    """
    loop = _PretrainLoop(corpus, config, tokenizer, cache_dir, progress)
    return run_lifecycle(loop, resume=resume, restart=restart, name=name, root=root,
                         callbacks=callbacks, stop=stop, progress=progress)


class _PretrainLoop:
    """What pretraining gives the lifecycle template (`spine.run_lifecycle`, `spine.Loop`)."""

    kind, adapt_threads, weights_dtype = KIND, False, None

    def __init__(self, corpus, config, tokenizer, cache_dir, progress: bool):
        self.corpus, self.requested, self.tokenizer = corpus, config, tokenizer
        self.cache_dir, self.progress = cache_dir, progress

    def configure(self, run: Run | None) -> PretrainConfig:
        config = self.requested
        if isinstance(config, str):
            config = PretrainConfig.from_preset(config)
        if run is not None:
            config = resume_config(PretrainConfig, run, config)
        elif isinstance(config, dict):
            config = PretrainConfig.from_dict(config)
        elif config is None:
            config = PretrainConfig.from_preset("mini")
        elif not isinstance(config, PretrainConfig):
            raise InputError(f"config={config!r}; pass a PretrainConfig, a preset name or a dict")
        self.config, self.base_model = config, f"scratch:{config.preset or 'custom'}"
        return config

    def load_data(self, run: Run | None, engine: Engine) -> None:
        """Rank 0 trains the tokenizer and packs the corpus into the disk cache first; the other
        processes then read that cache (all writing the same files at once could tear them)."""
        corpus = self.corpus
        if run is not None and corpus is None:
            corpus = run.info.get("packed_corpus")
            if not corpus or not Path(corpus).exists():
                raise InputError(f"the packed corpus of run {run.id} is gone; pass its corpus again")
        if corpus is None:
            raise InputError("pass a corpus: texts, a file or folder, a DataFrame, a dataset or 'demo'")
        if not engine.is_main:
            engine.barrier()
        self.packed, self.tokenizer = prepare_data(corpus, self.config, self.tokenizer,
                                                   self.cache_dir,
                                                   progress=self.progress and engine.is_main)
        if engine.is_main:
            engine.barrier()

    def same_data(self, run: Run) -> None:
        """The run's corpus: the same fingerprint, or (files touched or moved) the same token rows."""
        meta, sha = self.packed.meta, self.packed.meta.get("tokens_sha256")
        if meta.get("corpus_hash") == run.info.get("corpus_hash") or (
                sha is not None and sha == run.info.get("tokens_sha256")):
            return
        raise InputError(f"run {run.id} was trained on corpus {run.info.get('corpus_hash')}, "
                         f"not {meta.get('corpus_hash')}: pass the same corpus to resume")

    def build(self, engine: Engine, run: Run | None, checkpoint) -> "_Pretrainer":
        return _Pretrainer(self.config, self.packed, self.tokenizer, engine)

    def created(self, run: Run) -> dict:
        meta = self.packed.meta
        return {"corpus_hash": meta.get("corpus_hash"), "tokens_sha256": meta.get("tokens_sha256"),
                "corpus_name": meta.get("corpus_name"),
                "packed_corpus": str(_packed_folder(self.packed, run))}

    def begin_info(self, trainer: "_Pretrainer", run: Run | None) -> dict:
        return {"compiled": trainer.compiled}

    def progress_label(self, run: Run) -> str:
        return "pretraining"


class _Pretrainer:
    """The pretraining loop: model, optimizer, schedule, masks and the position in the data."""

    def __init__(self, config: PretrainConfig, packed: PackedCorpus, tokenizer, engine: Engine):
        self.cfg, self.packed, self.tokenizer, self.engine = config, packed, tokenizer, engine
        device = engine.device
        self.model = build_model(config, tokenizer).to(device)
        self.raw_optimizer = make_optimizer(self.model, lr=config.learning_rate, weight_decay=config.weight_decay,
                                            betas=(config.beta1, config.beta2), eps=config.eps)
        self.scheduler = make_scheduler(self.raw_optimizer, config.warmup_steps, config.max_steps)
        self.schedule: WarmupLinear = self.scheduler.lr_lambdas[0]
        self.masker = Masker(TokenTables.from_tokenizer(tokenizer, device), mode=config.masking,
                             probability=config.mask_probability,
                             rates=(config.mask_token_rate, config.random_token_rate),
                             whole_word=config.whole_word, static_copies=config.static_copies,
                             seed=config.seed)
        self.train = _on_device(packed.train, device)             # (N, T) on the GPU, or the mmap
        self.row_tokens = packed.row_tokens("train")                          # (N,) non-pad
        self.held = torch.from_numpy(packed.heldout[:config.eval_sequences].astype(np.int32)).to(device)
        self.batches = Batches(len(packed.train), config.batch_size, config.seed, engine.rank, engine.world)
        self.pad_id = packed.pad_id
        self.top_id, _ = unigram_baseline(packed, tokenizer.all_special_ids)
        self.compiled = config.compile == "yes" or (config.compile == "auto" and device.type == "cuda")
        # static head shape where a host sync costs (CUDA) or a dynamic one would recompile
        static = self.compiled or device.type == "cuda"
        capacity = head_capacity(config.batch_size, config.seq_len, config.mask_probability,
                                 config.whole_word) if static else None
        self.mlm, self.optimizer = engine.prepare(MaskedLM(self.model, capacity, self.compiled),
                                                  self.raw_optimizer)
        self.peak = peak_flops(device)
        self.state = {"epoch": 0, "batch_in_epoch": 0, "draw": 0, "tokens_seen": 0, "train_s": 0.0}
        self.step, self.saved_step, self.step_times, self.last_eval = 0, -1, [], {}
        # on the device, read only when a row is logged: selected positions (this process) and
        # selected positions the static head would have left out (reported, never silent)
        self.selected = torch.zeros((), dtype=torch.long, device=device)
        self.dropped = torch.zeros((), dtype=torch.long, device=device)
        self.positions = 0  # positions this process trained on, padding included

    def restore(self, checkpoint: Path) -> None:
        """Weights, optimizer, schedule (its warmup/total too), RNG and the data position."""
        state = load_training_state(checkpoint, self.model, self.raw_optimizer, self.scheduler)
        self.step = self.saved_step = int(state.pop("step"))
        if "train_time" in state:  # checkpoints written before the spine named it train_s
            state["train_s"] = state.pop("train_time")
        self.state.update(state)
        if not self.cfg.time_budget_s:  # max_steps may have been raised on resume
            self.schedule.total = self.cfg.max_steps

    @property
    def total_steps(self) -> int:
        """Where the run ends now: max_steps, or what a time budget's schedule fits."""
        return self.schedule.total

    # ---- one optimiser step ------------------------------------------------------------------
    def train_step(self):
        """`grad_accumulation` micro-batches, clip, step; returns (mean loss tensor, grad norm or None).
        Nothing here waits for the device: the data, masks and head shape live on it."""
        cfg, st, device = self.cfg, self.state, self.engine.device
        loss_sum = 0.0
        for k in range(cfg.grad_accumulation):
            if st["batch_in_epoch"] >= self.batches.per_epoch:
                st["epoch"], st["batch_in_epoch"] = st["epoch"] + 1, 0
            rows_np = self.batches.rows(st["epoch"], st["batch_in_epoch"])
            st["tokens_seen"] += self._count_tokens()
            rows = torch.from_numpy(rows_np).to(device, non_blocking=True)             # (B,)
            ids = _gather(self.train, rows, rows_np).to(device, non_blocking=True)     # (B, T)
            inputs, labels = self.masker(ids, rows, epoch=st["epoch"], draw=st["draw"])
            # no padding in the micro-batch (known on the host): no mask, so sdpa may take its
            # flash kernel, and transformers need not read the mask back to find it all ones
            full = self.row_tokens[rows_np].min() == cfg.seq_len
            with self.engine.no_sync(self.mlm, sync=k == cfg.grad_accumulation - 1):
                loss = self._forward_backward(inputs, None if full else ids != self.pad_id, labels)
            self.selected += (labels != IGNORE_INDEX).sum()
            self.positions += labels.numel()
            self.dropped += self.engine.unwrap(self.mlm).overflow(labels)
            loss_sum += loss.detach()
            st["batch_in_epoch"] += 1
            st["draw"] += 1
        grad_norm = clip_gradients(self.model, cfg.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return loss_sum / cfg.grad_accumulation, grad_norm

    def _count_tokens(self) -> int:
        """Non-pad tokens of the current micro-batch over every process (host arrays: no sync)."""
        st = self.state
        return sum(int(self.row_tokens[self.batches.rows(st["epoch"], st["batch_in_epoch"], r)].sum())
                   for r in range(self.engine.world))

    def _forward_backward(self, inputs, attention_mask, labels):
        try:
            with self.engine.autocast():
                loss = self.mlm(inputs, attention_mask, labels)[0]
            self.engine.backward(loss / self.cfg.grad_accumulation)
            return loss
        except Exception as err:  # noqa: BLE001 - a compile failure falls back to eager
            if not self.compiled:
                raise
            logger.warning("torch.compile failed (%s: %s); continuing without it",
                           type(err).__name__, str(err)[:500])
            self.compiled = False
            self.engine.unwrap(self.mlm).compiled = None
            if self.state["draw"] == 0 and self.step == 0:
                self.optimizer.zero_grad(set_to_none=True)
            return self._forward_backward(inputs, attention_mask, labels)

    # ---- evaluation --------------------------------------------------------------------------
    def evaluate(self) -> dict:
        """Held-out loss and top-1 accuracy under the fixed evaluation mask (see module doc)."""
        return evaluate_held_out(self.engine.unwrap(self.mlm), self.held, self.masker,
                                 pad_id=self.pad_id, top_id=self.top_id,
                                 batch_size=self.cfg.batch_size, eval_seed=self.cfg.eval_seed,
                                 autocast=self.engine.autocast)

    # ---- the loop ----------------------------------------------------------------------------
    def fit(self, spine: Spine, stop: StopFlag | None) -> str:
        """Train until max_steps, the time budget or a stop request; return the status."""
        cfg = self.cfg
        if self.step == 0:  # the untrained model's score: where every curve starts
            self._eval_event(spine)
        self.mlm.train()
        self.t_begin, budget_start, first_step = time.time(), time.time() - self.state["train_s"], self.step
        while self.step < self.schedule.total:
            t0 = time.time()
            loss, grad_norm = self.train_step()
            self.step_times.append(time.time() - t0)
            self.state["train_s"] += self.step_times[-1]
            if self.step % cfg.log_every == 0 or self.step == self.schedule.total:
                self._log(spine, loss, grad_norm)
            if self.step % cfg.eval_every == 0:
                self._eval_event(spine)
            if spine.checkpoint_due(self.step, cfg.checkpoint_every):
                self._save(spine)
            ending = self._decide(stop, budget_start, first_step)
            spine.total_steps = self.schedule.total
            if ending:
                return ending
        return "completed"

    def _decide(self, stop, budget_start: float, first_step: int) -> str | None:
        """Refit the schedule to a time budget; 'stopped', 'completed' (budget spent) or None.
        Rank 0's clock and stop flag decide for every process."""
        cfg, now = self.cfg, time.time()
        if cfg.time_budget_s:
            fit_to_budget(self.schedule, self.step, self.step_times, budget_s=cfg.time_budget_s,
                          elapsed_s=now - budget_start, max_steps=cfg.max_steps,
                          warmup_steps=cfg.warmup_steps, first_step=first_step)
        stopped = stop is not None and stop.requested
        spent = bool(cfg.time_budget_s) and now - budget_start >= cfg.time_budget_s
        if self.engine.world > 1:
            stopped, spent, total, warmup = self.engine.agree(
                [stopped, spent, self.schedule.total, self.schedule.warmup])
            self.schedule.total, self.schedule.warmup = int(total), int(warmup)
        return "stopped" if stopped else "completed" if spent else None

    def _log(self, spine: Spine, loss, grad_norm) -> None:
        cfg, st = self.cfg, self.state
        recent = self.step_times[-cfg.log_every:]
        tps = cfg.tokens_per_step * self.engine.world * len(recent) / max(1e-9, sum(recent))
        metrics = {"loss": float(loss), "lr": self.scheduler.get_last_lr()[0],
                   "tokens_seen": st["tokens_seen"], "epoch": st["epoch"], "tokens_per_s": tps,
                   "elapsed_s": time.time() - self.t_begin}
        if grad_norm is not None:
            metrics["grad_norm"] = float(grad_norm)
        dropped = int(self.dropped)
        if dropped:  # never expected (8 standard deviations of room); reported, never silent
            logger.warning("%d selected positions exceeded the static head's capacity and were "
                           "left out of the loss so far", dropped)
            metrics["head_dropped_positions"] = dropped
        if self.peak:
            metrics["mfu"] = self.mfu(tps)
        spine.emit("step", self.step, **metrics)

    def mfu(self, tokens_per_s: float) -> float:
        """Model FLOPs utilisation at `tokens_per_s` (all processes), the LM head counted at the
        measured fraction of selected positions, not at its static capacity (reads the device)."""
        fraction = int(self.selected) / max(1, self.positions)
        flops = model_flops_per_token(self.cfg, len(self.tokenizer), fraction)
        return tokens_per_s * flops / (self.peak * self.engine.world)

    def _eval_event(self, spine: Spine) -> None:
        if self.engine.is_main:
            self.last_eval = self.evaluate()
            spine.emit("eval", self.step, **self.last_eval, tokens_seen=self.state["tokens_seen"])

    def _save(self, spine: Spine) -> None:
        if self.saved_step != self.step:
            self.saved_step = self.step
            spine.save(self.step, self.model, self.tokenizer, self.raw_optimizer, self.scheduler,
                       self.state, keep_last=self.cfg.keep_checkpoints)

    def finish(self, spine: Spine, status: str) -> None:
        """A last evaluation and checkpoint at the final step, then the summary."""
        if not self.last_eval or self.step % self.cfg.eval_every:
            self._eval_event(spine)
        self._save(spine)
        st = self.state
        tps = st["tokens_seen"] / max(1e-9, st["train_s"])
        summary = {**self.last_eval, "tokens_seen": st["tokens_seen"],
                   "masked_fraction": int(self.selected) / max(1, self.positions),
                   "epochs": st["tokens_seen"] / max(1, self.packed.tokens("train")),
                   "train_s": st["train_s"], "tokens_per_s": tps,
                   "unigram_token": self.tokenizer.convert_ids_to_tokens(self.top_id),
                   "parameters": sum(p.numel() for p in self.model.parameters()),
                   "corpus_hash": self.packed.meta.get("corpus_hash"), "compiled": self.compiled}
        if self.peak:
            summary["mfu"] = self.mfu(tps)
        spine.finish(status, self.step, summary, self.last_eval)


def _eval_metrics(s: dict) -> dict:
    """Headline metrics at `<mask>` positions; `eval_selected_*` over every selected position."""
    def mean(total, n):
        return total / n if n else math.nan

    loss, selected = mean(s["loss"], s["n"]), mean(s["sel_loss"], s["sel_n"])
    return {"eval_loss": loss, "eval_perplexity": math.exp(min(loss, 50)) if s["n"] else math.nan,
            "eval_accuracy": mean(s["hit"], s["n"]), "eval_unigram_accuracy": mean(s["unigram"], s["n"]),
            "eval_tokens": int(s["n"]), "eval_selected_loss": selected,
            "eval_selected_perplexity": math.exp(min(selected, 50)) if s["sel_n"] else math.nan,
            "eval_selected_accuracy": mean(s["sel_hit"], s["sel_n"]), "eval_selected_tokens": int(s["sel_n"])}


def _packed_folder(packed: PackedCorpus, run: Run) -> Path:
    """Where the packed corpus lives (saved into the run folder when it has no cache folder)."""
    if packed.folder is not None and (packed.folder / "meta.json").exists():
        return packed.folder
    key = packed.meta.get("key")
    cached = cache_root() / "packed" / str(key)
    if key and (cached / "meta.json").exists():
        return cached
    return packed.save(run.path / "data")


__all__ = ["PretrainConfig", "PRESETS", "pretrain", "build_model", "MaskedLM", "WarmupLinear",
           "model_flops_per_token", "peak_flops", "evaluate_held_out", "unigram_baseline",
           "head_capacity"]
