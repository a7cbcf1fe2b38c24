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
