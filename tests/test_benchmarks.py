"""Every benchmark runs in quick mode and returns well-formed rows (no timing is asserted).

The quick modes that start fresh processes or train (15-30 s each, about 100 s together) are
marked slow to keep the default run under 10 minutes; CI (`.ci/run`) runs them after it."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
FILES = sorted(BENCH.glob("bench_*.py"))
SLOW = {"bench_corpus_memory", "bench_features_scale", "bench_finetune", "bench_pretrain", "bench_pll"}
KEYS = {"measure", "unit", "ours", "peer", "peer_name", "higher_is_better"}


@pytest.mark.parametrize("path", [pytest.param(f, marks=[pytest.mark.slow] if f.stem in SLOW else [])
                                  for f in FILES], ids=[f.stem for f in FILES])
def test_benchmark_quick_mode_returns_rows(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if getattr(module, "NEEDS_BROWSER", False):
        from workbench.testing import browser_for_tests

        browser_for_tests()  # skips with the reason (fails in CI's full run) without a browser
    rows = module.run(quick=True)
    assert rows, f"{path.name} returned no rows"
    for row in rows:
        assert KEYS <= set(row), f"{path.name}: row lacks {KEYS - set(row)}"
        for k in ("ours", "peer"):
            v = row[k]
            assert v is None or (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0)


def test_runner_formats_ratios():
    spec = importlib.util.spec_from_file_location("runner", BENCH / "runner.py")
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    rows = [{"measure": "speed", "unit": "x/s", "ours": 30.0, "peer": 10.0, "peer_name": "p",
             "higher_is_better": True},
            {"measure": "time", "unit": "s", "ours": 2.0, "peer": 8.0, "peer_name": "p",
             "higher_is_better": False}]
    assert runner.ratio(rows[0]) == 3.0 and runner.ratio(rows[1]) == 4.0
    assert "3.00" in runner.format_table(rows) and "4.00" in runner.format_table(rows)


def test_finetune_profiler_reports_both_loops(capsys):
    """benchmarks/profile_finetune.py (the diagnosis behind the GPU fine-tuning note) still runs."""
    spec = importlib.util.spec_from_file_location("profile_finetune", BENCH / "profile_finetune.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # it finds bench_finetune beside itself
    assert module.main(["--quick", "--steps", "2", "--rows", "3"]) == 0
    out = capsys.readouterr().out
    assert "===== wb.finetune:" in out and "===== Trainer:" in out and "ms per step" in out
