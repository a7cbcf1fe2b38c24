"""One generator of command-line flags for `workbench pretrain` and `workbench finetune`.

Every field of a config dataclass becomes a flag (`learning_rate` -> `--learning-rate`) with the
field's help text and default from `field(metadata={"help": ...})`, its type from the annotation
and its choices where the field lists them; booleans get `--x/--no-x`. Both commands share the
run flags (`--resume ID`, `--root`, `--name`, `--no-progress`) and print the same ending. Imports
no torch: `workbench --help` stays fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from .configs import field_types

PREFIX = "cfg_"  # argparse dest of a config field: cfg_<name>


def add_config_flags(parser: argparse.ArgumentParser, cls, skip: tuple[str, ...] = ()) -> None:
    """One flag per field of `cls` (except `skip`); unset flags stay None (= not given)."""
    group = parser.add_argument_group(f"{cls.__name__} fields")
    types = field_types(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        base, _ = types[f.name]
        flag, dest = "--" + f.name.replace("_", "-"), PREFIX + f.name
        old = [o for o, new in getattr(cls, "renamed_fields", {}).items() if new == f.name]
        if old and base is not bool:  # the old spelling still works for one release, and says so
            group.add_argument(*("--" + o.replace("_", "-") for o in old), dest=dest, type=base,
                               default=None, help=argparse.SUPPRESS, action=_DeprecatedFlag,
                               new_flag=flag)
        text = f"{f.metadata.get('help', f.name.replace('_', ' '))} (default: {f.default})"
        if base is bool:
            group.add_argument(flag, dest=dest, default=None, help=text,
                               action=argparse.BooleanOptionalAction)
        else:
            group.add_argument(flag, dest=dest, type=base, default=None, help=text,
                               metavar=base.__name__.upper(), choices=f.metadata.get("choices"))


class _DeprecatedFlag(argparse.Action):
    """An old flag name (`--lr`): stores into the new field and warns once on stderr."""

    def __init__(self, *args, new_flag: str, **kwargs):
        self.new_flag = new_flag
        super().__init__(*args, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"warning: {option_string} is deprecated, use {self.new_flag} (the old flag works "
              "until the next release)", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_run_flags(parser: argparse.ArgumentParser) -> None:
    """The flags both training commands share."""
    parser.add_argument("--resume", default=None, metavar="ID",
                        help="run id, unique name or folder to continue (from its newest "
                             "checkpoint, or from step 0 if it was killed before one); the run's "
                             "config, model and data are reused, so `--resume ID` alone works")
    parser.add_argument("--restart", action="store_true",
                        help="with --resume: start the run over from step 0 when none of its "
                             "checkpoints can resume it (damaged, or weights only)")
    parser.add_argument("--root", default=None,
                        help="run store folder (default: $WORKBENCH_RUNS or the default runs folder)")
    parser.add_argument("--name", default=None, help="run name (default: the run id)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def given_fields(args: argparse.Namespace) -> dict:
    """The config fields set on the command line."""
    return {k[len(PREFIX):]: v for k, v in vars(args).items()
            if k.startswith(PREFIX) and v is not None}


def print_run(run) -> None:
    """The ending both commands print: id, status, folder and the summary as JSON."""
    print(f"run {run.id}: {run.status}\nfolder: {run.path}")
    print(json.dumps(run.summary, indent=2, sort_keys=True, default=str))
    print(f"open it in the analyses with wb.load({str(run.path)!r})")
