"""BLiMP minimal-pair accuracy of a masked LM, per paradigm and overall, with minicons beside it.

    python benchmarks/eval_blimp.py --model demo --max-per-paradigm 50
    python benchmarks/eval_blimp.py --model path/to/run --blimp my/blimp/folder --paradigms anaphor_gender_agreement

BLiMP (Warstadt et al. 2020; CC BY 4.0) is read from a zip or a folder of `<paradigm>.jsonl` files
(fields `sentence_good`, `sentence_bad`, `UID`); the default is `../shared/data/blimp/BLiMP.zip`
when it exists. A pair counts as correct when the good sentence's total PLL (`wb.compare_pairs`,
Salazar et al. 2020) is higher. minicons' `MaskedLMScorer.sequence_score(reduction=sum)` scores
the same pairs with the same model object in the same run, so the two figures sit side by side
(and should agree up to float noise; `agree` is the share of pairs both decide alike).
"""

from __future__ import annotations

import argparse
import copy
import json
import time
import zipfile
from pathlib import Path

import pandas as pd

DEFAULT_BLIMP = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "blimp" / "BLiMP.zip"


def read_blimp(path: str | Path | None = None, *, max_per_paradigm: int | None = None,
               paradigms: list[str] | None = None) -> pd.DataFrame:
    """Pairs from a BLiMP zip or folder: columns paradigm, sentence_good, sentence_bad."""
    path = Path(path) if path is not None else DEFAULT_BLIMP
    if not path.exists():
        raise FileNotFoundError(
            f"no BLiMP data at {path}: pass --blimp with a zip or folder of BLiMP .jsonl files "
            "(github.com/alexwarstadt/blimp, data/)")
    files: dict[str, str] = {}
    if path.is_dir():
        for f in sorted(path.rglob("*.jsonl")):
            if not f.name.startswith("._"):
                files[f.stem] = f.read_text()
    else:
        with zipfile.ZipFile(path) as z:
            for name in sorted(z.namelist()):
                # skip macOS metadata (__MACOSX/, ._name.jsonl) that zips made on a Mac carry
                if name.endswith(".jsonl") and "__MACOSX" not in name and \
                        not Path(name).name.startswith("._"):
                    files[Path(name).stem] = z.read(name).decode()
    if paradigms:
        unknown = sorted(set(paradigms) - set(files))
        if unknown:
            raise ValueError(f"unknown paradigm(s) {unknown}; {len(files)} available, e.g. "
                             f"{sorted(files)[:3]}")
        files = {k: files[k] for k in paradigms}
    rows = []
    for stem, text in files.items():
        lines = [json.loads(line) for line in text.splitlines() if line.strip()]
        for rec in lines[:max_per_paradigm]:
            rows.append({"paradigm": rec.get("UID", stem), "sentence_good": rec["sentence_good"],
                         "sentence_bad": rec["sentence_bad"]})
    if not rows:
        raise ValueError(f"{path} holds no BLiMP pairs")
    return pd.DataFrame(rows)


def _minicons_correct(lm, pairs: pd.DataFrame, batch: int = 16) -> list[bool]:
    from minicons import scorer

    tok = copy.copy(lm.tokenizer)
    tok.batch_encode_plus = tok.__call__  # minicons 0.3.39 calls an API transformers 5 removed
    mc = scorer.MaskedLMScorer(lm.model, str(lm.device), tokenizer=tok)
    good, bad = list(pairs.sentence_good), list(pairs.sentence_bad)

    def total(sents):
        out = []
        for i in range(0, len(sents), batch):
            out += mc.sequence_score(sents[i:i + batch], reduction=lambda x: x.sum(0).item())
        return out

    return [g > b for g, b in zip(total(good), total(bad))]


def evaluate(model, path=None, *, max_per_paradigm: int | None = None, paradigms=None,
             with_minicons: bool = True, device: str = "auto") -> pd.DataFrame:
    """Accuracy per paradigm (plus an 'overall' row) for `model` (a name/path or an LM).
    Columns: paradigm, n, ours, minicons and agree (with minicons), model, seconds_ours and
    seconds_minicons (each scorer's time over all pairs, the same on every row)."""
    import workbench as wb

    lm = model if isinstance(model, wb.LM) else wb.load(model, device=device)
    pairs = read_blimp(path, max_per_paradigm=max_per_paradigm, paradigms=paradigms)
    t0 = time.perf_counter()
    ours = wb.compare_pairs(lm, pairs.rename(columns={"paradigm": "group"}))
    t_ours = time.perf_counter() - t0
    pairs["ours"] = list(ours.correct)
    if with_minicons:
        t0 = time.perf_counter()
        pairs["minicons"] = _minicons_correct(lm, pairs)
    t_minicons = time.perf_counter() - t0 if with_minicons else None
    cols = ["ours"] + (["minicons"] if with_minicons else [])
    table = pairs.groupby("paradigm", sort=True)[cols].mean()
    table.insert(0, "n", pairs.groupby("paradigm").size())
    overall = pairs[cols].mean().to_frame("overall").T
    overall.insert(0, "n", len(pairs))
    table = pd.concat([table, overall])
    if with_minicons:
        agree = (pairs["ours"] == pairs["minicons"]).groupby(pairs["paradigm"]).mean()
        table["agree"] = list(agree.reindex(table.index[:-1])) + [
            float((pairs["ours"] == pairs["minicons"]).mean())]
    table.index.name = "paradigm"
    table["model"], table["seconds_ours"], table["seconds_minicons"] = lm.name, t_ours, t_minicons
    return table.reset_index()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="demo", help="'demo', a hub id, a folder or a run folder")
    ap.add_argument("--blimp", default=None, help=f"BLiMP zip or folder (default {DEFAULT_BLIMP})")
    ap.add_argument("--max-per-paradigm", type=int, default=None, help="pairs per paradigm")
    ap.add_argument("--paradigms", default=None, help="comma-separated paradigm names")
    ap.add_argument("--no-minicons", action="store_true", help="skip minicons' figure")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", default=None, help="also write the table to this JSON file")
    args = ap.parse_args(argv)
    table = evaluate(args.model, args.blimp, max_per_paradigm=args.max_per_paradigm,
                     paradigms=args.paradigms.split(",") if args.paradigms else None,
                     with_minicons=not args.no_minicons, device=args.device)
    with pd.option_context("display.max_rows", None, "display.width", 120):
        print(f"BLiMP accuracy of {table['model'].iloc[0]} (total PLL, good > bad)")
        print(table.drop(columns=["model", "seconds_ours", "seconds_minicons"]).to_string(
            index=False, float_format=lambda v: f"{v:.3f}"))
    t_o, t_m = table["seconds_ours"].iloc[0], table["seconds_minicons"].iloc[0]
    print(f"time: workbench {t_o:.1f} s" + (f", minicons {t_m:.1f} s ({t_m / t_o:.2f}x)" if t_m else ""))
    if args.json:
        Path(args.json).write_text(table.to_json(orient="records", indent=2))


if __name__ == "__main__":
    main()
