"""What the benchmarks that run each side in a fresh process share (bench_finetune, bench_pretrain):
run one side and read its result, the last line of its stdout that is a JSON object; and the load
average, written into the notes because wall-clock ratios on a shared CPU depend on it."""

from __future__ import annotations

import json
import os
import subprocess


def side_result(cmd: list[str], env: dict, what: str) -> dict:
    """Run `cmd` (one benchmark side) and return its JSON result; RuntimeError with the end of
    its stderr when it fails or prints none."""
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{what} failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1])


def load_average() -> str:
    """'load average 1.2 1.3 1.3' (1, 5 and 15 minutes), or 'load average unknown'."""
    try:
        return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "load average unknown"
