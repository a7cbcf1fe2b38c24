"""The paper theme and figure export shared by every plot.

`apply_theme(fig)` (or the registered plotly template "workbench_paper") sets readable fonts, thin
lines and a white background; `export(fig, "fig.pdf", width="column")` writes PNG/SVG/PDF/HTML at
the sizes of one- and two-column papers, each laid out for its size (`plots.layout.fit`). Colour
maps here are sequential and monotonic in lightness (cividis, greys), so they survive greyscale
printing. Layer 3: never imports torch.
"""

from __future__ import annotations

import atexit
import html
import json
import os
import re
import warnings
from pathlib import Path

import plotly.graph_objects as go
from plotly.basedatatypes import BaseFigure
import plotly.io as pio

from .browser import ENABLE_HINT, use_browser
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


STATIC_FORMATS = ("pdf", "svg", "png", "jpg", "jpeg", "webp")
EXPORT_LOG_ENV = "WORKBENCH_EXPORT_LOG"  # a JSON-lines file where skipped static exports are recorded
_skipped: list[dict] = []                # this process's skipped static exports, in order


def static_export_available() -> bool:
    """True when kaleido has a Chrome/Chromium to render PNG/SVG/PDF with."""
    return use_browser() is not None


def _start_renderer() -> None:
    """Keep one kaleido browser for the whole process (a fresh one per figure costs ~2 s)."""
    import kaleido

    if not kaleido._global_server.is_running():
        kaleido.start_sync_server(silence_warnings=True)
        atexit.register(kaleido.stop_sync_server, silence_warnings=True)


def _missing_browser_error(fmt: str, detail: str = "") -> MissingDependencyError:
    return MissingDependencyError(
        f"static export to .{fmt} needs kaleido and a Chrome/Chromium browser, and none was found: "
        f"{ENABLE_HINT}; export to .html works without one"
        + (f". Underlying error: {detail[:200]}" if detail else "."))


def _record_skip(path: Path, written: Path) -> None:
    entry = {"requested": str(path), "written": str(written)}
    _skipped.append(entry)
    log = os.environ.get(EXPORT_LOG_ENV)
    if log:
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")
    if len(_skipped) == 1:  # one line per session; skipped_exports()/skipped_summary list all
        warnings.warn(f"no browser for static export: wrote {written.name} instead of "
                      f"{path.name}, and HTML for every static export after it ({ENABLE_HINT})",
                      stacklevel=3)


PLOTLY_JS = "plotly.min.js"


def output_tree(folder: Path) -> Path:
    """The root of the output tree `folder` belongs to: its first folder below the current
    working directory ('figures' for 'figures/heads/'), or `folder` itself outside it."""
    folder, cwd = folder.resolve(), Path.cwd().resolve()
    try:
        first = folder.relative_to(cwd).parts[:1]
    except ValueError:
        return folder
    return cwd / first[0] if first else folder


def shared_plotly_js(page: Path) -> str:
    """The `<script src>` of a fallback page: ONE plotly.min.js at the root of its output tree
    (written there once), as a path relative to the page. The pages work offline and move
    together with their tree (zip or copy the tree); no CDN, and not 4.8 MB per page or per
    folder."""
    import plotly.offline

    root = output_tree(page.parent)
    bundle = root / PLOTLY_JS
    if not bundle.exists():
        root.mkdir(parents=True, exist_ok=True)
        tmp = bundle.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(plotly.offline.get_plotlyjs(), encoding="utf-8")
        os.replace(tmp, bundle)     # atomic: a concurrent export never reads half a bundle
    return Path(os.path.relpath(bundle, page.parent.resolve())).as_posix()


def skipped_exports(log: str | Path | None = None) -> list[dict]:
    """Static exports skipped for want of a browser: this process's, or those recorded in `log`."""
    if log is None:
        return list(_skipped)
    log = Path(log)
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line]


def skipped_summary(skipped: list[dict]) -> str:
    """One line naming how many static exports were skipped and the command that enables them."""
    if not skipped:
        return ""
    return (f"{len(skipped)} static figure export(s) skipped (no Chrome/Chromium; HTML written "
            f"instead); {ENABLE_HINT}.")


def prepare_figure(fig, width: str | float = "column",
                   aspect: float | None = None) -> tuple[go.Figure, int, int]:
    """A themed copy of `fig` laid out for a paper, and its (width, height) in CSS pixels.

    The one recipe behind every export, kernel-side (kaleido) or in the user's browser.
    `aspect=None` takes the figure family's own height/width (`plots.layout.aspect`); the copy
    is then laid out for that size (`plots.layout.fit`: fonts, tick density, abbreviated
    tokens, wrapped title, margins).
    """
    from .plots.layout import aspect as family_aspect, fit  # plots import this module

    fig = go.Figure(fig)  # a copy: exporting must not restyle the caller's figure
    apply_theme(fig)
    w, h = size_px(width, family_aspect(fig, size_px(width)[0]) if aspect is None else aspect)
    fit(fig, w, h)
    return fig, w, h


def _pdf_text(text: str) -> bytes:
    """A PDF text string: UTF-16BE with its byte-order mark, as hex (no escaping to get wrong)."""
    return b"<" + ("\ufeff" + text).encode("utf-16-be").hex().upper().encode() + b">"


def plain_title(fig: go.Figure) -> str:
    """The figure's title as plain text (plotly's <br> and tags dropped, entities decoded)."""
    text = str(fig.layout.title.text or "")
    text = re.sub(r"<br\s*/?>", " ", text)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", text)).split())


def set_pdf_info(data: bytes, title: str, creator: str) -> bytes:
    """`data` (a PDF with a classic xref table, as Chromium writes) with a new document
    information dictionary (Title, Creator, Producer), appended as an incremental update: the
    original bytes stay as they are, a new Info object, xref section and trailer (with /Prev)
    follow. A PDF this cannot read (cross-reference streams) comes back unchanged."""
    tail = data.rfind(b"trailer")
    start = data.rfind(b"startxref")
    size = re.search(rb"/Size\s+(\d+)", data[tail:]) if tail >= 0 else None
    root = re.search(rb"/Root\s+(\d+\s+\d+\s+R)", data[tail:]) if tail >= 0 else None
    prev = re.match(rb"startxref\s+(\d+)", data[start:]) if start >= 0 else None
    if not (size and root and prev) or start < tail:
        return data
    num = int(size.group(1))
    body = data if data.endswith(b"\n") else data + b"\n"
    obj_at = len(body)
    info = (b"%d 0 obj\n<< /Title " % num + _pdf_text(title) + b" /Creator " + _pdf_text(creator)
            + b" /Producer " + _pdf_text(f"{creator} (kaleido, Chromium)") + b" >>\nendobj\n")
    xref_at = obj_at + len(info)
    xref = b"xref\n%d 1\n%010d 00000 n \n" % (num, obj_at)   # each entry is 20 bytes
    trailer = (b"trailer\n<< /Size %d /Root " % (num + 1) + root.group(1)
               + b" /Info %d 0 R /Prev %s >>\nstartxref\n%d\n%%%%EOF\n" % (num, prev.group(1),
                                                                          xref_at))
    return body + info + xref + trailer


def _check_export_args(fig, path, width, aspect, scale, fallback) -> tuple[Path, str]:
    if not isinstance(fig, BaseFigure):
        raise InputError(f"fig: expected a plotly Figure (e.g. from wb.plots), got "
                         f"{type(fig).__name__}")
    if not isinstance(path, (str, Path)) or not str(path):
        raise InputError(f"path={path!r}: pass a file name ending in .pdf, .svg, .png or .html")
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in STATIC_FORMATS + ("html",):
        raise InputError(f"cannot export to {path.name!r}: use .pdf, .svg, .png or .html")
    if not isinstance(width, str) and not (isinstance(width, (int, float)) and 0 < width <= 100):
        raise InputError(f"width={width!r}: use one of {sorted(WIDTHS_IN)} or inches in (0, 100]")
    for name, value in (("aspect", aspect), ("scale", scale)):
        if value is None and name == "aspect":
            continue
        if not isinstance(value, (int, float)) or not 0 < value <= 100:
            raise InputError(f"{name}={value!r}: use a positive number (e.g. 0.75)")
    if fallback not in (None, "html"):
        raise InputError(f"fallback={fallback!r}: use None (raise without a browser) or 'html'")
    return path, fmt


def export(fig: go.Figure, path: str | Path, *, width: str | float = "column",
           aspect: float | None = None, scale: float = 1.0, fallback: str | None = None) -> Path:
    """Write `fig` to `path` (.pdf, .svg, .png or .html) sized for a paper, in the paper theme.

    The copy written is laid out for its size (`prepare_figure`: fonts, tick density, token
    abbreviation, title wrap, margins; `aspect=None` is the figure family's own shape). PDF and
    SVG are vector; a PDF's document title is the figure's title and its creator names the
    workbench version. PNG/SVG/PDF need kaleido and a Chrome/Chromium (found where kaleido
    looks, e.g. the system chromium); HTML needs nothing and embeds plotly.js (works offline).
    Without a browser a static export raises `MissingDependencyError` naming the fix, unless
    `fallback="html"`: then the HTML version is written beside it (same name, .html) and loads
    the one plotly.min.js of its output tree (`shared_plotly_js`), the skip is recorded
    (`skipped_exports()`), one warning is given per session, and that path is returned.
    Notebooks and reports use the fallback so a machine without a browser still runs them.
    """
    path, fmt = _check_export_args(fig, path, width, aspect, scale, fallback)
    fig, w, h = prepare_figure(fig, width, aspect)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "html":
        fig.write_html(path, include_plotlyjs=True, full_html=True)
        return path
    if not static_export_available():
        if fallback == "html":
            written = path.with_suffix(".html")
            fig.write_html(written, include_plotlyjs=shared_plotly_js(written), full_html=True)
            _record_skip(path, written)
            return written
        raise _missing_browser_error(fmt)
    _start_renderer()
    try:
        with warnings.catch_warnings():  # plotly warns that the shared renderer ignores kopts
            warnings.filterwarnings("ignore", message=".*kopts.*", category=UserWarning)
            fig.write_image(path, format=fmt, width=w, height=h, scale=scale)
    except Exception as err:  # kaleido raises several types when the browser cannot start
        msg = str(err)
        if any(word in msg.lower() for word in ("kaleido", "chrome", "browser")):
            raise _missing_browser_error(fmt, msg) from err
        raise
    if fmt == "pdf":  # Chromium titles every PDF "Kaleido-fier": name the figure and its maker
        from . import __version__

        path.write_bytes(set_pdf_info(path.read_bytes(), plain_title(fig) or path.stem,
                                      f"RoBERTa Workbench {__version__}"))
    return path


_TEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                "^": r"\textasciicircum{}"}


def export_table(df, path: str | Path, *, caption: str = "", value: str | None = None,
                 interval: str = "brackets", digits: int = 3, source: dict | None = None
                 ) -> Path:
    """Write `df` as a booktabs LaTeX table (`.tex`) and record it in `figures.json` beside it.

    A frame with `ci_low`/`ci_high` (from any `n_boot=` analysis) shows its `value` column (or
    `score`) as "v [lo, hi]" (`interval="brackets"`) or "v $\\pm$ h" with h half the interval's
    width (`interval="pm"`); constant `n_texts`, `n_boot`, `level` columns move into the caption.
    Text is escaped; numbers get `digits` decimals; booleans read yes/no. The provenance entry is
    that of `make_report`'s figures (name, caption, files, `source` plus the workbench version
    and the date). The paper needs `\\usepackage{booktabs}`.
    """
    import time

    import numpy as np
    import pandas as pd

    from . import __version__
    from . import schema as S

    tex = lambda text: "".join(_TEX_ESCAPES.get(c, c) for c in str(text))  # noqa: E731
    if not isinstance(df, pd.DataFrame) or df.empty:
        raise InputError("df: pass a non-empty DataFrame (a workbench result table)")
    path = Path(path)
    if path.suffix.lower() != ".tex":
        raise InputError(f"path={str(path)!r}: a LaTeX table is written to a file ending in .tex")
    if interval not in ("brackets", "pm"):
        raise InputError(f"interval={interval!r}: use 'brackets' ('v [lo, hi]') or 'pm' ('v ± h')")
    table, notes, done = df.copy(), [], None
    if S.CI_LOW in table and S.CI_HIGH in table:
        done = value or next((c for c in (S.VALUE, S.SCORE) if c in table), None)
        if done is None:
            raise InputError("df has ci_low/ci_high but no value or score column: name it, value=")
        lo, hi, v = table.pop(S.CI_LOW), table.pop(S.CI_HIGH), table[done]
        table[done] = [f"{a:.{digits}f} [{b:.{digits}f}, {c:.{digits}f}]" if interval == "brackets"
                       else f"{a:.{digits}f} $\\pm$ {(c - b) / 2:.{digits}f}"
                       for a, b, c in zip(v, lo, hi)]
        for col in (S.LEVEL, S.N_BOOT, S.N_TEXTS):
            if col in table and table[col].nunique() == 1:
                notes.append(f"{col} = {table.pop(col).iloc[0]:g}")

    def cell(x) -> str:
        if isinstance(x, (bool, np.bool_)):
            return "yes" if x else "no"
        if isinstance(x, (float, np.floating)):
            return "--" if np.isnan(x) else f"{x:.{digits}f}"
        return tex(x)

    align = "".join("r" if c == done or pd.api.types.is_numeric_dtype(table[c]) else "l"
                    for c in table)
    text = caption + (f" ({'; '.join(notes)}; percentile bootstrap over texts)" if notes else "")
    lines = [r"\begin{table}[t]", r"\centering", f"\\caption{{{tex(text)}}}",
             f"\\begin{{tabular}}{{{align}}}", r"\toprule",
             " & ".join(tex(c) for c in table.columns) + r" \\", r"\midrule"]
    lines += [" & ".join(str(x) if c == done else cell(x) for c, x in zip(table.columns, row))
              + r" \\" for row in table.itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")
    manifest_path = path.parent / "figures.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else []
    manifest = [m for m in manifest if path.name not in m.get("files", [])]
    manifest.append({"figure": path.stem, "caption": text, "files": [path.name],
                     "source": {**(source or {}), "workbench": __version__,
                                "created": time.strftime("%Y-%m-%d %H:%M:%S")}})
    manifest_path.write_text(json.dumps(manifest, indent=2, default=str))
    return path
