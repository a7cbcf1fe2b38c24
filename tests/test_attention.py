"""Attention numbers: rows sum to 1, equal transformers' eager weights, hand-checked modes, no padding leaks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import workbench as wb
from workbench.analysis import attention_modes as modes
from workbench.errors import InputError
from workbench.tokens import plain_token

TEXT = "The pizzeria was closed, unfortunately."
PAIR = ("A man eats pizza.", "He is hungry.")


@pytest.fixture(scope="module")
def oracle(tiny_model_dir):
    """A second copy of the model loaded by transformers directly, eager attention."""
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(tiny_model_dir, attn_implementation="eager").eval()
    return model, AutoTokenizer.from_pretrained(tiny_model_dir)


def _row_sums(df):
    return df.groupby(["text_id", "layer", "head", "query"], observed=True)["weight"].sum()


@pytest.mark.parametrize("options", [
    {}, {"drop_special": True}, {"merge_subwords": True},
    {"drop_special": True, "merge_subwords": True}, {"mode": "rollout"},
    {"mode": "rollout", "drop_special": True}, {"mode": "flow"},
    {"aggregate": ["heads", "layers"]},
])
def test_rows_sum_to_one(tiny_lm, options):
    df = wb.attention(tiny_lm, [TEXT, "Hi.", PAIR], **options)
    assert np.allclose(_row_sums(df), 1.0, atol=1e-5)
    assert (df["weight"] >= 0).all()


def test_weights_equal_transformers_eager_output(tiny_lm, oracle):
    model, tok = oracle
    texts = [TEXT, "Short one.", "Another, somewhat longer sentence about the weather today."]
    df = wb.attention(tiny_lm, texts)
    for i, text in enumerate(texts):
        enc = tok(text, return_tensors="pt")
        with torch.no_grad():
            ref = torch.stack(model(**enc, output_attentions=True).attentions)[:, 0]  # (L, H, T, T)
        ours, tokens = wb.attention_tensor(tiny_lm, text)
        assert ours.shape == ref.shape and len(tokens) == ref.shape[-1]
        assert torch.allclose(ours, ref, atol=1e-6, rtol=0)
        sub = df[df.text_id == i].sort_values(["layer", "head", "query", "key"])
        assert np.allclose(sub["weight"].to_numpy(), ref.numpy().reshape(-1), atol=1e-6, rtol=0)


def test_padding_never_leaks(tiny_lm):
    short = "Hi there."
    long = "A much longer sentence that forces the short one to be padded in the batch."
    alone, _ = wb.attention_tensor(tiny_lm, short)
    df = wb.attention(tiny_lm, [long, short, "Mid length text here."], batch_size=8)
    sub = df[df.text_id == 1].sort_values(["layer", "head", "query", "key"])
    assert len(sub) == alone.numel()  # no padding rows or columns
    assert np.allclose(sub["weight"].to_numpy(), alone.numpy().reshape(-1), atol=1e-6, rtol=0)
    assert "<pad>" not in set(sub["key_token"].astype(str))


def test_rollout_matches_hand_computation():
    # two layers, one head, two tokens
    a0 = torch.tensor([[0.8, 0.2], [0.4, 0.6]])
    a1 = torch.tensor([[0.5, 0.5], [0.1, 0.9]])
    w = torch.stack([a0, a1])[:, None]                       # (L=2, H=1, 2, 2)
    r = modes.attention_rollout(w)
    # A' = 0.5 A + 0.5 I (rows already sum to 1)
    h0 = [[0.9, 0.1], [0.2, 0.8]]
    h1 = [[0.75, 0.25], [0.05, 0.95]]
    # R_1 = A'_1 @ A'_0
    r1 = [[0.75 * 0.9 + 0.25 * 0.2, 0.75 * 0.1 + 0.25 * 0.8],
          [0.05 * 0.9 + 0.95 * 0.2, 0.05 * 0.1 + 0.95 * 0.8]]
    assert torch.allclose(r[0], torch.tensor(h0))
    assert torch.allclose(r[1], torch.tensor(r1))
    assert np.isclose(h1[0][0], 0.75)


def test_flow_matches_networkx_max_flow():
    import networkx as nx

    g = torch.Generator().manual_seed(0)
    w = torch.softmax(torch.randn(3, 2, 4, 4, generator=g), dim=-1)   # (L, H, T, T)
    ours = modes.attention_flow(w)                                      # (L, T, T)
    a = modes.residual_attention(w).numpy()
    t = 4
    for layer in range(3):
        graph = nx.DiGraph()
        for lv in range(layer + 1):
            for i in range(t):
                for j in range(t):
                    graph.add_edge((lv + 1, i), (lv, j), capacity=float(a[lv, i, j]))
        ref = np.array([[nx.maximum_flow_value(graph, (layer + 1, i), (0, j)) for j in range(t)]
                        for i in range(t)])
        ref /= ref.sum(axis=1, keepdims=True)
        assert np.allclose(ours[layer].numpy(), ref, atol=1e-5)
    # one layer: the flow is the residual-augmented attention itself
    assert torch.allclose(ours[0], modes.residual_attention(w)[0], atol=1e-5)


def test_flow_refuses_long_inputs():
    w = torch.full((1, 1, modes.FLOW_MAX_TOKENS + 1, modes.FLOW_MAX_TOKENS + 1), 0.1)
    with pytest.raises(InputError, match="rollout"):
        modes.attention_flow(w)


def test_norm_mode_matches_direct_computation(tiny_lm, oracle):
    model, tok = oracle
    enc = tok(TEXT, return_tensors="pt")
    with torch.no_grad():
        out = model(**enc, output_attentions=True, output_hidden_states=True)
    n_heads = model.config.num_attention_heads
    d = model.config.hidden_size // n_heads
    ours, _ = wb.attention_tensor(tiny_lm, TEXT, mode="norm")             # (L, H, T, T)
    layer_level, _ = wb.attention_tensor(tiny_lm, TEXT, mode="norm", aggregate="heads")
    for layer, block in enumerate(model.encoder.layer):
        x = out.hidden_states[layer][0]                                     # (T, hidden)
        sa = block.attention.self
        v = (x @ sa.value.weight.T + sa.value.bias).view(-1, n_heads, d)    # (T, H, d)
        wo = block.attention.output.dense.weight.view(-1, n_heads, d)       # (hidden, H, d)
        alpha = out.attentions[layer][0]                                    # (H, T, T)
        # alpha_ij * f_h(x_j) as vectors, then the norm, per head and summed over heads
        f = torch.stack([v[:, h] @ wo[:, h].T for h in range(n_heads)])     # (H, T, hidden)
        vec = alpha[..., None] * f[:, None]                                 # (H, T, T, hidden)
        assert torch.allclose(ours[layer], vec.norm(dim=-1), atol=1e-5)
        assert torch.allclose(layer_level[layer, 0], vec.sum(0).norm(dim=-1), atol=1e-5)


def test_drop_special_renormalises_the_remaining_keys(tiny_lm):
    full, tokens = wb.attention_tensor(tiny_lm, TEXT)
    dropped, kept = wb.attention_tensor(tiny_lm, TEXT, drop_special=True)
    assert "<s>" not in kept and "</s>" not in kept and len(kept) == len(tokens) - 2
    inner = full[:, :, 1:-1, 1:-1]
    assert torch.allclose(dropped, inner / inner.sum(-1, keepdim=True), atol=1e-6)


def test_merge_subwords_sums_keys_and_averages_queries(tiny_lm):
    view = tiny_lm.tokens(TEXT)
    full, _ = wb.attention_tensor(tiny_lm, TEXT)
    merged, labels = wb.attention_tensor(tiny_lm, TEXT, merge_subwords=True)
    assert labels == ["<s>"] + view.words + ["</s>"]
    span = view.word_spans[view.words.index("pizzeria")]
    assert len(span) > 1
    u = labels.index("pizzeria")
    expected = full[:, :, span][:, :, :, span].sum(-1).mean(-1)           # (L, H)
    assert torch.allclose(merged[:, :, u, u], expected, atol=1e-6)
    assert torch.allclose(merged[:, :, 0, u], full[:, :, 0, span].sum(-1), atol=1e-6)


def test_select_and_aggregate(tiny_lm):
    full, tokens = wb.attention_tensor(tiny_lm, TEXT)
    x, _ = wb.attention_tensor(tiny_lm, TEXT, select=[1, 2], aggregate=["queries", "heads"])
    assert x.shape == (full.shape[0], 1, 1, full.shape[-1])
    assert torch.allclose(x[:, 0, 0], full[:, :, [1, 2]].mean(dim=(1, 2)), atol=1e-6)
    df = wb.attention(tiny_lm, TEXT, select=["The"], layers=[-1], heads=0)
    assert set(df["query_token"].astype(str)) == {"The"}
    assert set(df["layer"]) == {tiny_lm.num_layers - 1} and set(df["head"]) == {0}
    mx, _ = wb.attention_tensor(tiny_lm, TEXT, aggregate="layers", reduce="max")
    assert torch.allclose(mx[0], full.amax(0))


def test_sentence_pairs_are_marked(tiny_lm):
    df = wb.attention(tiny_lm, [PAIR], layers=0, heads=0)
    firsts = df.drop_duplicates("query").set_index("query")
    tokens = list(firsts["query_token"].astype(str))
    assert tokens.count("</s>") == 3   # <s> A </s></s> B </s>
    seg = firsts["segment"].tolist()
    assert seg[0] == 0 and seg[-1] == 1 and set(seg) == {0, 1}
    view = tiny_lm.tokens(*PAIR)
    assert seg == view.segment and "".join(map(plain_token, tokens[seg.index(1):-1])) == "Heishungry."
    assert set(df["key_segment"]) == {0, 1}
    same = wb.attention(tiny_lm, PAIR[0], pairs=[PAIR[1]], layers=0, heads=0)
    assert np.allclose(same["weight"], df["weight"])


def test_dict_of_models_adds_model_column(tiny_lm):
    df = wb.attention({"a": tiny_lm, "b": tiny_lm}, "Hi.", layers=0, heads=0)
    assert set(df["model"]) == {"a", "b"}
    assert len(df) == 2 * len(wb.attention(tiny_lm, "Hi.", layers=0, heads=0))


def test_errors_name_the_fix(tiny_lm):
    with pytest.raises(InputError, match="layer 99"):
        wb.attention(tiny_lm, TEXT, layers=[99])
    with pytest.raises(InputError, match="mode"):
        wb.attention(tiny_lm, TEXT, mode="magic")
    with pytest.raises(InputError, match="empty"):
        wb.attention(tiny_lm, [])
    with pytest.raises(InputError, match="not one of the tokens"):
        wb.attention(tiny_lm, TEXT, select=["zebra"])


def test_a_text_at_the_limit_is_analysed_whole_and_one_token_more_is_refused(tiny_lm):
    """The analyses' one rule (capture.refuse_overflow): never truncate. A text of exactly the
    model's limit is analysed to its last token; one token more is refused, naming it."""
    from workbench.capture import check_max_length

    limit = check_max_length(tiny_lm, None)
    text = " ".join(["the"] * (limit - 2))               # + <s> and </s>
    while len(tiny_lm.tokens(text)) > limit:             # in case " the" is not one token
        text = text[:text.rindex(" ")]
    assert len(tiny_lm.tokens(text)) == limit
    df = wb.attention(tiny_lm, ["short", text], layers=[0], heads=[0])
    assert df[df["text_id"] == 1]["query"].max() == limit - 1
    with pytest.raises(InputError, match=rf"texts\[1\].* has {limit + 1}.*never truncate"):
        wb.attention(tiny_lm, ["short", text + " the"], layers=[0], heads=[0])
    with pytest.raises(InputError, match="max_length=8"):
        wb.attention(tiny_lm, ["one two three four five six seven"], max_length=8)
