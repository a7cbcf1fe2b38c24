"""pyproject.toml and environment.yml name the same packages; the CLI answers --help."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# conda names that differ from PyPI names
CONDA_TO_PYPI = {"pytorch": "torch", "python-kaleido": "kaleido"}
NOT_PACKAGES = {"python", "pip"}


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req.strip(), maxsplit=1)[0].lower()


def _pyproject_names() -> set[str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {_name(r) for r in data["dependencies"]}
    for extra, reqs in data["optional-dependencies"].items():
        names |= {_name(r) for r in reqs if not r.startswith("workbench")}
    return names


def _environment_names() -> set[str]:
    names = set()
    text = (ROOT / "environment.yml").read_text()
    deps = text.split("dependencies:", 1)[1]  # skip the channels list
    for line in deps.splitlines():
        m = re.match(r"^\s*-\s+([A-Za-z0-9_.\-]+)", line)
        if not m or line.strip().startswith("- -e") or m.group(1) in ("pip:",):
            continue
        name = _name(m.group(1))
        if name in NOT_PACKAGES or name == "-e":
            continue
        names.add(CONDA_TO_PYPI.get(name, name))
    return names


def test_environment_yml_matches_pyproject():
    py, env = _pyproject_names(), _environment_names()
    assert py == env, f"only in pyproject: {sorted(py - env)}; only in environment.yml: {sorted(env - py)}"


def test_cli_help_lists_subcommands():
    out = subprocess.run([sys.executable, "-m", "workbench", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for cmd in ("demo", "lab", "bench", "pretrain", "finetune"):
        assert re.search(rf"\b{cmd}\b", out), cmd


def test_readme_test_command_is_what_ci_runs():
    assert "make test" in (ROOT / "README.md").read_text()
    assert "make test" in (ROOT / ".ci" / "run").read_text()
