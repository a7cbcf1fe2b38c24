"""Choosing a torch device and dtype: `"auto"` means cuda, then mps, then cpu; bf16 where supported."""

from __future__ import annotations

import torch

from .errors import DeviceError

_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16,
}
VALID_DEVICES = "'auto', 'cpu', 'cuda', 'cuda:N' (N = GPU index) or 'mps'"


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Return a usable device; raise `DeviceError` naming the fix when the request cannot be met."""
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise DeviceError(f"device={device!r} is a {type(device).__name__}; pass a string: "
                          f"{VALID_DEVICES}")
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"device={device!r} is not a device the workbench can use; pass one of "
                          f"{VALID_DEVICES}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(
            f"device={device!r} was requested but torch sees no CUDA GPU "
            f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}). "
            "Use device='auto' or 'cpu', or install a CUDA build of torch (see README: 'Using a GPU')."
        )
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise DeviceError(
            f"device={device!r} but only {torch.cuda.device_count()} CUDA device(s) exist"
        )
    if dev.type == "mps" and not (torch.backends.mps.is_available()):
        raise DeviceError(f"device={device!r} was requested but MPS is not available; use 'cpu'")
    return dev


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """`"auto"` gives bf16 on a CUDA device that supports it, else fp32."""
    if isinstance(dtype, torch.dtype):
        if dtype not in _DTYPES.values():
            raise DeviceError(f"dtype={dtype} is not supported; use 'auto' or one of {sorted(_DTYPES)}")
        return dtype
    if dtype == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    try:
        return _DTYPES[dtype]
    except (KeyError, TypeError):  # TypeError: an unhashable value
        raise DeviceError(f"dtype={dtype!r} is unknown; use 'auto' or one of {sorted(_DTYPES)}") from None


def describe_machine() -> dict:
    """A small description of the machine for benchmark and training records."""
    import os
    import platform

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_count"] = torch.cuda.device_count()
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:  # pragma: no cover
        pass
    return info
