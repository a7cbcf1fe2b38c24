"""Checkpoints that resume exactly, with no pickle: safetensors for tensors, JSON for the rest.

One checkpoint is a `save_pretrained` folder (so `wb.load` opens it like any model) plus:

    training_state.safetensors   every tensor of the optimizer and scheduler state, the torch (and
                                 CUDA) RNG states as uint8 tensors, and tensors in the caller's `state`
    training_state.json          the non-tensor rest: step, param groups, scheduler counters, python
                                 and numpy RNG states, the caller's `state`; tensors appear there as
                                 {"__tensor__": key} placeholders pointing into the safetensors file

Nested containers are encoded losslessly: tuples as {"__tuple__": [...]}, dicts with non-string keys
(an optimizer's {param_index: state}) as {"__items__": [[key, value], ...]}.
The folder is written through the store's `writing_checkpoint`, so it appears only when complete.
What stays on disk (`prune`): the newest checkpoint whole, older kept ones (the newest
`keep_last`, the best evaluation) as weights only, nothing else: a fine-tuning run holds one
optimizer state, never one per checkpoint.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

STATE_TENSORS = "training_state.safetensors"
STATE_JSON = "training_state.json"
FORMAT_VERSION = 1


# --------------------------------------------------------------------------- lossless encoding

def _encode(obj: Any, key: str, tensors: dict[str, torch.Tensor]) -> Any:
    if torch.is_tensor(obj):
        tensors[key] = obj.detach().to("cpu").clone().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": str(obj.dtype)}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: _encode(v, f"{key}.{k}", tensors) for k, v in obj.items()}
        return {"__items__": [[_encode(k, f"{key}.k{i}", tensors), _encode(v, f"{key}.{i}", tensors)]
                              for i, (k, v) in enumerate(obj.items())]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, f"{key}.{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, f"{key}.{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {key!r} in a checkpoint "
                    "(only tensors, arrays, numbers, strings, lists, tuples and dicts)")


def _decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__ndarray__" in obj:
            return np.asarray(obj["__ndarray__"], dtype=obj["dtype"])
        if "__tuple__" in obj:
            return tuple(_decode(v, tensors) for v in obj["__tuple__"])
        if "__items__" in obj:
            return {_decode(k, tensors): _decode(v, tensors) for k, v in obj["__items__"]}
        return {k: _decode(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    return obj


def _rng_states() -> dict:
    np_state = np.random.get_state()
    states = {
        "python": random.getstate(),
        "numpy": {"name": np_state[0], "keys": np_state[1].tolist(), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),  # uint8 tensor
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = list(torch.cuda.get_rng_state_all())
    return states


def _set_rng_states(states: dict) -> None:
    random.setstate(states["python"])
    n = states["numpy"]
    np.random.set_state((n["name"], np.asarray(n["keys"], dtype=np.uint32), n["pos"],
                         n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        cuda = states["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


# --------------------------------------------------------------------------- save / load

def save_training_state(folder: str | Path, step: int, optimizer=None, scheduler=None,
                        state: dict | None = None) -> None:
    """Write `training_state.safetensors` + `training_state.json` into `folder`."""
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    payload = {
        "format": FORMAT_VERSION,
        "step": int(step),
        "optimizer": _encode(optimizer.state_dict(), "optimizer", tensors) if optimizer else None,
        "scheduler": _encode(scheduler.state_dict(), "scheduler", tensors) if scheduler else None,
        "rng": _encode(_rng_states(), "rng", tensors),
        "state": _encode(dict(state or {}), "state", tensors),
    }
    folder = Path(folder)
    save_file(tensors, str(folder / STATE_TENSORS), metadata={"format": str(FORMAT_VERSION)})
    (folder / STATE_JSON).write_text(json.dumps(payload))


def save_checkpoint(run, step: int, model, tokenizer, optimizer, scheduler, state: dict | None = None,
                    keep_last: int = 1, keep_steps: Iterable[int | None] = ()) -> Path:
    """Save a complete, resumable checkpoint of `model` at `step` into `run`, then `prune` the rest.

    The folder is `save_pretrained` output (safetensors) + tokenizer + training state; it appears
    as `checkpoints/step-N` only once complete (the store renames a temporary folder into place).
    """
    folder = getattr(run, "folder", run)
    model = getattr(model, "_orig_mod", model)  # a torch.compile wrapper saves its original
    with folder.writing_checkpoint(step) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        save_training_state(tmp, step, optimizer, scheduler, state)
    prune(run, keep_last, keep_steps)
    return folder.path / "checkpoints" / f"step-{step:08d}"


def is_resumable(checkpoint: Path) -> bool:
    return (Path(checkpoint) / STATE_JSON).is_file() and (Path(checkpoint) / STATE_TENSORS).is_file()


def prune(run, keep_last: int = 1, keep_steps: Iterable[int | None] = ()) -> None:
    """Keep the newest checkpoint whole (weights + optimizer state: what a resume needs), the
    `keep_last - 1` before it and those at `keep_steps` (the best evaluation) as weights only,
    and delete the others. The JSON half of the training state goes first, so a kill halfway
    leaves a folder that no resume mistakes for a whole one."""
    checkpoints = run.checkpoints()  # (step, folder), oldest first
    if not checkpoints:
        return
    keep = {s for s in keep_steps if s is not None}
    newest = checkpoints[-1][0]
    recent = {s for s, _ in checkpoints[-max(1, keep_last):]}
    for step, path in checkpoints:
        if step == newest:
            continue
        if step in recent or step in keep:
            for name in (STATE_JSON, STATE_TENSORS):
                (path / name).unlink(missing_ok=True)
        else:
            shutil.rmtree(path, ignore_errors=True)


def resumable_checkpoint(run) -> Path | None:
    """The newest checkpoint that holds a whole training state, or None (resume from step 0)."""
    for _, path in reversed(run.checkpoints()):
        if is_resumable(path):
            return path
    return None


def disk_mb(path: str | Path) -> float:
    """Size of everything under `path` in MB (10^6 bytes)."""
    total = sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
    return round(total / 1e6, 2)


def load_model_weights(folder: str | Path, model) -> None:
    """Load `model.safetensors` from `folder` into `model` in place (tied weights may be absent)."""
    from safetensors.torch import load_file

    model = getattr(model, "_orig_mod", model)
    weights = load_file(str(Path(folder) / "model.safetensors"))
    missing, unexpected = model.load_state_dict(weights, strict=False)
    # a missing key is fine only if it shares its storage with a loaded one (tied embeddings)
    params = dict(model.named_parameters(remove_duplicate=False))
    loaded_ptrs = {params[k].data_ptr() for k in weights if k in params}
    really_missing = [k for k in missing if k not in params or params[k].data_ptr() not in loaded_ptrs]
    if really_missing or unexpected:
        raise RuntimeError(f"checkpoint {folder} does not match the model: missing "
                           f"{really_missing[:5]}, unexpected {list(unexpected)[:5]}")


def load_training_state(folder: str | Path, model=None, optimizer=None, scheduler=None,
                        restore_rng: bool = True) -> dict:
    """Restore model weights, optimizer, scheduler and RNG states saved by `save_checkpoint`.

    Returns the caller's `state` dict with `"step"` added. Create the optimizer and scheduler the
    same way as in the original run (same param order, same schedule function) before calling.
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    if not (folder / STATE_JSON).exists():
        raise FileNotFoundError(f"{folder} has no {STATE_JSON}: it is not a resumable checkpoint "
                                "(pick a folder under <run>/checkpoints/)")
    tensors = load_file(str(folder / STATE_TENSORS))
    payload = json.loads((folder / STATE_JSON).read_text())
    if model is not None:
        load_model_weights(folder, model)
    if optimizer is not None and payload["optimizer"] is not None:
        optimizer.load_state_dict(_decode(payload["optimizer"], tensors))
    if scheduler is not None and payload["scheduler"] is not None:
        scheduler.load_state_dict(_decode(payload["scheduler"], tensors))
    if restore_rng:
        _set_rng_states(_decode(payload["rng"], tensors))
    state = _decode(payload["state"], tensors)
    state["step"] = payload["step"]
    return state
