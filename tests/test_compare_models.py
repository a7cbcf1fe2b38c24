"""compare_models: identical models show no difference, a perturbed layer shows where it changed,
top-1 predictions match a plain loop, and mismatched or head-less models are handled clearly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import workbench as wb
from workbench import schema as S
from workbench.analysis.compare_models import top1_predictions

TEXTS = ["The cat sat on the mat.", "A dog barked at the old mailman, twice!",
         "Colourless green ideas sleep furiously.", "It rained."]


@pytest.fixture(scope="module")
def three_layer_dir(tmp_path_factory):
    from workbench.testing import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("three") / "m", num_layers=3)


def test_identical_models_show_no_difference(tiny_model_dir):
    a, b = wb.load(tiny_model_dir, device="cpu"), wb.load(tiny_model_dir, device="cpu")
    diff = wb.compare_models(a, b, TEXTS, progress=False)
    np.testing.assert_allclose(diff.heads[S.JS_DISTANCE], 0.0, atol=1e-6)
    np.testing.assert_allclose(diff.layers[S.CKA], 1.0, atol=1e-9)
    np.testing.assert_allclose(diff.heads[S.IMPORTANCE_CHANGE], 0.0, atol=1e-12)
    assert not diff.heads[S.ROLE_CHANGED].any()
    assert diff.predictions[S.AGREE].all() and len(diff.predictions) > 0
    np.testing.assert_allclose(diff.pll[S.LOGPROB_CHANGE], 0.0, atol=1e-9)
    assert diff.summary()["top1_agreement"] == 1.0 and not diff.skipped
    assert len(diff.layers) == a.num_layers and len(diff.heads) == a.num_layers * a.num_heads


def test_perturbed_layer_changes_most(three_layer_dir):
    a, b = wb.load(three_layer_dir, device="cpu"), wb.load(three_layer_dir, device="cpu")
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():                   # only layer 1's query/key: its attention moves
        for lin in (b.encoder.encoder.layer[1].attention.self.query,
                    b.encoder.encoder.layer[1].attention.self.key):
            lin.weight.add_(0.5 * torch.randn(lin.weight.shape, generator=gen))
    diff = wb.compare_models(a, b, TEXTS, roles=False, importance=False, progress=False)
    js = diff.layers.set_index(S.LAYER)[S.JS_DISTANCE]
    assert js[0] == pytest.approx(0.0, abs=1e-6)      # upstream of the change: untouched
    assert js.idxmax() == 1 and js[1] > 0.05
    cka = diff.layers.set_index(S.LAYER)[S.CKA]
    assert cka[0] == pytest.approx(1.0, abs=1e-9) and cka[1] < 1.0
    assert diff.summary()["most_changed_layer"] == 1
    assert diff.predictions[S.AGREE].mean() < 1.0


def test_top1_predictions_match_a_plain_loop(tiny_lm):
    got = top1_predictions(tiny_lm, TEXTS[:2], max_tokens=40)   # several small batches
    tok = tiny_lm.tokenizer
    for text_id, text in enumerate(TEXTS[:2]):
        ids = tok(text, return_tensors="pt")["input_ids"]
        for p in range(1, ids.shape[1] - 1):
            masked = ids.clone()
            masked[0, p] = tok.mask_token_id
            with torch.no_grad():
                logits = tiny_lm.model(input_ids=masked).logits[0, p]
            row = got[(got[S.TEXT_ID] == text_id) & (got[S.POSITION] == p)]
            assert row[S.PREDICTION].item() == tok.convert_ids_to_tokens(int(logits.argmax()))
    assert len(got) == sum(len(tok(t)["input_ids"]) - 2 for t in TEXTS[:2])


def test_different_tokenizers_are_refused(tiny_lm, tmp_path):
    from workbench.testing import make_tiny_model

    other = wb.load(make_tiny_model(tmp_path / "other", vocab_size=600), device="cpu")
    with pytest.raises(wb.InputError, match="tokenizer"):
        wb.compare_models(tiny_lm, other, TEXTS, progress=False)
    with pytest.raises(wb.InputError, match="wb.load"):
        wb.compare_models(tiny_lm, "demo", TEXTS)


def test_model_without_mlm_head_skips_what_needs_it(tiny_lm, tiny_encoder_dir):
    enc = wb.load(tiny_encoder_dir, device="cpu")
    diff = wb.compare_models(tiny_lm, enc, TEXTS, roles=False, progress=False)
    assert diff.predictions is None and diff.pll is None
    assert "MLM head" in diff.skipped["predictions"] and "importance" in diff.skipped
    assert S.IMPORTANCE_A not in diff.heads and S.CKA in diff.layers


def test_overview_figure(tiny_model_dir):
    from workbench.plots.compare_models import diff_overview

    a, b = wb.load(tiny_model_dir, device="cpu"), wb.load(tiny_model_dir, device="cpu")
    with torch.no_grad():
        b.encoder.encoder.layer[1].attention.self.query.weight.mul_(3.0)
    diff = wb.compare_models(a, b, TEXTS, importance=False, roles=False, progress=False)
    fig = diff_overview(diff)
    bars = fig.data[0]
    np.testing.assert_allclose(bars.y, diff.layers[S.JS_DISTANCE])
    assert "top-1 agreement" in fig.layout.title.text
    with pytest.raises(wb.InputError):
        diff_overview(diff.heads)


# --- diff_overview for every pair compare_models accepts (issue 28.3) --------------------------

@pytest.fixture(scope="module")
def classifier_runs(tmp_path_factory):
    """Two tiny sequence classifiers saved as checkpoints of named runs (as wb.finetune leaves
    them), with encoders unlike the tiny MLM's (other seeds), so every panel has a change."""
    from workbench.store import Run
    from workbench.testing import make_tiny_model

    root = tmp_path_factory.mktemp("runs")
    out = []
    for seed, name in ((1, "tiny-sentiment"), (2, "tiny-sentiment-seed2")):
        run = Run.create("finetune", {}, name=name, root=root)
        with run.lock(), run.writing_checkpoint(3) as folder:
            make_tiny_model(folder, head="classifier", seed=seed)
        out.append(run)
    return out


def _panel_axes(fig):
    """{panel: (x axis, y axis)} of the 2x2 grid, by subplot title, and each trace's axes."""
    grid = fig._grid_ref
    return {(r, c): (grid[r][c][0].trace_kwargs["xaxis"], grid[r][c][0].trace_kwargs["yaxis"])
            for r in range(2) for c in range(2)}


def _check_axes_belong_to_panels(fig):
    """Every trace sits on one panel's axes; an overlaying (second) y axis only over a panel
    whose own axis carries a trace, with that panel's x axis and domain."""
    panels = _panel_axes(fig)
    used = {(t.xaxis or "x", t.yaxis or "y") for t in fig.data}
    layout = fig.to_plotly_json()["layout"]
    for xa, ya in used:
        spec = layout["yaxis" + ya[1:]]
        if "overlaying" in spec:
            base = spec["overlaying"]
            assert (xa, base) in used, f"{ya} overlays {base}, which carries nothing"
            assert spec["anchor"] == xa
            assert (xa, base) in panels.values()
        else:
            assert (xa, ya) in panels.values(), (xa, ya)


def _trace(fig, name):
    found = [t for t in fig.data if t.name == name]
    assert len(found) == 1, [t.name for t in fig.data]
    return found[0]


def test_overview_mlm_vs_classifier_run(tiny_model_dir, classifier_runs):
    from workbench.plots.compare_models import diff_overview

    mlm, clf = wb.load(tiny_model_dir, device="cpu"), wb.load(classifier_runs[0], device="cpu")
    assert clf.kind == "classifier"
    diff = wb.compare_models(mlm, clf, TEXTS, progress=False)
    fig = diff_overview(diff)
    _check_axes_belong_to_panels(fig)
    panels = _panel_axes(fig)
    cka = _trace(fig, "CKA")           # panel (b) holds the same-layer CKA, inside its y range
    assert (cka.xaxis, cka.yaxis) == panels[(0, 1)]
    np.testing.assert_allclose(cka.y, diff.layers[S.CKA])
    assert np.isfinite(cka.y).all() and (cka.y < 1.0).any()
    lo, hi = fig.layout.yaxis2.range
    assert lo <= min(cka.y) and max(cka.y) <= hi
    roles = _trace(fig, "heads with a new role")   # panel (d), its own axis: no importance here
    assert (roles.xaxis, roles.yaxis) == panels[(1, 1)]
    np.testing.assert_array_equal(roles.y, diff.layers[S.ROLE_CHANGED])
    assert "importance" in diff.skipped and not fig.layout.annotations[4:]  # (d) is not empty
    title = fig.layout.title.text
    assert "tiny-sentiment (step-00000003)" in title and "top-1" not in title
    assert "checkpoints" not in title


def test_overview_classifier_vs_classifier(classifier_runs):
    from workbench.plots.compare_models import diff_overview

    a, b = (wb.load(run, device="cpu") for run in classifier_runs)
    diff = wb.compare_models(a, b, TEXTS, progress=False)
    fig = diff_overview(diff)
    _check_axes_belong_to_panels(fig)
    assert np.isfinite(_trace(fig, "CKA").y).all()
    assert _trace(fig, "heads with a new role").yaxis == _panel_axes(fig)[(1, 1)][1]
    assert fig.layout.title.text == "tiny-sentiment (step-00000003) → tiny-sentiment-seed2 " \
                                    "(step-00000003)"


def test_overview_mlm_vs_mlm_has_both_series_in_panel_d(tiny_model_dir):
    from workbench.plots.compare_models import diff_overview

    a, b = wb.load(tiny_model_dir, device="cpu"), wb.load(tiny_model_dir, device="cpu")
    with torch.no_grad():
        b.encoder.encoder.layer[1].attention.self.query.weight.mul_(3.0)
    diff = wb.compare_models(a, b, TEXTS[:2], progress=False)
    fig = diff_overview(diff)
    _check_axes_belong_to_panels(fig)
    bars, roles = _trace(fig, "mean |importance change|"), _trace(fig, "heads with a new role")
    assert (bars.xaxis, bars.yaxis) == _panel_axes(fig)[(1, 1)]
    assert roles.xaxis == bars.xaxis and roles.yaxis != bars.yaxis     # the second y axis
    np.testing.assert_allclose(bars.y, diff.layers[S.IMPORTANCE_CHANGE])
    assert "top-1 agreement" in fig.layout.title.text


def test_overview_says_why_a_panel_is_empty(tiny_lm):
    from workbench.plots.compare_models import diff_overview

    diff = wb.compare_models(tiny_lm, tiny_lm, TEXTS[:2], importance=False, roles=False,
                             cka=False, predictions=False, progress=False)
    fig = diff_overview(diff)
    notes = [a.text for a in fig.layout.annotations if a.text.startswith("not computed")]
    assert len(notes) == 2 and all("wb.compare_models" in n for n in notes)
    assert {t.name for t in fig.data} == {"mean over heads", "one head", None}
