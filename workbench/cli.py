"""Command-line interface: `workbench demo | lab | notebooks | bench | pretrain | finetune`.

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


def _cmd_notebooks(args) -> int:
    from .resources import copy_notebooks

    written = copy_notebooks(args.dir)
    print(f"{len(written)} guided notebooks in {Path(args.dir).resolve()} (existing files kept)")
    if args.open:
        return _open_lab(Path(args.dir), args.port)
    return 0


def _open_lab(folder: Path, port: int | None) -> int:
    cmd = [sys.executable, "-m", "jupyter", "lab", f"--notebook-dir={folder}"]
    if port:
        cmd.append(f"--port={port}")
    return subprocess.call(cmd)


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
    from .resources import copy_notebooks, source_checkout

    checkout = source_checkout()
    if checkout is None:
        # an installed package: the notebooks are copied to a folder of the user's (never edited
        # in site-packages), then opened there
        folder = Path(args.dir or "workbench-notebooks")
        written = copy_notebooks(folder)
        print(f"No clone of the repository here: {len(written)} guided notebooks copied to "
              f"{folder.resolve()} (existing files kept); opening JupyterLab there.")
        return _open_lab(folder, args.port)
    cmd = lab_command(checkout)
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

    p = sub.add_parser("lab", help="open JupyterLab on the guided notebooks (a clone's notebooks/, "
                                   "else a copy made in --dir)")
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--dir", default=None,
                   help="where to copy the notebooks when there is no clone (default: ./workbench-notebooks)")
    p.set_defaults(func=_cmd_lab)

    p = sub.add_parser("notebooks", help="copy the guided notebooks into DIR (paired .py/.ipynb)")
    p.add_argument("dir", metavar="DIR", help="folder to copy them into (created if missing)")
    p.add_argument("--open", action="store_true", help="then open JupyterLab there")
    p.add_argument("--port", type=int, default=None)
    p.set_defaults(func=_cmd_notebooks)

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
    except KeyboardInterrupt as err:
        print(_run_note(err), file=sys.stderr)
        return 130
    except OSError as err:  # an I/O fault outside the store's own checks: one paragraph, no trace
        print(f"error: {type(err).__name__}: {err}{_run_note(err)}", file=sys.stderr)
        return 2


def _run_note(err: BaseException) -> str:
    """What happened to the run an exception ended (`workbench_run`, set by the training spine):
    the whole message for a Ctrl-C, else the note that follows the error ('' without a run)."""
    run, ctrl_c = getattr(err, "workbench_run", None), isinstance(err, KeyboardInterrupt)
    if not run:
        return "interrupted (Ctrl-C) before training began: no run was changed." if ctrl_c else ""
    kind, run_id, step = run
    if ctrl_c:
        return (f"interrupted (Ctrl-C) at step {step}: run {run_id} is marked 'interrupted'; "
                f"nothing after its last checkpoint is kept. Continue it with `workbench {kind} "
                f"--resume {run_id}`.")
    return (f". Run {run_id} stopped at step {step}; its run.json records the error and its "
            f"last checkpoint is intact: once the cause is fixed, `workbench {kind} --resume "
            f"{run_id}` continues it")
