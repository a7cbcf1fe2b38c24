"""One page for a model diff (`wb.compare_models`): where did the second model change?

`diff_overview(diff)` takes the `ModelDiff` (or any object with its `heads`, `layers`,
`predictions` and `pll` frames) and draws four panels sharing the layer axis, so a change
concentrated in the last layers (Kovaleva et al. 2019, fine-tuning) reads at a glance:
(a) attention change per layer: mean Jensen-Shannon distance with every head as a dot;
(b) representation similarity of the same layer in both models (linear CKA, 1 = unchanged);
(c) the layer x head heatmap of JS distance; (d) mean |head-importance change| and the number of
heads whose role changed. Top-1 agreement and PLL change go in the title. Layer 3: no torch.

Every pair `compare_models` accepts draws right: two masked LMs fill every panel; with a
classifier (no MLM head) importance is skipped, so panel (d) draws the role changes on its own
axis, and a panel with nothing computed says why (the reason from `diff.skipped`) instead of
being an empty frame. A second y axis is made only when (d) holds both series: an overlaying axis
with nothing under it is what once drew the role line across two panels.
"""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .. import schema as S
from ..errors import InputError
from ..figures import CATEGORICAL, SEQUENTIAL
from ._intervals import error_bars, interval_note
from .labels import finish, plot_text
from .layout import set_aspect

PANELS = ("(a) attention change (JS distance)", "(b) same-layer CKA (1 = unchanged)",
          "(c) JS distance per head", "(d) importance and role changes")


def _title(diff) -> str:
    parts = [f"{diff.model_a} → {diff.model_b}"]
    if getattr(diff, "predictions", None) is not None:
        parts.append(f"top-1 agreement {diff.predictions[S.AGREE].mean():.2f}")
    if getattr(diff, "pll", None) is not None:
        parts.append(f"mean PLL change {diff.pll[S.LOGPROB_CHANGE].mean():+.2f} nats")
    seeds = getattr(diff, "seeds", None)
    if seeds is not None and len(seeds):
        n = int(seeds[S.N_SEEDS].iloc[0])
        js = seeds[seeds[S.METRIC] == S.JS_DISTANCE]
        parts.append(f"means over {n} runs; {int(js[S.EXCEEDS_SEEDS].sum())} of {len(js)} heads' "
                     "JS exceeds 2 x seed SD")
    bounds = getattr(diff, "layer_intervals", None)
    return plot_text(" · ".join(parts)) + (interval_note(bounds) if bounds is not None else "")


def _layer_bounds(layers, bounds, metric: str):
    """`diff.layer_intervals`' rows of `metric`, aligned with `layers` (None without them)."""
    if bounds is None or metric not in layers:
        return None
    rows = bounds[bounds[S.METRIC] == metric].set_index(S.LAYER)
    return rows.reindex(layers[S.LAYER].to_numpy()).reset_index()


def _not_computed(fig: go.Figure, row: int, col: int, why: str) -> None:
    """Say in an empty panel why it is empty (word-wrapped: annotations do not wrap)."""
    words, lines = f"not computed: {why}".split(), [""]
    for w in words:
        lines[-1:] = [f"{lines[-1]} {w}".strip()] if len(lines[-1]) + len(w) < 34 else [lines[-1], w]
    fig.add_annotation(text="<br>".join(plot_text(s) for s in lines), showarrow=False,
                       x=0.5, y=0.5, xref="x domain", yref="y domain", row=row, col=col,
                       font=dict(size=9, color="#666"))
    fig.update_xaxes(showticklabels=False, showline=False, ticks="", showgrid=False,
                     row=row, col=col)
    fig.update_yaxes(showticklabels=False, showline=False, ticks="", showgrid=False,
                     row=row, col=col)


def _cka_panel(fig: go.Figure, layers, skipped: dict, cka_ci=None) -> None:
    if S.CKA not in layers or layers[S.CKA].isna().all():
        _not_computed(fig, 1, 2, skipped.get("cka", "pass cka=True to wb.compare_models"))
        return
    fig.add_trace(go.Scatter(x=layers[S.LAYER], y=layers[S.CKA], mode="lines+markers",
                             name="CKA", marker_color=CATEGORICAL[2],
                             error_y=error_bars(cka_ci, S.VALUE)), row=1, col=2)
    lo = float(layers[S.CKA].min())
    # room below the lowest value (CKA near 1 would otherwise sit on the top edge of [0, 1])
    fig.update_yaxes(range=[max(min(lo - 0.1 * (1.0 - lo), 0.99), -1.0) - 0.01, 1.01],
                     row=1, col=2)


def _change_panel(fig: go.Figure, layers, skipped: dict) -> None:
    """(d): |importance change| bars and/or the role-change line; a second y axis only for both."""
    imp, roles = S.IMPORTANCE_CHANGE in layers, S.ROLE_CHANGED in layers
    if imp:
        fig.add_trace(go.Bar(x=layers[S.LAYER], y=layers[S.IMPORTANCE_CHANGE],
                             name="mean |importance change|", marker_color=CATEGORICAL[1]),
                      row=2, col=2)
        fig.update_yaxes(rangemode="tozero", row=2, col=2)   # named by the legend
    if roles:
        fig.add_trace(go.Scatter(x=layers[S.LAYER], y=layers[S.ROLE_CHANGED], mode="lines+markers",
                                 name="heads with a new role", marker_color=CATEGORICAL[3]),
                      row=2, col=2, secondary_y=imp)
        fig.update_yaxes(rangemode="tozero", dtick=1, showgrid=not imp, row=2, col=2,
                         secondary_y=imp)
    if not (imp or roles):
        _not_computed(fig, 2, 2, skipped.get("importance", "pass importance=True or roles=True "
                                                           "to wb.compare_models"))


def diff_overview(diff, *, title: str | None = None) -> go.Figure:
    """Four panels over layers: attention JS, CKA, per-head JS heatmap, importance/role changes."""
    heads, layers = getattr(diff, "heads", None), getattr(diff, "layers", None)
    if heads is None or layers is None or S.JS_DISTANCE not in heads:
        raise InputError("diff_overview takes the result of wb.compare_models")
    skipped = dict(getattr(diff, "skipped", None) or {})
    both = S.IMPORTANCE_CHANGE in layers and S.ROLE_CHANGED in layers
    fig = make_subplots(rows=2, cols=2, horizontal_spacing=0.24, vertical_spacing=0.24,
                        subplot_titles=PANELS,
                        specs=[[{}, {}], [{}, {"secondary_y": both}]])
    bounds = getattr(diff, "layer_intervals", None)
    js_ci, cka_ci = (_layer_bounds(layers, bounds, m) for m in (S.JS_DISTANCE, S.CKA))
    fig.add_trace(go.Bar(x=layers[S.LAYER], y=layers[S.JS_DISTANCE], name="mean over heads",
                         marker_color=CATEGORICAL[0], opacity=0.6,
                         error_y=error_bars(js_ci, S.VALUE)), row=1, col=1)
    fig.add_trace(go.Scatter(x=heads[S.LAYER], y=heads[S.JS_DISTANCE], mode="markers",
                             name="one head", marker=dict(color="#333", size=4),
                             text=[f"L{a} H{b}" for a, b in zip(heads[S.LAYER], heads[S.HEAD])],
                             hovertemplate="%{text}: %{y:.3f}<extra></extra>"), row=1, col=1)
    _cka_panel(fig, layers, skipped, cka_ci)
    grid = heads.pivot_table(index=S.LAYER, columns=S.HEAD, values=S.JS_DISTANCE)
    fig.add_trace(go.Heatmap(z=grid.values, x=list(grid.columns), y=list(grid.index),
                             colorscale=SEQUENTIAL, showlegend=False,
                             colorbar=dict(len=0.38, y=0.19, x=0.39, thickness=10),
                             hovertemplate="layer %{y}, head %{x}: %{z:.3f}<extra></extra>"),
                  row=2, col=1)
    _change_panel(fig, layers, skipped)
    for r, c in ((1, 1), (1, 2), (2, 2)):
        fig.update_xaxes(title_text=S.LAYER, dtick=1, row=r, col=c)
    fig.update_xaxes(title_text=S.HEAD, dtick=1, row=2, col=1)
    fig.update_yaxes(title_text=S.LAYER, dtick=1, autorange="reversed", row=2, col=1)
    fig.update_layout(title=dict(text=title or _title(diff), y=0.98), height=680, width=900,
                      margin=dict(t=90), legend=dict(orientation="h", y=-0.12))
    set_aspect(fig, 0.76, narrow=1.35)   # a 2 x 2 page: taller in a column
    return finish(fig)
