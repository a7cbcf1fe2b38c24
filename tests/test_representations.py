"""Features, probes, CKA, embedding maps and POS data, checked against independent answers.

Oracles: transformers' own `output_hidden_states` on a separately loaded model; hand-made
features with a planted label; the HSIC form of CKA with an explicit centring matrix; sklearn's
PCA on the same vectors.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pandas as pd
import pytest
import torch

import workbench as wb
from workbench import schema as S
from workbench.analysis import features as feat_mod
from workbench.analysis.features import Features
from workbench.analysis.linear_probe import control_labels, probe_features
from workbench.analysis.pos_data import read_tagged, sentences
from workbench.errors import InputError, MissingDependencyError

TEXTS = ["The cat sat on the mat.",
         "A considerably longer sentence, with commas and several more words in it, pads others.",
         "Dogs bark."]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def reference(tiny_model_dir):
    """The same checkpoint loaded by plain transformers (no workbench code in the loop)."""
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(tiny_model_dir, attn_implementation="eager").eval()
    return model, AutoTokenizer.from_pretrained(tiny_model_dir)


def _ref_states(reference, text):
    model, tok = reference
    enc = tok(text, return_tensors="pt")
    with torch.no_grad():
        out = model(**enc, output_hidden_states=True)
    special = torch.tensor(tok.get_special_tokens_mask(enc["input_ids"][0].tolist(),
                                                       already_has_special_tokens=True), dtype=bool)
    return torch.stack(out.hidden_states, 0)[:, 0].numpy(), ~special.numpy()   # (L+1, T, D), (T,)


# ---------------------------------------------------------------- features
def test_features_equal_transformers_hidden_states(tiny_lm, reference):
    toks = wb.features(tiny_lm, TEXTS, pool="tokens", batch_size=2, cache=False, progress=False)
    mean = wb.features(tiny_lm, TEXTS, pool="mean", batch_size=2, cache=False, progress=False)
    cls = wb.features(tiny_lm, TEXTS, pool="cls", batch_size=2, cache=False, progress=False)
    assert toks.layers == list(range(tiny_lm.num_layers + 1))
    for i, text in enumerate(TEXTS):
        states, content = _ref_states(reference, text)
        rows = toks.index[S.TEXT_ID] == i
        positions = toks.index.loc[rows, S.POSITION].to_numpy()
        assert list(positions) == list(np.flatnonzero(content))
        ours = toks.array[rows.to_numpy()]                                  # (n, L+1, D)
        np.testing.assert_allclose(ours, states[:, positions].transpose(1, 0, 2), atol=1e-5)
        np.testing.assert_allclose(mean.array[i], states[:, content].mean(1), atol=1e-5)
        np.testing.assert_allclose(cls.array[i], states[:, 0], atol=1e-5)


def test_padding_does_not_change_pooled_features(tiny_lm):
    alone = wb.features(tiny_lm, [TEXTS[2]], pool="mean", cache=False, progress=False)
    padded = wb.features(tiny_lm, [TEXTS[1], TEXTS[2]], pool="mean", batch_size=2, cache=False,
                         progress=False)
    assert tiny_lm.tokens(TEXTS[1]).ids != tiny_lm.tokens(TEXTS[2]).ids
    np.testing.assert_allclose(padded.array[1], alone.array[0], atol=1e-5)
    words_alone = wb.features(tiny_lm, [TEXTS[2]], pool="words", cache=False, progress=False)
    words_padded = wb.features(tiny_lm, [TEXTS[1], TEXTS[2]], pool="words", batch_size=2,
                               cache=False, progress=False)
    np.testing.assert_allclose(words_padded.array[words_padded.index[S.TEXT_ID].to_numpy() == 1],
                               words_alone.array, atol=1e-5)


def test_given_words_pool_the_tokens_inside_each_word(tiny_lm):
    words = ["Lorillard", "Inc.", ",", "York-based", "did", "n't", "!"]
    text = " ".join(words)
    f = wb.features(tiny_lm, [words], pool="words", cache=False, progress=False)
    t = wb.features(tiny_lm, text, pool="tokens", cache=False, progress=False)
    assert f.index[S.WORD].tolist() == words
    enc = tiny_lm.tokenizer(text).encodings[0]       # oracle: the tokenizer's words and their chars
    starts = np.cumsum([0] + [len(w) + 1 for w in words])
    for k in range(len(words)):
        pos = [p for p, wid in enumerate(enc.word_ids) if wid is not None
               and starts[k] <= enc.word_to_chars(wid)[0] < starts[k] + len(words[k])]
        assert f.index.loc[k, S.POSITION] == min(pos)
        inside = t.index[S.POSITION].isin(pos).to_numpy()
        np.testing.assert_allclose(f.array[k], t.array[inside].mean(0), atol=1e-6)


def test_cache_hit_returns_identical_arrays_without_running_the_model(tiny_lm, monkeypatch):
    first = wb.features(tiny_lm, TEXTS, pool="words", layers=[0, -1], progress=False)
    assert not first.cached
    assert list(feat_mod.cache_dir().glob("*.safetensors")) and not list(feat_mod.cache_dir().glob("*.pkl"))

    def boom(*a, **k):
        raise AssertionError("the model ran although the result is cached")

    monkeypatch.setattr(feat_mod.capture, "forward", boom)
    second = wb.features(tiny_lm, TEXTS, pool="words", layers=[0, -1], progress=False)
    assert second.cached
    np.testing.assert_array_equal(second.array, first.array)
    pd.testing.assert_frame_equal(second.index, first.index)
    with pytest.raises(AssertionError, match="model ran"):        # other settings: a miss
        wb.features(tiny_lm, TEXTS, pool="mean", layers=[0, -1], progress=False)


def test_cache_key_changes_with_the_weights(tiny_model_dir):
    lm = wb.load(tiny_model_dir, device="cpu")
    before = feat_mod.model_fingerprint(lm)
    with torch.no_grad():
        lm.encoder.encoder.layer[-1].output.dense.weight[3, 5] += 0.5
    assert feat_mod.model_fingerprint(lm) != before


def test_layer_selection_and_errors(tiny_lm):
    f = wb.features(tiny_lm, TEXTS[:1], layers=-1, cache=False, progress=False)
    assert f.layers == [tiny_lm.num_layers]
    assert f.to_frame().shape[1] == 1 + 2 + 1 + f.dim          # model, text_id, text, layer, f*
    with pytest.raises(InputError, match="out of range"):
        wb.features(tiny_lm, TEXTS, layers=[tiny_lm.num_layers + 1], progress=False)
    with pytest.raises(InputError, match="pool"):
        wb.features(tiny_lm, TEXTS, pool="max", progress=False)
    with pytest.raises(InputError):
        wb.features(tiny_lm, ["ok", "   "], progress=False)


# ---------------------------------------------------------------- probes
def _planted(n=400, d=16, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    noise = rng.normal(size=(n, 2, d)).astype(np.float32)
    noise[:, 1, 0] += 6.0 * (2 * y - 1)        # layer 1 carries the label in one direction
    index = pd.DataFrame({S.TEXT_ID: np.arange(n), S.TEXT: [f"t{i}" for i in range(n)]})
    return Features(noise, index, [0, 1], "mean", "planted"), y


def test_probe_finds_a_planted_feature_and_not_shuffled_labels():
    feats, y = _planted()
    res = probe_features(feats, y).pivot(index=S.LAYER, columns=S.METRIC, values=S.VALUE)
    assert res.loc[1, "accuracy"] >= 0.97
    assert res.loc[0, "accuracy"] <= 0.65                  # pure noise layer: chance
    assert res.loc[1, "control_accuracy"] <= 0.65          # unseen texts, random labels: chance
    assert res.loc[1, "selectivity"] >= 0.3
    assert 0.35 <= res.loc[1, "majority"] <= 0.65
    shuffled = np.random.default_rng(1).permutation(y)
    res2 = probe_features(feats, shuffled).pivot(index=S.LAYER, columns=S.METRIC, values=S.VALUE)
    assert res2.loc[1, "accuracy"] <= 0.65


def test_control_task_exposes_memorisation():
    """Features that only identify the word type: the probe and the control task both succeed."""
    rng = np.random.default_rng(0)
    vocab = [f"w{i}" for i in range(20)]
    words = rng.choice(vocab, size=1500)
    tag_of = {w: ("N" if i % 2 else "V") for i, w in enumerate(vocab)}
    x = np.eye(len(vocab), dtype=np.float32)[[vocab.index(w) for w in words]][:, None]   # (N, 1, V)
    index = pd.DataFrame({S.TEXT_ID: np.arange(len(words)) // 10, S.WORD: words})
    feats = Features(x, index, [3], "words", "onehot")
    res = probe_features(feats, [tag_of[w] for w in words]).set_index(S.METRIC)[S.VALUE]
    assert res["accuracy"] == pytest.approx(1.0)
    assert res["control_accuracy"] >= 0.95                 # a type-keyed control is memorised too
    assert res["selectivity"] <= 0.05
    c = control_labels(words, [tag_of[w] for w in words])
    assert all(len(set(c[words == w])) == 1 for w in vocab)  # one fixed control label per type


def test_linear_probe_end_to_end_on_tokens_and_sentences(tiny_lm):
    conll = "# a comment\n" + "\n\n".join(
        "\n".join(f"{w}\tX\t{t}" for w, t in zip(s.split(), tags))
        for s, tags in [("The cat sat .", "DT NN VBD .".split()), ("A dog ran .", "DT NN VBD .".split()),
                        ("The bird sang .", "DT NN VBD .".split()), ("A fish swam .", "DT NN VBD .".split()),
                        ("The man left .", "DT NN VBD .".split()), ("A girl came .", "DT NN VBD .".split())])
    data = wb.read_conll(conll)
    assert data.groupby(S.TEXT_ID).size().tolist() == [4] * 6
    res = wb.linear_probe(tiny_lm, data, task="token", layers=[0, -1], progress=False, test_size=0.34)
    assert set(res[S.METRIC]) == {"accuracy", "majority", "control_accuracy", "selectivity"}
    assert set(res[S.LAYER]) == {0, tiny_lm.num_layers}
    assert ((res[S.N_TRAIN] + res[S.N_TEST]) == len(data)).all()
    assert (res[S.N_LABELS] == data[S.LABEL].nunique()).all() and (res[S.POOL] == "words").all()
    assert res[S.CONVERGED].dtype == bool
    acc = res[res[S.METRIC] == "accuracy"][S.VALUE]
    assert ((acc >= 0) & (acc <= 1)).all()
    pairs = [(t, i % 2) for i, t in enumerate(["good film", "bad film", "great plot", "awful plot",
                                               "fine acting", "poor acting", "nice", "dull"])]
    res_s = wb.linear_probe({"a": tiny_lm, "b": tiny_lm}, pairs, task="sentence", layers=[0],
                            control=False, progress=False)
    assert set(res_s[S.MODEL]) == {"a", "b"} and "control_accuracy" not in set(res_s[S.METRIC])
    assert (res_s[S.N_TRAIN] + res_s[S.N_TEST] == len(pairs)).all()   # per model, per row
    assert res_s[S.CONVERGED].all()                    # 1000 steps suffice on 6 rows
    starved = wb.linear_probe(tiny_lm, pairs, layers=[0], control=False, max_iter=1,
                              progress=False)        # one step: lbfgs cannot converge
    assert not starved[S.CONVERGED].any()
    with pytest.raises(InputError, match="text_col"):
        wb.linear_probe(tiny_lm, pd.DataFrame({"sentence": ["a b"], "y": [1]}), progress=False)


# ---------------------------------------------------------------- CKA
def _cka_hsic(x, y):
    """Independent oracle: tr(K H L H) / sqrt(tr(K H K H) tr(L H L H)) with K = X X^T."""
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    k, l_ = x @ x.T, y @ y.T
    hsic = lambda a, b: np.trace(a @ h @ b @ h)  # noqa: E731
    return hsic(k, l_) / np.sqrt(hsic(k, k) * hsic(l_, l_))


@pytest.mark.parametrize("n,d", [(50, 8), (6, 20)])   # feature-space and example-space branches
def test_linear_cka_known_answers(n, d):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, d))
    y = np.tanh(x @ rng.normal(size=(d, 5))) + 0.3 * rng.normal(size=(n, 5))
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    assert wb.linear_cka(x, x) == pytest.approx(1.0)
    assert wb.linear_cka(x, y) == pytest.approx(_cka_hsic(x, y), rel=1e-9)
    assert wb.linear_cka(x @ q * 3.7, y) == pytest.approx(wb.linear_cka(x, y), rel=1e-9)
    if n > d:  # an invertible but non-orthogonal map changes CKA (the test can fail)
        skew = np.diag(np.linspace(0.1, 10, d))
        assert abs(wb.linear_cka(x @ skew, y) - wb.linear_cka(x, y)) > 1e-3


def test_similarity_of_a_model_with_itself(tiny_lm):
    df = wb.similarity(tiny_lm, TEXTS, progress=False)
    n = tiny_lm.num_layers + 1
    assert len(df) == n * n and set(df.columns) >= {S.LAYER_A, S.LAYER_B, S.VALUE, S.MODEL_A}
    m = df.pivot(index=S.LAYER_A, columns=S.LAYER_B, values=S.VALUE).to_numpy()
    np.testing.assert_allclose(np.diag(m), 1.0, atol=1e-9)
    np.testing.assert_allclose(m, m.T, atol=1e-9)
    f = wb.features(tiny_lm, TEXTS, pool="tokens", progress=False)
    assert m[0, n - 1] == pytest.approx(wb.linear_cka(f.layer(0), f.layer(n - 1)))


# ---------------------------------------------------------------- embedding maps
def test_embedding_map_is_sklearn_pca_per_layer(tiny_lm):
    from sklearn.decomposition import PCA

    labels = ["animal", "other", "animal"]
    m = wb.embedding_map(tiny_lm, TEXTS, pool="tokens", labels=labels, progress=False)
    f = wb.features(tiny_lm, TEXTS, pool="tokens", progress=False)
    for layer in f.layers:
        sub = m[m[S.LAYER] == layer]
        pca = PCA(n_components=2, random_state=0).fit(f.layer(layer))
        np.testing.assert_allclose(sub[[S.X, S.Y]].to_numpy(), pca.transform(f.layer(layer)),
                                   atol=1e-4)
        for col, ratio in zip((S.VARIANCE_X, S.VARIANCE_Y), pca.explained_variance_ratio_):
            np.testing.assert_allclose(sub[col], ratio, rtol=1e-4, err_msg=col)
        assert sub[S.LABEL].tolist() == [labels[i] for i in f.index[S.TEXT_ID]]
    assert (m[S.TEXT] == [TEXTS[i] for i in m[S.TEXT_ID]]).all()
    if importlib.util.find_spec("umap") is None:
        with pytest.raises(MissingDependencyError, match="umap-learn"):
            wb.embedding_map(f, method="umap")
    else:
        assert len(wb.embedding_map(f, method="umap")) == len(m)


# ---------------------------------------------------------------- POS data
def test_read_tagged_splits_sentences_and_restores_ptb_characters():
    df = read_tagged("Mr./NNP Smith/NNP said/VBD ``/`` hi/UH ./. ''/'' He/PRP left/VBD -LRB-/-LRB- 1\\/2/CD -RRB-/-RRB- ./.")
    assert sentences(df) == [["Mr.", "Smith", "said", '"', "hi", ".", '"'],
                             ["He", "left", "(", "1/2", ")", "."]]
    assert df[S.LABEL].tolist()[:3] == ["NNP", "NNP", "VBD"]
    with pytest.raises(InputError, match="word/TAG"):
        read_tagged("bad token")


def test_read_conll_columns_and_errors(tmp_path):
    path = tmp_path / "x.conll"
    path.write_text("1\tThe\tDT\n2\tcat\tNN\n\n\n1\tHi\tUH\n")
    df = wb.read_conll(path, word_col=1)
    assert sentences(df) == [["The", "cat"], ["Hi"]] and df[S.LABEL].tolist() == ["DT", "NN", "UH"]
    with pytest.raises(InputError, match="column"):
        wb.read_conll("onlyoneword\n", word_col=0, label_col=2)
    with pytest.raises(InputError, match="no such"):
        wb.read_conll(tmp_path / "missing.conll")


@pytest.mark.slow
def test_pos_corpus_downloads_the_gold_wsj_sample():
    df = wb.pos_corpus("wsj")
    assert df[S.TEXT_ID].nunique() == 1065 and df[S.LABEL].nunique() >= 40
    assert sentences(df)[0][:3] == ["Pierre", "Vinken", ","]
