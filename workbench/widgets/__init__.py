"""ipywidgets views: read controls -> call an analysis -> call a plot -> show.

Widgets are imported lazily so `wb.widgets` does not load every view's dependencies at once.
"""

from __future__ import annotations

import importlib

_WIDGETS: dict[str, str] = {
    # name -> module under workbench.widgets
    # --- attention (issue 3) ---
    "AttentionExplorer": "attention_explorer",
    # --- probing (issue 4) ---
    "MaskProbe": "mask_probe",
    # --- pretraining (issue 5) ---
    "PretrainRun": "pretrain_run",
    # --- fine-tuning (issue 6) ---
    "FineTuneRun": "finetune_run",
    "RunMonitor": "training_monitor",
    # --- heads (issue 7) ---
    "HeadExplorer": "head_explorer",
    # --- representations (issue 9) ---
    "ProbeLab": "probe_lab",
    "AttributionView": "attribution_panel",
    "attribution_view": "attribution_panel",  # module named apart: a submodule import would shadow the function
    # --- beyond the peers (issue 19) ---
    "QKAtlas": "qk_atlas",
    # --- context mixing, patching, pruning (issue 23) ---
    "PatchProbe": "patch_probe",
}

__all__ = sorted(_WIDGETS)


def __getattr__(name: str):
    if name in _WIDGETS:
        value = getattr(importlib.import_module(f"workbench.widgets.{_WIDGETS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'workbench.widgets' has no attribute {name!r}")
