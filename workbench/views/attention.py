"""Offline attention views as self-contained HTML: head view, model view, query/key view.

The views take arrays (numpy, or anything `np.asarray` accepts such as a CPU tensor from
`wb.attention_tensor`) and tokens; they never compute attention. Data travels compactly:

- head view: for each (layer, head, query) the `top_k` strongest keys as uint16 index + float16
  weight, base64 per layer, decoded only when that layer is shown (lines below 0.5% are invisible
  anyway; exact numbers are in `wb.attention`);
- model view: every (layer, head) map mean-pooled to at most `thumb` x `thumb` cells, uint8;
- query/key view: one head's q and k vectors as float16.

The JavaScript is `views/static/attention.js` (written for this project, no dependencies), inlined
into each view, so a view renders in JupyterLab, classic notebook, VS Code and as a standalone
file with no network. Tokens reach the page only as JSON inside a `<script type="application/json">`
block with `<`, `>` and `&` escaped, and are written with `textContent`; titles go through
`html.escape`. Layer 3: no torch.
"""

from __future__ import annotations

import base64
import html
import json
import uuid
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import InputError

STATIC = Path(__file__).resolve().parent / "static"


@lru_cache(maxsize=None)
def static_js(name: str) -> str:
    """Text of a JavaScript file in `views/static/`."""
    return (STATIC / name).read_text(encoding="utf-8")


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes()).decode("ascii")


def _safe_json(obj) -> str:
    """JSON that cannot close its <script> block or open a tag."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _as_array(x, ndim: int, what: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float32)
    while a.ndim < ndim:
        a = a[None]
    if a.ndim != ndim:
        raise InputError(f"{what} has shape {a.shape}; expected {ndim} axes")
    return a


def _check_tokens(tokens, n: int) -> list[str]:
    tokens = [str(t) for t in tokens]
    if len(tokens) != n:
        raise InputError(f"{len(tokens)} tokens for attention over {n} positions: pass the tokens "
                         "returned with the weights (e.g. by wb.attention_tensor)")
    return tokens


class AttentionView:
    """A rendered view: `_repr_html_` for notebooks, `html()` for a standalone page, `save(path)`."""

    def __init__(self, payload: dict):
        self.payload = payload

    @property
    def kind(self) -> str:
        return self.payload["kind"]

    @property
    def nbytes(self) -> int:
        """Bytes of data the page carries (the JSON payload)."""
        return len(_safe_json(self.payload).encode("utf-8"))

    def fragment(self) -> str:
        """An HTML fragment (div + inline script) that draws itself where it is inserted."""
        vid = "wb-attn-" + uuid.uuid4().hex[:12]
        return (
            f'<div id="{vid}" class="wb-attn-root">loading attention view…</div>\n'
            f'<script type="application/json" id="{vid}-data">{_safe_json(self.payload)}</script>\n'
            f"<script>{static_js('attention.js')}</script>\n"
            f'<script>globalThis.WorkbenchAttention.renderFromScript("{vid}");</script>'
        )

    def html(self, title: str | None = None) -> str:
        """A complete standalone HTML page (no external URL)."""
        name = html.escape(title or self.payload.get("title") or f"attention {self.kind} view")
        return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
                f"<title>{name}</title></head>\n<body>\n{self.fragment()}\n</body></html>\n")

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        if path.suffix.lower() not in (".html", ".htm"):
            raise InputError(f"cannot save a view as {path.name!r}: use a .html file "
                             "(for PNG/SVG/PDF export a plotly figure from wb.plots)")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.html(), encoding="utf-8")
        return path

    def _repr_html_(self) -> str:
        return self.fragment()


def head_payload(weights, tokens, *, segments=None, layer: int = 0, heads=None,
                 layers=None, top_k: int = 20, title: str | None = None) -> dict:
    """Payload of the head view (see module docstring). `weights`: (L, H, T, T) or (H, T, T)."""
    w = _as_array(weights, 4, "weights")
    n_l, n_h, n, _ = w.shape
    tokens = _check_tokens(tokens, n)
    layer_ids = list(range(n_l)) if layers is None else [int(x) for x in layers]
    if len(layer_ids) != n_l:
        raise InputError(f"layers names {len(layer_ids)} layers but weights have {n_l}")
    k = int(min(max(1, top_k), n))
    blocks = {}
    for li, lid in enumerate(layer_ids):
        a = w[li]                                                    # (H, T, T)
        idx = np.argpartition(-a, k - 1, axis=-1)[..., :k] if k < n else np.broadcast_to(
            np.arange(n), a.shape).copy()
        vals = np.take_along_axis(a, idx, axis=-1)                   # (H, T, k)
        blocks[str(lid)] = _b64(np.concatenate([
            idx.astype("<u2").reshape(-1).view(np.uint8),
            vals.astype("<f2").reshape(-1).view(np.uint8)]))
    if layer not in layer_ids:
        raise InputError(f"layer {layer} is not among the layers given ({layer_ids})")
    return {"kind": "head", "title": title, "tokens": tokens,
            "segments": [int(s) for s in segments] if segments is not None else None,
            "n_layers": n_l, "n_heads": n_h, "n": n, "k": k, "layer": int(layer),
            "heads": [int(h) for h in heads] if heads is not None else None,
            "layer_ids": layer_ids, "layers": blocks}


def model_payload(weights, tokens, *, layers=None, thumb: int = 48,
                  title: str | None = None) -> dict:
    """Payload of the model view: (L, H, T, T) maps mean-pooled to <= thumb cells, uint8."""
    w = _as_array(weights, 4, "weights")
    n_l, n_h, n, _ = w.shape
    tokens = _check_tokens(tokens, n)
    size = int(min(n, thumb))
    edges = np.linspace(0, n, size + 1).astype(int)[:-1]
    pooled = np.add.reduceat(np.add.reduceat(w, edges, axis=2), edges, axis=3)
    counts = np.diff(np.append(edges, n))
    pooled = pooled / (counts[:, None] * counts[None, :])            # (L, H, s, s) mean
    peak = pooled.max(axis=(2, 3), keepdims=True)
    thumbs = np.rint(255 * pooled / np.where(peak > 0, peak, 1)).astype(np.uint8)
    layer_ids = list(range(n_l)) if layers is None else [int(x) for x in layers]
    return {"kind": "model", "title": title, "tokens": tokens, "n": n, "n_layers": n_l,
            "n_heads": n_h, "size": size, "layer_ids": layer_ids, "thumbs": _b64(thumbs)}


def qk_payload(queries, keys, tokens, *, layer: int = 0, head: int = 0,
               title: str | None = None) -> dict:
    """Payload of the query/key view: one head's q and k vectors, (T, d) or (L, H, T, d)."""
    q, k = np.asarray(queries, dtype=np.float32), np.asarray(keys, dtype=np.float32)
    if q.ndim == 4:
        q, k = q[layer, head], k[layer, head]
    if q.ndim != 2 or q.shape != k.shape:
        raise InputError(f"queries {q.shape} and keys {k.shape}: pass (T, d) or (L, H, T, d) arrays")
    tokens = _check_tokens(tokens, q.shape[0])
    return {"kind": "qk", "title": title, "tokens": tokens, "n": q.shape[0], "d": q.shape[1],
            "layer": int(layer), "head": int(head), "q": _b64(q.astype("<f2")),
            "k": _b64(k.astype("<f2"))}


def head_view(weights, tokens, *, segments=None, layer: int = 0, heads=None, layers=None,
              top_k: int = 20, title: str | None = None) -> AttentionView:
    """Lines from each query token (left) to the keys it attends to (right), one colour per head.

    `weights`: (L, H, T, T) from `wb.attention_tensor`; hover a token to see its lines only,
    click to keep it selected, click a colour box to hide a head, pick the layer above.
    """
    return AttentionView(head_payload(weights, tokens, segments=segments, layer=layer,
                                      heads=heads, layers=layers, top_k=top_k, title=title))


def model_view(weights, tokens, *, layers=None, thumb: int = 48,
               title: str | None = None) -> AttentionView:
    """A layer x head grid of small attention maps (queries down, keys across)."""
    return AttentionView(model_payload(weights, tokens, layers=layers, thumb=thumb, title=title))


def query_key_view(queries, keys, tokens, *, layer: int = 0, head: int = 0,
                   title: str | None = None) -> AttentionView:
    """How q.k builds one head's weights: pick a query, see k, q∘k, q·k/√d and softmax per key.

    `queries`/`keys` come from `wb.attention_qk(lm, text)` (the stock model's projections).
    """
    return AttentionView(qk_payload(queries, keys, tokens, layer=layer, head=head, title=title))
