"""Training figures from a run's metrics frame: loss and metric curves, run comparison, confusion matrix.

The input is `Run.metrics()` (one row per event: `step`, `kind` = "step" or "eval", then metric
columns such as `loss`, `eval_loss`, `eval_accuracy`). The same functions draw the final figure and
feed the live `RunMonitor` widget, which copies trace data by trace name. Layer 3: no torch.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..errors import InputError
from ..figures import CATEGORICAL, SEQUENTIAL
from .labels import finish, plot_text, short_name, short_ticks

# logged numbers that are not quality curves (bookkeeping, speeds, unbounded scales)
_NOT_CURVES = {"step", "time", "lr", "epoch", "examples_per_s", "tokens_per_s", "eval_perplexity",
               "eval_mse", "grad_norm"}


def clean_metrics(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (kind, step): a resumed run may have logged a step twice; the last one wins."""
    if frame is None or len(frame) == 0 or "step" not in frame.columns:
        return pd.DataFrame(columns=["step", "kind"])
    if "kind" not in frame.columns:
        frame = frame.assign(kind="step")
    return (frame.drop_duplicates(["kind", "step"], keep="last")
            .sort_values(["kind", "step"]).reset_index(drop=True))


def curve_columns(frame: pd.DataFrame, metrics: Sequence[str] | None = None) -> tuple[list[str], list[str]]:
    """(loss columns, score columns) to draw: losses on the left, bounded scores on the right."""
    cols = [c for c in frame.columns if c not in ("kind",) and c not in _NOT_CURVES
            and pd.api.types.is_numeric_dtype(frame[c])]
    if metrics is not None:
        unknown = [m for m in metrics if m not in frame.columns]
        if unknown and len(frame):
            raise InputError(f"metrics {unknown} are not in the metrics frame; it has {cols}")
        cols = [m for m in metrics if m in frame.columns]
    losses = sorted((c for c in cols if c.endswith("loss")), key=lambda c: c.startswith("eval"))
    scores = [c for c in cols if not c.endswith("loss")]
    return losses, scores


def _series(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    part = frame[frame[column].notna()] if column in frame.columns else frame.iloc[0:0]
    return part[["step", column]] if len(part) else pd.DataFrame({"step": [], column: []})


def training_curves(metrics: pd.DataFrame, *, metrics_shown: Sequence[str] | None = None,
                    title: str | None = None) -> go.Figure:
    """Two panels: train/validation loss by step (left) and validation scores by step (right).

    Traces are named by metric column (`loss`, `eval_loss`, `eval_accuracy`, ...), so a live view
    can update them by name. An empty frame gives the empty layout (for a run not started yet).
    """
    frame = clean_metrics(metrics)
    losses, scores = curve_columns(frame, metrics_shown)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "validation scores"),
                        horizontal_spacing=0.12)
    for i, col in enumerate(losses):
        part = _series(frame, col)
        fig.add_trace(go.Scatter(x=part["step"], y=part[col], name=col, mode="lines+markers"
                                 if col.startswith("eval") else "lines",
                                 line=dict(color=CATEGORICAL[i % len(CATEGORICAL)], width=1.5),
                                 marker=dict(size=5)), row=1, col=1)
    for i, col in enumerate(scores):
        part = _series(frame, col)
        fig.add_trace(go.Scatter(x=part["step"], y=part[col], name=col, mode="lines+markers",
                                 line=dict(color=CATEGORICAL[(i + len(losses)) % len(CATEGORICAL)],
                                           width=1.5),
                                 marker=dict(size=5)), row=1, col=2)
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(title_text="loss", row=1, col=1)
    fig.update_yaxes(title_text="score", row=1, col=2)
    fig.update_layout(title=title, legend=dict(orientation="h", y=-0.25))
    return finish(fig)


def compare_runs(metrics_by_run: Mapping[str, pd.DataFrame], metric: str = "eval_loss",
                 title: str | None = None) -> go.Figure:
    """One line per run of `metric` against step (e.g. validation accuracy of several runs)."""
    fig = go.Figure()
    for i, (name, frame) in enumerate(metrics_by_run.items()):
        part = _series(clean_metrics(frame), metric)
        fig.add_trace(go.Scatter(x=part["step"], y=part[metric], name=short_name(name),
                                 mode="lines+markers", hovertemplate=plot_text(name)
                                 + "<br>step %{x}: %{y:.4g}<extra></extra>",
                                 line=dict(color=CATEGORICAL[i % len(CATEGORICAL)], width=1.5),
                                 marker=dict(size=5)))
    fig.update_layout(title=title or metric, xaxis_title="step", yaxis_title=metric)
    return finish(fig)


def confusion_heatmap(matrix: pd.DataFrame, *, normalize: bool = False,
                      title: str | None = None) -> go.Figure:
    """Heatmap of a confusion matrix (rows: true label, columns: predicted), counts annotated.

    `normalize=True` colours by the share of each true label (rows sum to 1) and shows both.
    """
    if matrix.shape[0] == 0 or matrix.shape[0] != matrix.shape[1]:
        raise InputError(f"a confusion matrix must be square and non-empty (got {matrix.shape})")
    counts = matrix.to_numpy()
    shares = counts / counts.sum(axis=1, keepdims=True).clip(min=1)
    z = shares if normalize else counts
    text = [[f"{c}<br>({s:.0%})" if normalize else f"{c}" for c, s in zip(rc, rs)]
            for rc, rs in zip(counts, shares)]
    fig = go.Figure(go.Heatmap(z=z, x=[plot_text(v) for v in matrix.columns],
                               y=[plot_text(v) for v in matrix.index], text=text,
                               texttemplate="%{text}", colorscale=SEQUENTIAL,
                               hovertemplate="true %{y}<br>predicted %{x}: %{z}<extra></extra>",
                               colorbar=dict(title="share" if normalize else "count")))
    fig.update_layout(title=title or "confusion matrix",
                      xaxis=dict(title="predicted", **short_ticks(matrix.columns)),
                      yaxis=dict(title="true", autorange="reversed", **short_ticks(matrix.index)))
    return finish(fig)
