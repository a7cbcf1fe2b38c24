"""Edge probing over a scalar mix (Tenney et al. 2019a/b): the paper's expected layer and center of
gravity against hand numbers, a synthetic stack where one layer alone carries the label, the
span-pair examples against a plain loop, and a run on the tiny model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import workbench as wb
from workbench.analysis import edge_probe as EP
from workbench.errors import InputError

FIX = Path(__file__).parent / "fixtures"


def test_expected_layer_and_center_of_gravity_by_hand():
    assert EP.expected_layer([0.1, 0.2, 0.7], [0, 1, 2]) == pytest.approx(0.2 + 1.4)
    # scores 0.5 0.7 0.8 0.8: deltas 0.2 0.1 0 -> (1*0.2 + 2*0.1 + 3*0) / 0.3
    assert EP.center_of_gravity([0.5, 0.7, 0.8, 0.8], [0, 1, 2, 3]) == pytest.approx(0.4 / 0.3)
    assert EP.center_of_gravity([0.5, 0.9], [4, 6]) == pytest.approx(6.0)   # layer numbers kept
    assert np.isnan(EP.center_of_gravity([0.5, 0.5], [0, 1]))


def synthetic_frame(n_sent=160, n_words=5, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for t in range(n_sent):
        for w in range(n_words):   # a chain: word w's head is w+1, the last word is the root
            rows.append((t, w, f"w{t}_{w}", f"P{rng.integers(0, 3)}",
                         w + 1 if w < n_words - 1 else -1, "dep"))
    return pd.DataFrame(rows, columns=["text_id", "word_id", "word", "pos", "dep_head", "relation"])


def test_the_mix_finds_the_one_layer_that_carries_the_label(one_torch_thread):
    frame = synthetic_frame()
    y = frame["pos"].str[1].astype(int).to_numpy()
    rng = np.random.default_rng(1)
    x = rng.normal(size=(len(frame), 4, 8)).astype(np.float32)     # (N, layers, D) noise
    x[:, 2, :3] += 3 * np.eye(3, dtype=np.float32)[y]              # layer 2 alone knows the POS
    is_test = frame["text_id"].to_numpy() >= 120
    opts = dict(epochs=8, batch_size=32, lr=1e-2, proj=16, hidden=16)
    layer_rows, summary = EP._run_task(torch.from_numpy(x), [0, 1, 2, 3], frame, is_test, "upos",
                                       opts, control=True, mdl=False, seed=0)
    lay = pd.DataFrame(layer_rows, columns=["layer", "metric", "value"])
    summ = dict(summary)
    weights = lay[lay["metric"] == "mix_weight"].set_index("layer")["value"]
    assert weights.idxmax() == 2 and weights.sum() == pytest.approx(1.0)
    cum = lay[lay["metric"] == "cumulative_accuracy"].set_index("layer")["value"]
    assert cum[1] < 0.6 and cum[2] > 0.9                           # the jump is at layer 2
    assert 1.8 < summ["center_of_gravity"] < 2.4
    assert summ["accuracy"] > 0.9
    # every word is its own type: the control labels cannot be learned from these vectors
    assert summ["control_accuracy"] < 0.55 and summ["selectivity"] > 0.4


def test_span_pairs_are_head_and_dependent():
    frame = wb.read_conll(FIX / "ud_tiny_test.conllu")
    rows, labels, types = EP.task_examples(frame, "deprel")
    expected = []
    for _, g in frame.groupby("text_id"):
        first = g.index[0]
        for _, r in g.iterrows():
            if r["dep_head"] >= 0:
                expected.append((first + r["dep_head"], r.name, r["relation"].split(":")[0]))
    assert [(a, b, c) for (a, b), c in zip(rows.tolist(), labels)] == expected
    assert types[0] == "dog|The" and "obl" in set(labels) and "obl:tmod" not in set(labels)
    _, depth, _ = EP.task_examples(frame, "depth")
    assert depth[:6].tolist() == ["2", "1", "0", "2", "1", "1"]     # The dog ate the bone .


def test_edge_probe_on_the_tiny_model(tiny_lm, one_torch_thread):
    res = wb.edge_probe(tiny_lm, FIX / "ud_tiny_train.conllu", test=FIX / "ud_tiny_test.conllu",
                        epochs=2, proj=8, hidden=8, cache=False)
    layers = tiny_lm.num_layers + 1
    assert set(res.layers["task"]) == set(EP.TASKS)
    w = res.layers[res.layers["metric"] == "mix_weight"]
    assert (w.groupby("task")["value"].sum().round(6) == 1).all() and len(w) == 3 * layers
    s = res.summary.set_index(["task", "metric"])["value"]
    assert s["upos", "n_test"] == 26 and s["deprel", "n_test"] == 22   # 26 words, 4 roots
    for task in EP.TASKS:
        assert 0 <= s[task, "center_of_gravity"] <= layers - 1 or np.isnan(s[task, "center_of_gravity"])
        assert 0 <= s[task, "expected_layer"] <= layers - 1
        assert 0 <= s[task, "control_accuracy"] <= 1
    mdl = wb.edge_probe(tiny_lm, FIX / "ud_tiny_train.conllu", test=FIX / "ud_tiny_test.conllu",
                        tasks=["depth"], epochs=1, proj=8, hidden=8, control=False, mdl=True,
                        cache=False).summary.set_index("metric")["value"]
    # every word of train (82) and test (26); these sentences have depths 0-3: 4 classes, 2 bits
    assert mdl["uniform_kbits"] == pytest.approx((82 + 26) * 2 / 1000)
    assert mdl["compression"] == pytest.approx(mdl["uniform_kbits"] / mdl["codelength_kbits"])
    with pytest.raises(InputError, match="tasks='ner' is not one of"):
        wb.edge_probe(tiny_lm, FIX / "ud_tiny_train.conllu", tasks=["ner"])


def test_grid_and_mdl_figures():
    from workbench.plots import syntax_probes as sp

    layers = pd.DataFrame([("m", t, l, met, v) for t in ("upos", "deprel") for l in range(3)
                           for met, v in (("mix_weight", 1 / 3), ("delta", 0.1 * l))],
                          columns=["model", "task", "layer", "metric", "value"])
    summary = pd.DataFrame([("m", t, met, v) for t in ("upos", "deprel")
                            for met, v in (("accuracy", 0.9), ("control_accuracy", 0.5),
                                           ("expected_layer", 1.0), ("center_of_gravity", 1.5),
                                           ("n_test", 40))],
                           columns=["model", "task", "metric", "value"])
    fig = sp.edge_probe_grid(EP.EdgeProbeResult(layers=layers, summary=summary))
    assert len(fig.data) == 4 and "40 held-out" in fig.layout.title.text
    assert len(fig.layout.shapes) == 4                 # expected layer + center, per task
    with pytest.raises(InputError, match="mdl=True"):
        sp.mdl_beside_accuracy(layers)
