"""Figures for representation analyses, each from the tidy frame its analysis returns.

- `probe_curve(df)`: per-layer probe accuracy beside the control-task and majority baselines
  (`wb.linear_probe`);
- `embedding_scatter(df)`: 2-D map with hover text, colour by label, and a layer slider
  (`wb.embedding_map`);
- `cka_heatmap(df)`: layer x layer linear CKA (`wb.similarity`);
- `attribution_strip(df)`: one row of coloured tokens per method, side by side (`wb.attribute`).

Tokens and texts are HTML-escaped before they reach hover labels or tick text. Layer 3: no torch.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .. import schema as S
from ..errors import InputError
from ..figures import CATEGORICAL, DIVERGING, SEQUENTIAL
from ._intervals import error_bars, interval_note
from .labels import TICK_CHARS, TITLE_CHARS, finish, plot_text, short_label, short_name

_PROBE_STYLE = {  # metric -> (legend name, dash)
    "accuracy": ("probe", "solid"),
    "control_accuracy": ("control task", "dash"),
    "majority": ("majority", "dot"),
}


def _need(df: pd.DataFrame, cols, what: str) -> None:
    missing = [c for c in cols if c not in df]
    if missing:
        raise InputError(f"{what} needs column(s) {missing}: pass the frame returned by {what}'s "
                         "analysis function")


def probe_curve(df: pd.DataFrame, *, title: str | None = None,
                show_selectivity: bool = False) -> go.Figure:
    """Accuracy per layer (one colour per model) with dashed control and dotted majority lines."""
    _need(df, [S.MODEL, S.LAYER, S.METRIC, S.VALUE], "probe_curve")
    fig = go.Figure()
    styles = dict(_PROBE_STYLE)
    if show_selectivity:
        styles["selectivity"] = ("selectivity", "dashdot")
    models = list(dict.fromkeys(df[S.MODEL]))
    for m, model in enumerate(models):
        colour = CATEGORICAL[m % len(CATEGORICAL)]
        for metric, (name, dash) in styles.items():
            sub = df[(df[S.MODEL] == model) & (df[S.METRIC] == metric)].sort_values(S.LAYER)
            if sub.empty:
                continue
            label = name if len(models) == 1 else f"{short_name(model)}: {name}"
            fig.add_trace(go.Scatter(
                x=sub[S.LAYER], y=sub[S.VALUE], mode="lines+markers", name=label,
                line=dict(color=colour if metric != "majority" else "#666", dash=dash),
                error_y=error_bars(sub, S.VALUE),
                hovertemplate=(f"{plot_text(model)}: {name}" if len(models) > 1 else name)
                + "<br>layer %{x}<br>%{y:.3f}<extra></extra>"))
    note = interval_note(df, "test texts")
    fig.update_layout(title=dict(text=title or f"Linear probe accuracy per layer{note}"),
                      xaxis=dict(title="layer (0 = embeddings)", dtick=1),
                      yaxis=dict(title="accuracy (held-out texts)",
                                 range=[min(0.0, float(df[S.VALUE].min()) - 0.05), 1.02]))
    return finish(fig)


def embedding_scatter(df: pd.DataFrame, *, color: str | None = S.LABEL, max_labels: int = len(CATEGORICAL) - 1,
                      title: str | None = None) -> go.Figure:
    """Scatter of x, y with a slider over layers; hover shows the token/word and its text."""
    _need(df, [S.LAYER, S.X, S.Y], "embedding_scatter")
    layers = sorted(int(v) for v in df[S.LAYER].unique())
    name_col = next((c for c in (S.WORD, S.TOKEN) if c in df), None)
    colour_by = color if color is not None and color in df else None
    if colour_by is not None:
        top = df[colour_by].astype(str).value_counts().index[:max_labels]
        groups = df[colour_by].astype(str).where(df[colour_by].astype(str).isin(top), "other")
        order = list(top) + (["other"] if (groups == "other").any() else [])
    else:
        groups, order = pd.Series("all", index=df.index), ["all"]
    hover = [(f"<b>{short_label(n, TITLE_CHARS)}</b><br>" if name_col else "")
             + short_label(t, TITLE_CHARS)
             for n, t in zip(df[name_col] if name_col else df.index, df.get(S.TEXT, df.index))]
    df = df.assign(_hover=hover, _group=groups.to_numpy())
    fig = go.Figure()
    owners = []  # layer of each trace
    for layer in layers:
        for g, label in enumerate(order):
            sub = df[(df[S.LAYER] == layer) & (df["_group"] == label)]
            if sub.empty:
                continue
            fig.add_trace(go.Scattergl(
                x=sub[S.X], y=sub[S.Y], mode="markers", name=short_name(label), legendgroup=label,
                showlegend=bool(layer == layers[0] and colour_by is not None),
                visible=bool(layer == layers[0]), text=sub["_hover"],
                marker=dict(size=6, opacity=0.75, color=CATEGORICAL[g % len(CATEGORICAL)]
                            if label != "other" else "#bbb"),
                hovertemplate="%{text}<extra>" + short_name(label) + "</extra>"))
            owners.append(layer)
    steps = [dict(method="update", label=str(layer),
                  args=[{"visible": [o == layer for o in owners]},
                        {"title.text": f"{title or 'Embedding map'}: layer {layer}"}])
             for layer in layers]
    fig.update_layout(
        title=dict(text=f"{title or 'Embedding map'}: layer {layers[0]}"),
        sliders=[dict(active=0, steps=steps, currentvalue=dict(prefix="layer "),
                      pad=dict(t=40))],
        xaxis=dict(title="component 1"), yaxis=dict(title="component 2"),
        legend=dict(title=dict(text=short_name(colour_by)) if colour_by else None))
    return finish(fig)


def cka_heatmap(df: pd.DataFrame, *, title: str | None = None) -> go.Figure:
    """Layer x layer CKA of one model pair; 1 means the same representation up to rotation/scale."""
    _need(df, [S.LAYER_A, S.LAYER_B, S.VALUE], "cka_heatmap")
    pairs = df[[S.MODEL_A, S.MODEL_B]].drop_duplicates() if S.MODEL_A in df else pd.DataFrame()
    if len(pairs) > 1:
        raise InputError(f"the frame holds {len(pairs)} model pairs; filter it to one")
    z = df.pivot_table(index=S.LAYER_A, columns=S.LAYER_B, values=S.VALUE, aggfunc="first")
    full_a, full_b = (pairs.iloc[0][S.MODEL_A], pairs.iloc[0][S.MODEL_B]) if len(pairs) else (
        "model a", "model b")
    fig = go.Figure(go.Heatmap(
        z=z.to_numpy(dtype=float), x=[str(c) for c in z.columns], y=[str(i) for i in z.index],
        colorscale=SEQUENTIAL, zmin=0, zmax=1, colorbar=dict(title=dict(text="CKA"), thickness=10),
        hovertemplate=f"{plot_text(full_a)} layer %{{y}}<br>{plot_text(full_b)} layer %{{x}}"
                      "<br>CKA %{z:.3f}<extra></extra>"))
    fig.update_layout(title=dict(text=title or "Linear CKA between layers"),
                      xaxis=dict(title=f"{short_name(full_b)}: layer", showgrid=False),
                      yaxis=dict(title=f"{short_name(full_a)}: layer", showgrid=False,
                                 autorange="reversed"),
                      yaxis_scaleanchor="x")
    return finish(fig)


def attribution_strip(df: pd.DataFrame, *, text_id: int | None = None,
                      title: str | None = None) -> go.Figure:
    """Tokens (columns) coloured by attribution, one row per method; each row scaled to its max |score|."""
    _need(df, [S.METHOD, S.POSITION, S.TOKEN, S.SCORE], "attribution_strip")
    if S.TEXT_ID in df:
        ids = df[S.TEXT_ID].unique()
        if text_id is None and len(ids) > 1:
            raise InputError(f"the frame holds {len(ids)} texts; pass text_id= to pick one")
        df = df[df[S.TEXT_ID] == (ids[0] if text_id is None else text_id)]
    if df.empty:
        raise InputError(f"no attribution rows for text_id={text_id}")
    methods = list(dict.fromkeys(df[S.METHOD]))
    cols = df.drop_duplicates(S.POSITION).sort_values(S.POSITION)
    positions = cols[S.POSITION].to_list()
    tokens = [plot_text(t) for t in cols[S.TOKEN]]  # whole on hover, cut on the axis
    z, raw = [], []
    for m in methods:
        s = df[df[S.METHOD] == m].set_index(S.POSITION)[S.SCORE].reindex(positions).to_numpy(float)
        peak = np.nanmax(np.abs(s)) if np.isfinite(s).any() else 0.0
        z.append(s / peak if peak > 0 else s)
        raw.append(s)
    label = {"ig": "integrated gradients", "grad_x_input": "gradient × input",
             "rollout": "attention rollout"}
    target = short_name(df[S.TARGET].iloc[0]) if S.TARGET in df else ""
    fig = go.Figure(go.Heatmap(
        z=z, x=list(range(len(positions))), y=[label.get(m, short_name(m)) for m in methods],
        text=[tokens] * len(methods), customdata=raw,
        colorscale=DIVERGING, zmid=0, zmin=-1, zmax=1, xgap=2, ygap=4,
        colorbar=dict(title=dict(text="share of max"), thickness=10),
        hovertemplate="%{text}<br>%{y}<br>score %{customdata:.4g}<extra></extra>"))
    delta = df.loc[df[S.METHOD] == "ig", S.DELTA].dropna() if S.DELTA in df else pd.Series([], dtype=float)
    note = f" (IG delta {delta.iloc[0]:.2g})" if len(delta) else ""
    fig.update_layout(
        title=dict(text=title or f"What drove the prediction {target}{note}"),
        xaxis=dict(tickmode="array", tickvals=list(range(len(positions))),
                   ticktext=[short_label(t, TICK_CHARS) for t in cols[S.TOKEN]],
                   tickangle=-45, showgrid=False, showline=False),
        yaxis=dict(autorange="reversed", showgrid=False, showline=False),
        height=140 + 45 * len(methods))
    return finish(fig)
