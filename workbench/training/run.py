"""`Run`: the handle on one training run (pretraining or fine-tuning), imported from here.

The class lives in `workbench.store` with the folder layout, the listing and the writer lock it
relies on (one class for a run; `models.load` needs it below the training layer). See there for
the API: `Run.create`, `Run.open`, identity, metrics, checkpoints, `run.lock()` (`wb.load(run)` opens a checkpoint).
"""

from __future__ import annotations

from ..store import STATUSES, Run, RunLock

__all__ = ["Run", "RunLock", "STATUSES"]
