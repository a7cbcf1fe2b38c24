"""Exception types the workbench raises on bad input.

Every error names the problem and the fix. They all derive from `WorkbenchError` so a notebook
can catch one type; each also derives from the builtin a Python user would expect (ValueError,
FileNotFoundError, ...), so existing `except ValueError` code keeps working.
"""

from __future__ import annotations


class WorkbenchError(Exception):
    """Base class of every error the workbench raises on purpose."""


class ModelNotFoundError(WorkbenchError, FileNotFoundError):
    """A model name or path could not be resolved to weights."""


class MissingHeadError(WorkbenchError, RuntimeError):
    """An analysis needs a part of the model (e.g. the MLM head) that this checkpoint lacks."""


class DeviceError(WorkbenchError, RuntimeError):
    """The requested device is not available on this machine."""


class InputError(WorkbenchError, ValueError):
    """User input (texts, columns, parameters) is malformed."""


class MissingDependencyError(WorkbenchError, ImportError):
    """An optional dependency is needed for this feature."""


class RunLockedError(WorkbenchError, RuntimeError):
    """A run is locked by a live writer (another process, or another handle): it cannot be
    resumed or written until that writer ends. The message names its pid and host."""


class CheckpointCorruptError(ModelNotFoundError):
    """A checkpoint's files do not match the hashes its manifest recorded when it was written (a
    flipped byte, a truncated file, a missing file): the message names the file."""


class RunStoreError(WorkbenchError, OSError):
    """The run store could not be written (disk full, read-only folder, ...). The message says
    what was being written, what is intact, and how to resume once the cause is fixed."""
