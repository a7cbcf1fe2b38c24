"""The paper theme and figure export shared by every plot.

`apply_theme(fig)` (or the registered plotly template "workbench_paper") sets readable fonts, thin
lines and a white background; `export(fig, "fig.pdf", width="column")` writes PNG/SVG/PDF/HTML at
the sizes of one- and two-column papers. Colour maps here are sequential and monotonic in
lightness (cividis, greys), so they survive greyscale printing. Layer 3: never imports torch.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import plotly.graph_objects as go
import plotly.io as pio

from .errors import InputError, MissingDependencyError

# widths in inches of common paper layouts (ACL/NeurIPS-style one column, full page)
WIDTHS_IN = {"column": 3.3, "page": 6.9, "slide": 10.0}
DPI = 96  # plotly/kaleido lay out in CSS pixels at 96 per inch
FONT = "DejaVu Sans, Arial, sans-serif"
SEQUENTIAL = "cividis"      # perceptually uniform, colour-blind safe, monotonic in greyscale
DIVERGING = "RdBu_r"
CATEGORICAL = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]

TEMPLATE_NAME = "workbench_paper"
pio.templates[TEMPLATE_NAME] = go.layout.Template(
    layout=dict(
        font=dict(family=FONT, size=10, color="#222"),
        paper_bgcolor="white", plot_bgcolor="white",
        colorway=CATEGORICAL,
        colorscale=dict(sequential=SEQUENTIAL, diverging=DIVERGING),
        xaxis=dict(showline=True, linecolor="#444", ticks="outside", gridcolor="#eee", zeroline=False),
        yaxis=dict(showline=True, linecolor="#444", ticks="outside", gridcolor="#eee", zeroline=False),
        margin=dict(l=50, r=20, t=40, b=45),
        legend=dict(bgcolor="rgba(255,255,255,0.8)"),
    )
)


def apply_theme(fig: go.Figure) -> go.Figure:
    """Apply the paper template to `fig` in place and return it."""
    fig.update_layout(template=TEMPLATE_NAME)
    return fig


def size_px(width: str | float = "column", aspect: float = 0.75) -> tuple[int, int]:
    """(width, height) in CSS pixels for a paper width name or a width in inches."""
    if isinstance(width, str) and width not in WIDTHS_IN:
        raise InputError(f"width={width!r}; use one of {sorted(WIDTHS_IN)} or inches as a number")
    inches = WIDTHS_IN[width] if isinstance(width, str) else float(width)
    return int(inches * DPI), int(inches * DPI * aspect)


def _ensure_browser() -> None:
    """kaleido 1.x renders with a Chrome/Chromium; point it at the system one if there is one."""
    if os.environ.get("BROWSER_PATH"):
        return
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            os.environ["BROWSER_PATH"] = found
            return


def export(fig: go.Figure, path: str | Path, *, width: str | float = "column",
           aspect: float = 0.75, scale: float = 1.0) -> Path:
    """Write `fig` to `path` (.pdf, .svg, .png or .html) sized for a paper, in the paper theme.

    PDF and SVG are vector. PNG/SVG/PDF need kaleido and a Chrome/Chromium (the system chromium
    is used when present); HTML needs nothing and embeds plotly.js (works offline).
    """
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in ("pdf", "svg", "png", "html", "jpg", "jpeg", "webp"):
        raise InputError(f"cannot export to {path.name!r}: use .pdf, .svg, .png or .html")
    fig = go.Figure(fig)  # a copy: exporting must not restyle the caller's figure
    apply_theme(fig)
    w, h = size_px(width, aspect)
    fig.update_layout(width=w, height=h)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "html":
        fig.write_html(path, include_plotlyjs=True, full_html=True)
        return path
    _ensure_browser()
    try:
        fig.write_image(path, format=fmt, width=w, height=h, scale=scale)
    except Exception as err:  # kaleido raises several types when no browser can start
        msg = str(err)
        if "kaleido" in msg.lower() or "chrome" in msg.lower() or "browser" in msg.lower():
            raise MissingDependencyError(
                f"static export to .{fmt} needs kaleido and a Chrome/Chromium browser: install "
                "chromium (e.g. `apt install chromium`) or run `plotly_get_chrome`, or set "
                "BROWSER_PATH; export to .html works without one. Underlying error: " + msg[:200]
            ) from err
        raise
    return path
