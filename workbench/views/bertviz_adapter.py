"""bertviz's head and model views, made to render with no network.

bertviz loads require.js, d3 v5 and jQuery from cdnjs, so on an air-gapped machine its views stay
blank. `bertviz_offline` asks bertviz for its HTML (`html_action="return"`), drops the require.js
tag and the `require.config` CDN paths, runs bertviz's code on globals instead of AMD modules,
and inlines d3 and jQuery from local files. No Python package ships d3 v5, so the files are looked
up, in order, in `assets=`, `$WORKBENCH_JS_ASSETS`, `~/.cache/workbench-js` and Debian's
`/usr/share/javascript/{d3,jquery}`; get them once with e.g.
`npm pack d3@5.7.0` (take `package/dist/d3.min.js`) and `apt install libjs-jquery`.

Our own views (`head_view`, `model_view`, `query_key_view`) need none of this, carry far less
data and stay responsive at 512 tokens; the adapter is for people who want bertviz's look.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import InputError, MissingDependencyError
from .attention import AttentionView

_SEARCH = [Path("~/.cache/workbench-js").expanduser(), Path("/usr/share/javascript/d3"),
           Path("/usr/share/javascript/jquery")]
_NAMES = {"d3": ("d3.min.js", "d3.js"), "jquery": ("jquery.min.js", "jquery.js")}


def _is_d3_v5_plus(text: str) -> bool:
    m = re.search(r"v(\d+)\.\d+\.\d+", text[:300]) or re.search(r'version\s*[:=]\s*"(\d+)\.', text)
    return bool(m) and int(m.group(1)) >= 5


def find_assets(assets: str | Path | None = None) -> dict[str, Path]:
    """Local copies of d3 (v5+) and jQuery, or a `MissingDependencyError` that says how to get them."""
    folders = ([Path(assets).expanduser()] if assets else [])
    if os.environ.get("WORKBENCH_JS_ASSETS"):
        folders.append(Path(os.environ["WORKBENCH_JS_ASSETS"]).expanduser())
    folders += _SEARCH
    found: dict[str, Path] = {}
    for lib, names in _NAMES.items():
        for folder in folders:
            hits = [folder / n for n in names if (folder / n).is_file()]
            hits = [h for h in hits if lib != "d3" or _is_d3_v5_plus(h.read_text(errors="ignore"))]
            if hits:
                found[lib] = hits[0]
                break
    missing = sorted(set(_NAMES) - set(found))
    if missing:
        raise MissingDependencyError(
            f"bertviz needs {', '.join(missing)} (d3 v5+ and jQuery) and loads them from a CDN; no "
            f"local copy was found in {[str(f) for f in folders]}. Put d3.min.js "
            "(`npm pack d3@5.7.0`, file package/dist/d3.min.js) and jquery.min.js "
            "(`apt install libjs-jquery`) in a folder and pass assets=FOLDER or set "
            "WORKBENCH_JS_ASSETS, or use wb.views.head_view / model_view, which need no assets.")
    return found


def _isolated(code: str) -> str:
    """Run a UMD library so it sets a window global even where an AMD loader exists."""
    return ("(function(){var define=undefined,module=undefined,exports=undefined;\n"
            + code + "\n}).call(window);")


def offline_html(bertviz_html: str, assets: dict[str, Path]) -> str:
    """Rewrite bertviz's returned HTML to run on inlined d3/jQuery with no require.js or CDN."""
    out = re.sub(r'<script src="https?://[^"]*require[^"]*"></script>', "", bertviz_html)
    out = re.sub(r"require\.config\(\{.*?\}\);", "", out, count=1, flags=re.S)
    out, n = re.subn(r"requirejs\(\[\s*'jquery'\s*,\s*'d3'\s*\]\s*,\s*function\s*\(\s*\$\s*,\s*d3\s*\)\s*\{",
                     "(function ($, d3) {", out, count=1)
    if n != 1:
        raise RuntimeError("this bertviz version's HTML has an unexpected shape; "
                           "use wb.views.head_view / model_view instead")
    end = out.rfind("});")
    out = out[:end] + "})(window.jQuery, window.d3);" + out[end + 3:]
    # the params JSON sits in a <script>: keep a token such as "</script>" from closing it
    head, _, body = out.partition('<script type="text/javascript">')
    body, _, tail = body.rpartition("</script>")
    body = re.sub(r"<(/|!--|script)", lambda m: "<\\" + m.group(1), body, flags=re.I)
    libs = "".join(f"<script>{_isolated(assets[lib].read_text(encoding='utf-8'))}</script>\n"
                   for lib in ("jquery", "d3"))
    return libs + head + '<script type="text/javascript">' + body + "</script>" + tail


class BertvizView(AttentionView):
    """bertviz HTML made offline; same `html()`/`save()`/`_repr_html_` as our views."""

    def __init__(self, html_text: str, kind: str):
        super().__init__({"kind": f"bertviz-{kind}"})
        self._html = html_text

    @property
    def nbytes(self) -> int:
        return len(self._html.encode("utf-8"))

    def fragment(self) -> str:
        return self._html


def bertviz_offline(attention, tokens, *, view: str = "head", assets: str | Path | None = None,
                    **kwargs) -> BertvizView:
    """bertviz's `head_view` or `model_view` on `attention` (L, H, T, T tensor), working offline.

    `attention` is the tensor from `wb.attention_tensor` (bertviz needs torch tensors);
    `tokens` the matching tokens; `kwargs` go to bertviz.
    """
    if view not in ("head", "model"):
        raise InputError(f"view={view!r}; bertviz_offline offers 'head' and 'model'")
    if not hasattr(attention, "unsqueeze"):
        raise InputError("bertviz needs a torch tensor (L, H, T, T): pass the tensor returned "
                         "by wb.attention_tensor, not a numpy array")
    found = find_assets(assets)
    from bertviz import head_view as bv_head, model_view as bv_model

    per_layer = tuple(attention[i].unsqueeze(0) for i in range(attention.shape[0]))
    fn = bv_head if view == "head" else bv_model
    raw = fn(per_layer, [str(t) for t in tokens], html_action="return", **kwargs)
    return BertvizView(offline_html(raw.data, found), view)
