"""Figures for the syntax probes, each drawn from the frame its analysis returns.

- `structural_curve(df)`: UUAS and DSpr (or root accuracy and NSpr) per layer, with the
  right-branching baseline (`wb.structural_probe`);
- `rank_curve(df)`: UUAS by probe rank, one line per layer (log2 rank axis, as the paper's Fig. 2);
- `edge_probe_grid(result)`: tasks x layers in the style of Tenney et al. 2019b's Figure 1: the
  mixing weights and the cumulative gains Delta per layer, with the expected layer and the center
  of gravity marked (`wb.edge_probe`);
- `mdl_beside_accuracy(df)`: probe accuracy and online-code compression per layer, real and
  control (`wb.linear_probe(..., mdl=True)`).

Titles say what was computed and on how much data. Layer 3: no torch.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .. import schema as S
from ..errors import InputError
from ..figures import CATEGORICAL
from .labels import finish, plot_text, short_name

_STRUCT = {"distance": (("uuas", "UUAS"), ("dspr", "DSpr (Spearman, 5-50 words)")),
           "depth": (("root_acc", "root accuracy"), ("nspr", "NSpr (Spearman, 5-50 words)"))}


def _need(df: pd.DataFrame, cols, what: str) -> None:
    missing = set(cols) - set(df.columns)
    if df is None or df.empty or missing:
        raise InputError(f"{what} needs the non-empty frame its analysis returns; missing "
                         f"columns {sorted(missing)}" if missing else f"{what} got an empty frame")


def structural_curve(df: pd.DataFrame, *, title: str | None = None) -> go.Figure:
    """Per-layer structural-probe scores at the largest rank in `df`, one colour per metric."""
    _need(df, [S.MODEL, S.LAYER, S.KIND, S.PROBE_RANK, S.METRIC, S.VALUE, S.COUNT], "structural_curve")
    kind = df[S.KIND].iloc[0]
    sub = df[df[S.PROBE_RANK] == df[S.PROBE_RANK].max()]
    fig = go.Figure()
    for c, (metric, name) in enumerate(_STRUCT[kind]):
        part = sub[sub[S.METRIC] == metric].sort_values(S.LAYER)
        fig.add_trace(go.Scatter(x=part[S.LAYER], y=part[S.VALUE], mode="lines+markers", name=name,
                                 line=dict(color=CATEGORICAL[c]),
                                 hovertemplate=name + "<br>layer %{x}: %{y:.3f}<extra></extra>"))
    base = sub[sub[S.METRIC] == "uuas_linear"]
    if not base.empty:
        fig.add_hline(y=float(base[S.VALUE].iloc[0]), line=dict(color="#666", dash="dot"),
                      annotation_text="right-branching baseline (UUAS)")
    first, spear = (int(sub[sub[S.METRIC] == m][S.COUNT].max()) for m, _ in _STRUCT[kind])
    counted = (f"{first} held-out edges" if kind == "distance" else f"{first} held-out sentences")
    rank = int(sub[S.PROBE_RANK].iloc[0])
    fig.update_layout(
        title=dict(text=title or f"{plot_text(short_name(df[S.MODEL].iloc[0]))}: {kind} probe "
                   f"(rank {rank}) per layer; {counted}, Spearman on {spear} sentences of 5-50 words"),
        xaxis=dict(title="layer (0 = embeddings)", dtick=1), yaxis=dict(title="score", range=[0, 1.02]))
    return finish(fig)


def rank_curve(df: pd.DataFrame, *, metric: str = "uuas", title: str | None = None) -> go.Figure:
    """`metric` by probe rank (log2 axis), one line per layer."""
    _need(df, [S.LAYER, S.PROBE_RANK, S.METRIC, S.VALUE, S.COUNT], "rank_curve")
    sub = df[df[S.METRIC] == metric]
    if sub.empty:
        raise InputError(f"rank_curve: no {metric!r} rows; metrics here: {sorted(set(df[S.METRIC]))}")
    fig = go.Figure()
    for c, (layer, part) in enumerate(sub.groupby(S.LAYER)):
        part = part.sort_values(S.PROBE_RANK)
        fig.add_trace(go.Scatter(x=part[S.PROBE_RANK], y=part[S.VALUE], mode="lines+markers",
                                 name=f"layer {layer}", line=dict(color=CATEGORICAL[c % len(CATEGORICAL)]),
                                 hovertemplate=f"layer {layer}<br>rank %{{x}}: %{{y:.3f}}<extra></extra>"))
    n = int(sub[S.COUNT].max())
    fig.update_layout(
        title=dict(text=title or f"{metric.upper()} by probe rank ({n} held-out "
                   f"{'edges' if metric == 'uuas' else 'sentences'})"),
        xaxis=dict(title="probe rank", type="log", tickvals=sorted(set(sub[S.PROBE_RANK]))),
        yaxis=dict(title=metric, range=[0, 1.02]))
    return finish(fig)


def edge_probe_grid(result, *, title: str | None = None) -> go.Figure:
    """One row per task: mixing weights (bars) and cumulative gains Delta (bars) per layer, with
    the expected layer (solid) and the center of gravity (dashed) as vertical lines."""
    layers, summary = result.layers, result.summary
    _need(layers, [S.TASK, S.LAYER, S.METRIC, S.VALUE], "edge_probe_grid")
    tasks = list(dict.fromkeys(layers[S.TASK]))
    summ = summary.set_index([S.TASK, S.METRIC])[S.VALUE]
    fig = make_subplots(rows=len(tasks), cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        subplot_titles=[
                            f"{plot_text(t)}: accuracy {summ[t, 'accuracy']:.2f}"
                            + (f", control {summ[t, 'control_accuracy']:.2f}"
                               if (t, "control_accuracy") in summ.index else "") for t in tasks])
    for r, task in enumerate(tasks, start=1):
        part = layers[layers[S.TASK] == task]
        for c, (metric, name) in enumerate((("mix_weight", "mixing weight s"),
                                            ("delta", "gain Δ (cumulative probes)"))):
            bars = part[part[S.METRIC] == metric]
            fig.add_trace(go.Bar(x=bars[S.LAYER], y=bars[S.VALUE], name=name, showlegend=r == 1,
                                 marker_color=CATEGORICAL[c], legendgroup=name,
                                 hovertemplate=name + "<br>layer %{x}: %{y:.3f}<extra></extra>"),
                          row=r, col=1)
        for key, dash in (("expected_layer", "solid"), ("center_of_gravity", "dash")):
            value = summ.get((task, key), np.nan)
            if np.isfinite(value):
                fig.add_vline(x=float(value), line=dict(color="#333", dash=dash), row=r, col=1)
    n = int(summ[tasks[0], "n_test"])
    fig.update_xaxes(title_text="layer (0 = embeddings); solid: expected layer, dashed: center of "
                     "gravity", dtick=1, row=len(tasks), col=1)
    fig.update_layout(barmode="group", height=170 * len(tasks) + 120,
                      title=dict(text=title or f"Edge probing, {plot_text(short_name(layers[S.MODEL].iloc[0]))}: "
                                 f"scalar mix per task ({n} held-out {tasks[0]} spans)"))
    return finish(fig)


def mdl_beside_accuracy(df: pd.DataFrame, *, title: str | None = None) -> go.Figure:
    """Left: accuracy and control accuracy per layer; right: online-code compression, real and
    control (from `wb.linear_probe(..., mdl=True)`)."""
    _need(df, [S.LAYER, S.METRIC, S.VALUE], "mdl_beside_accuracy")
    if "compression" not in set(df[S.METRIC]):
        raise InputError("mdl_beside_accuracy needs MDL rows: call wb.linear_probe(..., mdl=True)")
    fig = make_subplots(rows=1, cols=2, subplot_titles=["probe accuracy (held-out texts)",
                                                        "compression (uniform / online code)"])
    for col, pairs in enumerate(((("accuracy", "probe"), ("control_accuracy", "control task")),
                                 (("compression", "probe"), ("control_compression", "control task"))), 1):
        for c, (metric, name) in enumerate(pairs):
            part = df[df[S.METRIC] == metric].sort_values(S.LAYER)
            fig.add_trace(go.Scatter(x=part[S.LAYER], y=part[S.VALUE], mode="lines+markers", name=name,
                                     line=dict(color=CATEGORICAL[c], dash="solid" if c == 0 else "dash"),
                                     showlegend=col == 1, legendgroup=name), row=1, col=col)
    kbits = df[df[S.METRIC] == "uniform_kbits"][S.VALUE]
    fig.update_xaxes(title_text="layer (0 = embeddings)", dtick=1)
    fig.update_layout(title=dict(text=title or "Accuracy and MDL (online code, Voita & Titov 2020)"
                                 + (f"; uniform code {kbits.iloc[0]:.1f} kbits" if len(kbits) else "")))
    return finish(fig)
