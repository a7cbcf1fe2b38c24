"""Figures for head analyses: layer x head heatmaps, the head map, importance and syntax bars.

Every function takes the DataFrame an analysis returned (`head_stats`, `head_clusters`,
`head_importance`, `syntax_heads`, `compare_attention`) and returns a plotly figure
in the paper theme; none computes anything beyond reshaping. Layer 3: no torch.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .. import schema as S
from ..errors import InputError
from ..figures import CATEGORICAL, SEQUENTIAL
from ._intervals import error_bars, interval_note
from .labels import finish, plot_text, short_name, short_ticks

# readable titles of the statistics (columns not listed are shown as they are named); plain text:
# `_label` escapes them for plotly, which reads text as HTML ('<s>' would vanish)
LABELS = {
    S.ATTN_BOS: "attention to <s>", S.ATTN_EOS: "attention to </s>",
    S.ATTN_PUNCT: "attention to punctuation", S.ATTN_SELF: "attention to self",
    S.ATTN_PREV: "attention to previous token", S.ATTN_NEXT: "attention to next token",
    S.DISTANCE: "mean attention distance (tokens)", S.ENTROPY: "attention entropy (nats)",
    S.TOP_BOS: "share of queries: top key <s>", S.TOP_EOS: "share of queries: top key </s>",
    S.TOP_PUNCT: "share of queries: top key punctuation",
    S.TOP_SELF: "share of queries: top key self", S.TOP_PREV: "share of queries: top key previous",
    S.TOP_NEXT: "share of queries: top key next", S.SCORE: "importance",
    S.JS_DISTANCE: "Jensen-Shannon distance", S.COSINE: "cosine similarity",
    S.ACCURACY: "accuracy",
}
# one head on one sentence: `plots.attention.attention_heatmap` on a `wb.attention` frame
PATTERN_COLOURS = {"diagonal": CATEGORICAL[0], "vertical": CATEGORICAL[1],
                   "block": CATEGORICAL[2], "heterogeneous": "#999999"}


def _label(value: str) -> str:
    return plot_text(LABELS.get(value, value))


def _require(df: pd.DataFrame, columns, what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(f"{what} needs columns {missing}; pass the frame the analysis returned "
                         f"(it has {list(df.columns)[:12]})")


def _grid(df: pd.DataFrame, value: str) -> pd.DataFrame:
    """(layers, heads) array of `value`, NaN where a head has no row."""
    grid = df.pivot_table(index=S.LAYER, columns=S.HEAD, values=value, aggfunc="mean")
    return grid.sort_index().sort_index(axis=1)


def head_heatmap(df: pd.DataFrame, value: str = S.ATTN_BOS, *, title: str | None = None,
                 zmin: float | None = None, zmax: float | None = None,
                 colorscale: str = SEQUENTIAL) -> go.Figure:
    """Layer x head heatmap of any per-head column (one panel per model when several)."""
    _require(df, [S.LAYER, S.HEAD, value], "head_heatmap")
    groups = list(df.groupby(S.MODEL, sort=False)) if S.MODEL in df.columns else [("", df)]
    groups = groups or [("", df)]
    fig = make_subplots(rows=1, cols=len(groups), subplot_titles=[short_name(m) for m, _ in groups]
                        if len(groups) > 1 else None, shared_yaxes=True, horizontal_spacing=0.04)
    lo = df[value].min() if zmin is None else zmin
    hi = df[value].max() if zmax is None else zmax
    for i, (model, part) in enumerate(groups, start=1):
        grid = _grid(part, value)
        fig.add_trace(go.Heatmap(
            z=grid.values, x=list(grid.columns), y=list(grid.index), zmin=lo, zmax=hi,
            colorscale=colorscale, showscale=(i == 1), colorbar=dict(title=dict(text="")),
            hovertemplate=(plot_text(model) + "<br>" if len(groups) > 1 else "")
            + "layer %{y}, head %{x}<br>" + _label(value)
            + ": %{z:.3f}<extra></extra>"), row=1, col=i)
        fig.update_xaxes(title_text=S.HEAD, dtick=1, row=1, col=i)
    fig.update_yaxes(title_text=S.LAYER, dtick=1, autorange="reversed", row=1, col=1)
    fig.update_layout(title=title or _label(value))
    return finish(fig)


def compare_heatmap(df: pd.DataFrame, value: str = S.JS_DISTANCE, *,
                    title: str | None = None) -> go.Figure:
    """Layer x head heatmap of `compare_attention` (Jensen-Shannon distance or cosine)."""
    _require(df, [S.LAYER, S.HEAD, value], "compare_heatmap")
    if title is None and S.MODEL_A in df.columns and len(df):
        title = (f"{_label(value)}: {short_name(df[S.MODEL_A].iloc[0])} vs "
                 f"{short_name(df[S.MODEL_B].iloc[0])}")
    return head_heatmap(df.drop(columns=[S.MODEL], errors="ignore"), value, title=title)


def cluster_map(df: pd.DataFrame, color: str = S.PATTERN, *, title: str | None = None
                ) -> go.Figure:
    """The `head_clusters` map: one point per head, coloured by pattern or by layer."""
    _require(df, [S.X, S.Y, S.LAYER, S.HEAD, color], "cluster_map")
    labels = pd.Series([f"L{la} H{h}" for la, h in zip(df[S.LAYER], df[S.HEAD])], index=df.index)
    fig = go.Figure()
    if color == S.PATTERN:
        for pattern, colour in PATTERN_COLOURS.items():
            part = df[df[S.PATTERN] == pattern]
            if len(part):
                fig.add_trace(go.Scatter(
                    x=part[S.X], y=part[S.Y], mode="markers", name=pattern,
                    marker=dict(color=colour, size=8, line=dict(width=0.5, color="#333")),
                    text=labels[part.index],
                    hovertemplate="%{text}<extra>" + pattern + "</extra>"))
    else:
        fig.add_trace(go.Scatter(
            x=df[S.X], y=df[S.Y], mode="markers", text=labels.tolist(),
            marker=dict(color=df[color], colorscale=SEQUENTIAL, size=8, showscale=True,
                        colorbar=dict(title=dict(text=color)), line=dict(width=0.5, color="#333")),
            hovertemplate="%{text}<br>" + color + " %{marker.color}<extra></extra>"))
    fig.update_layout(title=title or "Heads by Jensen-Shannon distance (MDS)",
                      xaxis_title="MDS 1", yaxis_title="MDS 2")
    fig.update_yaxes(scaleanchor="x", scaleratio=1)
    return finish(fig)


def importance_bars(df: pd.DataFrame, *, top: int = 20, title: str | None = None) -> go.Figure:
    """The `top` most important heads of `head_importance`, as horizontal bars."""
    _require(df, [S.LAYER, S.HEAD, S.SCORE], "importance_bars")
    part = df.nlargest(top, S.SCORE).iloc[::-1]
    method = df[S.METHOD].iloc[0] if S.METHOD in df.columns and len(df) else ""
    fig = go.Figure(go.Bar(
        x=part[S.SCORE], y=[f"L{la} H{h}" for la, h in zip(part[S.LAYER], part[S.HEAD])],
        orientation="h", marker_color=CATEGORICAL[0], error_x=error_bars(part, S.SCORE),
        hovertemplate="%{y}: %{x:.4g}<extra></extra>"))
    xlabel = {"gradient": "mean over texts of |dL(text)/dgate| (Michel et al. 2019)",
              "loo": "loss increase when removed"}.get(method, "importance")
    fig.update_layout(title=title or f"Head importance ({method}){interval_note(df)}",
                      xaxis_title=xlabel,
                      height=max(300, 18 * len(part) + 120))
    return finish(fig)


def syntax_bars(df: pd.DataFrame, *, top: int = 15, title: str | None = None) -> go.Figure:
    """Best head's accuracy per relation next to the fixed-offset baseline (Clark et al. 2019)."""
    _require(df, [S.RELATION, S.ACCURACY, S.BASELINE, S.LAYER, S.HEAD, S.OFFSET], "syntax_bars")
    part = df.head(top)
    heads = [f"L{la} H{h}" for la, h in zip(part[S.LAYER], part[S.HEAD])]
    fig = go.Figure([
        go.Bar(name="best head", x=part[S.RELATION], y=part[S.ACCURACY], text=heads,
               marker_color=CATEGORICAL[0],
               hovertemplate="%{x}: %{y:.2f} (%{text})<extra></extra>"),
        go.Bar(name="fixed offset", x=part[S.RELATION], y=part[S.BASELINE],
               customdata=part[S.OFFSET], marker_color="#999999",
               hovertemplate="%{x}: %{y:.2f} (offset %{customdata})<extra></extra>"),
    ])
    fig.update_layout(barmode="group", title=title or "Dependent -> governor accuracy",
                      yaxis_title=S.ACCURACY, yaxis_range=[0, 1],
                      xaxis=short_ticks(part[S.RELATION]))
    return finish(fig)

