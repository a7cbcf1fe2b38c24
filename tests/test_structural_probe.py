"""Structural probe (Hewitt & Manning 2019) and the UD reader behind it, against oracles:
networkx/scipy for trees and MSTs, scipy's spearmanr for DSpr, a synthetic representation that
encodes tree distance exactly (UUAS 1.0), and a shuffled-tree control that must sit near chance.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import networkx as nx
import numpy as np
import pytest

import workbench as wb
from workbench.analysis import structural_probe as SP
from workbench.analysis import trees as T
from workbench.errors import InputError

FIX = Path(__file__).parent / "fixtures"


def random_heads(n: int, rng) -> np.ndarray:
    """A random tree: word order shuffled, each word attached to an earlier one in that order."""
    order = rng.permutation(n)
    heads = np.full(n, -1)
    for k in range(1, n):
        heads[order[k]] = order[rng.integers(0, k)]
    return heads


def tree_graph(heads) -> nx.Graph:
    g = nx.Graph()
    g.add_nodes_from(range(len(heads)))
    g.add_edges_from((i, h) for i, h in enumerate(heads) if h >= 0)
    return g


# --- trees and MSTs ----------------------------------------------------------------------------

def test_distances_and_depths_match_networkx():
    rng = np.random.default_rng(0)
    for n in (1, 2, 7, 23):
        heads = random_heads(n, rng)
        g = tree_graph(heads)
        oracle = dict(nx.all_pairs_shortest_path_length(g))
        dist = T.tree_distances(heads)
        assert all(dist[i, j] == oracle[i][j] for i in range(n) for j in range(n))
        root = int(np.flatnonzero(heads == -1)[0])
        depth = nx.single_source_shortest_path_length(g, root)
        assert T.tree_depths(heads).tolist() == [depth[i] for i in range(n)]


def test_mst_matches_networkx_and_scipy_on_random_graphs():
    from scipy.sparse.csgraph import minimum_spanning_tree

    rng = np.random.default_rng(1)
    for n in (2, 5, 12, 30):
        w = rng.random((n, n))
        w = w + w.T
        keep = rng.random(n) > 0.3
        keep[:2] = True
        ours = T.mst_edges(w, keep)
        nodes = np.flatnonzero(keep)
        g = nx.Graph()
        g.add_weighted_edges_from((int(a), int(b), w[a, b]) for a in nodes for b in nodes if a < b)
        oracle = {tuple(sorted(e)) for e in nx.minimum_spanning_tree(g).edges()}
        assert ours == oracle
        sp = minimum_spanning_tree(np.triu(w[np.ix_(nodes, nodes)], 1)).toarray()
        assert np.isclose(sum(w[a, b] for a, b in ours), sp.sum())


def test_uuas_matches_a_plain_networkx_computation():
    """Noisy distances on random trees whose punctuation words are leaves: our pooled UUAS equals
    MST-by-networkx against the gold tree's non-punctuation edges, counted by a plain loop."""
    rng = np.random.default_rng(2)
    correct = total = ours_c = ours_t = 0
    for _ in range(40):
        n = int(rng.integers(3, 20))
        heads = random_heads(n, rng)
        leaves = [i for i in range(n) if i not in set(heads) and heads[i] >= 0]
        punct = np.zeros(n, bool)
        punct[leaves[: int(rng.integers(0, len(leaves) + 1))]] = True
        keep = ~punct
        pred = T.tree_distances(heads) + rng.normal(0, 0.8, (n, n))
        pred = np.abs(pred + pred.T)
        c, t = T.uuas_counts(pred, T.tree_distances(heads), keep)
        ours_c, ours_t = ours_c + c, ours_t + t
        g = nx.Graph()
        kept = np.flatnonzero(keep)
        g.add_weighted_edges_from((int(a), int(b), pred[a, b]) for a in kept for b in kept if a < b)
        pred_edges = {tuple(sorted(e)) for e in nx.minimum_spanning_tree(g).edges()}
        gold = {tuple(sorted((i, int(h)))) for i, h in enumerate(heads) if h >= 0 and keep[i] and keep[h]}
        correct += len(gold & pred_edges)
        total += len(gold)
    assert (ours_c, ours_t) == (correct, total)
    assert 0 < correct < total  # the noise is neither nothing nor everything


def test_spearman_by_length_matches_scipy_loop():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(3)
    preds, golds, per_len = [], [], {}
    for _ in range(30):
        n = int(rng.integers(3, 9))
        gold = T.tree_distances(random_heads(n, rng))
        pred = gold + rng.normal(0, 1.5, (n, n))
        preds.append(pred), golds.append(gold)
        rhos = [spearmanr(p, g).correlation for p, g in zip(pred, gold)]
        per_len.setdefault(n, []).extend(rhos)
    expected = np.mean([np.mean(v) for n, v in per_len.items() if 5 <= n <= 50])
    value, used = T.spearman_by_length(preds, golds)
    assert value == pytest.approx(expected, abs=1e-12)
    assert used == sum(1 for g in golds if len(g) >= 5)


# --- the probe on synthetic representations -----------------------------------------------------

def pythagorean(heads, dim: int) -> np.ndarray:
    """Hewitt & Manning's Pythagorean embedding: word i = sum of one unit vector per edge on its
    path to the root, so ||x_i - x_j||^2 = tree distance and ||x_i||^2 = depth, exactly."""
    n = len(heads)
    x = np.zeros((n, dim), np.float32)
    for i in range(n):
        node = i
        while heads[node] >= 0:
            x[i, node] = 1.0
            node = heads[node]
    return x


FAST = dict(epochs=30, lr=2e-2, batch_size=10)


def synthetic(n_sent: int, seed: int, dim: int = 12):
    rng = np.random.default_rng(seed)
    trees = []
    for _ in range(n_sent):
        n = int(rng.integers(5, 12))
        heads = random_heads(n, rng)
        trees.append({"heads": heads, "pos": np.array(["X"] * n)})
    return [pythagorean(t["heads"], dim) for t in trees], trees


def chance_uuas(trees, seed: int) -> float:
    """UUAS of an independent random tree of the same generator: what knowing nothing scores."""
    rng = np.random.default_rng(seed)
    c = t = 0
    for tree in trees:
        guess = T.tree_distances(random_heads(len(tree["heads"]), rng)).astype(float)
        a, b = T.uuas_counts(guess, T.tree_distances(tree["heads"]))
        c, t = c + a, t + b
    return c / t


def test_exact_tree_encoding_gives_uuas_one_and_shuffled_pairing_gives_chance(one_torch_thread):
    xs, trees = synthetic(60, seed=4)
    xt, test_trees = synthetic(30, seed=5)
    golds = [T.tree_distances(t["heads"]) for t in trees]
    proj = SP.fit_tree_probe(xs, golds, kind="distance", **FAST)
    scores = SP.score_tree_probe(proj, xt, test_trees, "distance")
    assert scores["uuas"][0] == 1.0
    assert scores["dspr"][0] > 0.9   # < 1: the gold rows are full of ties, the predictions not

    # control: the representations encode *other* same-length trees (labels shuffled against
    # the vectors, in train and test alike): the probe can only reach chance
    shuffled = SP.shuffled_trees(trees + test_trees, seed=0)
    xs_c = [pythagorean(t["heads"], 12) for t in shuffled[:len(trees)]]
    xt_c = [pythagorean(t["heads"], 12) for t in shuffled[len(trees):]]
    proj_c = SP.fit_tree_probe(xs_c, golds, kind="distance", **FAST)
    c_uuas = SP.score_tree_probe(proj_c, xt_c, test_trees, "distance")["uuas"][0]
    chance = chance_uuas(test_trees, seed=6)
    assert abs(c_uuas - chance) < 0.12, (c_uuas, chance)


def test_exact_depth_encoding_finds_every_root(one_torch_thread):
    xs, trees = synthetic(60, seed=7)
    xt, test_trees = synthetic(30, seed=8)
    proj = SP.fit_tree_probe(xs, [T.tree_depths(t["heads"]) for t in trees], kind="depth",
                             rank=12, **FAST)
    scores = SP.score_tree_probe(proj, xt, test_trees, "depth")
    assert scores["root_acc"][0] == 1.0 and scores["nspr"][0] > 0.9


def test_rank_larger_than_hidden_size_is_refused(tiny_lm):
    with pytest.raises(InputError, match="rank=33 is larger than the model's hidden size 32"):
        wb.structural_probe(tiny_lm, FIX / "ud_tiny_train.conllu", FIX / "ud_tiny_test.conllu",
                            rank=[4, 33])
    with pytest.raises(InputError, match="rank=9 is larger than the hidden size 8"):
        SP.fit_tree_probe([np.zeros((3, 8))] * 3, [np.zeros((3, 3))] * 3, rank=9)


def test_structural_probe_on_the_tiny_model(tiny_lm, one_torch_thread):
    train, test = FIX / "ud_tiny_train.conllu", FIX / "ud_tiny_test.conllu"
    df = wb.structural_probe(tiny_lm, train, test, layers=[0, 2], rank=[2, 8], epochs=3,
                             cache=False)
    assert set(df["layer"]) == {0, 2} and set(df["probe_rank"]) == {2, 8}
    assert set(df["metric"]) == {"uuas", "dspr", "uuas_linear"}
    uuas = df[df["metric"] == "uuas"]
    assert uuas["value"].between(0, 1).all() and (uuas["count"] == 4 + 6 + 5 + 3).all()
    # the right-branching baseline, counted by hand on the 4 test sentences
    # (chain over non-punctuation words vs gold): 3/4 + 3/6 + 3/5 + 3/3 -> 12/18
    assert df[df["metric"] == "uuas_linear"]["value"].iloc[0] == pytest.approx(12 / 18)
    depth = wb.structural_probe(tiny_lm, train, test, kind="depth", layers=[1], epochs=2,
                                cache=False)
    assert set(depth["metric"]) == {"root_acc", "nspr"}
    assert (depth["probe_rank"] == 32).all()


# --- the UD reader: what UD defines and what it forbids -----------------------------------------

def test_multiword_tokens_and_empty_nodes_are_handled_as_ud_defines():
    df = wb.read_conll(FIX / "ud_multiword.conllu")
    assert df["word"].tolist() == ["I", "do", "n't", "know", "."]   # words, not the token "don't"
    assert df["dep_head"].tolist() == [3, 3, 3, -1, 3]              # 4.1 "knew" is not a word
    assert df["sent_id"].iloc[0] == "mw-1" and df["label"].tolist()[0] == "PRON"


def test_gzipped_conllu_reads_the_same(tmp_path):
    gz = tmp_path / "train.conllu.gz"
    gz.write_bytes(gzip.compress((FIX / "ud_tiny_train.conllu").read_bytes()))
    a, b = wb.read_conll(gz), wb.read_conll(FIX / "ud_tiny_train.conllu")
    assert a.equals(b) and a["text_id"].nunique() == 12


GOOD = "1\tHi\thi\tINTJ\tUH\t_\t0\troot\t_\t_\n"


@pytest.mark.parametrize("text, message", [
    ("# c\n" + GOOD + "2\tthere\tthere\tADV\n", "line 3: 4 tab-separated field"),
    (GOOD.replace("\t0\t", "\t1\t") + "\n", "no word with HEAD 0 (no root)"),
    (GOOD + "2\tyou\tyou\tPRON\t_\t_\t0\troot\t_\t_\n", "2 roots"),
    (GOOD + "2\tyou\tyou\tPRON\t_\t_\t7\tobj\t_\t_\n", "line 2: HEAD 7 points past"),
    (GOOD + "3\tyou\tyou\tPRON\t_\t_\t1\tobj\t_\t_\n", "line 2: word ID 3 where 2 was expected"),
    (GOOD + "2\tyou\tyou\tPRON\t_\t_\tx\tobj\t_\t_\n", "line 2: HEAD 'x' is not an integer"),
    ("1\ta\ta\tX\t_\t_\t2\tdep\t_\t_\n2\tb\tb\tX\t_\t_\t1\tdep\t_\t_\n"
     "3\tc\tc\tX\t_\t_\t0\troot\t_\t_\n", "form a cycle"),
    ("1-x\tab\t_\t_\t_\t_\t_\t_\t_\t_\n" + GOOD, "line 1: ID '1-x'"),
])
def test_malformed_conllu_names_the_line(text, message):
    with pytest.raises(InputError, match=re.escape(message)):
        wb.read_conll(text, format="conllu")


def test_malformed_file_error_names_the_file(tmp_path, tiny_lm):
    path = tmp_path / "bad.conllu"
    path.write_text("# x\n\n" + GOOD + "2\tx\n")
    with pytest.raises(InputError, match="bad.conllu: line 4"):
        wb.read_conll(path)
    with pytest.raises(InputError, match="gold trees"):
        wb.structural_probe(tiny_lm, wb.read_conll(FIX / "ud_tiny_train.conllu", word_col=1,
                                                format="columns"), path)


def test_figures_draw_the_frames_they_are_given():
    from workbench.plots import syntax_probes as sp

    rows = [("m", lay, "distance", r, met, v, 10, "test") for lay in (0, 1) for r in (2, 8)
            for met, v in (("uuas", 0.3 + 0.1 * lay + r / 100), ("dspr", 0.5), ("uuas_linear", 0.4))]
    df = __import__("pandas").DataFrame(rows, columns=["model", "layer", "kind", "probe_rank",
                                                        "metric", "value", "count", "split"])
    fig = sp.structural_curve(df)
    assert np.allclose([list(t.y) for t in fig.data], [[0.38, 0.48], [0.5, 0.5]])  # rank 8 only
    assert "10 held-out edges" in fig.layout.title.text
    curve = sp.rank_curve(df)
    assert [list(t.x) for t in curve.data] == [[2, 8], [2, 8]]
    with pytest.raises(InputError, match="no 'nspr' rows"):
        sp.rank_curve(df, metric="nspr")


def test_word_vectors_in_memory_maps_equal_the_in_memory_ones(tiny_lm, monkeypatch):
    """Above MEMORY_LIMIT_BYTES the layers live in .npy memory maps on disk: same numbers, and
    each equals wb.features' word pooling of the same sentences."""
    from workbench.analysis import word_vectors as WV

    data = FIX / "ud_tiny_test.conllu"
    ram = WV.word_vectors(tiny_lm, data, layers=[0, 2], cache=False, chunk_size=3)
    monkeypatch.setattr(WV, "MEMORY_LIMIT_BYTES", 0)
    disk = WV.word_vectors(tiny_lm, data, layers=[0, 2], cache=False, chunk_size=3)
    assert isinstance(disk.layer(2), np.memmap) and not isinstance(ram.layer(2), np.memmap)
    words = [list(g["word"]) for _, g in wb.read_conll(data).groupby("text_id")]
    direct = wb.features(tiny_lm, words, layers=[0, 2], pool="words", cache=False, progress=False)
    for j, lay in enumerate([0, 2]):
        np.testing.assert_array_equal(np.asarray(disk.layer(lay)), ram.layer(lay))
        np.testing.assert_allclose(ram.layer(lay), direct.array[:, j], atol=1e-6)
    assert ram.kept.all() and ram.offsets.tolist() == [0, 6, 14, 21, 26]


def test_a_sentence_longer_than_the_window_is_dropped_and_counted(tiny_lm):
    from workbench.analysis import word_vectors as WV

    n = 200   # words; the tiny model's window is 128 tokens
    long = "".join(f"{i}\tw{i}\tw\tNOUN\t_\t_\t{0 if i == 1 else 1}\t{'root' if i == 1 else 'dep'}"
                   f"\t_\t_\n" for i in range(1, n + 1))
    text = (FIX / "ud_tiny_test.conllu").read_text() + long + "\n"
    with pytest.warns(UserWarning, match="1 of 5 sentences do not fit"):
        wv = WV.word_vectors(tiny_lm, wb.read_conll(text, format="conllu"), layers=[1], cache=False)
    assert wv.kept.tolist() == [True] * 4 + [False] and wv.dropped == 1
    assert len(wv.sentences(1)) == 4
