"""Head gates, head ablation and head importance (Michel et al. 2019), without `head_mask`.

transformers 5 removed `head_mask`, so the workbench gates heads itself: a forward pre-hook on
each layer's attention output projection (`capture.attention_modules(lm)[l].output`) multiplies
head h's slice of the concatenated context vector, `x[..., h*d:(h+1)*d]`, by a gate. A gate of 0
removes the head exactly as zeroing its columns of the projection weight would (tested), and the
gates work under any attention implementation (sdpa stays on: no attention weights are needed).

- `ablate(lm, heads=[(layer, head), ...], scale=0.0)`: a context manager;
- `objective_loss(lm, texts, ...)`: the mean loss a head's importance is measured on: masked-LM
  cross-entropy on a fixed-seed masking of `texts` (15% of non-special tokens replaced by the mask
  token, at least one per text; no 80/10/10, so the numbers are reproducible), or a fine-tuned
  classifier's loss on `labels`;
- `head_importance(lm, texts, method="gradient" | "loo")`: Michel et al.'s gradient score
  |dL/dgate| at gates = 1 (accumulated as the mean over batches of the absolute gradient of the
  batch loss), or leave-one-out: loss with the head gated to 0 minus the loss of the intact model.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .. import schema as S
from ..capture import Batch, as_text_list, attention_modules, hooks
from ..errors import InputError, MissingHeadError
from ..models import LM
from .heads import iter_batches

METHODS = ("gradient", "loo")
OBJECTIVES = ("mlm", "classifier")


def check_heads(lm: LM, heads: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Validate (layer, head) pairs against `lm`; return them as a list of int tuples."""
    out = []
    for item in heads:
        try:
            layer, head = (int(v) for v in item)
        except (TypeError, ValueError):
            raise InputError(f"heads must be (layer, head) pairs, got {item!r}") from None
        if not (0 <= layer < lm.num_layers and 0 <= head < lm.num_heads):
            raise InputError(f"head ({layer}, {head}) does not exist: {lm.name!r} has layers "
                             f"0..{lm.num_layers - 1} and heads 0..{lm.num_heads - 1}")
        out.append((layer, head))
    return out


@contextlib.contextmanager
def gates(lm: LM, values: torch.Tensor) -> Iterator[torch.Tensor]:
    """Scale every head's context by `values` (L, H) inside the block (differentiable)."""
    parts = attention_modules(lm)
    if tuple(values.shape) != (len(parts), parts[0].num_heads):
        raise InputError(f"gates have shape {tuple(values.shape)}, expected "
                         f"({len(parts)}, {parts[0].num_heads})")

    def make_hook(layer: int, d: int):
        def pre_hook(module, args):
            x = args[0]                                            # (B, T, H * d)
            g = values[layer].to(x.dtype).repeat_interleave(d)     # (H * d,)
            return (x * g,) + tuple(args[1:])
        return pre_hook

    with hooks((p.output, make_hook(p.layer, p.head_dim), "pre") for p in parts):
        yield values


@contextlib.contextmanager
def ablate(lm: LM, heads: Sequence[tuple[int, int]], scale: float = 0.0) -> Iterator[LM]:
    """Inside the block, heads (layer, head) of `lm` have their output scaled by `scale`.

    `scale=0` removes them; other values weaken or strengthen them. The hooks are always removed.

    >>> with wb.ablate(lm, heads=[(3, 5), (7, 0)]):                     # doctest: +SKIP
    ...     wb.fill_mask(lm, "The capital of France is <mask>.")
    """
    chosen = check_heads(lm, heads)
    exact = torch.float32 if lm.device.type == "mps" else torch.float64  # scale=1+1e-4 stays exact
    values = torch.ones(lm.num_layers, lm.num_heads, dtype=exact, device=lm.device)
    for layer, head in chosen:
        values[layer, head] = float(scale)
    with gates(lm, values):
        yield lm


@dataclass
class _Prepared:
    """Batches fixed once (masking included) so every evaluation sees the same inputs."""

    batches: list[tuple[dict[str, torch.Tensor], torch.Tensor]]  # (model inputs, targets)
    objective: str


def _mask_batch(lm: LM, batch: Batch, texts_ids: Sequence[int], mask_prob: float,
                seed: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    ids = batch.inputs["input_ids"].clone()                         # (B, T)
    labels = torch.full_like(ids, -100)
    for row, (text_id, view) in enumerate(zip(texts_ids, batch.views)):
        cand = [p for p, sp in enumerate(view.special) if not sp]
        if not cand:
            continue
        gen = torch.Generator().manual_seed(seed * 1_000_003 + int(text_id))  # per text: order-free
        pick = torch.rand(len(cand), generator=gen) < mask_prob
        if not pick.any():
            pick[torch.randint(len(cand), (1,), generator=gen)] = True
        chosen = torch.tensor(cand)[pick].to(ids.device)
        labels[row, chosen] = ids[row, chosen]
        ids[row, chosen] = lm.tokenizer.mask_token_id
    inputs = dict(batch.inputs, input_ids=ids)
    return inputs, labels


def _prepare(lm: LM, texts: Sequence[str], objective: str, labels, batch_size: int,
             mask_prob: float, seed: int, max_length: int | None) -> _Prepared:
    if objective not in OBJECTIVES:
        raise InputError(f"objective={objective!r}; use one of {OBJECTIVES}")
    if objective == "mlm":
        lm.require_mlm_head("head importance on the masked-LM loss")
        if not 0.0 < mask_prob < 1.0:
            raise InputError(f"mask_prob={mask_prob}; use a fraction between 0 and 1")
    else:
        if lm.kind != "classifier":
            raise MissingHeadError(
                f"objective='classifier' needs a fine-tuned sequence classifier, but {lm.name!r} "
                f"was loaded as {lm.kind!r}: load a fine-tuning run or classifier checkpoint, or "
                "use objective='mlm'")
        if labels is None or len(labels) != len(texts):
            raise InputError(f"objective='classifier' needs one label per text: got "
                             f"{'no labels' if labels is None else len(labels)} for {len(texts)} texts")
        labels = _label_ids(lm, list(labels))
    out = []
    for idx, batch in iter_batches(lm, texts, batch_size=batch_size, max_length=max_length,
                                   progress=False):
        if objective == "mlm":
            out.append(_mask_batch(lm, batch, idx, mask_prob, seed))
        else:
            y = torch.as_tensor(np.asarray([labels[i] for i in idx]), device=lm.device)
            out.append((batch.inputs, y))
    return _Prepared(batches=out, objective=objective)


def _label_ids(lm: LM, labels: list) -> list:
    """Class names (as in the classifier's `label2id`) -> ids; numbers pass through."""
    if not any(isinstance(v, str) for v in labels):
        return labels
    names = {str(k): v for k, v in (getattr(lm.config, "label2id", None) or {}).items()}
    unknown = sorted({str(v) for v in labels} - set(names))
    if unknown:
        raise InputError(f"labels {unknown[:5]} are not classes of {lm.name!r} (its classes: "
                         f"{sorted(names)}): pass class names or ids the classifier was trained on")
    return [names[str(v)] for v in labels]


def _batch_loss(lm: LM, inputs: dict, targets: torch.Tensor, objective: str
                ) -> tuple[torch.Tensor, int]:
    """(summed loss over the batch's targets, number of targets)."""
    logits = lm.model(**inputs, return_dict=True).logits
    if logits.dtype in (torch.float16, torch.bfloat16):                 # losses in fp32 at least
        logits = logits.float()
    if objective == "mlm":
        keep = targets != -100                                     # (B, T)
        loss = F.cross_entropy(logits[keep], targets[keep], reduction="sum")
        return loss, int(keep.sum())
    if logits.shape[-1] == 1:                                      # regression head
        loss = F.mse_loss(logits.squeeze(-1), targets.to(logits.dtype), reduction="sum")
    else:
        loss = F.cross_entropy(logits, targets.long(), reduction="sum")
    return loss, len(targets)


def _mean_loss(lm: LM, prep: _Prepared) -> float:
    total, count = 0.0, 0
    with torch.inference_mode():
        for inputs, targets in prep.batches:
            loss, n = _batch_loss(lm, inputs, targets, prep.objective)
            total, count = total + loss.item(), count + n
    return total / max(count, 1)


def objective_loss(lm: LM, texts, *, objective: str = "mlm", labels=None, batch_size: int = 16,
                   mask_prob: float = 0.15, seed: int = 0, max_length: int | None = None) -> float:
    """Mean loss of `lm` on `texts` (see the module docstring); honours active `ablate` gates."""
    texts = as_text_list(texts)
    prep = _prepare(lm, texts, objective, labels, batch_size, mask_prob, seed, max_length)
    return _mean_loss(lm, prep)


def _gradient_scores(lm: LM, prep: _Prepared, progress: bool) -> np.ndarray:
    from tqdm.auto import tqdm

    values = torch.ones(lm.num_layers, lm.num_heads, device=lm.device, requires_grad=True)
    scores = torch.zeros(lm.num_layers, lm.num_heads, dtype=torch.float64, device=lm.device)
    frozen = [p for p in lm.model.parameters() if p.requires_grad]
    for p in frozen:                                 # gradients only for the gates
        p.requires_grad_(False)
    try:
        with torch.enable_grad(), gates(lm, values):
            for inputs, targets in tqdm(prep.batches, desc="head gradients", leave=False,
                                        disable=not progress):
                loss, n = _batch_loss(lm, inputs, targets, prep.objective)
                if n == 0:
                    continue
                (grad,) = torch.autograd.grad(loss / n, values)    # (L, H)
                scores += grad.abs().double()
    finally:
        for p in frozen:
            p.requires_grad_(True)
    return (scores / max(len(prep.batches), 1)).cpu().numpy()


def _loo_scores(lm: LM, prep: _Prepared, progress: bool) -> tuple[np.ndarray, float]:
    from tqdm.auto import tqdm

    base = _mean_loss(lm, prep)
    scores = np.zeros((lm.num_layers, lm.num_heads))
    pairs = [(layer, head) for layer in range(lm.num_layers) for head in range(lm.num_heads)]
    for layer, head in tqdm(pairs, desc="leave-one-out", leave=False, disable=not progress):
        with ablate(lm, [(layer, head)]):
            scores[layer, head] = _mean_loss(lm, prep) - base
    return scores, base


def head_importance(lm: LM, texts, *, method: str = "gradient", objective: str = "mlm",
                    labels=None, batch_size: int = 16, mask_prob: float = 0.15, seed: int = 0,
                    max_length: int | None = None, progress: bool = True) -> pd.DataFrame:
    """Importance of every head of `lm` for its loss on `texts`: one row per (layer, head).

    `method="gradient"`: Michel et al. 2019's |dL/dgate| at gates = 1 (one backward pass per
    batch). `method="loo"`: loss increase when the head alone is gated to 0 (one forward pass per
    head and batch). `objective="mlm"` uses a fixed-seed masking (`seed`, `mask_prob`);
    `objective="classifier"` needs a fine-tuned classifier and `labels` (one per text: class ids,
    or class names as in the classifier's `label2id`).
    Columns: model, layer, head, score, method, objective; `df.attrs["base_loss"]` for "loo".
    """
    if method not in METHODS:
        raise InputError(f"method={method!r}; use one of {METHODS}")
    texts = as_text_list(texts)
    prep = _prepare(lm, texts, objective, labels, batch_size, mask_prob, seed, max_length)
    attrs = {}
    if method == "gradient":
        scores = _gradient_scores(lm, prep, progress)
    else:
        scores, attrs["base_loss"] = _loo_scores(lm, prep, progress)
    L, H = scores.shape
    df = pd.DataFrame({S.MODEL: lm.name, S.LAYER: np.repeat(np.arange(L), H),
                       S.HEAD: np.tile(np.arange(H), L), S.SCORE: scores.reshape(-1),
                       S.METHOD: method, S.OBJECTIVE: objective})
    df.attrs.update(attrs)
    return df
