"""Head analyses with known answers: planted heads, uniform entropy, padding, gates, gradients."""

from __future__ import annotations

import copy
import math
import sys

import numpy as np
import pandas as pd
import pytest
import torch

import workbench as wb
from workbench import schema as S
from workbench.analysis.ablation import objective_loss
from workbench.analysis.head_clusters import js_divergence_sums, label_patterns
from workbench.analysis.heads import KeyMasks, attention_stats, key_masks
from workbench.capture import attention_modules, encode
from workbench.errors import InputError, MissingDependencyError, MissingHeadError

SENTENCES = [
    "The cat sat on the mat.",
    "Dogs bark, and birds sing in the morning.",
    "A very long sentence, with commas, goes on for a while before it finally ends.",
    "Short one.",
    "Where is the station?",
]


# -- synthetic maps ---------------------------------------------------------------------------

def _planted(lengths, T):
    """(1, B, 3, T, T) maps: head 0 previous token, head 1 all on <s>, head 2 uniform."""
    B = len(lengths)
    att = torch.rand(B, 3, T, T)                       # garbage in padded query rows
    valid = torch.zeros(B, T, dtype=torch.bool)
    for b, n in enumerate(lengths):
        valid[b, :n] = True
        att[b, :, :n] = 0.0
        for q in range(n):
            att[b, 0, q, max(q - 1, 0)] = 1.0          # q = 0 has no previous token: itself
            att[b, 1, q, 0] = 1.0
            att[b, 2, q, :n] = 1.0 / n
    bos = torch.zeros(B, T, dtype=torch.bool)
    bos[:, 0] = True
    eos = torch.zeros(B, T, dtype=torch.bool)
    for b, n in enumerate(lengths):
        eos[b, n - 1] = True
    punct = torch.zeros(B, T, dtype=torch.bool)
    return [att], KeyMasks(valid=valid, bos=bos, eos=eos, punct=punct)


def test_planted_previous_token_and_bos_heads_are_found():
    lengths = [5, 9, 3]
    atts, masks = _planted(lengths, T=9)
    df = attention_stats(atts, masks, average="token").set_index(S.HEAD)
    total = sum(lengths)
    prev_share = sum(n - 1 for n in lengths) / total
    assert df.loc[0, S.ATTN_PREV] == pytest.approx(prev_share)
    assert df.loc[0, S.TOP_PREV] == pytest.approx(prev_share)
    assert df.loc[0, S.ATTN_SELF] == pytest.approx(len(lengths) / total)   # only q = 0
    assert df.loc[0, S.DISTANCE] == pytest.approx(prev_share)
    assert df.loc[0, S.ENTROPY] == pytest.approx(0.0, abs=1e-6)
    assert df.loc[1, S.ATTN_BOS] == pytest.approx(1.0)
    assert df.loc[1, S.TOP_BOS] == pytest.approx(1.0)
    assert df.loc[1, S.ATTN_PREV] == pytest.approx(len(lengths) / total)   # q = 1 -> key 0
    # the statistics single out the planted heads
    assert df[S.ATTN_PREV].idxmax() == 0 and df[S.ATTN_BOS].idxmax() == 1
    # uniform head: entropy is log(n) per query; its distance is the uniform reference
    expected = sum(n * math.log(n) for n in lengths) / total
    assert df.loc[2, S.ENTROPY] == pytest.approx(expected, rel=1e-5)
    assert df.loc[2, S.DISTANCE] == pytest.approx(df.loc[2, S.UNIFORM_DISTANCE], rel=1e-5)
    np.testing.assert_allclose(df[S.UNIFORM_ENTROPY], expected, rtol=1e-6)
    assert (df[S.N_QUERIES] == total).all()


@pytest.mark.parametrize("n", [1, 4, 17])
def test_entropy_of_uniform_attention_is_log_n(n):
    atts, masks = _planted([n], T=n)
    df = attention_stats(atts, masks).set_index(S.HEAD)
    assert df.loc[2, S.ENTROPY] == pytest.approx(math.log(n), abs=1e-6)


def test_patterns_of_planted_heads():
    lengths = [12, 12]
    atts, masks = _planted(lengths, T=12)
    df = attention_stats(atts, masks)
    labels = label_patterns(df).tolist()
    assert labels[:2] == ["diagonal", "vertical"]
    assert labels[2] == "heterogeneous"  # uniform attention is neither local nor focused
    local = df.iloc[[2]].assign(**{S.DISTANCE: 0.2 * df.loc[2, S.UNIFORM_DISTANCE]})
    assert label_patterns(local).item() == "block"          # the reference is the row's column
    assert label_patterns(local, uniform_distance=0.1 * df.loc[2, S.UNIFORM_DISTANCE]
                          ).item() == "heterogeneous"       # an explicit reference wins


def test_js_divergence_known_answers():
    valid = torch.ones(1, 2, dtype=torch.bool)
    one_hot_a = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])          # (B, T, T)
    one_hot_b = torch.tensor([[[0.0, 1.0], [0.0, 1.0]]])
    half = torch.full((1, 2, 2), 0.5)
    att = torch.stack([one_hot_a, one_hot_a, one_hot_b, half])     # (N, B, T, T)
    js = js_divergence_sums(att, valid) / 2                        # mean over the 2 queries
    assert js[0, 1] == pytest.approx(0.0, abs=1e-7)                # identical heads
    assert js[0, 2] == pytest.approx(1.0)                          # disjoint support: 1 bit
    # JS(one-hot, half) = H(3/4, 1/4) - (0 + 1) / 2 in bits
    h = -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))
    assert js[0, 3] == pytest.approx(h - 0.5, rel=1e-6)
    assert torch.allclose(js, js.T)


# -- real (tiny) model ------------------------------------------------------------------------

def test_key_masks_find_bos_eos_and_punctuation(tiny_lm):
    batch = encode(tiny_lm, ["Hello, world.", "Yes"])
    m = key_masks(tiny_lm, batch)
    for row, view in enumerate(batch.views):
        n = len(view)
        assert m.valid[row].sum() == n
        assert m.bos[row].nonzero().flatten().tolist() == [0]
        assert m.eos[row].nonzero().flatten().tolist() == [n - 1]
        punct = [view.tokens[i] for i in m.punct[row].nonzero().flatten().tolist()]
        assert punct == ([",", "."] if row == 0 else [])


def test_head_stats_matches_a_plain_transformers_loop(tiny_lm):
    """Independent oracle: eager transformers attentions reduced by explicit numpy loops."""
    texts = SENTENCES[:3]
    df = wb.head_stats(tiny_lm, texts, average="token", progress=False).set_index([S.LAYER, S.HEAD])
    sums = np.zeros((tiny_lm.num_layers, tiny_lm.num_heads, 3))
    count = 0
    with tiny_lm.eager_attention(), torch.no_grad():
        for text in texts:
            enc = tiny_lm.tokenizer(text, return_tensors="pt")
            att = tiny_lm.model(**enc, output_attentions=True).attentions
            n = enc["input_ids"].shape[1]
            count += n
            for layer, a in enumerate(att):
                a = a[0].numpy()                                   # (H, n, n)
                for q in range(n):
                    row = a[:, q]                                  # (H, n)
                    sums[layer, :, 0] += row[:, 0]                 # <s>
                    sums[layer, :, 1] += -(row * np.log(row)).sum(-1)
                    sums[layer, :, 2] += (row * np.abs(np.arange(n) - q)).sum(-1)
    ours = df[[S.ATTN_BOS, S.ENTROPY, S.DISTANCE]].to_numpy().reshape(sums.shape)
    np.testing.assert_allclose(ours, sums / count, rtol=1e-4)
    assert (df[S.N_QUERIES] == count).all() and (df[S.N_TEXTS] == len(texts)).all()


def test_padding_does_not_change_the_statistics(tiny_lm):
    alone = wb.head_stats(tiny_lm, SENTENCES, batch_size=1, progress=False)
    padded = wb.head_stats(tiny_lm, SENTENCES, batch_size=len(SENTENCES), progress=False)
    pd.testing.assert_frame_equal(alone, padded, rtol=1e-5, atol=1e-6)
    # per text: the same sentence alone and inside a padded batch
    by_text = wb.head_stats(tiny_lm, SENTENCES, by_text=True, batch_size=len(SENTENCES),
                            progress=False)
    single = wb.head_stats(tiny_lm, [SENTENCES[3]], progress=False)
    row = by_text[by_text[S.TEXT_ID] == 3].reset_index(drop=True)
    cols = list(wb.analysis.heads.STATS) + [S.N_QUERIES, S.UNIFORM_DISTANCE, S.UNIFORM_ENTROPY]
    np.testing.assert_allclose(row[cols].to_numpy(dtype=float),
                               single[cols].to_numpy(dtype=float), rtol=1e-5, atol=1e-6)


def test_head_stats_compares_models_in_one_frame(tiny_lm):
    df = wb.head_stats({"a": tiny_lm, "b": tiny_lm}, SENTENCES[:2], progress=False)
    assert sorted(df[S.MODEL].unique()) == ["a", "b"]
    assert len(df) == 2 * tiny_lm.num_layers * tiny_lm.num_heads


def test_head_clusters_map_every_head(tiny_lm):
    df, dist = wb.head_clusters(tiny_lm, SENTENCES, return_distances=True, progress=False)
    n = tiny_lm.num_layers * tiny_lm.num_heads
    assert len(df) == n and dist.shape == (n, n)
    d = dist.to_numpy()
    assert np.allclose(d, d.T) and np.allclose(np.diag(d), 0) and (d[~np.eye(n, dtype=bool)] > 0).all()
    assert np.isfinite(df[[S.X, S.Y]].to_numpy()).all()
    assert set(df[S.PATTERN]) <= {"diagonal", "vertical", "block", "heterogeneous"}
    # the same pass gives the same statistics as head_stats
    stats = wb.head_stats(tiny_lm, SENTENCES, average="token", punctuation="unicode",
                          progress=False)
    np.testing.assert_allclose(df[S.ENTROPY], stats[S.ENTROPY], rtol=1e-5)


# -- gates and importance ---------------------------------------------------------------------

def test_gating_a_head_to_zero_equals_removing_it_by_hand(tiny_lm):
    batch = encode(tiny_lm, SENTENCES[:3])
    layer, head = 1, 2
    with torch.no_grad():
        base = tiny_lm.model(**batch.inputs).logits
        with wb.ablate(tiny_lm, heads=[(layer, head)]):
            gated = tiny_lm.model(**batch.inputs).logits
        after = tiny_lm.model(**batch.inputs).logits
        by_hand = copy.deepcopy(tiny_lm.model)
        d = attention_modules(tiny_lm)[layer].head_dim
        by_hand.base_model.encoder.layer[layer].attention.output.dense.weight[
            :, head * d:(head + 1) * d] = 0.0
        removed = by_hand(**batch.inputs).logits
    torch.testing.assert_close(gated, removed, rtol=0, atol=1e-6)
    assert (gated - base).abs().max() > 1e-4          # the head mattered
    torch.testing.assert_close(after, base)           # hooks are gone after the block


def test_ablate_rejects_heads_that_do_not_exist(tiny_lm):
    with pytest.raises(InputError, match="does not exist"):
        with wb.ablate(tiny_lm, heads=[(tiny_lm.num_layers, 0)]):
            pass


@pytest.fixture(scope="module")
def lm64(tiny_lm):
    """A float64 copy of the tiny model, for finite differences."""
    return wb.LM(model=copy.deepcopy(tiny_lm.model).double(), tokenizer=tiny_lm.tokenizer,
                 device=tiny_lm.device, name="tiny64", kind="mlm")


def test_gradient_importance_matches_finite_differences(lm64):
    """The score is the mean over texts of |d loss(text) / d gate|, each text's loss alone."""
    texts = SENTENCES[:4]
    grad = wb.head_importance(lm64, texts, batch_size=len(texts), progress=False)
    grad = grad.set_index([S.LAYER, S.HEAD])[S.SCORE]
    eps = 1e-4
    for layer, head in [(0, 1), (1, 3)]:
        with wb.ablate(lm64, [(layer, head)], scale=1 + eps):
            up = objective_loss(lm64, texts, batch_size=1, by_text=True)      # (N,) per text
        with wb.ablate(lm64, [(layer, head)], scale=1 - eps):
            down = objective_loss(lm64, texts, batch_size=1, by_text=True)
        fd = np.abs(up - down) / (2 * eps)                                   # per text
        assert grad[(layer, head)] == pytest.approx(fd.mean(), rel=1e-4, abs=1e-10)
        assert fd.mean() > 1e-7


def test_leave_one_out_is_the_loss_increase_of_ablation(tiny_lm):
    texts = SENTENCES[:3]
    loo = wb.head_importance(tiny_lm, texts, method="loo", progress=False)
    base = objective_loss(tiny_lm, texts)
    np.testing.assert_allclose(loo[S.BASE_LOSS], base, rtol=1e-6)
    with wb.ablate(tiny_lm, [(0, 2)]):
        removed = objective_loss(tiny_lm, texts)
    score = loo.set_index([S.LAYER, S.HEAD]).loc[(0, 2), S.SCORE]
    assert score == pytest.approx(removed - base, abs=1e-7)
    assert set(loo[S.METHOD]) == {"loo"} and set(loo[S.OBJECTIVE]) == {"mlm"}


def test_classifier_objective(tmp_path):
    from workbench.testing import make_tiny_model

    clf = wb.load(make_tiny_model(tmp_path / "clf", head="classifier"), device="cpu")
    labels = [0, 1, 0]
    df = wb.head_importance(clf, SENTENCES[:3], objective="classifier", labels=labels,
                            progress=False)
    assert len(df) == clf.num_layers * clf.num_heads and (df[S.SCORE] >= 0).all()
    assert df[S.SCORE].sum() > 0
    names = [clf.config.id2label[i] for i in labels]                 # class names work too
    by_name = wb.head_importance(clf, SENTENCES[:3], objective="classifier", labels=names,
                                 progress=False)
    np.testing.assert_allclose(by_name[S.SCORE], df[S.SCORE])
    with pytest.raises(InputError, match="not classes"):
        wb.head_importance(clf, SENTENCES[:3], objective="classifier",
                           labels=["good", "bad", "good"], progress=False)
    with pytest.raises(InputError, match="one label per text"):
        wb.head_importance(clf, SENTENCES[:3], objective="classifier", labels=[0], progress=False)


def test_importance_errors_name_the_fix(tiny_lm):
    with pytest.raises(MissingHeadError, match="classifier"):
        wb.head_importance(tiny_lm, SENTENCES, objective="classifier", labels=[0] * 5,
                           progress=False)
    with pytest.raises(InputError, match="method"):
        wb.head_importance(tiny_lm, SENTENCES, method="shapley", progress=False)


# -- compare ----------------------------------------------------------------------------------

def test_compare_attention_of_a_model_with_itself_is_zero(tiny_lm):
    df = wb.compare_attention(tiny_lm, tiny_lm, SENTENCES, progress=False)
    assert len(df) == tiny_lm.num_layers * tiny_lm.num_heads
    assert np.allclose(df[S.JS_DISTANCE], 0, atol=1e-6)
    assert np.allclose(df[S.COSINE], 1, atol=1e-6)
    assert (df[S.N_TEXTS] == len(SENTENCES)).all()
    assert (df[S.N_QUERIES] == sum(len(tiny_lm.tokens(t)) for t in SENTENCES)).all()


def test_compare_attention_sees_a_changed_head(tiny_lm):
    other = wb.LM(model=copy.deepcopy(tiny_lm.model), tokenizer=tiny_lm.tokenizer,
                  device=tiny_lm.device, name="changed")
    with torch.no_grad():
        q = other.model.base_model.encoder.layer[1].attention.self.query
        q.weight[:8] *= 20.0                           # head 0 of layer 1 (head_dim 8) sharpens
    df = wb.compare_attention(tiny_lm, other, SENTENCES, progress=False)
    df = df.set_index([S.LAYER, S.HEAD])
    assert np.allclose(df.loc[0, S.JS_DISTANCE], 0, atol=1e-6)   # layer 0 unchanged
    changed = df.loc[1, S.JS_DISTANCE]
    assert changed.idxmax() == 0 and changed[0] > 0.05
    assert changed.drop(0).max() < 1e-6


def test_compare_attention_needs_one_tokenizer(tiny_lm, tmp_path):
    from workbench.testing import make_tiny_model

    other = wb.load(make_tiny_model(tmp_path / "other", vocab_size=600), device="cpu")
    with pytest.raises(InputError, match="tokenizer"):
        wb.compare_attention(tiny_lm, other, SENTENCES, progress=False)


# -- syntax heads -----------------------------------------------------------------------------

def test_syntax_heads_without_spacy_says_how_to_install(tiny_lm, monkeypatch):
    monkeypatch.setitem(sys.modules, "spacy", None)    # import spacy -> ImportError
    with pytest.raises(MissingDependencyError, match="pip install"):
        wb.syntax_heads(tiny_lm, SENTENCES)


@pytest.fixture(scope="module")
def nlp():
    pytest.importorskip("spacy", reason="optional extra: spaCy not installed")
    from workbench.analysis.syntax_heads import load_parser

    try:
        return load_parser()
    except MissingDependencyError as err:
        pytest.skip(f"optional extra: {err}")


def test_planted_syntax_head_is_found(tiny_lm, nlp):
    from workbench.analysis.syntax_heads import SyntaxAccumulator, align_parse, word_attention

    acc = SyntaxAccumulator(2, 2)
    expected = {}
    for text in SENTENCES:
        enc = tiny_lm.tokenizer(text, return_offsets_mapping=True)
        view = tiny_lm.tokens(text)
        parse = align_parse(nlp(text), enc["offset_mapping"], view.special)
        n = len(view)
        att = torch.softmax(torch.randn(2, 2, n, n), -1)          # (L, H, T, T)
        att[1, 0] = 0.0
        for unit in range(len(parse.units)):                       # default: attend to <s>
            att[1, 0, parse.units[unit], 0] = 1.0
        for d, g in zip(parse.deps, parse.govs):                   # dependent -> governor
            att[1, 0, parse.units[d]] = 0.0
            att[1, 0, parse.units[d], parse.units[g][0]] = 1.0
        acc.update(word_attention(att, parse.units), parse)
        for d, g, rel in zip(parse.deps, parse.govs, parse.rels):
            expected.setdefault(rel, []).append(g - d)
    df = acc.frame().set_index(S.RELATION)
    assert set(df.index) == set(expected) and np.allclose(df[S.ACCURACY], 1.0)
    every = acc.frame(all_heads=True)
    planted = every[(every[S.LAYER] == 1) & (every[S.HEAD] == 0)]
    assert np.allclose(planted[S.ACCURACY], 1.0)
    assert every[S.ACCURACY].mean() < 0.9                            # the others are random
    for rel, offsets in expected.items():                          # hand-computed baseline
        best = max(offsets.count(o) for o in set(offsets)) / len(offsets)
        assert df.loc[rel, S.BASELINE] == pytest.approx(best)
        assert df.loc[rel, S.COUNT] == len(offsets)


def test_subwords_and_merged_words_align(tiny_lm, nlp):
    from workbench.analysis.syntax_heads import align_parse

    text = "I cannot tokenize unbelievably."
    enc = tiny_lm.tokenizer(text, return_offsets_mapping=True)
    view = tiny_lm.tokens(text)
    doc = nlp(text)
    assert [t.text for t in doc] == ["I", "can", "not", "tokenize", "unbelievably", "."]
    parse = align_parse(doc, enc["offset_mapping"], view.special)
    covered = ["".join(view.tokens[i] for i in unit) for unit in parse.units]
    assert covered == [t.text for t in doc]
    for unit in parse.units[3:5]:                                   # subwords join their word
        assert unit in view.word_spans and len(unit) > 1
    assert parse.skipped == 0 and len(parse.deps) == len(doc) - 1   # every arc but the root's
    # one model token covering two spaCy tokens ("cannot" in roberta-base) makes one unit:
    # arcs from inside it are skipped, arcs into it still count
    offsets = [(0, 0), (0, 1), (2, 8), (9, 17), (18, 30), (30, 31), (0, 0)]
    merged = align_parse(doc, offsets, [True, False, False, False, False, False, True])
    assert merged.units == [[1], [2], [3], [4], [5]]
    assert merged.skipped == 2 and len(merged.deps) == len(doc) - 3


def test_syntax_heads_runs_on_a_model(tiny_lm, nlp):
    df = wb.syntax_heads(tiny_lm, SENTENCES, nlp=nlp, progress=False)
    assert len(df) and df[S.ACCURACY].between(0, 1).all() and df[S.BASELINE].between(0, 1).all()
    assert (df[S.N_ARCS] == df[S.COUNT].sum()).all() and (df[S.SKIPPED_ARCS] >= 0).all()
    every = wb.syntax_heads(tiny_lm, SENTENCES, nlp=nlp, all_heads=True, progress=False)
    best = every.groupby(S.RELATION)[S.ACCURACY].max()
    assert np.allclose(best[df[S.RELATION]].to_numpy(), df[S.ACCURACY].to_numpy())


# -- figures and widget -----------------------------------------------------------------------

def test_figures_show_the_frames(tiny_lm):
    from workbench.plots import heads as P

    stats = wb.head_stats(tiny_lm, SENTENCES, progress=False)
    fig = P.head_heatmap(stats, S.ATTN_PREV)
    grid = stats.pivot(index=S.LAYER, columns=S.HEAD, values=S.ATTN_PREV).to_numpy()
    np.testing.assert_allclose(np.asarray(fig.data[0].z, dtype=float), grid)
    imp = pd.DataFrame({S.LAYER: [0, 0, 1], S.HEAD: [0, 1, 0], S.SCORE: [0.1, 0.3, 0.2],
                        S.METHOD: "gradient"})
    bars = P.importance_bars(imp, top=2)
    assert list(bars.data[0].y) == ["L1 H0", "L0 H1"]              # largest at the top
    with pytest.raises(InputError, match="columns"):
        P.head_heatmap(imp, S.ENTROPY)


def test_head_explorer_reacts_to_its_controls(tiny_lm):
    explorer = wb.widgets.HeadExplorer(tiny_lm, SENTENCES, examples=2)
    z_before = np.asarray(explorer.heatmap.data[0].z, dtype=float).copy()
    explorer.statistic.value = S.ENTROPY
    z_after = np.asarray(explorer.heatmap.data[0].z, dtype=float)
    assert not np.allclose(z_before, z_after)
    assert "entropy" in explorer.heatmap.layout.title.text
    assert explorer.detail.children == ()
    explorer.select(1, 2)
    assert len(explorer.detail.children) == 2 and "layer 1, head 2" in explorer.status.value
    per_text = explorer.per_text()
    rows = per_text[(per_text[S.LAYER] == 1) & (per_text[S.HEAD] == 2)]
    assert explorer.ranked == rows.nlargest(2, S.ENTROPY)[S.TEXT_ID].tolist()
    explorer.examples.value = 3
    assert len(explorer.detail.children) == 3
    # the same head on the same texts, in the attention views
    explorer.statistic.value = S.ATTN_BOS
    assert "&lt;s&gt;" in explorer.detail.children[0].layout.title.text  # '<s>' kept as text
    assert not explorer.open_button.disabled
    explorer.open_button.click()
    views = explorer.explorer
    assert explorer.explorer_box.children == (views,)
    assert (views.layer.value, views.head.value, views.view.value) == (1, 2, "head")
    assert [c.view.text for c in views.captures] == [SENTENCES[i] for i in explorer.ranked]
    assert views.canvas.payload["kind"] == "head"


@pytest.mark.slow
def test_head_stats_on_roberta_base():
    """roberta-base needs the hub (or a cache): its known heads show up (Clark et al. 2019)."""
    try:
        lm = wb.load("roberta-base", device="auto")
    except wb.ModelNotFoundError as err:
        pytest.skip(f"roberta-base not available: {err}")
    from workbench.testing import offline_text

    df = wb.head_stats(lm, offline_text()[:200], progress=False)
    assert len(df) == 144
    assert df[S.ATTN_PREV].max() > 0.5            # a previous-token head exists
    assert df[[S.ATTN_BOS, S.ATTN_EOS]].sum(axis=1).max() > 0.5


def test_head_heatmap_title_keeps_special_token_names_visible():
    """Plotly reads titles as HTML: '<s>' must reach it escaped or the title loses it."""
    import pandas as pd

    from workbench import schema as S
    from workbench.plots.heads import head_heatmap

    df = pd.DataFrame({S.LAYER: [0, 0], S.HEAD: [0, 1], S.ATTN_EOS: [0.2, 0.7]})
    fig = head_heatmap(df, S.ATTN_EOS)
    assert fig.layout.title.text == "attention to &lt;/s&gt;"


def test_head_stats_metadata_survives_concat_and_filtering(tiny_lm):
    """Issue 25: the numbers a frame is read against (texts, queries, the uniform references, the
    definitions) are columns, so they survive `pd.concat`, filtering and groupby, which drop
    `attrs`; label_patterns then reads each row's own reference."""
    from workbench.analysis.head_clusters import label_patterns

    short = wb.head_stats(tiny_lm, SENTENCES[:2], progress=False)
    long = wb.head_stats(tiny_lm, SENTENCES, average="token", punctuation="unicode",
                         progress=False)
    both = pd.concat([short.assign(**{S.MODEL: "short"}), long.assign(**{S.MODEL: "long"})],
                     ignore_index=True)
    picked = both[both[S.LAYER] == 1]
    for name, alone, texts in (("short", short, 2), ("long", long, len(SENTENCES))):
        part = picked[picked[S.MODEL] == name].reset_index(drop=True)
        ref = alone[alone[S.LAYER] == 1].reset_index(drop=True)
        for col in (S.N_TEXTS, S.N_QUERIES, S.UNIFORM_DISTANCE, S.UNIFORM_ENTROPY, S.AVERAGE,
                    S.PUNCTUATION):
            assert part[col].tolist() == ref[col].tolist(), col
        assert (part[S.N_TEXTS] == texts).all()
        queries = sum(len(tiny_lm.tokens(t)) for t in SENTENCES[:texts])
        assert (part[S.N_QUERIES] == queries).all()
        # each row keeps its own corpus' reference: same labels as the frame read alone
        assert label_patterns(part).tolist() == label_patterns(ref).tolist()
    assert picked[S.UNIFORM_DISTANCE].nunique() == 2       # two corpora, two references
    assert both.groupby(S.MODEL)[S.AVERAGE].first().to_dict() == {"long": "token", "short": "text"}
