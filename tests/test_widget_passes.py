"""Issue 28.6: clicks in HeadExplorer and QKAtlas reuse the forward passes already made.

"Open in the attention views" took 15 s and a QKAtlas query click 8.6 s on the demo model
because each ran the model again (the corpus for the per-text ranking, the example texts for the
views, the clicked sentence twice) and built a new AttentionExplorer. These tests count real
encoder passes (a hook on the embeddings) instead of timing anything.
"""

from __future__ import annotations

import numpy as np
import pytest

import workbench as wb
from workbench import schema as S

TEXTS = ["The cat sat on the mat.", "A dog barked at the mailman.", "Birds sing at dawn.",
         "Paris is the capital of France.", "The keys to the cabinet are on the table."]


@pytest.fixture()
def passes(tiny_lm):
    calls = []
    handle = tiny_lm.model.base_model.embeddings.register_forward_hook(
        lambda *a: calls.append(1))
    yield calls
    handle.remove()


def test_head_explorer_heatmap_is_head_stats_and_clicks_reuse_passes(tiny_lm, passes):
    from workbench.widgets.head_explorer import mean_over_texts

    h = wb.widgets.HeadExplorer(tiny_lm, TEXTS, examples=2, batch_size=2)
    corpus = len(passes)
    assert corpus == 3, "one pass over the corpus (3 batches of 2), not one per use"
    ref = wb.head_stats(tiny_lm, TEXTS, batch_size=2, progress=False)  # the oracle
    for stat in wb.analysis.heads.STATS:
        np.testing.assert_allclose(h.stats[stat], ref[stat], atol=1e-5, err_msg=stat)
    assert (h.stats[S.N_TEXTS] == len(TEXTS)).all() and (ref[S.N_TEXTS] == len(TEXTS)).all()
    mean = mean_over_texts(h.per_text())   # the same frame, columns and all, as head_stats'
    assert list(mean.columns) == list(ref.columns)
    for col in (S.ENTROPY, S.UNIFORM_DISTANCE, S.UNIFORM_ENTROPY):
        np.testing.assert_allclose(mean[col], ref[col], atol=1e-5, err_msg=col)
    assert (mean[S.N_QUERIES] == ref[S.N_QUERIES]).all()

    del passes[:]
    h.select(1, 2)                       # ranks from the kept per-text rows, runs 2 examples
    assert len(passes) == 1
    views = h.open_views()               # the same 2 texts: no model run
    assert len(passes) == 1 and views.forward_count == 0
    assert (views.layer.value, views.head.value, views.view.value) == (1, 2, "head")
    assert views.canvas.payload["kind"] == "head"
    ref_w, _ = wb.attention_tensor(tiny_lm, TEXTS[h.ranked[0]], layers=[1], heads=[2])
    np.testing.assert_allclose(views.capture.weights[1, 2], ref_w[0, 0], atol=1e-6)
    h.select(0, 3)                       # the views follow; examples already run are reused
    assert h.explorer is views and (views.layer.value, views.head.value) == (0, 3)
    assert views.text.value.splitlines() == [TEXTS[i] for i in h.ranked]
    assert len(passes) <= 2 and views.forward_count == 0


def test_qk_atlas_query_click_runs_the_sentence_once(tiny_lm, passes):
    atlas = wb.qk_atlas(tiny_lm, TEXTS[:3])
    w = wb.widgets.QKAtlas(tiny_lm, TEXTS[:3], atlas=atlas, max_points=20)
    w.select_head(1, 2)
    del passes[:]
    w.select_query(1, 3)
    assert len(passes) == 1, "the attention row and the head view share one pass"
    views = w.explorer
    w.select_query(1, 2)                 # same sentence: nothing runs, same explorer
    w.select_query(0, 1)                 # another sentence: one pass
    assert len(passes) == 2 and w.explorer is views and views.forward_count == 0
    assert views.text.value == TEXTS[0] and (views.layer.value, views.head.value) == (1, 2)
    ref, _ = wb.attention_tensor(tiny_lm, TEXTS[0], layers=[1], heads=[2])
    row = w.attention_row().sort_values(S.KEY)
    np.testing.assert_allclose(row[S.WEIGHT], ref[0, 0, 1].numpy(), atol=1e-6)
