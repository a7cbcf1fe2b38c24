"""SST-2 evaluation: fine-tune a model with `wb.finetune` and report accuracy on GLUE's dev set.

Reads a GLUE-style folder of TSV files (`sentence`, `label`): `train.tsv` to train on, `dev.tsv`
for validation during training, and `test.tsv`, the 872 sentences of GLUE's official SST-2 dev set
that papers report on. The accuracy is printed beside roberta-base's published 94.8 (SST-2 dev,
the fairseq RoBERTa README's GLUE table; Liu et al. 2019's Table 5 reports only RoBERTa-large,
96.4) for whatever model it is given: the embedded default here,
roberta-base on a GPU machine. Default data folder: ../shared/data/sst2 beside the repository.

    python benchmarks/eval_sst2.py --model demo --max-examples 5000 --epochs 1
    python benchmarks/eval_sst2.py --model roberta-base --epochs 3 --batch-size 32 --learning-rate 2e-5  # GPU
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

PUBLISHED = {"roberta-base": 94.8, "roberta-large": 96.4}
DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sst2"


def evaluate_sst2(model: str = "demo", data: str | Path = DEFAULT_DATA, *,
                  max_examples: int | None = None, max_validation: int | None = 2000,
                  max_steps: int | None = None, epochs: int = 1, batch_size: int = 32,
                  learning_rate: float = 2e-5, max_length: int = 128, seed: int = 0,
                  root: str | None = None) -> dict:
    """Fine-tune `model` on SST-2 and return accuracy and MCC on test.tsv, with the run's path."""
    import workbench as wb
    from workbench.training.tables import read_table

    data = Path(data)
    for name in ("train.tsv", "dev.tsv", "test.tsv"):
        if not (data / name).is_file():
            raise SystemExit(f"{data / name} not found: pass --data FOLDER with SST-2's "
                             "train.tsv, dev.tsv and test.tsv (sentence<TAB>label)")
    train = read_table(data / "train.tsv")
    if max_examples:
        train = train.sample(n=min(max_examples, len(train)), random_state=seed)
    dev = read_table(data / "dev.tsv")
    if max_validation:
        dev = dev.sample(n=min(max_validation, len(dev)), random_state=seed)
    cfg = wb.FineTuneConfig(text_column="sentence", label_column="label", epochs=epochs,
                            max_steps=max_steps, batch_size=batch_size,
                            learning_rate=learning_rate, max_length=max_length, seed=seed)
    started = time.time()
    run = wb.finetune(model, {"train": train, "validation": dev}, config=cfg,
                      name=f"sst2-{Path(str(model)).name}", root=root)
    lm = wb.load(run)
    metrics, matrix = wb.evaluate_classifier(lm, data / "test.tsv", text_column="sentence",
                                             max_length=max_length)
    return {"model": str(model), "run": str(run.path), "train_examples": len(train),
            "steps": run.summary["steps"], "wall_s": round(time.time() - started, 1),
            "test_accuracy": metrics["accuracy"], "test_mcc": metrics["mcc"],
            "confusion": matrix.to_dict(), "published_roberta_base": PUBLISHED["roberta-base"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="demo", help="model name, folder or run (default: demo)")
    p.add_argument("--data", default=str(DEFAULT_DATA), help="folder with SST-2 TSV files")
    p.add_argument("--max-examples", type=int, default=None, help="train on a random subset")
    p.add_argument("--max-validation", type=int, default=2000, help="dev.tsv rows for validation")
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--learning-rate", type=float, default=2e-5)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--root", default=None, help="run store folder")
    p.add_argument("--json", default=None, help="also write the result to this JSON file")
    a = p.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    result = evaluate_sst2(a.model, a.data, max_examples=a.max_examples,
                           max_validation=a.max_validation, max_steps=a.max_steps, epochs=a.epochs,
                           batch_size=a.batch_size, learning_rate=a.learning_rate, max_length=a.max_length,
                           seed=a.seed, root=a.root)
    print(f"\nSST-2 (GLUE dev, 872 sentences) accuracy of {result['model']} fine-tuned for "
          f"{result['steps']} steps on {result['train_examples']} examples: "
          f"{100 * result['test_accuracy']:.1f}   (roberta-base, published: "
          f"{result['published_roberta_base']})   MCC {result['test_mcc']:.3f}, "
          f"{result['wall_s']} s, run {result['run']}")
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
