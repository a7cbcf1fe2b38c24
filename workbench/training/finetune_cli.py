"""`workbench finetune DATA [--model demo] [--epochs 3 ...]`: every FineTuneConfig field as a flag.

Flags are generated from the dataclass (`--learning-rate` for `learning_rate`, help text from the
field), so the CLI and the library can never disagree; the command prints the run's folder and
its final metrics. `workbench finetune --resume ID` alone continues a run with its own model,
data and config.
"""

from __future__ import annotations

from .configs import FineTuneConfig
from .flags import add_config_flags, add_run_flags, given_fields, print_run


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "finetune", help="fine-tune a model for classification/regression on a table",
        description="Fine-tune MODEL on DATA (CSV/TSV/JSONL path, GLUE-style folder or a datasets "
                    "name). Several GPUs: `accelerate launch -m workbench finetune ...`.")
    p.add_argument("data", nargs="?", default=None,
                   help="training data: a CSV/TSV/JSONL file, a folder with train/dev files, or a "
                        "datasets name such as glue/sst2 (with --resume: the run's own)")
    p.add_argument("--model", default=None,
                   help="model name, folder or run (default: demo; with --resume: the run's own)")
    add_run_flags(p)
    add_config_flags(p, FineTuneConfig)
    p.set_defaults(func=_cmd_finetune)


def config_from_args(args) -> FineTuneConfig | dict | None:
    """The FineTuneConfig the flags describe; on --resume, the dict of changed fields (or None)."""
    given = given_fields(args)
    if args.resume:
        return given or None
    return FineTuneConfig.from_dict(given)


def _cmd_finetune(args) -> int:
    from ..errors import InputError
    from .finetune import finetune

    if args.data is None and not args.resume:
        raise InputError("pass DATA (a CSV/TSV/JSONL file, a folder or a datasets name), or "
                         "--resume ID to continue a run")
    model = args.model or (None if args.resume else "demo")
    run = finetune(model, args.data, config=config_from_args(args), resume=args.resume,
                   name=args.name, root=args.root, progress=not args.no_progress,
                   restart=args.restart)
    if run is None:  # a non-main process of a multi-GPU launch
        return 0
    print_run(run)
    return 0
