"""Every figure family, exported at paper sizes, fits its page (issue 28.1).

Each family is drawn from a frame shaped like its analysis's output, with the text that breaks
layouts (10-word sentences, long tokens, `<s>`, 12 x 12 heads), exported to SVG by
`wb.figures.export` (kaleido, one browser for the session), and the SVG is measured in headless
Chromium: the box of every text element, through its transforms (rotated labels stay rotated
quads). The checks: no two tick labels of one axis overlap, and no text lies outside the page.
The default run covers every family at a 3.3 in column plus the layer/head heatmap, the role
grid and the attention heatmap at every size; `-m slow` runs every family at every size.
Without a browser the test skips with the reason (a failure under WORKBENCH_REQUIRE_BROWSER=1).
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

import workbench as wb
from workbench import schema as S
from workbench.figures import DPI, size_px

# (width, aspect): a column, a page, half a page, and what the notebooks and scripts use
SIZES = {"column": ("column", None), "page": ("page", None), "half_page": (3.45, None),
         "column_square": ("column", 1.0), "page_wide": ("page", 0.42)}
WORDS = ("The extraordinarily longwinded committee unanimously postponed the "
         "reorganisation indefinitely yesterday").split()


# -- frames shaped like each analysis's output ---------------------------------------------------

def _attention():
    tokens = ["<s>"] + WORDS + ["</s>"]
    n = len(tokens)
    w = np.random.default_rng(0).dirichlet(np.ones(n), size=n)
    return pd.DataFrame([{S.TEXT_ID: 0, S.LAYER: 3, S.HEAD: 1, S.QUERY: q, S.KEY: k,
                          S.QUERY_TOKEN: tokens[q], S.KEY_TOKEN: tokens[k], S.WEIGHT: w[q, k]}
                         for q in range(n) for k in range(n)])


def _heads(layers=12, heads=12):
    rng = np.random.default_rng(1)
    rows = [{S.LAYER: la, S.HEAD: h} for la in range(layers) for h in range(heads)]
    df = pd.DataFrame(rows)
    for col in (S.ATTN_BOS, S.JS_DISTANCE, S.SCORE):
        df[col] = rng.random(len(df))
    df[S.X], df[S.Y] = rng.normal(size=len(df)), rng.normal(size=len(df))
    df[S.PATTERN] = rng.choice(["diagonal", "vertical", "block", "heterogeneous"], len(df))
    df[S.METHOD] = "gradient"
    return df


def _roles(layers=6, heads=12):
    roles = ["previous token", "next token", "self", "offset +2", "<s>", "</s>", "punctuation",
             "dep:nsubj", "broad", "mixed"]
    rng = np.random.default_rng(2)
    df = _heads(layers, heads)[[S.LAYER, S.HEAD]]
    df[S.ROLE] = rng.choice(roles, len(df))
    df[S.SCORE] = rng.random(len(df))
    df[S.RUNNER_UP], df[S.RUNNER_UP_SCORE] = "self", 0.3
    df[S.MODEL] = "demo"
    return df


class _Diff:
    def __init__(self):
        h = _heads(6, 12)
        h[S.IMPORTANCE_CHANGE] = h[S.SCORE] - 0.5
        h[S.ROLE_CHANGED] = h[S.SCORE] > 0.8
        self.heads = h
        self.layers = h.groupby(S.LAYER, as_index=False).agg(
            **{S.JS_DISTANCE: (S.JS_DISTANCE, "mean"), S.IMPORTANCE_CHANGE: (S.SCORE, "mean"),
               S.ROLE_CHANGED: (S.ROLE_CHANGED, "sum")})
        self.layers[S.CKA] = np.linspace(0.999, 0.95, 6)
        self.model_a, self.model_b = "demo", "beyond-peers-sentiment (step-00000060)"
        self.predictions = pd.DataFrame({S.AGREE: [True, False, True]})
        self.pll = pd.DataFrame({S.LOGPROB_CHANGE: [-0.5, 0.2]})
        self.skipped = {}


def _probing():
    sentence = " ".join(WORDS[:6]) + " <mask> " + " ".join(WORDS[6:])
    fill = pd.DataFrame([{"text_id": 0, "text": sentence, "mask_index": 0, "rank": r + 1,
                          "token": f"Ġ{w}", "prob": 0.5 / (r + 1)}
                         for r, w in enumerate(WORDS[:5])])
    cands = pd.DataFrame({"candidate": WORDS[:4], "logprob": [-1.0, -2.0, -3.5, -4.0],
                          "n_tokens": [1, 3, 2, 4], "text": sentence, "method": "pll"})
    lens = pd.DataFrame([{"layer": la, "rank": r + 1, "token": f"Ġ{WORDS[(la + r) % 9]}",
                          "prob": 0.3 / (r + 1), "kind": "top", "text_id": 0, "mask_index": 0,
                          "model": "demo", "text": sentence} for la in range(7) for r in range(5)])
    pairs = pd.DataFrame({"margin": np.random.default_rng(3).normal(size=80),
                          "correct": np.random.default_rng(4).random(80) > 0.3, "model": "demo"})
    probe = pd.DataFrame({"relation": ["capital-of-country", "language-spoken-in", "born-in-city",
                                       "member-of-organisation"], "p_at_1": [0.4, 0.3, 0.2, 0.1],
                          "model": "demo"})
    return fill, cands, lens, pairs, probe


def _atlas(layers=6, heads=12, tokens=40):
    rng = np.random.default_rng(5)
    rows = [{S.LAYER: la, S.HEAD: h, S.KIND: kind, S.TEXT_ID: 0, S.POSITION: p,
             S.TOKEN: WORDS[p % 10], S.X: rng.normal(), S.Y: rng.normal()}
            for la in range(layers) for h in range(heads) for kind in ("query", "key")
            for p in range(tokens)]
    return pd.DataFrame(rows)


def _representations():
    probe = pd.DataFrame([{S.MODEL: m, S.LAYER: la, S.METRIC: metric, S.VALUE: v}
                          for m in ("demo", "beyond-peers-sentiment (step-00000060)")
                          for la in range(7)
                          for metric, v in (("accuracy", 0.6 + la / 30), ("control_accuracy", 0.5),
                                            ("majority", 0.4))])
    emb = pd.DataFrame({S.LAYER: [0] * 30 + [1] * 30, S.X: np.arange(60.0), S.Y: np.arange(60.0),
                        S.WORD: WORDS * 6, S.LABEL: ["NOUN", "VERB", "ADJ"] * 20,
                        S.TEXT: " ".join(WORDS)})
    cka = pd.DataFrame([{S.MODEL_A: "demo", S.MODEL_B: "beyond-peers-sentiment (step-00000060)",
                         S.LAYER_A: a, S.LAYER_B: b, S.VALUE: 1 - abs(a - b) / 10}
                        for a in range(7) for b in range(7)])
    attr = pd.DataFrame([{S.METHOD: m, S.POSITION: p, S.TOKEN: t, S.SCORE: np.sin(p + i),
                          S.TARGET: "positive", S.DELTA: 0.01}
                         for i, m in enumerate(("ig", "grad_x_input", "rollout"))
                         for p, t in enumerate(["<s>"] + WORDS + ["</s>"])])
    return probe, emb, cka, attr


def _training():
    steps = np.arange(0, 200, 10)
    metrics = pd.DataFrame({"step": steps, "kind": "step", "loss": 3 - steps / 100})
    evals = pd.DataFrame({"step": steps[::5], "kind": "eval", "eval_loss": 3 - steps[::5] / 90,
                          "eval_accuracy": 0.5 + steps[::5] / 500})
    frame = pd.concat([metrics, evals], ignore_index=True)
    labels = ["negative", "somewhat negative", "neutral", "somewhat positive", "positive"]
    confusion = pd.DataFrame(np.arange(25).reshape(5, 5), index=labels, columns=labels)
    return frame, confusion


def all_families() -> dict:
    """{family: figure} for every plot function in workbench/plots."""
    from workbench.plots import (attention, compare_models, head_roles, heads, probing, qk_atlas,
                                 representations, training)

    hd = _heads()
    fill, cands, lens, pairs, probe = _probing()
    rprobe, emb, cka, attr = _representations()
    metrics, confusion = _training()
    atlas = _atlas()
    syntax = pd.DataFrame({S.RELATION: ["nsubj", "dobj", "amod", "advmod", "compound:prt"],
                           S.ACCURACY: [0.6, 0.5, 0.4, 0.3, 0.9], S.BASELINE: 0.3,
                           S.LAYER: 3, S.HEAD: 4, S.OFFSET: -1})
    return {
        "attention_heatmap": attention.attention_heatmap(_attention()),
        "head_heatmap": heads.head_heatmap(hd, S.ATTN_BOS),
        "compare_heatmap": heads.compare_heatmap(hd),
        "cluster_map": heads.cluster_map(hd),
        "importance_bars": heads.importance_bars(hd),
        "syntax_bars": heads.syntax_bars(syntax),
        "role_grid": head_roles.role_grid(_roles()),
        "diff_overview": compare_models.diff_overview(_Diff()),
        "topk_bars": probing.topk_bars(fill),
        "candidate_bars": probing.candidate_bars(cands),
        "logit_lens_heatmap": probing.logit_lens_heatmap(lens),
        "margin_histogram": probing.margin_histogram(pairs),
        "probe_bars": probing.probe_bars(probe),
        "atlas_grid": qk_atlas.atlas_grid(atlas),
        "head_detail": qk_atlas.head_detail(atlas, 3, 4),
        "probe_curve": representations.probe_curve(rprobe),
        "embedding_scatter": representations.embedding_scatter(emb),
        "cka_heatmap": representations.cka_heatmap(cka),
        "attribution_strip": representations.attribution_strip(attr),
        "training_curves": training.training_curves(metrics),
        "compare_runs": training.compare_runs({"run-a": metrics, "a-much-longer-run-name": metrics}),
        "confusion_heatmap": training.confusion_heatmap(confusion),
    }


# -- measuring the SVG in the browser --------------------------------------------------------

MEASURE_JS = """() => {
  const svg = document.querySelector('svg');
  const out = [];
  for (const t of svg.querySelectorAll('text')) {
    const s = getComputedStyle(t);
    if (!t.textContent.trim() || s.display === 'none' || s.visibility === 'hidden'
        || s.opacity === '0') continue;
    const b = t.getBBox(), m = t.getCTM();
    if (b.width === 0 && b.height === 0) continue;
    const corners = [[b.x, b.y], [b.x + b.width, b.y], [b.x + b.width, b.y + b.height],
                     [b.x, b.y + b.height]].map(([x, y]) => [m.a * x + m.c * y + m.e,
                                                          m.b * x + m.d * y + m.f]);
    let axis = null;
    const tick = t.closest('g.xtick, g.ytick');
    if (tick) {
      const layer = tick.parentElement.getAttribute('class') || '';
      const sub = tick.closest('g[class^="subplot"], g.colorbar, g.infolayer');
      axis = tick.getAttribute('class').split(' ')[0] + ':' + layer + ':'
             + (sub ? sub.getAttribute('class') : '');
    }
    out.push({text: t.textContent, corners, axis});
  }
  return out;
}"""


def _separated(a, b) -> bool:
    """True when convex quads `a` and `b` do not overlap (more than 0.5 px): separating axes."""
    for quad in (a, b):
        for (x1, y1), (x2, y2) in zip(quad, quad[1:] + quad[:1]):
            nx, ny = y2 - y1, x1 - x2
            norm = (nx * nx + ny * ny) ** 0.5 or 1.0
            pa = [(x * nx + y * ny) / norm for x, y in a]
            pb = [(x * nx + y * ny) / norm for x, y in b]
            if max(pa) <= min(pb) + 0.5 or max(pb) <= min(pa) + 0.5:
                return True
    return False


def problems(texts: list[dict], width: int, height: int) -> list[str]:
    """Overlapping tick labels of one axis and text outside the page, as readable lines."""
    found = []
    for t in texts:
        xs, ys = [c[0] for c in t["corners"]], [c[1] for c in t["corners"]]
        if min(xs) < -1 or min(ys) < -1 or max(xs) > width + 1 or max(ys) > height + 1:
            found.append(f"outside the {width}x{height} page: {t['text']!r} "
                         f"x {min(xs):.0f}..{max(xs):.0f}, y {min(ys):.0f}..{max(ys):.0f}")
    ticks = [t for t in texts if t["axis"]]
    for a, b in itertools.combinations(ticks, 2):
        if a["axis"] == b["axis"] and not _separated(a["corners"], b["corners"]):
            found.append(f"tick labels overlap on {a['axis']}: {a['text']!r} / {b['text']!r}")
    return found


@pytest.fixture(scope="module")
def measure():
    """measure(svg_path) -> text boxes; one headless Chromium for the module."""
    from workbench.figures import static_export_available
    from workbench.testing import browser_for_tests

    sync_playwright, exe = browser_for_tests()
    assert static_export_available()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        page = browser.new_context(offline=True).new_page()

        def run(path):
            page.set_content(path.read_text(encoding="utf-8"))
            return page.evaluate(MEASURE_JS)

        yield run
        browser.close()


@pytest.fixture(scope="module")
def families():
    return all_families()


def _check(families, measure, tmp_path, names, sizes):
    bad = []
    for name, size in itertools.product(names, sizes):
        width, asp = SIZES[size]
        path = wb.figures.export(families[name], tmp_path / f"{name}-{size}.svg", width=width,
                                 aspect=asp)
        from workbench.plots.layout import aspect as family_aspect

        w, h = size_px(width, family_aspect(families[name], size_px(width)[0]) if asp is None else asp)
        texts = measure(path)
        assert texts, f"{name} at {size}: no text measured"
        bad += [f"{name} at {size}: {p}" for p in problems(texts, w, h)]
    assert not bad, "\n".join(bad[:40])


def test_every_family_fits_a_column(families, measure, tmp_path):
    _check(families, measure, tmp_path, sorted(families), ["column"])


@pytest.mark.parametrize("name", ["head_heatmap", "role_grid", "attention_heatmap"])
def test_heatmaps_and_role_grid_fit_every_size(families, measure, tmp_path, name):
    _check(families, measure, tmp_path, [name], [s for s in SIZES if s != "column"])


@pytest.mark.slow
def test_every_family_fits_every_size(families, measure, tmp_path):
    _check(families, measure, tmp_path, sorted(families), list(SIZES))


def test_checks_catch_overlap_and_overflow():
    """The checker itself: overlapping rotated labels and text past the edge are reported."""
    quad = lambda x, y, w, h: [[x, y], [x + w, y], [x + w, y + h], [x, y + h]]   # noqa: E731
    texts = [{"text": "a", "corners": quad(10, 10, 30, 10), "axis": "xtick:x"},
             {"text": "b", "corners": quad(30, 12, 30, 10), "axis": "xtick:x"},
             {"text": "c", "corners": quad(300, 10, 30, 10), "axis": "xtick:x"},
             {"text": "d", "corners": quad(35, 10, 30, 10), "axis": "ytick:y"}]
    found = problems(texts, 320, 200)
    assert found == ["outside the 320x200 page: 'c' x 300..330, y 10..20",
                     "tick labels overlap on xtick:x: 'a' / 'b'"]
    # two labels rotated 45 degrees whose axis-aligned boxes overlap but whose glyphs do not
    rot = lambda x: [[x, 0], [x + 20, 20], [x + 15, 25], [x - 5, 5]]   # noqa: E731
    assert _separated(rot(0), rot(12)) and not _separated(rot(0), rot(4))
    assert DPI == 96


# -- the layout itself, without a browser ---------------------------------------------------

def _visible(text: str) -> str:
    import html

    return html.unescape(text)


def test_fit_abbreviates_and_thins_tick_labels_for_the_width():
    """128 tokens at a column: labels cut to 8 characters, thinned so that their estimated
    extents fit the axis; on a page 12 characters. The caller's figure is not touched."""
    from workbench.figures import prepare_figure
    from workbench.plots.attention import attention_heatmap
    from workbench.plots.layout import text_width

    tokens = [f"{WORDS[i % 10]}{i}" for i in range(128)]
    rows = [{S.TEXT_ID: 0, S.LAYER: 0, S.HEAD: 0, S.QUERY: q, S.KEY: k, S.QUERY_TOKEN: tokens[q],
             S.KEY_TOKEN: tokens[k], S.WEIGHT: 1 / 128} for q in range(128) for k in range(128)]
    fig = attention_heatmap(pd.DataFrame(rows))
    before = fig.to_json()
    col, w, h = prepare_figure(fig, "column")
    page, _, _ = prepare_figure(fig, "page")
    assert fig.to_json() == before
    for axis in (col.layout.xaxis, col.layout.yaxis):
        assert all(len(_visible(t)) <= 8 for t in axis.ticktext)
        assert len(axis.ticktext) * (8 * 1.3 + 2) <= h      # one line of 8 px text per label
    assert len(col.layout.yaxis.ticktext) < len(page.layout.yaxis.ticktext) <= 64
    assert max(len(_visible(t)) for t in page.layout.yaxis.ticktext) == 12
    assert col.layout.xaxis.tickfont.size == 8 and page.layout.xaxis.tickfont.size == 9
    assert (w, h) == size_px("column", 1.0)                    # the family's narrow shape
    assert text_width("&lt;s&gt;", 10) == text_width("<s>".replace("<", "x"), 10)


def test_fit_wraps_a_long_title_and_makes_room_for_it():
    from workbench.figures import prepare_figure
    from workbench.plots.heads import head_heatmap

    title = "Attention to the previous token, " + " ".join(WORDS)
    fig, w, _ = prepare_figure(head_heatmap(_heads(), S.ATTN_BOS, title=title), "column")
    lines = fig.layout.title.text.split("<br>")
    assert 2 <= len(lines) <= 3 and all(len(line) * 10 * 0.62 <= w - 16 for line in lines)
    assert fig.layout.margin.t >= len(lines) * 10 * 1.3


def test_the_old_export_fails_the_fit_check(families, measure, tmp_path, monkeypatch):
    """Without `fit` (the export before issue 28) the same check finds overlapping tick labels
    and text off the page: the test can fail."""
    import workbench.plots.layout as layout

    monkeypatch.setattr(layout, "fit", lambda fig, w, h: fig.update_layout(width=w, height=h))
    with pytest.raises(AssertionError, match="overlap|outside"):
        _check(families, measure, tmp_path, ["attention_heatmap", "role_grid"], ["column"])
