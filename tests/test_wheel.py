"""The package installs like a library: a wheel (and the wheel built from the sdist) carries the demo
model, the probe set, the sentiment sample and the guided notebooks, and works from a folder
outside the clone.

The wheel is installed with pip into a fresh virtual environment. Its third-party dependencies are
not downloaded again: a `.pth` line points the fresh environment at this environment's
site-packages (a plain path entry, so this environment's editable install of the clone is NOT
activated there; the test asserts the package is imported from the fresh environment). A full
dependency install is what `pip install workbench-*.whl` does for a user; it needs the network
for torch and is not repeated here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import tarfile
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAX_WHEEL_MB = 60
EXPECTED = ("workbench/data/demo-model/config.json", "workbench/data/probes/probe_set.jsonl",
            "workbench/data/sentiment/rotten_tomatoes.tsv", "workbench/views/static/")


def _pip(*args: str, cwd: Path) -> None:
    # no PYTHONPATH: a clone on it would look like an installed workbench to pip
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-m", "pip", *args], cwd=cwd, capture_output=True,
                          text=True, env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(wheel, sdist) built from a copy of the tracked tree (the clone is never written to)."""
    tmp = tmp_path_factory.mktemp("build")
    src = tmp / "src"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                             check=True).stdout.decode().split("\0")
    for rel in filter(None, tracked):
        path = ROOT / rel
        if path.is_file() and not path.is_symlink():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            (src / rel).write_bytes(path.read_bytes())
    dist = tmp / "dist"
    code = ("from setuptools import build_meta as b; import sys; "
            f"print(b.build_sdist({str(dist)!r}))")
    done = subprocess.run([sys.executable, "-c", code], cwd=src, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    sdist = dist / done.stdout.strip().splitlines()[-1]
    _pip("wheel", "--no-deps", "--no-build-isolation", "-q", ".", "-w", str(dist), cwd=src)
    wheel = next(dist.glob("workbench-*.whl"))
    return wheel, sdist


def test_wheel_and_sdist_carry_the_data_and_notebooks(built, tmp_path):
    wheel, sdist = built
    assert wheel.stat().st_size < MAX_WHEEL_MB * 2**20, f"{wheel.stat().st_size / 2**20:.1f} MB"
    names = zipfile.ZipFile(wheel).namelist()
    for want in EXPECTED:
        assert any(n.startswith(want) for n in names), want
    notebooks = [n for n in names if "/share/workbench/notebooks/" in n and n.endswith(".py")]
    on_disk = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
    assert sorted(Path(n).name for n in notebooks) == on_disk
    assert not any(n.endswith((".pkl", ".pickle", ".bin")) for n in names)
    # the wheel a user builds from the sdist is the same set of files
    in_sdist = tarfile.open(sdist).getnames()
    assert any(n.endswith("workbench/data/demo-model/config.json") for n in in_sdist)
    _pip("wheel", "--no-deps", "--no-build-isolation", "-q", str(sdist), "-w", str(tmp_path),
         cwd=tmp_path)
    again = zipfile.ZipFile(next(tmp_path.glob("workbench-*.whl"))).namelist()
    assert sorted(again) == sorted(names)


USER_SCRIPT = textwrap.dedent("""
    import json, subprocess, sys
    from pathlib import Path
    import workbench as wb
    out = {"file": wb.__file__}
    lm = wb.load("demo", device="cpu")
    top = wb.fill_mask(lm, "The capital of France is <mask>.")
    out["fill_mask_rows"] = len(top)
    out["attention_rows"] = len(wb.attention(lm, ["The cat sat."]))
    out["probe_set"] = len(wb.load_probe_set())
    data = wb.sentiment_demo(n=8, seed=0)
    run = wb.finetune(lm, data, config=wb.FineTuneConfig(max_steps=2, batch_size=2, eval_every=2,
                                                         text_column="text", label_column="label"))
    out["run_status"] = run.status
    out["runs"] = wb.runs()["id"].tolist()
    out["run_id"] = run.id
    print("RESULT" + json.dumps(out))
""")


def test_installed_wheel_works_from_another_folder(built, tmp_path):
    wheel, _ = built
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    purelib = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    (purelib / "_workbench_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _pip("--python", str(py), "install", "--no-deps", "--no-index", "-q", str(wheel), cwd=tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WORKBENCH_RUNS": str(tmp_path / "runs"),
           "WORKBENCH_CACHE": str(tmp_path / "cache")}
    for var in ("PYTHONPATH", "WORKBENCH_DEMO_MODEL"):
        env.pop(var, None)
    (elsewhere / "user.py").write_text(USER_SCRIPT)
    done = subprocess.run([str(py), "user.py"], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.split("RESULT", 1)[1])
    assert Path(result["file"]).is_relative_to(venv), result["file"]  # not the clone
    assert result["fill_mask_rows"] > 0 and result["attention_rows"] > 0 and result["probe_set"] > 0
    assert result["run_status"] == "completed" and result["run_id"] in result["runs"]
    # the guided notebooks, copied to a folder the user chooses, paired .py/.ipynb
    cli = venv / "bin" / "workbench"
    done = subprocess.run([str(cli), "notebooks", "mine"], cwd=elsewhere, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    copied = sorted(p.name for p in (elsewhere / "mine").glob("[0-9][0-9]_*.py"))
    assert copied == sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
    assert all((elsewhere / "mine" / name).with_suffix(".ipynb").exists() for name in copied)
