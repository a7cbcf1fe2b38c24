"""Figures of the query-key atlas (`wb.qk_atlas`): the all-heads grid and one head in detail.

`atlas_grid(df)` draws one small WebGL scatter per (layer, head) — queries and keys in one joint
map — subsampled to `max_points` per head so the page stays small (coordinates go out as float32
binary arrays, colours as small integer codes, no per-point hover text). `head_detail(df, l, h)`
draws one head with every token on hover, coloured by kind, position bucket, token type or POS,
and, given a query and its attention row, the row drawn as lines from the query to its keys.
Layer 3: no torch.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .. import schema as S
from ..errors import InputError
from ..figures import CATEGORICAL
from .labels import finish, plot_text

KIND_COLOURS = {"query": CATEGORICAL[0], "key": CATEGORICAL[1]}
PALETTE = CATEGORICAL + ["#999999", "#66A61E", "#E7298A", "#7570B3", "#A6761D", "#1B9E77"]


def _require(df: pd.DataFrame, columns, what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(f"{what} needs columns {missing}: pass the frame wb.qk_atlas returned "
                         "(ask for a label with qk_atlas(..., labels=[...]))")


def _colours(df: pd.DataFrame, color: str) -> dict[str, str]:
    if color == S.KIND:
        return dict(KIND_COLOURS)
    values = df[color].cat.categories if hasattr(df[color], "cat") else sorted(df[color].unique())
    if color == S.POSITION_BUCKET:
        values = sorted(values, key=lambda v: int(str(v).split("-")[0]))
    return {str(v): PALETTE[i % len(PALETTE)] for i, v in enumerate(values)}


def subsample(df: pd.DataFrame, max_points: int | None, seed: int = 0) -> pd.DataFrame:
    """At most `max_points` rows per (layer, head), the same tokens for queries and keys."""
    if max_points is None:
        return df
    if max_points < 2:
        raise InputError(f"max_points={max_points}; use at least 2 (or None for all points)")
    tokens = df[[S.TEXT_ID, S.POSITION]].drop_duplicates()
    if 2 * len(tokens) <= max_points:
        return df
    keep = tokens.sample(n=max_points // 2, random_state=seed)
    return df.merge(keep, on=[S.TEXT_ID, S.POSITION])


def atlas_grid(df: pd.DataFrame, *, color: str = S.KIND, max_points: int | None = 300,
               seed: int = 0, marker_size: float = 2.5, title: str | None = None) -> go.Figure:
    """Small multiples: every head's joint query-key map, layers as rows, heads as columns."""
    _require(df, [S.LAYER, S.HEAD, S.KIND, S.X, S.Y, S.TEXT_ID, S.POSITION, color], "atlas_grid")
    part = subsample(df, max_points, seed)
    layers, heads = sorted(part[S.LAYER].unique()), sorted(part[S.HEAD].unique())
    colours = _colours(part, color)
    codes = {v: i for i, v in enumerate(colours)}
    scale = [[i / max(len(colours) - 1, 1), c] for i, c in enumerate(colours.values())]
    fig = make_subplots(rows=len(layers), cols=len(heads), horizontal_spacing=0.004,
                        vertical_spacing=0.004)
    for (layer, head), one in part.groupby([S.LAYER, S.HEAD], sort=True):
        code = one[color].astype(str).map(codes).to_numpy(np.int8)
        fig.add_trace(go.Scattergl(
            x=one[S.X].to_numpy(np.float32), y=one[S.Y].to_numpy(np.float32), mode="markers",
            marker=dict(size=marker_size, color=code, colorscale=scale, cmin=0,
                        cmax=max(len(colours) - 1, 1)),
            name=f"L{layer} H{head}", meta=[int(layer), int(head)], showlegend=False,
            hovertemplate=f"layer {layer}, head {head}<extra></extra>"),
            row=layers.index(layer) + 1, col=heads.index(head) + 1)
    for value, colour in colours.items():        # legend entries only
        fig.add_trace(go.Scattergl(x=[None], y=[None], mode="markers", name=plot_text(value),
                                   marker=dict(color=colour, size=7), showlegend=True))
    fig.update_xaxes(showticklabels=False, ticks="", showgrid=False, zeroline=False)
    fig.update_yaxes(showticklabels=False, ticks="", showgrid=False, zeroline=False)
    for i, layer in enumerate(layers, start=1):
        fig.update_yaxes(title_text=f"L{layer}", title_standoff=2, row=i, col=1)
    for j, head in enumerate(heads, start=1):
        fig.update_xaxes(title_text=f"H{head}", title_standoff=2, row=len(layers), col=j)
    side = 70 if len(heads) > 8 else 110
    method = ", ".join(map(str, df[S.METHOD].unique())) if S.METHOD in df else ""
    fig.update_layout(title=title or f"Queries and keys of every head ({method})",
                      width=80 + side * len(heads), height=90 + side * len(layers),
                      legend=dict(orientation="h", y=1.0, yanchor="bottom", x=1, xanchor="right"),
                      margin=dict(l=40, r=10, t=60, b=30))
    return finish(fig)


def _hover(one: pd.DataFrame) -> list[str]:
    return [f"{plot_text(t)}<br>{k} · text {i} · position {p}"
            for t, k, i, p in zip(one[S.TOKEN], one[S.KIND], one[S.TEXT_ID], one[S.POSITION])]


def head_detail(df: pd.DataFrame, layer: int, head: int, *, color: str = S.KIND,
                query: tuple[int, int] | None = None, weights: pd.DataFrame | None = None,
                max_points: int | None = None, seed: int = 0, min_weight: float = 0.02,
                title: str | None = None) -> go.Figure:
    """One head's joint map with tokens on hover; `query=(text_id, position)` with `weights`
    (rows with `key` and `weight`, e.g. `wb.attention` for that query) draws its attention row."""
    _require(df, [S.LAYER, S.HEAD, S.KIND, S.X, S.Y, S.TOKEN, S.TEXT_ID, S.POSITION, color],
             "head_detail")
    full = df[(df[S.LAYER] == layer) & (df[S.HEAD] == head)]
    if full.empty:
        raise InputError(f"no rows for layer {layer}, head {head} in this atlas")
    if query is not None:
        _check_query(full, query, weights)             # refused, not silently left undrawn
    one = subsample(full, max_points, seed)
    fig = go.Figure()
    for value, colour in _colours(one, color).items():
        part = one[one[color].astype(str) == value]
        if len(part):
            fig.add_trace(go.Scattergl(
                x=part[S.X], y=part[S.Y], mode="markers", name=plot_text(value),
                marker=dict(color=colour, size=5, opacity=0.7,
                            symbol=np.where(part[S.KIND] == "query", "circle", "diamond")),
                customdata=np.stack([part[S.TEXT_ID], part[S.POSITION],
                                     (part[S.KIND] == "query").astype(int)], -1),
                text=_hover(part), hovertemplate="%{text}<extra></extra>"))
    if query is not None and weights is not None:
        _draw_row(fig, full, query, weights, min_weight)   # the query even if subsampled away
    fig.update_layout(title=title or f"Layer {layer}, head {head}: queries (circles) and keys "
                                     "(diamonds)", xaxis_title="projection axis 1",
                      yaxis_title="projection axis 2",
                      height=520)
    fig.update_yaxes(scaleanchor="x", scaleratio=1)
    return finish(fig)


def _check_query(one: pd.DataFrame, query, weights: pd.DataFrame | None) -> None:
    """`query` = (text_id, position) of a query point of this head; `weights` keys of its text."""
    if not (isinstance(query, (tuple, list)) and len(query) == 2):
        raise InputError(f"query={query!r}: pass (text_id, position) of a query in the atlas")
    text_id, position = query
    here = one[(one[S.TEXT_ID] == text_id) & (one[S.KIND] == "query")]
    if here.empty or not (here[S.POSITION] == position).any():
        texts = sorted(one[S.TEXT_ID].unique().tolist())
        where = (f"text {text_id} has positions 0..{int(here[S.POSITION].max())}" if len(here)
                 else f"the atlas holds text_id {texts[0]}..{texts[-1]}")
        raise InputError(f"query={tuple(query)!r} (text_id, position) is not in this atlas: "
                         f"{where}; pick a query point of the atlas")
    if weights is not None:
        _require(weights, [S.KEY, S.WEIGHT], "head_detail's weights")
        keys = set(one.loc[(one[S.TEXT_ID] == text_id) & (one[S.KIND] == "key"), S.POSITION])
        if not set(weights[S.KEY]) & keys:
            raise InputError(f"weights has no key of text {text_id}: pass that query's attention "
                             "row (wb.attention on the same text, filtered to the query)")


def _draw_row(fig: go.Figure, one: pd.DataFrame, query, weights: pd.DataFrame,
              min_weight: float) -> None:
    """Lines from the query point to the keys of its text, width and opacity by weight."""
    text_id, position = query
    here = one[one[S.TEXT_ID] == text_id]
    q = here[(here[S.KIND] == "query") & (here[S.POSITION] == position)]
    keys = here[here[S.KIND] == "key"].set_index(S.POSITION)
    if q.empty:
        raise InputError(f"query {query} is not in this atlas (text_id, position)")
    qx, qy = float(q[S.X].iloc[0]), float(q[S.Y].iloc[0])
    row = weights.set_index(S.KEY)[S.WEIGHT]
    for key, w in row[row >= min_weight].sort_values().items():
        if key not in keys.index:
            continue
        fig.add_trace(go.Scatter(
            x=[qx, keys.loc[key, S.X]], y=[qy, keys.loc[key, S.Y]], mode="lines",
            line=dict(color="#D55E00", width=1 + 6 * float(w)), opacity=min(1.0, 0.2 + float(w)),
            showlegend=False, hoverinfo="skip"))
    top = keys.reindex(row.index).dropna(subset=[S.X])
    fig.add_trace(go.Scatter(
        x=top[S.X], y=top[S.Y], mode="markers", name="attention of the query",
        marker=dict(size=4 + 30 * row.reindex(top.index).to_numpy(), color="rgba(213,94,0,0.35)",
                    line=dict(color="#D55E00", width=1)),
        text=[f"{plot_text(t)}: {w:.2f}" for t, w in zip(top[S.TOKEN], row.reindex(top.index))],
        hovertemplate="%{text}<extra></extra>"))
    fig.add_trace(go.Scatter(x=[qx], y=[qy], mode="markers+text", name="selected query",
                             text=[plot_text(q[S.TOKEN].iloc[0])], textposition="top center",
                             marker=dict(size=12, color="#000", symbol="star")))
