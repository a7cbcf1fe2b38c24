"""Bootstrap intervals, role stability, seed spread and LaTeX tables (issue 28, uncertainty).

Oracles: a plain numpy loop over the same resamples; a head whose role is deterministic is
stable; intervals shrink as n grows; CKA of identical representations is [1, 1]; the
seed-spread rule on synthetic runs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from workbench import schema as S
from workbench.analysis import bootstrap as B
from workbench.errors import InputError

SENTENCES = ["The cat sat on the mat.", "A dog barked at the moon, loudly.",
             "Birds sing in the morning.", "She reads a book every night.",
             "The old man walked slowly home.", "Rain fell all day, and the river rose."]


def loop_interval(num, den, n_boot, level, seed=B.BOOT_SEED):
    """The oracle: draw the same resamples, compute each statistic by a plain loop."""
    idx = B.resample_indices(len(num), n_boot, seed)
    stats = []
    for row in idx:
        if den is None:
            stats.append(np.mean([num[i] for i in row], axis=0))
        else:
            stats.append(np.sum([num[i] for i in row], axis=0) / np.sum([den[i] for i in row],
                                                                         axis=0))
    return np.percentile(np.array(stats), [100 * (1 - level) / 2, 100 * (1 + level) / 2], axis=0)


def test_resamples_are_numpy_draws_with_a_fixed_seed():
    idx = B.resample_indices(7, 5, seed=3)
    assert np.array_equal(idx, np.random.default_rng(3).integers(0, 7, size=(5, 7)))
    counts = B.resample_counts(7, 5, seed=3)
    assert np.array_equal(counts, np.stack([np.bincount(r, minlength=7) for r in idx]))
    assert np.array_equal(B.resample_indices(7, 5), B.resample_indices(7, 5))


@pytest.mark.parametrize("ratio", [False, True])
def test_vectorised_interval_equals_a_plain_loop(ratio):
    rng = np.random.default_rng(1)
    num = rng.normal(size=(25, 3, 2))
    den = rng.integers(1, 9, size=25).astype(float) if ratio else None
    point, low, high = B.ratio_interval(num, den, n_boot=60, level=0.9)
    lo_ref, hi_ref = loop_interval(num, den, 60, 0.9)
    assert np.allclose(low, lo_ref) and np.allclose(high, hi_ref)
    expect = num.mean(0) if den is None else num.sum(0) / den.sum()
    assert np.allclose(point, expect)


def test_intervals_shrink_as_the_sample_grows():
    rng = np.random.default_rng(0)
    widths = []
    for n in (20, 80, 320):
        _, low, high = B.ratio_interval(rng.normal(size=n), n_boot=400)
        widths.append(float(high - low))
    assert widths[0] > widths[1] > widths[2]
    # the width of a mean's interval falls like 1/sqrt(n): x4 texts -> about half as wide
    assert 0.35 < widths[2] / widths[1] < 0.7


def test_rows_are_resampled_with_their_text():
    w = B.row_weights([5, 5, 9, 2, 2, 2], n_boot=4, seed=0)
    counts = B.resample_counts(3, 4, seed=0)                # groups sorted: 2, 5, 9
    assert np.array_equal(w, counts[:, [1, 1, 2, 0, 0, 0]])


def test_bad_bootstrap_arguments_are_named():
    with pytest.raises(InputError, match="n_boot"):
        B.check_boot(1, 0.95)
    with pytest.raises(InputError, match="level"):
        B.check_boot(100, 95)


@pytest.mark.parametrize("average", ["text", "token"])
def test_head_stat_intervals_match_head_stats_and_a_loop(tiny_lm, average):
    import workbench as wb

    out = wb.head_stat_intervals(tiny_lm, SENTENCES, stats=[S.ATTN_PREV, S.ENTROPY], n_boot=30,
                                 average=average, progress=False)
    full = wb.head_stats(tiny_lm, SENTENCES, average=average, progress=False)
    per = wb.head_stats(tiny_lm, SENTENCES, by_text=True, progress=False)  # per-text means
    merged = out.merge(full, on=[S.LAYER, S.HEAD])
    for stat in (S.ATTN_PREV, S.ENTROPY):
        rows = merged[merged[S.METRIC] == stat]
        assert np.allclose(rows[S.VALUE], rows[stat])
    assert (out[S.N_TEXTS] == len(SENTENCES)).all() and (out[S.N_BOOT] == 30).all()
    assert (out[S.CI_LOW] <= out[S.CI_HIGH]).all()
    # the oracle for one head: the loop over the same resamples of the per-text numbers
    one = per[(per[S.LAYER] == 1) & (per[S.HEAD] == 0)].sort_values(S.TEXT_ID)
    n_tok = np.array([len(tiny_lm.tokenizer(t)["input_ids"]) for t in SENTENCES], dtype=float)
    num = one[S.ATTN_PREV].to_numpy() * (n_tok if average == "token" else 1)
    lo, hi = loop_interval(num, n_tok if average == "token" else None, 30, 0.95)
    row = out[(out[S.LAYER] == 1) & (out[S.HEAD] == 0) & (out[S.METRIC] == S.ATTN_PREV)].iloc[0]
    assert np.isclose(row[S.CI_LOW], lo) and np.isclose(row[S.CI_HIGH], hi)


def test_export_table_writes_booktabs_with_intervals_and_provenance(tmp_path):
    import json

    import workbench as wb

    df = pd.DataFrame({S.MODEL: ["my_model & co", "x_1"], S.LAYER: [0, 1],
                       S.VALUE: [0.5, 0.25], S.CI_LOW: [0.4, 0.2], S.CI_HIGH: [0.62, 0.3],
                       S.STABLE: [True, False], S.N_TEXTS: 6, S.N_BOOT: 30, S.LEVEL: 0.95})
    path = wb.export_table(df, tmp_path / "t.tex", caption="Attention 50% on <s>",
                           source={"call": "test"})
    tex = path.read_text()
    lines = tex.splitlines()
    assert lines.index(r"\toprule") < lines.index(r"\midrule") < lines.index(r"\bottomrule")
    assert r"my\_model \& co" in tex and r"x\_1" in tex and r"50\% on" in tex
    assert "0.500 [0.400, 0.620]" in tex and "yes" in tex and "no" in tex
    assert "n\\_texts = 6" in tex and "n\\_boot = 30" in tex and "ci\\_low" not in tex
    row = next(x for x in lines if x.startswith("x"))
    assert row.count("&") == 3 and row.endswith(r"\\")   # model, layer, value, stable
    pm = wb.export_table(df, tmp_path / "t.tex", interval="pm").read_text()
    assert "0.500 $\\pm$ 0.110" in pm
    manifest = json.loads((tmp_path / "figures.json").read_text())
    assert len(manifest) == 1 and manifest[0]["files"] == ["t.tex"]   # replaced, not doubled
    assert manifest[0]["source"]["workbench"] == wb.__version__
    with pytest.raises(InputError, match="path"):
        wb.export_table(df, tmp_path / "t.pdf")
