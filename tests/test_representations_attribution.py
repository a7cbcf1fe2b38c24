"""Attribution with known answers: IG completeness against an independent forward, IG against a
hand-written Riemann sum, gradient x input against plain autograd, rollout against eager attention.

The tiny random model is nearly linear at its init scale, so these tests multiply its matrices by
8 (their own copy) to make the prediction depend on the input in a non-trivial way.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import workbench as wb
from workbench import schema as S
from workbench.errors import InputError, MissingHeadError

TEXT = "The cat sat on the <mask> today."


def _sharpen(lm):
    with torch.no_grad():
        for p in lm.model.parameters():
            if p.dim() == 2:
                p.mul_(8.0)
    return lm


@pytest.fixture(scope="module")
def sharp_lm(tiny_model_dir):
    return _sharpen(wb.load(tiny_model_dir, device="cpu"))


@pytest.fixture(scope="module")
def sharp_classifier(tmp_path_factory):
    from workbench.testing import make_tiny_model

    folder = make_tiny_model(tmp_path_factory.mktemp("cls") / "model", head="classifier")
    return _sharpen(wb.load(folder, device="cpu"))


def _inputs(lm, text):
    enc = lm.tokenizer(text, return_tensors="pt")
    view = lm.tokens(text)
    ids = enc["input_ids"]
    base = torch.where(torch.tensor(view.special)[None], ids,
                       torch.full_like(ids, lm.tokenizer.pad_token_id))
    return ids, enc["attention_mask"], base, view


def _f_embeds(lm, embeds, mask, pos, tid):
    """Target logit from word embeddings through `inputs_embeds` (RoBERTa numbers positions itself)."""
    logits = lm.model(inputs_embeds=embeds, attention_mask=mask).logits
    return (logits[:, pos] if lm.kind == "mlm" else logits)[:, tid]


def _info(df, text_id=0):
    """One text's target and IG completeness numbers, read from the columns that carry them on
    each of its rows (the same value on every row: checked here)."""
    rows = df[df[S.TEXT_ID] == text_id]
    ig = rows[rows[S.METHOD] == "ig"]
    for col, part in ((S.TARGET_ID, rows), (S.TARGET_POSITION, rows), (S.F_INPUT, ig),
                      (S.F_BASELINE, ig), (S.DELTA, ig)):
        assert part[col].nunique(dropna=False) <= 1, col
    row = (ig if len(ig) else rows).iloc[0]
    return {"position": int(row[S.TARGET_POSITION]), "target_id": int(row[S.TARGET_ID]),
            "delta": row[S.DELTA], "f_x": row[S.F_INPUT], "f_baseline": row[S.F_BASELINE]}


def test_ig_sums_to_f_x_minus_f_baseline_within_delta(sharp_lm):
    df = wb.attribute(sharp_lm, TEXT, method="ig", output="logit", n_steps=64)
    info = _info(df)
    ids, mask, base, view = _inputs(sharp_lm, TEXT)
    emb = sharp_lm.model.get_input_embeddings()
    with torch.no_grad():
        f_x = float(_f_embeds(sharp_lm, emb(ids), mask, info["position"], info["target_id"]))
        f_b = float(_f_embeds(sharp_lm, emb(base), mask, info["position"], info["target_id"]))
    total = df[S.SCORE].sum()
    assert abs(f_x - f_b) > 0.05                         # the test is not trivially satisfied
    assert abs(total - (f_x - f_b)) <= abs(info["delta"]) + 1e-5
    assert abs(info["delta"]) <= 0.01 * abs(f_x - f_b)
    assert info["f_x"] == pytest.approx(f_x, abs=1e-5) and info["f_baseline"] == pytest.approx(f_b, abs=1e-5)
    special = np.array(view.special)
    assert (df[S.SCORE].to_numpy()[special] == 0).all()  # baseline keeps <s>, </s>, <mask>
    assert info["target_id"] == int(sharp_lm.model(input_ids=ids).logits[0, info["position"]].argmax())


def test_ig_matches_a_hand_written_riemann_sum(sharp_lm):
    df = wb.attribute(sharp_lm, TEXT, method="ig", output="logit", n_steps=64)
    info = _info(df)
    ids, mask, base, _ = _inputs(sharp_lm, TEXT)
    emb = sharp_lm.model.get_input_embeddings()
    with torch.no_grad():
        x, b = emb(ids), emb(base)
    steps = 200
    grads = torch.zeros_like(x)
    for k in range(steps):
        e = (b + (k + 0.5) / steps * (x - b)).requires_grad_(True)
        _f_embeds(sharp_lm, e, mask, info["position"], info["target_id"]).sum().backward()
        grads += e.grad / steps
    expected = ((x - b) * grads).sum(-1)[0].numpy()
    np.testing.assert_allclose(df[S.SCORE].to_numpy(), expected, atol=0.02 * np.abs(expected).max())


def test_grad_x_input_matches_autograd(sharp_lm):
    df = wb.attribute(sharp_lm, TEXT, method="grad_x_input", output="prob")
    info = _info(df)
    ids, mask, _, _ = _inputs(sharp_lm, TEXT)
    with torch.no_grad():
        x = sharp_lm.model.get_input_embeddings()(ids)
    x.requires_grad_(True)
    logits = sharp_lm.model(inputs_embeds=x, attention_mask=mask).logits
    logits[0, info["position"]].softmax(-1)[info["target_id"]].backward()
    expected = (x.grad * x).sum(-1)[0].detach().numpy()
    np.testing.assert_allclose(df[S.SCORE].to_numpy(), expected, rtol=1e-4, atol=1e-7)


def test_rollout_matches_eager_attention_by_hand(sharp_lm):
    df = wb.attribute(sharp_lm, TEXT, method="rollout")
    pos = _info(df)["position"]
    ids, mask, _, _ = _inputs(sharp_lm, TEXT)
    with sharp_lm.eager_attention(), torch.no_grad():
        att = sharp_lm.encoder(input_ids=ids, attention_mask=mask, output_attentions=True).attentions
    roll = torch.eye(ids.shape[1])
    for a in att:                                        # (1, H, T, T) per layer
        a = 0.5 * a[0].mean(0) + 0.5 * torch.eye(ids.shape[1])
        roll = (a / a.sum(-1, keepdim=True)) @ roll
    np.testing.assert_allclose(df[S.SCORE].to_numpy(), roll[pos].numpy(), atol=1e-5)
    assert df[S.SCORE].sum() == pytest.approx(1.0, abs=1e-5)


def test_word_level_sums_tokens_and_methods_sit_side_by_side(sharp_lm):
    tok = wb.attribute(sharp_lm, TEXT, method="all", n_steps=16)
    word = wb.attribute(sharp_lm, TEXT, method="all", level="word", n_steps=16)
    view = sharp_lm.tokens(TEXT)
    assert list(dict.fromkeys(word[S.METHOD])) == ["ig", "grad_x_input", "rollout"]
    for m in ("ig", "grad_x_input", "rollout"):
        t, w = tok[tok[S.METHOD] == m], word[word[S.METHOD] == m]
        assert len(w) == len(view.words) + sum(view.special)
        for k, span in enumerate(view.word_spans):
            row = w[w[S.WORD_ID] == k].iloc[0]
            assert row[S.TOKEN] == view.words[k]
            assert row[S.SCORE] == pytest.approx(t[t[S.POSITION].isin(span)][S.SCORE].sum(), abs=1e-9)
        assert w[S.WEIGHT].abs().sum() == pytest.approx(1.0)
    assert word.loc[word[S.METHOD] != "ig", S.DELTA].isna().all()


def test_mask_targets(sharp_lm):
    the_id = sharp_lm.tokenizer(" the", add_special_tokens=False)["input_ids"]
    assert len(the_id) == 1
    df = wb.attribute(sharp_lm, TEXT, target="the", method="grad_x_input")
    assert _info(df)["target_id"] == the_id[0]       # the mask ate the space before it
    with pytest.raises(InputError, match="tokens"):
        wb.attribute(sharp_lm, TEXT, target="Czechoslovakia", method="grad_x_input")
    with pytest.raises(InputError, match="mask"):
        wb.attribute(sharp_lm, "No mask here.", method="grad_x_input")


def test_classifier_targets_and_completeness(sharp_classifier):
    text = "What a wonderful film, I loved it!"
    logits = sharp_classifier.model(**sharp_classifier.tokenizer(text, return_tensors="pt")).logits
    df = wb.attribute(sharp_classifier, text, method="ig", output="prob", n_steps=64)
    info = _info(df)
    assert info["target_id"] == int(logits[0].argmax()) and info["position"] == 0
    assert abs(df[S.SCORE].sum() - (info["f_x"] - info["f_baseline"])) <= abs(info["delta"]) + 1e-6
    other = 1 - info["target_id"]
    by_name = wb.attribute(sharp_classifier, text, target=f"LABEL_{other}", method="grad_x_input")
    by_index = wb.attribute(sharp_classifier, text, target=other, method="grad_x_input")
    np.testing.assert_allclose(by_name[S.SCORE], by_index[S.SCORE])
    with pytest.raises(InputError, match="not a label"):
        wb.attribute(sharp_classifier, text, target="positive")


def test_encoder_without_head_is_refused(tiny_encoder_dir):
    lm = wb.load(tiny_encoder_dir, device="cpu")
    with pytest.raises(MissingHeadError, match="head"):
        wb.attribute(lm, "Some text.")


def test_per_text_numbers_survive_concat_and_filtering(sharp_lm):
    """Issue 25: each text's target and IG completeness numbers are columns on its rows, so a
    filtered or concatenated frame still carries them (pandas drops `attrs` there)."""
    texts = [TEXT, "A dog sat on the <mask>."]
    df = wb.attribute(sharp_lm, texts, method=["ig", "rollout"], output="logit", n_steps=8)
    alone = [wb.attribute(sharp_lm, t, method=["ig", "rollout"], output="logit", n_steps=8)
             for t in texts]
    both = pd.concat([alone[1].assign(**{S.TEXT_ID: 1}), alone[0]], ignore_index=True)
    assert not df.attrs and not both.attrs
    for i, t in enumerate(texts):
        mine = both[(both[S.TEXT_ID] == i) & (both[S.METHOD] == "ig")]   # filtered, reordered
        assert _info(mine, i) == pytest.approx(_info(df, i))
        ids = sharp_lm.tokenizer(t, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            logits = sharp_lm.model(input_ids=ids).logits[0]
        pos = int((ids[0] == sharp_lm.tokenizer.mask_token_id).nonzero()[0, 0])
        assert _info(mine, i)["position"] == pos                # the mask of that text
        assert _info(mine, i)["target_id"] == int(logits[pos].argmax())
        assert _info(mine, i)["f_x"] == pytest.approx(float(logits[pos].max()), abs=1e-4)
        ig = mine[S.SCORE].sum()                                # completeness, from the rows
        assert ig - (_info(mine, i)["f_x"] - _info(mine, i)["f_baseline"]) == pytest.approx(
            _info(mine, i)["delta"], abs=1e-5)
    rollout = df[df[S.METHOD] == "rollout"]
    assert rollout[[S.F_INPUT, S.F_BASELINE, S.DELTA]].isna().all().all()
    assert (rollout[S.OUTPUT] == "logit").all() and rollout[S.TARGET_POSITION].notna().all()
