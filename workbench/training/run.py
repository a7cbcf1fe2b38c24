"""`Run`: the user-facing handle on one training run (pretraining or fine-tuning).

A thin wrapper over `store.RunFolder` (the folder is the truth): identity, config, metrics as a
DataFrame, summary, checkpoints, and `run.load()` to open any checkpoint with `wb.load` in every
analysis. `Run.open("runs/2026...-pretrain-ab12cd")` or `Run.open(run_id)` finds an existing one.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..store import RunFolder, RunStore, is_run_folder


class Run:
    """One run folder: `.path`, `.id`, `.name`, `.kind`, `.status`, `.config`, `.metrics()`, ..."""

    def __init__(self, folder: RunFolder | str | Path):
        if not isinstance(folder, RunFolder):
            path = Path(folder)
            if not is_run_folder(path):
                raise InputError(f"{path} is not a run folder (no run.json); "
                                 "pass a folder under your runs root or a run id (see wb.runs())")
            folder = RunFolder(path)
        self.folder = folder

    @classmethod
    def create(cls, kind: str, config: dict, *, name: str | None = None,
               base_model: str | None = None, root: str | Path | None = None) -> "Run":
        """Make a new run folder under `root` (default `$WORKBENCH_RUNS` or ./runs)."""
        return cls(RunStore(root).create(kind, name, config, base_model))

    @classmethod
    def open(cls, path_or_id: "str | Path | Run | RunFolder", root: str | Path | None = None) -> "Run":
        """A run from its folder, its id or name in the store at `root`, or a Run/RunFolder."""
        if isinstance(path_or_id, Run):
            return path_or_id
        if isinstance(path_or_id, RunFolder):
            return cls(path_or_id)
        path = Path(str(path_or_id)).expanduser()
        if is_run_folder(path):
            return cls(RunFolder(path))
        return cls(RunStore(root).get(str(path_or_id)))

    # identity -------------------------------------------------------------------------------
    @property
    def path(self) -> Path:
        return self.folder.path

    @property
    def id(self) -> str:
        return self.folder.id

    @property
    def info(self) -> dict:
        return self.folder.info

    @property
    def name(self) -> str:
        return self.info.get("name", self.id)

    @property
    def kind(self) -> str:
        return self.info.get("kind", "unknown")

    @property
    def status(self) -> str:
        return self.folder.status

    @property
    def config(self) -> dict:
        return self.folder.config()

    # results ---------------------------------------------------------------------------------
    def metrics(self, kind: str | None = None):
        """All logged metrics as a DataFrame (one row per step/eval event); `kind` filters."""
        frame = self.folder.metrics()
        if kind is not None and len(frame) and "kind" in frame.columns:
            frame = frame[frame["kind"] == kind].reset_index(drop=True)
        return frame

    @property
    def summary(self) -> dict:
        return self.folder.summary()

    def checkpoints(self) -> list[tuple[int, Path]]:
        """Complete checkpoints as (step, folder), oldest first."""
        return self.folder.checkpoints()

    def checkpoint(self, step: int | None = None) -> Path:
        """The folder of the checkpoint at `step` (default: the latest)."""
        ckpts = self.checkpoints()
        if not ckpts:
            raise InputError(f"run {self.id} has no complete checkpoint yet; wait for the first "
                             "checkpoint or resume the run")
        if step is None:
            return ckpts[-1][1]
        for s, folder in ckpts:
            if s == step:
                return folder
        raise InputError(f"run {self.id} has no checkpoint at step {step}; "
                         f"available steps: {[s for s, _ in ckpts]}")

    @property
    def best_step(self) -> int | None:
        """Step of the best evaluation of a finished fine-tuning run (kept on disk), else None."""
        best = self.folder.best_checkpoint()
        return None if best is None else self.summary["best_step"]

    def load(self, step: int | str | None = None, **load_kwargs):
        """Open a checkpoint as an `LM` with `wb.load`: `step=None` gives the best one (the best
        evaluation of a finished fine-tuning run), else the latest; `"latest"` or a step number
        picks one."""
        from ..models import load

        if step is None:
            step = self.best_step
        return load(self.checkpoint(None if step == "latest" else step), **load_kwargs)

    # state changes used by training loops ---------------------------------------------------------
    def set_status(self, status: str, **fields) -> None:
        """Update run.json (status and any extra fields) and refresh the store index."""
        self.folder.update_info(status=status, **fields)
        self._reindex()

    def write_summary(self, summary: dict) -> None:
        self.folder.write_summary(summary)
        self._reindex()

    def _reindex(self) -> None:
        try:
            RunStore(self.path.parent).index(self.folder)
        except Exception:  # noqa: BLE001 - the index is a cache; the folder is the truth
            pass

    def __eq__(self, other) -> bool:
        return isinstance(other, Run) and self.path.resolve() == other.path.resolve()

    def __hash__(self) -> int:
        return hash(str(self.path.resolve()))

    def __repr__(self) -> str:
        ckpts = self.checkpoints()
        last = f", last_checkpoint={ckpts[-1][0]}" if ckpts else ""
        return (f"Run(id={self.id!r}, name={self.name!r}, kind={self.kind!r}, "
                f"status={self.status!r}{last})")
