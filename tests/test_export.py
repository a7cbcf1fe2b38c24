"""Figure export with and without a browser: static files when one exists, HTML and a clear
record of what was skipped when none does, and a clear error for a direct static export.

"No browser" is simulated honestly: BROWSER_PATH points at a file that does not exist, which is
what kaleido itself would be told; the CI also reruns these tests with every browser binary
hidden (scripts/without_browser.sh).
"""

from __future__ import annotations

import json

import plotly.graph_objects as go
import pytest

import workbench as wb
from workbench import browser, figures
from workbench.errors import InputError, MissingDependencyError


@pytest.fixture()
def no_browser(monkeypatch, tmp_path):
    monkeypatch.setenv("BROWSER_PATH", str(tmp_path / "no-such-chrome"))
    monkeypatch.setattr(figures, "_skipped", [])
    assert browser.find_browser() is None


@pytest.fixture()
def a_browser():
    found = browser.find_browser()
    if found is None:
        pytest.skip(f"no Chrome/Chromium on this machine: {browser.ENABLE_HINT}")
    return found


def _fig():
    return go.Figure(go.Bar(x=["a", "b"], y=[1, 2]))


def test_static_export_without_a_browser_names_the_fix(no_browser, tmp_path):
    with pytest.raises(MissingDependencyError, match="apt install chromium.*html works"):
        wb.figures.export(_fig(), tmp_path / "x.pdf")
    assert not list(tmp_path.glob("x.*"))  # nothing half-written


def test_fallback_writes_html_and_records_the_skip(no_browser, tmp_path, monkeypatch):
    log = tmp_path / "skipped.jsonl"
    monkeypatch.setenv(figures.EXPORT_LOG_ENV, str(log))
    with pytest.warns(UserWarning, match="wrote x.html instead of x.svg"):
        written = wb.figures.export(_fig(), tmp_path / "x.svg", fallback="html")
    assert written == tmp_path / "x.html" and written.exists()
    assert (tmp_path / "plotly.min.js").exists()  # shared by every fallback page, offline
    assert 'src="plotly.min.js"' in written.read_text() and "cdn" not in written.read_text()
    skipped = figures.skipped_exports()
    assert skipped == figures.skipped_exports(log) == [
        {"requested": str(tmp_path / "x.svg"), "written": str(written)}]
    import warnings

    with warnings.catch_warnings(record=True) as later:   # one line per session, not per figure
        warnings.simplefilter("always")
        for fmt in ("pdf", "png", "svg"):
            wb.figures.export(_fig(), tmp_path / f"y.{fmt}", fallback="html")
    assert not later and len(figures.skipped_exports()) == 4
    line = figures.skipped_summary(skipped)
    assert line.startswith("1 static figure export(s) skipped") and "apt install chromium" in line
    assert figures.skipped_summary([]) == ""


def test_html_export_never_needs_a_browser(no_browser, tmp_path):
    path = wb.figures.export(_fig(), tmp_path / "x.html")
    assert path.exists() and figures.skipped_exports() == []


@pytest.mark.parametrize("fmt", ["pdf", "svg", "png"])
def test_static_export_with_a_browser(a_browser, tmp_path, fmt):
    path = wb.figures.export(_fig(), tmp_path / f"x.{fmt}", fallback="html")
    head = path.read_bytes()[:64]
    assert path.suffix == f".{fmt}"
    assert {"pdf": b"%PDF", "svg": b"<svg", "png": b"\x89PNG"}[fmt] in head


@pytest.mark.parametrize("kwargs, match", [
    ({"fig": "not a figure"}, "fig: expected a plotly Figure"),
    ({"path": "x.doc"}, "use .pdf, .svg, .png or .html"),
    ({"path": ""}, "path=''"),
    ({"width": -3}, "width=-3"),
    ({"width": "colum"}, "width='colum'"),
    ({"aspect": 0}, "aspect=0"),
    ({"scale": float("nan")}, "scale=nan"),
    ({"fallback": "png"}, "fallback='png'"),
])
def test_bad_export_arguments_are_named(tmp_path, kwargs, match):
    args = {"fig": _fig(), "path": tmp_path / "x.html", **kwargs}
    with pytest.raises(InputError, match=match):
        wb.figures.export(args.pop("fig"), args.pop("path"), **args)
    assert not list(tmp_path.iterdir())


def test_provision_says_what_it_did(no_browser):
    path, line = browser.provision(allow_download=False, allow_apt=False)
    assert path is None and "none could be provisioned" in line and "HTML instead" in line


def test_provision_accepts_a_browser_that_starts(a_browser):
    path, line = browser.provision(allow_download=False, allow_apt=False)
    assert path == a_browser and browser.starts(path) and "using the browser" in line


def test_report_without_a_browser_writes_html_and_lists_the_skips(no_browser, tiny_lm, tmp_path,
                                                                 run_root, capsys):
    texts = ["The cat sat on the mat.", "A dog barked."]
    report = wb.make_report(tiny_lm, tmp_path, runs=[], texts=texts, formats=("pdf", "svg"),
                            progress=False, strict=True)
    assert (report["note"] == "").all()
    assert all(files == [str(tmp_path / f"{name}.html")]
               for name, files in zip(report["figure"], report["files"]))
    manifest = json.loads((tmp_path / "figures.json").read_text())
    assert all(m["skipped_static"] == [f"{m['figure']}.pdf", f"{m['figure']}.svg"]
               for m in manifest)
    assert "Not written (no browser for static export)" in (tmp_path / "SOURCES.md").read_text()
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[-1].startswith(f"{2 * len(report)} static figure export(s) skipped")


def _reply(client, url=None, error=None):
    """What client_export.js sends back after Plotly.toImage (or its failure)."""
    job = client.job
    content = {"id": job["id"], "ok": error is None}
    content.update({"url": url} if error is None else {"error": error})
    client._on_result(client, content, [])


def test_client_export_writes_what_the_browser_rendered(tmp_path):
    from workbench.views.client_export import ClientExport

    client, results = ClientExport(), []
    client.request(_fig(), tmp_path / "f.svg", lambda p, e: results.append((p, e)))
    job = client.job
    assert job["format"] == "svg" and (job["width"], job["height"]) == figures.size_px("column")
    assert job["figure"]["layout"]["template"]["layout"]["font"]["size"] == 10  # paper theme
    assert client.plotly_js.startswith("/**") and len(client.plotly_js) > 1_000_000
    _reply(client, "data:image/svg+xml,%3Csvg%20xmlns%3D%22a%22%3E%3C%2Fsvg%3E")
    assert results == [(tmp_path / "f.svg", "")]
    assert (tmp_path / "f.svg").read_text() == '<svg xmlns="a"></svg>'
    client.request(_fig(), tmp_path / "f.png", lambda p, e: results.append((p, e)))
    _reply(client, "data:image/png;base64,iVBORw0KGgo=")
    assert (tmp_path / "f.png").read_bytes() == b"\x89PNG\r\n\x1a\n"
    client.request(_fig(), tmp_path / "g.png", lambda p, e: results.append((p, e)))
    _reply(client, error="Error: WebGL unavailable")
    assert results[-1] == (None, "your browser could not render the figure: Error: WebGL unavailable")
    assert not (tmp_path / "g.png").exists()
    with pytest.raises(InputError, match="not .pdf"):
        client.request(_fig(), tmp_path / "f.pdf", lambda p, e: None)


def test_export_button_uses_the_users_browser_without_one_beside_the_kernel(no_browser, tmp_path):
    from workbench.views.client_export import ClientExport, export_figure

    client, said = ClientExport(), []
    export_figure(client, _fig(), tmp_path / "a.pdf", said.append)
    assert "needs a Chrome/Chromium beside the kernel" in said[-1] and "svg or png" in said[-1]
    assert client.job == {}  # nothing sent to the browser for a PDF
    export_figure(client, _fig(), tmp_path / "a.svg", said.append)
    assert said[-1].startswith("rendering a.svg in your browser")
    _reply(client, "data:image/svg+xml,%3Csvg%3E%3C%2Fsvg%3E")
    assert said[-1] == f"wrote {tmp_path / 'a.svg'} (rendered by your browser)"
    export_figure(client, _fig(), tmp_path / "a.html", said.append)
    assert said[-1] == f"wrote {tmp_path / 'a.html'}"


def test_export_button_uses_kaleido_when_there_is_a_browser(a_browser, tmp_path):
    from workbench.views.client_export import ClientExport, export_figure

    client, said = ClientExport(), []
    export_figure(client, _fig(), tmp_path / "a.pdf", said.append)
    assert said == [f"wrote {tmp_path / 'a.pdf'}"] and client.job == {}


@pytest.mark.browser
def test_client_export_script_renders_in_a_real_browser(tmp_path):
    """client_export.js in headless Chromium, offline, with a stand-in for anywidget's model."""
    from workbench.testing import browser_for_tests
    from workbench.views.client_export import ClientExport, decode_data_url

    sync_playwright, exe = browser_for_tests()
    client = ClientExport()
    client.request(_fig(), tmp_path / "f.svg", lambda p, e: None)
    state = {"job": client.job, "plotly_js": client.plotly_js}
    # one inline module: file:// pages may not import module files (origin null)
    (tmp_path / "page.html").write_text(
        "<html><body><div id='w'></div><script type='module'>\n"
        f"window.STATE = {json.dumps(state)};\n{client._esm}\nwindow.SENT = [];\n"
        "const model = {get: k => window.STATE[k], on: () => {}, send: m => window.SENT.push(m)};\n"
        "renderClientExport({model, el: document.getElementById('w')});\n</script></body></html>")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        try:
            page = browser.new_context(offline=True).new_page()
            tried, errors = [], []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.route("**/*", lambda r: r.continue_() if r.request.url.startswith(("file:", "blob:"))
                       else (tried.append(r.request.url), r.abort()))
            page.goto((tmp_path / "page.html").as_uri())
            page.wait_for_function("window.SENT && window.SENT.length > 0", timeout=60_000)
            sent = page.evaluate("window.SENT")
        finally:
            browser.close()
    assert not tried and not errors, (tried, errors)
    assert sent[0]["ok"] and sent[0]["id"] == client.job["id"], sent
    svg = decode_data_url(sent[0]["url"]).decode()
    assert svg.startswith("<svg") and ">a<" in svg and ">b<" in svg  # the bars' tick labels


def _info_title(data: bytes) -> tuple[str, str, bytes]:
    """(Title, Creator, /Prev) read back by following the last trailer and its xref table:
    an independent walk of the PDF structure, not the writer's own regexes."""
    import re as _re

    start = int(data[data.rindex(b"startxref") + 9:].split()[0])
    assert data[start:start + 4] == b"xref"
    first, count = map(int, data[start + 5:].split(b"\n")[0].split())
    trailer = data[data.index(b"trailer", start):]
    info_num = int(_re.search(rb"/Info (\d+) 0 R", trailer).group(1))
    assert first <= info_num < first + count
    entry = data[start:].split(b"\n")[2 + info_num - first]
    offset = int(entry[:10])
    assert data[offset:].startswith(b"%d 0 obj" % info_num)
    obj = data[offset:data.index(b"endobj", offset)]
    text = {k.decode(): bytes.fromhex(v.decode()).decode("utf-16")
            for k, v in _re.findall(rb"/(Title|Creator) <([0-9A-F]+)>", obj)}
    return text["Title"], text["Creator"], _re.search(rb"/Prev (\d+)", trailer).group(1)


def test_pdf_info_carries_title_and_version(a_browser, tmp_path):
    fig = go.Figure(go.Bar(x=["a"], y=[1]), layout=dict(title="Attention to &lt;s&gt; → layer 3"))
    path = wb.figures.export(fig, tmp_path / "x.pdf")
    data = path.read_bytes()
    title, creator, prev = _info_title(data)
    assert title == "Attention to <s> → layer 3" and creator == f"RoBERTa Workbench {wb.__version__}"
    assert b"Kaleido-fier" in data[:int(prev) + 1]   # the original is kept as it was: an update
    assert data.rstrip().endswith(b"%%EOF")


def test_pdf_info_update_on_a_minimal_pdf():
    objs = [b"1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n",
            b"2 0 obj\n<< /Type /Pages /Kids [] /Count 0 >>\nendobj\n"]
    body, offsets = b"%PDF-1.4\n", []
    for o in objs:
        offsets.append(len(body))
        body += o
    xref_at = len(body)
    body += b"xref\n0 3\n0000000000 65535 f \n" + b"".join(b"%010d 00000 n \n" % o for o in offsets)
    body += b"trailer\n<< /Size 3 /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % xref_at
    out = figures.set_pdf_info(body, "t (1)", "me")
    assert out.startswith(body) and _info_title(out) == ("t (1)", "me", str(xref_at).encode())
    assert figures.set_pdf_info(b"%PDF-1.5 no classic trailer", "t", "me").startswith(b"%PDF-1.5")


def test_fallback_pages_share_one_plotly_bundle_per_output_tree(no_browser, tmp_path, monkeypatch):
    """Pages in nested figure folders load one plotly.min.js at the root of their tree, by a
    relative path (offline, and the tree moves as a whole); no folder gets its own copy."""
    import warnings

    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pages = [wb.figures.export(_fig(), path, fallback="html")
                 for path in ("figures/a.pdf", "figures/heads/b.svg", "figures/heads/deep/c.png")]
    bundles = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("plotly.min.js"))
    assert [str(b) for b in bundles] == ["figures/plotly.min.js"]
    for page, src in zip(pages, ("plotly.min.js", "../plotly.min.js", "../../plotly.min.js")):
        text = (tmp_path / page).read_text()
        assert f'src="{src}"' in text and (tmp_path / page).parent.joinpath(src).resolve() == \
            (tmp_path / "figures/plotly.min.js").resolve()
        assert len(text) < 200_000   # the bundle is not inside the page
