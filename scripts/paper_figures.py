"""The README's paper figures: a layer x head heatmap and the head-role grid at column width.

    .venv/bin/python scripts/paper_figures.py [--model demo] [--n 200] [--out outputs/paper_figures]

Computes the head statistics (Clark et al. 2019) and the head roles (`wb.head_roles`) of
`--model` on the first `--n` sentences of the offline sentiment table, exports both at column
width (3.3 in) as vector PDF into `--out`, and renders the same laid-out figures as PNG into
docs/ (through kaleido, the renderer that wrote the PDF, at 3x: 288 dpi) for the README.
Needs a Chrome/Chromium for kaleido (`python -m workbench.browser`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import workbench as wb  # noqa: E402
from workbench.plots.head_roles import role_grid  # noqa: E402
from workbench.plots.heads import head_heatmap  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="demo")
    ap.add_argument("--n", type=int, default=200, help="sentences (offline sentiment table)")
    ap.add_argument("--out", default=str(REPO / "outputs" / "paper_figures"))
    ap.add_argument("--docs", default=str(REPO / "docs"))
    args = ap.parse_args(argv)
    lm = wb.load(args.model)
    texts = wb.sentiment_demo(n=args.n)["text"].tolist()
    stats = wb.head_stats(lm, texts, progress=False)
    roles = wb.head_roles(lm, texts, progress=False)
    figures = {
        "paper_head_heatmap": head_heatmap(
            stats, "attn_prev",
            title=f"Attention to the previous token: {lm.name}, {len(texts)} sentences"),
        "paper_role_grid": role_grid(
            roles, title=f"Head roles: {lm.name}, {len(texts)} sentences"),
    }
    for name, fig in figures.items():
        pdf = wb.figures.export(fig, Path(args.out) / f"{name}.pdf", width="column")
        png = wb.figures.export(fig, Path(args.docs) / f"{name}.png", width="column", scale=3)
        print(pdf, png)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
