"""Attention views: offline HTML, escaping, compact payloads, plots, and a headless-chromium render check."""

from __future__ import annotations

import base64
import html
import re

import numpy as np
import pytest

import workbench as wb
from workbench.browser import HEADLESS_ARGS
from workbench.views import attention as views
from workbench.views.bertviz_adapter import offline_html

TEXT = "The pizzeria was closed, unfortunately."
EVIL = '<script>alert("x")</script>'
URL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//|https?://|url\(\s*["']?https?:""", re.I)


@pytest.fixture(scope="module")
def attn(tiny_lm):
    return wb.attention_tensor(tiny_lm, TEXT)


@pytest.fixture(scope="module")
def all_views(tiny_lm, attn):
    x, tokens = attn
    qk = wb.attention_qk(tiny_lm, TEXT)
    return {
        "head": wb.views.head_view(x, tokens, layer=1),
        "model": wb.views.model_view(x, tokens),
        "qk": wb.views.query_key_view(qk["queries"], qk["keys"], qk["tokens"], layer=1, head=2),
    }


def _decode_head_layer(payload, layer):
    raw = np.frombuffer(base64.b64decode(payload["layers"][str(layer)]), dtype=np.uint8)
    h, n, k = payload["n_heads"], payload["n"], payload["k"]
    idx = raw[: 2 * h * n * k].view("<u2").reshape(h, n, k)
    w = raw[2 * h * n * k:].view("<f2").reshape(h, n, k).astype(np.float32)
    dense = np.zeros((h, n, n), dtype=np.float32)
    np.put_along_axis(dense, idx.astype(np.int64), w, axis=-1)
    return dense


def test_views_contain_no_external_url(all_views):
    for kind, view in all_views.items():
        page = view.html()
        assert not URL.search(page), f"{kind} view refers to an external URL"
        assert "<script src" not in page


def test_script_token_is_escaped(attn):
    x, tokens = attn
    tokens = list(tokens)
    tokens[1] = EVIL
    for view in (wb.views.head_view(x, tokens), wb.views.model_view(x, tokens)):
        page = view.html(title=EVIL)
        assert EVIL not in page                      # neither in the data block nor the title
        assert "\\u003cscript\\u003e" in page        # the token travels as escaped JSON
        assert "&lt;script&gt;" in page              # the title is html-escaped
        assert page.count("<script") == 3            # data block + library + render call only


def test_head_payload_is_compact_and_exact_for_short_inputs(attn):
    x, tokens = attn
    x = x.numpy()
    payload = views.head_payload(x, tokens, top_k=len(tokens))
    for layer in range(x.shape[0]):
        assert np.allclose(_decode_head_layer(payload, layer), x[layer], atol=1e-3)
    # top-k keeps each query's strongest keys
    small = views.head_payload(x, tokens, top_k=3)
    dense = _decode_head_layer(small, 0)
    assert ((dense > 0).sum(-1) <= 3).all()
    assert np.allclose(dense.max(-1), x[0].max(-1), atol=1e-3)


def test_model_payload_pools_long_inputs():
    rng = np.random.default_rng(0)
    w = rng.random((2, 3, 100, 100)).astype(np.float32)
    w /= w.sum(-1, keepdims=True)
    p = views.model_payload(w, [f"t{i}" for i in range(100)], thumb=20)
    thumbs = np.frombuffer(base64.b64decode(p["thumbs"]), dtype=np.uint8).reshape(2, 3, 20, 20)
    assert p["size"] == 20 and thumbs.max() == 255
    pooled = w[0, 0].reshape(20, 5, 20, 5).mean(axis=(1, 3))
    assert np.allclose(thumbs[0, 0] / 255, pooled / pooled.max(), atol=1 / 255)


def test_views_reject_mismatched_tokens(attn):
    x, tokens = attn
    with pytest.raises(wb.InputError, match="tokens"):
        wb.views.head_view(x, tokens[:-1])


def test_qk_vectors_reproduce_the_weights(tiny_lm):
    import torch

    qk = wb.attention_qk(tiny_lm, TEXT)
    d = qk["queries"].shape[-1]
    scores = qk["queries"] @ qk["keys"].transpose(-1, -2) / d ** 0.5
    assert torch.allclose(torch.softmax(scores, -1), qk["weights"], atol=1e-5)


def test_view_saves_standalone_html(all_views, tmp_path):
    path = all_views["head"].save(tmp_path / "head.html")
    assert path.read_text().startswith("<!DOCTYPE html>")
    with pytest.raises(wb.InputError, match="html"):
        all_views["head"].save(tmp_path / "head.png")


def test_heatmap_figures(tiny_lm):
    from workbench.plots.attention import attention_heatmap

    df = wb.attention(tiny_lm, TEXT, layers=0, heads=1)
    fig = attention_heatmap(df)
    z = np.asarray(fig.data[0].z, dtype=float)
    assert z.shape == (len(tiny_lm.tokens(TEXT)),) * 2
    assert np.allclose(np.nansum(z, axis=1), 1, atol=1e-5)
    agg = wb.attention(tiny_lm, TEXT, aggregate=["heads", "layers"], merge_subwords=True)
    fig2 = attention_heatmap(agg, title="mean of all heads")
    assert "mean of all heads" in fig2.layout.title.text
    with pytest.raises(wb.InputError, match="one"):
        attention_heatmap(wb.attention(tiny_lm, TEXT, layers=0))


def test_bertviz_adapter_rewrites_cdn_loading(tmp_path, attn):
    x, tokens = attn
    (tmp_path / "d3.min.js").write_text('// d3 v5.7.0\nwindow.d3 = {version: "5.7.0"};')
    (tmp_path / "jquery.min.js").write_text("window.jQuery = function () {};")
    view = wb.views.bertviz_offline(x, [EVIL] + list(tokens[1:]), assets=tmp_path)
    page = view.html()
    assert "cdnjs" not in page and "require.config" not in page and "requirejs(" not in page
    assert "})(window.jQuery, window.d3);" in page
    assert EVIL not in page                                     # cannot close the script block
    assert page.count("<script") == page.count("</script>") == 3


def test_bertviz_adapter_names_the_fix_without_assets(tmp_path, attn, monkeypatch):
    from workbench.views import bertviz_adapter as bo

    monkeypatch.setattr(bo, "_SEARCH", [])
    monkeypatch.delenv("WORKBENCH_JS_ASSETS", raising=False)
    with pytest.raises(wb.errors.MissingDependencyError, match="npm pack d3"):
        wb.views.bertviz_offline(attn[0], attn[1], assets=tmp_path)


def _browser():
    from workbench.testing import browser_for_tests

    return browser_for_tests()


def _open_offline(page_html_path, sync_playwright, exe, script):
    """Open a file with all network refused; return (script result, requests tried, errors)."""
    tried, errors, dialogs = [], [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=HEADLESS_ARGS)
        try:
            context = browser.new_context(offline=True)
            page = context.new_page()
            page.route("**/*", lambda route: route.continue_()
                       if route.request.url.startswith("file:")
                       else (tried.append(route.request.url), route.abort()))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(page_html_path.as_uri())
            page.wait_for_selector("[data-wb-drawn='1']", timeout=10_000)
            result = page.evaluate(script)
        finally:
            browser.close()
    return result, tried, errors, dialogs


COUNT_INK = """() => {
  const canvases = [...document.querySelectorAll('canvas')];
  let ink = 0;
  for (const c of canvases) {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 0 && (d[i] < 250 || d[i + 1] < 250)) ink++;
  }
  return {ink, canvases: canvases.length, text: document.body.innerText,
          tokens: document.querySelectorAll('.wb-attn-token').length};
}"""


@pytest.mark.browser
def test_standalone_views_draw_in_headless_chromium_offline(tmp_path, attn, tiny_lm):
    sync_playwright, exe = _browser()
    x, tokens = attn
    tokens = list(tokens)
    tokens[1] = EVIL
    qk = wb.attention_qk(tiny_lm, TEXT)
    pages = {
        "head": wb.views.head_view(x, tokens),
        "model": wb.views.model_view(x, tokens),
        "qk": wb.views.query_key_view(qk["queries"], qk["keys"], tokens, layer=0, head=0),
    }
    for kind, view in pages.items():
        path = view.save(tmp_path / f"{kind}.html")
        result, tried, errors, dialogs = _open_offline(path, sync_playwright, exe, COUNT_INK)
        assert not tried, f"{kind} view tried the network: {tried}"
        assert not errors, f"{kind} view raised: {errors}"
        assert not dialogs, f"{kind} view ran a token as code"
        assert result["canvases"] > 0 and result["ink"] > 50, f"{kind} view drew nothing: {result}"
        if kind != "model":
            assert EVIL in result["text"]                 # shown as text, not run
            assert result["tokens"] >= len(tokens)


@pytest.mark.browser
def test_bertviz_offline_draws_with_local_assets(tmp_path, attn):
    sync_playwright, exe = _browser()
    from workbench.views.bertviz_adapter import find_assets

    try:
        find_assets()
    except wb.errors.MissingDependencyError as err:
        pytest.skip(f"no local d3/jQuery for bertviz: {err}")
    x, tokens = attn
    path = wb.views.bertviz_offline(x, tokens).save(tmp_path / "bv.html")
    text = path.read_text()
    path.write_text(text.replace('<div id=\'vis\'></div>', '<div id=\'vis\' data-wb-drawn=\'1\'></div>'))
    script = "() => document.querySelectorAll('#vis svg text, #vis svg line, #vis svg rect').length"
    result, tried, errors, _ = _open_offline(path, sync_playwright, exe, script)
    assert not tried and not errors, (tried, errors)
    assert result > len(tokens)


def test_offline_html_rejects_unknown_bertviz_shapes(tmp_path):
    with pytest.raises(RuntimeError, match="unexpected shape"):
        offline_html("<div></div><script type=\"text/javascript\">foo()</script>", {})


# -- the widget: behaviour on traits, no browser ----------------------------------------------
@pytest.fixture()
def explorer(tiny_lm):
    return wb.widgets.AttentionExplorer(tiny_lm, [TEXT, ("A man eats pizza.", "He is hungry.")])


@pytest.fixture()
def encoder_passes(tiny_lm):
    """Counts real encoder forward passes (a hook on the embeddings), whatever code makes them."""
    calls = []
    handle = tiny_lm.model.base_model.embeddings.register_forward_hook(lambda *a: calls.append(1))
    yield calls
    handle.remove()


def test_explorer_options_do_not_rerun_the_model(explorer, tiny_lm, encoder_passes):
    assert explorer.forward_count == 1 and len(explorer.captures) == 2
    z0 = np.asarray(explorer.figure.data[0].z, dtype=float)
    explorer.layer.value = 1
    z1 = np.asarray(explorer.figure.data[0].z, dtype=float)
    assert not np.allclose(z0, z1)
    ref, _ = wb.attention_tensor(tiny_lm, TEXT, layers=[1], heads=[0])
    assert np.allclose(z1, ref[0, 0].numpy(), atol=1e-6)
    explorer.drop_special.value = True
    assert np.asarray(explorer.figure.data[0].z).shape == (ref.shape[-1] - 2,) * 2
    explorer.mode.value = "rollout"
    assert "all heads" in explorer.figure.layout.title.text
    explorer.merge.value = True
    explorer.text_pick.value = 1
    assert set(explorer.frame()["segment"]) == {0, 1}
    passes_for_reference = 1                    # the wb.attention_tensor call above
    assert len(encoder_passes) == passes_for_reference  # every change reused the cached pass
    assert explorer.forward_count == 1


def test_explorer_views_and_token_selection(explorer, encoder_passes):
    explorer.view.value = "head"
    payload = explorer.canvas.payload
    assert payload["kind"] == "head" and list(payload["layers"]) == ["0"]  # only this layer sent
    explorer.canvas.selected = [1, 2]           # as a token click in the browser would
    df = explorer.frame()
    assert set(df["query"]) == {-1} and np.isclose(df["weight"].sum(), 1, atol=1e-5)
    assert "selected:" in explorer.selection.value and "The" in explorer.selection.value
    explorer.view.value = "model"
    assert explorer.canvas.payload["kind"] == "model"
    explorer.canvas.picked = [1, 3]             # a click on a model-view map
    assert (explorer.layer.value, explorer.head.value, explorer.view.value) == (1, 3, "head")
    assert not encoder_passes                   # head and model views reuse the cached pass
    explorer.view.value = "qk"
    assert explorer.canvas.payload["kind"] == "qk" and explorer.canvas.payload["layer"] == 1
    assert len(encoder_passes) == 1 and explorer.forward_count == 2  # queries/keys: one pass
    assert "do not apply" in explorer.status.value  # drop/merge/mode are attention options
    explorer.layer.value = 0
    assert explorer.canvas.payload["layer"] == 0
    assert len(encoder_passes) == 1 and explorer.forward_count == 2  # ... then cached


@pytest.mark.parametrize("drop, merge", [(False, True), (True, False), (True, True)])
def test_qk_view_click_selects_that_token_for_every_token(tiny_lm, drop, merge):
    """Issue 17.3: with merge subwords / drop specials on, a click on token p in the query/key
    view selects the unit holding p (heatmap and selection line) and the view keeps p chosen."""
    text = "The pizzeria reopened unexpectedly."
    w = wb.widgets.AttentionExplorer(tiny_lm, [text], view="qk")
    w.drop_special.value, w.merge.value = drop, merge
    view = w.capture.view
    assert w.canvas.payload["tokens"] == view.display  # one subword convention (issue 17.6)
    for p in range(len(view)):
        w.canvas.selected = [p]                        # what a click in the browser sends
        if drop and view.special[p]:
            assert "is dropped" in w.status.value
            continue
        expected = view.words[view.word_ids[p]] if merge and not view.special[p] else view.display[p]
        (query,) = set(w.frame()["query_token"].astype(str))
        assert query == expected, (p, query, expected)
        assert w.canvas.selected == [p] and expected in html.unescape(w.selection.value)


def test_head_explorer_open_views_follow_the_clicked_head(tiny_lm):
    """Issue 17.4: once the attention views are open, clicking another head shows that head."""
    texts = ["The cat sat on the mat.", "A dog barked at the mailman.", "Birds sing at dawn."]
    h = wb.widgets.HeadExplorer(tiny_lm, texts, examples=2)
    h.select(0, 0)
    views = h.open_views()
    assert (views.layer.value, views.head.value) == (0, 0)
    h.select(1, 3)
    assert h.explorer is views and (views.layer.value, views.head.value) == (1, 3)
    assert views.text.value.splitlines() == [texts[i] for i in h.ranked]
    assert views.frame()["layer"].unique().tolist() == [1]


def test_explorer_rerun_and_export(explorer, tmp_path):
    explorer.text.value = "Only one text now."
    explorer.run_button.click()
    assert explorer.forward_count == 2 and len(explorer.captures) == 1
    csv = explorer.export(tmp_path / "a", "csv")
    import pandas as pd

    back = pd.read_csv(csv)
    assert len(back) == len(explorer.frame()) and "weight" in back
    assert explorer.export(tmp_path / "a.parquet").exists()
    explorer.export_path.value = str(tmp_path / "fig")
    explorer.export_format.value = "html"
    explorer.export_button.click()
    assert (tmp_path / "fig.html").exists() and "wrote" in explorer.status.value
    with pytest.raises(wb.InputError):
        explorer.export(tmp_path / "x.doc")
