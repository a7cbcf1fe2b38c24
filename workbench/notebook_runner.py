"""Run a guided notebook headless, papermill-style, and keep what it produced.

`execute_notebook("notebooks/01_tour.py", "out/01_tour.ipynb", parameters={"MODEL": path})`
reads a jupytext percent `.py` (or an `.ipynb`), finds the code cell tagged `parameters`,
inserts a cell right after it that overrides those names, executes every cell in a fresh
kernel with a per-cell timeout, writes the executed `.ipynb` (and optionally an HTML export)
and raises `NotebookExecutionError` naming the notebook and the failing cell on any error.

`sync_notebooks(folder)` writes the `.ipynb` that JupyterLab opens beside every `NN_name.py`
(the only tracked form; the `.ipynb` is ignored by git), paired with its `.py` through jupytext.

Used by `make demo` (workbench/demo.py), `make lab` (workbench/cli.py) and by
tests/test_notebooks.py. Not in a layer: it only drives a kernel, it never imports the analyses.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from .errors import InputError, WorkbenchError

PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"
PAIRING = "ipynb,py:percent"   # jupytext formats: the .ipynb JupyterLab opens, the .py git tracks
GUIDED = re.compile(r"\d\d_\w+\.py$")  # a guided notebook's source: NN_name.py


class NotebookExecutionError(WorkbenchError, RuntimeError):
    """A cell of a notebook raised (or timed out) while the notebook ran headless."""

    def __init__(self, message: str, *, notebook: str, cell_index: int | None,
                 ename: str = "", evalue: str = ""):
        super().__init__(message)
        self.notebook = notebook
        self.cell_index = cell_index
        self.ename = ename
        self.evalue = evalue


def read_notebook(path: str | Path):
    """The notebook at `path` (.ipynb, or a jupytext text file such as percent .py) as nbformat."""
    import jupytext
    import nbformat

    path = Path(path)
    if not path.exists():
        raise InputError(f"notebook {str(path)!r} does not exist: pass the path of a .py or .ipynb")
    if path.suffix == ".ipynb":
        return nbformat.read(path, as_version=4)
    return jupytext.read(path)


def guided_sources(folder: str | Path) -> list[Path]:
    """The guided notebooks' jupytext sources in `folder`, `NN_name.py`, in order."""
    return sorted(p for p in Path(folder).glob("*.py") if GUIDED.match(p.name))


def sync_notebooks(folder: str | Path) -> list[Path]:
    """Write `NN_name.ipynb` beside every `NN_name.py` in `folder` that has none; returns them.

    The `.ipynb` is paired with its `.py` (jupytext formats in its metadata), so JupyterLab, with
    the jupytext extension, reads the cells from the `.py` and the outputs from the `.ipynb` on
    open, and saving writes both: the `.py` byte-identical unless a cell changed (the metadata
    filters in `notebooks/jupytext.toml`), the outputs only into the `.ipynb`, which git ignores.
    An existing `.ipynb` is left alone: it holds the user's outputs, and jupytext takes the cells
    from the `.py` when that is newer (after a `git pull`)."""
    import jupytext
    from jupytext.config import load_jupytext_config

    config = load_jupytext_config(str(Path(folder).resolve()))
    written = []
    for source in guided_sources(folder):
        target = source.with_suffix(".ipynb")
        if target.exists():
            continue
        nb = jupytext.read(source, config=config)
        nb.metadata.setdefault("jupytext", {})["formats"] = PAIRING
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}
        jupytext.write(nb, target, config=config)
        written.append(target)
    return written


def parameters_source(parameters: dict) -> str:
    """Python source assigning each parameter (values must round-trip through repr)."""
    lines = ["# Parameters injected by workbench.notebook_runner"]
    for name, value in parameters.items():
        if not str(name).isidentifier():
            raise InputError(f"parameter name {name!r} is not a Python identifier")
        if isinstance(value, Path):
            value = str(value)
        text = repr(value)
        try:
            import ast

            ast.literal_eval(text)
        except (ValueError, SyntaxError) as err:
            raise InputError(f"parameter {name}={text[:60]} is not a literal (str, number, bool, "
                             "None, list, dict): pass plain values") from err
        lines.append(f"{name} = {text}")
    return "\n".join(lines) + "\n"


def inject_parameters(nb, parameters: dict, *, name: str = "notebook"):
    """Insert a cell after the one tagged 'parameters' that overrides `parameters`; returns nb."""
    import nbformat

    if not parameters:
        return nb
    index = next((i for i, c in enumerate(nb.cells)
                  if c.cell_type == "code" and PARAMETERS_TAG in c.metadata.get("tags", [])), None)
    if index is None:
        raise InputError(f"{name} has no code cell tagged 'parameters': add "
                         "`# %% tags=[\"parameters\"]` above the cell holding MODEL and the sizes")
    nb.cells = [c for c in nb.cells if INJECTED_TAG not in c.metadata.get("tags", [])]
    cell = nbformat.v4.new_code_cell(parameters_source(parameters))
    cell.metadata["tags"] = [INJECTED_TAG]
    nb.cells.insert(index + 1, cell)
    return nb


def _first_error(nb) -> tuple[int | None, str, str]:
    """(index, ename, evalue) of the first cell whose outputs hold an error."""
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                return i, out.get("ename", ""), out.get("evalue", "")
    return None, "", ""


# <script src="http(s)://..."> (or "//..."), and the empty ones left by unset URLs
_REMOTE_SCRIPT = re.compile(r'<script\b[^>]*\ssrc="(?:(?:https?:)?//[^"]*)?"[^>]*>\s*</script>')


def export_html(nb, path: str | Path) -> Path:
    """Write `nb` as a standalone HTML page (JupyterLab look, code and outputs) that opens offline.

    plotly.js is already inline in the outputs (the kernel's renderer embeds it). nbconvert's
    template would fetch require.js and MathJax from a CDN, and plotly's output MathJax too; those
    script tags are dropped, so the page never touches the network (LaTeX shows as its source)."""
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab", mathjax_url="", require_js_url="")
    body, _ = exporter.from_notebook_node(nb)
    body = _REMOTE_SCRIPT.sub("", body)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body, encoding="utf-8")
    return path


def execute_notebook(source: str | Path, output: str | Path | None = None, *,
                     parameters: dict | None = None, html: str | Path | None = None,
                     timeout: int = 600, cwd: str | Path | None = None,
                     kernel_name: str = "python3", env: dict | None = None,
                     on_cell=None):
    """Execute the notebook `source` headless and return the executed nbformat notebook.

    parameters: names to override after the cell tagged `parameters` (e.g. MODEL, QUICK).
    output: where to write the executed .ipynb (also written when a cell fails, for debugging).
    html: where to write an HTML export of the executed notebook.
    timeout: seconds allowed per cell. cwd: the kernel's working directory (default: a
    `<output stem>_files` folder beside `output`, else the notebook's folder).
    env: extra environment variables for the kernel (merged over this process's).
    on_cell: optional callback `on_cell(index, n_cells, cell)` called as each cell starts.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    source = Path(source)
    name = source.name
    nb = inject_parameters(read_notebook(source), dict(parameters or {}), name=name)
    if cwd is None:
        cwd = source.resolve().parent
    Path(cwd).mkdir(parents=True, exist_ok=True)

    kernel_env = dict(os.environ)  # HF_HUB_OFFLINE too: a hub model may need the network once
    kernel_env.setdefault("TOKENIZERS_PARALLELISM", "false")
    # mimetype for JupyterLab + inline HTML with plotly.js embedded, so exported HTML works offline
    kernel_env.setdefault("PLOTLY_RENDERER", "plotly_mimetype+notebook")
    kernel_env.update(env or {})

    client = NotebookClient(nb, timeout=timeout, kernel_name=kernel_name,
                            resources={"metadata": {"path": str(cwd)}},
                            # widget state would embed plotly.js once per FigureWidget (~5 MB
                            # each) and static HTML cannot render widgets offline anyway
                            record_timing=True, store_widget_state=False,
                            # the kernel's own log (its start-up notices, e.g. "running over TCP
                            # without encryption" for a local kernel) is noise in a headless
                            # run; cell outputs and errors are unaffected
                            extra_arguments=["--IPKernelApp.log_level=ERROR"])
    if on_cell is not None:
        client.on_cell_start = lambda cell, cell_index: on_cell(cell_index, len(nb.cells), cell)
    failure = None
    start = time.perf_counter()
    try:
        client.execute(env=kernel_env)
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as err:
        failure = err
    elapsed = time.perf_counter() - start
    nb.metadata.setdefault("workbench", {})["execution_seconds"] = round(elapsed, 2)

    if output is not None:
        output = Path(output)
        output.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, output)
    if html is not None:
        export_html(nb, html)

    if failure is not None:
        index, ename, evalue = _first_error(nb)
        if isinstance(failure, CellTimeoutError):
            ename, evalue = "CellTimeoutError", f"a cell ran longer than {timeout} s"
            index = _running_cell(nb)
        elif isinstance(failure, DeadKernelError):
            ename, evalue = "DeadKernelError", "the kernel died (out of memory?)"
            index = _running_cell(nb)
        snippet = ""
        if index is not None:
            snippet = "\n    " + "\n    ".join(nb.cells[index].source.splitlines()[:6])
        where = f"cell {index}" if index is not None else "an unknown cell"
        saved = f"\nThe executed notebook with the traceback is at {output}" if output else ""
        raise NotebookExecutionError(
            f"{name} failed in {where}: {ename}: {evalue}{snippet}{saved}\n\n{failure}"[:6000],
            notebook=name, cell_index=index, ename=ename, evalue=evalue) from None
    return nb


def _running_cell(nb) -> int | None:
    """Index of the last code cell that started executing (the one a timeout interrupted)."""
    last = None
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and cell.metadata.get("execution", {}).get(
                "iopub.execute_input"):
            last = i
    return last
