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
- `head_importance(lm, texts, method="gradient" | "loo")`: Michel et al.'s gradient score, per
  example: I_h = (1/N) sum_x |dL(x)/dgate_h| at gates = 1, where L(x) is text x's own loss (the
  mean over its masked tokens, or its classifier loss), so gradients of opposite sign never cancel
  and the score does not depend on `batch_size`. Each text gets its own copy of the gates (gates
  of shape (B, L, H)), so one backward pass per batch gives every text's gradient. Optionally
  (`normalize="layer"`) each layer's scores are divided by their l2 norm over the layer's heads,
  as in the paper. Or leave-one-out: the corpus loss (mean over all masked tokens) with the head
  gated to 0 minus that of the intact model.
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
from ..config import check_finite, check_sequence
from .bootstrap import (LEVEL, add_interval, check_boot, percentile_interval, resample_counts,
                        resample_ratio)

METHODS = ("gradient", "loo")
NORMALIZE = (None, "layer")
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
    """Scale every head's context by `values` inside the block (differentiable).

    `values` is (L, H), the same gates for every text, or (B, L, H), one copy per text of the
    batch (so that the gradient of a sum of per-text losses gives each text's own gradient).
    """
    parts = attention_modules(lm)
    if values.dim() not in (2, 3) or tuple(values.shape[-2:]) != (len(parts), parts[0].num_heads):
        raise InputError(f"gates have shape {tuple(values.shape)}, expected "
                         f"({len(parts)}, {parts[0].num_heads}) or (batch, {len(parts)}, "
                         f"{parts[0].num_heads})")

    def make_hook(layer: int, d: int):
        def pre_hook(module, args):
            x = args[0]                                            # (B, T, H * d)
            g = values[..., layer, :].to(x.dtype).repeat_interleave(d, dim=-1)  # ([B,] H * d)
            g = g[:, None, :] if g.dim() == 2 else g               # (B, 1, H * d) or (H * d,)
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
    scale, heads = check_finite("scale", scale), check_sequence("heads", heads)
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
    index: list[list[int]]                                        # texts of each batch


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
    out, index = [], []
    for idx, batch in iter_batches(lm, texts, batch_size=batch_size, max_length=max_length,
                                   progress=False):
        index.append(list(idx))
        if objective == "mlm":
            out.append(_mask_batch(lm, batch, idx, mask_prob, seed))
        else:
            y = torch.as_tensor(np.asarray([labels[i] for i in idx]), device=lm.device)
            out.append((batch.inputs, y))
    return _Prepared(batches=out, objective=objective, index=index)


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


def _text_losses(lm: LM, inputs: dict, targets: torch.Tensor, objective: str
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per text of the batch: (summed loss over its targets (B,), number of targets (B,))."""
    logits = lm.model(**inputs, return_dict=True).logits
    if logits.dtype in (torch.float16, torch.bfloat16):                 # losses in fp32 at least
        logits = logits.float()
    if objective == "mlm":
        keep = targets != -100                                     # (B, T)
        per_token = F.cross_entropy(logits[keep], targets[keep], reduction="none")  # (K,)
        rows = keep.nonzero()[:, 0]                                # (K,) the text of each target
        sums = torch.zeros(len(keep), dtype=per_token.dtype, device=per_token.device)
        return sums.index_add(0, rows, per_token), keep.sum(1)
    if logits.shape[-1] == 1:                                      # regression head
        loss = F.mse_loss(logits.squeeze(-1), targets.to(logits.dtype), reduction="none")
    else:
        loss = F.cross_entropy(logits, targets.long(), reduction="none")
    return loss, torch.ones(len(loss), dtype=torch.long, device=loss.device)


def _losses(lm: LM, prep: _Prepared) -> tuple[np.ndarray, np.ndarray]:
    """Every text's (summed loss, number of targets), in the order of the texts: (N,), (N,)."""
    n_texts = sum(len(idx) for idx in prep.index)
    sums, counts = np.zeros(n_texts), np.zeros(n_texts, dtype=np.int64)
    with torch.inference_mode():
        for idx, (inputs, targets) in zip(prep.index, prep.batches):
            loss, n = _text_losses(lm, inputs, targets, prep.objective)
            sums[idx], counts[idx] = loss.double().cpu().numpy(), n.cpu().numpy()
    return sums, counts


def _mean_loss(lm: LM, prep: _Prepared) -> float:
    sums, counts = _losses(lm, prep)
    return float(sums.sum() / max(counts.sum(), 1))


def objective_loss(lm: LM, texts, *, objective: str = "mlm", labels=None, batch_size: int = 16,
                   mask_prob: float = 0.15, seed: int = 0, max_length: int | None = None,
                   by_text: bool = False):
    """Mean loss of `lm` on `texts` (see the module docstring); honours active `ablate` gates.

    The mean is over all masked tokens of the corpus (or all texts, for a classifier);
    `by_text=True` returns each text's own loss instead, (N,) in the order of `texts` (NaN for a
    text with nothing to predict).
    """
    texts = as_text_list(texts)
    prep = _prepare(lm, texts, objective, labels, batch_size, mask_prob, seed, max_length)
    if not by_text:
        return _mean_loss(lm, prep)
    sums, counts = _losses(lm, prep)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _gradient_scores(lm: LM, prep: _Prepared, progress: bool) -> np.ndarray:
    """(N, L, H): each text's |dL(x)/dgate| (NaN for a text with nothing to predict); the mean
    over texts is the score (see the module docstring)."""
    from tqdm.auto import tqdm

    shape = (lm.num_layers, lm.num_heads)
    per_text = np.full((sum(len(i) for i in prep.index),) + shape, np.nan)
    frozen = [p for p in lm.model.parameters() if p.requires_grad]
    for p in frozen:                                 # gradients only for the gates
        p.requires_grad_(False)
    try:
        for idx, (inputs, targets) in tqdm(list(zip(prep.index, prep.batches)),
                                           desc="head gradients", leave=False,
                                           disable=not progress):
            values = torch.ones((len(targets),) + shape, device=lm.device,
                                requires_grad=True)                  # (B, L, H): one copy per text
            with torch.enable_grad(), gates(lm, values):
                sums, counts = _text_losses(lm, inputs, targets, prep.objective)
                has = counts > 0                                      # (B,)
                if not has.any():
                    continue
                losses = sums[has] / counts[has]                      # each text's mean loss
                (grad,) = torch.autograd.grad(losses.sum(), values)   # (B, L, H)
            rows = np.asarray(idx)[has.cpu().numpy()]
            per_text[rows] = grad[has].abs().double().cpu().numpy()
    finally:
        for p in frozen:
            p.requires_grad_(True)
    return per_text


def _loo_scores(lm: LM, prep: _Prepared, progress: bool
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per text: summed loss with each head gated to 0 (N, L, H), intact (N,), and targets (N,)."""
    from tqdm.auto import tqdm

    base, counts = _losses(lm, prep)
    ablated = np.zeros((len(base), lm.num_layers, lm.num_heads))
    pairs = [(layer, head) for layer in range(lm.num_layers) for head in range(lm.num_heads)]
    for layer, head in tqdm(pairs, desc="leave-one-out", leave=False, disable=not progress):
        with ablate(lm, [(layer, head)]):
            ablated[:, layer, head] = _losses(lm, prep)[0]
    return ablated, base, counts


def _importance_samples(method: str, parts, counts: np.ndarray | None) -> np.ndarray:
    """Importance (L, H) on every text once (`counts=None`) or per resample (B, L, H)."""
    if method == "gradient":
        per_text = parts                                             # (N, L, H)
        keep = ~np.isnan(per_text[:, 0, 0])                          # texts with targets
        c = np.ones((1, len(per_text))) if counts is None else counts
        out = resample_ratio(c[:, keep], per_text[keep])             # mean over texts
    else:
        ablated, base, n = parts
        c = np.ones((1, len(base))) if counts is None else counts
        out = (resample_ratio(c, ablated, n)
               - resample_ratio(c, base, n)[:, None, None])            # corpus-loss difference
    return out[0] if counts is None else out


def head_importance(lm: LM, texts, *, method: str = "gradient", objective: str = "mlm",
                    labels=None, batch_size: int = 16, mask_prob: float = 0.15, seed: int = 0,
                    max_length: int | None = None, normalize: str | None = None,
                    n_boot: int | None = None, level: float = LEVEL, by_text: bool = False,
                    progress: bool = True) -> pd.DataFrame:
    """Importance of every head of `lm` for its loss on `texts`: one row per (layer, head).

    `method="gradient"` (Michel et al. 2019): I_h = (1/N) sum_x |dL(x)/dgate_h| at gates = 1, the
    mean over the N texts of the absolute gradient of each text's own loss L(x) (mean over its
    masked tokens; its loss for a classifier). Per text, so it does not depend on `batch_size`
    (one backward pass per batch). `method="loo"`: the corpus loss (mean over all masked tokens)
    with the head alone gated to 0 minus that of the intact model (one forward pass per head and
    batch). `normalize="layer"` divides each layer's scores by their l2 norm over that layer's
    heads, as Michel et al. do before pruning (default None: raw scores).
    `objective="mlm"` uses a fixed-seed masking (`seed`, `mask_prob`);
    `objective="classifier"` needs a fine-tuned classifier and `labels` (one per text: class ids,
    or class names as in the classifier's `label2id`).
    Columns: model, layer, head, score, method, objective, normalize (the argument), base_loss
    (the intact model's corpus loss that "loo" scores are measured from; NaN for "gradient").
    `n_boot` (e.g. 200; default None) adds the score's percentile
    bootstrap interval over texts at `level`: ci_low, ci_high, n_texts, n_boot, level (the model
    runs once: each resample re-weights the per-text gradients or losses). `by_text=True`
    (gradient method, raw scores) gives one row per (text_id, layer, head) instead: each text's
    |dL(x)/dgate_h| (NaN for a text with nothing to predict), whose mean over texts is the score.
    """
    if method not in METHODS:
        raise InputError(f"method={method!r}; use one of {METHODS}")
    if normalize not in NORMALIZE:
        raise InputError(f"normalize={normalize!r}; use one of {NORMALIZE}")
    texts = as_text_list(texts)
    n_boot, level = check_boot(n_boot, level)
    if by_text and (method != "gradient" or normalize is not None or n_boot is not None):
        raise InputError("by_text=True gives each text's raw gradient score: use it with "
                         "method='gradient', normalize=None and n_boot=None")
    prep = _prepare(lm, texts, objective, labels, batch_size, mask_prob, seed, max_length)
    base_loss = float("nan")
    if method == "gradient":
        parts = _gradient_scores(lm, prep, progress)
    else:
        parts = _loo_scores(lm, prep, progress)
        base_loss = float(parts[1].sum() / max(parts[2].sum(), 1))
    if by_text:
        N, L, H = parts.shape
        return pd.DataFrame({S.MODEL: lm.name, S.TEXT_ID: np.repeat(np.arange(N), L * H),
                             S.LAYER: np.tile(np.repeat(np.arange(L), H), N),
                             S.HEAD: np.tile(np.arange(H), N * L), S.SCORE: parts.reshape(-1),
                             S.METHOD: method, S.OBJECTIVE: objective})
    scores = _normalized(_importance_samples(method, parts, None), normalize)
    L, H = scores.shape
    df = pd.DataFrame({S.MODEL: lm.name, S.LAYER: np.repeat(np.arange(L), H),
                       S.HEAD: np.tile(np.arange(H), L), S.SCORE: scores.reshape(-1),
                       S.METHOD: method, S.OBJECTIVE: objective, S.NORMALIZE: normalize,
                       S.BASE_LOSS: base_loss})
    if n_boot is not None:
        boot = _normalized(_importance_samples(method, parts, resample_counts(len(texts), n_boot)),
                           normalize)                                 # (B, L, H)
        low, high = percentile_interval(boot, level)
        df = add_interval(df, low, high, n_texts=len(texts), n_boot=n_boot, level=level)
    return df


def _normalized(scores: np.ndarray, normalize: str | None) -> np.ndarray:
    """Michel et al.'s per-layer l2 normalisation over heads (last axis), or the scores as they are."""
    if normalize != "layer":
        return scores
    return scores / np.maximum(np.linalg.norm(scores, axis=-1, keepdims=True), 1e-20)
