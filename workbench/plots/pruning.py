"""The head-pruning curve (`wb.prune_heads_curve`): a metric against the share of heads removed.

One line per pruning order (iterative, once, random), in the paper theme; the title says the
model, the objective and how much data the curve was measured on. Layer 3: no torch.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from .. import schema as S
from ..errors import InputError
from ..figures import CATEGORICAL
from .labels import finish, plot_text

ORDER_NAMES = {"iterative": "importance, re-estimated each step", "once": "importance, once",
               "random": "random order"}


def pruning_curve(df: pd.DataFrame, *, value: str = S.ACCURACY, n_texts: int | None = None,
                  title: str | None = None) -> go.Figure:
    """`value` (accuracy or loss) against the fraction of heads pruned, one line per order."""
    for col in (S.ORDER, S.FRACTION, value):
        if col not in df:
            raise InputError(f"the frame has no {col!r} column: pass wb.prune_heads_curve's frame")
    fig = go.Figure()
    for i, (order, part) in enumerate(df.groupby(S.ORDER, sort=False)):
        part = part.sort_values(S.FRACTION)
        fig.add_trace(go.Scatter(
            x=part[S.FRACTION], y=part[value], mode="lines+markers", name=ORDER_NAMES.get(order, order),
            line=dict(color=CATEGORICAL[i % len(CATEGORICAL)]),
            hovertemplate="%{x:.0%} of heads pruned<br>" + value + " %{y:.3f}<extra></extra>"))
    objective = str(df[S.OBJECTIVE].iloc[0]) if S.OBJECTIVE in df else ""
    what = {"mlm": "masked-token ", "classifier": ""}.get(objective, "")
    model = plot_text(str(df[S.MODEL].iloc[0])) if S.MODEL in df else "model"
    data = f", {n_texts} texts" if n_texts else ""
    fig.update_layout(
        title=title or f"{model}: {what}{value} as heads pruned (Michel et al. 2019){data}",
        xaxis=dict(title="fraction of heads pruned", tickformat=".0%", range=[-0.02, 1.02]),
        yaxis=dict(title=f"{what}{value}"), legend=dict(title=dict(text="order")))
    return finish(fig)
