"""Evaluation metrics for fine-tuned classifiers and regressors: plain numbers in, plain numbers out.

- `classification_metrics(y_true, y_pred)` -> {"accuracy", "macro_f1", "mcc"}
- `regression_metrics(y_true, y_pred)` -> {"pearson", "spearman", "mse"}
- `confusion_matrix(y_true, y_pred, labels)` -> a DataFrame (rows: true label, columns: predicted)

The numbers come from scikit-learn and scipy so they match what papers and the GLUE scripts report.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from ..config import check_finite_array
from ..errors import InputError

# metrics where a larger value is better (everything else, e.g. loss and mse, is lower-is-better)
HIGHER_IS_BETTER = frozenset({"accuracy", "macro_f1", "mcc", "pearson", "spearman"})


def _arrays(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.shape != p.shape or t.ndim != 1:
        raise InputError(f"y_true and y_pred must be 1-D and of equal length (got {t.shape} and {p.shape})")
    if t.size == 0:
        raise InputError("no examples to score: y_true is empty")
    return t, p


def classification_metrics(y_true: Sequence, y_pred: Sequence) -> dict[str, float]:
    """Accuracy, macro-averaged F1 and Matthews correlation of predicted class ids."""
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    t, p = _arrays(y_true, y_pred)
    return {
        "accuracy": float(accuracy_score(t, p)),
        "macro_f1": float(f1_score(t, p, average="macro", zero_division=0)),
        "mcc": float(matthews_corrcoef(t, p)),
    }


def regression_metrics(y_true: Sequence, y_pred: Sequence) -> dict[str, float]:
    """Pearson and Spearman correlation (NaN when a side is constant) and mean squared error."""
    from scipy.stats import pearsonr, spearmanr

    t, p = _arrays(y_true, y_pred)
    t, p = check_finite_array("y_true", t, 1), check_finite_array("y_pred", p, 1)
    constant = t.size < 2 or np.ptp(t) == 0 or np.ptp(p) == 0
    return {
        "pearson": math.nan if constant else float(pearsonr(t, p)[0]),
        "spearman": math.nan if constant else float(spearmanr(t, p)[0]),
        "mse": float(np.mean((t - p) ** 2)),
    }


def task_metrics(task: str, y_true: Sequence, y_pred: Sequence) -> dict[str, float]:
    """The metrics of `task` ("classification" or "regression")."""
    if task == "regression":
        return regression_metrics(y_true, y_pred)
    return classification_metrics(y_true, y_pred)


def confusion_matrix(y_true: Sequence, y_pred: Sequence,
                     labels: Sequence | None = None) -> pd.DataFrame:
    """Counts with one row per true label and one column per predicted label.

    `y_true`/`y_pred` hold class ids 0..K-1 (or label values); `labels` gives the display names
    in id order (default: the sorted values seen). Index is named "true", columns "predicted".
    """
    from sklearn.metrics import confusion_matrix as sk_confusion

    t, p = _arrays(y_true, y_pred)
    if labels is None:
        values = sorted(set(t.tolist()) | set(p.tolist()))
        names = [str(v) for v in values]
    else:
        names = [str(v) for v in labels]
        values = list(range(len(names))) if np.issubdtype(t.dtype, np.integer) else list(labels)
    counts = sk_confusion(t, p, labels=values)
    return pd.DataFrame(counts, index=pd.Index(names, name="true"),
                        columns=pd.Index(names, name="predicted"))
