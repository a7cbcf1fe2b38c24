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
                                              [--memory-size 8000] [--data sentences-100k]

`--data sentences-100k` runs on 100,000+ English sentences from the offline data: every SST-2
sentence (train, dev, test; labelled first, so the agreement subset is SST-2's), then UD
English-EWT and BLiMP's acceptable sentences (label -1), less those over the demo model's 256
tokens (a few URLs in EWT), all but the first 2,000 shuffled (seed 0: every prefix has the same
mix of lengths); `--data FILE.tsv` any TSV with a
`sentence` column (and `label` for the probe).
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
SHARED = Path("/work/shared/data")
SST2 = SHARED / "sst2/train.tsv"

CHILD = """
import json, sys, time, torch
torch.set_num_threads(1)
import pandas as pd
import workbench as wb
mode, n, pool, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
texts = pd.read_csv(sys.argv[5], sep="\\t")["sentence"].tolist()[:n]
lm = wb.load(sys.argv[6], device="cpu")
start = time.perf_counter()
kw = dict(out=out) if mode == "out" else dict(cache=False)
L = lm.num_layers  # the demo model: layers 0, 3, 6
f = wb.features(lm, texts, layers=[0, L // 2, L], pool=pool, progress=False, **kw)
from workbench.training.token_store import chunked_rows  # plain reads: no mapped pages in RSS
checksum = float(sum(float(b.sum()) for b in chunked_rows(f.array)))
print(json.dumps({"seconds": time.perf_counter() - start, "rows": len(f),
                  "array_mb": f.array.nbytes / 2**20, "checksum": checksum}))
"""


def fresh(mode: str, n: int, pool: str, folder: Path, data: Path = SST2, model: str = "demo"
          ) -> dict:
    """Run one `features` call in a fresh process; its JSON line plus peak RSS in MB."""
    script = folder / "child.py"
    script.write_text(CHILD)
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1",
               WORKBENCH_CACHE=str(folder / "cache"))
    proc = subprocess.Popen([sys.executable, str(script), mode, str(n), pool,
                             str(folder / f"out-{pool}-{n}"), str(data), model],
                            env=env, stdout=subprocess.PIPE, stderr=open(folder / "err.txt", "w"),
                            text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    lines = proc.stdout.read().strip().splitlines()
    assert status == 0 and lines, f"child failed: {(folder / 'err.txt').read_text()[-2000:]}"
    row = json.loads(lines[-1])
    row.update(mode=mode, n=n, pool=pool, peak_rss_mb=usage.ru_maxrss / 1024,
               texts_per_s=n / row["seconds"])
    return row


def agreement(n: int, folder: Path, data_path: Path = SST2, model: str = "demo") -> dict:
    """Streamed CKA and probe vs the in-memory ones on the same n texts (pool='cls')."""
    import pandas as pd
    import torch

    import workbench as wb

    torch.set_num_threads(1)
    data = pd.read_csv(data_path, sep="\t").iloc[:n]
    texts, labels = data["sentence"].tolist(), data["label"].to_numpy()
    lm = wb.load(model, device="cpu")
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


def sentences_100k(path: Path, max_tokens: int = 256) -> Path:
    """Write the `--data sentences-100k` TSV (module docstring) to `path`, texts of at most
    `max_tokens` tokens of the demo model; return it."""
    import gzip

    import pandas as pd

    from eval_blimp import read_blimp

    parts = [pd.read_csv(SHARED / "sst2/train.tsv", sep="\t")[["sentence", "label"]]]
    for split in ("dev", "test"):
        frame = pd.read_csv(SHARED / f"sst2/{split}.tsv", sep="\t")
        frame["label"] = frame["label"] if "label" in frame else -1
        parts.append(frame[["sentence", "label"]])
    more = []
    for split in ("train", "dev", "test"):
        with gzip.open(SHARED / f"ud_ewt/en_ewt-ud-{split}.conllu.gz", "rt", encoding="utf-8") as f:
            more += [line[len("# text = "):].strip() for line in f if line.startswith("# text = ")]
    more += read_blimp(SHARED / "blimp/BLiMP.zip")["sentence_good"].tolist()
    parts.append(pd.DataFrame({"sentence": more, "label": -1}))
    frame = pd.concat(parts, ignore_index=True)
    frame = frame[frame["sentence"].astype(str).str.strip() != ""]
    from workbench.resources import demo_model_dir  # analyses refuse, never cut, a longer text
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(demo_model_dir())
    fits = [len(ids) <= max_tokens for ids in tok(frame["sentence"].astype(str).tolist())["input_ids"]]
    frame = frame[fits]
    # the first 2,000 (SST-2, labelled: the agreement subset) stay first; the rest is shuffled so
    # that any first n texts have the same length mix: a batch's activations grow with its
    # longest text, and EWT's and BLiMP's (up to 223 tokens) would otherwise all come late
    rest = frame.iloc[2000:].sample(frac=1.0, random_state=0)
    pd.concat([frame.iloc[:2000], rest]).to_csv(path, sep="\t", index=False)
    return path


def _quick_data(folder: Path) -> tuple[Path, str]:
    """Quick mode: the tiny test model and 60 generated labelled sentences (no shared data)."""
    import pandas as pd

    from workbench.testing import make_tiny_model, offline_text

    model = str(make_tiny_model(folder / "tiny"))
    texts = [p[:80] for p in offline_text(20_000)[:60]]
    path = folder / "quick.tsv"
    pd.DataFrame({"sentence": texts, "label": [int("the" in t) for t in texts]}).to_csv(
        path, sep="\t", index=False)
    return path, model


def rows_of(result: dict) -> list[dict]:
    """The runner's rows: RSS growth, RSS and speed against the in-memory path, agreement."""
    out = [r for r in result["runs"] if r["mode"] == "out"]
    mem = next(r for r in result["runs"] if r["mode"] == "memory")
    same = next((r for r in out if r["n"] == mem["n"]), out[-1])
    agree = result["agreement"]
    return [
        {"measure": f"peak RSS of features(out=) on {out[-1]['n']} texts", "unit": "MB",
         "ours": out[-1]["peak_rss_mb"], "peer": out[0]["peak_rss_mb"],
         "peer_name": f"the same on {out[0]['n']} texts", "higher_is_better": False},
        {"measure": f"peak RSS on {mem['n']} texts", "unit": "MB", "ours": same["peak_rss_mb"],
         "peer": mem["peak_rss_mb"], "peer_name": "in-memory features(cache=False)",
         "higher_is_better": False},
        {"measure": f"texts/s on {mem['n']} texts (one run each)", "unit": "texts/s",
         "ours": same["texts_per_s"], "peer": mem["texts_per_s"],
         "peer_name": "in-memory features(cache=False)", "higher_is_better": True},
        {"measure": f"CKA max |streamed - in memory|, {agree['n']} texts", "unit": "abs",
         "ours": agree["cka_max_abs_diff"], "peer": None, "peer_name": "goal <= 1e-4",
         "higher_is_better": False},
        {"measure": "probe layers with the in-memory accuracy", "unit": "layers",
         "ours": sum(a == b for a, b in zip(agree["probe_acc_memory"], agree["probe_acc_streamed"])),
         "peer": len(agree["probe_acc_memory"]), "peer_name": "layers probed",
         "higher_is_better": True},
    ]


def measure(folder: Path, sizes, subset: int, pool: str, memory_size: int | None,
            quick: bool = False, data: Path = SST2) -> dict:
    data, model = _quick_data(folder) if quick else (data, "demo")
    result = {"load_before": load_average()}
    result["runs"] = [fresh("out", n, pool, folder, data, model) for n in sizes]
    result["runs"].append(fresh("memory", memory_size or sizes[-1], pool, folder, data, model))
    result["agreement"] = agreement(subset, folder, data, model)
    result["load_after"] = load_average()
    return result


def run(quick: bool = False) -> list[dict]:
    """Quick: the tiny model, 30 generated texts (two processes); full: demo model, SST-2."""
    with tempfile.TemporaryDirectory() as tmp:
        if quick:
            return rows_of(measure(Path(tmp), [30], 40, "tokens", 30, quick=True))
        return rows_of(measure(Path(tmp), [2000, 8000], 2000, "tokens", None))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="2000,8000")
    ap.add_argument("--subset", type=int, default=2000)
    ap.add_argument("--pool", default="tokens")
    ap.add_argument("--memory-size", type=int, default=None, help="the in-memory peer's n")
    ap.add_argument("--data", default=str(SST2), help="a TSV, or sentences-100k")
    ap.add_argument("--max-tokens", type=int, default=256,
                    help="sentences-100k: drop longer texts (a batch's activations grow with its "
                         "longest text: equal caps compare sizes fairly)")
    ap.add_argument("--log", default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = sentences_100k(Path(tmp) / "sentences-100k.tsv", args.max_tokens) \
            if args.data == "sentences-100k" \
            else Path(args.data)
        result = measure(Path(tmp), [int(s) for s in args.sizes.split(",")], args.subset,
                         args.pool, args.memory_size, data=data)
    for r in result["runs"]:
        print(json.dumps(r), flush=True)
    print(json.dumps(result["agreement"]), flush=True)
    print(result["load_before"], "->", result["load_after"])
    if args.log:
        Path(args.log).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
