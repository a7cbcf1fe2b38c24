"""Probing figures and the MaskProbe widget, driven through their traits (no browser)."""

from __future__ import annotations

import pytest

import workbench as wb
from workbench import schema as S
from workbench.plots import probing as P


@pytest.fixture(scope="module")
def frames(tiny_lm):
    lms = {"a": tiny_lm, "b": tiny_lm}
    return {
        "fill": wb.fill_mask(lms, "The <mask> sat on the <mask>.", top_k=4),
        "cands": wb.score_candidates(lms, "I ate a <mask>.", ["pizza", "salad"], method="chain"),
        "lens": wb.logit_lens(tiny_lm, "The capital of France is <mask>.", top_k=3),
        "pairs": wb.compare_pairs(lms, ["The keys are here.", "A cat sleeps."],
                                  ["The keys is here.", "A cat sleep."]),
        "probe": wb.probe(lms, wb.load_probe_set(), mode="vocab"),
    }


def test_figures_follow_their_frames(frames, tiny_lm):
    fig = P.topk_bars(frames["fill"])
    assert len(fig.data) == 4  # 2 masks x 2 models
    assert list(fig.data[0].x) == list(frames["fill"].query("model == 'a' and mask_index == 0")
                                       .sort_values("rank", ascending=False).prob)
    fig = P.candidate_bars(frames["cands"])
    assert [t.name for t in fig.data] == ["a", "b"] and "(4 tok)" in fig.data[0].x[0]
    fig = P.logit_lens_heatmap(frames["lens"])
    assert fig.data[0].z.shape == (3, tiny_lm.num_layers + 1)
    top = frames["lens"].query("kind == 'top' and layer == 0 and rank == 1").prob.item()
    assert fig.data[0].z[0][0] == pytest.approx(top)
    fig = P.margin_histogram(frames["pairs"])
    assert len(fig.data) == 2 and "acc" in fig.data[0].name
    fig = P.probe_bars(frames["probe"], metric="mrr")
    assert len(fig.data) == 2 and fig.layout.template.layout.font.family
    # one subword convention (tokens.display_token): a word start bare, a continuation with ·
    assert P.show_token(" Paris") == "Paris" and P.show_token("Paris") == "·Paris"
    assert P.show_token(" ") == "␣"
    with pytest.raises(wb.InputError):
        P.topk_bars(frames["fill"].iloc[0:0])


def test_mask_probe_updates_from_its_controls(tiny_lm, tmp_path):
    w = wb.widgets.MaskProbe({"a": tiny_lm, "b": tiny_lm}, "The cat sat on the <mask>.", top_k=3)
    assert w.candidate_box.children == ()
    assert len(w.topk_figure.data) == 2 and len(w.topk_figure.data[0].x) == 3
    w.top_k.value = 6
    assert len(w.topk_figure.data[0].x) == 6
    w.insert_mask()
    assert w.text.value.endswith("<mask>.") is False and w.text.value.endswith(" <mask>")
    assert len(w.topk_figure.data) == 4 and w.predictions.mask_index.nunique() == 2
    w.text.value = "The cat sat on the mat."
    # issue 17.2: the message where the user looks, and no chart left from the previous text
    assert "has no mask" in w.error.value and w.predictions is None
    assert len(w.topk_figure.data) == 0 and "no prediction" in w.topk_figure.layout.annotations[0].text
    cat = [i for label, i in w.word.options if label.startswith("cat")][0]
    w.word.value = cat
    w.mask_word()
    assert w.text.value == "The <mask> sat on the mat."
    # the note and the hidden axes of the placeholder are reset explicitly: a new layout reaches
    # the browser as a relayout of its own keys, so anything not reset would stay on screen
    shown = [n.text for n in w.topk_figure.layout.annotations if n.visible is not False]
    assert not any("no prediction" in t for t in shown) and w.topk_figure.layout.xaxis.visible
    w.candidates.value = "dog, pizza"
    assert list(w.scores.candidate.unique()) == ["dog", "pizza"]
    assert w.candidate_box.children == (w.candidate_figure,) and len(w.candidate_figure.data) == 2
    paths = w.export(tmp_path / "probe.html")
    assert [p.name for p in paths] == ["probe.html", "probe_candidates.html"]
    assert all(p.stat().st_size > 1000 for p in paths)
    w.candidates.value = "New|York"  # no longer fits the text: every output is cleared
    assert "does not fit" in w.error.value and w.candidate_box.children == ()
    assert len(w.topk_figure.data) == 0 and w.scores is None
    with pytest.raises(wb.InputError, match="nothing to export"):
        w.export(tmp_path / "stale.html")
    w.candidates.value = "dog"
    assert w.error.value == "" and len(w.topk_figure.data) == 2  # both models again


def test_mask_probe_explains_its_prediction_once_opened(tiny_lm):
    w = wb.widgets.MaskProbe(tiny_lm, "The cat sat on the <mask>.", top_k=3)
    assert w.explain.view is None and w.explain.selected_index is None  # nothing computed yet
    w.explain.selected_index = 0  # what opening the section in the notebook does
    view = w.explain.view
    assert view is not None and view.result is not None
    top1 = int(w.predictions.sort_values("rank")["token_id"].iloc[0])
    assert (view.result[S.TARGET_ID] == top1).all()  # the answer shown above it
    assert "delta" in view.status.value and len(view.figure.data) > 0
    w.text.value = "A dog sat on the <mask>."  # the open view follows the text, recomputes on demand
    assert view.text.value == "A dog sat on the <mask>." and "press Attribute" in view.status.value
    w.text.value = "A dog sat on the mat."  # an input error clears the attributions shown
    assert view.result is None and len(view.figure.data) == 0 and "fix the input" in view.status.value
    view.run_button.click()
    assert view.result["text"].iloc[0] == "A dog sat on the <mask>."
