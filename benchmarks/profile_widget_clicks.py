"""Wall and CPU seconds of the widget clicks issue 28.6 named, on the embedded demo model.

HeadExplorer on 200 texts: construction, a head click, "open in the attention views", a head
click with the views open; QKAtlas on 100 texts (atlas given): a head click and two query clicks.
Prints one line per action with the load average, since a shared CPU changes wall times a lot.
Not a peer comparison (so not a bench_*.py); the pass counts are tested in
tests/test_widget_passes.py.

    python benchmarks/profile_widget_clicks.py
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def timed(label: str, action):
    wall, cpu = time.perf_counter(), time.process_time()
    out = action()
    print(f"{label:40s} {time.perf_counter() - wall:7.2f} s wall {time.process_time() - cpu:7.2f} "
          f"CPU-s  (load average {os.getloadavg()[0]:.1f})", flush=True)
    return out


def main() -> None:
    import torch

    import workbench as wb

    lm = wb.load("demo", device="cpu")
    corpus = wb.sentiment_demo(n=200)["text"].tolist()
    print(f"demo model, {torch.get_num_threads()} torch threads, {os.cpu_count()} cores")
    heads = timed("HeadExplorer(lm, 200 texts)", lambda: wb.widgets.HeadExplorer(lm, corpus))
    timed("  click head (1, 0)", lambda: heads.select(1, 0))
    timed("  open in the attention views", heads.open_views)
    timed("  click head (2, 1), views open", lambda: heads.select(2, 1))
    atlas = timed("qk_atlas(lm, 100 texts)", lambda: wb.qk_atlas(lm, corpus[:100]))
    qk = timed("QKAtlas(lm, 100 texts, atlas=atlas)",
               lambda: wb.widgets.QKAtlas(lm, corpus[:100], atlas=atlas))
    timed("  click head (1, 0)", lambda: qk.select_head(1, 0))
    timed("  click query (3, 3)", lambda: qk.select_query(3, 3))
    timed("  click query (5, 2), another sentence", lambda: qk.select_query(5, 2))
    timed("  click query (5, 4), same sentence", lambda: qk.select_query(5, 4))


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
