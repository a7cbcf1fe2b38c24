"""Figures for masked-token probing, each drawn from the DataFrame of one analysis.

- `topk_bars(fill_mask_frame)`: horizontal bars of the top-k fillers, one panel per (mask, model);
- `candidate_bars(score_candidates_frame)`: candidates' scores side by side per model;
- `logit_lens_heatmap(logit_lens_frame)`: layer x rank, coloured by probability, tokens written in;
- `margin_histogram(compare_pairs_frame)`: distribution of good-minus-bad PLL margins per model;
- `probe_bars(probe_frame)`: P@1 / P@k / MRR per relation and model.

Tokens follow the package's one display convention (`tokens.display_vocab_token`): ' Paris' (a
word start) shows as `Paris` and 'Paris' (a piece that attaches to the word before) as `·Paris`,
because in RoBERTa's BPE they are different tokens and the difference is the point. Layer 3.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..errors import InputError
from ..figures import CATEGORICAL, SEQUENTIAL
from ..tokens import display_vocab_token
from .labels import NAME_CHARS, TITLE_CHARS, finish, plot_text, short_label, short_name, short_ticks


def readable_token(token: str) -> str:
    """A vocabulary token as the figures show it (`display_vocab_token`), control characters
    escaped (`\\x0b`), '∅' for the empty token; not yet escaped for plotly."""
    token = display_vocab_token(str(token)) if str(token) else ""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in token) or "∅"


def show_token(token: str) -> str:
    """`readable_token`, escaped for plotly (which would read `<s>` as a tag)."""
    return plot_text(readable_token(token))


def _need(df: pd.DataFrame, cols: set[str], what: str) -> None:
    missing = cols - set(df.columns)
    if df.empty or missing:
        raise InputError(f"{what} needs a non-empty frame with columns {sorted(cols)}; "
                         f"missing {sorted(missing)}" if missing else f"{what} got an empty frame")


def _models(df: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(df["model"])) if "model" in df else [""]


def topk_bars(df: pd.DataFrame, *, text_id: int | None = None, max_masks: int = 4) -> go.Figure:
    """Top-k fillers of each mask (rows of panels) for each model (columns), from `wb.fill_mask`."""
    _need(df, {"text_id", "mask_index", "rank", "token", "prob"}, "topk_bars")
    text_id = df["text_id"].iloc[0] if text_id is None else text_id
    sub = df[df["text_id"] == text_id]
    masks = sorted(sub["mask_index"].unique())[:max_masks]
    models = _models(sub)
    fig = make_subplots(rows=len(masks), cols=len(models), shared_xaxes=True,
                        horizontal_spacing=0.12, vertical_spacing=0.08,
                        subplot_titles=[short_name(f"{m} · mask {k}") if m else f"mask {k}"
                                        for k in masks for m in models])
    for r, k in enumerate(masks, start=1):
        for c, m in enumerate(models, start=1):
            part = sub[(sub["mask_index"] == k) & ((sub["model"] == m) if m else True)]
            part = part.sort_values("rank", ascending=False)  # best at the top
            labels = [f"{r}. {readable_token(t)}" for r, t in zip(part["rank"], part["token"])]
            fig.add_trace(go.Bar(
                x=part["prob"], orientation="h", y=[plot_text(v) for v in labels],
                marker_color=CATEGORICAL[(c - 1) % len(CATEGORICAL)], showlegend=False,
                hovertemplate="%{y}: p=%{x:.4f}<extra></extra>"), row=r, col=c)
            fig.update_yaxes(row=r, col=c, **short_ticks(labels, limit=16))
    fig.update_xaxes(title_text="probability", row=len(masks))
    fig.update_layout(title=short_label(sub["text"].iloc[0], TITLE_CHARS) if "text" in sub
                      else None,
                      height=max(250, 40 + 28 * len(masks) * sub["rank"].max()), bargap=0.25,
                      margin=dict(t=70))
    return finish(fig)


def candidate_bars(df: pd.DataFrame, *, value: str = "logprob") -> go.Figure:
    """Candidates' scores (log-prob, higher is better) grouped by model, from `wb.score_candidates`."""
    _need(df, {"candidate", value}, "candidate_bars")
    fig, labels = go.Figure(), []
    for i, m in enumerate(_models(df)):
        part = df[df["model"] == m] if m else df
        label = part["candidate"].astype(str) + (" (" + part["n_tokens"].astype(str) + " tok)"
                                                 if "n_tokens" in part else "")
        fig.add_trace(go.Bar(x=label.map(plot_text), y=part[value],
                             name=short_name(m) if m else value,
                             marker_color=CATEGORICAL[i % len(CATEGORICAL)],
                             hovertemplate="%{x}: %{y:.4g}<extra>%{fullData.name}</extra>"))
        labels += list(label)
    method = df["method"].iloc[0] if "method" in df else ""
    fig.update_layout(barmode="group", yaxis_title=f"{value} ({method})".replace(" ()", ""),
                      xaxis=dict(title="candidate", **short_ticks(labels, limit=20)),
                      title=short_label(df["text"].iloc[0], TITLE_CHARS) if "text" in df else None)
    return finish(fig)


def logit_lens_heatmap(df: pd.DataFrame, *, model: str | None = None, text_id: int = 0,
                       mask_index: int = 0) -> go.Figure:
    """Layer (x) by rank (y) heatmap of one mask's top-k per layer, from `wb.logit_lens`."""
    _need(df, {"layer", "rank", "token", "prob", "kind"}, "logit_lens_heatmap")
    model = _models(df)[0] if model is None else model
    sub = df[(df["kind"] == "top") & (df["text_id"] == text_id) & (df["mask_index"] == mask_index)]
    if "model" in sub:
        sub = sub[sub["model"] == model]
    if sub.empty:
        raise InputError(f"no logit-lens rows for model={model!r}, text_id={text_id}, "
                         f"mask_index={mask_index}")
    z = sub.pivot(index="rank", columns="layer", values="prob")
    tokens = sub.pivot(index="rank", columns="layer", values="token")
    fig = go.Figure(go.Heatmap(
        z=z.values, x=[str(c) for c in z.columns], y=[str(r) for r in z.index],
        text=tokens.map(lambda t: short_label(readable_token(t), 10)).values,
        customdata=tokens.map(show_token).values, texttemplate="%{text}", colorscale=SEQUENTIAL,
        colorbar=dict(title="prob"), hovertemplate="layer %{x}, rank %{y}: %{customdata} "
                                                   "p=%{z:.4f}<extra></extra>"))
    fig.update_yaxes(autorange="reversed", title_text="rank")
    fig.update_xaxes(title_text="layer (0 = embeddings)", type="category")
    title = short_name(model)
    if "text" in sub:
        title += ": " + short_label(sub["text"].iloc[0], TITLE_CHARS - NAME_CHARS - 2)
    fig.update_layout(title=title)
    return finish(fig)


def margin_histogram(df: pd.DataFrame, *, bins: int = 30) -> go.Figure:
    """Histogram of pair margins (good - bad PLL) per model, from `wb.compare_pairs`."""
    _need(df, {"margin", "correct"}, "margin_histogram")
    fig = go.Figure()
    for i, m in enumerate(_models(df)):
        part = df[df["model"] == m] if m else df
        fig.add_trace(go.Histogram(x=part["margin"], nbinsx=bins, opacity=0.6,
                                   name=f"{short_name(m)} (acc "
                                        f"{part['correct'].mean():.2f})".strip(),
                                   marker_color=CATEGORICAL[i % len(CATEGORICAL)]))
    fig.add_vline(x=0, line_dash="dash", line_color="#444")
    fig.update_layout(barmode="overlay", xaxis_title="margin: PLL(good) − PLL(bad), nats",
                      yaxis_title="pairs")
    return finish(fig)


def probe_bars(df: pd.DataFrame, *, metric: str = "p_at_1") -> go.Figure:
    """One probe metric (p_at_1, p_at_k or mrr) per relation, grouped by model, from `wb.probe`."""
    _need(df, {"relation", metric}, "probe_bars")
    fig = go.Figure()
    for i, m in enumerate(_models(df)):
        part = df[df["model"] == m] if m else df
        fig.add_trace(go.Bar(x=part["relation"].map(plot_text), y=part[metric],
                             name=short_name(m) if m else metric,
                             marker_color=CATEGORICAL[i % len(CATEGORICAL)]))
    k = f" (k={df['k'].iloc[0]})" if metric == "p_at_k" and "k" in df else ""
    relations = df["relation"]
    fig.update_layout(barmode="group", yaxis_title=metric + k, yaxis_range=[0, 1],
                      xaxis=dict(title="relation", **short_ticks(relations, limit=20)))
    return finish(fig)
