"""No hidden state: every public analysis leaves the tokenizer and the model exactly as it found them.

transformers' fast tokenizers switch padding and truncation on in their Rust backend on a padded or
truncated call and never switch them off; corpus packing tokenises through that backend, so after
one analysis `wb.pretrain(corpus, tokenizer=lm.tokenizer)` packed rows full of `<pad>` (issue 27).
The same kind of leak is possible on the model: the attention implementation (analyses switch to
eager for their own pass), hooks (norms, gates, query/key capture), train/eval mode, dtype,
requires_grad and the weights themselves.

The table below runs every public function of `workbench/__init__.py` that takes a model, and
compares a snapshot of both before and after. Training entry points (`pretrain`, `finetune`) are
left out on purpose: they train a model; `ablate` is a context manager whose gates are the point
inside the block, so it is checked after the block ends.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest
import torch

import workbench as wb

UD = Path(__file__).resolve().parent / "fixtures"  # tiny CoNLL-U treebanks

TEXTS = ["The cat sat on the mat.", "A dog barked at the mailman loudly.", "Birds sing, then fly."]
MASKED = ["The cat sat on the <mask>.", "A <mask> barked."]


def tokenizer_state(tok) -> dict:
    backend = tok.backend_tokenizer
    return {"padding": backend.padding, "truncation": backend.truncation,
            "padding_side": tok.padding_side, "truncation_side": tok.truncation_side,
            "model_max_length": tok.model_max_length, "vocab": len(tok),
            "special": dict(tok.special_tokens_map)}


def _ours(hooks: dict) -> list[str]:
    """Hook functions, less transformers' own output recorders: the model installs those itself,
    once and for good, on its first forward asked for attentions or hidden states (by anyone)."""
    return [getattr(f, "__qualname__", repr(f)) for f in hooks.values()
            if "output_capturing_hook" not in getattr(f, "__qualname__", "")]


def model_state(model: torch.nn.Module) -> dict:
    digest = hashlib.sha256()
    for name, p in model.state_dict().items():
        digest.update(name.encode())
        digest.update(p.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes()
                      if p.numel() else b"")
    return {
        "attn": model.config._attn_implementation,
        "hooks": {n: (_ours(m._forward_hooks), _ours(m._forward_pre_hooks),
                      _ours(m._backward_hooks)) for n, m in model.named_modules()},
        "training": {n: m.training for n, m in model.named_modules()},
        "dtype": {p.dtype for p in model.parameters()},
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "grad": {n for n, p in model.named_parameters() if p.grad is not None},
        "device": {str(p.device) for p in model.parameters()},
        "weights": digest.hexdigest(),
        "grad_enabled": torch.is_grad_enabled(),
    }


def snapshot(*lms) -> list[dict]:
    return [{"tokenizer": tokenizer_state(lm.tokenizer), "model": model_state(lm.model)}
            for lm in lms]


@pytest.fixture(scope="module")
def clf(tmp_path_factory):
    from workbench.testing import make_tiny_model

    return wb.load(make_tiny_model(tmp_path_factory.mktemp("clf") / "m", head="classifier"),
                   device="cpu")


@pytest.fixture(scope="module")
def other(tiny_model_dir):
    """A second handle on the tiny model (compare_models / similarity need two)."""
    return wb.load(tiny_model_dir, device="cpu")


def _blank_parser():
    """spaCy's blank English pipeline (no download): every token its own head, enough to run."""
    spacy = pytest.importorskip("spacy", reason="optional extra: spaCy not installed")
    return spacy.blank("en")


def _ablated(lm):
    with wb.ablate(lm, [(0, 0)]):
        wb.fill_mask(lm, MASKED[0], top_k=2)


PROBE = pd.DataFrame({"text": [f"sentence number {i} is here" for i in range(12)],
                      "label": ["a", "b"] * 6})
TABLE = pd.DataFrame({"text": TEXTS * 2, "label": ["LABEL_0", "LABEL_1"] * 3})

# name -> call(lm, clf, other); every public analysis of workbench/__init__.py that takes a model
CALLS = {
    "attention": lambda lm, c, o: wb.attention(lm, ["Hi.", "A longer text."]),
    "attention-norm": lambda lm, c, o: wb.attention(lm, TEXTS[:2], mode="norm",
                                                    merge_subwords=True),
    "attention-pairs": lambda lm, c, o: wb.attention(lm, [("A man eats.", "He is hungry.")]),
    "attention_tensor": lambda lm, c, o: wb.attention_tensor(lm, TEXTS[0], mode="rollout"),
    "capture_attention": lambda lm, c, o: wb.capture_attention(lm, TEXTS, norms=True),
    "attention_qk": lambda lm, c, o: wb.attention_qk(lm, TEXTS[0]),
    "fill_mask": lambda lm, c, o: wb.fill_mask(lm, MASKED, top_k=3),
    "score_candidates": lambda lm, c, o: wb.score_candidates(lm, MASKED[0], ["mat", "hat"]),
    "score": lambda lm, c, o: wb.score(lm, TEXTS),
    "compare_pairs": lambda lm, c, o: wb.compare_pairs(lm, TEXTS[:1], TEXTS[1:2]),
    "probe": lambda lm, c, o: wb.probe(lm, pd.DataFrame({"relation": ["r"],
                                                         "template": ["The cat sat on the <mask>."],
                                                         "answers": [["mat"]]}), k=3),
    "logit_lens": lambda lm, c, o: wb.logit_lens(lm, MASKED),
    "classify": lambda lm, c, o: wb.classify(c, TEXTS),
    "evaluate_classifier": lambda lm, c, o: wb.evaluate_classifier(c, TABLE),
    "head_stats": lambda lm, c, o: wb.head_stats(lm, TEXTS, progress=False),
    "head_clusters": lambda lm, c, o: wb.head_clusters(lm, TEXTS, progress=False),
    "ablate": lambda lm, c, o: _ablated(lm),
    "head_importance": lambda lm, c, o: wb.head_importance(lm, TEXTS, progress=False),
    "head_importance-classifier": lambda lm, c, o: wb.head_importance(
        c, TEXTS, objective="classifier", labels=[0, 1, 0], progress=False),
    "compare_attention": lambda lm, c, o: wb.compare_attention(lm, o, TEXTS, progress=False),
    "syntax_heads": lambda lm, c, o: wb.syntax_heads(lm, TEXTS, nlp=_blank_parser(),
                                                     progress=False),
    "head_roles": lambda lm, c, o: wb.head_roles(lm, TEXTS, syntax=False, progress=False),
    "structural_probe": lambda lm, c, o: wb.structural_probe(
        lm, UD / "ud_tiny_train.conllu", UD / "ud_tiny_test.conllu", layers=[1], rank=2, epochs=1,
        cache=False),
    "edge_probe": lambda lm, c, o: wb.edge_probe(lm, UD / "ud_tiny_train.conllu",
                                                 test=UD / "ud_tiny_test.conllu", tasks=["depth"],
                                                 epochs=1, proj=8, hidden=8, cache=False),
    "context_mixing": lambda lm, c, o: wb.context_mixing(lm, TEXTS[:2], method="alti"),
    "context_mixing-vz": lambda lm, c, o: wb.context_mixing(lm, TEXTS[0], method="value_zeroing",
                                                            layers="all"),
    "patch": lambda lm, c, o: wb.patch(lm, "The man near the door <mask> here.",
                                       "The men near the door <mask> here.",
                                       candidates=("is", "are"), sites=["resid", "head"], layers=[0]),
    "patch-classifier": lambda lm, c, o: wb.patch(c, "The man is here.", "The men is here.",
                                                  metric="prob", target=1, sites="head"),
    "prune_heads_curve": lambda lm, c, o: wb.prune_heads_curve(lm, TEXTS, step=0.5, seed=1),
    "mixing_agreement": lambda lm, c, o: wb.mixing_agreement(c, TEXTS[:2],
                                                             methods=["attention", "alti"]),
    "head_stat_intervals": lambda lm, c, o: wb.head_stat_intervals(lm, TEXTS, n_boot=20,
                                                                   progress=False),
    "compare_models": lambda lm, c, o: wb.compare_models(lm, o, TEXTS, predictions=False,
                                                         progress=False),
    "qk_atlas": lambda lm, c, o: wb.qk_atlas(lm, TEXTS, layers=[0], heads=[0]),
    "features": lambda lm, c, o: wb.features(lm, TEXTS, progress=False, cache=False),
    "features-out": lambda lm, c, o: wb.features(lm, TEXTS, progress=False, out=o.tmp_out),
    "head_stats-out": lambda lm, c, o: wb.head_stats(lm, TEXTS, by_text=True, progress=False,
                                                     out=o.tmp_out.with_suffix(".parquet")),
    "linear_probe": lambda lm, c, o: wb.linear_probe(lm, PROBE, layers=[0], control=False,
                                                     progress=False, cache=False),
    "embedding_map": lambda lm, c, o: wb.embedding_map(lm, TEXTS, layers=[0], progress=False,
                                                       cache=False),
    "similarity": lambda lm, c, o: wb.similarity(lm, o, TEXTS, progress=False, cache=False),
    "attribute-ig": lambda lm, c, o: wb.attribute(lm, MASKED[0], n_steps=4),
    "attribute-gxi": lambda lm, c, o: wb.attribute(lm, MASKED[0], method="grad_x_input"),
    "attribute-classifier": lambda lm, c, o: wb.attribute(c, TEXTS[0], n_steps=4),
    "make_report": lambda lm, c, o: wb.make_report(lm, o.tmp_out, runs=[], texts=TEXTS,
                                                   formats=("html",), progress=False),
}


SLOW = {"make_report"}  # 25 s on the tiny model; every analysis it calls is in the table too


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n
                                  for n in sorted(CALLS)])
def test_an_analysis_leaves_tokenizer_and_model_as_it_found_them(name, tiny_lm, clf, other,
                                                                  tmp_path, run_root):
    other.tmp_out = tmp_path / "report"
    # start from a state that differs from every default an analysis might set: training mode,
    # a frozen embedding, backend truncation on, so a call that "restores" a default is caught
    models = (tiny_lm, clf, other)
    for lm in models:
        lm.model.train()
        lm.encoder.embeddings.word_embeddings.weight.requires_grad_(False)
        # a backend state no call sets by itself (so a leak from an earlier case cannot hide one)
        lm.tokenizer.backend_tokenizer.no_padding()
        lm.tokenizer.backend_tokenizer.enable_truncation(max_length=9999)
    try:
        before = snapshot(*models)
        result = CALLS[name](*models)
        after = snapshot(*models)
    finally:
        for lm in models:
            lm.model.eval()
            lm.encoder.embeddings.word_embeddings.weight.requires_grad_(True)
            lm.tokenizer.backend_tokenizer.no_padding()
            lm.tokenizer.backend_tokenizer.no_truncation()
    for b, a, which in zip(before, after, ("lm", "classifier", "second lm")):
        for part in ("tokenizer", "model"):
            changed = {k for k in b[part] if b[part][k] != a[part][k]}
            assert not changed, f"{name} changed the {which}'s {part}: {sorted(changed)}"
    for frame in result if isinstance(result, tuple) else (result,):  # issue 25: columns instead
        if isinstance(frame, pd.DataFrame):
            assert not frame.attrs, f"{name} returned metadata in DataFrame.attrs: use columns"


def test_the_public_analyses_are_all_in_the_table():
    """A new analysis exported from workbench/__init__.py must join the table above."""
    not_analyses = {"load", "runs", "resolve_device", "load_probe_set", "pretrain", "finetune",
                    "load_task_data", "classification_metrics", "regression_metrics",
                    "confusion_matrix", "sentiment_demo", "attention_rollout", "attention_flow",
                    "linear_cka", "pos_corpus", "read_conll", "bootstrap_interval", "export_table",
                    "online_codelength"}
    import inspect

    functions = {n for n in wb.__all__ if inspect.isfunction(getattr(wb, n))}
    covered = {n.split("-")[0] for n in CALLS}
    assert functions - not_analyses - covered == set()


def test_corpus_packing_after_an_analysis_has_no_pad_ids(tiny_lm, tmp_path):
    """The issue's repro: after wb.attention on texts of two lengths, packing gets no <pad>."""
    from workbench.training.corpus import pack

    docs = ["Hi. This is a longer sentence than the first one."]
    tok = tiny_lm.tokenizer

    def packed():
        return pack(docs, tok, seq_len=40, heldout=0, use_cache=False, cache_dir=tmp_path).train

    clean = packed()
    wb.attention(tiny_lm, ["Hi.", "A longer text."])
    after = packed()
    assert after.tobytes() == clean.tobytes()
    n = int((after[0] != tok.pad_token_id).sum())        # <s> ids </s>, then only <pad>
    assert after[0, n - 1] == tok.eos_token_id and (after[0, n:] == tok.pad_token_id).all()


def test_a_tokenizer_set_up_by_the_user_is_restored_too(tiny_lm):
    """`backend_unchanged` restores whatever was there, not just 'off'."""
    backend = tiny_lm.tokenizer.backend_tokenizer
    backend.enable_truncation(max_length=7)
    try:
        wb.attention(tiny_lm, ["Hi.", "A longer text."])
        assert backend.truncation["max_length"] == 7 and backend.padding is None
    finally:
        backend.no_truncation()
