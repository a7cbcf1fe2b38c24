"""Attention heatmaps (plotly) from the tidy frame of `wb.attention`: one head, or an aggregate.

Queries run down the y axis, keys across; the colour map is the paper theme's sequential one
(monotonic in lightness, so it prints in greyscale). Export with `wb.figures.export(fig, "a.pdf")`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .. import schema as S
from ..errors import InputError
from ..figures import SEQUENTIAL, apply_theme
from .labels import plot_text


def _label(index: int, what: str) -> str:
    return f"all {what}s" if index == -1 else f"{what} {index}"


def attention_heatmap(df: pd.DataFrame, *, text_id: int | None = None, layer: int | None = None,
                      head: int | None = None, model: str | None = None,
                      title: str | None = None, zmax: float | None = None) -> go.Figure:
    """Heatmap of one (model, text, layer, head) slice of an attention frame.

    Pass `layer`/`head`/`text_id`/`model` to pick a slice from a bigger frame; the frame must
    then hold exactly one. Aggregates (head or layer -1, from `aggregate=`) plot the same way.
    """
    sub = df
    for col, val in ((S.TEXT_ID, text_id), (S.LAYER, layer), (S.HEAD, head), (S.MODEL, model)):
        if val is not None:
            sub = sub[sub[col] == val]
    if sub.empty:
        raise InputError("no rows left for this text/layer/head: check the values exist in the frame")
    keys = [c for c in (S.MODEL, S.TEXT_ID, S.LAYER, S.HEAD) if c in sub]
    groups = sub[keys].drop_duplicates()
    if len(groups) != 1:
        raise InputError(
            f"the frame holds {len(groups)} (model, text, layer, head) slices; a heatmap shows one: "
            "pass layer=, head= (and text_id=, model=) or aggregate=['heads'] in wb.attention")
    g = groups.iloc[0]
    q_order = sub.drop_duplicates(S.QUERY).sort_values(S.QUERY)
    k_order = sub.drop_duplicates(S.KEY).sort_values(S.KEY)
    z = (sub.pivot_table(index=S.QUERY, columns=S.KEY, values=S.WEIGHT, aggfunc="first",
                         observed=True)
         .reindex(index=q_order[S.QUERY].to_numpy(), columns=k_order[S.KEY].to_numpy()))
    y = [f"{plot_text(t)} ·{i}" if i >= 0 else plot_text(t)
         for t, i in zip(q_order[S.QUERY_TOKEN].astype(str), q_order[S.QUERY])]
    x = [f"{plot_text(t)} ·{i}" for t, i in zip(k_order[S.KEY_TOKEN].astype(str), k_order[S.KEY])]
    fig = go.Figure(go.Heatmap(
        z=z.to_numpy(dtype=float), x=x, y=y, colorscale=SEQUENTIAL, zmin=0,
        zmax=zmax if zmax is not None else float(np.nanmax(z.to_numpy(dtype=float))),
        colorbar=dict(title=dict(text=S.WEIGHT, side="right"), thickness=10),
        hovertemplate="query %{y}<br>key %{x}<br>weight %{z:.4f}<extra></extra>"))
    default = f"{_label(int(g[S.LAYER]), 'layer')}, {_label(int(g[S.HEAD]), 'head')}"
    fig.update_layout(title=dict(text=title or default),
                      xaxis=dict(title="key", tickangle=-60, showgrid=False),
                      yaxis=dict(title="query", autorange="reversed", showgrid=False))
    return apply_theme(fig)
