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


@pytest.fixture(scope="module")
def tiny_roles(tiny_lm):
    import workbench as wb

    # sharpened heads and low thresholds: a mix of targeted, broad and mixed heads
    return wb.head_roles(_sharpened(tiny_lm), SENTENCES, syntax=False, threshold=0.1,
                         broad=0.21, n_boot=40, progress=False)


def test_head_roles_carry_margin_support_and_stability(tiny_lm, tiny_roles):
    import workbench as wb

    df = tiny_roles
    for col in (S.MARGIN, S.SUPPORT, S.N_TEXTS, S.STABLE, S.STABLE_FRACTION, S.CI_LOW,
                S.CI_HIGH, S.N_BOOT, S.LEVEL):
        assert col in df.columns, col
    n_queries = sum(len(tiny_lm.tokenizer(t)["input_ids"]) for t in SENTENCES)
    assert (df[S.SUPPORT] == n_queries).all() and (df[S.N_TEXTS] == len(SENTENCES)).all()
    targeted = ~df[S.ROLE].isin(["broad", "mixed"])
    assert targeted.any() and not targeted.all()
    inside = df[targeted & df[S.CI_LOW].notna()]
    assert ((inside[S.CI_LOW] <= inside[S.SCORE] + 1e-9)
            & (inside[S.SCORE] <= inside[S.CI_HIGH] + 1e-9)).all()
    assert np.allclose(df.loc[targeted, S.MARGIN],
                       df.loc[targeted, S.SCORE] - df.loc[targeted, S.RUNNER_UP_SCORE])
    assert df.loc[~targeted, S.MARGIN].isna().all()
    assert ((df[S.STABLE_FRACTION] >= 0) & (df[S.STABLE_FRACTION] <= 1)).all()
    assert (df[S.STABLE] == (df[S.STABLE_FRACTION] >= 0.9)).all()
    # without the bootstrap: the same roles, no stability columns
    plain = wb.head_roles(_sharpened(tiny_lm), SENTENCES, syntax=False, threshold=0.1,
                          broad=0.21, n_boot=None, progress=False)
    assert plain[S.ROLE].tolist() == df[S.ROLE].tolist() and S.STABLE not in plain


@pytest.mark.parametrize("average", ["text", "token"])
def test_vectorised_role_rule_reproduces_classify_heads(tiny_lm, average):
    """The resampled rule, on the full sample (every text once), gives classify_heads' roles."""
    import workbench as wb
    from workbench.analysis import head_roles as hr
    from workbench.analysis.heads import accumulate

    lm = _sharpened(tiny_lm)            # random tiny heads are near-uniform: sharpen them
    acc = accumulate(lm, SENTENCES, per_text=True, progress=False)
    per = hr._PerText(acc, *hr.offset_sums_per_text(lm, SENTENCES), average)
    offsets = wb.analysis.head_roles.offset_profile(lm, SENTENCES, average=average)
    assert np.allclose(per.offsets_frame()[S.SCORE], offsets[S.SCORE])
    scores, entropy = per.resampled(np.ones((1, len(SENTENCES))))
    # a synthetic dependency candidate on head (0, 0), used when no positional role passes
    dep = np.full(scores.shape[1:3] + (1,), np.nan)
    dep[0, 0, 0] = 0.95
    stats = acc.frame("m", average, pooled=True)
    table = pd.concat([hr.role_scores(stats, per.offsets_frame()), pd.DataFrame(
        {S.LAYER: [0], S.HEAD: [0], S.ROLE: ["dep: x"], S.SCORE: [0.95], S.WEIGHT: [np.nan]})],
        ignore_index=True)
    seen = set()
    for threshold, broad in ((0.1, 0.21), (0.12, 0.3), (0.2, 0.19), (0.5, 0.8), (0.96, 0.99)):
        codes = hr.resampled_roles(scores, entropy, dep, threshold=threshold, broad=broad)[0]
        frame = hr.classify_heads(stats, table, threshold=threshold, broad=broad)
        names = per.names + ["dep: x", "broad", "mixed"]
        got = [names[c] for c in codes[frame[S.LAYER], frame[S.HEAD]]]
        assert got == frame[S.ROLE].tolist()
        seen |= set(got)
    assert len(seen) >= 4 and {"broad", "mixed", "dep: x"} <= seen   # every branch was taken


def _sharpened(tiny_lm):
    import copy

    import torch

    import workbench as wb

    lm = wb.LM(model=copy.deepcopy(tiny_lm.model), tokenizer=tiny_lm.tokenizer,
               device=tiny_lm.device, name="sharp")
    with torch.no_grad():
        for layer in lm.model.base_model.encoder.layer:
            layer.attention.self.query.weight *= 25.0
            layer.attention.self.key.weight *= 25.0
    return lm


def test_a_deterministic_role_is_stable():
    """Synthetic per-text scores: head 0 is 'previous token' on every text -> stable 1.0; head 1
    flips between two roles text by text -> unstable."""
    from workbench.analysis import head_roles as hr

    rng = np.random.default_rng(0)
    n = 30
    per_text = np.zeros((n, 1, 2, 3))                      # (N, L, H, R): prev, self, next
    per_text[:, 0, 0] = [0.9, 0.05, 0.05]                  # always previous token
    flip = rng.random(n) < 0.5
    per_text[:, 0, 1] = np.where(flip[:, None], [0.7, 0.2, 0.1], [0.2, 0.1, 0.7])
    counts = B.resample_counts(n, 100)
    scores = B.resample_ratio(counts, per_text)
    codes = hr.resampled_roles(scores, np.zeros((100, 1, 2)), np.full((1, 2, 0), np.nan),
                               threshold=0.4, broad=0.8)
    stable = B.label_stability(np.array([[0, 0]]), codes)
    assert stable[0, 0] == 1.0
    assert 0.05 < stable[0, 1] < 0.95


@pytest.mark.parametrize("method", ["gradient", "loo"])
def test_head_importance_interval_is_the_loop_over_per_text_importances(tiny_lm, method):
    import workbench as wb
    from workbench.analysis.ablation import objective_loss, ablate

    out = wb.head_importance(tiny_lm, SENTENCES, method=method, n_boot=25, progress=False)
    plain = wb.head_importance(tiny_lm, SENTENCES, method=method, progress=False)
    assert np.allclose(out[S.SCORE], plain[S.SCORE]) and S.CI_LOW not in plain
    assert (out[S.CI_LOW] <= out[S.CI_HIGH]).all() and (out[S.N_BOOT] == 25).all()
    if method == "gradient":   # oracle: each text's own importance, resampled by a loop
        from workbench.analysis.ablation import _gradient_scores, _prepare

        prep = _prepare(tiny_lm, SENTENCES, "mlm", None, 16, 0.15, 0, None)
        per = _gradient_scores(tiny_lm, prep, False).reshape(len(SENTENCES), -1)  # (N, L*H)
        assert np.allclose(per.mean(0), out[S.SCORE])
        lo, hi = loop_interval(per, None, 25, 0.95)
        assert np.allclose(out[S.CI_LOW], lo) and np.allclose(out[S.CI_HIGH], hi)
        return
    # oracle for one head: per-text losses, intact and with the head removed, resampled by a loop
    base = objective_loss(tiny_lm, SENTENCES, by_text=True)        # each text's mean loss
    with ablate(tiny_lm, [(1, 1)]):
        gated = objective_loss(tiny_lm, SENTENCES, by_text=True)
    from workbench.analysis.ablation import _prepare, _losses

    prep = _prepare(tiny_lm, SENTENCES, "mlm", None, 16, 0.15, 0, None)
    sums, counts = _losses(tiny_lm, prep)
    with ablate(tiny_lm, [(1, 1)]):
        sums_gated, _ = _losses(tiny_lm, prep)
    assert np.allclose(sums / counts, base) and np.allclose(sums_gated / counts, gated)
    stats = [sums_gated[r].sum() / counts[r].sum() - sums[r].sum() / counts[r].sum()
             for r in B.resample_indices(len(SENTENCES), 25)]
    lo, hi = np.percentile(stats, [2.5, 97.5])
    row = out[(out[S.LAYER] == 1) & (out[S.HEAD] == 1)].iloc[0]
    assert np.isclose(row[S.CI_LOW], lo) and np.isclose(row[S.CI_HIGH], hi)


def _synthetic_features(n_texts=60, rows_per_text=3, seed=0):
    from workbench.analysis.features import Features

    rng = np.random.default_rng(seed)
    text_id = np.repeat(np.arange(n_texts), rows_per_text)
    y = rng.integers(0, 2, size=len(text_id))
    signal = np.stack([rng.normal(size=(len(y), 4)),                          # layer 0: noise
                       rng.normal(size=(len(y), 4)) + 1.5 * y[:, None]], 1)   # layer 1: label
    index = pd.DataFrame({S.TEXT_ID: text_id, S.WORD: [f"w{i % 7}" for i in range(len(y))]})
    return Features(signal.astype(np.float32), index, [0, 1], "words", "synthetic"), y


def test_probe_interval_resamples_test_texts_like_a_loop():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupShuffleSplit
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import workbench as wb

    feats, y = _synthetic_features()
    out = wb.linear_probe(feats, y, n_boot=50, control=False)
    acc = out[out[S.METRIC] == "accuracy"].set_index(S.LAYER)
    groups = feats.index[S.TEXT_ID].to_numpy()
    tr, te = next(GroupShuffleSplit(n_splits=1, test_size=0.25, random_state=0).split(
        np.zeros(len(y)), y, groups))
    x = feats.array[:, 1]
    hits = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(
        x[tr], y[tr]).predict(x[te]) == y[te]
    test_texts = np.unique(groups[te])
    stats = []
    for draw in B.resample_indices(len(test_texts), 50):    # texts drawn, all their rows with them
        rows = np.concatenate([np.flatnonzero(groups[te] == test_texts[k]) for k in draw])
        stats.append(hits[rows].mean())
    lo, hi = np.percentile(stats, [2.5, 97.5])
    assert np.isclose(acc.loc[1, S.VALUE], hits.mean())
    assert np.isclose(acc.loc[1, S.CI_LOW], lo) and np.isclose(acc.loc[1, S.CI_HIGH], hi)
    assert (out[S.N_TEXTS] == len(test_texts)).all()
    assert acc.loc[1, S.CI_LOW] > acc.loc[0, S.CI_HIGH]   # the informative layer stands apart
    plain = wb.linear_probe(feats, y, control=False)
    assert np.allclose(plain[S.VALUE], out[S.VALUE]) and S.CI_LOW not in plain


def test_weighted_cka_is_cka_of_duplicated_rows_and_identity_gives_one():
    from workbench.analysis.similarity import linear_cka, weighted_cka

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(12, 5)), rng.normal(size=(12, 3))
    for draw in B.resample_indices(12, 5):
        w = np.bincount(draw, minlength=12).astype(float)
        assert np.isclose(weighted_cka(x, y, w), linear_cka(x[draw], y[draw]))
        assert np.isclose(weighted_cka(x, x, w), 1.0)
    wide = rng.normal(size=(6, 20))                           # example-space form (n < d)
    w = np.bincount(B.resample_indices(6, 1)[0], minlength=6).astype(float)
    draw = np.repeat(np.arange(6), w.astype(int))
    assert np.isclose(weighted_cka(wide, wide[:, :9], w), linear_cka(wide[draw], wide[draw, :9]))


def test_cka_bootstrap_of_a_model_with_itself_is_one(tiny_lm):
    import workbench as wb

    out = wb.similarity(tiny_lm, SENTENCES, n_boot=20, progress=False, cache=False)
    same = out[out[S.LAYER_A] == out[S.LAYER_B]]
    assert np.allclose(same[S.CI_LOW], 1.0) and np.allclose(same[S.CI_HIGH], 1.0)
    assert out.loc[out[S.LAYER_A] != out[S.LAYER_B], S.CI_LOW].isna().all()
    assert (out[S.N_TEXTS] == len(SENTENCES)).all()


def test_role_grid_outlines_unstable_cells_and_says_how_much_data(tiny_roles):
    from workbench.plots.head_roles import role_grid

    df = tiny_roles.copy()
    df[S.STABLE] = [i % 3 == 0 for i in range(len(df))]         # a known set of unstable heads
    fig = role_grid(df)
    outlined = {(round((s.x0 + s.x1) / 2), round((s.y0 + s.y1) / 2)) for s in fig.layout.shapes}
    shaky = {(h, la) for la, h, ok in zip(df[S.LAYER], df[S.HEAD], df[S.STABLE]) if not ok}
    assert outlined == shaky
    title = fig.layout.title.text
    assert f"{len(SENTENCES)} texts" in title and "40 bootstrap resamples" in title
    assert "same role in" in fig.data[0].hovertext[0][0]


def test_importance_bars_draw_the_interval():
    from workbench.plots.heads import importance_bars

    df = pd.DataFrame({S.LAYER: [0, 0, 1], S.HEAD: [0, 1, 0], S.SCORE: [0.3, 0.5, 0.1],
                       S.METHOD: "gradient", S.CI_LOW: [0.2, 0.45, 0.0],
                       S.CI_HIGH: [0.35, 0.7, 0.2], S.N_TEXTS: 9, S.N_BOOT: 200, S.LEVEL: 0.95})
    fig = importance_bars(df)
    bar = fig.data[0]
    order = [f"L{la} H{h}" for la, h in zip(df[S.LAYER], df[S.HEAD])]
    for y, plus, minus in zip(bar.y, bar.error_x.array, bar.error_x.arrayminus):
        row = df.iloc[order.index(y)]
        assert np.isclose(plus, row[S.CI_HIGH] - row[S.SCORE])
        assert np.isclose(minus, row[S.SCORE] - row[S.CI_LOW])
    assert "95% bootstrap intervals, 200 resamples of 9 texts" in fig.layout.title.text
    assert importance_bars(df.drop(columns=[S.CI_LOW, S.CI_HIGH])).data[0].error_x.array is None


def _changed_copy(tiny_lm, name, factor):
    import copy

    import torch

    import workbench as wb

    other = wb.LM(model=copy.deepcopy(tiny_lm.model), tokenizer=tiny_lm.tokenizer,
                  device=tiny_lm.device, name=name)
    with torch.no_grad():
        q = other.model.base_model.encoder.layer[1].attention.self.query
        q.weight[:8] *= factor                         # head 0 of layer 1 (head_dim 8) sharpens
    return other


def test_compare_models_intervals_are_paired_loops_over_texts(tiny_lm):
    import workbench as wb
    from workbench.analysis.compare import attention_change_by_text

    other = _changed_copy(tiny_lm, "changed", 20.0)
    diff = wb.compare_models(tiny_lm, other, SENTENCES, n_boot=30, predictions=False,
                             progress=False)
    iv = diff.intervals.set_index([S.METRIC, S.LAYER, S.HEAD]).sort_index()
    js, _, q = attention_change_by_text(tiny_lm, other, SENTENCES, progress=False)
    lo, hi = loop_interval(js[:, 1, 0], q, 30, 0.95)
    assert np.isclose(iv.loc[(S.JS_DISTANCE, 1, 0), S.CI_LOW], lo)
    assert np.isclose(iv.loc[(S.JS_DISTANCE, 1, 0), S.CI_HIGH], hi)
    heads = diff.heads.set_index([S.LAYER, S.HEAD])
    for metric in (S.JS_DISTANCE, S.COSINE, S.IMPORTANCE_CHANGE):
        assert np.allclose(iv.loc[metric, S.VALUE].sort_index(), heads[metric].sort_index())
    assert iv.loc[(S.JS_DISTANCE, 1, 0), S.CI_LOW] > 0.05          # the changed head
    assert np.allclose(iv.loc[(S.JS_DISTANCE, 0), [S.CI_LOW, S.CI_HIGH]], 0, atol=1e-6)
    layers = diff.layer_intervals.set_index([S.METRIC, S.LAYER])
    assert np.isclose(layers.loc[(S.JS_DISTANCE, 1), S.VALUE],
                      diff.layers.set_index(S.LAYER).loc[1, S.JS_DISTANCE])
    assert np.isclose(layers.loc[(S.CKA, 0), S.CI_LOW], 1.0)        # layer 0's output unchanged


def test_seed_spread_rule_on_synthetic_runs():
    from workbench.analysis.compare_models import seed_spread

    runs = pd.DataFrame({S.LAYER: 0, S.HEAD: [0, 1, 2] * 3,
                         S.JS_DISTANCE: [0.30, 0.05, 0.0, 0.32, 0.25, 0.0, 0.28, 0.01, 0.0],
                         S.IMPORTANCE_CHANGE: [1.0, 0.5, 0.0, 1.1, -0.4, 0.0, 0.9, 0.1, 0.0]})
    out = seed_spread(runs).set_index([S.METRIC, S.HEAD])
    js = out.loc[S.JS_DISTANCE]
    assert np.isclose(js.loc[0, S.VALUE], 0.30) and np.isclose(js.loc[0, S.SEED_SD], 0.02)
    assert js.loc[0, S.EXCEEDS_SEEDS]                  # 0.30 > 2 x 0.02: consistent change
    assert not js.loc[1, S.EXCEEDS_SEEDS]              # one seed moved, the others did not
    assert not js.loc[2, S.EXCEEDS_SEEDS]              # no change, no spread: nothing to report
    imp = out.loc[S.IMPORTANCE_CHANGE]
    assert imp.loc[0, S.EXCEEDS_SEEDS] and not imp.loc[1, S.EXCEEDS_SEEDS]
    assert (out[S.N_SEEDS] == 3).all()
    with pytest.raises(InputError, match="two runs"):
        seed_spread(runs.iloc[:3])


def test_compare_models_takes_several_runs(tiny_lm):
    import workbench as wb

    runs = [_changed_copy(tiny_lm, f"seed{i}", f) for i, f in enumerate((18.0, 20.0, 22.0))]
    diff = wb.compare_models(tiny_lm, runs, SENTENCES, cka=False, roles=False, progress=False)
    seeds = diff.seeds.set_index([S.METRIC, S.LAYER, S.HEAD])
    assert (diff.seeds[S.N_SEEDS] == 3).all()
    assert seeds.loc[(S.JS_DISTANCE, 1, 0), S.EXCEEDS_SEEDS]       # changed alike in all runs
    assert not seeds.loc[(S.JS_DISTANCE, 0, 0), S.EXCEEDS_SEEDS]   # untouched: JS 0, SD 0
    one = wb.compare_models(tiny_lm, runs[1], SENTENCES, cka=False, predictions=False,
                            progress=False)
    js = diff.heads.set_index([S.LAYER, S.HEAD])[S.JS_DISTANCE]
    assert js.loc[(1, 0)] > 0 and np.isclose(js.loc[(0, 0)], 0, atol=1e-6)
    assert one.seeds is None and "predictions" in diff.skipped
    with pytest.raises(InputError, match="n_boot"):
        wb.compare_models(tiny_lm, runs, SENTENCES, n_boot=10, progress=False)


def test_probe_curve_and_diff_overview_draw_intervals(tiny_lm):
    import workbench as wb
    from workbench.plots.compare_models import diff_overview
    from workbench.plots.representations import probe_curve

    feats, y = _synthetic_features()
    fig = probe_curve(wb.linear_probe(feats, y, n_boot=20))
    probe = next(t for t in fig.data if t.name == "probe")
    assert probe.error_y.array is not None and len(probe.error_y.array) == 2
    assert "95% bootstrap intervals, 20 resamples of 15 test texts" in fig.layout.title.text
    diff = wb.compare_models(tiny_lm, _changed_copy(tiny_lm, "changed", 20.0), SENTENCES,
                             n_boot=20, predictions=False, importance=False, roles=False,
                             progress=False)
    fig = diff_overview(diff)
    bar = next(t for t in fig.data if t.name == "mean over heads")
    js = diff.layer_intervals[diff.layer_intervals[S.METRIC] == S.JS_DISTANCE]
    assert np.allclose(bar.error_y.array, js[S.CI_HIGH] - js[S.VALUE])
    cka = next(t for t in fig.data if t.name == "CKA")
    assert cka.error_y.array is not None
    assert f"20 resamples of {len(SENTENCES)} texts" in fig.layout.title.text


def test_bad_interval_arguments_are_refused_at_the_boundary(tiny_lm):
    import workbench as wb

    feats, y = _synthetic_features()
    with pytest.raises(InputError, match="n_boot"):
        wb.head_roles(tiny_lm, SENTENCES, n_boot=0, progress=False)
    with pytest.raises(InputError, match="level"):
        wb.linear_probe(feats, y, n_boot=10, level=1.5)
    with pytest.raises(InputError, match="n_boot"):
        wb.similarity(tiny_lm, SENTENCES, n_boot="200", progress=False, cache=False)
    with pytest.raises(InputError, match="by_text"):
        wb.head_importance(tiny_lm, SENTENCES, method="loo", by_text=True, progress=False)
    with pytest.raises(InputError, match=r"lm_b\[1\].*wb.load"):
        wb.compare_models(tiny_lm, [tiny_lm, "run-2"], SENTENCES, progress=False)
    with pytest.raises(InputError, match="stats"):
        wb.head_stat_intervals(tiny_lm, SENTENCES, stats=["attn_nowhere"], progress=False)
