"""The import arrows of DESIGN.md: lower layers never import higher ones (checked on the AST)."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "workbench"

# module path prefix -> layer
LAYERS = {
    "errors": 0, "schema": 0, "config": 0, "device": 0, "resources": 0,
    "models": 1, "tokens": 1, "capture": 1, "store": 1,
    "analysis": 2, "training": 2,
    "figures": 3, "plots": 3, "views": 3,
    "widgets": 4,
}
UI_PACKAGES = {"ipywidgets", "IPython", "plotly", "bertviz", "anywidget", "kaleido"}
TORCH_PACKAGES = {"torch", "transformers"}


def _layer_of(rel: str) -> int | None:
    head = rel.split(".")[0]
    return LAYERS.get(head)


def _imports(path: Path, module: str) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out = []
    pkg_parts = module.split(".")[:-1] if path.name != "__init__.py" else module.split(".")
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg_parts[: len(pkg_parts) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
                if node.module is None:
                    out += [f"{name}.{a.name}" for a in node.names]
                else:
                    out.append(name)
            else:
                out.append(node.module)
    return out


def _modules():
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield path, ".".join(parts)


def test_lower_layers_never_import_higher_ones():
    problems = []
    for path, module in _modules():
        inner = module.removeprefix("workbench").lstrip(".")
        layer = _layer_of(inner) if inner else None
        if layer is None:
            continue
        for imp in _imports(path, module):
            top = imp.split(".")[0]
            if layer <= 2 and top in UI_PACKAGES:
                problems.append(f"{module} (layer {layer}) imports {imp}")
            if layer == 3 and top in TORCH_PACKAGES:
                problems.append(f"{module} (layer 3) imports {imp}")
            if top == "workbench":
                target = _layer_of(imp.removeprefix("workbench").lstrip("."))
                if target is not None and target > layer:
                    problems.append(f"{module} (layer {layer}) imports {imp} (layer {target})")
    assert not problems, "\n".join(problems)


def test_checker_catches_a_violation(tmp_path):
    """The walker must see relative imports, else the test above could never fail."""
    fake = tmp_path / "workbench" / "analysis"
    fake.mkdir(parents=True)
    f = fake / "bad.py"
    f.write_text("from ..widgets import thing\nimport plotly.express\n")
    imps = _imports(f, "workbench.analysis.bad")
    assert "workbench.widgets" in imps and "plotly.express" in imps


def test_every_public_name_resolves():
    import workbench as wb

    missing = []
    for name in wb.__all__:
        try:
            getattr(wb, name)
        except Exception as err:  # noqa: BLE001 - report every failure
            missing.append(f"{name}: {type(err).__name__}: {err}")
    assert not missing, "\n".join(missing)


def _import_graph(modules) -> "nx.DiGraph":
    """module -> workbench module it imports (any import, also inside functions), by AST."""
    import networkx as nx

    names = {module for _, module in modules}
    graph = nx.DiGraph()
    for path, module in modules:
        graph.add_node(module)
        for imp in _imports(path, module):
            target = imp or ""
            while target not in names and "." in target:
                target = target.rsplit(".", 1)[0]  # workbench.store.Run -> workbench.store
            if target in names and target != module and target.startswith("workbench"):
                graph.add_edge(module, target)
    return graph


def test_no_import_cycles():
    """No two modules import each other, directly or around a loop: a cycle hides a layering
    mistake from the layer check above (same-layer modules) and breaks partial imports."""
    import networkx as nx

    cycles = list(nx.simple_cycles(_import_graph(list(_modules()))))
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c + c[:1]) for c in cycles)


def test_cycle_checker_catches_a_cycle(tmp_path):
    pkg = tmp_path / "workbench"
    pkg.mkdir()
    (pkg / "a.py").write_text("def f():\n    from .b import g\n")
    (pkg / "b.py").write_text("from . import a\n")
    mods = [(pkg / "a.py", "workbench.a"), (pkg / "b.py", "workbench.b")]
    import networkx as nx

    assert list(nx.simple_cycles(_import_graph(mods)))


def test_no_function_is_over_80_lines():
    """Functions stay readable top to bottom (the project's rule; split a longer one)."""
    long = []
    for path, module in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > 80:
                    long.append(f"{module}.{node.name}: {lines} lines")
    assert not long, "\n".join(long)
