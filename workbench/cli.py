"""Command-line interface: `workbench demo | lab | bench | pretrain | finetune`.

Flags map onto the library's dataclass configs (one generator, `training.flags`); no analysis
logic lives here, and nothing here imports torch, so `workbench --help` answers at once.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _cmd_demo(args) -> int:
    from .demo import run_demo

    out = run_demo(Path(args.out), model=args.model, quick=args.quick)
    print(f"\nDemo outputs are in: {out.resolve()}")
    return 0


def lab_command(repo: Path = REPO) -> list[str]:
    """`jupyter lab` on `repo`/notebooks, after writing the .ipynb the .py sources pair with.

    Kernels start in `repo`/outputs/notebooks, not beside the notebooks: every file a notebook
    or a widget's Export button writes to a relative path lands there (ignored by git, like the
    run store `repo`/runs), so using the notebooks leaves the tracked tree unchanged."""
    from .notebook_runner import sync_notebooks

    notebooks, work = repo / "notebooks", repo / "outputs" / "notebooks"
    sync_notebooks(notebooks)
    work.mkdir(parents=True, exist_ok=True)
    return [sys.executable, "-m", "jupyter", "lab", f"--ServerApp.root_dir={notebooks}",
            f"--MappingKernelManager.root_dir={work}"]


def _cmd_lab(args) -> int:
    cmd = lab_command()
    if args.port:
        cmd.append(f"--port={args.port}")
    return subprocess.call(cmd)


def _cmd_bench(args) -> int:
    bench_dir = REPO / "benchmarks"
    if not (bench_dir / "runner.py").exists():
        print("benchmarks/ not found: `workbench bench` runs from a clone of the repository",
              file=sys.stderr)
        return 2
    sys.path.insert(0, str(bench_dir))
    import runner  # benchmarks/runner.py

    return runner.main(only=args.only, quick=args.quick)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="workbench",
        description="RoBERTa Workbench: attention, masked-token probing, pretraining, fine-tuning.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("demo", help="run the guided analyses on the embedded default model")
    p.add_argument("--out", default="outputs/demo", help="output folder (default: outputs/demo)")
    p.add_argument("--model", default="demo", help="model name or folder (default: demo)")
    p.add_argument("--quick", action="store_true", help="smaller inputs, for a smoke test")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("lab", help="open JupyterLab on notebooks/")
    p.add_argument("--port", type=int, default=None)
    p.set_defaults(func=_cmd_lab)

    p = sub.add_parser("bench", help="run benchmarks/ and print ours vs peer ratios")
    p.add_argument("--only", nargs="*", default=None, help="benchmark names to run")
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    p.set_defaults(func=_cmd_bench)

    # the training commands: flags generated from the config dataclasses (no torch import)
    from .training import finetune_cli, pretrain_cli

    pretrain_cli.register(sub)
    finetune_cli.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    from .errors import WorkbenchError

    try:
        return int(args.func(args) or 0)
    except WorkbenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
