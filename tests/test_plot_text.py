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
    from workbench.plots.attention import MAX_TICKS
    from workbench.plots.labels import TICK_CHARS

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


# ------------------------------------------------------------------ issue 17.5, every family
LONG = "antidisestablishmentarianism-and-more"   # longer than any label limit
LONG_MODEL = "/home/someone/checkpoints/a-very-long-run-name-of-a-model/best"
SENTENCE = "the cat sat on the mat and " * 4 + LONG


def _frames():
    """The training curves (no user text) and (family, figure) pairs built from frames whose
    labels are longer than the limits."""
    from workbench.plots import heads, probing, representations, training

    tokens = [LONG, "b", "<s>"]
    att = pd.DataFrame([{"text_id": 0, "layer": 0, "head": 0, "query": q, "key": k,
                         "query_token": tokens[q], "key_token": tokens[k], "weight": 1 / 3}
                        for q in range(3) for k in range(3)])
    stats = pd.DataFrame([{"model": m, "layer": la, "head": h, "attn_bos": 0.1 * h}
                          for m in (LONG_MODEL, "b") for la in range(2) for h in range(2)])
    syntax = pd.DataFrame({"relation": [LONG, "nsubj"], "accuracy": [0.5, 0.6],
                           "baseline": [0.2, 0.3], "layer": [0, 1], "head": [1, 0],
                           "offset": [1, -1]})
    fill = pd.DataFrame({"model": LONG_MODEL, "text_id": 0, "text": SENTENCE, "mask_index": 0,
                         "rank": [1, 2], "token": [" " + LONG, "b"], "prob": [0.6, 0.1]})
    cands = pd.DataFrame({"model": LONG_MODEL, "text": SENTENCE, "candidate": [LONG, "b"],
                          "n_tokens": [9, 1], "logprob": [-3.0, -1.0], "method": "chain"})
    lens = pd.DataFrame({"model": LONG_MODEL, "text_id": 0, "text": SENTENCE, "mask_index": 0,
                         "kind": "top", "layer": [0, 0, 1, 1], "rank": [1, 2, 1, 2],
                         "token": [" " + LONG, "b", "c", " " + LONG], "prob": [.5, .2, .6, .1]})
    probes = pd.DataFrame({"model": LONG_MODEL, "relation": [LONG, "P19"], "p_at_1": [.3, .4]})
    runs = {LONG_MODEL: pd.DataFrame({"step": [1, 2], "kind": "eval", "eval_loss": [1., .5]})}
    matrix = pd.DataFrame([[3, 1], [0, 4]], index=[LONG, "b"], columns=[LONG, "b"])
    cka = pd.DataFrame({"model_a": LONG_MODEL, "model_b": "b", "layer_a": [0, 0, 1, 1],
                        "layer_b": [0, 1, 0, 1], "value": [1, .5, .5, 1]})
    attr = pd.DataFrame({"method": "ig", "position": [0, 1], "token": [LONG, "b"],
                         "score": [0.5, -0.2], "target": LONG, "delta": 0.01})
    curves = training.training_curves(runs[LONG_MODEL], title="fine-tuning: run-1")
    probe = pd.DataFrame({"model": [LONG_MODEL] * 2 + ["b"] * 2, "layer": [0, 1, 0, 1],
                          "metric": "accuracy", "value": [.6, .8, .5, .5]})
    return curves, [
        ("attention", attention_heatmap(att)),
        ("heads", heads.head_heatmap(stats)),
        ("heads", heads.syntax_bars(syntax)),
        ("probing", probing.topk_bars(fill)),
        ("probing", probing.candidate_bars(cands)),
        ("probing", probing.logit_lens_heatmap(lens)),
        ("probing", probing.probe_bars(probes)),
        ("training", training.compare_runs(runs)),
        ("training", training.confusion_heatmap(matrix)),
        ("training", curves),
        ("representations", representations.cka_heatmap(cka)),
        ("representations", representations.attribution_strip(attr)),
        ("representations", representations.probe_curve(probe)),
    ]


def _axes(fig):
    layout = fig.layout
    return [layout[name] for name in layout if name.startswith(("xaxis", "yaxis"))]


def test_every_figure_family_keeps_its_text_readable():
    """Issue 17.5 for every plot family: the paper theme, automargin on every axis (labels push
    the margin out instead of being clipped), the title at the top left clear of the plotly
    toolbar and at most TITLE_CHARS long, tick labels, legend entries and subplot titles cut
    (with '…') while the hover keeps the whole text."""
    from workbench.figures import FONT
    from workbench.plots.labels import NAME_CHARS, TITLE_CHARS

    families = set()
    curves, frames = _frames()
    for family, fig in frames:
        families.add(family)
        where = f"{family}: {fig.layout.title.text!r}"
        assert fig.layout.template.layout.font.family == FONT, where  # the paper theme
        assert all(axis.automargin for axis in _axes(fig)), where
        if fig.layout.title.text:
            assert fig.layout.title.xanchor == "left" and fig.layout.title.x <= 0.02, where
            assert len(fig.layout.title.text) <= TITLE_CHARS, where
        ticks = [t for axis in _axes(fig) for t in (axis.ticktext or ())]
        assert all(len(t) <= 20 for t in ticks), (where, ticks)
        names = [t.name for t in fig.data if t.name] + [a.text for a in fig.layout.annotations]
        assert all(len(n) <= NAME_CHARS + 20 for n in names), (where, names)
        shown = ticks + names + [str(fig.layout.title.text)] + [
            str(axis.title.text) for axis in _axes(fig)]
        hover = str([t.to_plotly_json() for t in fig.data])  # x, y, text, customdata, template
        assert not any(LONG in t or LONG_MODEL in t for t in shown), (where, shown)
        if fig is curves:
            continue  # metric names only: no user text to cut
        assert any("…" in t for t in shown), f"{where}: no label was cut"
        assert LONG in hover or LONG_MODEL in hover, f"{where}: the hover lost the whole text"
    assert families == {"attention", "heads", "probing", "training", "representations"}


def test_names_are_cut_in_the_middle_so_runs_stay_apart():
    from workbench.plots.labels import NAME_CHARS, short_name

    a, b = "20261201-012403-finetune-098d5f (098d5f)", "20261201-012403-finetune-098d5f (7c1e2a)"
    assert short_name(a) != short_name(b) and len(short_name(a)) == NAME_CHARS
    assert short_name(a).startswith("2026") and short_name(b).endswith("(7c1e2a)")
    assert short_name("<s> run") == "&lt;s&gt; run"
