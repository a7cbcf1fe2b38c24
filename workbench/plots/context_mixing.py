"""Context-mixing matrices of several methods side by side (`wb.context_mixing`, `wb.attention`).

`mixing_panels(df)` takes one frame with a `method` column holding one (query, key) matrix per
method (e.g. the rollout of each, or one layer) and draws one heatmap per method on a shared
colour scale of row shares. The caller says in `title` which layer or aggregate each panel is.
Layer 3: no torch, nothing computed beyond reshaping.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .. import schema as S
from ..errors import InputError
from ..figures import CATEGORICAL, SEQUENTIAL
from .labels import finish, plot_text, short_label


def mixing_panels(df: pd.DataFrame, *, columns: int = 3, title: str | None = None,
                  zmax: float | None = None) -> go.Figure:
    """One heatmap (query rows, key columns) per `method`, in the frame's order of methods."""
    for col in (S.METHOD, S.QUERY, S.KEY, S.WEIGHT, S.QUERY_TOKEN, S.KEY_TOKEN):
        if col not in df:
            raise InputError(f"the frame has no {col!r} column: concatenate frames of "
                             "wb.context_mixing / wb.attention with a 'method' column")
    methods = list(dict.fromkeys(df[S.METHOD]))
    rows = -(-len(methods) // columns)
    fig = make_subplots(rows=rows, cols=columns, subplot_titles=[plot_text(m) for m in methods],
                        horizontal_spacing=0.06, vertical_spacing=0.12)
    top = float(df[S.WEIGHT].max()) if zmax is None else zmax
    for i, method in enumerate(methods):
        sub = df[df[S.METHOD] == method]
        if sub[[S.QUERY, S.KEY]].duplicated().any():
            raise InputError(f"method {method!r} has several matrices: keep one layer and text")
        grid = sub.pivot_table(index=S.QUERY, columns=S.KEY, values=S.WEIGHT, aggfunc="first")
        labels = sub.drop_duplicates(S.KEY).set_index(S.KEY)[S.KEY_TOKEN].astype(str)
        # numeric axes: a repeated token ("the" twice) keeps its own row and column
        keys = [short_label(labels[k]) for k in grid.columns]
        queries = [short_label(labels.get(q, str(q))) for q in grid.index]
        r, c = i // columns + 1, i % columns + 1
        fig.add_trace(go.Heatmap(
            z=grid.to_numpy(dtype=float), x=list(range(len(keys))),
            y=list(range(len(queries))), zmin=0, zmax=top, colorscale=SEQUENTIAL,
            showscale=(i == 0), colorbar=dict(title=dict(text="share", side="right"),
                                              thickness=10),
            hovertemplate="query %{y} · key %{x}<br>%{z:.3f}<extra>" + plot_text(method)
            + "</extra>"), row=r, col=c)
        fig.update_yaxes(autorange="reversed", tickmode="array", tickvals=list(range(len(queries))),
                         ticktext=queries, row=r, col=c)
        fig.update_xaxes(tickangle=-60, tickmode="array", tickvals=list(range(len(keys))),
                         ticktext=keys, row=r, col=c)
    fig.update_layout(title=title or "Context mixing by method", height=330 * rows)
    return finish(fig)


__all__ = ["mixing_panels", "agreement_bars"]


def agreement_bars(df: pd.DataFrame, *, n_texts: int | None = None,
                   title: str | None = None) -> go.Figure:
    """Mean Spearman rho per method (bars, one colour per reference) with its bootstrap interval,
    from `wb.mixing_agreement`'s summary frame."""
    for col in (S.METHOD, S.TARGET, S.SCORE, S.CI_LOW, S.CI_HIGH):
        if col not in df:
            raise InputError(f"the frame has no {col!r} column: pass wb.mixing_agreement's frame")
    fig = go.Figure()
    for i, (ref, part) in enumerate(df.groupby(S.TARGET, sort=False)):
        fig.add_trace(go.Bar(
            x=part[S.METHOD], y=part[S.SCORE], name=plot_text(ref),
            marker_color=CATEGORICAL[i % len(CATEGORICAL)],
            error_y=dict(type="data", symmetric=False, array=part[S.CI_HIGH] - part[S.SCORE],
                         arrayminus=part[S.SCORE] - part[S.CI_LOW]),
            hovertemplate="%{x}: mean rho %{y:.3f}<extra>" + plot_text(ref) + "</extra>"))
    data = f" on {n_texts} texts" if n_texts else ""
    fig.update_layout(barmode="group", title=title or "Agreement with attributions of the "
                      f"classifier's prediction (Spearman, mean over texts, 95% bootstrap){data}",
                      xaxis=dict(title=S.METHOD), yaxis=dict(title="Spearman rho"),
                      legend=dict(title=dict(text="attribution")))
    return finish(fig)
