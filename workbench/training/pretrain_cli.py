"""`workbench pretrain`: command-line flags mapped one-to-one onto `PretrainConfig` fields.

    workbench pretrain                               # the demo corpus, the 'mini' preset
    workbench pretrain notes/ --preset small --masking static --static-copies 10
    workbench pretrain --preset demo --minutes 60    # rebuild the embedded default model (CPU: slow)
    workbench pretrain --resume runs/2026...-pretrain-ab12cd

Every PretrainConfig field is a flag (`--hidden-size 256`, `--whole-word`, ...); flags given on
the command line override the preset. No training logic lives here.
"""

from __future__ import annotations

import dataclasses
import typing


def _field_type(field: dataclasses.Field):
    hint = typing.get_type_hints(_config_class()).get(field.name)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def _config_class():
    from .pretrain import PretrainConfig

    return PretrainConfig


def register(subparsers) -> None:
    from .pretrain import PRESETS

    p = subparsers.add_parser("pretrain", help="pretrain a RoBERTa-style masked LM from scratch",
                              description=__doc__,
                              formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("corpus", nargs="?", default="demo",
                   help="text file, folder of .txt files, packed-corpus folder, or 'demo' (default)")
    p.add_argument("--preset", default=None, choices=sorted(PRESETS),
                   help="model size and training settings to start from (default: mini)")
    p.add_argument("--minutes", type=float, default=None, help="training time budget (sets time_budget_s)")
    p.add_argument("--resume", default=None, help="run folder or id to continue")
    p.add_argument("--runs", default=None, help="run store root (default: $WORKBENCH_RUNS or ./runs)")
    p.add_argument("--name", default=None, help="run name")
    p.add_argument("--export", default=None, help="after training, save the model to this folder")
    group = p.add_argument_group("PretrainConfig fields (override the preset)")
    for field in dataclasses.fields(_config_class()):
        if field.name == "preset":
            continue
        flag = "--" + field.name.replace("_", "-")
        kind = _field_type(field)
        if kind is bool:
            group.add_argument(flag, dest=field.name, default=None,
                               action=__import__("argparse").BooleanOptionalAction)
        else:
            group.add_argument(flag, dest=field.name, type=kind, default=None, metavar=kind.__name__.upper())
    p.set_defaults(func=_cmd_pretrain)


def _cmd_pretrain(args) -> int:
    from .pretrain import PretrainConfig, pretrain

    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(PretrainConfig)
                 if f.name != "preset" and getattr(args, f.name, None) is not None}
    if args.minutes is not None:
        overrides["time_budget_s"] = args.minutes * 60
    if args.resume:  # the run's own config, with only the flags given here changed
        config = overrides or None
    else:
        config = PretrainConfig.from_preset(args.preset or "mini", **overrides)
    run = pretrain(None if args.resume else args.corpus, config=config, resume=args.resume,
                   root=args.runs, name=args.name, progress=True)
    print(f"\n{run}\nsummary: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                          for k, v in run.summary.items()))
    if args.export:
        lm = run.load(device="cpu")
        lm.model.save_pretrained(args.export)
        lm.tokenizer.save_pretrained(args.export)
        print(f"exported to {args.export}")
    return 0
