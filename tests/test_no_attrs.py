"""No result metadata in `DataFrame.attrs` (issue 25).

pandas calls `attrs` experimental and drops it on concat, groupby, merge and many filters, so a
frame's metadata lives in documented columns (workbench/schema.py) or a small typed result. This
walks the package, the guided notebooks and the benchmark scripts for any `.attrs` read or write; the frames' columns are
checked where they are computed (tests/test_heads.py, test_representations_attribution.py ...),
and test_no_hidden_state.py checks that no public analysis returns a frame with `attrs`.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _attrs_uses(path: Path, root: Path = ROOT) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [f"{path.relative_to(root)}:{node.lineno}" for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and node.attr == "attrs"]


def test_no_dataframe_attrs_in_the_package_notebooks_or_benchmarks():
    files = sorted((ROOT / "workbench").rglob("*.py")) + sorted((ROOT / "notebooks").glob("*.py")) \
        + sorted((ROOT / "benchmarks").rglob("*.py"))
    assert len(files) > 50                                  # the walk found the sources
    found = [use for path in files for use in _attrs_uses(path)]
    assert found == [], f"`.attrs` used at {found}: return documented columns instead"


def test_the_check_sees_an_attrs_use(tmp_path):
    """The walk is not vacuous: a read and a write of `.attrs` are both found, a docstring that
    names them is not."""
    src = tmp_path / "bad.py"
    src.write_text('"""mentions df.attrs"""\ndf.attrs["x"] = 1\nprint(df.attrs.get("x"))\n',
                   encoding="utf-8")
    assert _attrs_uses(src, tmp_path) == ["bad.py:2", "bad.py:3"]
