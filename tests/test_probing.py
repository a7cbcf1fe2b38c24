"""Masked-token probing against independent oracles.

- fill_mask == transformers' pipeline("fill-mask") on the same model (ids and probabilities);
- score (batched, masked-only head) == a plain loop of one full forward per token, and == minicons;
- candidates: the multi-token and leading-space (`Ġ`) cases, checked against hand-built chains;
- logit lens: the last layer == fill_mask; layer l == the model cut after l layers;
- a BERT WordPiece model goes through the same code (no leading-space rule there).
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

import workbench as wb
from workbench.errors import InputError, MissingHeadError
from workbench.testing import chain_logprob_by_loop

TEXTS = ["The cat sat on the <mask>.", "A <mask> of [MASK] is a good thing to <mask>.",
         "Hello <mask>"]
SENTENCES = ["The cat sat on the mat.", "A pizza is a delicious thing to eat, isn't it?",
             "Hello world", "Unbelievably, the antidisestablishmentarianism debate continued."]


@pytest.fixture(scope="module")
def bert_lm(tmp_path_factory):
    """A tiny random BERT with a real (lower-cased) WordPiece tokenizer, saved and loaded by wb.load."""
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

    from workbench.testing import offline_text

    folder = tmp_path_factory.mktemp("bert") / "model"
    folder.mkdir()
    wp = BertWordPieceTokenizer(lowercase=True)
    wp.train_from_iterator(offline_text(100_000), vocab_size=600, show_progress=False)
    wp.save_model(str(folder))
    tok = BertTokenizerFast.from_pretrained(folder, model_max_length=126)
    tok.save_pretrained(folder)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2,
                     num_attention_heads=4, intermediate_size=64, max_position_embeddings=128,
                     pad_token_id=tok.pad_token_id)
    torch.manual_seed(1)
    BertForMaskedLM(cfg).save_pretrained(folder)
    return wb.load(folder, device="cpu")


def _pipeline(lm):
    from transformers import pipeline

    return pipeline("fill-mask", model=lm.model, tokenizer=lm.tokenizer, device="cpu")


def _minicons(lm):
    from minicons import scorer

    tok = copy.copy(lm.tokenizer)
    tok.batch_encode_plus = tok.__call__  # minicons 0.3.39 calls an API transformers 5 removed
    return scorer.MaskedLMScorer(lm.model, "cpu", tokenizer=tok)


def _reference_pll(lm, text, l2r=False):
    """One full forward per scored token, full-vocabulary logits: the textbook definition."""
    enc = lm.tokenizer(text, return_special_tokens_mask=True)
    ids = torch.tensor(enc["input_ids"])
    words = enc.encodings[0].word_ids
    keep = [p for p, s in enumerate(enc["special_tokens_mask"]) if not s]
    out = []
    for p in keep:
        x = ids.clone()
        x[p] = lm.tokenizer.mask_token_id
        if l2r:
            for q in keep:
                if q > p and words[q] == words[p]:
                    x[q] = lm.tokenizer.mask_token_id
        with torch.no_grad():
            logits = lm.model(input_ids=x[None]).logits[0, p]
        out.append(float(torch.log_softmax(logits, -1)[ids[p]]))
    return out


# --- fill_mask ---------------------------------------------------------------------------------

@pytest.mark.parametrize("fixture", ["tiny_lm", "bert_lm"])
def test_fill_mask_equals_transformers_pipeline(fixture, request):
    lm = request.getfixturevalue(fixture)
    df = wb.fill_mask(lm, TEXTS, top_k=5)
    pipe = _pipeline(lm)
    for t_id, text in enumerate(TEXTS):
        native = text.replace("<mask>", lm.mask_token).replace("[MASK]", lm.mask_token)
        ref = pipe(native, top_k=5)
        ref = [ref] if isinstance(ref[0], dict) else ref
        for m, preds in enumerate(ref):
            ours = df[(df.text_id == t_id) & (df.mask_index == m)].sort_values("rank")
            assert list(ours.token_id) == [p["token"] for p in preds]
            assert list(ours.token) == [p["token_str"] for p in preds]
            assert ours.prob.to_numpy() == pytest.approx([p["score"] for p in preds], abs=1e-5)
    assert set(df.text) == set(TEXTS) and (df.model == lm.name).all()
    assert df.groupby(["text_id"]).mask_index.nunique().tolist() == [1, 3, 1]


def test_fill_mask_errors_and_model_dict(tiny_lm, tiny_encoder_dir):
    with pytest.raises(InputError, match="has no mask"):
        wb.fill_mask(tiny_lm, ["fine <mask>", "no blank here"])
    with pytest.raises(InputError, match="top_k"):
        wb.fill_mask(tiny_lm, "a <mask>", top_k=0)
    enc = wb.load(tiny_encoder_dir, device="cpu")
    with pytest.raises(MissingHeadError, match="masked-LM head"):
        wb.fill_mask(enc, "a <mask>")
    both = wb.fill_mask({"a": tiny_lm, "b": tiny_lm}, "a <mask>", top_k=3)
    assert list(both.model.unique()) == ["a", "b"]
    a, b = both[both.model == "a"], both[both.model == "b"]
    assert a.prob.to_numpy() == pytest.approx(b.prob.to_numpy())


def test_word_start_flags_the_leading_space(tiny_lm, bert_lm):
    df = wb.fill_mask(tiny_lm, "I like <mask>.", top_k=50)
    raw = tiny_lm.tokenizer.convert_ids_to_tokens(df.token_id.tolist())
    assert list(df.word_start) == [r.startswith("Ġ") for r in raw]
    assert all(t.startswith(" ") == w for t, w in zip(df.token, df.word_start))
    df = wb.fill_mask(bert_lm, "i like <mask>.", top_k=50)
    raw = bert_lm.tokenizer.convert_ids_to_tokens(df.token_id.tolist())
    assert list(df.word_start) == [not r.startswith("##") for r in raw]


# --- score (PLL) -------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["pll", "pll-word-l2r"])
def test_score_equals_one_pass_per_token_reference(tiny_lm, method):
    # a budget of 40 tokens forces long sentences across several batches
    df = wb.score(tiny_lm, SENTENCES, method=method, max_tokens=40)
    for row in df.itertuples():
        ref = _reference_pll(tiny_lm, row.text, l2r=method == "pll-word-l2r")
        assert row.n_tokens == len(ref) == len(row.tokens)
        assert row.token_logprobs == pytest.approx(ref, abs=1e-4)
        assert row.logprob == pytest.approx(sum(ref), abs=1e-4)
    assert df.logprob.to_numpy() == pytest.approx(
        wb.score(tiny_lm, SENTENCES, method=method).logprob.to_numpy(), abs=1e-4)


@pytest.mark.parametrize("fixture", ["tiny_lm", "bert_lm"])
@pytest.mark.parametrize("method,metric", [("pll", "original"), ("pll-word-l2r", "within_word_l2r")])
def test_score_equals_minicons(fixture, method, metric, request):
    lm = request.getfixturevalue(fixture)
    ours = wb.score(lm, SENTENCES, method=method)
    theirs = _minicons(lm).sequence_score(SENTENCES, reduction=lambda x: x.sum(0).item(),
                                          PLL_metric=metric)
    assert ours.logprob.to_numpy() == pytest.approx(theirs, abs=1e-4)


def test_word_l2r_differs_only_on_multi_token_words(tiny_lm):
    pll = wb.score(tiny_lm, ["cat", "pizza"])
    l2r = wb.score(tiny_lm, ["cat", "pizza"], method="pll-word-l2r")
    assert tiny_lm.tokenizer.tokenize("pizza") == ["p", "iz", "z", "a"]
    assert pll.token_logprobs[1][-1] == pytest.approx(l2r.token_logprobs[1][-1], abs=1e-6)
    assert pll.token_logprobs[1][0] != pytest.approx(l2r.token_logprobs[1][0], abs=1e-6)


def test_score_errors(tiny_lm):
    with pytest.raises(InputError, match="method"):
        wb.score(tiny_lm, "a b", method="ppl")
    with pytest.raises(InputError, match="score_candidates"):
        wb.score(tiny_lm, "a <mask> b")
    with pytest.raises(InputError, match="more than the model"):
        wb.score(tiny_lm, "word " * 400)
    with pytest.raises(InputError, match="empty"):
        wb.score(tiny_lm, [])


# --- candidates --------------------------------------------------------------------------------

def test_multi_token_candidate_is_scored_whole_with_its_leading_space(tiny_lm):
    text = "I ate a <mask> for lunch."
    df = wb.score_candidates(tiny_lm, text, ["pizza", "  pizza "], method="chain")
    # the filler takes the space before the mask: ' pizza' = Ġp iz z a, never 'p' alone
    filled = "I ate a pizza for lunch."
    assert list(df.filled) == [filled, filled] and list(df.n_tokens) == [4, 4]
    enc = tiny_lm.tokenizer(filled)
    raw = tiny_lm.tokenizer.convert_ids_to_tokens(enc["input_ids"])
    pos = [raw.index("Ġp") + i for i in range(4)]
    assert [raw[p] for p in pos] == ["Ġp", "iz", "z", "a"]
    assert df.logprob[0] == pytest.approx(chain_logprob_by_loop(tiny_lm, filled, pos), abs=1e-4)
    # transformers' pipeline silently scores only the first piece of the same target
    ref = _pipeline(tiny_lm)(text, targets=[" pizza"])
    assert len(ref) == 1 and ref[0]["token_str"] == " p"
    assert math.log(ref[0]["score"]) > df.logprob[0] + 1.0


def test_single_token_candidate_equals_fill_mask(tiny_lm):
    text = "The cat sat on the <mask>."
    top = wb.fill_mask(tiny_lm, text, top_k=50)
    # ' x' tokens that are whole words: they fit after the space (not bytes of a character)
    top = top[top.word_start & top.token.str.strip().str.isalpha()].iloc[:3]
    cands = [t.strip() for t in top.token]
    for method in ("chain", "pll"):
        df = wb.score_candidates(tiny_lm, text, cands, method=method)
        assert (df.n_tokens == 1).all()
        assert df.span_logprob.to_numpy() == pytest.approx(top.logprob.to_numpy(), abs=1e-5)
    full = wb.score(tiny_lm, list(df.filled))
    assert df.logprob.to_numpy() == pytest.approx(full.logprob.to_numpy(), abs=1e-5)
    assert list(df.sort_values("rank").candidate) == list(
        df.sort_values("logprob", ascending=False).candidate)


def test_several_masks_are_scored_jointly(tiny_lm):
    text = "I flew from <mask> to [MASK] today."
    df = wb.score_candidates(tiny_lm, text, [("New York", "Paris"), ("Rome", "Los Angeles")],
                             method="chain")
    assert list(df.candidate) == ["New York | Paris", "Rome | Los Angeles"]
    filled = df.filled[0]
    assert filled == "I flew from New York to Paris today."
    enc = tiny_lm.tokenizer(filled, return_offsets_mapping=True)
    spans = [(12, 20), (24, 29)]
    pos = [i for i, (a, b) in enumerate(enc["offset_mapping"])
           if b > a and any(a < e and b > s for s, e in spans)]
    assert df.n_tokens[0] == len(pos) > 2
    assert df.logprob[0] == pytest.approx(chain_logprob_by_loop(tiny_lm, filled, pos), abs=1e-4)
    pll = wb.score_candidates(tiny_lm, text, [("New York", "Paris")], method="pll-word-l2r")
    assert pll.logprob[0] == pytest.approx(
        wb.score(tiny_lm, filled, method="pll-word-l2r").logprob[0], abs=1e-5)


def test_candidate_errors(tiny_lm):
    with pytest.raises(InputError, match="has no mask"):
        wb.score_candidates(tiny_lm, "no blank", ["x"])
    with pytest.raises(InputError, match="2 mask"):
        wb.score_candidates(tiny_lm, "<mask> and <mask>", ["x"])
    with pytest.raises(InputError, match="empty"):
        wb.score_candidates(tiny_lm, "a <mask>", ["  "])
    with pytest.raises(InputError, match="method"):
        wb.score_candidates(tiny_lm, "a <mask>", ["x"], method="first-piece")


def test_bert_candidates_have_no_space_rule(bert_lm):
    df = wb.score_candidates(bert_lm, "i like <mask> a lot.", ["pizza", "the"], method="chain")
    assert list(df.pieces) == [["p", "iz", "z", "a"], ["the"]]
    fm = wb.fill_mask(bert_lm, "i like <mask> a lot.", top_k=bert_lm.tokenizer.vocab_size)
    the = fm[fm.token == "the"].logprob.iloc[0]
    assert df.span_logprob[1] == pytest.approx(the, abs=1e-5)


# --- minimal pairs and probe sets --------------------------------------------------------------

def test_compare_pairs_margins_are_pll_differences(tiny_lm):
    good = ["The keys are here.", "The cat sleeps."]
    bad = ["The keys is here.", "The cat sleep."]
    df = wb.compare_pairs({"a": tiny_lm}, good, bad)
    s = wb.score(tiny_lm, good + bad).logprob.to_numpy()
    assert df.margin.to_numpy() == pytest.approx(s[:2] - s[2:], abs=1e-6)
    assert list(df.correct) == list(s[:2] > s[2:])
    assert not df.attrs   # accuracy per model is df.groupby("model").correct.mean() (issue 25)
    import pandas as pd

    blimp = pd.DataFrame({"sentence_good": good, "sentence_bad": bad, "UID": ["x", "y"]})
    df2 = wb.compare_pairs(tiny_lm, blimp)
    assert list(df2.group) == ["x", "y"] and df2.margin.to_numpy() == pytest.approx(df.margin)
    with pytest.raises(InputError, match="equal-length"):
        wb.compare_pairs(tiny_lm, good, bad[:1])


def test_probe_set_loads_and_defines_pairs():
    ps = wb.load_probe_set()
    assert 60 <= len(ps) <= 150
    assert set(ps.relation) == {"capital", "plural", "agreement"}
    assert all(t.count("<mask>") == 1 for t in ps.template)
    pairs = wb.load_probe_set(as_pairs=True)
    assert len(pairs) == 60 and (pairs.good != pairs.bad).all()


def test_probe_vocab_ranks_match_fill_mask_and_skip_multi_token(tiny_lm):
    import pandas as pd

    fm = wb.fill_mask(tiny_lm, "The cat sat on the <mask>.", top_k=40)
    second = fm[fm.word_start & fm.token.str.strip().str.isalpha()].iloc[1]
    frame = pd.DataFrame({
        "relation": ["r1", "r1", "r2"],
        "template": ["The cat sat on the <mask>.", "The cat sat on the <mask>.", "I ate <mask>."],
        "answers": [[second.token.strip()], "zzzzqqq|" + second.token.strip(), ["pizza"]]})
    items = wb.probe(tiny_lm, frame, k=5, per_item=True)
    assert list(items["rank"][:2]) == [second["rank"]] * 2
    assert pd.isna(items["rank"][2])  # 'pizza' is 4 tokens here: skipped, not first-pieced
    summary = wb.probe(tiny_lm, frame, k=5)
    r1 = summary[summary.relation == "r1"].iloc[0]
    assert r1.n == 2 and r1.mrr == pytest.approx(1 / second["rank"])
    assert r1.p_at_k == float(second["rank"] <= 5) and r1.p_at_1 == float(second["rank"] == 1)
    r2 = summary[summary.relation == "r2"].iloc[0]
    assert r2.n == 0 and r2.n_skipped == 1


def _no_warning():
    import contextlib
    import warnings

    @contextlib.contextmanager
    def strict():
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            yield
    return strict()


def test_probe_closed_mode_ranks_the_pool_jointly(tiny_lm):
    import pandas as pd

    frame = pd.DataFrame({"relation": ["c", "c"], "template": ["I ate <mask>.", "We saw <mask>."],
                          "answers": [["pizza"], ["New York"]], "foils": [["salad"], []]})
    for rank_by in ("logprob", "mean_logprob"):
        items = wb.probe(tiny_lm, frame, mode="closed", per_item=True, rank_by=rank_by)
        for i, row in items.iterrows():
            with pytest.warns(UserWarning) if rank_by == "logprob" else _no_warning():
                sc = wb.score_candidates(tiny_lm, row.template, ["pizza", "salad", "New York"],
                                         method="chain", rank_by=rank_by)
            want = sc[sc.candidate.isin(row.answers)]["rank"].min()
            assert row["rank"] == want
            assert row["prediction"] == sc.loc[sc[rank_by].idxmax(), "candidate"]
    with pytest.raises(InputError, match="exactly one"):
        wb.probe(tiny_lm, pd.DataFrame({"template": ["no mask"], "answers": [["x"]]}))


# --- logit lens --------------------------------------------------------------------------------

def test_logit_lens_last_layer_is_fill_mask_and_layers_match_cut_models(tiny_lm):
    text = "The capital of France is <mask>."
    df = wb.logit_lens(tiny_lm, text, top_k=3)
    top = df[df.kind == "top"]
    assert sorted(top.layer.unique()) == list(range(tiny_lm.num_layers + 1))
    fm = wb.fill_mask(tiny_lm, text, top_k=3)
    last = top[top.layer == tiny_lm.num_layers]
    assert list(last.token_id) == list(fm.token_id)
    assert last.prob.to_numpy() == pytest.approx(fm.prob.to_numpy(), abs=1e-6)
    ids = tiny_lm.tokenizer(text, return_tensors="pt")["input_ids"]
    pos = int((ids[0] == tiny_lm.tokenizer.mask_token_id).nonzero()[0, 0])
    for layer in range(tiny_lm.num_layers):
        cut = copy.deepcopy(tiny_lm.model)
        cut.roberta.encoder.layer = cut.roberta.encoder.layer[:layer]
        with torch.no_grad():
            probs = torch.softmax(cut(input_ids=ids).logits[0, pos], -1)
        want = probs.topk(3)
        got = top[top.layer == layer]
        assert list(got.token_id) == want.indices.tolist()
        assert got.prob.to_numpy() == pytest.approx(want.values.numpy(), abs=1e-6)
    track = df[df.kind == "track"]
    assert (track.token_id == last.token_id.iloc[0]).all()
    assert track[track.layer == tiny_lm.num_layers]["rank"].item() == 1
