"""The `make demo` main job: run every guided notebook headless and collect one report.

`run_demo(out)` executes `notebooks/NN_*.py` in order on the embedded default model (or the model
given), each in a fresh kernel with its working directory under `out/figures/<notebook>/`, and
writes:

    out/index.html                   the report: one section per notebook, its figures, timings
    out/notebooks/NN_name.ipynb      the executed notebooks (open them in JupyterLab)
    out/notebooks/NN_name.html       the same as standalone HTML (plotly.js embedded, offline)
    out/figures/NN_name/...          every file the notebook exported (PDF/SVG/PNG/HTML/CSV)
    out/runs/                        the run store the notebooks trained into

If `data/demo-model` is not built yet the demo falls back to a tiny RANDOM model and says so.
Not in a layer: it drives notebooks, never the analyses directly.
"""

from __future__ import annotations

import html
import sys
import threading
import time
from pathlib import Path

from .errors import InputError, WorkbenchError
from .figures import EXPORT_LOG_ENV, skipped_exports, skipped_summary
from .resources import notebooks_dir

NOTEBOOK_DIR = notebooks_dir()  # a clone's notebooks/, else the copy a wheel installs
FIGURE_SUFFIXES = {".png", ".svg", ".pdf", ".html", ".jpg", ".jpeg", ".webp"}
IMAGE_SUFFIXES = {".png", ".svg", ".jpg", ".jpeg", ".webp"}
TABLE_SUFFIXES = {".csv", ".parquet", ".json", ".tsv"}
CELL_TIMEOUT_S = 1800

_BANNER = "!" * 78


def guided_notebooks(folder: Path | None = NOTEBOOK_DIR) -> list[Path]:
    """The guided notebooks' jupytext sources, `NN_name.py`, in order."""
    from .notebook_runner import guided_sources

    found = guided_sources(folder) if folder else []
    if not found:
        raise InputError(f"no notebooks NN_*.py in {folder}: reinstall the workbench from its "
                         "wheel or sdist (which carry them), or run the demo from a clone")
    return found


def _resolve_model(model: str, out: Path) -> tuple[str, str | None]:
    """(model argument for the notebooks, warning or None); builds the tiny fallback if needed."""
    if model != "demo":
        return model, None
    from .resources import demo_model_dir

    if (demo_model_dir() / "config.json").exists():
        return "demo", None
    from .testing import make_tiny_model

    folder = out / "tiny-random-model"
    if not (folder / "config.json").exists():
        make_tiny_model(folder)
    warning = (f"The embedded default model ({demo_model_dir()}) is not built yet, so this demo "
               "runs on a tiny RANDOM model. Its outputs show that the pipeline works, NOT what a "
               "trained model knows: attention patterns, predictions and scores are noise.")
    return str(folder.resolve()), warning


def _say_loudly(text: str) -> None:
    print(f"\n{_BANNER}\n{text}\n{_BANNER}\n", flush=True)


def _fmt(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


class _Progress:
    """Prints which notebook and cell is running, and a heartbeat with elapsed time."""

    def __init__(self, label: str, every_s: float = 20.0):
        self.label, self.every_s = label, every_s
        self.start = time.perf_counter()
        self.cell = "starting kernel"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def __enter__(self):
        print(f"{self.label} ...", flush=True)
        self._thread.start()
        return self

    def on_cell(self, index: int, n_cells: int, cell) -> None:
        if cell.cell_type == "code" and cell.source.strip():
            first = cell.source.strip().splitlines()[0][:60]
            self.cell = f"cell {index + 1}/{n_cells}: {first}"

    def _beat(self):
        while not self._stop.wait(self.every_s):
            print(f"    ... {_fmt(self.elapsed)} elapsed, {self.cell}", flush=True)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def run_demo(out: Path, *, model: str = "demo", quick: bool = False,
             notebooks: list[Path] | None = None) -> Path:
    """Execute every guided notebook headless on `model`; write the report into `out`.

    quick: run the notebooks with QUICK=True (small sizes, a smoke test).
    notebooks: the notebook sources to run (default: all of notebooks/NN_*.py).
    Raises WorkbenchError after writing the report if any notebook failed.
    """
    from .notebook_runner import NotebookExecutionError, execute_notebook, export_html

    if model != "demo":  # a missing or corrupt model is refused before anything runs
        from .models import check_source

        check_source(model)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sources = list(notebooks) if notebooks is not None else guided_notebooks()
    total_start = time.perf_counter()
    model_arg, warning = _resolve_model(model, out)
    if warning:
        _say_loudly(warning)
    runs_dir = (out / "runs").resolve()
    skip_log = (out / "skipped_exports.jsonl").resolve()  # static exports done as HTML instead
    skip_log.unlink(missing_ok=True)
    # HF_HUB_OFFLINE passes through as the user set it
    env = {"WORKBENCH_RUNS": str(runs_dir), EXPORT_LOG_ENV: str(skip_log)}
    print(f"Running {len(sources)} notebooks on model {model_arg!r}"
          f"{' (quick)' if quick else ''}; outputs go to {out.resolve()}", flush=True)

    results = []
    for i, src in enumerate(sources, 1):
        stem = src.stem
        workdir = (out / "figures" / stem).resolve()
        executed = out / "notebooks" / f"{stem}.ipynb"
        page = out / "notebooks" / f"{stem}.html"
        error = None
        with _Progress(f"[{i}/{len(sources)}] {stem}") as progress:
            try:
                nb = execute_notebook(src, executed,
                                      parameters={"MODEL": model_arg, "QUICK": quick},
                                      cwd=workdir, timeout=CELL_TIMEOUT_S, env=env,
                                      on_cell=progress.on_cell)
            except NotebookExecutionError as err:
                error = str(err)
                import nbformat

                nb = nbformat.read(executed, as_version=4)
            export_html(nb, page)
        seconds = progress.elapsed
        status = "FAILED" if error else "ok"
        print(f"[{i}/{len(sources)}] {stem}: {status} in {_fmt(seconds)}", flush=True)
        if error:
            print("    " + error.splitlines()[0], flush=True)
        results.append({"stem": stem, "title": _title(nb, stem), "seconds": seconds,
                        "error": error, "files": _outputs_of(workdir, out)})

    total = time.perf_counter() - total_start
    skipped = skipped_summary(skipped_exports(skip_log))
    index = _write_index(out, results, model_arg, warning, total, quick, skipped)
    failed = [r["stem"] for r in results if r["error"]]
    print(f"\nDemo finished in {_fmt(total)}: {len(results) - len(failed)}/{len(results)} "
          f"notebooks ran. Report: {index.resolve()}", flush=True)
    if skipped:
        print(skipped, flush=True)
    if warning:
        _say_loudly("Reminder: these outputs come from a tiny RANDOM model (data/demo-model "
                    "is not built yet).")
    if failed:
        raise WorkbenchError(f"{len(failed)} notebook(s) failed: {', '.join(failed)}; the "
                             f"tracebacks are in {out.resolve() / 'notebooks'} and {index}")
    sys.stdout.flush()
    return out


def _title(nb, fallback: str) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("# ").strip()
    return fallback


def _outputs_of(workdir: Path, out: Path) -> list[Path]:
    """Files a notebook wrote under its working directory, relative to `out`, figures first."""
    if not workdir.exists():
        return []
    files = [p for p in sorted(workdir.rglob("*")) if p.is_file()
             and p.suffix.lower() in FIGURE_SUFFIXES | TABLE_SUFFIXES]
    files.sort(key=lambda p: (p.suffix.lower() not in FIGURE_SUFFIXES, str(p)))
    return [p.relative_to(out.resolve()) for p in files]


def _write_index(out: Path, results: list[dict], model: str, warning: str | None,
                 total: float, quick: bool, skipped: str = "") -> Path:
    """One self-contained HTML page (no external URL) linking every notebook and figure."""
    esc = html.escape
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Workbench demo report</title>",
        "<style>body{font-family:DejaVu Sans,Arial,sans-serif;max-width:1100px;margin:2em auto;"
        "color:#222}h2{border-bottom:1px solid #ccc}.warn{background:#fff3cd;border:2px solid "
        "#d39e00;padding:1em;font-weight:bold}.err{background:#fde2e2;padding:.5em;white-space:"
        "pre-wrap;font-family:monospace;font-size:85%}.figs{display:flex;flex-wrap:wrap;gap:1em}"
        ".figs figure{margin:0;max-width:48%}.figs img{max-width:100%;border:1px solid #eee}"
        "figcaption{font-size:85%}td,th{padding:.2em .8em;text-align:left}</style></head><body>",
        "<h1>RoBERTa Workbench: demo report</h1>",
        f"<p>Model: <code>{esc(model)}</code>{' &middot; quick mode' if quick else ''} &middot; "
        f"{len(results)} notebooks in {esc(_fmt(total))} &middot; generated "
        f"{esc(time.strftime('%Y-%m-%d %H:%M'))}</p>",
    ]
    if warning:
        parts.append(f"<p class='warn'>{esc(warning)}</p>")
    if skipped:
        parts.append(f"<p class='warn'>{esc(skipped)}</p>")
    parts.append("<table><tr><th>notebook</th><th>status</th><th>time</th><th>files</th></tr>")
    for r in results:
        status = "FAILED" if r["error"] else "ok"
        parts.append(f"<tr><td><a href='#{esc(r['stem'])}'>{esc(r['stem'])}</a></td>"
                     f"<td>{status}</td><td>{esc(_fmt(r['seconds']))}</td>"
                     f"<td>{len(r['files'])}</td></tr>")
    parts.append("</table>")
    for r in results:
        stem = esc(r["stem"])
        parts.append(f"<h2 id='{stem}'>{stem}: {esc(r['title'])}</h2>")
        parts.append(f"<p><a href='notebooks/{stem}.html'>executed notebook (HTML)</a> &middot; "
                     f"<a href='notebooks/{stem}.ipynb'>.ipynb</a> &middot; "
                     f"{esc(_fmt(r['seconds']))}</p>")
        if r["error"]:
            parts.append(f"<div class='err'>{esc(r['error'][:3000])}</div>")
        images = [f for f in r["files"] if f.suffix.lower() in IMAGE_SUFFIXES]
        others = [f for f in r["files"] if f.suffix.lower() not in IMAGE_SUFFIXES]
        if images:
            parts.append("<div class='figs'>")
            for f in images:
                href = esc(f.as_posix())
                parts.append(f"<figure><a href='{href}'><img src='{href}' alt='{esc(f.name)}'>"
                             f"</a><figcaption>{esc(f.name)}</figcaption></figure>")
            parts.append("</div>")
        if others:
            links = ", ".join(f"<a href='{esc(f.as_posix())}'>{esc(f.name)}</a>" for f in others)
            parts.append(f"<p>Other files: {links}</p>")
    parts.append("</body></html>")
    index = out / "index.html"
    index.write_text("\n".join(parts), encoding="utf-8")
    return index
