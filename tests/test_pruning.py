"""wb.prune_heads_curve: every row's numbers re-measured independently from its pruned set.

Oracles: the loss of each row equals `objective_loss` under `wb.ablate(row.heads)` (the MLM
loss) and the classifier's accuracy equals a plain loop of single forwards under the same gates;
the "once" order is `head_importance(normalize="layer")` ascending; pruning every head gives
the same numbers whatever the order.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import workbench as wb
from workbench.analysis.ablation import objective_loss
from workbench.errors import InputError
from workbench.testing import make_tiny_model, offline_text

TEXTS = [t[:120] for t in offline_text(3000)[:8]]


@pytest.fixture(scope="module")
def lm(sharp_tiny_lm):
    return sharp_tiny_lm


def test_mlm_curve_rows_match_ablate_and_orders(lm):
    df = wb.prune_heads_curve(lm, TEXTS, step=0.25, seed=1)
    assert list(df["n_pruned"][df["order"] == "random"]) == [0, 2, 4, 6, 8]
    for row in df.itertuples():
        assert len(set(row.heads)) == row.n_pruned
        with wb.ablate(lm, heads=list(row.heads)):
            assert row.loss == pytest.approx(objective_loss(lm, TEXTS, seed=1), abs=1e-6)
    assert df["loss"].nunique() > 3                          # pruning does move the loss
    start, end = df[df["n_pruned"] == 0], df[df["fraction"] == 1.0]
    assert start["loss"].nunique() == 1 and end["loss"].nunique() == 1
    imp = wb.head_importance(lm, TEXTS, normalize="layer", seed=1, progress=False)
    ranked = imp.sort_values(["score", "layer", "head"], kind="stable")
    once = df[(df["order"] == "once") & (df["n_pruned"] == 4)]["heads"].iloc[0]
    assert list(once) == list(zip(ranked["layer"][:4], ranked["head"][:4]))
    it = df[(df["order"] == "iterative") & (df["n_pruned"] == 2)]["heads"].iloc[0]
    assert list(it) == list(once[:2])                        # step 1 sees the intact model
    again = wb.prune_heads_curve(lm, TEXTS, step=0.25, seed=1, orders="random")
    assert list(again["heads"]) == list(df[df["order"] == "random"]["heads"])


def test_classifier_accuracy_equals_a_plain_loop(tmp_path):
    clf = wb.load(make_tiny_model(tmp_path / "clf", head="classifier"), device="cpu")
    labels = [i % 2 for i in range(len(TEXTS))]
    df = wb.prune_heads_curve(clf, TEXTS, labels=labels, step=0.5, orders=["random", "once"])
    assert set(df["objective"]) == {"classifier"}
    for row in df.itertuples():
        with wb.ablate(clf, heads=list(row.heads)), torch.no_grad():
            preds = [int(clf.model(**clf.tokenizer(t, return_tensors="pt")).logits.argmax())
                     for t in TEXTS]
        assert row.accuracy == pytest.approx(np.mean(np.asarray(preds) == labels))


def test_bad_inputs(lm):
    with pytest.raises(InputError, match="orders="):
        wb.prune_heads_curve(lm, TEXTS, orders=["greedy"])
    with pytest.raises(InputError, match="step="):
        wb.prune_heads_curve(lm, TEXTS, step=0)
    with pytest.raises(Exception, match="classifier"):
        wb.prune_heads_curve(lm, TEXTS, objective="classifier")


def test_curve_figure(lm):
    from workbench.plots.pruning import pruning_curve

    df = wb.prune_heads_curve(lm, TEXTS[:4], step=0.5, orders=["random", "once"])
    fig = pruning_curve(df)
    assert len(fig.data) == 2 and "heads pruned" in fig.layout.title.text
