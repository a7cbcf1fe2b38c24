"""The headless browser that static figure export needs: find it, and provision one at set-up.

kaleido 1.x renders PNG/SVG/PDF in a Chrome/Chromium it drives through choreographer. This module
is the one place that knows where such a browser may be (`find_browser`) and how a machine can get
one (`provision`): kaleido's own download of Chrome for Testing where the internet is reachable,
Debian/Ubuntu's `chromium` through apt when running as root, otherwise nothing. `make setup` runs
`python -m workbench.browser`, which prints one line saying what it found or did, and never fails
the set-up: without a browser, everything except "write a static file" still works (HTML instead).

Layer 0: no torch, no plotly.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

ENABLE_HINT = ("to enable it, install Chromium (`sudo apt install chromium`) or Chrome "
               "(`plotly_get_chrome`, needs the internet), or set BROWSER_PATH to one")
# how the benchmarks and browser tests launch it: headless, offline-quiet, no sandbox (root in CI)
HEADLESS_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SYSTEM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def _is_exe(path: str | None) -> bool:
    return bool(path) and os.path.isfile(path) and os.access(path, os.X_OK)


def find_browser() -> str | None:
    """Path of a Chrome/Chromium kaleido can start, or None.

    Looks where kaleido looks (BROWSER_PATH, kaleido's own download, the usual names and paths),
    and only accepts an executable regular file, so a hidden or broken binary counts as absent.
    """
    env = os.environ.get("BROWSER_PATH")
    if env:
        return env if _is_exe(env) else None
    try:
        from choreographer.browsers.chromium import Chromium

        found = Chromium.find_browser(skip_local=False)
    except Exception:  # an old or absent choreographer: fall back to PATH
        found = None
    if _is_exe(found):
        return found
    for name in SYSTEM_NAMES:
        found = shutil.which(name)
        if _is_exe(found):
            return found
    return None


def use_browser() -> str | None:
    """Point kaleido at the browser `find_browser` returns (via BROWSER_PATH); return its path."""
    found = find_browser()
    if found and not os.environ.get("BROWSER_PATH"):
        os.environ["BROWSER_PATH"] = found
    return found


def starts(path: str) -> bool:
    """True when `path --version` runs (a downloaded Chrome may lack system libraries)."""
    try:
        done = subprocess.run([path, "--version"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _download_with_kaleido() -> tuple[bool, str]:
    # in a child process with a deadline: on a machine with no route out, a download can hang
    code = "import kaleido; print(kaleido.get_chrome_sync())"
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=600)
    except subprocess.TimeoutExpired:
        return False, "kaleido's Chrome download timed out"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["unknown error"])[-1]
        return False, f"kaleido could not download Chrome ({last[:140]})"
    path = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    if not (_is_exe(path) and starts(path)):
        return False, f"kaleido downloaded Chrome to {path} but it does not start here"
    return True, f"downloaded Chrome for Testing to {path}"


def _install_with_apt() -> tuple[bool, str]:
    if not shutil.which("apt-get"):
        return False, "no apt-get on this machine"
    if os.geteuid() != 0:
        return False, "apt-get needs root (run `sudo apt-get install chromium`)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    steps = (["apt-get", "update", "-qq"],
             ["apt-get", "install", "-y", "-qq", "chromium", "fonts-dejavu-core"])
    for cmd in steps:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            return False, f"`{' '.join(cmd)}` failed: {done.stderr.strip()[-160:]}"
    return True, "installed Debian's chromium with apt-get"


def provision(allow_download: bool = True, allow_apt: bool = True) -> tuple[str | None, str]:
    """Find a browser, or try to get one; return (path or None, one line saying what happened)."""
    found = find_browser()
    if found:
        return found, f"static figure export: using the browser at {found}"
    reasons = []
    for allowed, attempt in ((allow_download, _download_with_kaleido), (allow_apt, _install_with_apt)):
        if not allowed:
            continue
        _ok, what = attempt()
        found = find_browser()
        if found and starts(found):
            return found, f"static figure export: {what}; using {found}"
        reasons.append(what + (", but no usable browser appeared" if _ok else ""))
    why = "; ".join(reasons) or "provisioning disabled"
    return None, ("static figure export: no Chrome/Chromium found and none could be provisioned "
                  f"({why}). Figures will be written as HTML instead of PNG/SVG/PDF; "
                  + ENABLE_HINT + ".")


def main(argv: list[str] | None = None) -> int:
    """`python -m workbench.browser [--no-download] [--no-apt]`: print one line; exit 0 always."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if os.environ.get("WORKBENCH_NO_BROWSER_PROVISION"):
        argv += ["--no-download", "--no-apt"]
    _path, line = provision(allow_download="--no-download" not in argv, allow_apt="--no-apt" not in argv)
    print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
