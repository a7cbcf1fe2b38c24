"""Issue 16, items 1-6: each number's definition checked against an independent oracle.

1. gradient head importance per example (a plain per-example loop), batch-size invariant;
2. whole-word masking on the tokenizer's own words (`encoding.word_ids()`);
3. cached features inside `ablate` (an ablated forward without the cache);
4. head statistics averaged per text then across texts, Clark et al.'s punctuation (by hand);
5. norm-based attention with dropped or merged tokens (||sum alpha f(x)|| by hand);
6. candidate scores over different token counts (a plain chain-rule loop).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.testing import chain_logprob_by_loop
from workbench.training.masking import IGNORE_INDEX, Masker, TokenTables, word_start_positions

HARD_TEXTS = [
    "São Paulo (the city) said: \"não\"\nNew line, café naïve don't  x   y",
    "東京の天気は晴れ。北京 and 서울 too",
    "Emoji 😀👍🏽 and flags 🇫🇷! (Parenthesised) [bracketed] {braced}",
    "Zürich\n\nÅngström\t tab ½ ¼ — dash… «quotes» e-mail@x.com 3.14",
]


# --------------------------------------------------------------------------- 2. whole-word masking

def _oracle_starts(word_ids: list) -> list[bool]:
    """A token begins a word when its word id differs from the previous token's (specials too)."""
    return [w is None or p == 0 or word_ids[p - 1] != w for p, w in enumerate(word_ids)]


@pytest.fixture(scope="module")
def bpe_tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_word_starts_are_the_tokenizers_words(bpe_tokenizer):
    tables = TokenTables.from_tokenizer(bpe_tokenizer)
    enc = bpe_tokenizer(HARD_TEXTS, padding=True, return_tensors="pt")
    got = tables.words.starts(enc["input_ids"])
    for row in range(len(HARD_TEXTS)):
        assert tables.words.inside_char[enc["input_ids"][row]].any()  # pieces inside a character
        assert got[row].tolist() == _oracle_starts(enc.word_ids(row)), HARD_TEXTS[row]


def test_packed_rows_and_rows_cut_inside_a_character(bpe_tokenizer):
    tok = bpe_tokenizer
    docs = [tok(t, add_special_tokens=False) for t in HARD_TEXTS[:3]]
    ids = [tok.bos_token_id]
    want = [True]
    for d in docs:                           # <s> doc </s> doc </s> ... <pad> (FULL-SENTENCES)
        ids += d["input_ids"] + [tok.eos_token_id]
        want += _oracle_starts(d.word_ids()) + [True]
    ids += [tok.pad_token_id] * 3
    want += [True] * 3
    tables = TokenTables.from_tokenizer(tok)
    assert tables.words.starts(torch.tensor([ids]))[0].tolist() == want
    # a row that begins inside "São": the continuation byte opens the row, no other word splits
    sao = tok("São Paulo", add_special_tokens=False)
    cut = next(p for p, t in enumerate(sao.tokens()) if t == "£")
    row = torch.tensor([sao["input_ids"][cut:]])
    assert tables.words.starts(row)[0].tolist() == [True] + _oracle_starts(sao.word_ids())[cut + 1:]


def test_whole_word_masking_never_splits_a_character(bpe_tokenizer):
    enc = bpe_tokenizer(HARD_TEXTS * 16, padding=True, return_tensors="pt")
    tables = TokenTables.from_tokenizer(bpe_tokenizer)
    _, labels = Masker(tables, whole_word=True, probability=0.4, seed=5)(
        enc["input_ids"], torch.arange(len(HARD_TEXTS) * 16), epoch=0, draw=0)
    chosen = labels != IGNORE_INDEX
    starts = word_start_positions(enc["input_ids"], tables)
    for row in range(chosen.shape[0]):
        words: dict[int, list[int]] = {}
        for pos, w in enumerate(enc.word_ids(row)):
            if w is not None:
                words.setdefault(w, []).append(pos)
                assert starts[row, pos] == words[w][0]
        for positions in words.values():
            flags = chosen[row, positions]
            assert flags.all() or not flags.any()
    assert chosen.any()


def test_wordpiece_words_and_unsupported_tokenizers(tmp_path):
    from tokenizers import BertWordPieceTokenizer, SentencePieceUnigramTokenizer
    from transformers import BertTokenizerFast, PreTrainedTokenizerFast

    from workbench.testing import offline_text

    wp = BertWordPieceTokenizer(lowercase=False)
    wp.train_from_iterator(offline_text(50_000) + HARD_TEXTS, vocab_size=400, show_progress=False)
    wp.save_model(str(tmp_path))
    bert = BertTokenizerFast.from_pretrained(tmp_path)
    enc = bert(HARD_TEXTS, padding=True, return_tensors="pt")
    got = TokenTables.from_tokenizer(bert).words.starts(enc["input_ids"])
    for row in range(len(HARD_TEXTS)):
        assert got[row].tolist() == _oracle_starts(enc.word_ids(row))

    sp = SentencePieceUnigramTokenizer()
    sp.train_from_iterator(offline_text(20_000), vocab_size=200, show_progress=False,
                           special_tokens=["<pad>", "<mask>", "<s>", "</s>"])
    uni = PreTrainedTokenizerFast(tokenizer_object=sp, pad_token="<pad>", mask_token="<mask>",
                                  bos_token="<s>", eos_token="</s>")
    tables = TokenTables.from_tokenizer(uni)
    Masker(tables, whole_word=False)                            # token-level masking still works
    from workbench.errors import InputError

    with pytest.raises(InputError, match="whole_word=True: whole-word masking needs .* Unigram"):
        Masker(tables, whole_word=True)


# --------------------------------------------------------------------------- 1. head importance

IMPORTANCE_TEXTS = [
    "The cat sat on the mat.",
    "Dogs bark, and birds sing in the morning.",
    "A very long sentence, with commas, goes on for a while before it finally ends.",
    "Short one.",
    "Where is the station?",
    "Nobody expected the results to be so clear.",
]


@pytest.fixture(scope="module")
def lm64(tiny_lm):
    """A float64 copy of the tiny model: finite differences and batch invariance to 1e-10."""
    import copy

    import workbench as wb

    return wb.LM(model=copy.deepcopy(tiny_lm.model).double(), tokenizer=tiny_lm.tokenizer,
                 device=tiny_lm.device, name="tiny64", kind="mlm")


def _scores(df):
    from workbench import schema as S

    return df.sort_values([S.LAYER, S.HEAD])[S.SCORE].to_numpy()


def test_gradient_importance_is_per_text_for_every_head(lm64):
    """Oracle: for every head and text, a central finite difference of that text's own loss."""
    import workbench as wb
    from workbench.analysis.ablation import objective_loss

    texts = IMPORTANCE_TEXTS
    got = _scores(wb.head_importance(lm64, texts, batch_size=3, progress=False))
    eps, want, of_mean = 1e-5, [], []
    for layer in range(lm64.num_layers):
        for head in range(lm64.num_heads):
            side = []
            for scale in (1 + eps, 1 - eps):
                with wb.ablate(lm64, [(layer, head)], scale=scale):
                    side.append(objective_loss(lm64, texts, batch_size=1, by_text=True))
            per_text = (side[0] - side[1]) / (2 * eps)                     # (N,)
            want.append(np.abs(per_text).mean())
            of_mean.append(abs(per_text.mean()))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-12)
    assert not np.allclose(got, of_mean, rtol=1e-3)      # |gradient of the mean| is another number


def test_gradient_importance_does_not_depend_on_batch_size(tiny_lm, lm64):
    import workbench as wb

    for lm, tol in ((lm64, 1e-10), (tiny_lm, 1e-5)):
        one = _scores(wb.head_importance(lm, IMPORTANCE_TEXTS, batch_size=1, progress=False))
        four = _scores(wb.head_importance(lm, IMPORTANCE_TEXTS, batch_size=4, progress=False))
        np.testing.assert_allclose(four, one, rtol=tol, atol=tol * one.max())


def test_gradient_importance_of_a_classifier_by_a_plain_loop(tmp_path):
    """Oracle: one text at a time through the stock model, the gate gradient taken from the
    context vector itself (d loss / d gate_h = sum over positions of <d loss/d ctx_h, ctx_h>)."""
    import torch.nn.functional as F

    import workbench as wb
    from workbench.capture import attention_modules
    from workbench.testing import make_tiny_model

    clf = wb.load(make_tiny_model(tmp_path / "clf", head="classifier"), device="cpu")
    labels = [0, 1, 1, 0, 1, 0]
    got = wb.head_importance(clf, IMPORTANCE_TEXTS, objective="classifier", labels=labels,
                             batch_size=4, progress=False)
    parts = attention_modules(clf)
    want = np.zeros((clf.num_layers, clf.num_heads))
    for text, label in zip(IMPORTANCE_TEXTS, labels):
        contexts = {}

        def keep(layer):
            def pre_hook(module, args):
                args[0].retain_grad()
                contexts[layer] = args[0]                          # (1, T, H * d)
            return pre_hook

        handles = [p.output.register_forward_pre_hook(keep(p.layer)) for p in parts]
        try:
            enc = clf.tokenizer(text, return_tensors="pt")
            logits = clf.model(**enc).logits
            F.cross_entropy(logits, torch.tensor([label])).backward()
        finally:
            for h in handles:
                h.remove()
        clf.model.zero_grad()
        for p in parts:
            ctx = contexts[p.layer]
            per_head = (ctx.grad * ctx).reshape(-1, p.num_heads, p.head_dim).sum((0, 2))  # (H,)
            want[p.layer] += per_head.abs().detach().numpy() / len(IMPORTANCE_TEXTS)
    np.testing.assert_allclose(_scores(got), want.reshape(-1), rtol=1e-4, atol=1e-9)


def test_layer_normalisation(tiny_lm):
    import workbench as wb
    from workbench import schema as S
    from workbench.errors import InputError

    raw = wb.head_importance(tiny_lm, IMPORTANCE_TEXTS[:3], progress=False)
    norm = wb.head_importance(tiny_lm, IMPORTANCE_TEXTS[:3], normalize="layer", progress=False)
    r = _scores(raw).reshape(tiny_lm.num_layers, tiny_lm.num_heads)
    by_hand = r / np.sqrt((r ** 2).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(_scores(norm), by_hand.reshape(-1), rtol=1e-6)
    assert (norm[S.NORMALIZE] == "layer").all() and raw[S.NORMALIZE].isna().all()
    with pytest.raises(InputError, match="normalize="):
        wb.head_importance(tiny_lm, IMPORTANCE_TEXTS[:3], normalize="global", progress=False)


# --------------------------------------------------------------------------- 3. cache and hooks

def test_cached_features_see_ablations_and_hooks(tiny_lm, tmp_path, monkeypatch):
    """Oracle: the ablated (or hooked) forward without the cache."""
    import workbench as wb

    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    texts = ["The cat sat on the mat.", "Dogs bark, and birds sing in the morning."]
    intact = wb.features(tiny_lm, texts, pool="mean", progress=False)
    assert wb.features(tiny_lm, texts, pool="mean", progress=False).cached    # the cache works
    with wb.ablate(tiny_lm, heads=[(0, 0), (0, 1), (1, 2)]):
        oracle = wb.features(tiny_lm, texts, pool="mean", progress=False, cache=False)
        got = wb.features(tiny_lm, texts, pool="mean", progress=False)
        sim = wb.similarity(tiny_lm, texts, pool="mean", progress=False)
        sim_oracle = wb.similarity(tiny_lm, texts, pool="mean", progress=False, cache=False)
    assert not got.cached
    np.testing.assert_array_equal(got.array, oracle.array)
    assert np.abs(oracle.array[:, -1] - intact.array[:, -1]).max() > 1e-3     # ablation mattered
    np.testing.assert_array_equal(sim["value"], sim_oracle["value"])
    layer = tiny_lm.encoder.encoder.layer[0].output
    handle = layer.register_forward_hook(lambda module, args, out: out * 2.0)
    try:
        hooked = wb.features(tiny_lm, texts, pool="mean", progress=False)
    finally:
        handle.remove()
    assert not hooked.cached and np.abs(hooked.array[:, 1] - 2 * intact.array[:, 1]).max() < 1e-5
    after = wb.features(tiny_lm, texts, pool="mean", progress=False)
    assert after.cached
    np.testing.assert_array_equal(after.array, intact.array)                  # nothing overwrote it


# --------------------------------------------------------------------------- 4. head statistics

STATS_TEXTS = ["The cat sat on the mat.",
               "Dogs bark, and birds sing; in the morning (mostly) they sing loudly!",
               "A very long sentence, with commas, goes on for a while before it finally ends.",
               "Yes."]


def _clark_by_hand(lm, texts):
    """Clark et al.'s averaging, by hand on eager attention tensors: for each text the mean over
    its tokens (queries), then the mean over texts; punctuation is "." and "," only."""
    out = {k: np.zeros((lm.num_layers, lm.num_heads)) for k in ("punct", "eos", "entropy", "top")}
    uniform = 0.0
    with lm.eager_attention(), torch.no_grad():
        for text in texts:
            enc = lm.tokenizer(text, return_tensors="pt")
            tokens = lm.tokenizer.convert_ids_to_tokens(enc["input_ids"][0])
            punct = np.array([t.lstrip("Ġ") in (".", ",") for t in tokens], dtype=float)
            eos = np.array([t == lm.tokenizer.eos_token for t in tokens], dtype=float)
            n = len(tokens)
            uniform += np.log(n) / len(texts)
            for layer, a in enumerate(lm.model(**enc, output_attentions=True).attentions):
                a = a[0].double().numpy()                                   # (H, n, n)
                out["punct"][layer] += (a @ punct).mean(-1) / len(texts)
                out["eos"][layer] += (a @ eos).mean(-1) / len(texts)
                out["entropy"][layer] += -(a * np.log(a)).sum(-1).mean(-1) / len(texts)
                out["top"][layer] += punct[a.argmax(-1)].mean(-1) / len(texts)
    return out, uniform


def test_head_stats_average_per_text_as_clark_et_al(tiny_lm):
    from workbench import schema as S

    import workbench as wb

    df = wb.head_stats(tiny_lm, STATS_TEXTS, batch_size=3, progress=False)
    want, uniform = _clark_by_hand(tiny_lm, STATS_TEXTS)
    shape = (tiny_lm.num_layers, tiny_lm.num_heads)
    got = {k: df.sort_values([S.LAYER, S.HEAD])[c].to_numpy().reshape(shape)
           for k, c in (("punct", S.ATTN_PUNCT), ("eos", S.ATTN_EOS), ("entropy", S.ENTROPY),
                        ("top", S.TOP_PUNCT))}
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-4, atol=1e-6, err_msg=k)
    assert (df[S.AVERAGE] == "text").all() and (df[S.PUNCTUATION] == "clark").all()
    np.testing.assert_allclose(df[S.UNIFORM_ENTROPY], uniform, rtol=1e-6)
    # the token-pooled alternative is another number on texts of different lengths
    pooled = wb.head_stats(tiny_lm, STATS_TEXTS, average="token", progress=False)
    assert not np.allclose(pooled[S.ENTROPY], df[S.ENTROPY], rtol=1e-3)
    # "unicode" punctuation also counts ; ( ) ! -- more mass than "." and "," alone
    wide = wb.head_stats(tiny_lm, STATS_TEXTS, punctuation="unicode", progress=False)
    assert (wide[S.ATTN_PUNCT].to_numpy() > df[S.ATTN_PUNCT].to_numpy()).all()


def test_head_stats_definitions_are_checked(tiny_lm):
    import workbench as wb
    from workbench.errors import InputError

    with pytest.raises(InputError, match="average='query'"):
        wb.head_stats(tiny_lm, STATS_TEXTS, average="query", progress=False)
    with pytest.raises(InputError, match="punctuation='ascii'"):
        wb.head_stats(tiny_lm, STATS_TEXTS, punctuation="ascii", progress=False)


# --------------------------------------------------------------------------- 5. norm-based attention

def _vectors_by_hand(model_dir, text):
    """alpha (L, H, T, T) and f_h(x_j) = (x_j W_V^h + b_V^h) W_O^h (L, H, T, hidden), from
    transformers' eager forward."""
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(model_dir, attn_implementation="eager").eval()
    enc = AutoTokenizer.from_pretrained(model_dir)(text, return_tensors="pt")
    n_heads = model.config.num_attention_heads
    d = model.config.hidden_size // n_heads
    alphas, fs = [], []
    with torch.no_grad():
        out = model(**enc, output_attentions=True, output_hidden_states=True)
        for layer, block in enumerate(model.encoder.layer):
            x = out.hidden_states[layer][0]                                 # (T, hidden)
            sa = block.attention.self
            v = (x @ sa.value.weight.T + sa.value.bias).view(-1, n_heads, d)  # (T, H, d)
            wo = block.attention.output.dense.weight.view(-1, n_heads, d)   # (hidden, H, d)
            fs.append(torch.stack([v[:, h] @ wo[:, h].T for h in range(n_heads)]))
            alphas.append(out.attentions[layer][0])                          # (H, T, T)
    return torch.stack(alphas), torch.stack(fs)


def test_norm_attention_drops_specials_without_renormalising(tiny_lm, tiny_model_dir):
    import workbench as wb

    text = "The pizzeria was closed, unfortunately."
    alpha, f = _vectors_by_hand(tiny_model_dir, text)
    want = (alpha[..., None] * f[:, :, None]).norm(dim=-1)[:, :, 1:-1, 1:-1]   # no <s>, </s>
    got, kept = wb.attention_tensor(tiny_lm, text, mode="norm", drop_special=True)
    assert "<s>" not in kept and "</s>" not in kept
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    assert (got.sum(-1) - 1).abs().max() > 1e-2                  # not turned into a distribution
    df = wb.attention(tiny_lm, [text], mode="norm", drop_special=True)
    assert len(df) == want.numel()
    np.testing.assert_allclose(df.sort_values(["layer", "head", "query", "key"])["weight"],
                               want.reshape(-1).numpy(), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("drop_special", [False, True])
def test_norm_attention_between_words_is_the_norm_of_summed_vectors(tiny_lm, tiny_model_dir,
                                                                      drop_special):
    """Oracle: for query word Q and key word W, ||mean_{i in Q} sum_{j in W} alpha_ij f(x_j)||,
    per head and summed over heads, built from the value vectors and the output projection."""
    import workbench as wb
    from workbench.analysis.attention import capture_attention

    text = "The pizzeria was closed, unfortunately."
    alpha, f = _vectors_by_hand(tiny_model_dir, text)                   # (L, H, T, T), (L, H, T, D)
    cap = capture_attention(tiny_lm, [text], norms=True)[0]
    units = cap.unit_positions(drop_special=drop_special, merge_subwords=True)
    assert any(len(u) > 1 for u in units)                              # real multi-piece words
    L, H, U = alpha.shape[0], alpha.shape[1], len(units)
    per_head, whole = torch.zeros(L, H, U, U), torch.zeros(L, 1, U, U)
    for q, qs in enumerate(units):
        for k, ks in enumerate(units):
            vec = sum(alpha[:, :, i, j, None] * f[:, :, j] for i in qs for j in ks) / len(qs)
            per_head[:, :, q, k] = vec.norm(dim=-1)                    # vec: (L, H, D)
            whole[:, 0, q, k] = vec.sum(1).norm(dim=-1)
    got, labels = wb.attention_tensor(tiny_lm, text, mode="norm", merge_subwords=True,
                                      drop_special=drop_special)
    layer, _ = wb.attention_tensor(tiny_lm, text, mode="norm", merge_subwords=True,
                                   drop_special=drop_special, aggregate="heads")
    assert len(labels) == U
    torch.testing.assert_close(got, per_head, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(layer, whole, atol=1e-5, rtol=1e-4)
    # the sum of the pieces' norms is another number (the old, wrong definition)
    summed = cap.transform(mode="norm", drop_special=drop_special)[0]   # per token
    multi = [k for k, ks in enumerate(units) if len(ks) > 1]
    added = _sum_over_keys(summed, units, drop_special, cap)
    assert not torch.allclose(got[..., multi], added[..., multi], atol=1e-4)


def _sum_over_keys(per_token, units, drop_special, cap):
    """The pieces' norms added up per key word and averaged per query word: (L, H, U, U)."""
    keep = [i for i, s in enumerate(cap.view.special) if not (drop_special and s)]
    col = {p: c for c, p in enumerate(keep)}
    out = torch.zeros(per_token.shape[0], per_token.shape[1], len(units), len(units))
    for q, qs in enumerate(units):
        for k, ks in enumerate(units):
            out[:, :, q, k] = sum(per_token[:, :, col[i], col[j]] for i in qs for j in ks) / len(qs)
    return out


# --------------------------------------------------------------------------- 6. candidate scores


def test_chain_scores_report_lengths_and_warn_when_they_mix(tiny_lm):
    import warnings

    import workbench as wb

    text = "I ate a <mask> for lunch."
    cands = ["pizza", "salad", "soup", "sandwich"]
    with pytest.warns(UserWarning, match="different numbers of tokens"):
        df = wb.score_candidates(tiny_lm, text, cands, method="chain")
    assert df["n_tokens"].nunique() > 1 and df["mixed_lengths"].all()
    assert (df["n_scored"] == df["n_tokens"]).all()
    for row in df.itertuples():
        enc = tiny_lm.tokenizer(row.filled, return_offsets_mapping=True)
        start = row.filled.index(row.candidate)
        pos = [i for i, (a, b) in enumerate(enc["offset_mapping"])
               if b > a and a < start + len(row.candidate) and b > start]
        assert row.n_tokens == len(pos)
        assert row.logprob == pytest.approx(chain_logprob_by_loop(tiny_lm, row.filled, pos), abs=1e-4)
        assert row.mean_logprob == pytest.approx(row.logprob / len(pos))
    per_token = df.sort_values("mean_logprob", ascending=False)["candidate"].tolist()
    with warnings.catch_warnings():
        warnings.simplefilter("error")                       # normalised: no warning
        norm = wb.score_candidates(tiny_lm, text, cands, method="chain", rank_by="mean_logprob")
        one_length = df.groupby("n_tokens")["candidate"].apply(list).iloc[0]
        same = wb.score_candidates(tiny_lm, text, one_length, method="chain")
    assert norm.sort_values("rank")["candidate"].tolist() == per_token
    assert not same["mixed_lengths"].any()


def test_a_prefix_touching_the_mask_is_context(tiny_lm):
    import workbench as wb
    from workbench.errors import InputError

    df = wb.score_candidates(tiny_lm, "It is un<mask> to rain.", ["likely"], method="chain")
    filled = "It is unlikely to rain."
    tokens = tiny_lm.tokenizer.convert_ids_to_tokens(tiny_lm.tokenizer(filled)["input_ids"])
    un = tokens.index("Ġun")                                  # the prefix is a token of its own
    pos = list(range(un + 1, un + 1 + df.n_tokens[0]))
    assert "".join(tokens[p] for p in pos) == "likely"        # exactly the pieces after the prefix
    assert df.logprob[0] == pytest.approx(chain_logprob_by_loop(tiny_lm, filled, pos), abs=1e-4)
    # 'true' after 'un' is tokenised 'Ġu nt rue': a token crosses the prefix, so chain refuses
    with pytest.raises(InputError, match="cannot be separated"):
        wb.score_candidates(tiny_lm, "It is un<mask> to rain.", ["true"], method="chain")
    whole = wb.score_candidates(tiny_lm, "It is <mask> to rain.", ["untrue"], method="chain")
    assert whole.filled[0] == "It is untrue to rain."
    with pytest.raises(InputError, match="rank_by="):
        wb.score_candidates(tiny_lm, "It is <mask>.", ["x"], rank_by="mean")


def test_feature_cache_sees_a_change_in_any_single_weight(tiny_model_dir):
    """The cache key covers every weight byte: one changed element anywhere changes the key, and
    an in-place write to the same model is seen too (torch's tensor version counter)."""
    import torch

    import workbench as wb
    from workbench.analysis.features import model_fingerprint

    lm = wb.load(tiny_model_dir, device="cpu")
    before = model_fingerprint(lm)
    assert model_fingerprint(lm) == before  # reused while nothing changed
    weight = lm.model.get_input_embeddings().weight
    with torch.no_grad():
        weight[7, 3] += 1e-3   # one element, not on any stride a sample would take
    changed = model_fingerprint(lm)
    assert changed != before
    with torch.no_grad():
        weight[7, 3] -= 1e-3
    assert model_fingerprint(lm) == before  # same bytes again: same key
