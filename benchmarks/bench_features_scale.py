"""Features at corpus scale: `wb.features(..., out=FOLDER)` memory, throughput and agreement.

On the demo model (`wb.load("demo")`, 6 layers x 384) and GLUE SST-2 training sentences
(/work/shared/data/sst2/train.tsv), torch on 1 thread (the machine is shared):

1. Peak RSS (the child's ru_maxrss from `os.wait4`) and texts/s of a fresh process running
   `features(texts[:n], layers=[0, 3, 6], pool=POOL, out=FOLDER)` at two sizes: host memory must
   not grow with n. Peer: the in-memory `features(..., cache=False)` at the larger size, which
   holds the whole array. pool="tokens" by default (one row per token: the array is large enough
   to see); `--pool cls` for one row per text.
2. On a subset that fits (`--subset` texts, pool="cls", every layer): the streamed consumers
   against the in-memory path on the same vectors: CKA (max |difference| over the layer x layer
   table, goal <= 1e-4) and the SST-2 probe's test accuracy per layer (goal: equal).

    python benchmarks/bench_features_scale.py [--sizes 2000,8000] [--subset 2000] [--pool tokens]
                                              [--memory-size 8000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling helper below

from fresh_process import load_average  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SST2 = Path("/work/shared/data/sst2/train.tsv")

CHILD = """
import json, sys, time, torch
torch.set_num_threads(1)
import pandas as pd
import workbench as wb
mode, n, pool, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
texts = pd.read_csv(sys.argv[5], sep="\\t")["sentence"].tolist()[:n]
lm = wb.load("demo", device="cpu")
start = time.perf_counter()
kw = dict(out=out) if mode == "out" else dict(cache=False)
f = wb.features(lm, texts, layers=[0, 3, 6], pool=pool, progress=False, **kw)
from workbench.training.token_store import chunked_rows  # plain reads: no mapped pages in RSS
checksum = float(sum(float(b.sum()) for b in chunked_rows(f.array)))
print(json.dumps({"seconds": time.perf_counter() - start, "rows": len(f),
                  "array_mb": f.array.nbytes / 2**20, "checksum": checksum}))
"""


def fresh(mode: str, n: int, pool: str, folder: Path) -> dict:
    """Run one `features` call in a fresh process; its JSON line plus peak RSS in MB."""
    script = folder / "child.py"
    script.write_text(CHILD)
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1",
               WORKBENCH_CACHE=str(folder / "cache"))
    proc = subprocess.Popen([sys.executable, str(script), mode, str(n), pool,
                             str(folder / f"out-{pool}-{n}"), str(SST2)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    line = proc.stdout.read().strip().splitlines()[-1]
    assert status == 0, f"child failed: {line}"
    row = json.loads(line)
    row.update(mode=mode, n=n, pool=pool, peak_rss_mb=usage.ru_maxrss / 1024,
               texts_per_s=n / row["seconds"])
    return row


def agreement(n: int, folder: Path) -> dict:
    """Streamed CKA and probe vs the in-memory ones on the same n texts (pool='cls')."""
    import pandas as pd
    import torch

    import workbench as wb

    torch.set_num_threads(1)
    data = pd.read_csv(SST2, sep="\t").iloc[:n]
    texts, labels = data["sentence"].tolist(), data["label"].to_numpy()
    lm = wb.load("demo", device="cpu")
    mem = wb.features(lm, texts, layers="all", pool="cls", cache=False, progress=False)
    disk = wb.features(lm, texts, layers="all", pool="cls", out=folder / "subset", progress=False)
    t0 = time.perf_counter()
    cka_mem = wb.similarity(mem, max_rows=None)["value"].to_numpy()
    t1 = time.perf_counter()
    cka_disk = wb.similarity(disk, max_rows=None)["value"].to_numpy()
    t2 = time.perf_counter()
    p_mem = wb.linear_probe(mem, labels, control=False)
    t3 = time.perf_counter()
    p_disk = wb.linear_probe(disk, labels, control=False)
    t4 = time.perf_counter()
    acc = lambda p: p[p["metric"] == "accuracy"]["value"].round(6).tolist()  # noqa: E731
    return {"n": n, "max_vector_diff": float(np.abs(np.asarray(disk.array) - mem.array).max()),
            "cka_max_abs_diff": float(np.nanmax(np.abs(cka_mem - cka_disk))),
            "cka_nan_cells_agree": bool((np.isnan(cka_mem) == np.isnan(cka_disk)).all()),
            "probe_acc_memory": acc(p_mem), "probe_acc_streamed": acc(p_disk),
            "probe_equal": acc(p_mem) == acc(p_disk),
            "seconds": {"cka_memory": t1 - t0, "cka_streamed": t2 - t1,
                        "probe_memory": t3 - t2, "probe_streamed": t4 - t3}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="2000,8000")
    ap.add_argument("--subset", type=int, default=2000)
    ap.add_argument("--pool", default="tokens")
    ap.add_argument("--memory-size", type=int, default=None, help="the in-memory peer's n")
    ap.add_argument("--log", default=None)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = {"load_before": load_average()}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rows["runs"] = [fresh("out", n, args.pool, folder) for n in sizes]
        rows["runs"].append(fresh("memory", args.memory_size or sizes[-1], args.pool, folder))
        for r in rows["runs"]:
            print(json.dumps(r), flush=True)
        rows["agreement"] = agreement(args.subset, folder)
        print(json.dumps(rows["agreement"]), flush=True)
    rows["load_after"] = load_average()
    print(rows["load_before"], "->", rows["load_after"])
    if args.log:
        Path(args.log).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
