"""Run every benchmark in this folder and print one table: measure, ours, peer, ratio.

Each `bench_*.py` module exposes `run(quick: bool = False) -> list[dict]` with rows
{benchmark, measure, unit, ours, peer, peer_name, higher_is_better, notes}; ours and the peer are
measured in the same run on the same machine (in the same process, except where a shared cache
or the order would favour one side: bench_finetune and bench_pretrain run each side in fresh
processes, alternating the order, and report medians). Results go to
`benchmarks/results/<timestamp>.json` (and `latest.json`), or into `--out FOLDER` (e.g.
`benchmarks/results/h200-2026-12-02/`), with the machine's description and its load average.

    python benchmarks/runner.py [--quick] [--only attention_views pll] [--out FOLDER]
    make bench            # same, through `workbench bench`
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def discover(only: list[str] | None = None) -> list[Path]:
    files = sorted(HERE.glob("bench_*.py"))
    if only:
        files = [f for f in files if f.stem.removeprefix("bench_") in only or f.stem in only]
    return files


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ratio(row: dict) -> float | None:
    """How many times better ours is than the peer (>1 means ours wins)."""
    ours, peer = row.get("ours"), row.get("peer")
    if not ours or not peer:
        return None
    return ours / peer if row.get("higher_is_better", True) else peer / ours


def format_table(rows: list[dict]) -> str:
    head = ("benchmark", "measure", "unit", "ours", "peer", "peer_name", "ours/peer x")
    lines = [head]
    for r in rows:
        x = ratio(r)
        lines.append((r.get("benchmark", ""), r.get("measure", ""), r.get("unit", ""),
                      _fmt(r.get("ours")), _fmt(r.get("peer")), r.get("peer_name", ""),
                      f"{x:.2f}" if x is not None else "-"))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(line, widths)) for line in lines)


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def main(only: list[str] | None = None, quick: bool = False, out_dir: str | None = None) -> int:
    sys.path.insert(0, str(HERE.parent))
    from workbench.device import describe_machine

    rows, failures = [], []
    for path in discover(only):
        name = path.stem.removeprefix("bench_")
        print(f"[bench] {name} ...", flush=True)
        t0 = time.perf_counter()
        try:
            got = _load(path).run(quick=quick)
        except Exception:  # noqa: BLE001 - one broken benchmark must not hide the others
            failures.append(name)
            traceback.print_exc()
            continue
        for r in got:
            r.setdefault("benchmark", name)
            r["ratio"] = ratio(r)
        rows += got
        print(f"[bench] {name} done in {time.perf_counter() - t0:.1f}s", flush=True)
    print()
    print(format_table(rows))
    folder = Path(out_dir) if out_dir else RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "quick": quick,
              "machine": describe_machine(), "load_average": _load_average(), "rows": rows,
              "failed": failures}
    stamp = time.strftime("%Y%m%d-%H%M%S")
    suffix = ("-quick" if quick else "") + ("-" + "-".join(only) if only and out_dir else "")
    out = folder / f"{stamp}{suffix}.json"
    out.write_text(json.dumps(record, indent=2, default=str))
    if not quick and not out_dir:
        (RESULTS / "latest.json").write_text(json.dumps(record, indent=2, default=str))
    print(f"\nwritten: {out}")
    return 1 if failures else 0


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--out", default=None, help="folder for the JSON (default benchmarks/results)")
    a = ap.parse_args()
    raise SystemExit(main(only=a.only, quick=a.quick, out_dir=a.out))
