"""wb.context_mixing: value zeroing, ALTI and GlobEnc against plain loops written from the papers.

Oracles: value zeroing batched per layer equals a loop of full forward passes of the stock model
with one token's value vectors zeroed by a hook; ALTI's and GlobEnc's per-source vectors plus
their bias/FFN term give the layer's real output (transformers' own hidden states) to 1e-5 in
fp32; ALTI at layer 0 equals a float64 per-(i, j) loop from the weights; rows are non-negative
and sum to 1; `layers="all"` is the matrix product of the per-layer matrices.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import workbench as wb
from workbench.analysis import context_mixing as cm
from workbench.capture import encode, hooks
from workbench.errors import InputError
from workbench.testing import value_zeroing_by_full_forwards

TEXT = "The keys to the old cabinet are on the table."


@pytest.fixture(scope="module")
def lm(sharp_tiny_lm):
    return sharp_tiny_lm


def _hidden_states(lm, text, hook_pairs=()):
    batch = encode(lm, [text])
    with torch.no_grad(), hooks(hook_pairs):
        out = lm.encoder(**batch.inputs, output_hidden_states=True, return_dict=True)
    return [h[0].float() for h in out.hidden_states]


def test_value_zeroing_equals_loop_of_full_forwards(lm):
    loop = value_zeroing_by_full_forwards(lm, TEXT)               # (L, T, T)
    _, traces = cm.trace_layers(lm, TEXT)
    for layer in range(lm.num_layers):
        with torch.inference_mode():
            batched = cm._zeroing_distances(lm, layer, traces[layer])
        torch.testing.assert_close(batched, loop[layer], atol=1e-5, rtol=0)
        assert loop[layer].max() > 1e-3          # zeroing a value does change the outputs


@pytest.mark.parametrize("through", ["attention", "layer"])
def test_decomposition_sums_to_the_real_output(lm, through):
    real = _hidden_states(lm, TEXT)
    _, traces = cm.trace_layers(lm, TEXT)
    for layer, trace in enumerate(traces):
        vec, rest = cm.mixing_vectors(lm, trace, layer, through)
        target = trace.post_ln1 if through == "attention" else real[layer + 1]
        torch.testing.assert_close(vec.sum(1) + rest, target, atol=1e-5, rtol=0)
        assert vec.norm(dim=-1).max() > 0


def test_attention_block_output_is_the_models(lm):
    """The hooked LN1 output the ALTI check compares against is the stock module's output."""
    _, traces = cm.trace_layers(lm, TEXT)
    layer = cm.encoder_layers(lm)[0]
    with torch.no_grad():
        ln1 = layer.attention(traces[0].inputs[None], **traces[0].kwargs)[0][0]
    torch.testing.assert_close(ln1, traces[0].post_ln1, atol=1e-6, rtol=0)


@torch.no_grad()
def _alti_by_loop(lm, trace, layer_idx):
    """ALTI (Ferrando et al. 2022, Eqs. 5-10) for one layer, per (i, j), float64, from weights."""
    layer = cm.encoder_layers(lm)[layer_idx]
    sa, out = layer.attention.self, layer.attention.output
    x = trace.inputs.double()
    t, d = x.shape
    h = lm.num_heads
    hd = d // h
    wv, bv = sa.value.weight.double(), sa.value.bias.double()
    wo, bo = out.dense.weight.double(), out.dense.bias.double()
    g, b, eps = out.LayerNorm.weight.double(), out.LayerNorm.bias.double(), out.LayerNorm.eps
    a = trace.attn.double()
    pre = trace.pre_ln1.double()
    scores = np.zeros((t, t))
    for i in range(t):
        s = torch.sqrt(pre[i].var(unbiased=False) + eps)
        vecs = []
        for j in range(t):
            u = torch.zeros(d, dtype=torch.float64)
            for head in range(h):
                sl = slice(head * hd, (head + 1) * hd)
                v = x[j] @ wv[sl].T + bv[sl]                 # value of head h
                u += a[head, i, j] * (v @ wo[:, sl].T)       # through its slice of W_O
            if i == j:
                u += x[i]
            vecs.append(g * (u - u.mean()) / s)
        y = sum(vecs) + g * (bo - bo.mean()) / s + b
        for j, v in enumerate(vecs):
            scores[i, j] = max(0.0, float(y.abs().sum() - (y - v).abs().sum()))
    return scores / scores.sum(1, keepdims=True)


def test_alti_equals_plain_loop_from_the_paper(lm):
    text = "A cat sat."
    view, traces = cm.trace_layers(lm, text)
    _, mats = cm.mixing_matrices(lm, text, "alti")
    np.testing.assert_allclose(mats[0].numpy(), _alti_by_loop(lm, traces[0], 0), atol=1e-5)


@pytest.mark.parametrize("method", sorted(cm.METHODS))
def test_rows_are_distributions_and_rollout_is_the_product(lm, method):
    df = wb.context_mixing(lm, [TEXT, "Short one."], method=method)
    assert (df["weight"] >= 0).all() and set(df["head"]) == {-1} and set(df["method"]) == {method}
    sums = df.groupby(["text_id", "layer", "query"])["weight"].sum()
    np.testing.assert_allclose(sums.to_numpy(), 1.0, atol=1e-5)
    _, mats = cm.mixing_matrices(lm, TEXT, method)
    roll = wb.context_mixing(lm, TEXT, method=method, layers="all")
    assert set(roll["layer"]) == {-1}
    expected = mats[1].double() @ mats[0].double()                  # the tiny model has 2 layers
    got = roll.pivot(index="query", columns="key", values="weight").to_numpy()
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-6)
    words = wb.context_mixing(lm, TEXT, method=method, layers=[1], drop_special=True,
                              merge_subwords=True)
    np.testing.assert_allclose(words.groupby("query")["weight"].sum().to_numpy(), 1.0, atol=1e-5)
    assert "<s>" not in set(words["key_token"].astype(str))


def test_frame_draws_as_an_attention_heatmap(lm):
    from workbench.plots.attention import attention_heatmap

    df = wb.context_mixing(lm, TEXT, method="alti", layers="all")
    fig = attention_heatmap(df)
    assert np.asarray(fig.data[0].z).shape == (len(lm.tokens(TEXT)),) * 2


def test_bad_inputs(lm):
    with pytest.raises(InputError, match="method="):
        wb.context_mixing(lm, TEXT, method="rollout")
    with pytest.raises(InputError, match="'all'"):
        wb.context_mixing(lm, TEXT, layers="last")
    with pytest.raises(InputError, match="layer 5 does not exist"):
        wb.context_mixing(lm, TEXT, method="alti", layers=[5])
    with pytest.raises(InputError):
        wb.context_mixing(lm, [""], method="alti")


def test_agreement_with_attributions(tmp_path, tiny_model_dir):
    from scipy.stats import spearmanr

    from workbench.analysis import mixing_agreement as ma
    from workbench.errors import MissingHeadError
    from workbench.testing import make_tiny_model

    clf = wb.load(make_tiny_model(tmp_path / "clf", head="classifier"), device="cpu")
    with torch.no_grad():
        for p in clf.encoder.encoder.parameters():
            if p.dim() == 2:
                p.mul_(10.0)
    texts = ["The man is here.", "It was a fine film."]
    ids = clf.tokenizer(texts[0])["input_ids"]
    with torch.no_grad():                                     # blank-out by a plain loop
        probs = [torch.softmax(clf.model(input_ids=torch.tensor([x])).logits[0], -1)
                 for x in [ids] + [ids[:j] + [clf.tokenizer.mask_token_id] + ids[j + 1:]
                                   for j in range(len(ids))]]
    c = int(probs[0].argmax())
    loop = np.array([float(probs[0][c] - p[c]) for p in probs[1:]])
    np.testing.assert_allclose(ma.blank_out(clf, texts[0]), loop, atol=1e-6)
    per = wb.mixing_agreement(clf, texts, methods=["attention", "alti"], by_text=True)
    alti = wb.context_mixing(clf, texts[1], method="alti", layers="all")
    row0 = alti[alti["query"] == 0].sort_values("key")["weight"].to_numpy()
    gx = wb.attribute(clf, texts[1], method="grad_x_input").sort_values("position")
    keep = [i for i, s in enumerate(clf.tokens(texts[1]).special) if not s]
    rho = spearmanr(row0[keep], np.abs(gx["score"].to_numpy())[keep]).statistic
    got = per[(per["text_id"] == 1) & (per["method"] == "alti") & (per["target"] == "grad_x_input")]
    assert got["score"].iloc[0] == pytest.approx(rho, abs=1e-9)
    summary = wb.mixing_agreement(clf, texts, methods=["attention"], n_boot=200)
    assert len(summary) == 2 and (summary["count"] == 2).all()
    means = per.groupby(["method", "target"])["score"].mean()
    for r in summary.itertuples():
        assert r.score == pytest.approx(means[(r.method, r.target)])
        assert r.ci_low <= r.score + 1e-12 and r.score <= r.ci_high + 1e-12
    with pytest.raises(MissingHeadError, match="classifier"):
        wb.mixing_agreement(wb.load(tiny_model_dir, device="cpu"), texts)


def test_attention_explorer_flips_through_every_mode(lm):
    """Click through the attention modes and the mixing methods in one AttentionExplorer: each
    mixing mode draws `wb.context_mixing`'s numbers (per layer, and layer "all" = the rollout),
    runs the model once per text and method, and the views draw from it."""
    from workbench.analysis.attention_modes import MODES
    from workbench.analysis.attention import ALL

    w = wb.widgets.AttentionExplorer(lm, [TEXT, ("A man eats.", "He is hungry.")])
    runs = w.forward_count
    t = len(lm.tokens(TEXT))
    seen = {}
    for mode in [*MODES, *cm.METHODS, "weights", *cm.METHODS]:
        w.mode.value = mode
        assert w.last_error is None, (mode, w.last_error)
        z = np.asarray(w.figure.data[0].z, dtype=float)
        assert z.shape == (t, t) and np.isfinite(z).all()
        seen.setdefault(mode, z)
        np.testing.assert_array_equal(z, seen[mode])           # a revisit redraws the same
    assert w.forward_count == runs + len(cm.METHODS)           # computed once, then cached
    for method in cm.METHODS:
        w.mode.value = method
        for layer in (1, ALL):
            w.layer.value = layer
            ref = wb.context_mixing(lm, TEXT, method=method,
                                    layers="all" if layer == ALL else [layer])
            ref = ref.pivot(index="query", columns="key", values="weight").to_numpy()
            np.testing.assert_allclose(np.asarray(w.figure.data[0].z, dtype=float), ref,
                                       atol=1e-6)
            got = w.frame()
            assert set(got["layer"]) == {layer} and set(got["head"]) == {ALL}
            np.testing.assert_allclose(got.pivot(index="query", columns="key",
                                                 values="weight").to_numpy(), ref, atol=1e-6)
        w.layer.value = 0
        for view in ("head", "model"):
            w.view.value = view
            assert w.last_error is None and w.canvas.payload, (method, view)
        w.view.value = "heatmap"
    assert not np.allclose(seen["alti"], seen["weights"])
    assert w.forward_count == runs + len(cm.METHODS)
    w.text_pick.value = 1                                      # a pair: a clear refusal
    assert isinstance(w.last_error, InputError) and "sentence pair" in str(w.last_error)
