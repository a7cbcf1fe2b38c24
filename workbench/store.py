"""The run store: one folder per run, and the folders are the truth.

Layout of one run::

    <root>/<run_id>/                 run_id = "<yyyymmdd-hhmmss>-<kind>-<6 hex>" (the hex is the short id)
        run.json            identity, kind, status, base model, timestamps (atomic rewrite)
        config.json         the training config (`to_dict` of its dataclass)
        metrics.jsonl       one JSON object per line, appended and fsync'd; a torn last line is skipped
        checkpoints/step-00000100/   a `save_pretrained` folder (+ training state), renamed into
                                     place only once complete, so a kill never leaves half a checkpoint;
                                     its manifest.json holds the size and SHA-256 of every file
        summary.json        final metrics (when the run ended)
        .run.lock, .run.lock.json    the writer's lock and who holds it (pid, host, since)

`runs()` scans the folders on every call; there is no index to fall out of step (500 runs list in
about 20 ms; the SQLite index this replaced took 0.8 s, as every listing rebuilt it). A run
is built under a hidden temporary name and renamed into place, so a listing sees it whole or not at
all; every whole file is written to a temporary name and `os.replace`d. A folder whose run.json is
missing or malformed is listed with status "broken" and a `reason`, and never hides the others.

Integrity: `writing_checkpoint` records the SHA-256 of every file of a checkpoint in its
`manifest.json` before the folder is renamed into place; `verify_checkpoint` re-hashes them
(about 1.5 GB/s on one core of the 2-core CPU this was written on: 0.35 s for a 500 MB
checkpoint) and refuses a flipped byte, a truncated or a missing file by name. `wb.load(run)` and
every resume verify first. A checkpoint written before manifests existed has its safetensors
headers checked (a truncated file is refused) and loads with a one-line warning.

Only the process that holds a run's lock (`run.lock()`, an flock through `filelock`, released by the
kernel when the process dies) may write it; taking the lock also removes the temporary files a
killed writer left behind.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Iterator

import pandas as pd

from .errors import (CheckpointCorruptError, InputError, ModelNotFoundError, RunLockedError,
                     RunStoreError)

logger = logging.getLogger(__name__)

RUN_FILE = "run.json"
CONFIG_FILE = "config.json"
SUMMARY_FILE = "summary.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
LOCK_FILE = ".run.lock"
LOCK_INFO = ".run.lock.json"
MANIFEST = "manifest.json"  # inside a checkpoint folder: {"files": {name: {"bytes", "sha256"}}}
STATE_PREFIX = "training_state."  # a checkpoint's resumable state (optimizer, RNG, position)
_STEP_DIR = re.compile(r"^step-(\d+)$")
_KIND = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_TMP_RUN = ".tmp-run-"
_STALE_TMP_RUN_S = 3600.0  # creating a run takes milliseconds: an hour-old temp folder is dead

#: Every status a run can have, and what it means. A run only ever reads as one of these.
STATUSES = {
    "created": "the folder exists; training has not started",
    "running": "a process is training it (its pid and host are in run.json)",
    "completed": "training reached its last step",
    "stopped": "stopped on request (Stop button or StopFlag); resumable",
    "early_stopped": "fine-tuning ended early because evaluation stopped improving",
    "interrupted": "the process died or got Ctrl-C (a 'running' run whose process is gone reads "
                   "so); resumable",
    "failed": "training raised an error (run.json's `error` says which)",
    "broken": "run.json is missing or malformed (`reason` says how); listed, never written",
}
_COLUMNS = ["id", "short_id", "kind", "name", "status", "reason", "created", "base_model", "path"]


def default_root() -> Path:
    """The run store folder used when none is given, the same for notebooks, CLI and library.

    `$WORKBENCH_RUNS` if set; else `<repo>/runs` when the package runs from a source checkout
    (ignored by git, whatever the current directory: `make lab` and `workbench ...` share it);
    else `runs` in the user data folder (`platformdirs.user_data_path("workbench")`, e.g.
    `~/.local/share/workbench/runs` on Linux).
    """
    env = os.environ.get("WORKBENCH_RUNS")
    if env:
        return Path(env).expanduser().absolute()
    checkout = Path(__file__).resolve().parent.parent
    pyproject = checkout / "pyproject.toml"
    if pyproject.is_file() and 'name = "workbench"' in pyproject.read_text(encoding="utf-8"):
        return checkout / "runs"
    import platformdirs

    return platformdirs.user_data_path("workbench") / "runs"


def _root(root: str | Path | None) -> Path:
    """The store folder `root` names (None: `default_root()`); it need not exist yet."""
    if root is None:
        return default_root()
    if not isinstance(root, (str, os.PathLike)) or not str(root).strip():
        raise InputError(f"root={root!r}: pass the run store folder as a path, or None for "
                         f"the default ({default_root()})")
    path = Path(root).expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise InputError(f"root={str(root)!r} is a file, not a run store folder: pass a folder "
                         "(it is created with the first run)")
    return path


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
    """Read a JSON-lines file of objects, skipping torn (partially written) lines."""
    rows = []
    if not Path(path).exists():
        return rows
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            row = _parse_line(line)
            if row is not None:
                rows.append(row)
    return rows


def _parse_line(line: str) -> dict | None:
    line = line.strip()
    if not line:
        return None
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        return None  # a kill mid-append leaves at most one torn line
    return row if isinstance(row, dict) else None


def describe_os_error(err: BaseException) -> str:
    """A short reason for an I/O failure: 'the disk is full', 'the folder is read-only', ..."""
    code = getattr(err, "errno", None)
    text = str(err)
    if code == errno.ENOSPC or "No space left" in text:
        return "the disk is full (no space left on device)"
    if code in (errno.EROFS, errno.EACCES, errno.EPERM) or "Read-only" in text:
        return f"the folder is read-only or not writable ({getattr(err, 'strerror', None) or text})"
    if code == errno.EDQUOT:
        return "the disk quota is exceeded"
    return f"{type(err).__name__}: {text}"


# --------------------------------------------------------------------------- checkpoint integrity

def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in 4 MB blocks (hashlib.file_digest is Python 3.11+ only)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: Path) -> None:
    """Record the size and SHA-256 of every file of the checkpoint in `folder` (`manifest.json`)."""
    files = {p.name: {"bytes": p.stat().st_size, "sha256": file_sha256(p)}
             for p in sorted(Path(folder).iterdir()) if p.is_file() and p.name != MANIFEST}
    atomic_write_json(Path(folder) / MANIFEST, {"format": 1, "algorithm": "sha256", "files": files})


_WARNED_LEGACY: set[str] = set()


def verify_checkpoint(folder: str | Path, state: bool = False) -> bool:
    """Check the files of the checkpoint in `folder` against its manifest: the weights, config and
    tokenizer files, and with `state=True` also the training state (`training_state.*`) a resume
    reads. A file that differs from its recorded size or SHA-256, or is missing, raises
    CheckpointCorruptError naming it. Returns True when verified; False for a checkpoint written
    before manifests existed, whose safetensors headers are checked instead (a truncated file is
    refused) with a one-line warning."""
    folder = Path(folder)
    manifest, reason = _read_object(folder / MANIFEST, required=False)
    if reason is not None:
        raise CheckpointCorruptError(f"checkpoint {folder} is damaged: {reason}; resume the run "
                                     "(it falls back to an intact checkpoint) or pick another step")
    if not manifest:
        _check_legacy(folder, state)
        return False
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise CheckpointCorruptError(f"checkpoint {folder} is damaged: {folder / MANIFEST} lists "
                                     "no files")
    unlisted = [p.name for p in folder.iterdir() if p.name not in files and p.is_file()
                and (p.suffix == ".safetensors" or p.name == "config.json")
                and (state or not p.name.startswith(STATE_PREFIX))]
    if unlisted:
        raise CheckpointCorruptError(f"checkpoint {folder} is damaged: {unlisted[0]} is not in "
                                     "its manifest (written or replaced after the checkpoint)")
    for name, rec in sorted(files.items()):
        if not isinstance(rec, dict):
            rec = {}
        if name.startswith(STATE_PREFIX) and not state:
            continue
        path = folder / name
        if not path.is_file():
            if name.startswith(STATE_PREFIX):
                continue  # pruned training state: a weights-only checkpoint (is_resumable says so)
            raise CheckpointCorruptError(f"checkpoint {folder} is damaged: {name} is missing "
                                         "(its manifest lists it)")
        size = path.stat().st_size
        if size != rec.get("bytes") or file_sha256(path) != rec.get("sha256"):
            how = (f"{size} bytes instead of {rec.get('bytes')}" if size != rec.get("bytes")
                   else "its SHA-256 differs from the one recorded when it was written")
            raise CheckpointCorruptError(f"checkpoint {folder} is damaged: {path} has changed "
                                         f"since it was written ({how})")
    return True


def _check_legacy(folder: Path, state: bool) -> None:
    """A checkpoint without manifest (written before they existed): safetensors headers only."""
    from safetensors import SafetensorError, safe_open

    for path in sorted(folder.glob("*.safetensors")):
        if path.name.startswith(STATE_PREFIX) and not state:
            continue
        try:
            with safe_open(str(path), framework="pt") as handle:
                handle.keys()
        except (SafetensorError, OSError) as err:
            raise CheckpointCorruptError(f"checkpoint {folder} is damaged: {path} is truncated "
                                         f"or corrupt ({err})") from None
    if str(folder) not in _WARNED_LEGACY:
        _WARNED_LEGACY.add(str(folder))
        logger.warning("checkpoint %s has no manifest.json (written before checkpoints recorded "
                       "hashes): only its safetensors headers were checked", folder)


def _read_object(path: Path, required: bool) -> tuple[dict, str | None]:
    """The JSON object in `path` and None, or ({}, why it is unusable). A missing optional file
    reads as {}."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}, (f"no {path.name}" if required else None)
    except OSError as err:
        return {}, f"{path.name} unreadable ({err.strerror})"
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return {}, f"{path.name} is not UTF-8 text"
    except ValueError as err:
        return {}, f"{path.name} is not valid JSON ({err})"
    if not isinstance(data, dict):
        return {}, f"{path.name} holds a JSON {type(data).__name__}, not an object"
    return data, None


def _read_info(path: Path) -> tuple[dict, str | None]:
    """run.json of the run at `path` and None, or ({}, why the run is broken)."""
    info, reason = _read_object(path / RUN_FILE, required=True)
    if reason is not None:
        return {}, reason
    missing = [k for k in ("kind", "status", "created") if k not in info]
    if missing:
        return {}, f"{RUN_FILE} lacks {', '.join(map(repr, missing))}"
    if info["status"] not in STATUSES or info["status"] == "broken":
        return {}, f"{RUN_FILE} has an unknown status {info['status']!r}"
    created = info["created"]
    if isinstance(created, bool) or not isinstance(created, (int, float)):
        return {}, f"{RUN_FILE} 'created' is not a timestamp: {created!r}"
    return info, None


def _process_gone(info: dict) -> bool:
    """True when `info` names a process on this machine that no longer exists."""
    pid, host = info.get("pid"), info.get("host")
    if not pid or host != socket.gethostname():
        return False  # unknown, or another machine's process: cannot tell
    try:
        os.kill(int(pid), 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError, ValueError, TypeError):
        return False
    return False


def _live_status(info: dict) -> str:
    """The recorded status, except that a "running" run whose process is gone from this machine
    (killed, or the kernel died) reads as "interrupted"; nothing is rewritten."""
    status = info["status"]
    return "interrupted" if status == "running" and _process_gone(info) else status


def is_run_folder(path: str | Path) -> bool:
    return (Path(path) / RUN_FILE).is_file()


def _short_id(run_id: str) -> str:
    return run_id.rsplit("-", 1)[-1]


def _when(stamp) -> str:
    return "unknown" if pd.isna(stamp) else f"{stamp:%Y-%m-%d %H:%M:%S}"


def _check_new_run(kind: Any, config: Any, name: Any, base_model: Any) -> None:
    """Refuse bad arguments of `Run.create` before anything is written."""
    if not isinstance(kind, str) or not _KIND.match(kind):
        raise InputError(f"kind={kind!r}: a run kind is a short lowercase word such as "
                         "'pretrain' or 'finetune'")
    if not isinstance(config, dict):
        raise InputError(f"config={type(config).__name__}: pass the run's config as a dict "
                         "(e.g. `config.to_dict()`)")
    for arg, value in (("name", name), ("base_model", base_model)):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise InputError(f"{arg}={value!r}: pass a non-empty string or None")
    if name is not None and ("/" in name or "\n" in name):
        raise InputError(f"name={name!r}: a run name cannot contain '/' or a newline")


def _remove_stale_run_temps(root: Path) -> None:
    """Remove `.tmp-run-*` folders of `Run.create` calls killed before their rename."""
    now = time.time()
    with os.scandir(root) as entries:
        for entry in entries:
            if entry.name.startswith(_TMP_RUN):
                with contextlib.suppress(OSError):
                    if now - entry.stat().st_mtime > _STALE_TMP_RUN_S:
                        shutil.rmtree(entry.path, ignore_errors=True)


class Run:
    """One run folder: the only handle on a run, for training loops and users alike.

    Reading (any process, any time): `.id`, `.short_id`, `.name`, `.kind`, `.status`, `.reason`,
    `.info`, `.config`, `.summary`, `.metrics()`, `.checkpoints()`, `.checkpoint()` (`wb.load(run)` opens one).
    Writing (only while holding `run.lock()`): `.set_status()`, `.log_metrics()`,
    `.truncate_metrics()`, `.writing_checkpoint()`, `.write_summary()`, `.write_config()`.
    """

    def __init__(self, path: str | Path):
        path = Path(path).expanduser().absolute()
        if not path.is_dir():
            raise InputError(f"{path} is not a run folder; pass a run id, a unique run name or "
                             "a folder listed by wb.runs()")
        self.path = path
        self._lock: RunLock | None = None

    # finding and making runs --------------------------------------------------------------------
    @classmethod
    def create(cls, kind: str, config: dict, *, name: str | None = None,
               base_model: str | None = None, root: str | Path | None = None) -> "Run":
        """Make a new run (status "created") under `root` (default: `default_root()`).

        The folder is filled under a hidden temporary name and renamed into place, so no listing
        ever sees a half-made run."""
        _check_new_run(kind, config, name, base_model)
        config_text = json.dumps(config, indent=2, sort_keys=True, default=str)
        root = _root(root)
        try:
            return cls._create(root, kind, config_text, name, base_model)
        except OSError as err:
            raise RunStoreError(
                f"cannot create a run in the run store {root}: {describe_os_error(err)}. Nothing "
                "was written; make that folder writable (or free space), or pass another store "
                "with root= / --root / $WORKBENCH_RUNS") from None

    @classmethod
    def _create(cls, root: Path, kind: str, config_text: str, name, base_model) -> "Run":
        root.mkdir(parents=True, exist_ok=True)
        _remove_stale_run_temps(root)
        while True:
            run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{kind}-{uuid.uuid4().hex[:6]}"
            tmp = root / f"{_TMP_RUN}{run_id}"
            tmp.mkdir()
            now = time.time()
            atomic_write_text(tmp / CONFIG_FILE, config_text)
            atomic_write_json(tmp / RUN_FILE, {
                "id": run_id, "kind": kind, "name": name or run_id, "status": "created",
                "created": now, "updated": now, "base_model": base_model})
            try:
                os.rename(tmp, root / run_id)  # atomic; fails if a (non-empty) run has this id
            except OSError as err:
                shutil.rmtree(tmp, ignore_errors=True)
                if err.errno in (errno.EEXIST, errno.ENOTEMPTY):
                    continue
                raise
            return cls(root / run_id)

    @classmethod
    def open(cls, key: "str | Path | Run", root: str | Path | None = None) -> "Run":
        """The run `key` names: a Run, a run folder's path, or in the store at `root` (default
        `default_root()`) its id, short id or name. A name or short id shared by several runs
        raises InputError listing them (ids and creation dates); an id always works."""
        if isinstance(key, Run):
            return key
        if not isinstance(key, (str, os.PathLike)) or not str(key).strip():
            raise InputError(f"run={key!r}: pass a run id, a unique run name or a run folder")
        root, path, text = _root(root), Path(key).expanduser(), str(key)
        if path.is_dir():
            if is_run_folder(path) or path.absolute().parent == root:
                return cls(path)
            raise InputError(f"{path} is a folder but not a run (no {RUN_FILE}); pass a folder "
                             "listed by wb.runs() or a run id")
        if not text.startswith(".") and "/" not in text and (root / text).is_dir():
            return cls(root / text)
        table = runs(root)
        hits = table[(table["name"] == text) | (table["short_id"] == text)] if len(table) else table
        if len(hits) == 1:
            return cls(hits["path"].iloc[0])
        if len(hits) > 1:
            listed = "; ".join(f"{r.id} (created {_when(r.created)}, {r.status})"
                               for r in hits.itertuples())
            raise InputError(f"{len(hits)} runs in {root} are named {text!r}: {listed}. "
                             "Pass the id of the one you mean.")
        raise InputError(f"no run {text!r} in {root} ({len(table)} runs there; wb.runs() lists "
                         "them): pass a run id, a unique name or a run folder")

    # identity -----------------------------------------------------------------------------------
    @property
    def id(self) -> str:
        return self.path.name

    @property
    def short_id(self) -> str:
        """The random tail of the id ("ab12cd"), enough to name a run in most stores."""
        return _short_id(self.id)

    @property
    def info(self) -> dict:
        """run.json as a dict; InputError if the run is broken (see `.reason`)."""
        info, reason = _read_info(self.path)
        if reason is not None:
            raise InputError(f"run {self.id} is broken: {reason} ({self.path}); repair or "
                             "delete that folder")
        return info

    @property
    def reason(self) -> str | None:
        """Why the run is broken, or None."""
        return _read_info(self.path)[1]

    @property
    def status(self) -> str:
        """One of STATUSES: "broken" for a malformed run.json; "interrupted" for a "running" run
        whose process is gone from this machine."""
        info, reason = _read_info(self.path)
        return "broken" if reason is not None else _live_status(info)

    @property
    def name(self) -> str:
        return _read_info(self.path)[0].get("name") or self.id

    @property
    def kind(self) -> str:
        return _read_info(self.path)[0].get("kind", "unknown")

    @property
    def config(self) -> dict:
        return self._optional(CONFIG_FILE)

    @property
    def summary(self) -> dict:
        """Final metrics of an ended run ({} before it ends)."""
        return self._optional(SUMMARY_FILE)

    def _optional(self, name: str) -> dict:
        data, reason = _read_object(self.path / name, required=False)
        if reason is not None:
            raise InputError(f"run {self.id}: {reason} ({self.path / name}); repair or delete it")
        return data

    # metrics ------------------------------------------------------------------------------------
    def metrics(self, kind: str | None = None) -> pd.DataFrame:
        """All logged metrics, one row per step/eval event; `kind` ("step", "eval") filters."""
        frame = pd.DataFrame(read_jsonl(self.path / METRICS_FILE))
        if kind is not None and len(frame) and "kind" in frame.columns:
            frame = frame[frame["kind"] == kind].reset_index(drop=True)
        return frame

    def log_metrics(self, row: dict) -> None:
        """Append one metrics row (JSON-serialisable) durably."""
        line = json.dumps(row, default=float) + "\n"
        with open(self.path / METRICS_FILE, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def truncate_metrics(self, step: int) -> int:
        """Drop the metric rows with "step" > `step` and any torn line (an atomic rewrite that keeps
        the other lines byte for byte); return how many rows were dropped. A resume from the
        checkpoint at `step` (0: none) calls this first, so no step appears twice."""
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise InputError(f"step={step!r}: pass the non-negative step the run resumes from")
        path = self.path / METRICS_FILE
        if not path.exists():
            return 0
        kept, dropped = [], 0
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                row = _parse_line(line)
                later = row is not None and isinstance(row.get("step"), (int, float)) \
                    and row["step"] > step
                dropped += later
                if row is not None and not later:
                    kept.append(line if line.endswith("\n") else line + "\n")
        atomic_write_text(path, "".join(kept))
        return dropped

    # checkpoints --------------------------------------------------------------------------------
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
        best = self.summary.get("best_step")
        steps = [s for s, _ in self.checkpoints()]
        return best if isinstance(best, int) and best in steps else None

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
            write_manifest(tmp)
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

    # state changes (hold the lock) --------------------------------------------------------------
    def set_status(self, status: str, **fields: Any) -> dict:
        """Rewrite run.json with `status` (one of STATUSES but "broken") and any extra fields;
        "running" also records this process's pid and host. Returns the new run.json."""
        if status not in STATUSES or status == "broken":
            allowed = [s for s in STATUSES if s != "broken"]
            raise InputError(f"status={status!r}: a run's status is one of {allowed}")
        info = self.info
        if status == "running":  # who runs it, so readers can tell a dead run
            fields = {"pid": os.getpid(), "host": socket.gethostname(), **fields}
        info.update(fields)
        info.update(status=status, updated=time.time())
        atomic_write_json(self.path / RUN_FILE, info)
        return info

    def write_summary(self, summary: dict) -> None:
        atomic_write_json(self.path / SUMMARY_FILE, summary)

    def write_config(self, config: dict) -> None:
        """Replace config.json (a resume that changed e.g. `max_steps`)."""
        atomic_write_json(self.path / CONFIG_FILE, config)

    def lock(self, timeout: float = 0) -> "RunLock":
        """This handle's writer lock: `with run.lock(): ...` (or `.acquire()` / `.release()`).

        Raises RunLockedError naming the holder's pid and host when anyone holds it already:
        another process, another `Run` handle, or this handle (it is not re-entrant, so the same
        run cannot be trained twice in one kernel either); it waits up to `timeout` seconds for
        another holder first. The kernel releases it when the holder dies, so a killed run never
        stays locked. Acquiring it removes the temporary files a killed writer left
        (`.tmp-step-*`)."""
        if self._lock is None:
            self._lock = RunLock(self)
        self._lock.timeout = timeout
        return self._lock

    def clean_temporary(self) -> list[str]:
        """Remove partial checkpoint folders and half-written files of a killed writer; return
        their names. Called by `lock()`; never call it without holding the lock."""
        removed = []
        ckpts = self.path / CHECKPOINTS
        for child in ckpts.iterdir() if ckpts.is_dir() else ():
            if not child.name.startswith("."):  # complete ones are step-N; .tmp-step-*, .old-*
                continue
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
            removed.append(f"{CHECKPOINTS}/{child.name}")
        for child in self.path.glob(".*.tmp"):  # atomic_write_text's temporary files
            child.unlink(missing_ok=True)
            removed.append(child.name)
        return removed

    def __eq__(self, other) -> bool:
        return isinstance(other, Run) and self.path.resolve() == other.path.resolve()

    def __hash__(self) -> int:
        return hash(str(self.path.resolve()))

    def __repr__(self) -> str:
        ckpts = self.checkpoints()
        last = f", last_checkpoint={ckpts[-1][0]}" if ckpts else ""
        return (f"Run(id={self.id!r}, name={self.name!r}, kind={self.kind!r}, "
                f"status={self.status!r}{last})")


class RunLock:
    """The writer lock of one run (`Run.lock()` makes it): an flock on `<run>/.run.lock` plus
    `<run>/.run.lock.json` saying who holds it, so the refusal can name them."""

    def __init__(self, run: Run, timeout: float = 0):
        import filelock

        self.run, self.timeout = run, timeout
        self._lock = filelock.FileLock(str(run.path / LOCK_FILE), thread_local=False)
        self._info = run.path / LOCK_INFO

    @property
    def is_locked(self) -> bool:
        return self._lock.is_locked

    def acquire(self) -> "RunLock":
        import filelock

        if self._lock.is_locked:  # one writer at a time, even through the same handle
            raise RunLockedError(self._refusal())
        try:
            self._lock.acquire(timeout=self.timeout)
        except filelock.Timeout:
            raise RunLockedError(self._refusal()) from None
        except OSError as err:
            raise self._unwritable(err) from None
        try:
            atomic_write_json(self._info, {"pid": os.getpid(), "host": socket.gethostname(),
                                           "since": time.time()})
        except OSError as err:
            self._lock.release()
            raise self._unwritable(err) from None
        self.run.clean_temporary()  # what a killed writer left; no live writer now
        return self

    def release(self) -> None:
        if self._lock.is_locked:
            self._info.unlink(missing_ok=True)
            self._lock.release()

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def _unwritable(self, err: OSError) -> RunStoreError:
        return RunStoreError(f"cannot write run {self.run.id} ({self.run.path}): "
                             f"{describe_os_error(err)}. Nothing was changed; make the folder "
                             "writable (or free space) and resume it again")

    def _refusal(self) -> str:
        holder, _ = _read_object(self._info, required=False)
        pid, host = holder.get("pid", "?"), holder.get("host", "?")
        since = holder.get("since")
        when = f" since {datetime.fromtimestamp(since):%Y-%m-%d %H:%M:%S}" if since else ""
        mine = " (this process: the run is already being written here)" if pid == os.getpid() \
            else ""
        return (f"run {self.run.id} is in use by pid {pid} on host {host}{when}{mine}: it is being "
                "trained or resumed there. Wait for it to end or stop it; the lock frees itself "
                "when that process exits.")


#: Deprecated name of `Run` (the store's folder class before issue 14); use `Run`.
RunFolder = Run


def _row(path: Path) -> dict | None:
    """One listing row for the folder at `path`; None if it vanished while being listed."""
    info, reason = _read_info(path)
    if reason is not None and not path.is_dir():
        return None
    summary = {}
    if reason is None:
        summary, reason = _read_object(path / SUMMARY_FILE, required=False)
    rec = {"id": path.name, "short_id": _short_id(path.name), "kind": info.get("kind"),
           "name": info.get("name") or path.name,
           "status": "broken" if reason is not None else _live_status(info), "reason": reason,
           "created": info.get("created"), "base_model": info.get("base_model"), "path": str(path)}
    for k, v in summary.items():
        if k not in rec and (isinstance(v, (int, float, str, bool)) or v is None):
            rec[k] = v
    return rec


def runs(root: str | Path | None = None) -> pd.DataFrame:
    """Every run under `root` (default `default_root()`), newest first: id, short_id, kind, name,
    status (one of STATUSES), reason (why a run is broken), created, base_model, path, then the
    summary's scalar metrics. Scans the folders, so a listing never misses a run that exists."""
    root = _root(root)
    records = []
    if root.is_dir():
        with os.scandir(root) as entries:
            folders = [Path(e.path) for e in entries
                       if not e.name.startswith(".") and e.is_dir(follow_symlinks=True)]
        records = [rec for rec in map(_row, folders) if rec is not None]
    frame = pd.DataFrame.from_records(records, columns=None if records else _COLUMNS)
    frame["created"] = pd.to_datetime(frame["created"], unit="s")
    return frame.sort_values(["created", "id"], ascending=False,
                             na_position="last").reset_index(drop=True)


def resolve_checkpoint(path: str | Path, step: int | str | None = None) -> Path:
    """Map a run folder to a checkpoint, verified against its manifest (`verify_checkpoint`):
    `step=None` gives its best one (a finished fine-tuning run's best evaluation), else its latest
    complete one; `"latest"` or a step number picks one. A checkpoint folder inside a run is
    verified too; other folders are returned as they are (and take no `step`)."""
    path = Path(path)
    if is_run_folder(path):
        path = _run_checkpoint(Run(path), step)
    elif step is not None:
        raise InputError(f"step={step!r} applies to a workbench run; {path} is not a run folder")
    if (path / MANIFEST).is_file() or is_run_folder(path.parent.parent):
        try:
            verify_checkpoint(path)
        except CheckpointCorruptError as err:
            raise CheckpointCorruptError(f"{err}. Other steps of this run: "
                                         f"{[s for s, _ in Run(path.parent.parent).checkpoints()]}"
                                         " (open one with wb.load(run, step=N))"
                                         if is_run_folder(path.parent.parent) else str(err)) from None
    return path


def _run_checkpoint(run: Run, step: int | str | None) -> Path:
    if not run.checkpoints():
        raise ModelNotFoundError(
            f"run {run.path} has no complete checkpoint yet; wait for its first checkpoint or "
            "resume it (wb.finetune(..., resume=run) / wb.pretrain(..., resume=run))"
        )
    if step is None:
        return run.checkpoint(run.best_step)
    if step != "latest" and not (isinstance(step, int) and not isinstance(step, bool)):
        raise InputError(f"step={step!r}: pass None (the best checkpoint), 'latest' or a step number")
    return run.checkpoint(None if step == "latest" else step)
