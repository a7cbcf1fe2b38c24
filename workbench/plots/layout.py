"""Lay a finished figure out for the page size it is exported at (`fit`), and each family's shape.

A plot function builds its figure once, for the screen; `wb.figures.export` then calls
`fit(fig, width_px, height_px)` on a copy, which sizes the text for that width and makes every
label fit, from estimates (no browser is asked: text width ~ font size x characters):

- fonts: ticks 8 px and text 9 px below 480 px (a 3.3 in column, half a page), 9/10 above;
- tick labels: abbreviated with '…' (8 characters in a column, 12 on a page), and thinned to every
  k-th one when they would overlap along their axis (an x axis first turns its labels upright);
- the title wraps to the width (at most 3 lines, then '…') and the top margin follows it;
  subplot titles are cut to their panel; heatmap cell text shrinks to its cell, or goes;
- a legend on the right of (or below) a narrow figure moves above the plot, packed in rows;
- sliders and menus go (a page cannot slide); automatic margins everywhere.

`aspect(fig, width_px)` is the height/width a family prefers: what its plot function recorded
with `set_aspect` (optionally a taller one for narrow exports), else the figure's own width and
height, else 0.75. Layer 3: no torch.
"""

from __future__ import annotations

import html
import math
import re

import plotly.graph_objects as go

NARROW_PX = 480          # below this width (column, half page) fonts and labels get smaller
CHAR_EM = 0.62           # mean advance of a DejaVu Sans character, in ems (errs wide)
LINE_EM = 1.3            # line height, in ems
ASPECT_KEY = "workbench_aspect"
LEGEND_ROW_PX = 19       # height of one row of legend entries (symbol and 8-9 px text)


def text_width(text: str, size: float) -> float:
    """Estimated width in px of plotly text (HTML entities count once, tags not at all)."""
    longest = max(_plain(text).split("\n"), key=len, default="")
    return len(longest) * size * CHAR_EM


def _plain(text) -> str:
    text = re.sub(r"<br\s*/?>", "\n", str(text))
    return html.unescape(re.sub(r"<[^>]+>", "", text))


def cut(text: str, limit: int) -> str:
    """Plotly text cut to `limit` visible characters with '…' (escaped again afterwards)."""
    plain = _plain(text)
    if len(plain) <= limit or "\n" in plain:
        return text
    return html.escape(plain[:max(limit - 1, 1)] + "…", quote=False)


def wrap(text: str, chars: int, max_lines: int = 3) -> tuple[str, int]:
    """Plotly text wrapped at spaces to lines of at most `chars`; (text, number of lines)."""
    lines: list[str] = []
    for para in _plain(text).split("\n"):
        line = ""
        for word in para.split(" "):
            if line and len(line) + 1 + len(word) > chars:
                lines.append(line)
                line = word
            else:
                line = f"{line} {word}" if line else word
        lines.append(line)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][:max(chars - 1, 1)] + "…"
    lines = [ln if len(ln) <= chars else ln[:max(chars - 1, 1)] + "…" for ln in lines]
    return "<br>".join(html.escape(ln, quote=False) for ln in lines), len(lines)


def set_aspect(fig: go.Figure, value: float, narrow: float | None = None) -> go.Figure:
    """Record the height/width ratio a figure family prefers on paper (read by `aspect`), and
    optionally another for narrow exports (a column or half a page), where text takes more room."""
    meta = fig.layout.meta if isinstance(fig.layout.meta, dict) else {}
    extra = {ASPECT_KEY + "_narrow": float(narrow)} if narrow is not None else {}
    fig.update_layout(meta={**meta, ASPECT_KEY: float(value), **extra})
    return fig


def aspect(fig: go.Figure, width_px: float | None = None, default: float = 0.75) -> float:
    """Height/width for export at `width_px`: the family's recorded aspect (its narrow one below
    NARROW_PX), else its own width and height, else `default`."""
    meta = fig.layout.meta
    if isinstance(meta, dict):
        if width_px is not None and width_px < NARROW_PX and ASPECT_KEY + "_narrow" in meta:
            return float(meta[ASPECT_KEY + "_narrow"])
        if ASPECT_KEY in meta:
            return float(meta[ASPECT_KEY])
    w, h = fig.layout.width, fig.layout.height
    if w and h:
        return min(max(h / w, 0.3), 1.6)
    return default


def _sizes(width: int) -> dict:
    narrow = width < NARROW_PX
    return dict(tick=8 if narrow else 9, text=9 if narrow else 10, title=10 if narrow else 11,
                chars=8 if narrow else 12)


def _axes(fig: go.Figure) -> list[tuple[str, object]]:
    layout = fig.layout
    return [(name, layout[name]) for name in layout if re.fullmatch(r"[xy]axis\d*", name)]


def _axis_ref(name: str) -> str:
    """'xaxis3' -> 'x3' (the name traces use)."""
    return name[0] + name[5:]


def _categories(fig: go.Figure, ref: str) -> list:
    """Category labels a trace puts on axis `ref` (strings in its x or y), in order."""
    letter, out = ref[0], []
    for trace in fig.data:
        if (getattr(trace, f"{letter}axis", None) or letter) != ref:
            continue
        values = getattr(trace, letter, None)
        if values is None or getattr(trace, "type", "") == "heatmap" and trace.z is None:
            continue
        for v in values:
            if isinstance(v, str) and v not in out:
                out.append(v)
    return out


def _numeric_span(fig: go.Figure, ref: str) -> int:
    """How many integer ticks a dtick=1 axis shows (the data's span)."""
    letter, lo, hi = ref[0], math.inf, -math.inf
    for trace in fig.data:
        if (getattr(trace, f"{letter}axis", None) or letter) != ref:
            continue
        values = getattr(trace, letter, None)
        for v in (() if values is None else values):
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                lo, hi = min(lo, v), max(hi, v)
    return int(hi - lo) + 1 if hi >= lo else 0


def _labels(fig: go.Figure, name: str, axis, chars: int) -> list[str]:
    """The tick labels an axis will show (abbreviated), or a stand-in for numbers."""
    if axis.showticklabels is False:
        return []
    if axis.tickmode == "array" and axis.ticktext:
        return [cut(t, chars) for t in axis.ticktext]
    cats = _categories(fig, _axis_ref(name)) if axis.type != "linear" else []
    return [cut(c, chars) for c in cats] or ["0.000"]


def _has_colorbar(fig: go.Figure) -> bool:
    for trace in fig.data:
        if trace.type in ("heatmap", "histogram2d", "contour") and trace.showscale is not False:
            return True
        marker = getattr(trace, "marker", None)
        if marker is not None and getattr(marker, "showscale", None):
            return True
    return False


def _plot_area(fig: go.Figure, width: int, height: int, sz: dict, top: int) -> tuple[float, float]:
    """Estimated (width, height) px of the plot area once labels, titles and colour bars are in."""
    left = right = bottom = 10.0
    for name, axis in _axes(fig):
        labels = _labels(fig, name, axis, sz["chars"])
        widest = max((text_width(t, sz["tick"]) for t in labels), default=0) + 6
        titled = 1.4 * sz["text"] if axis.title and axis.title.text else 0
        if name[0] == "y":
            extent = widest + titled
            if axis.side == "right":
                right = max(right, 10 + extent)
            else:
                left = max(left, 10 + extent)
        else:
            angle = abs(axis.tickangle or 0)
            label = widest * math.sin(math.radians(angle)) if angle else sz["tick"] * LINE_EM
            bottom = max(bottom, 10 + label + titled)
    if _has_colorbar(fig):
        right += 55
    legend = fig.layout.legend
    if legend.orientation != "h" and any(t.name and t.showlegend is not False for t in fig.data):
        names = [t.name for t in fig.data if t.name and t.showlegend is not False]
        right += max(text_width(n, sz["tick"]) for n in names) + 40
    elif legend.orientation == "h" and (legend.y is None or legend.y < 0):
        bottom += _legend_rows(fig, width, sz) * LEGEND_ROW_PX
    return max(width - left - right, 40.0), max(height - top - bottom, 40.0)


def _axis_length(axis, area: tuple[float, float], letter: str) -> float:
    """Estimated px of the axis: its domain share of the plot area."""
    lo, hi = axis.domain or (0, 1)
    return (hi - lo) * (area[0] if letter == "x" else area[1])


def _fit_axis(fig: go.Figure, name: str, axis, area: tuple[float, float], sz: dict) -> None:
    """Abbreviate and thin one axis's tick labels so that neighbours do not overlap."""
    letter, ref = name[0], _axis_ref(name)
    patch: dict = dict(tickfont=dict(size=sz["tick"]), automargin=True)
    if axis.title and axis.title.text:
        patch["title"] = dict(text=cut(axis.title.text, 40), font=dict(size=sz["text"]))
    if axis.showticklabels is False:
        fig.layout[name].update(patch)
        return
    length = _axis_length(axis, area, letter)
    if axis.tickmode == "array" and axis.ticktext:
        vals, texts = list(axis.tickvals), [cut(t, sz["chars"]) for t in axis.ticktext]
    elif axis.type != "linear" and (cats := _categories(fig, ref)):
        vals, texts = cats, [cut(c, sz["chars"]) for c in cats]
    elif axis.dtick is not None and float(axis.dtick) == 1 and (n := _numeric_span(fig, ref)):
        step = _step(n, [str(n)], letter, axis.tickangle, length, sz, patch)
        patch["dtick"] = step
        fig.layout[name].update(patch)
        return
    else:
        # numbers: plotly picks the values; at most as many as fit at ~2.5 label heights apart
        if letter == "y" and axis.nticks is None:
            patch["nticks"] = max(2, int(length / (2.5 * sz["tick"] * LINE_EM)))
        fig.layout[name].update(patch)
        return
    step = _step(len(vals), texts, letter, axis.tickangle, length, sz, patch)
    patch.update(tickmode="array", tickvals=vals[::step], ticktext=texts[::step])
    fig.layout[name].update(patch)


def _step(n: int, texts: list[str], letter: str, angle, length: float, sz: dict,
          patch: dict) -> int:
    """Every how many ticks to label; may set an x axis's labels upright in `patch`."""
    line = sz["tick"] * LINE_EM + 2
    widest = max((text_width(t, sz["tick"]) for t in texts), default=0) + 6
    if letter == "y":
        extent = line
    elif angle in (None, 0) and widest * n <= length:
        patch["tickangle"] = 0
        extent = widest
    else:
        a = math.radians(abs(angle)) if angle not in (None, 0) else math.pi / 2
        patch.setdefault("tickangle", angle if angle not in (None, 0) else -90)
        extent = min(widest / max(math.cos(a), 1e-6), line / max(math.sin(a), 1e-6))
    return max(1, math.ceil(n * extent / max(length, 1.0)))


def _fit_title(fig: go.Figure, width: int, height: int, sz: dict) -> int:
    """Wrap the title to the width; return the px it takes."""
    text = fig.layout.title.text
    if not text:
        return 0
    chars = max(int((width - 16) / (sz["title"] * CHAR_EM)), 8)
    text, lines = wrap(text, chars)
    fig.update_layout(title=dict(text=text, font=dict(size=sz["title"]), x=0.01, xanchor="left",
                                 # a multi-line title's first line sits on y (its tspans
                                 # drop the 0.7em drop of a single line): move it down
                                 xref="container", yanchor="top",
                                 y=1 - (6 + (0.8 * sz["title"] if lines > 1 else 0)) / height,
                                 yref="container"))
    return int(lines * sz["title"] * LINE_EM + 12)


def _title_room(fig: go.Figure, ann, width: int) -> float:
    """Px a subplot title centred at paper x may span: up to the next title on its row (centre
    to centre) and twice its distance to the page edge (the margins add a little)."""
    row = [o.x for o in fig.layout.annotations
           if o is not ann and o.x is not None and o.y == ann.y and o.xref == "paper"]
    share = min([abs(x - ann.x) for x in row] + [2 * (ann.x + 0.04), 2 * (1.04 - ann.x)])
    return share * 0.85 * width - 8


def _fit_annotations(fig: go.Figure, width: int, sz: dict) -> int:
    """Subplot titles and notes to the text size, cut to their panel; px they need on top."""
    top = 0
    for ann in fig.layout.annotations:
        size = min(ann.font.size or sz["text"], sz["text"])
        ann.font.size = size
        if ann.text and ann.xref == "paper" and ann.x is not None:
            room = _title_room(fig, ann, width)
            if "<br>" not in ann.text:
                ann.text = cut(ann.text, max(int(room / (size * CHAR_EM)), 4))
            if ann.yref == "paper" and (ann.y or 0) >= 0.99:
                top = max(top, int(size * LINE_EM + 4))
    return top


def _fit_cells(fig: go.Figure, area: tuple[float, float]) -> None:
    """Heatmap cell text no larger than its cell; none when it would be unreadably small."""
    for trace in fig.data:
        if trace.type != "heatmap" or trace.text is None or not trace.texttemplate:
            continue
        rows = len(trace.text)
        cols = max((len(r) for r in trace.text), default=0)
        if not rows or not cols:
            continue
        xa = fig.layout["xaxis" + (trace.xaxis or "x")[1:]]
        ya = fig.layout["yaxis" + (trace.yaxis or "y")[1:]]
        cell_w = _axis_length(xa, area, "x") / cols - 2
        cell_h = _axis_length(ya, area, "y") / rows - 2
        cells = [str(t) for r in trace.text for t in r]
        chars = max((len(ln) for t in cells for ln in _plain(t).split("\n")), default=1)
        lines = max((_plain(t).count("\n") + 1 for t in cells), default=1)
        size = min(trace.textfont.size or 10, cell_w / (chars * CHAR_EM), cell_h / (lines * LINE_EM))
        if size < 5:
            trace.texttemplate = ""          # the hover keeps it; colour and legend remain
        else:
            trace.textfont.size = math.floor(size * 2) / 2


def _legend_names(fig: go.Figure) -> list[str]:
    return [t.name for t in fig.data if t.name and t.showlegend is not False]


def _legend_rows(fig: go.Figure, width: int, sz: dict) -> int:
    """Rows a horizontal legend wraps into at this width (entries as wide as the widest)."""
    names = _legend_names(fig)
    entry = max((text_width(n, sz["tick"]) for n in names), default=0) + 48
    per_row = max(int((width - 16) // entry), 1)
    return max(-(-len(names) // per_row), 1)


def _fit_legend(fig: go.Figure, width: int, height: int, sz: dict, title_px: int) -> int:
    """Legend text to the tick size; in a narrow figure a legend on the right or below moves
    under the title, in rows (the page has no room beside the plot). Returns the px it takes."""
    legend = fig.layout.legend
    fig.update_layout(legend=dict(font=dict(size=sz["tick"])))
    below = legend.orientation == "h" and (legend.y is None or legend.y < 0)
    if not _legend_names(fig) or fig.layout.showlegend is False or width >= NARROW_PX or not (
            legend.orientation != "h" or below):
        return 0
    # plotly adds the symbol (40 px) to entrywidth: all entries as wide as the widest text
    entry = max(text_width(n, sz["tick"]) for n in _legend_names(fig)) + 8
    fig.update_layout(legend=dict(orientation="h", x=0, xanchor="left", xref="paper",
                                  entrywidth=entry, entrywidthmode="pixels",
                                  y=1 - (title_px + 2) / height, yanchor="top", yref="container"))
    return _legend_rows(fig, width, sz) * LEGEND_ROW_PX + 4


def fit(fig: go.Figure, width: int, height: int) -> go.Figure:
    """Lay `fig` out in place for `width` x `height` CSS px (see the module doc); return it."""
    sz = _sizes(width)
    # a page cannot slide or click: sliders and menus go (the title names the frame shown)
    fig.layout.sliders, fig.layout.updatemenus = (), ()
    fig.update_layout(width=width, height=height, autosize=False, font=dict(size=sz["text"]))
    title_px = _fit_title(fig, width, height, sz)
    top = title_px + _fit_legend(fig, width, height, sz, title_px)
    top += _fit_annotations(fig, width, sz)
    area = _plot_area(fig, width, height, sz, max(top, 12))
    for name, axis in _axes(fig):
        _fit_axis(fig, name, axis, area, sz)
    _fit_cells(fig, area)
    for trace in fig.data:
        if trace.type in ("heatmap", "histogram2d", "contour"):
            target = trace.colorbar
        elif getattr(trace, "marker", None) is not None and getattr(trace.marker, "showscale", None):
            target = trace.marker.colorbar
        else:
            continue
        target.update(thickness=8, tickfont=dict(size=sz["tick"]))
        if target.title and target.title.text:
            target.title.text = cut(target.title.text, sz["chars"] + 2)
            target.title.font.size = sz["tick"]
    fig.update_layout(margin=dict(l=8, r=8, b=8, t=max(top, 12), pad=0))
    return fig


__all__ = ["fit", "aspect", "set_aspect", "text_width", "cut", "wrap", "NARROW_PX"]
