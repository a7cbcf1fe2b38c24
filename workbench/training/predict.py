"""Using a fine-tuned classifier: `classify(lm, texts)` and `evaluate_classifier(lm, table)`.

`classify` returns one row per text with the predicted label and its probability (or the score of a
regressor); `evaluate_classifier` scores a labelled table and returns the metrics and the
confusion matrix (`plots.training.confusion_heatmap` draws it). Both batch by length with dynamic padding.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from .. import schema
from ..capture import as_text_list, batches, check_max_length, eval_mode
from ..errors import InputError
from ..models import LM
from ..tokens import tokenize
from .metrics import confusion_matrix, task_metrics
from .tables import LABEL, PAIR, TEXT, load_labelled


def _require_classifier(lm: LM) -> None:
    if lm.kind != "classifier":
        raise InputError(f"{lm.name!r} is loaded as {lm.kind!r}, not a classifier: load a "
                         "fine-tuning run or checkpoint (wb.load(run)), or fine-tune it first")


def _is_regression(lm: LM) -> bool:
    return lm.config.problem_type == "regression" or lm.config.num_labels == 1


def _outputs(lm: LM, texts: Sequence[str], pairs: Sequence[str] | None, batch_size: int,
             max_length: int | None) -> np.ndarray:
    """Logits (N, num_labels) as float32 numpy, in input order."""
    limit = max_length or lm.max_length
    enc = tokenize(lm.tokenizer, list(texts), list(pairs) if pairs is not None else None,
                   truncation=True, max_length=limit)
    ids = enc["input_ids"]
    out = np.zeros((len(ids), lm.config.num_labels), dtype=np.float32)
    pad = lm.tokenizer.pad_token_id or 0
    for rows in batches([len(x) for x in ids], batch_size):
        longest = max(len(ids[i]) for i in rows)
        input_ids = torch.full((len(rows), longest), pad, dtype=torch.long)  # (B, T)
        mask = torch.zeros_like(input_ids)                                     # (B, T)
        for b, i in enumerate(rows):
            input_ids[b, :len(ids[i])] = torch.tensor(ids[i])
            mask[b, :len(ids[i])] = 1
        inputs = {"input_ids": input_ids.to(lm.device), "attention_mask": mask.to(lm.device)}
        if "token_type_ids" in enc and pairs is not None:
            types = torch.zeros_like(input_ids)
            for b, i in enumerate(rows):
                types[b, :len(ids[i])] = torch.tensor(enc["token_type_ids"][i])
            inputs["token_type_ids"] = types.to(lm.device)
        with torch.inference_mode(), eval_mode(lm.model):
            logits = lm.model(**inputs).logits  # (B, num_labels)
        out[rows] = logits.float().cpu().numpy()
    return out


def classify(lm: LM, texts: str | Sequence[str], pairs: Sequence[str] | None = None, *,
             batch_size: int = 64, max_length: int | None = None) -> pd.DataFrame:
    """Predict each text (or pair): columns text_id, text, label (predicted), prob / score."""
    _require_classifier(lm)
    check_max_length(lm, max_length)
    texts = as_text_list(texts)
    if pairs is not None:
        pairs = as_text_list(pairs, "pairs")
        if len(pairs) != len(texts):
            raise InputError(f"{len(texts)} texts but {len(pairs)} pairs: pass one pair per text")
    logits = _outputs(lm, texts, pairs, batch_size, max_length)
    frame = pd.DataFrame({schema.TEXT_ID: range(len(texts)), schema.TEXT: texts})
    if _is_regression(lm):
        frame[schema.SCORE] = logits[:, 0]
        return frame
    probs = torch.softmax(torch.from_numpy(logits), dim=-1).numpy()  # (N, K)
    names = [str(lm.config.id2label[i]) for i in range(lm.config.num_labels)]
    best = probs.argmax(-1)
    frame[schema.LABEL] = [names[i] for i in best]
    frame[schema.PROB] = probs[np.arange(len(best)), best]
    return frame


def evaluate_classifier(lm: LM, data: Any, *, text_column: str = "text",
                        pair_column: str | None = None, label_column: str = "label",
                        split: str | None = None, batch_size: int = 64,
                        max_length: int | None = None) -> tuple[dict[str, float], pd.DataFrame | None]:
    """Score `lm` on a labelled table: (metrics, confusion matrix; None for regression)."""
    _require_classifier(lm)
    table = load_labelled(data, text_column=text_column, pair_column=pair_column,
                          label_column=label_column, split=split)
    logits = _outputs(lm, table[TEXT].tolist(),
                      table[PAIR].tolist() if PAIR in table.columns else None, batch_size, max_length)
    if _is_regression(lm):
        return task_metrics("regression", table[LABEL].astype(float), logits[:, 0]), None
    names = [str(lm.config.id2label[i]) for i in range(lm.config.num_labels)]
    ids = {n: i for i, n in enumerate(names)}
    truth = [str(v) for v in table[LABEL]]
    unknown = sorted(set(truth) - set(ids))
    if unknown:
        raise InputError(f"labels {unknown[:5]} are not among the model's labels {names}: "
                         "evaluate on data labelled like the training data")
    y_true = np.array([ids[v] for v in truth])
    y_pred = logits.argmax(-1)
    return (task_metrics("classification", y_true, y_pred),
            confusion_matrix(y_true, y_pred, labels=names))
