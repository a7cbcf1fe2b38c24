"""MDL probing with the online code (Voita & Titov 2020): a hand computation, the paper's block
split, the default probe against a plain scikit-learn loop, and the hook in `linear_probe`."""

from __future__ import annotations

import numpy as np
import pytest

import workbench as wb
from workbench.analysis import mdl
from workbench.errors import InputError


def laplace(x_tr, y_tr, x_next, n_classes):
    """A probe that ignores x: add-one smoothed label frequencies of the blocks seen so far."""
    counts = np.bincount(y_tr, minlength=n_classes) + 1.0
    return np.tile(counts / counts.sum(), (len(x_next), 1))


def test_online_code_matches_a_hand_computation():
    # labels a a b a, blocks ending at 1, 2, 4 (fractions 25 %, 50 %, 100 %), K = 2:
    #   block 1 (a):      uniform code                 1 bit
    #   block 2 (a):      trained on [a]: p(a) = 2/3   -log2(2/3) = 0.585 bits
    #   block 3 (b, a):   trained on [a, a]: p(b) = 1/4, p(a) = 3/4   2 + 0.415 bits
    #   total = 1 + log2(3/2) + 2 + log2(4/3) = 4 bits; uniform code 4 * 1 = 4 bits
    y = np.array([0, 0, 1, 0])
    out = mdl.online_codelength(np.zeros((4, 1)), y, fit_predict=laplace, n_classes=2,
                                fractions=(0.25, 0.5, 1.0), seed=None)
    assert out["ends"] == [1, 2, 4]
    assert out["bits"] == pytest.approx(4.0, abs=1e-12)
    assert out["uniform_bits"] == 4.0 and out["compression"] == pytest.approx(1.0)
    # three classes: the first block costs log2(3), then p(a) = 2/4 and p(b) = 1/5, p(a) = 3/5
    out3 = mdl.online_codelength(np.zeros((4, 1)), y, fit_predict=laplace, n_classes=3,
                                 fractions=(0.25, 0.5, 1.0), seed=None)
    assert out3["bits"] == pytest.approx(np.log2(3) + 1 + np.log2(5) + np.log2(5 / 3))


def test_block_ends_follow_the_paper():
    assert mdl.block_ends(1000) == [1, 2, 4, 8, 16, 32, 62, 125, 250, 500, 1000]
    assert mdl.block_ends(10) == [1, 2, 5, 10]       # floors merge; the first block is >= 1 row
    for bad in ([0.5], [0.5, 0.2, 1.0], [0.0, 1.0], "0.1"):
        with pytest.raises(InputError, match="fractions"):
            mdl.block_ends(100, bad)


def _blobs(n=240, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(size=(n, 5)) + 2.5 * np.eye(3, 5)[y]
    return x, y


def test_default_probe_equals_a_plain_sklearn_loop():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = _blobs()
    ours = mdl.online_codelength(x, y, n_classes=3, seed=None)
    ends = [max(1, int(f * len(y))) for f in mdl.FRACTIONS]
    ends = sorted(set(ends))
    bits = ends[0] * np.log2(3)
    for a, b in zip(ends[:-1], ends[1:]):
        classes = np.unique(y[:a])
        p = np.zeros((b - a, 3))
        if len(classes) == 1:
            p[:, classes[0]] = 1
        else:
            clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x[:a], y[:a])
            p[:, clf.classes_] = clf.predict_proba(x[a:b])
        p = (1 - 1e-3) * p + 1e-3 / 3
        bits -= np.log2(p[np.arange(b - a), y[a:b]]).sum()
    assert ours["bits"] == pytest.approx(bits, rel=1e-9)


def test_learnable_labels_compress_and_random_labels_do_not():
    x, y = _blobs(400, seed=1)
    real = mdl.online_codelength(x, y, n_classes=3)
    noise = mdl.online_codelength(x, np.random.default_rng(2).integers(0, 3, 400), n_classes=3)
    assert real["compression"] > 2.0
    assert noise["compression"] < 1.05


def test_linear_probe_reports_mdl_beside_accuracy(tiny_lm):
    data = [[("the", "D"), ("cat", "N"), ("sat", "V")], [("a", "D"), ("dog", "N"), ("ran", "V")],
            [("the", "D"), ("old", "A"), ("man", "N"), ("slept", "V")],
            [("a", "D"), ("small", "A"), ("bird", "N"), ("sang", "V")]] * 4
    with pytest.warns(UserWarning, match="test rows"):
        df = wb.linear_probe(tiny_lm, data, task="token", layers=[0], mdl=True, cache=False,
                             progress=False)
    metrics = set(df["metric"])
    assert {"codelength_kbits", "uniform_kbits", "compression", "control_codelength_kbits",
            "control_compression"} <= metrics
    row = df[(df["layer"] == 0)].set_index("metric")["value"]
    n = 56                                   # words; 4 tags -> the uniform code is 2 bits each
    assert row["uniform_kbits"] == pytest.approx(n * 2 / 1000)
    assert row["compression"] == pytest.approx(row["uniform_kbits"] / row["codelength_kbits"])
