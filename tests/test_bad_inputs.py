"""Bad inputs across the public API, configs, widgets and CLI: each gives a project error that names
the argument, before anything is written.

Every case runs with the current folder, the run store ($WORKBENCH_RUNS) and the cache
($WORKBENCH_CACHE) inside an empty temporary folder, and asserts that folder is still empty
afterwards: no run folder, report, cache entry or partial file is left behind by a refused call.
Inputs that are files (corrupt models, broken CSVs) are written once, outside that folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import workbench as wb
from workbench import config as C
from workbench.errors import WorkbenchError

NAN, INF = float("nan"), float("inf")


# ----------------------------------------------------------------------------- fixtures

def _corrupt_models(base: Path, root: Path) -> dict[str, Path]:
    """Copies of the tiny model with one file damaged each."""
    weights = (base / "model.safetensors").read_bytes()
    damage = {
        "truncated_weights": ("model.safetensors", weights[: len(weights) // 2]),
        "header_only_weights": ("model.safetensors", weights[:1000]),
        "empty_weights": ("model.safetensors", b""),
        "garbage_weights": ("model.safetensors", b"\x00" * 64),
        "corrupt_tokenizer": ("tokenizer.json", b'{"version": "1.0", "trunc'),
        "binary_tokenizer": ("tokenizer.json", b"\xff\xfe\x00\x01binary"),
        "corrupt_tokenizer_config": ("tokenizer_config.json", b"{oops"),
        "corrupt_config": ("config.json", b"{not json"),
        "config_list": ("config.json", b"[1, 2]"),
        "config_no_model_type": ("config.json", b"{}"),
    }
    out = {}
    for name, (file, data) in damage.items():
        folder = root / name
        shutil.copytree(base, folder)
        (folder / file).write_bytes(data)
        out[name] = folder
    return out


def _bad_tables(root: Path) -> dict[str, Path]:
    files = {
        "latin1.csv": "text,label\ncaf\xe9 au lait,1\nna\xefve,0\n".encode("latin-1"),
        "binary.csv": bytes(range(256)) * 4,
        "binary.tsv": b"\x89PNG\r\n\x1a\n" + bytes(200),
        "empty.csv": b"",
        "blank_lines.csv": b"\n\n\n",
        "header_only.csv": b"text,label\n",
        "ragged.csv": b'text,label\n"an unclosed quote,1\nsecond,0\n',
        "utf16.tsv": "text\tlabel\nhello\t1\nworld\t0\n".encode("utf-16"),
        "bad.jsonl": b'{"text": "a", "label": 1}\n{"text": broken\n',
        "inf_labels.csv": b"text,label\nfirst text,inf\nsecond text,1.5\nthird one,0.5\nfourth,2.5\n",
        "nan_word.csv": b"text,label\nfirst text,0.5\nsecond text,nan\nthird,1.5\nfourth,2.5\n",
        "empty.conll": b"",
        "binary.conll": bytes(range(256)),
        "probe.jsonl": b'{"relation": "r", "template": "no mask", "answers": ["x"]}\n{"bad\n',
        "good.csv": "text,label\n" + "".join(f"sentence {i} is here,{'ab'[i % 2]}\n" for i in range(12)),
        "corpus.txt": ("The cat sat on the mat. " * 40 + "\n\n") .encode() * 5,
        "huge_labels.csv": b"text,label\nfirst text,1e308\nsecond text,-1e308\nthird,0.5\n"
                           b"fourth,2.5\nfifth,1.5\n",
        "ragged_first.csv": b"text,label\nfirst, with a comma,1\nsecond,0\nthird,1\nfourth,0\n",
        "ragged_short.csv": b"text,label\nfirst,1\nsecond\nthird,1\nfourth,0\n",
        "ragged_all.csv": b"text,label\na,b,1\nc,d,0\ne,f,1\ng,h,0\n",
        "ragged.tsv": b"text\tlabel\nfirst\t1\nsecond\t0\nthird\t1\tx\nfourth\t0\n",
    }
    for name, data in files.items():
        (root / name).write_bytes(data.encode() if isinstance(data, str) else data)
    out = {name: root / name for name in files}
    out.update(_unsafe_files(root))
    return out


class _Exploit:
    """A pickle that would run a command when loaded: it must never be loaded."""

    def __reduce__(self):
        import os

        return (os.system, ("echo pwned > /dev/null",))


def _unsafe_files(root: Path) -> dict[str, Path]:
    """A model folder whose only weights are a malicious pytorch_model.bin; a packed corpus whose
    train.npy is a pickled object array; a run folder with a malformed run.json."""
    import pickle

    import torch

    from workbench.testing import make_tiny_model

    model = make_tiny_model(root / "evil_model")
    (model / "model.safetensors").unlink()
    torch.save({"roberta.embeddings.word_embeddings.weight": _Exploit()},
               model / "pytorch_model.bin")
    packed = root / "evil_packed"
    packed.mkdir()
    (packed / "meta.json").write_text(json.dumps({"pad_id": 1}))
    np.save(packed / "train.npy", np.array([_Exploit()], dtype=object), allow_pickle=True)
    np.save(packed / "heldout.npy", np.zeros((2, 8), dtype=np.int32))
    (packed / "pickle.npy").write_bytes(pickle.dumps(_Exploit()))
    run = wb.Run.create("pretrain", {}, root=root / "runs", name="broken")
    (run.path / "run.json").write_text("{oops")
    return {"evil_model": model, "evil_packed": packed, "broken_run": run.path}


@pytest.fixture(scope="module")
def k(tmp_path_factory, tiny_model_dir, tiny_lm):
    """Everything the cases need: models, damaged model folders and broken input files."""
    from workbench.testing import make_tiny_model

    inputs = tmp_path_factory.mktemp("bad_inputs")
    clf_dir = make_tiny_model(inputs / "classifier", head="classifier")
    clf = wb.load(clf_dir, device="cpu")
    probe = pd.DataFrame({"text": [f"sentence number {i} here" for i in range(12)],
                          "label": ["a", "b"] * 6})
    return SimpleNamespace(lm=tiny_lm, clf=clf, model_dir=tiny_model_dir,
                           bad_models=_corrupt_models(Path(tiny_model_dir), inputs / "models"),
                           files=_bad_tables(inputs), probe=probe, out=None)


@pytest.fixture()
def sandbox(tmp_path, monkeypatch, k):
    """An empty folder that is the cwd, the run store and the cache; `k.out` is a path inside it."""
    box = tmp_path / "box"
    box.mkdir()
    monkeypatch.chdir(box)
    monkeypatch.setenv("WORKBENCH_RUNS", str(box / "runs"))
    monkeypatch.setenv("WORKBENCH_CACHE", str(box / "cache"))
    k.out = box / "out"
    yield box
    k.out = None


def _leftovers(box: Path) -> list[str]:
    return sorted(str(p.relative_to(box)) for p in box.rglob("*"))


# ----------------------------------------------------------------------------- the cases

CASES: list = []


def case(id_: str, call, *names: str, exc: type = WorkbenchError) -> None:
    """`call(k)` must raise `exc` (a WorkbenchError) whose message contains every one of `names`."""
    CASES.append(pytest.param(call, names, exc, id=id_))


# texts: every function that takes texts gets the same bad values
BAD_TEXTS = {
    "None": None, "int": 5, "bytes": b"The cat sat.", "dict": {"a": "b"},
    "empty_list": [], "list_with_None": ["fine", None], "blank": ["fine", "   "],
}
TEXT_FUNCS = {
    "attention": lambda k, t: wb.attention(k.lm, t),
    "capture_attention": lambda k, t: wb.capture_attention(k.lm, t),
    "fill_mask": lambda k, t: wb.fill_mask(k.lm, t),
    "score": lambda k, t: wb.score(k.lm, t),
    "score_candidates": lambda k, t: wb.score_candidates(k.lm, t, ["a", "b"]),
    "logit_lens": lambda k, t: wb.logit_lens(k.lm, t),
    "head_stats": lambda k, t: wb.head_stats(k.lm, t, progress=False),
    "head_clusters": lambda k, t: wb.head_clusters(k.lm, t, progress=False),
    "head_importance": lambda k, t: wb.head_importance(k.lm, t, progress=False),
    "compare_attention": lambda k, t: wb.compare_attention(k.lm, k.lm, t, progress=False),
    "features": lambda k, t: wb.features(k.lm, t, progress=False, cache=False),
    "classify": lambda k, t: wb.classify(k.clf, t),
}
TEXT_ARG = {"score": "sentences", "score_candidates": "text"}
for fname, fn in TEXT_FUNCS.items():
    for vname, value in BAD_TEXTS.items():
        what = TEXT_ARG.get(fname, "texts")
        case(f"{fname}-texts-{vname}", lambda k, fn=fn, v=value: fn(k, v), what)

# batch_size: zero, negative, a string, a float, a bool
BAD_BATCH = {"zero": 0, "negative": -1, "string": "8", "float": 2.5, "bool": True}
BATCH_FUNCS = {
    "attention": lambda k, b: wb.attention(k.lm, ["a b c", "d e"], batch_size=b),
    "capture_attention": lambda k, b: wb.capture_attention(k.lm, ["a b c"], batch_size=b),
    "fill_mask": lambda k, b: wb.fill_mask(k.lm, ["a <mask> c"], batch_size=b),
    "head_stats": lambda k, b: wb.head_stats(k.lm, ["a b c"], batch_size=b, progress=False),
    "head_clusters": lambda k, b: wb.head_clusters(k.lm, ["a b c"], batch_size=b, progress=False),
    "head_importance": lambda k, b: wb.head_importance(k.lm, ["a b c"], batch_size=b, progress=False),
    "compare_attention": lambda k, b: wb.compare_attention(k.lm, k.lm, ["a b"], batch_size=b,
                                                           progress=False),
    "features": lambda k, b: wb.features(k.lm, ["a b c"], batch_size=b, progress=False, cache=False),
    "embedding_map": lambda k, b: wb.embedding_map(k.lm, ["a b c", "d e f"], batch_size=b,
                                                   progress=False, cache=False),
    "similarity": lambda k, b: wb.similarity(k.lm, k.lm, ["a b c"], batch_size=b, progress=False,
                                             cache=False),
    "linear_probe": lambda k, b: wb.linear_probe(k.lm, k.probe, batch_size=b, progress=False,
                                                 cache=False),
    "classify": lambda k, b: wb.classify(k.clf, ["a b c"], batch_size=b),
    "evaluate_classifier": lambda k, b: wb.evaluate_classifier(k.clf, k.probe, batch_size=b),
}
for fname, fn in BATCH_FUNCS.items():
    for vname, value in BAD_BATCH.items():
        case(f"{fname}-batch_size-{vname}", lambda k, fn=fn, v=value: fn(k, v), "batch_size")

# max_length: below the special tokens, above the position table, a string
BAD_MAXLEN = {"zero": 0, "one": 1, "string": "64", "huge": 100_000}
MAXLEN_FUNCS = {
    "attention": lambda k, m: wb.attention(k.lm, ["a b c"], max_length=m),
    "attention_tensor": lambda k, m: wb.attention_tensor(k.lm, "a b c", max_length=m),
    "attention_qk": lambda k, m: wb.attention_qk(k.lm, "a b c", max_length=m),
    "head_stats": lambda k, m: wb.head_stats(k.lm, ["a b c"], max_length=m, progress=False),
    "features": lambda k, m: wb.features(k.lm, ["a b c"], max_length=m, progress=False,
                                         cache=False),
    "classify": lambda k, m: wb.classify(k.clf, ["a b c"], max_length=m),
}
for fname, fn in MAXLEN_FUNCS.items():
    for vname, value in BAD_MAXLEN.items():
        case(f"{fname}-max_length-{vname}", lambda k, fn=fn, v=value: fn(k, v), "max_length")

# a 10,000-word text: every analysis refuses it (naming texts and max_length), none truncates it
LONG = " ".join(["word"] * 10_000)
LONG_FUNCS = {
    "attention": lambda k: wb.attention(k.lm, ["short one", LONG]),
    "attention-pair": lambda k: wb.attention(k.lm, [("short one", LONG)]),
    "attention_tensor": lambda k: wb.attention_tensor(k.lm, LONG),
    "attention_qk": lambda k: wb.attention_qk(k.lm, LONG),
    "capture_attention": lambda k: wb.capture_attention(k.lm, [LONG]),
    "qk_atlas": lambda k: wb.qk_atlas(k.lm, ["short one", LONG]),
    "head_roles": lambda k: wb.head_roles(k.lm, [LONG], syntax=False, progress=False),
    "head_stats": lambda k: wb.head_stats(k.lm, [LONG], progress=False),
    "head_clusters": lambda k: wb.head_clusters(k.lm, [LONG], progress=False),
    "head_importance": lambda k: wb.head_importance(k.lm, [LONG], progress=False),
    "compare_attention": lambda k: wb.compare_attention(k.lm, k.lm, [LONG], progress=False),
    "compare_models": lambda k: wb.compare_models(k.lm, k.lm, [LONG], progress=False),
    "features": lambda k: wb.features(k.lm, [LONG], progress=False, cache=False),
    "embedding_map": lambda k: wb.embedding_map(k.lm, ["a b", LONG], progress=False, cache=False),
    "attention-max_length": lambda k: wb.attention(k.lm, ["a b c d e f g h i j"], max_length=6),
}
for fname, fn in LONG_FUNCS.items():
    case(f"{fname}-10000-words", fn, "texts[", "max_length", "never truncate")

# the model argument itself
for fname, call in {
    "attention": lambda x: wb.attention(x, "a b"),
    "fill_mask": lambda x: wb.fill_mask(x, "a <mask>"),
    "head_stats": lambda x: wb.head_stats(x, "a b", progress=False),
    "features": lambda x: wb.features(x, "a b", progress=False, cache=False),
    "score": lambda x: wb.score(x, "a b"),
}.items():
    case(f"{fname}-lm-None", lambda k, c=call: c(None), "lm")
    case(f"{fname}-lm-string", lambda k, c=call: c("demo"), "lm")
    case(f"{fname}-lm-empty_dict", lambda k, c=call: c({}), "lm")

# ---- loading models
for name in ("truncated_weights", "header_only_weights", "empty_weights", "garbage_weights"):
    case(f"load-{name}", lambda k, n=name: wb.load(k.bad_models[n], device="cpu"),
         "model.safetensors", exc=wb.ModelNotFoundError)
for name, file in (("corrupt_tokenizer", "tokenizer.json"), ("binary_tokenizer", "tokenizer.json"),
                   ("corrupt_tokenizer_config", "tokenizer_config.json"),
                   ("corrupt_config", "config.json"), ("config_list", "config.json"),
                   ("config_no_model_type", "config.json")):
    case(f"load-{name}", lambda k, n=name: wb.load(k.bad_models[n], device="cpu"), file,
         exc=wb.ModelNotFoundError)
case("load-None", lambda k: wb.load(None), "name_or_path")
case("load-int", lambda k: wb.load(3), "name_or_path")
case("load-empty", lambda k: wb.load(""), "name_or_path")
case("load-missing-folder", lambda k: wb.load("./no/such/folder"), "no such folder",
     exc=wb.ModelNotFoundError)
case("load-a-file", lambda k: wb.load(k.files["latin1.csv"]), "is a file",
     exc=wb.ModelNotFoundError)
case("load-unknown-hub-offline", lambda k: wb.load("nobody/no-such-model-xyz"), "not in the local",
     exc=wb.ModelNotFoundError)
case("load-task", lambda k: wb.load(k.model_dir, task="tagger"), "task")
case("load-device-tpu", lambda k: wb.load(k.model_dir, device="tpu"), "device='tpu'", "'cpu'",
     exc=wb.DeviceError)
case("load-device-int", lambda k: wb.load(k.model_dir, device=7), "device", exc=wb.DeviceError)
case("load-dtype", lambda k: wb.load(k.model_dir, device="cpu", dtype="float64"), "dtype",
     exc=wb.DeviceError)
case("resolve_device-tpu", lambda k: wb.resolve_device("tpu"), "device='tpu'", "'cuda'",
     exc=wb.DeviceError)
case("resolve_device-garbage", lambda k: wb.resolve_device("cuda:x"), "device=", exc=wb.DeviceError)
case("resolve_device-None", lambda k: wb.resolve_device(None), "device", exc=wb.DeviceError)
case("resolve_device-meta", lambda k: wb.resolve_device("meta"), "device='meta'",
     exc=wb.DeviceError)

# ---- attention options
case("attention-mode", lambda k: wb.attention(k.lm, "a b", mode="sideways"), "mode")
case("attention-layers-out-of-range", lambda k: wb.attention(k.lm, "a b", layers=[99]), "layer")
case("attention-heads-out-of-range", lambda k: wb.attention(k.lm, "a b", heads=[99]), "head")
case("attention-reduce", lambda k: wb.attention(k.lm, "a b", reduce="median-ish"), "reduce")
case("attention-aggregate", lambda k: wb.attention(k.lm, "a b", aggregate="colour"), "aggregate")
case("attention-pairs-length", lambda k: wb.attention(k.lm, ["a", "b"], pairs=["c"]), "pairs")
case("attention_tensor-list", lambda k: wb.attention_tensor(k.lm, ["a", "b", "c"]), "one text")
case("attention_tensor-None", lambda k: wb.attention_tensor(k.lm, None), "text")
case("attention_qk-None", lambda k: wb.attention_qk(k.lm, None), "text")
case("attention_qk-list", lambda k: wb.attention_qk(k.lm, ["a", "b"]), "text")
case("attention_rollout-residual-nan",
     lambda k: wb.attention_rollout(__import__("torch").ones(2, 1, 3, 3) / 3, residual=NAN),
     "residual")
case("attention_rollout-residual-2",
     lambda k: wb.attention_rollout(__import__("torch").ones(2, 1, 3, 3) / 3, residual=2.0),
     "residual")
case("attention_flow-residual-inf",
     lambda k: wb.attention_flow(__import__("torch").ones(2, 1, 3, 3) / 3, residual=INF),
     "residual")

# ---- probing
case("fill_mask-no-mask", lambda k: wb.fill_mask(k.lm, "no mask here"), "mask")
case("fill_mask-top_k-zero", lambda k: wb.fill_mask(k.lm, "a <mask>", top_k=0), "top_k")
case("fill_mask-top_k-string", lambda k: wb.fill_mask(k.lm, "a <mask>", top_k="3"), "top_k")
case("fill_mask-top_k-nan", lambda k: wb.fill_mask(k.lm, "a <mask>", top_k=NAN), "top_k")
case("score_candidates-empty", lambda k: wb.score_candidates(k.lm, "a <mask>", []), "candidates")
case("score_candidates-None", lambda k: wb.score_candidates(k.lm, "a <mask>", None), "candidates")
case("score_candidates-method", lambda k: wb.score_candidates(k.lm, "a <mask>", ["x"],
                                                              method="best"), "method")
case("score_candidates-no-mask", lambda k: wb.score_candidates(k.lm, "no mask", ["x"]), "mask")
case("score-method", lambda k: wb.score(k.lm, "a b", method="bogus"), "method")
case("score-max_tokens-zero", lambda k: wb.score(k.lm, "a b", max_tokens=0), "max_tokens")
case("score-max_tokens-string", lambda k: wb.score(k.lm, "a b", max_tokens="5"), "max_tokens")
case("compare_pairs-lengths", lambda k: wb.compare_pairs(k.lm, ["a b", "c d"], ["e f"]), "bad")
case("compare_pairs-None", lambda k: wb.compare_pairs(k.lm, None, None), "good")
case("compare_pairs-method", lambda k: wb.compare_pairs(k.lm, ["a"], ["b"], method="x"), "method")
case("compare_pairs-frame-columns",
     lambda k: wb.compare_pairs(k.lm, pd.DataFrame({"x": ["a"]})), "good")
case("probe-frame-None", lambda k: wb.probe(k.lm, None), "frame")
case("probe-frame-columns", lambda k: wb.probe(k.lm, pd.DataFrame({"x": [1]})), "template")
case("probe-k-zero",
     lambda k: wb.probe(k.lm, pd.DataFrame({"relation": ["r"], "template": ["a <mask>"],
                                            "answers": [["b"]]}), k=0), "k")
case("probe-mode", lambda k: wb.probe(k.lm, pd.DataFrame({"relation": ["r"],
                                                          "template": ["a <mask>"],
                                                          "answers": [["b"]]}), mode="x"), "mode")
case("load_probe_set-missing", lambda k: wb.load_probe_set("no_such_probes.jsonl"),
     "no_such_probes")
case("load_probe_set-corrupt", lambda k: wb.load_probe_set(k.files["probe.jsonl"]), "probe.jsonl")
case("logit_lens-top_k-zero", lambda k: wb.logit_lens(k.lm, "a <mask>", top_k=0), "top_k")
case("logit_lens-track-None-item", lambda k: wb.logit_lens(k.lm, "a <mask>", track=[None]),
     "track")

# ---- heads
case("ablate-scale-nan", lambda k: wb.ablate(k.lm, [(0, 0)], scale=NAN).__enter__(), "scale")
case("ablate-scale-inf", lambda k: wb.ablate(k.lm, [(0, 0)], scale=INF).__enter__(), "scale")
case("ablate-scale-string", lambda k: wb.ablate(k.lm, [(0, 0)], scale="0").__enter__(), "scale")
case("ablate-layer-out-of-range", lambda k: wb.ablate(k.lm, [(99, 0)]).__enter__(), "99")
case("ablate-head-out-of-range", lambda k: wb.ablate(k.lm, [(0, 99)]).__enter__(), "99")
case("ablate-heads-None", lambda k: wb.ablate(k.lm, None).__enter__(), "heads")
case("ablate-heads-string", lambda k: wb.ablate(k.lm, "0,1").__enter__(), "heads")
case("head_importance-method", lambda k: wb.head_importance(k.lm, ["a b"], method="x",
                                                            progress=False), "method")
case("head_importance-objective", lambda k: wb.head_importance(k.lm, ["a b"], objective="x",
                                                               progress=False), "objective")
case("head_importance-mask_prob-nan", lambda k: wb.head_importance(k.lm, ["a b"], mask_prob=NAN,
                                                                   progress=False), "mask_prob")
case("head_importance-mask_prob-zero", lambda k: wb.head_importance(k.lm, ["a b"], mask_prob=0,
                                                                    progress=False), "mask_prob")
case("head_importance-mask_prob-1.5", lambda k: wb.head_importance(k.lm, ["a b"], mask_prob=1.5,
                                                                   progress=False), "mask_prob")
case("head_clusters-max_texts-zero", lambda k: wb.head_clusters(k.lm, ["a b"], max_texts=0,
                                                                progress=False), "max_texts")
case("head_clusters-threshold-nan", lambda k: wb.head_clusters(k.lm, ["a b"], threshold=NAN,
                                                               progress=False), "threshold")
case("syntax_heads-texts-None", lambda k: wb.syntax_heads(k.lm, None, progress=False), "texts")
case("syntax_heads-min_count-zero", lambda k: wb.syntax_heads(k.lm, ["a b"], min_count=0,
                                                              progress=False), "min_count")
case("compare_attention-lm_b-None", lambda k: wb.compare_attention(k.lm, None, ["a"],
                                                                   progress=False), "lm")

# ---- qk_atlas, head_roles, compare_models: every argument at the boundary
QK = {"layers-bogus": (dict(layers="bogus"), "layers"), "layers-99": (dict(layers=[99]), "layers"),
      "layers-float": (dict(layers=1.5), "layers"), "layers-empty": (dict(layers=[]), "layers"),
      "heads-float": (dict(heads=1.5), "heads"), "heads-99": (dict(heads=[0, 99]), "heads"),
      "heads-bool": (dict(heads=True), "heads"), "seed-negative": (dict(seed=-1), "seed"),
      "seed-string": (dict(seed="0"), "seed"), "seed-float": (dict(seed=1.5), "seed"),
      "method": (dict(method="mds"), "method"), "align-string": (dict(align="yes"), "align"),
      "labels-unknown": (dict(labels=["colour"]), "labels"), "labels-int": (dict(labels=5), "labels"),
      "batch_size-zero": (dict(batch_size=0), "batch_size"),
      "max_length-one": (dict(max_length=1), "max_length"), "nlp-int": (dict(nlp=5), "nlp")}
for vname, (kw, name) in QK.items():
    case(f"qk_atlas-{vname}", lambda k, kw=kw: wb.qk_atlas(k.lm, ["a b c"], **kw), name)
case("qk_atlas-lm-None", lambda k: wb.qk_atlas(None, ["a b c"]), "lm")
case("qk_atlas-texts-None", lambda k: wb.qk_atlas(k.lm, None), "texts")
ROLES = {"syntax": (dict(syntax="maybe"), "syntax"), "threshold-nan": (dict(threshold=NAN), "threshold"),
         "threshold-zero": (dict(threshold=0), "threshold"), "broad-2": (dict(broad=2.0), "broad"),
         "max_offset-zero": (dict(max_offset=0), "max_offset"),
         "max_offset-float": (dict(max_offset=1.5), "max_offset"),
         "syntax_margin-negative": (dict(syntax_margin=-1), "syntax_margin"),
         "min_arcs-zero": (dict(min_arcs=0), "min_arcs"), "average": (dict(average="x"), "average"),
         "batch_size-zero": (dict(batch_size=0), "batch_size"),
         "progress-string": (dict(progress="no"), "progress"),
         "max_length-string": (dict(max_length="64"), "max_length"), "nlp-int": (dict(nlp=5), "nlp")}
for vname, (kw, name) in ROLES.items():
    case(f"head_roles-{vname}", lambda k, kw=kw: wb.head_roles(k.lm, ["a b c"], **kw), name)
case("head_roles-lm-None", lambda k: wb.head_roles(None, ["a b c"]), "lm")
case("head_roles-texts-None", lambda k: wb.head_roles(k.lm, None), "texts")
DIFF = {"importance": (dict(importance="yes"), "importance"), "roles": (dict(roles=None), "roles"),
        "cka": (dict(cka=1), "cka"), "predictions": (dict(predictions="no"), "predictions"),
        "syntax": (dict(syntax="x"), "syntax"), "max_rows-zero": (dict(max_rows=0), "max_rows"),
        "batch_size-zero": (dict(batch_size=0), "batch_size"),
        "progress-None": (dict(progress=None), "progress")}
for vname, (kw, name) in DIFF.items():
    case(f"compare_models-{vname}", lambda k, kw=kw: wb.compare_models(k.lm, k.lm, ["a b"], **kw),
         name)
case("compare_models-lm_a-None", lambda k: wb.compare_models(None, k.lm, ["a b"]), "lm_a")
case("compare_models-lm_b-string", lambda k: wb.compare_models(k.lm, "demo", ["a b"]), "lm_b")
case("compare_models-texts-None", lambda k: wb.compare_models(k.lm, k.lm, None), "texts")

# ---- representations
case("features-pool", lambda k: wb.features(k.lm, "a b", pool="max-ish", cache=False,
                                            progress=False), "pool")
case("features-layers", lambda k: wb.features(k.lm, "a b", layers=[99], cache=False,
                                              progress=False), "layer")
case("linear_probe-3-rows", lambda k: wb.linear_probe(k.lm, k.probe.head(3), progress=False,
                                                      cache=False), "rows")
case("linear_probe-one-class", lambda k: wb.linear_probe(
    k.lm, k.probe.assign(label="a"), progress=False, cache=False), "class")
case("linear_probe-test_size-zero", lambda k: wb.linear_probe(k.lm, k.probe, test_size=0,
                                                              progress=False, cache=False),
     "test_size")
case("linear_probe-test_size-nan", lambda k: wb.linear_probe(k.lm, k.probe, test_size=NAN,
                                                             progress=False, cache=False),
     "test_size")
case("linear_probe-C-zero", lambda k: wb.linear_probe(k.lm, k.probe, C=0, progress=False,
                                                      cache=False), "C")
case("linear_probe-C-nan", lambda k: wb.linear_probe(k.lm, k.probe, C=NAN, progress=False,
                                                     cache=False), "C")
case("linear_probe-max_iter-zero", lambda k: wb.linear_probe(k.lm, k.probe, max_iter=0,
                                                             progress=False, cache=False),
     "max_iter")
case("linear_probe-task", lambda k: wb.linear_probe(k.lm, k.probe, task="x", progress=False,
                                                    cache=False), "task")
case("linear_probe-data-None", lambda k: wb.linear_probe(k.lm, None, progress=False,
                                                         cache=False), "data")
case("linear_probe-missing-column", lambda k: wb.linear_probe(
    k.lm, k.probe, label_col="tag", progress=False, cache=False), "tag")
case("embedding_map-method", lambda k: wb.embedding_map(k.lm, ["a b", "c d"], method="x",
                                                        progress=False, cache=False), "method")
case("embedding_map-max_points-zero", lambda k: wb.embedding_map(
    k.lm, ["a b", "c d"], max_points=0, progress=False, cache=False), "max_points")
case("embedding_map-texts-None", lambda k: wb.embedding_map(k.lm, None, progress=False,
                                                            cache=False), "texts")
case("similarity-max_rows-zero", lambda k: wb.similarity(k.lm, k.lm, ["a b"], max_rows=0,
                                                         progress=False, cache=False), "max_rows")
case("similarity-texts-None", lambda k: wb.similarity(k.lm, k.lm, None, progress=False,
                                                      cache=False), "texts")
case("linear_cka-shapes", lambda k: wb.linear_cka(np.ones((4, 3)), np.ones((5, 3))), "rows")
case("linear_cka-nan", lambda k: wb.linear_cka(np.full((4, 3), NAN), np.ones((4, 3))), "finite")
case("linear_cka-None", lambda k: wb.linear_cka(None, np.ones((4, 3))), "x")
case("attribute-method", lambda k: wb.attribute(k.lm, "a <mask>", method="x"), "method")
case("attribute-level", lambda k: wb.attribute(k.lm, "a <mask>", level="x"), "level")
case("attribute-output", lambda k: wb.attribute(k.lm, "a <mask>", output="x"), "output")
case("attribute-n_steps-zero", lambda k: wb.attribute(k.lm, "a <mask>", n_steps=0), "n_steps")
case("attribute-text-None", lambda k: wb.attribute(k.lm, None), "text")
case("pos_corpus-name", lambda k: wb.pos_corpus("klingon"), "klingon")
case("pos_corpus-max_sentences-zero", lambda k: wb.pos_corpus(max_sentences=0), "max_sentences")
case("read_conll-missing", lambda k: wb.read_conll("no_such_file.conll"), "no_such_file")
case("read_conll-binary", lambda k: wb.read_conll(k.files["binary.conll"]), "binary.conll")
case("read_conll-None", lambda k: wb.read_conll(None), "source")

# ---- tables and metrics
for fname in ("latin1.csv", "binary.csv", "binary.tsv", "empty.csv", "blank_lines.csv",
              "header_only.csv", "ragged.csv", "utf16.tsv", "bad.jsonl"):
    case(f"load_task_data-{fname}", lambda k, f=fname: wb.load_task_data(k.files[f]), fname)
case("load_task_data-inf-labels", lambda k: wb.load_task_data(k.files["inf_labels.csv"],
                                                              task="regression"), "label")
case("load_task_data-nan-label-text", lambda k: wb.load_task_data(k.files["nan_word.csv"],
                                                                  task="regression"), "label")
case("load_task_data-None", lambda k: wb.load_task_data(None), "data")
case("load_task_data-task", lambda k: wb.load_task_data(k.probe, task="x"), "task")
case("load_task_data-validation_split-nan",
     lambda k: wb.load_task_data(k.probe, validation_split=NAN), "validation_split")
case("load_task_data-validation_split-one",
     lambda k: wb.load_task_data(k.probe, validation_split=1.0), "validation_split")
case("load_task_data-seed-string", lambda k: wb.load_task_data(k.probe, seed="0"), "seed")
case("load_task_data-text_column", lambda k: wb.load_task_data(k.probe, text_column="body"),
     "body")
case("load_task_data-missing-csv", lambda k: wb.load_task_data("no_such_table.csv"),
     "no_such_table")
case("load_task_data-empty-frame", lambda k: wb.load_task_data(pd.DataFrame()), "empty")
case("classification_metrics-lengths", lambda k: wb.classification_metrics([0, 1], [0]), "y_pred")
case("classification_metrics-empty", lambda k: wb.classification_metrics([], []), "y_true")
case("regression_metrics-nan", lambda k: wb.regression_metrics([0.0, 1.0, 2.0], [0.0, NAN, 1.0]),
     "y_pred")
case("regression_metrics-inf", lambda k: wb.regression_metrics([0.0, INF, 2.0], [0.0, 1.0, 1.0]),
     "y_true")
case("regression_metrics-lengths", lambda k: wb.regression_metrics([0.0, 1.0], [0.0]), "y_pred")
case("confusion_matrix-lengths", lambda k: wb.confusion_matrix([0, 1], [0]), "y_pred")
case("sentiment_demo-n-zero", lambda k: wb.sentiment_demo(n=0), "n")
case("sentiment_demo-n-string", lambda k: wb.sentiment_demo(n="5"), "n")
case("sentiment_demo-split", lambda k: wb.sentiment_demo(split="dev"), "split")
case("evaluate_classifier-data-None", lambda k: wb.evaluate_classifier(k.clf, None), "data")
case("classify-pairs-length", lambda k: wb.classify(k.clf, ["a", "b"], ["c"]), "pairs")

# ---- issue 27: silent garbage and unclear errors at the boundary
case("load_task_data-huge-regression-labels", lambda k: wb.load_task_data(
    k.files["huge_labels.csv"], task="regression"), "label", "1e+308", "standardise")
case("finetune-huge-regression-labels", lambda k: wb.finetune(
    k.lm, k.files["huge_labels.csv"], config=wb.FineTuneConfig(max_steps=1, task="regression")),
     "label", "standardise")
for fname, line in (("ragged_first.csv", "line 2 "), ("ragged_short.csv", "line 3 "),
                    ("ragged_all.csv", "line 2 "), ("ragged.tsv", "line 4 ")):
    case(f"load_task_data-{fname}", lambda k, f=fname: wb.load_task_data(k.files[f]), fname, line)
case("load_task_data-None-label-in-frame", lambda k: wb.load_task_data(
    k.probe.assign(label=[None] + list(k.probe["label"][1:]))), "label", "rows 0")
case("linear_probe-nan-label", lambda k: wb.linear_probe(
    k.lm, k.probe.assign(label=["pos", NAN, "neg"] * 4), progress=False, cache=False),
     "label_col", "missing", "rows [1, 4, 7, 10]")
case("linear_probe-None-label", lambda k: wb.linear_probe(
    k.lm, k.probe.assign(label=["pos", None, "neg"] * 4), progress=False, cache=False),
     "label_col", "missing")
case("linear_probe-nan-text", lambda k: wb.linear_probe(
    k.lm, k.probe.assign(text=[NAN] + list(k.probe["text"][1:])), progress=False, cache=False),
     "text_col", "missing")
case("linear_probe-token-nan-label", lambda k: wb.linear_probe(
    k.lm, [[("The", "DET"), ("cat", NAN)], [("A", "DET"), ("dog", "NOUN")]] * 6, task="token",
    progress=False, cache=False), "label", "missing")
case("make_report-width-nan", lambda k: wb.make_report(k.lm, k.out, width=NAN, progress=False),
     "width")
case("make_report-width-inf", lambda k: wb.make_report(k.lm, k.out, width=INF, progress=False),
     "width")
case("make_report-broken-run", lambda k: wb.make_report(k.lm, k.out, runs=[k.files["broken_run"]],
                                                        progress=False), "broken", "run.json")
case("make_report-runs-string", lambda k: wb.make_report(k.lm, k.out, runs="abc", progress=False),
     "runs")
case("make_report-texts-None-item", lambda k: wb.make_report(k.lm, k.out, texts=["a", None],
                                                             progress=False), "texts")
case("lm.tokens-None", lambda k: k.lm.tokens(None), "text")
case("lm.tokens-list", lambda k: k.lm.tokens(["a", "b"]), "text")
case("lm.tokens-pair-int", lambda k: k.lm.tokens("a", 5), "text_pair")
case("load-malicious-pytorch_model.bin", lambda k: wb.load(k.files["evil_model"], device="cpu"),
     "pytorch_model.bin", "never unpickles", exc=wb.ModelNotFoundError)
case("PackedCorpus.load-pickled-train.npy", lambda k: __import__(
    "workbench.training.corpus", fromlist=["PackedCorpus"]).PackedCorpus.load(
    k.files["evil_packed"]), "train.npy", "pickled")
case("pretrain-pickled-train.npy", lambda k: wb.pretrain(k.files["evil_packed"],
                                                         config={"preset": "tiny"}), "train.npy")

# ---- runs
case("runs-root-a-file", lambda k: wb.runs(k.files["latin1.csv"]), "root")
case("runs-root-int", lambda k: wb.runs(5), "root")
case("Run.create-root-int", lambda k: wb.Run.create("finetune", {}, root=5), "root")
case("Run-missing-folder", lambda k: wb.Run("no_such_run_folder"), "no_such_run_folder")

# ---- configs (PretrainConfig / FineTuneConfig)
for field, value in [("eval_every", 0), ("checkpoint_every", 0), ("log_every", 0),
                     ("num_heads", 0), ("max_grad_norm", -1.0), ("eval_sequences", 0),
                     ("weight_decay", -0.1), ("warmup_steps", -1), ("batch_size", "8"),
                     ("batch_size", 0), ("learning_rate", NAN), ("learning_rate", -1.0), ("max_steps", 0),
                     ("num_layers", 0), ("hidden_size", 0), ("vocab_size", 10),
                     ("heldout", 1.5), ("heldout", NAN), ("whole_word", "no"),
                     ("keep_checkpoints", 0), ("beta2", 1.5), ("eps", 0.0), ("device", "tpu"),
                     ("intermediate_size", 0), ("grad_accumulation", 0), ("seq_len", "128")]:
    case(f"PretrainConfig-{field}-{value!r}", lambda k, f=field, v=value: wb.PretrainConfig(**{f: v}),
         field)
case("PretrainConfig-preset", lambda k: wb.PretrainConfig.from_preset("enormous"), "enormous")
case("PretrainConfig-unknown-field", lambda k: wb.PretrainConfig.from_dict({"colour": 1}),
     "colour")
case("PretrainConfig-from_dict-list", lambda k: wb.PretrainConfig.from_dict([1]), "dict")
for field, value in [("batch_size", "8"), ("batch_size", 0), ("learning_rate", NAN),
                     ("learning_rate", INF), ("max_length", 1), ("epochs", 0),
                     ("weight_decay", -1.0), ("warmup_steps", -1), ("warmup_ratio", 1.5),
                     ("eval_every", -1), ("task", "ranking"), ("validation_split", 0.0),
                     ("max_steps", 0), ("log_every", 0), ("max_grad_norm", NAN),
                     ("device", "tpu"), ("precision", "fp8"), ("early_stopping_metric", "x"),
                     ("text_column", 5)]:
    case(f"FineTuneConfig-{field}-{value!r}",
         lambda k, f=field, v=value: wb.FineTuneConfig(**{f: v}), field)
case("FineTuneConfig-load_json-corrupt",
     lambda k: wb.FineTuneConfig.load_json(k.files["bad.jsonl"]), "bad.jsonl")

# ---- training entry points: refused before a run folder exists
case("pretrain-config-dict-bad", lambda k: wb.pretrain(k.files["corpus.txt"],
                                                       config={"batch_size": 0}), "batch_size")
case("pretrain-config-type", lambda k: wb.pretrain(k.files["corpus.txt"], config=5), "config")
case("pretrain-corpus-missing", lambda k: wb.pretrain("no_such_corpus.txt",
                                                      config={"preset": "tiny"}), "no_such_corpus")
case("pretrain-corpus-empty-list", lambda k: wb.pretrain([], config={"preset": "tiny"}), "corpus")
case("pretrain-resume-missing", lambda k: wb.pretrain(resume="no_such_run"), "no_such_run")
case("Corpus-None", lambda k: wb.Corpus(None), "documents")
case("Corpus-empty", lambda k: wb.Corpus([]), "documents")
case("Corpus-non-strings", lambda k: wb.Corpus([1, 2]), "documents")
case("finetune-data-None", lambda k: wb.finetune(k.lm, None,
                                                 config=wb.FineTuneConfig(max_steps=1)), "data")
case("finetune-binary-csv", lambda k: wb.finetune(k.lm, k.files["binary.csv"],
                                                  config=wb.FineTuneConfig(max_steps=1)),
     "binary.csv")
case("finetune-inf-labels", lambda k: wb.finetune(
    k.lm, k.files["inf_labels.csv"], config=wb.FineTuneConfig(max_steps=1, task="regression")),
     "label")
case("finetune-config-type", lambda k: wb.finetune(k.lm, k.probe, config={"epochs": 1}), "config")
case("finetune-model-missing", lambda k: wb.finetune("./no_such_model", k.probe,
                                                     config=wb.FineTuneConfig(max_steps=1)),
     "no_such_model")
case("finetune-resume-missing", lambda k: wb.finetune(k.lm, k.probe, resume="no_such_run"),
     "no_such_run")

# ---- report and figures (nothing may be written to out_dir)
case("make_report-n_texts-zero", lambda k: wb.make_report(k.lm, k.out, n_texts=0,
                                                          progress=False), "n_texts")
case("make_report-formats", lambda k: wb.make_report(k.lm, k.out, formats=("doc",),
                                                     progress=False), "formats")
case("make_report-width", lambda k: wb.make_report(k.lm, k.out, width=-3, progress=False),
     "width")
case("make_report-lm-None", lambda k: wb.make_report(None, k.out, progress=False), "lm")
case("figures.export-non-figure", lambda k: wb.figures.export({"data": []}, k.out / "f.png"),
     "fig")
case("figures.export-negative-width", lambda k: wb.figures.export(
    __import__("plotly.graph_objects", fromlist=["Figure"]).Figure(), k.out / "f.png", width=-1),
     "width")
case("figures.export-format", lambda k: wb.figures.export(
    __import__("plotly.graph_objects", fromlist=["Figure"]).Figure(), k.out / "f.docx"), "docx")


# ---- widget constructors
def _widget(name):
    return getattr(wb.widgets, name)


case("AttentionExplorer-view", lambda k: _widget("AttentionExplorer")(k.lm, "a b", view="x"),
     "view")
case("AttentionExplorer-mode", lambda k: _widget("AttentionExplorer")(k.lm, "a b", mode="x"),
     "mode")
case("AttentionExplorer-lm-None", lambda k: _widget("AttentionExplorer")(None, "a b"), "lm")
case("AttentionExplorer-texts-int", lambda k: _widget("AttentionExplorer")(k.lm, 5), "texts")
case("AttentionExplorer-unknown-option",
     lambda k: _widget("AttentionExplorer")(k.lm, "a b", colour="red"), "colour")
case("MaskProbe-top_k-zero", lambda k: _widget("MaskProbe")(k.lm, top_k=0), "top_k")
case("MaskProbe-method", lambda k: _widget("MaskProbe")(k.lm, method="x"), "method")
case("MaskProbe-lm-None", lambda k: _widget("MaskProbe")(None), "lm")
case("MaskProbe-unknown-option", lambda k: _widget("MaskProbe")(k.lm, colour="red"), "colour")
case("HeadExplorer-texts-None", lambda k: _widget("HeadExplorer")(k.lm, None), "texts")
case("HeadExplorer-statistic", lambda k: _widget("HeadExplorer")(k.lm, ["a b"], statistic="x"),
     "statistic")
case("HeadExplorer-batch_size", lambda k: _widget("HeadExplorer")(k.lm, ["a b"], batch_size=0),
     "batch_size")
case("QKAtlas-color", lambda k: _widget("QKAtlas")(k.lm, ["a b"], color="rainbow"), "color")
case("QKAtlas-color-None", lambda k: _widget("QKAtlas")(k.lm, ["a b"], color=None), "color")
case("QKAtlas-color-not-in-atlas", lambda k: _widget("QKAtlas")(k.lm, ["a b"], color="pos",
                                                                 layers=[0], heads=[0]), "color")
case("QKAtlas-max_points", lambda k: _widget("QKAtlas")(k.lm, ["a b"], max_points=0), "max_points")
case("QKAtlas-atlas-type", lambda k: _widget("QKAtlas")(k.lm, ["a b"], atlas=5), "atlas")
case("QKAtlas-unknown-option", lambda k: _widget("QKAtlas")(k.lm, ["a b"], colour="red"), "colour")
case("QKAtlas-heads", lambda k: _widget("QKAtlas")(k.lm, ["a b"], heads=1.5), "heads")
case("QKAtlas-lm-None", lambda k: _widget("QKAtlas")(None, ["a b"]), "lm")
case("QKAtlas-texts-None", lambda k: _widget("QKAtlas")(k.lm, None), "texts")
case("HeadExplorer-examples-zero", lambda k: _widget("HeadExplorer")(k.lm, ["a b"], examples=0),
     "examples")
case("HeadExplorer-examples-50", lambda k: _widget("HeadExplorer")(k.lm, ["a b"], examples=50),
     "examples")
case("HeadExplorer-max_texts", lambda k: _widget("HeadExplorer")(k.lm, ["a b"], max_texts=0),
     "max_texts")
case("HeadExplorer-stats", lambda k: _widget("HeadExplorer")(k.lm, ["a b"], stats=5), "stats")
case("HeadExplorer-lm-None", lambda k: _widget("HeadExplorer")(None, ["a b"]), "lm")
case("ProbeLab-task", lambda k: _widget("ProbeLab")(k.lm, k.probe, task="x"), "task")
case("ProbeLab-data-None", lambda k: _widget("ProbeLab")(k.lm, None), "data")
case("ProbeLab-unknown-option", lambda k: _widget("ProbeLab")(k.lm, k.probe, colour="red"),
     "colour")
case("AttributionView-text-None", lambda k: _widget("AttributionView")(k.lm, None), "text")
case("AttributionView-level", lambda k: _widget("AttributionView")(k.lm, "a <mask>", level="x"),
     "level")
case("AttributionView-n_steps", lambda k: _widget("AttributionView")(k.lm, "a <mask>",
                                                                       n_steps=0), "n_steps")
case("RunMonitor-redraw_s", lambda k: _widget("RunMonitor")(redraw_s=-1), "redraw_s")
case("RunMonitor-stop-type", lambda k: _widget("RunMonitor")(stop="yes"), "stop")
case("PretrainRun-config-type", lambda k: _widget("PretrainRun")(config="tiny"), "config")
case("FineTuneRun-config-type", lambda k: _widget("FineTuneRun")(config={"epochs": 1}), "config")
case("FineTuneRun-model-int", lambda k: _widget("FineTuneRun")(model=5), "model")


@pytest.mark.parametrize("call, names, exc", CASES)
def test_bad_input_is_a_named_project_error(call, names, exc, k, sandbox):
    with pytest.raises(WorkbenchError) as info:
        call(k)
    assert isinstance(info.value, exc), f"{type(info.value).__name__}, expected {exc.__name__}"
    message = str(info.value)
    for name in names:
        assert name in message, f"the message does not name {name!r}: {message}"
    assert _leftovers(sandbox) == [], "a refused call left files behind"


# ----------------------------------------------------------------------------- CLI

CLI_CASES = [
    pytest.param(["finetune", "{binary.csv}", "--model", "{model}", "--max-steps", "1"],
                 "binary.csv", id="finetune-binary-csv"),
    pytest.param(["finetune", "{empty.csv}", "--model", "{model}", "--max-steps", "1"],
                 "empty.csv", id="finetune-empty-csv"),
    pytest.param(["finetune", "{latin1.csv}", "--model", "{model}", "--max-steps", "1"],
                 "latin1.csv", id="finetune-latin1-csv"),
    pytest.param(["finetune", "no_such.csv", "--model", "{model}"], "no_such.csv",
                 id="finetune-missing-csv"),
    pytest.param(["finetune", "{good.csv}", "--model", "./no_such_model"], "no_such_model",
                 id="finetune-missing-model"),
    pytest.param(["finetune", "{good.csv}", "--model", "{truncated_weights}"],
                 "model.safetensors", id="finetune-truncated-model"),
    pytest.param(["finetune", "{good.csv}", "--model", "{model}", "--batch-size", "0"],
                 "batch_size", id="finetune-batch-size-0"),
    pytest.param(["finetune", "{good.csv}", "--model", "{model}", "--learning-rate", "nan"],
                 "learning_rate", id="finetune-lr-nan"),
    pytest.param(["finetune", "{good.csv}", "--model", "{model}", "--device", "tpu"],
                 "device", id="finetune-device-tpu"),
    pytest.param(["pretrain", "{corpus.txt}", "--preset", "tiny", "--max-steps", "1",
                  "--eval-every", "0"], "eval_every", id="pretrain-eval-every-0"),
    pytest.param(["pretrain", "{corpus.txt}", "--preset", "tiny", "--max-steps", "1",
                  "--num-heads", "0"], "num_heads", id="pretrain-num-heads-0"),
    pytest.param(["pretrain", "{corpus.txt}", "--preset", "tiny", "--max-steps", "1",
                  "--batch-size", "0"],
                 "batch_size", id="pretrain-batch-size-0"),
    pytest.param(["pretrain", "{corpus.txt}", "--preset", "tiny", "--max-steps", "1", "--learning-rate", "nan"], "learning_rate",
                 id="pretrain-lr-nan"),
    pytest.param(["pretrain", "{corpus.txt}", "--preset", "tiny", "--max-steps", "1",
                  "--device", "tpu"], "device",
                 id="pretrain-device-tpu"),
    pytest.param(["pretrain", "no_such_corpus.txt", "--preset", "tiny", "--max-steps", "1"], "no_such_corpus",
                 id="pretrain-missing-corpus"),
    pytest.param(["pretrain", "--resume", "no_such_run"], "no_such_run",
                 id="pretrain-resume-missing"),
    pytest.param(["demo", "--model", "./no_such_model", "--out", "out"], "no_such_model",
                 id="demo-missing-model"),
    pytest.param(["demo", "--model", "{corrupt_config}", "--out", "out"], "config.json",
                 id="demo-corrupt-model"),
    pytest.param(["pretrain", "--batch-size", "eight"], "batch-size", id="argparse-type"),
    pytest.param(["finetune"], "data", id="argparse-missing-positional"),
    pytest.param(["no-such-command"], "no-such-command", id="argparse-unknown-command"),
]


@pytest.mark.parametrize("argv, needle", CLI_CASES)
def test_cli_user_error_is_one_line_without_traceback(argv, needle, k, sandbox, capsys,
                                                     monkeypatch):
    from workbench import notebook_runner
    from workbench.cli import main

    def too_late(*args, **kwargs):
        raise AssertionError("`workbench demo` started a notebook before refusing its input")

    monkeypatch.setattr(notebook_runner, "execute_notebook", too_late)

    paths = {**{n: str(p) for n, p in k.files.items()},
             **{n: str(p) for n, p in k.bad_models.items()}, "model": str(k.model_dir)}
    argv = [paths[a[1:-1]] if a.startswith("{") else a for a in argv]
    try:
        rc = main(argv)
    except SystemExit as stop:  # argparse's own usage errors
        rc = stop.code
    err = capsys.readouterr().err
    assert rc == 2, f"exit status {rc}; stderr: {err[-500:]}"
    assert "Traceback" not in err
    assert needle in err, err[-500:]
    assert _leftovers(sandbox) == [], "a refused command left files behind"


# ----------------------------------------------------------------------------- the validators

@pytest.mark.parametrize("value", [0, -3, "8", 2.5, True, None, NAN])
def test_check_positive_int_refuses(value):
    with pytest.raises(wb.InputError, match="batch_size="):
        C.check_positive_int("batch_size", value)


def test_check_positive_int_accepts_numpy_and_none_when_allowed():
    assert C.check_positive_int("n", np.int64(3)) == 3 and type(C.check_positive_int("n", 3)) is int
    assert C.check_positive_int("n", None, allow_none=True) is None


@pytest.mark.parametrize("value", [NAN, INF, -INF, "1.0", None, True])
def test_check_finite_refuses(value):
    with pytest.raises(wb.InputError, match="scale="):
        C.check_finite("scale", value)


def test_check_finite_bounds_and_choice():
    assert C.check_finite("p", 0.5, low=0, high=1, low_open=True) == 0.5
    with pytest.raises(wb.InputError, match=r"p=0 is outside \(0, 1\]"):
        C.check_finite("p", 0, low=0, high=1, low_open=True)
    assert C.check_choice("mode", "a", ("a", "b")) == "a"
    with pytest.raises(wb.InputError, match=r"mode='c' is not one of \['a', 'b'\]"):
        C.check_choice("mode", "c", ("a", "b"))
    with pytest.raises(wb.InputError, match="mode="):
        C.check_choice("mode", ["unhashable"], ("a", "b"))


def test_ablate_nan_never_returns_nan_probabilities(k):
    """The audit's silently wrong case: the refusal above must hold for every non-finite scale."""
    for scale in (NAN, INF, -INF):
        with pytest.raises(wb.InputError, match="scale"):
            with wb.ablate(k.lm, [(0, 0)], scale=scale):
                pass
    with wb.ablate(k.lm, [(0, 0)], scale=0.0):
        df = wb.fill_mask(k.lm, "a <mask> b", top_k=3)
    assert np.isfinite(df["prob"]).all()


def test_case_count():
    assert len(CASES) + len(CLI_CASES) >= 150


def test_json_reader_names_the_file(tmp_path):
    bad = tmp_path / "cfg.json"
    bad.write_text("{oops")
    with pytest.raises(wb.InputError, match="cfg.json"):
        C.read_json_file(bad)
    (tmp_path / "ok.json").write_text(json.dumps({"a": 1}))
    assert C.read_json_file(tmp_path / "ok.json") == {"a": 1}


def test_model_names_are_escaped_in_figures():
    """Plotly renders HTML in titles and legends: a model named '<b>x</b>' must show literally."""
    from workbench.plots.heads import head_heatmap
    from workbench.plots.probing import margin_histogram

    evil = "<b>run</b><img src=x>"
    heads = pd.DataFrame({"model": [evil] * 4 + ["other"] * 4, "layer": [0, 0, 1, 1] * 2,
                          "head": [0, 1, 0, 1] * 2, "attn_bos": np.linspace(0.1, 0.8, 8)})
    pairs = pd.DataFrame({"model": evil, "margin": [0.5, -0.2, 1.0], "correct": [True, False, True]})
    for fig in (head_heatmap(heads), margin_histogram(pairs)):
        text = fig.to_json()
        assert "<b>run" not in text and "<img" not in text
        assert "&lt;b&gt;run" in text            # shown, escaped (two models: subplot titles)
