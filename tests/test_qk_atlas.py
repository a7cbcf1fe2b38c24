"""qk_atlas: captured vectors and the AttentionViz alignment reproduce the model's own attention;
the joint projection, labels, figures and widget behave as documented."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import workbench as wb
from workbench import schema as S
from workbench.analysis.qk_atlas import align_qk, position_bucket, qk_vectors

TEXTS = ["The cat sat on the mat.", "A dog barked at the old mailman, twice!",
         "Colourless green ideas sleep furiously.", "It rained."]


@pytest.fixture(scope="module")
def vectors(tiny_lm):
    return qk_vectors(tiny_lm, TEXTS, batch_size=3)          # padded batches, sorted by length


def _softmax_rows(q: np.ndarray, k: np.ndarray) -> np.ndarray:
    s = q @ k.T / np.sqrt(q.shape[1])
    s = s - s.max(1, keepdims=True)
    e = np.exp(s)
    return e / e.sum(1, keepdims=True)


def test_vectors_come_back_in_text_order_without_padding(tiny_lm, vectors):
    lengths = [len(tiny_lm.tokens(t)) for t in TEXTS]
    assert vectors.queries.shape == (tiny_lm.num_layers, tiny_lm.num_heads, sum(lengths),
                                     tiny_lm.config.hidden_size // tiny_lm.num_heads)
    assert vectors.tokens[S.TEXT_ID].tolist() == [i for i, n in enumerate(lengths) for _ in range(n)]
    one = wb.attention_qk(tiny_lm, TEXTS[1])                   # one text alone, no padding
    rows = (vectors.tokens[S.TEXT_ID] == 1).to_numpy()
    np.testing.assert_allclose(vectors.queries[:, :, rows], one["queries"].numpy(), atol=1e-5)
    np.testing.assert_allclose(vectors.keys[:, :, rows], one["keys"].numpy(), atol=1e-5)


def test_alignment_keeps_the_models_attention(tiny_lm, vectors):
    """softmax(q' k'^T / sqrt d) per sentence equals the eager attention of the model itself."""
    for layer in range(tiny_lm.num_layers):
        for head in range(tiny_lm.num_heads):
            q, k, a = align_qk(vectors.queries[layer, head], vectors.keys[layer, head])
            # translated, then scaled (AttentionViz): mean query and key norms end equal
            ratio = np.linalg.norm(q, axis=1).mean() / np.linalg.norm(k, axis=1).mean()
            assert abs(ratio - 1) < 1e-6
            for text_id, text in enumerate(TEXTS):
                rows = (vectors.tokens[S.TEXT_ID] == text_id).to_numpy()
                weights, _ = wb.attention_tensor(tiny_lm, text, layers=[layer], heads=[head])
                np.testing.assert_allclose(_softmax_rows(q[rows], k[rows]),
                                           weights[0, 0].numpy(), atol=1e-5)


def test_alignment_by_hand():
    """Translate the keys onto the queries' centroid first, then scale (AttentionViz's order)."""
    q = np.array([[1.0, 0.0], [3.0, 0.0]])            # centroid (2, 0), mean norm 2
    k = np.array([[0.0, 8.0], [0.0, 10.0]])           # centroid (0, 9)
    # translated keys (2, -1), (2, 1): mean norm sqrt(5) -> a = sqrt(sqrt(5) / 2)
    q2, k2, a = align_qk(q, k)
    assert a == pytest.approx(np.sqrt(np.sqrt(5) / 2))
    np.testing.assert_allclose(q2, q * a)
    np.testing.assert_allclose(k2, np.array([[2.0, -1.0], [2.0, 1.0]]) / a)
    assert np.linalg.norm(q2, axis=1).mean() == pytest.approx(np.linalg.norm(k2, axis=1).mean(),
                                                              rel=1e-12)
    # dot products change only by a constant per query row
    diff = q2 @ k2.T - q @ k.T
    np.testing.assert_allclose(diff - diff[:, :1], 0.0, atol=1e-12)


@pytest.fixture(scope="module")
def atlas(tiny_lm):
    return wb.qk_atlas(tiny_lm, TEXTS, labels=[S.TOKEN_TYPE, S.POSITION_BUCKET])


def test_atlas_frame_and_projection(tiny_lm, atlas, vectors):
    n = len(vectors.tokens)
    assert len(atlas) == tiny_lm.num_layers * tiny_lm.num_heads * 2 * n
    for col in (S.LAYER, S.HEAD, S.KIND, S.TEXT_ID, S.POSITION, S.TOKEN, S.X, S.Y,
                S.TOKEN_TYPE, S.POSITION_BUCKET):
        assert col in atlas.columns and col in S.COLUMNS
    # oracle: the first two principal components of the joint, aligned cloud, by numpy's SVD
    q, k, a = align_qk(vectors.queries[1, 2], vectors.keys[1, 2])
    x = np.concatenate([q, k])
    x = x - x.mean(0)
    u, s, vt = np.linalg.svd(x, full_matrices=False)
    ref = x @ vt[:2].T                                             # (2N, 2), sign arbitrary
    part = atlas[(atlas[S.LAYER] == 1) & (atlas[S.HEAD] == 2)]
    got = part[[S.X, S.Y]].to_numpy()
    for c in range(2):
        assert abs(np.corrcoef(got[:, c], ref[:, c])[0, 1]) == pytest.approx(1.0, abs=1e-4)
    assert part[S.KIND].tolist() == ["query"] * n + ["key"] * n
    kept = part[S.VARIANCE_KEPT].unique()                         # one value per head
    assert len(kept) == 1
    assert kept[0] == pytest.approx(float((s[:2] ** 2).sum() / (s ** 2).sum()), rel=1e-4)
    np.testing.assert_allclose(part[S.SCALE], a, rtol=1e-5)       # the head's own scale factor
    assert (atlas[S.METHOD] == "pca").all() and atlas[S.ALIGN].all()
    # per-head values stay with their rows through filtering and concat (issue 25)
    other = atlas[(atlas[S.LAYER] == 0) & (atlas[S.HEAD] == 1)]
    both = pd.concat([other, part], ignore_index=True)
    assert both.groupby([S.LAYER, S.HEAD])[S.SCALE].nunique().eq(1).all()
    assert (both[(both[S.LAYER] == 1) & (both[S.HEAD] == 2)][S.VARIANCE_KEPT] == kept[0]).all()


def test_labels(atlas, tiny_lm):
    first = atlas[(atlas[S.LAYER] == 0) & (atlas[S.HEAD] == 0) & (atlas[S.TEXT_ID] == 1)
                  & (atlas[S.KIND] == "query")]
    assert first[S.TOKEN_TYPE].iloc[0] == "special" and first[S.TOKEN_TYPE].iloc[-1] == "special"
    view = tiny_lm.tokens(TEXTS[1])
    punct = [p for p, t in enumerate(view.tokens) if t in (",", "!")]
    assert set(first.set_index(S.POSITION).loc[punct, S.TOKEN_TYPE]) == {"punct"}
    assert [position_bucket(p) for p in (0, 1, 3, 4, 7, 8, 15, 16, 100)] == \
        ["0", "1-3", "1-3", "4-7", "4-7", "8-15", "8-15", "16-31", "64-127"]


def test_pos_labels_with_spacy(tiny_lm):
    pytest.importorskip("spacy")
    from workbench.errors import MissingDependencyError

    try:
        df = wb.qk_atlas(tiny_lm, TEXTS[:2], layers=[0], heads=[0], labels=[S.POS])
    except MissingDependencyError as err:
        pytest.skip(str(err))
    q = df[(df[S.KIND] == "query") & (df[S.TEXT_ID] == 0)]
    offsets = tiny_lm.tokenizer(TEXTS[0], return_offsets_mapping=True)["offset_mapping"]
    text = TEXTS[0]                                        # "The cat sat on the mat."

    def tags_within(word):
        a = text.index(word)
        return {tag for (s, e), tag in zip(offsets, q[S.POS]) if e > s and a <= s < a + len(word)}

    assert q[S.POS].iloc[0] == "special" and q[S.POS].iloc[-1] == "special"
    assert tags_within("cat") == {"NOUN"} and tags_within("sat") == {"VERB"}
    assert tags_within(".") == {"PUNCT"}


def test_tsne_on_selected_heads(tiny_lm):
    df = wb.qk_atlas(tiny_lm, TEXTS, layers=[1], heads=[0, 3], method="tsne")
    assert sorted(df[S.HEAD].unique()) == [0, 3] and np.isfinite(df[[S.X, S.Y]]).all().all()


def test_bad_inputs(tiny_lm):
    with pytest.raises(wb.InputError, match="method"):
        wb.qk_atlas(tiny_lm, TEXTS, method="mds")
    with pytest.raises(wb.InputError, match="labels"):
        wb.qk_atlas(tiny_lm, TEXTS, labels=["colour"])
    with pytest.raises(wb.InputError, match="heads"):
        wb.qk_atlas(tiny_lm, TEXTS, heads=[7])
    with pytest.raises(wb.InputError, match="layers"):
        wb.qk_atlas(tiny_lm, TEXTS, layers=[5])
    with pytest.raises(wb.InputError):
        wb.qk_atlas(tiny_lm, [])


def test_grid_and_detail_figures(tiny_lm, atlas):
    from workbench.plots.qk_atlas import atlas_grid, head_detail

    fig = atlas_grid(atlas, max_points=20)
    heads = [t for t in fig.data if t.meta is not None]
    assert len(heads) == tiny_lm.num_layers * tiny_lm.num_heads
    assert all(len(t.x) == 20 for t in heads)                     # 10 tokens x (query, key)
    assert {tuple(t.meta) for t in heads} == {(la, h) for la in range(2) for h in range(4)}
    frame = wb.attention(tiny_lm, [TEXTS[1]], layers=[1], heads=[2])
    row = frame[frame[S.QUERY] == 3]
    fig = head_detail(atlas, 1, 2, query=(1, 3), weights=row, min_weight=0.1)
    lines = [t for t in fig.data if t.mode == "lines"]
    assert len(lines) == int((row[S.WEIGHT] >= 0.1).sum())
    hover = [t for t in fig.data if t.customdata is not None]
    assert sum(len(t.x) for t in hover) == len(atlas[(atlas[S.LAYER] == 1) & (atlas[S.HEAD] == 2)])
    with pytest.raises(wb.InputError, match="pos"):
        atlas_grid(atlas, color=S.POS)


def test_widget_selects_head_and_query_on_traits(tiny_lm, atlas):
    from workbench.widgets import QKAtlas

    w = QKAtlas(tiny_lm, TEXTS, atlas=atlas, max_points=20)
    assert w.selected_head is None and len(w.detail.data) == 0
    grid_trace = next(t for t in w.grid.data if t.meta is not None and tuple(t.meta) == (1, 2))

    class Points:            # what plotly hands a click callback
        point_inds = [0]

    w._on_grid_click(grid_trace, Points())
    assert w.selected_head == (1, 2) and w.selected_query is None
    queries = [t for t in w.detail.data if t.customdata is not None]
    assert sum(len(t.x) for t in queries) == len(atlas[(atlas[S.LAYER] == 1) & (atlas[S.HEAD] == 2)])
    w.select_query(1, 3)
    assert w.selected_query == (1, 3)
    row = w.attention_row()
    ref, _ = wb.attention_tensor(tiny_lm, TEXTS[1], layers=[1], heads=[2])
    np.testing.assert_allclose(row.sort_values(S.KEY)[S.WEIGHT], ref[0, 0, 3].numpy(), atol=1e-6)
    assert any(t.mode == "lines" for t in w.detail.data)
    assert w.explorer is not None and (w.explorer.layer.value, w.explorer.head.value) == (1, 2)
    w.color.value = S.TOKEN_TYPE                                  # recolours, keeps the selection
    assert w.selected_query == (1, 3)
    w.select_head(1, 0)
    assert w.selected_head == (1, 0) and w.selected_query is None
    w.select_query(9, 0)
    assert "no token" in w.status.value and w.selected_query is None


def test_detail_refuses_a_query_outside_the_atlas(tiny_lm, atlas):
    """A query that is not a point of the atlas was drawn as nothing, silently (issue 27)."""
    from workbench.plots.qk_atlas import head_detail

    n = len(tiny_lm.tokens(TEXTS[1]))
    for query in ((1, n), (len(TEXTS), 0), (1, -1)):
        with pytest.raises(wb.InputError, match="not in this atlas"):
            head_detail(atlas, 1, 2, query=query)              # with or without weights
    with pytest.raises(wb.InputError, match="query="):
        head_detail(atlas, 1, 2, query=3)
    other = wb.attention(tiny_lm, ["Completely different words here, seven of them."],
                         layers=[1], heads=[2])
    wrong = other[other[S.QUERY] == 1].assign(**{S.KEY: lambda d: d[S.KEY] + 100})
    with pytest.raises(wb.InputError, match="weights has no key"):
        head_detail(atlas, 1, 2, query=(1, 3), weights=wrong)
    # a query dropped by subsampling is still drawn (it was refused as 'not in this atlas')
    frame = wb.attention(tiny_lm, [TEXTS[1]], layers=[1], heads=[2])
    fig = head_detail(atlas, 1, 2, query=(1, 3), weights=frame[frame[S.QUERY] == 3], max_points=2)
    assert any(t.name == "selected query" for t in fig.data)


def test_widget_shows_a_query_outside_its_atlas(tiny_lm, atlas):
    """The widget's texts hold the token, its atlas does not: the status line says so."""
    from workbench.widgets import QKAtlas

    part = atlas[atlas[S.TEXT_ID] != 2]                          # an atlas without text 2
    w = QKAtlas(tiny_lm, TEXTS, atlas=part, max_points=20)
    w.select_head(1, 2)
    w.select_query(2, 1)
    assert isinstance(w.last_error, wb.InputError) and "not in this atlas" in w.status.value
    assert w.selected_query is None
    w.select_query(1, 3)
    assert w.selected_query == (1, 3) and w.last_error is None
    w.select_query(1.5, 3)
    assert "text_id" in w.status.value and w.selected_query == (1, 3)
