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
from ..figures import SEQUENTIAL
from .labels import finish, plot_text, short_label
from .layout import set_aspect


MAX_TICKS = 64    # labelled ticks per axis at most (128 tokens: every 2nd is labelled)


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
    q_text = q_order[S.QUERY_TOKEN].astype(str).tolist()
    k_text = k_order[S.KEY_TOKEN].astype(str).tolist()
    zv = z.to_numpy(dtype=float)
    # numeric axes: repeated tokens stay apart, tick text is abbreviated, the hover has it all
    hover = np.array([[f"{plot_text(q)} · {plot_text(k)}" for k in k_text] for q in q_text],
                     dtype=object).reshape(zv.shape)
    fig = go.Figure(go.Heatmap(
        z=zv, x=list(range(len(k_text))), y=list(range(len(q_text))), customdata=hover,
        colorscale=SEQUENTIAL, zmin=0,
        zmax=zmax if zmax is not None else float(np.nanmax(zv)),
        colorbar=dict(title=dict(text=S.WEIGHT, side="right"), thickness=10),
        hovertemplate="query · key: %{customdata}<br>weight %{z:.4f}<extra></extra>"))
    default = f"{_label(int(g[S.LAYER]), 'layer')}, {_label(int(g[S.HEAD]), 'head')}"
    fig.update_layout(title=title or default,
                      xaxis=dict(title="key", showgrid=False, **_ticks(k_text, angle=-60)),
                      yaxis=dict(title="query", autorange="reversed", showgrid=False,
                                 **_ticks(q_text)))
    set_aspect(fig, 0.9, narrow=1.0)   # queries x keys: near square beside its colour bar
    return finish(fig)


def _ticks(tokens: list[str], angle: int = 0) -> dict:
    """Tick positions and abbreviated labels; past MAX_TICKS tokens, every k-th one is labelled."""
    step = max(1, -(-len(tokens) // MAX_TICKS))
    vals = list(range(0, len(tokens), step))
    size = 11 if len(tokens) <= 40 else 8
    return dict(tickmode="array", tickvals=vals, ticktext=[short_label(tokens[i]) for i in vals],
                tickangle=angle, tickfont=dict(size=size))
