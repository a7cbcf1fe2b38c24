"""The head atlas: a layers x heads grid coloured by each head's role (`wb.head_roles`).

Each cell is coloured by the role's family (previous token, next token, self, fixed offset, <s>,
</s>, punctuation, dependency, broad, mixed) and labelled with a short name and its score; hover
adds the runner-up and Kovaleva et al.'s pattern class, and (from `head_roles`' bootstrap) the
margin, support and stability; heads whose role holds in < 90% of resamples get a dotted outline
and the title says on how many texts and resamples. Layer 3: no torch.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .. import schema as S
from ..errors import InputError
from ..figures import CATEGORICAL
from .labels import finish, plot_text
from .layout import set_aspect

# role family -> (colour, short cell label); families follow analysis.head_roles.ROLES
FAMILIES = {
    "previous token": (CATEGORICAL[0], "prev"), "next token": (CATEGORICAL[4], "next"),
    "self": (CATEGORICAL[2], "self"), "offset": (CATEGORICAL[6], "off"),
    "<s>": (CATEGORICAL[1], "<s>"), "</s>": (CATEGORICAL[5], "</s>"),
    "punctuation": (CATEGORICAL[3], "punct"), "dep": ("#66A61E", "dep"),
    "broad": ("#BBBBBB", "broad"), "mixed": ("#F2F2F2", "mixed"),
}


def _family(role: str) -> str:
    if role.startswith("offset "):
        return "offset"
    return "dep" if role.startswith("dep:") else role


def _short(role: str) -> str:
    fam = _family(role)
    if fam == "offset":
        return role.split(" ", 1)[1]
    if fam == "dep":
        return role.split(":", 1)[1].strip()
    return FAMILIES.get(fam, ("", role))[1]


def role_grid(df: pd.DataFrame, *, title: str | None = None, show_scores: bool = True
              ) -> go.Figure:
    """Layers x heads, each cell coloured by role family, labelled with role and score."""
    missing = [c for c in (S.LAYER, S.HEAD, S.ROLE, S.SCORE) if c not in df.columns]
    if missing:
        raise InputError(f"role_grid needs columns {missing}: pass the frame wb.head_roles returned")
    fams = [f for f in FAMILIES if f in set(map(_family, df[S.ROLE]))]
    code = {f: i for i, f in enumerate(fams)}
    grid = df.pivot_table(index=S.LAYER, columns=S.HEAD, values=S.ROLE, aggfunc="first")
    z = np.vectorize(lambda r: code[_family(r)] if isinstance(r, str) else np.nan,
                     otypes=[float])(grid.values)
    cells = df.set_index([S.LAYER, S.HEAD])

    def text(la, h, hover):
        r = cells.loc[(la, h)]
        score = "" if pd.isna(r[S.SCORE]) else f" {r[S.SCORE]:.2f}"
        if not hover:
            return plot_text(_short(r[S.ROLE])) + (f"<br>{score.strip()}" if show_scores else "")
        runner = r.get(S.RUNNER_UP)
        extra = f"<br>runner-up: {plot_text(runner)} {r.get(S.RUNNER_UP_SCORE, np.nan):.2f}" \
            if isinstance(runner, str) else ""
        pattern = f"<br>pattern: {r[S.PATTERN]}" if S.PATTERN in r else ""
        return (f"layer {la}, head {h}<br>{plot_text(r[S.ROLE])}{score}{extra}{pattern}"
                + _sureness(r))

    labels = [[text(la, h, False) for h in grid.columns] for la in grid.index]
    hovers = [[text(la, h, True) for h in grid.columns] for la in grid.index]
    n = max(len(fams), 1)
    scale = [[v, FAMILIES[f][0]] for i, f in enumerate(fams)
             for v in (i / n, (i + 1) / n)] or [[0, "#fff"], [1, "#fff"]]
    fig = go.Figure(go.Heatmap(z=z, x=list(grid.columns), y=list(grid.index), zmin=0, zmax=n,
                               colorscale=scale, showscale=False, text=labels,
                               texttemplate="%{text}", textfont=dict(size=9), hovertext=hovers,
                               hovertemplate="%{hovertext}<extra></extra>", xgap=2, ygap=2))
    for f in fams:
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=plot_text(f),
                                 marker=dict(symbol="square", size=10, color=FAMILIES[f][0],
                                             line=dict(color="#888", width=0.5))))
    model = df[S.MODEL].iloc[0] if S.MODEL in df.columns and len(df) else ""
    note = _mark_unstable(fig, df)
    fig.update_layout(title=title or plot_text(f"Head roles of {model}{note}"),
                      xaxis=dict(title=S.HEAD, dtick=1, showgrid=False),
                      yaxis=dict(title=S.LAYER, dtick=1, autorange="reversed", showgrid=False),
                      height=140 + 40 * len(grid.index), width=160 + 62 * len(grid.columns),
                      legend=dict(orientation="v", x=1.02, y=1))
    # on paper: cells near square, with room for the title, the legend and the head axis
    set_aspect(fig, min(1.4, (len(grid.index) + 4.0) / (len(grid.columns) + 1.5)),
               narrow=min(1.4, (len(grid.index) + 7.0) / (len(grid.columns) + 1.5)))
    return finish(fig)


def _sureness(r) -> str:
    """Hover lines on how sure a role is (the columns of `head_roles`, when present)."""
    out = ""
    if S.MARGIN in r and not pd.isna(r[S.MARGIN]):
        out += f"<br>margin to runner-up: {r[S.MARGIN]:.2f}"
    if S.SUPPORT in r:
        out += f"<br>support: {int(r[S.SUPPORT])} tokens/arcs, {int(r.get(S.N_TEXTS, 0))} texts"
    if S.STABLE_FRACTION in r:
        out += (f"<br>same role in {r[S.STABLE_FRACTION]:.0%} of {int(r[S.N_BOOT])} resamples")
        if not pd.isna(r.get(S.CI_LOW, np.nan)):
            out += f"<br>{r[S.LEVEL]:.0%} interval [{r[S.CI_LOW]:.2f}, {r[S.CI_HIGH]:.2f}]"
    return out


def _mark_unstable(fig: go.Figure, df: pd.DataFrame) -> str:
    """Outline (dotted) every cell whose role holds in < 90% of bootstrap resamples; returns the
    title's note on the data and the bootstrap (empty without a `stable` column)."""
    if S.STABLE not in df.columns:
        n = df[S.N_TEXTS].iloc[0] if S.N_TEXTS in df.columns and len(df) else None
        return f" ({n} texts)" if n is not None else ""
    shaky = df[~df[S.STABLE].astype(bool)]
    for la, h in zip(shaky[S.LAYER], shaky[S.HEAD]):
        fig.add_shape(type="rect", x0=h - 0.42, x1=h + 0.42, y0=la - 0.42, y1=la + 0.42,
                      line=dict(color="#111", width=1.5, dash="dot"), layer="above")
    if len(shaky):
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name="unstable (dotted)",
                                 marker=dict(symbol="square-open", size=10, color="#111")))
    first = df.iloc[0]
    return (f": {int(first[S.N_TEXTS])} texts; dotted = role held in < 90% of "
            f"{int(first[S.N_BOOT])} bootstrap resamples ({len(shaky)} of {len(df)} heads)")
