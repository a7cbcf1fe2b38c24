"""benchmarks/eval_blimp.py on a hand-made BLiMP-format zip: per-paradigm accuracy, minicons beside it."""

from __future__ import annotations

import importlib.util
import json
import zipfile
from pathlib import Path

import pytest

import workbench as wb

PAIRS = {
    "agreement_a": [("The keys are here.", "The keys is here."),
                    ("The dog sleeps.", "The dog sleep."), ("Cats run.", "Cats runs.")],
    "plural_b": [("Two cats sat.", "Two cat sat."), ("Many books fell.", "Many book fell.")],
}


def _eval_module():
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "eval_blimp.py"
    spec = importlib.util.spec_from_file_location("eval_blimp", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def blimp_zip(tmp_path):
    path = tmp_path / "blimp.zip"
    with zipfile.ZipFile(path, "w") as z:
        for uid, pairs in PAIRS.items():
            lines = [json.dumps({"sentence_good": g, "sentence_bad": b, "UID": uid}) for g, b in pairs]
            z.writestr(f"data/{uid}.jsonl", "\n".join(lines))
        z.writestr("__MACOSX/data/._agreement_a.jsonl", b"\x00\x05\x16\x07\xb0 mac metadata")
    return path


def test_eval_blimp_matches_compare_pairs_and_minicons(tiny_lm, blimp_zip):
    ev = _eval_module()
    pairs = ev.read_blimp(blimp_zip)
    assert sorted(pairs.paradigm.unique()) == sorted(PAIRS) and len(pairs) == 5
    table = ev.evaluate(tiny_lm, blimp_zip).set_index("paradigm")
    for uid, ps in PAIRS.items():
        ref = wb.compare_pairs(tiny_lm, [g for g, _ in ps], [b for _, b in ps])
        assert table.loc[uid, "ours"] == pytest.approx(ref.correct.mean())
        assert table.loc[uid, "n"] == len(ps)
    assert table.loc["overall", "n"] == 5
    assert (table["agree"] == 1.0).all()
    assert table["minicons"].to_numpy() == pytest.approx(table["ours"].to_numpy())
    assert (table["model"] == tiny_lm.name).all() and (table["seconds_ours"] > 0).all()
    assert table["seconds_minicons"].nunique() == 1 and table["seconds_minicons"].iloc[0] > 0
    short = ev.read_blimp(blimp_zip, max_per_paradigm=1, paradigms=["plural_b"])
    assert list(short.sentence_good) == ["Two cats sat."]
    with pytest.raises(ValueError, match="unknown paradigm"):
        ev.read_blimp(blimp_zip, paradigms=["nope"])
    with pytest.raises(FileNotFoundError, match="--blimp"):
        ev.read_blimp(blimp_zip.parent / "missing.zip")
