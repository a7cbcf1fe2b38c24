"""wb.patch: exact oracles (clean into clean, the whole last layer, batch size) and a plain loop.

The plain loop re-runs the stock model once per site with a hook that copies one clean
activation in, with nothing batched, and compares to the batched rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import workbench as wb
from workbench.analysis import patching as P
from workbench.errors import InputError, MissingHeadError
from workbench.testing import make_tiny_model

CLEAN = "The man near the door <mask> here."
CORRUPT = "The men near the door <mask> here."
CANDS = ("is", "are")
ALL_SITES = ["resid", "attn", "ffn", "head"]


@pytest.fixture(scope="module")
def lm(sharp_tiny_lm):
    return sharp_tiny_lm


def test_pair_has_one_token_per_position(lm):
    assert len(lm.tokens(CLEAN)) == len(lm.tokens(CORRUPT))


def test_clean_into_clean_changes_nothing_bit_for_bit(lm):
    df = wb.patch(lm, CLEAN, CLEAN, candidates=CANDS, sites=ALL_SITES, batch_size=7)
    assert len(df) == 2 * (2 * 14 + 14 + 4) and (df["value"] == df["clean"]).all()


def test_whole_last_layer_gives_the_clean_output(lm):
    df = wb.patch(lm, CLEAN, CORRUPT, candidates=CANDS, layers=[lm.num_layers - 1],
                  positions="all")
    assert df["clean"].iloc[0] != df["corrupted"].iloc[0]
    assert (df["value"] == df["clean"]).all() and (df["effect"] == 1.0).all()


def test_batch_size_does_not_change_results(lm):
    a = wb.patch(lm, CLEAN, CORRUPT, candidates=CANDS, sites=ALL_SITES, positions=[1, 2, 9],
                 batch_size=1)
    b = wb.patch(lm, CLEAN, CORRUPT, candidates=CANDS, sites=ALL_SITES, positions=[1, 2, 9],
                 batch_size=64)
    # fp32 GEMMs of another row count may round differently in the last bits
    np.testing.assert_allclose(a["value"], b["value"], rtol=0, atol=1e-5)
    assert a["value"].std() > 1e-3                           # the sites do differ


def _loop_metric(lm, site: P.Site, clean_acts: dict, tok, pos):
    """One unbatched forward of the corrupted text with one clean activation copied in."""
    module, how = P.site_modules(lm, site.kind, site.layer)
    d = lm.config.hidden_size // lm.num_heads

    def put(x):
        x = x.clone()
        src = clean_acts[(site.kind, site.layer)]
        if site.kind == "head":
            x[0, :, site.head * d:(site.head + 1) * d] = src[:, site.head * d:(site.head + 1) * d]
        else:
            x[0, site.position] = src[site.position]
        return x

    fwd = lambda m, a, o: put(o[0] if isinstance(o, tuple) else o)   # noqa: E731
    pre = lambda m, a: (put(a[0]),) + tuple(a[1:])                     # noqa: E731
    ids = lm.tokenizer(CORRUPT, return_tensors="pt")
    h = module.register_forward_hook(fwd) if how == "forward" else module.register_forward_pre_hook(pre)
    try:
        with torch.no_grad():
            logits = lm.model(**ids).logits[0, pos].double()
    finally:
        h.remove()
    logp = torch.log_softmax(logits, -1)
    return float(logp[tok[0]] - logp[tok[1]])


def test_equals_a_plain_loop_of_single_runs(lm):
    ids = lm.tokenizer(CLEAN, return_tensors="pt")
    pos = int((ids["input_ids"][0] == lm.tokenizer.mask_token_id).nonzero())
    tok = [lm.tokenizer(" " + c, add_special_tokens=False)["input_ids"][0] for c in CANDS]
    acts: dict = {}
    hooks = []
    for kind in ALL_SITES:
        for layer in range(lm.num_layers):
            module, how = P.site_modules(lm, kind, layer)
            if how == "forward":
                hooks.append(module.register_forward_hook(
                    lambda m, a, o, k=(kind, layer): acts.__setitem__(
                        k, (o[0] if isinstance(o, tuple) else o)[0].clone())))
            else:
                hooks.append(module.register_forward_pre_hook(
                    lambda m, a, k=(kind, layer): acts.__setitem__(k, a[0][0].clone())))
    with torch.no_grad():
        lm.model(**ids)
    for h in hooks:
        h.remove()
    # the mask's position too: the last layer computes only that row (patching._AtOne)
    assert pos == 9
    df = wb.patch(lm, CLEAN, CORRUPT, candidates=CANDS, sites=ALL_SITES, positions=[0, 2, 9],
                  batch_size=16)
    for row in df.itertuples():
        site = P.Site(row.site, row.layer, row.position, row.head)
        assert row.value == pytest.approx(_loop_metric(lm, site, acts, tok, pos), abs=1e-5)


def test_noise_corruption_and_classifier_metric(lm, tmp_path):
    a = wb.patch(lm, CLEAN, noise=[1, 2], candidates=CANDS, layers=[0], seed=3)
    b = wb.patch(lm, CLEAN, noise=[1, 2], candidates=CANDS, layers=[0], seed=3)
    pd.testing.assert_frame_equal(a, b)                      # a fixed seed: the same noise
    assert a["corrupted"].iloc[0] != a["clean"].iloc[0]
    paired = wb.patch(lm, CLEAN, CORRUPT, candidates=CANDS, layers=[0], positions=[1])
    assert a["clean"].iloc[0] == pytest.approx(paired["clean"].iloc[0], abs=1e-6)  # row 0 clean
    clf = wb.load(make_tiny_model(tmp_path / "clf", head="classifier"), device="cpu")
    df = wb.patch(clf, "The man is here.", "The men is here.", metric="prob", target=1, sites="head")
    with torch.no_grad():
        p = torch.softmax(clf.model(**clf.tokenizer("The man is here.", return_tensors="pt")).logits, -1)
    assert df["clean"].iloc[0] == pytest.approx(float(p[0, 1]), abs=1e-6)
    custom = wb.patch(clf, "The man is here.", "The men is here.", metric=lambda lg: lg[:, 0] - lg[:, 1])
    assert custom["metric"].iloc[0] == "<lambda>" and len(custom) == 2 * len(clf.tokens("The man is here."))


def test_bad_inputs(lm, tiny_encoder_dir):
    with pytest.raises(InputError, match="same number of tokens"):
        wb.patch(lm, CLEAN, "The big man near the door <mask> here.", candidates=CANDS)
    with pytest.raises(InputError, match="layer 9 is outside the model"):
        wb.patch(lm, CLEAN, CORRUPT, candidates=CANDS, layers=[9])
    with pytest.raises(InputError, match="position 40 is outside"):
        wb.patch(lm, CLEAN, CORRUPT, candidates=CANDS, positions=[40])
    with pytest.raises(InputError, match="sites="):
        wb.patch(lm, CLEAN, CORRUPT, candidates=CANDS, sites="mlp")
    with pytest.raises(InputError, match="not one token"):
        wb.patch(lm, CLEAN, CORRUPT, candidates=("is", "wonderfully"))
    with pytest.raises(InputError, match="either corrupted"):
        wb.patch(lm, CLEAN, candidates=CANDS)
    with pytest.raises(InputError, match="exactly one"):
        wb.patch(lm, "No mask here.", "No mask there.", candidates=CANDS)
    enc = wb.load(tiny_encoder_dir, device="cpu")
    with pytest.raises(MissingHeadError, match="masked-LM head"):
        wb.patch(enc, CLEAN, CORRUPT, candidates=CANDS)
    with pytest.raises(MissingHeadError, match="classifier"):
        wb.patch(lm, CLEAN, CORRUPT, metric="prob", target=0)


def test_figures(lm):
    from workbench.plots.patching import effect_by_span, head_grid, patch_heatmap

    df = wb.patch(lm, CLEAN, CORRUPT, candidates=CANDS, sites=["resid", "head"])
    a, b = lm.tokens(CLEAN).ids, lm.tokens(CORRUPT).ids
    resid = df[(df["site"] == "resid") & (df["layer"] == 0)]
    assert list(resid["span"] == "corrupted") == [x != y for x, y in zip(a, b)]
    assert list(resid["position"][resid["span"] == "mask"]) == [a.index(lm.tokenizer.mask_token_id)]
    assert len(effect_by_span(df, n_pairs=1).data) == 3
    fig = patch_heatmap(df)
    assert np.asarray(fig.data[0].z).shape == (lm.num_layers, len(lm.tokens(CLEAN)))
    assert "residual stream" in fig.layout.title.text
    assert np.asarray(head_grid(df).data[0].z).shape == (lm.num_layers, lm.num_heads)


def test_patch_probe_widget(lm):
    w = wb.widgets.PatchProbe(lm, CLEAN, CORRUPT, CANDS, batch_size=16)
    assert w.frame is not None and len(w.frame) == 2 * len(lm.tokens(CLEAN))
    assert np.asarray(w.figure.data[0].z).shape == (lm.num_layers, len(lm.tokens(CLEAN)))
    w.site.value = "head"
    assert set(w.frame["site"]) == {"head"} and "head" in w.figure.layout.title.text
    w.corrupted.value = "The big man near the door <mask> here."
    w.refresh()
    assert w.frame is None and "same number of tokens" in w.status.value
