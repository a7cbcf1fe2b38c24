"""Figures for activation patching (`wb.patch`): a layer x position heatmap and a layer x head grid.

Both draw one column of the frame (`effect` by default: 1 = the site alone restores the clean
metric, 0 = no change from the corrupted run) on a diverging scale centred at 0, and say in the
title what was patched and measured. Layer 3: no torch, nothing computed beyond reshaping.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .. import schema as S
from ..errors import InputError
from ..figures import CATEGORICAL, DIVERGING
from .labels import finish, plot_text, short_label

SITE_NAMES = {"resid": "residual stream", "attn": "attention output", "ffn": "FFN output",
              "head": "head output"}


def _slice(df: pd.DataFrame, site: str, value: str) -> pd.DataFrame:
    for col in (S.SITE, S.LAYER, S.POSITION, value):
        if col not in df:
            raise InputError(f"the frame has no {col!r} column: pass the frame of wb.patch")
    sub = df[df[S.SITE] == site]
    if sub.empty:
        raise InputError(f"no rows for site {site!r}; the frame has {sorted(set(df[S.SITE]))}")
    return sub


def _title(sub: pd.DataFrame, site: str, value: str) -> str:
    metric = str(sub[S.METRIC].iloc[0]) if S.METRIC in sub else "metric"
    what = "normalised effect" if value == S.EFFECT else value
    return (f"Patching the {SITE_NAMES.get(site, site)} clean → corrupted: {what} on "
            f"{metric} (clean {sub[S.CLEAN].iloc[0]:.3f}, corrupted {sub[S.CORRUPTED].iloc[0]:.3f})"
            if S.CLEAN in sub else f"Patching the {SITE_NAMES.get(site, site)}: {what}")


def _range(z: np.ndarray) -> float:
    finite = z[np.isfinite(z)]
    return float(max(np.abs(finite).max(), 1e-12)) if finite.size else 1.0


def patch_heatmap(df: pd.DataFrame, *, site: str = "resid", value: str = S.EFFECT,
                  title: str | None = None) -> go.Figure:
    """Layer (rows) x position (columns, labelled by the clean tokens) of one site's `value`."""
    sub = _slice(df, site, value)
    grid = sub.pivot_table(index=S.LAYER, columns=S.POSITION, values=value, aggfunc="first")
    tokens = sub.drop_duplicates(S.POSITION).set_index(S.POSITION)[S.TOKEN].reindex(grid.columns)
    labels = ["all" if p < 0 else plot_text(t) for p, t in zip(grid.columns, tokens)]
    z = grid.to_numpy(dtype=float)
    zmax = _range(z)
    fig = go.Figure(go.Heatmap(
        z=z, x=list(range(len(labels))), y=list(grid.index), colorscale=DIVERGING,
        zmin=-zmax, zmax=zmax, customdata=np.array([labels] * len(grid.index), dtype=object),
        colorbar=dict(title=dict(text=value, side="right"), thickness=10),
        hovertemplate="layer %{y}, token %{customdata}<br>" + value + " %{z:.3f}<extra></extra>"))
    fig.update_layout(title=title or _title(sub, site, value),
                      xaxis=dict(title="position (clean token)", tickmode="array",
                                 tickvals=list(range(len(labels))),
                                 ticktext=[short_label(t) for t in labels], tickangle=-60),
                      yaxis=dict(title=S.LAYER, dtick=1, autorange="reversed"))
    return finish(fig)


def head_grid(df: pd.DataFrame, *, value: str = S.EFFECT, title: str | None = None) -> go.Figure:
    """Layer x head grid of the "head" site's `value`."""
    sub = _slice(df, "head", value)
    grid = sub.pivot_table(index=S.LAYER, columns=S.HEAD, values=value, aggfunc="first")
    z = grid.to_numpy(dtype=float)
    zmax = _range(z)
    fig = go.Figure(go.Heatmap(
        z=z, x=list(grid.columns), y=list(grid.index), colorscale=DIVERGING, zmin=-zmax,
        zmax=zmax, colorbar=dict(title=dict(text=value, side="right"), thickness=10),
        hovertemplate="layer %{y}, head %{x}<br>" + value + " %{z:.3f}<extra></extra>"))
    fig.update_layout(title=title or _title(sub, "head", value),
                      xaxis=dict(title=S.HEAD, dtick=1),
                      yaxis=dict(title=S.LAYER, dtick=1, autorange="reversed"))
    return finish(fig)


def effect_by_span(df: pd.DataFrame, *, site: str = "resid", n_pairs: int | None = None,
                   title: str | None = None) -> go.Figure:
    """Mean `effect` per layer for each span ("corrupted", "mask", "other"), over every pair of
    a concatenation of `wb.patch` frames; the band is +- one standard error over positions."""
    sub = _slice(df, site, S.EFFECT)
    if S.SPAN not in sub:
        raise InputError("the frame has no 'span' column: pass frames of wb.patch")
    fig = go.Figure()
    for i, span in enumerate(["corrupted", "mask", "other"]):
        part = sub[sub[S.SPAN] == span].groupby(S.LAYER)[S.EFFECT]
        if not len(part):
            continue
        mean, err = part.mean(), part.sem().fillna(0.0)
        fig.add_trace(go.Scatter(
            x=mean.index, y=mean.values, name=span, mode="lines+markers",
            error_y=dict(type="data", array=err.values, visible=True),
            line=dict(color=CATEGORICAL[i]),
            hovertemplate="layer %{x}<br>mean effect %{y:.3f}<extra>" + span + "</extra>"))
    data = f" over {n_pairs} pairs" if n_pairs else ""
    fig.update_layout(
        title=title or f"Patching the {SITE_NAMES.get(site, site)} one position at a time: mean "
                       f"normalised effect{data}",
        xaxis=dict(title=S.LAYER, dtick=1), yaxis=dict(title="effect (1 = clean restored)"),
        legend=dict(title=dict(text="position")))
    return finish(fig)
