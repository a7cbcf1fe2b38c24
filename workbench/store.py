"""The run store: self-describing run folders indexed by a small SQLite file.

A run folder is the truth; the SQLite index is a cache that `RunStore.reindex()` rebuilds from the
folders, so a torn index never loses a run. Layout of one run::

    <root>/<run_id>/
        run.json            identity, kind, status, base model, timestamps (atomic rewrite)
        config.json         the training config (`to_dict` of its dataclass)
        metrics.jsonl       one JSON object per line, appended and fsync'd; a torn last line is skipped
        checkpoints/step-00000100/   a `save_pretrained` folder (+ training state), renamed into
                                     place only once complete, so a kill never leaves half a checkpoint
        summary.json        final metrics (when the run ended)

Writes are crash-safe: whole files go through write-temp-then-`os.replace`; the index uses WAL mode
and a busy timeout so two runs writing at once do not corrupt it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import pandas as pd

from .errors import InputError, ModelNotFoundError

RUN_FILE = "run.json"
CHECKPOINTS = "checkpoints"
_STEP_DIR = re.compile(r"^step-(\d+)$")


def default_root() -> Path:
    """`$WORKBENCH_RUNS` if set, else `./runs` under the current directory."""
    return Path(os.environ.get("WORKBENCH_RUNS", Path.cwd() / "runs")).expanduser()


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` so that readers see the old or the new file, never a torn one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str))


def read_jsonl(path: Path) -> list[dict]:
    """Read a JSON-lines file, skipping a torn (partially written) last line."""
    rows = []
    if not Path(path).exists():
        return rows
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a kill mid-append leaves at most one torn line
    return rows


def _process_gone(info: dict) -> bool:
    """True when `info` names a process on this machine that no longer exists."""
    pid, host = info.get("pid"), info.get("host")
    if not pid or host != socket.gethostname():
        return False  # unknown, or another machine's process: cannot tell
    try:
        os.kill(int(pid), 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError, ValueError):
        return False
    return False


def is_run_folder(path: str | Path) -> bool:
    return (Path(path) / RUN_FILE).is_file()


@dataclass
class RunFolder:
    """One run on disk. Cheap to construct; every method reads or writes the folder directly."""

    path: Path

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def info(self) -> dict:
        return json.loads((self.path / RUN_FILE).read_text())

    def update_info(self, **fields: Any) -> dict:
        info = self.info
        if fields.get("status") == "running":  # who runs it, so readers can tell a dead run
            fields = {"pid": os.getpid(), "host": socket.gethostname(), **fields}
        info.update(fields)
        info["updated"] = time.time()
        atomic_write_json(self.path / RUN_FILE, info)
        return info

    @property
    def status(self) -> str:
        """The recorded status, except that a "running" run whose process is gone from this
        machine (killed, or the kernel died) reads as "interrupted"; resume it to continue."""
        info = self.info
        status = info.get("status", "unknown")
        return "interrupted" if status == "running" and _process_gone(info) else status

    def config(self) -> dict:
        p = self.path / "config.json"
        return json.loads(p.read_text()) if p.exists() else {}

    def log_metrics(self, row: dict) -> None:
        """Append one metrics row (must be JSON-serialisable) durably."""
        line = json.dumps(row, default=float) + "\n"
        with open(self.path / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def metrics(self) -> pd.DataFrame:
        return pd.DataFrame(read_jsonl(self.path / "metrics.jsonl"))

    def checkpoints(self) -> list[tuple[int, Path]]:
        """Complete checkpoints as (step, folder), oldest first."""
        folder = self.path / CHECKPOINTS
        out = []
        if folder.is_dir():
            for child in folder.iterdir():
                m = _STEP_DIR.match(child.name)
                if m and child.is_dir():
                    out.append((int(m.group(1)), child))
        return sorted(out)

    def latest_checkpoint(self) -> Path | None:
        ckpts = self.checkpoints()
        return ckpts[-1][1] if ckpts else None

    def best_checkpoint(self) -> Path | None:
        """The checkpoint of the run's best evaluation (`best_step` in its summary, written by
        fine-tuning), if the run finished with one and it is on disk."""
        best = self.summary().get("best_step")
        return dict(self.checkpoints()).get(best) if best is not None else None

    @contextlib.contextmanager
    def writing_checkpoint(self, step: int, keep_last: int | None = None,
                           keep_steps: Iterable[int] = ()) -> Iterator[Path]:
        """Yield a temporary folder to fill; it becomes `checkpoints/step-N` only when complete.
        Then only the newest `keep_last` checkpoints stay, plus those at `keep_steps` (the best)."""
        folder = self.path / CHECKPOINTS
        folder.mkdir(exist_ok=True)
        final = folder / f"step-{step:08d}"
        tmp = folder / f".tmp-step-{step:08d}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            yield tmp
            if final.exists():  # re-saving the same step (e.g. final == last periodic)
                old = folder / f".old-{final.name}-{uuid.uuid4().hex[:8]}"
                os.replace(final, old)
                os.replace(tmp, final)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        if keep_last:
            keep = set(keep_steps)
            for old_step, old in self.checkpoints()[:-keep_last]:
                if old_step not in keep:
                    shutil.rmtree(old, ignore_errors=True)

    def write_summary(self, summary: dict) -> None:
        atomic_write_json(self.path / "summary.json", summary)

    def summary(self) -> dict:
        p = self.path / "summary.json"
        return json.loads(p.read_text()) if p.exists() else {}


def _init_index(con: sqlite3.Connection, tries: int = 100) -> None:
    """WAL mode and the table. Two processes opening a new index at once can get "database is
    locked" from the journal-mode switch without SQLite's busy wait, so that step is retried."""
    for attempt in range(tries):
        try:
            con.execute("PRAGMA busy_timeout=30000")
            con.execute("PRAGMA journal_mode=WAL")
            con.execute(
                "CREATE TABLE IF NOT EXISTS runs (id TEXT PRIMARY KEY, kind TEXT, name TEXT,"
                " status TEXT, created REAL, updated REAL, base_model TEXT, path TEXT,"
                " summary TEXT)"
            )
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or attempt == tries - 1:
                raise
            time.sleep(0.05)


class RunStore:
    """All runs under one root folder, with a SQLite index for fast listing."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_root()
        self.root.mkdir(parents=True, exist_ok=True)
        self.index_path = self.root / "index.sqlite"

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(self.index_path, timeout=30)
        try:
            _init_index(con)
            with con:  # one transaction
                yield con
        finally:
            con.close()

    def create(self, kind: str, name: str | None, config: dict, base_model: str | None) -> RunFolder:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        run_id = f"{stamp}-{kind}-{uuid.uuid4().hex[:6]}"
        path = self.root / run_id
        path.mkdir(parents=True)
        now = time.time()
        info = {"id": run_id, "kind": kind, "name": name or run_id, "status": "created",
                "created": now, "updated": now, "base_model": base_model}
        atomic_write_json(path / "config.json", config)
        atomic_write_json(path / RUN_FILE, info)  # written last: the folder is a run only now
        run = RunFolder(path)
        self.index(run)
        return run

    def index(self, run: RunFolder) -> None:
        info = run.info
        with self._db() as con:
            con.execute(
                "INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,?,?,?)",
                (info["id"], info.get("kind"), info.get("name"), info.get("status"),
                 info.get("created"), info.get("updated"), info.get("base_model"),
                 str(run.path), json.dumps(run.summary())),
            )

    def reindex(self) -> None:
        """Rebuild the index from the run folders (the folders are the truth)."""
        with self._db() as con:
            con.execute("DELETE FROM runs")
        for child in sorted(self.root.iterdir()):
            if is_run_folder(child):
                try:
                    self.index(RunFolder(child))
                except (json.JSONDecodeError, OSError):
                    continue

    def get(self, run_id_or_name: str) -> RunFolder:
        direct = self.root / run_id_or_name
        if is_run_folder(direct):
            return RunFolder(direct)
        with self._db() as con:
            rows = con.execute(
                "SELECT path FROM runs WHERE id=? OR name=? ORDER BY created DESC",
                (run_id_or_name, run_id_or_name),
            ).fetchall()
        for (path,) in rows:
            if is_run_folder(path):
                return RunFolder(Path(path))
        raise InputError(f"no run {run_id_or_name!r} in {self.root}; see wb.runs() for the list")

    def list(self) -> pd.DataFrame:
        """One row per run, newest first, with its summary metrics as columns."""
        self.reindex()
        with self._db() as con:
            rows = con.execute(
                "SELECT id, kind, name, status, created, updated, base_model, path, summary"
                " FROM runs ORDER BY created DESC"
            ).fetchall()
        records = []
        for rid, kind, name, status, created, updated, base, path, summary in rows:
            if status == "running" and Path(path).is_dir():
                status = RunFolder(Path(path)).status  # the process may be gone
            rec = {"id": rid, "kind": kind, "name": name, "status": status,
                   "created": pd.to_datetime(created, unit="s"), "base_model": base, "path": path}
            for k, v in (json.loads(summary) if summary else {}).items():
                if isinstance(v, (int, float, str, bool)) or v is None:
                    rec[k] = v
            records.append(rec)
        columns = ["id", "kind", "name", "status", "created", "base_model", "path"]
        return pd.DataFrame.from_records(records, columns=None if records else columns)


def runs(root: str | Path | None = None) -> pd.DataFrame:
    """List every run under `root` (default `$WORKBENCH_RUNS` or ./runs) as a DataFrame."""
    return RunStore(root).list()


def resolve_checkpoint(path: str | Path) -> Path:
    """Map a run folder to its best checkpoint (a finished fine-tuning run's best evaluation), else
    its latest complete one; other folders are returned as they are."""
    path = Path(path)
    if is_run_folder(path):
        run = RunFolder(path)
        ckpt = run.best_checkpoint() or run.latest_checkpoint()
        if ckpt is None:
            raise ModelNotFoundError(
                f"run {path} has no complete checkpoint yet; wait for its first checkpoint or "
                "resume it (wb.finetune(..., resume=run) / wb.pretrain(..., resume=run))"
            )
        return ckpt
    return path
