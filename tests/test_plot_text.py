"""User text in plotly figures is escaped: plotly reads labels as HTML, so an unescaped `<s>`
strikes through the rest of a tick label and `</s>` or `<mask>` vanish (seen in the README
screenshot of the attention heatmap before this was fixed).

Every string in each figure's JSON is searched for tags that only user text could bring in; the
markup the figures use on purpose (`<br>`, `<extra>`) is allowed.
"""

from __future__ import annotations

import re

import pandas as pd

import workbench as wb
from workbench.plots.attention import attention_heatmap
from workbench.plots.labels import plot_text
from workbench.plots.probing import (candidate_bars, logit_lens_heatmap, probe_bars, show_token,
                                     topk_bars)
from workbench.plots.training import compare_runs, confusion_heatmap

ALLOWED = {"br", "extra"}
USER = "<u>odd</u>"  # a tag no figure uses on purpose


def _strings(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            yield from _strings(value)


def _raw_tags(fig) -> set[str]:
    tags = set()
    for s in _strings(fig.to_plotly_json()):
        tags |= {t.lower() for t in re.findall(r"</?([A-Za-z]+)", s)}
    return tags - ALLOWED


def test_plot_text_escapes_tags_but_keeps_the_text():
    assert plot_text("<s>") == "&lt;s&gt;" and plot_text("a & b") == "a &amp; b"
    assert show_token(" <mask>") == "&lt;mask&gt;" and show_token("<s>") == "&lt;s&gt;"


def test_figures_from_real_frames_carry_no_raw_tags(tiny_lm):
    att = wb.attention(tiny_lm, "the cat sat", layers=[0], heads=[0])
    fig = attention_heatmap(att)
    assert not _raw_tags(fig)
    assert "&lt;s&gt;" in fig.layout.yaxis.ticktext  # the special token is shown

    text = f"the {tiny_lm.mask_token} sat {USER}"
    assert not _raw_tags(topk_bars(wb.fill_mask(tiny_lm, text, top_k=3)))
    assert not _raw_tags(candidate_bars(wb.score_candidates(tiny_lm, text, ["cat", USER])))
    assert not _raw_tags(logit_lens_heatmap(wb.logit_lens(tiny_lm, text, top_k=3)))


def test_attention_heatmap_labels_fit_at_10_and_128_tokens():
    """Issue 17.5: long tokens are cut to TICK_CHARS with the full token in the hover, margins
    grow to fit the labels (automargin), at most MAX_TICKS labels per axis, title at the top left
    (away from the plotly toolbar at the top right)."""
    from workbench.plots.attention import MAX_TICKS, TICK_CHARS

    long = "extraordinarilylongtokenname"
    for n in (10, 128):
        tokens = [long if i % 3 == 0 else f"t{i}" for i in range(n)]
        rows = [{"text_id": 0, "layer": 0, "head": 0, "query": q, "key": k, "query_token": tokens[q],
                 "key_token": tokens[k], "weight": 1.0 / n} for q in range(n) for k in range(n)]
        fig = attention_heatmap(pd.DataFrame(rows))
        for axis in (fig.layout.xaxis, fig.layout.yaxis):
            assert axis.automargin and len(axis.ticktext) <= MAX_TICKS
            assert all(len(t) <= TICK_CHARS for t in axis.ticktext)
            assert len(axis.tickvals) == (n if n <= MAX_TICKS else -(-n // 2))
        assert long in fig.data[0].customdata[0][0] and fig.layout.title.xanchor == "left"


def test_figures_from_user_labels_carry_no_raw_tags():
    probes = pd.DataFrame({"model": [USER], "relation": [USER], "p_at_1": [0.5]})
    assert not _raw_tags(probe_bars(probes))
    matrix = pd.DataFrame([[3, 1], [0, 4]], index=[USER, "<s>"], columns=[USER, "<s>"])
    assert not _raw_tags(confusion_heatmap(matrix))
    curves = {USER: pd.DataFrame({"step": [1, 2], "kind": "eval", "eval_loss": [1.0, 0.5]})}
    assert not _raw_tags(compare_runs(curves))
