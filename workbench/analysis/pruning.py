"""Head-pruning curves (Michel, Levy & Neubig 2019, "Are Sixteen Heads Really Better than One?").

`prune_heads_curve(lm, data)` removes heads step by step and measures the model after each step:
accuracy and loss of a fine-tuned classifier on labelled texts, or masked-token accuracy and loss
of a masked LM on a fixed-seed masking of the texts (`ablation.objective_loss`'s masking). Three
orders, so the importance score can be judged against chance:

- "iterative" (the paper's Sec. 5): at each step the importance of the heads still in place is
  re-estimated with `wb.head_importance` (gradient score, normalised per layer as in the paper)
  *with the heads pruned so far gated off*, and the `step` least important ones are removed;
- "once": the same score computed once on the intact model, heads removed in that order;
- "random": a seeded random order.

Heads are removed with the package's one gate mechanism (`ablation.gates` via `wb.ablate`), so
every row's `heads` column is the pruned set, ready for `with wb.ablate(lm, heads=row.heads):`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .. import schema as S
from ..capture import as_text_list
from ..config import check_finite, check_positive_int
from ..errors import InputError
from ..models import LM, check_lm
from .ablation import _prepare, _Prepared, ablate, head_importance
from .fill_mask import mlm_head

ORDERS = ("iterative", "once", "random")


def _evaluate(lm: LM, prep: _Prepared) -> tuple[float, float]:
    """(mean loss, accuracy) over every target of the prepared batches (masked tokens or texts)."""
    loss, correct, count = 0.0, 0, 0
    with torch.inference_mode():
        for inputs, targets in prep.batches:
            if prep.objective == "mlm":                                  # head at masks only
                keep = targets != -100                                   # (B, T)
                hidden = lm.encoder(**inputs, return_dict=True).last_hidden_state[keep]
                logits, targets = mlm_head(lm)(hidden).float(), targets[keep]  # (K, V), (K,)
            else:
                logits = lm.model(**inputs, return_dict=True).logits.float()   # (B, C)
            loss += float(F.cross_entropy(logits, targets.long(), reduction="sum"))
            correct += int((logits.argmax(-1) == targets).sum())
            count += len(targets)
    return loss / max(count, 1), correct / max(count, 1)


def _least_important(lm: LM, texts, labels, objective: str, pruned: list, k: int,
                     kw: dict) -> list[tuple[int, int]]:
    """The k heads not yet pruned with the lowest importance, measured with `pruned` gated off."""
    with ablate(lm, pruned):
        imp = head_importance(lm, texts, objective=objective, labels=labels, normalize="layer",
                              progress=False, **kw)
    gone = set(pruned)
    imp = imp[[(l, h) not in gone for l, h in zip(imp[S.LAYER], imp[S.HEAD])]]
    imp = imp.sort_values([S.SCORE, S.LAYER, S.HEAD], kind="stable")
    return [(int(l), int(h)) for l, h in zip(imp[S.LAYER][:k], imp[S.HEAD][:k])]


def _as_data(data, labels, text_column: str, label_column: str):
    if isinstance(data, pd.DataFrame):
        if text_column not in data:
            raise InputError(f"data has no {text_column!r} column: pass text_column=")
        if labels is None and label_column in data:
            labels = data[label_column].tolist()
        data = data[text_column].tolist()
    return as_text_list(data, "data"), labels


def prune_heads_curve(lm: LM, data, *, labels=None, objective: str | None = None,
                      orders=ORDERS, step: float = 0.1, max_fraction: float = 1.0,
                      seed: int = 0, batch_size: int = 16, mask_prob: float = 0.15,
                      max_length: int | None = None, text_column: str = "text",
                      label_column: str = "label") -> pd.DataFrame:
    """Accuracy and loss of `lm` on `data` as heads are pruned (Michel et al. 2019).

    `data`: texts (a list, or a DataFrame with `text_column` and, for a classifier, a
    `label_column`); `labels` one per text for a classifier. `objective`: "mlm" or "classifier"
    (default: "classifier" for a classifier, else "mlm"). `orders`: any of "iterative", "once",
    "random" (module docstring). Each step removes `step` of all heads (rounded, at least one)
    until `max_fraction` of them are gone; step 0 is the intact model. The same fixed masking
    (`seed`, `mask_prob`) serves the importance estimates and the evaluation.
    One row per (order, step): model, order, n_pruned, fraction, accuracy, loss, objective, and
    heads (the pruned (layer, head) pairs, for `wb.ablate`).
    """
    check_lm(lm)
    texts, labels = _as_data(data, labels, text_column, label_column)
    objective = objective or ("classifier" if lm.kind == "classifier" else "mlm")
    orders = [orders] if isinstance(orders, str) else list(orders)
    bad = [o for o in orders if o not in ORDERS]
    if bad or not orders:
        raise InputError(f"orders={orders!r}; use any of {ORDERS}")
    step = check_finite("step", step, low=0)
    max_fraction = check_finite("max_fraction", max_fraction, low=0, high=1)
    if step <= 0:
        raise InputError(f"step={step}: pass the share of heads removed per step, e.g. 0.1")
    check_positive_int("batch_size", batch_size)
    total = lm.num_layers * lm.num_heads
    k = max(1, int(round(step * total)))
    limit = int(np.floor(max_fraction * total + 1e-9))
    kw = dict(batch_size=batch_size, mask_prob=mask_prob, seed=seed, max_length=max_length)
    prep = _prepare(lm, texts, objective, labels, batch_size, mask_prob, seed, max_length)
    rows = []
    for order in orders:
        if order == "random":
            perm = np.random.default_rng(seed).permutation(total)
            ranking = [(int(i) // lm.num_heads, int(i) % lm.num_heads) for i in perm]
        elif order == "once":
            ranking = _least_important(lm, texts, labels, objective, [], total, kw)
        pruned: list[tuple[int, int]] = []
        while True:
            with ablate(lm, pruned):
                loss, acc = _evaluate(lm, prep)
            rows.append({S.MODEL: lm.name, S.ORDER: order, S.N_PRUNED: len(pruned),
                         S.FRACTION: len(pruned) / total, S.ACCURACY: acc, S.LOSS: loss,
                         S.OBJECTIVE: objective, S.HEADS: tuple(pruned)})
            if len(pruned) >= limit:
                break
            n = min(k, limit - len(pruned))
            if order == "iterative":
                pruned = pruned + _least_important(lm, texts, labels, objective, pruned, n, kw)
            else:
                pruned = ranking[:len(pruned) + n]
    return pd.DataFrame(rows)
