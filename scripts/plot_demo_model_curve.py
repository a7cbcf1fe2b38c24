"""Draw the embedded default model's held-out curve from its training record (docs/demo_model_curve.png).

    .venv/bin/python scripts/plot_demo_model_curve.py [--out docs/demo_model_curve.png]

Masked-token top-1 accuracy and MLM loss on held-out documents against tokens seen, with the
unigram baseline, read from `data/demo-model/workbench_record.json` (nothing is recomputed).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import pandas as pd  # noqa: E402
import plotly.graph_objects as go  # noqa: E402
from plotly.subplots import make_subplots  # noqa: E402

from workbench.figures import CATEGORICAL, apply_theme, export  # noqa: E402
from workbench.resources import demo_model_dir  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(REPO / "docs" / "demo_model_curve.png"))
    args = ap.parse_args(argv)
    record = json.loads((demo_model_dir() / "workbench_record.json").read_text())
    curve = pd.DataFrame(record["eval_curve"])
    tokens = curve["tokens_seen"] / 1e6                                     # millions
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.14,
                        subplot_titles=["held-out masked top-1", "held-out MLM loss"])
    fig.add_trace(go.Scatter(x=tokens, y=curve["eval_accuracy"], mode="lines+markers",
                             name="demo model", line_color=CATEGORICAL[0]), row=1, col=1)
    fig.add_hline(y=record["heldout"]["unigram_accuracy"], line_dash="dot", row=1, col=1,
                  annotation_text="unigram baseline", annotation_position="top right")
    fig.add_trace(go.Scatter(x=tokens, y=curve["eval_loss"], mode="lines+markers",
                             showlegend=False, line_color=CATEGORICAL[0]), row=1, col=2)
    fig.update_xaxes(title_text="tokens seen (millions)")
    hw = record["hardware"]
    fig.update_layout(showlegend=False, title=(
        f"6x384 RoBERTa, {record['tokens_seen'] / 1e6:.0f} M tokens in "
        f"{record['train_time_s'] / 60:.1f} min on {hw.get('gpu') or 'CPU'}"))
    fig.update_layout(margin=dict(t=80))
    path = export(apply_theme(fig), args.out, width="page", aspect=0.42, scale=2)
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
