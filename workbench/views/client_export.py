"""`ClientExport`: SVG/PNG rendered by the user's browser when the kernel's machine has none.

kaleido needs a Chrome/Chromium beside the kernel; in JupyterLab the user's own browser is there.
A `ClientExport` widget (displayed, invisible, inside a widget's UI) receives a themed, sized
figure, renders it with plotly.js in the page (`views/static/client_export.js`) and sends the
image back; the kernel writes the file. PDF cannot be made this way (plotly.js has no PDF output).
Layer 3: no torch.
"""

from __future__ import annotations

import base64
import itertools
import json
import urllib.parse
from pathlib import Path
from typing import Callable

import anywidget
import plotly.io as pio
import traitlets

from ..errors import InputError
from ..figures import prepare_figure
from .attention import static_js

CLIENT_FORMATS = ("svg", "png")
_PLOTLY_JS = Path(pio.__file__).resolve().parent.parent / "package_data" / "plotly.min.js"


def decode_data_url(url: str) -> bytes:
    """Bytes of a `data:` URL as Plotly.toImage returns it (base64 PNG, or URL-encoded SVG)."""
    head, _, body = url.partition(",")
    if not head.startswith("data:"):
        raise InputError("the browser did not return an image (expected a data: URL)")
    if head.endswith(";base64"):
        return base64.b64decode(body)
    return urllib.parse.unquote(body).encode("utf-8")


class ClientExport(anywidget.AnyWidget):
    """Renders figures to SVG/PNG in the user's browser; `request(...)` starts one export."""

    _esm = static_js("client_export.js")
    job = traitlets.Dict().tag(sync=True)
    plotly_js = traitlets.Unicode("").tag(sync=True)  # sent once, on the first request

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._ids = itertools.count()
        self._pending: dict[int, tuple[Path, Callable[[Path | None, str], None]]] = {}
        self.on_msg(self._on_result)

    def request(self, fig, path: str | Path, done: Callable[[Path | None, str], None], *,
                width: str | float = "column", aspect: float = 0.75, scale: float = 1.0) -> None:
        """Render `fig` (paper theme, paper size) in the browser and write it to `path`.

        `done(path, "")` is called when the file is written, `done(None, message)` on failure.
        """
        path = Path(path)
        fmt = path.suffix.lower().lstrip(".")
        if fmt not in CLIENT_FORMATS:
            raise InputError(f"{path.name!r}: the browser can render .svg or .png, not .{fmt}")
        fig, w, h = prepare_figure(fig, width, aspect)
        if not self.plotly_js:
            self.plotly_js = _PLOTLY_JS.read_text(encoding="utf-8")
        job_id = next(self._ids)
        self._pending[job_id] = (path, done)
        self.job = {"id": job_id, "figure": json.loads(fig.to_json()), "format": fmt,
                    "width": w, "height": h, "scale": scale}

    def _on_result(self, _widget, content: dict, _buffers) -> None:
        path, done = self._pending.pop(content.get("id"), (None, None))
        if done is None:
            return
        if not content.get("ok"):
            done(None, f"your browser could not render the figure: {content.get('error', '')}")
            return
        try:
            data = decode_data_url(content.get("url", ""))
        except InputError as err:
            done(None, str(err))
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        done(path, "")


def export_figure(client: ClientExport, fig, path: str | Path, report: Callable[[str], None],
                  **size) -> None:
    """A widget's Export button: kaleido beside the kernel when it can, else the user's browser.

    `report(text)` receives plain text for the status line (the caller escapes it): "wrote …",
    "rendering … in your browser", or why the format needs a browser beside the kernel (PDF).
    """
    from ..figures import export, static_export_available
    from ..browser import ENABLE_HINT

    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt == "html" or static_export_available():
        report(f"wrote {export(fig, path, **size)}")
        return
    if fmt not in CLIENT_FORMATS:
        report(f".{fmt} needs a Chrome/Chromium beside the kernel and there is none here "
               f"({ENABLE_HINT}); choose svg or png, which your browser renders, or html")
        return

    def done(written: Path | None, error: str) -> None:
        report(f"wrote {written} (rendered by your browser)" if written else error)

    report(f"rendering {path.name} in your browser (no Chrome/Chromium beside the kernel) …")
    client.request(fig, path, done, **size)
