"""`workbench finetune DATA [--model demo] [--epochs 3 ...]`: every FineTuneConfig field as a flag.

Flags are generated from the dataclass (`--learning-rate` for `learning_rate`), so the CLI and the
library can never disagree; the command prints the run's folder and its final metrics.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from .finetune import FineTuneConfig

_HELP = {
    "text_column": "column holding the (first) sentence",
    "pair_column": "column holding the second sentence of a pair",
    "label_column": "column holding the label",
    "task": "auto, classification or regression",
    "max_steps": "optimiser steps (overrides --epochs)",
    "eval_every": "steps between evaluations (0 = each epoch)",
    "checkpoint_every": "steps between checkpoints (0 = at each evaluation)",
    "early_stopping_patience": "evaluations without improvement before stopping (0 = off)",
    "precision": "auto, fp32 or bf16",
    "grad_accumulation": "micro-batches per optimiser step",
}


def _flag_type(field: dataclasses.Field):
    kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", "str")
    for name, typ in (("int", int), ("float", float)):
        if kind.startswith(name):
            return typ
    return str


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "finetune", help="fine-tune a model for classification/regression on a table",
        description="Fine-tune MODEL on DATA (CSV/TSV/JSONL path, GLUE-style folder or a datasets "
                    "name). Several GPUs: `accelerate launch -m workbench finetune ...`.")
    p.add_argument("data", help="training data: a CSV/TSV/JSONL file, a folder with train/dev "
                                "files, or a datasets name such as glue/sst2")
    p.add_argument("--model", default="demo", help="model name, folder or run (default: demo)")
    p.add_argument("--resume", default=None, help="run id or folder to continue from its last "
                                                   "checkpoint (the run's config is reused)")
    p.add_argument("--name", default=None, help="run name (default: the run id)")
    p.add_argument("--root", default=None, help="run store folder (default $WORKBENCH_RUNS or ./runs)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    defaults = FineTuneConfig()
    group = p.add_argument_group("FineTuneConfig fields")
    for field in dataclasses.fields(FineTuneConfig):
        default = getattr(defaults, field.name)
        group.add_argument(f"--{field.name.replace('_', '-')}", dest=f"cfg_{field.name}",
                           type=_flag_type(field), default=None,
                           metavar=_flag_type(field).__name__.upper(),
                           help=f"{_HELP.get(field.name, field.name.replace('_', ' '))} "
                                f"(default: {default})")
    p.set_defaults(func=_cmd_finetune)


def config_from_args(args) -> FineTuneConfig | None:
    """The FineTuneConfig the flags describe; None when resuming with no field flags."""
    given = {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg_") and v is not None}
    if args.resume and not given:
        return None
    if args.resume:
        from .run import Run

        base = FineTuneConfig.from_dict(Run.open(args.resume, root=args.root).config)
        return base.replace(**given)
    return FineTuneConfig.from_dict(given)


def _cmd_finetune(args) -> int:
    from .finetune import finetune

    run = finetune(None if args.resume else args.model, args.data, config=config_from_args(args),
                   resume=args.resume, name=args.name, root=args.root,
                   progress=not args.no_progress)
    if run is None:  # a non-main process of a multi-GPU launch
        return 0
    print(f"run {run.id}: {run.status}\nfolder: {run.path}")
    print(json.dumps(run.summary, indent=2, sort_keys=True, default=str))
    print(f"open it in the analyses with wb.load({str(run.path)!r})")
    return 0
