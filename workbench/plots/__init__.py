"""Figures: tidy DataFrame -> plotly figure, in the paper theme. One module per analysis family.

Layer 3: plots read DataFrames and never compute or import torch. Submodules load lazily:
`wb.plots.attention.attention_heatmap(df)`, `wb.plots.probing`, `wb.plots.heads`, ...
"""

from __future__ import annotations

import importlib
import pkgutil

_FAMILIES = sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
__all__ = list(_FAMILIES)


def __getattr__(name: str):
    if name in _FAMILIES:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
