"""Checkpoints that resume exactly, with no pickle: safetensors for tensors, JSON for the rest.

One checkpoint is a `save_pretrained` folder (so `wb.load` opens it like any model) plus:

    training_state.safetensors   every tensor of the optimizer and scheduler state, the torch (and
                                 CUDA) RNG states as uint8 tensors, and tensors in the caller's `state`
    training_state.json          the non-tensor rest: step, param groups, scheduler counters, python
                                 and numpy RNG states, the caller's `state`; tensors appear there as
                                 {"__tensor__": key} placeholders pointing into the safetensors file

Nested containers are encoded losslessly: tuples as {"__tuple__": [...]}, dicts with non-string keys
(an optimizer's {param_index: state}) as {"__items__": [[key, value], ...]}.
The folder is written through the store's `writing_checkpoint`, so it appears only when complete,
with a `manifest.json` holding the SHA-256 of every file (`store.verify_checkpoint`).

What stays on disk while a run is live (`prune`): the newest RESUMABLE_STATES (2) checkpoints
whole, so a damaged newest one still leaves one to resume from (`resume_point` falls back to it and
says so); older kept ones (the newest `keep_last`, the best evaluation) as weights only; nothing
else. When a run ends (`finalize`: completed or early-stopped) the optimizer state goes unless the
config keeps it (`keep_optimizer_state`), and weights-only checkpoints are stored in the dtype
the base model was stored in (fp16 for the demo model) unless a weight would not fit in it.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from ..errors import CheckpointCorruptError, InputError, RunStoreError
from ..store import MANIFEST, STATE_PREFIX, describe_os_error, verify_checkpoint

logger = logging.getLogger(__name__)

STATE_TENSORS = STATE_PREFIX + "safetensors"
STATE_JSON = STATE_PREFIX + "json"
FORMAT_VERSION = 1
RESUMABLE_STATES = 2  # checkpoints that keep their optimizer state while a run is live
WEIGHTS_ONLY = "weights only (no optimizer state)"
_SAFETENSORS_DTYPES = {"F16": "float16", "BF16": "bfloat16", "F32": "float32", "F64": "float64"}


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

    The folder is `save_pretrained` output (safetensors) + tokenizer + training state + manifest;
    it appears as `checkpoints/step-N` only once complete (the store renames a temporary folder
    into place). A write that fails (disk full, read-only folder) leaves the run's other
    checkpoints as they were and raises RunStoreError saying so.
    """
    from safetensors import SafetensorError

    folder = getattr(run, "folder", run)
    model = getattr(model, "_orig_mod", model)  # a torch.compile wrapper saves its original
    try:
        with folder.writing_checkpoint(step) as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
            if tokenizer is not None:
                tokenizer.save_pretrained(tmp)
            save_training_state(tmp, step, optimizer, scheduler, state)
    except (OSError, SafetensorError) as err:
        raise _write_failed(run, step, err) from None
    prune(run, keep_last, keep_steps)
    return folder.path / "checkpoints" / f"step-{step:08d}"


def _write_failed(run, step: int, err: BaseException) -> RunStoreError:
    kept = [s for s, _ in run.checkpoints()]
    intact = (f"its checkpoints at steps {kept} and its metrics are intact" if kept
              else "its metrics are intact (it has no checkpoint yet: a resume starts at step 0)")
    kind = run.kind
    return RunStoreError(
        f"could not write the checkpoint at step {step} of run {run.id}: {describe_os_error(err)} "
        f"(in {run.path}). Nothing is lost: the partial checkpoint was removed and {intact}. "
        f"Free space or make the folder writable, then resume it: wb.{kind}(resume={run.id!r}) "
        f"or `workbench {kind} --resume {run.id}`.")


def is_resumable(checkpoint: Path) -> bool:
    return (Path(checkpoint) / STATE_JSON).is_file() and (Path(checkpoint) / STATE_TENSORS).is_file()


def prune(run, keep_last: int = 1, keep_steps: Iterable[int | None] = (),
          resumable: int = RESUMABLE_STATES) -> None:
    """Keep the newest `resumable` checkpoints whole (weights + optimizer state: what a resume
    needs; the second is the fallback if the newest is damaged), the newest `keep_last` and those
    at `keep_steps` (the best evaluation) as weights only, and delete the others. The JSON half of
    the training state goes first, so a kill halfway leaves a folder that no resume mistakes for a
    whole one."""
    checkpoints = run.checkpoints()  # (step, folder), oldest first
    if not checkpoints:
        return
    keep = {s for s in keep_steps if s is not None}
    whole = {s for s, _ in checkpoints[len(checkpoints) - resumable:]} if resumable else set()
    recent = {s for s, _ in checkpoints[-max(1, keep_last):]}
    for step, path in checkpoints:
        if step in whole:
            continue
        if step in recent or step in keep:
            for name in (STATE_JSON, STATE_TENSORS):
                (path / name).unlink(missing_ok=True)
        else:
            shutil.rmtree(path, ignore_errors=True)


def resumable_checkpoint(run) -> Path | None:
    """The newest intact checkpoint that holds a whole training state, or None (see `resume_point`)."""
    return resume_point(run)[0]


def resume_point(run, restart: bool = False) -> tuple[Path | None, dict | None]:
    """Where a resume starts: (the newest checkpoint that holds a whole training state and passes
    `verify_checkpoint`, a note or None). The note ({"step", "newest_step", "skipped": [{"step",
    "why"}]}) says which newer checkpoints were passed over and why; it is logged here and the
    spine records it in run.json. (None, None): the run has no checkpoint (killed before its
    first one): start over at step 0. When checkpoints exist but none can resume, raise
    (CheckpointCorruptError if any is damaged, else InputError) unless `restart`: then
    (None, note with "restart": True listing them), and `discard_checkpoints(run, note)` deletes
    them once nothing can refuse the input any more (the run then starts over at step 0)."""
    checkpoints = run.checkpoints()
    skipped = []
    for step, path in reversed(checkpoints):
        if not is_resumable(path):
            skipped.append({"step": step, "why": WEIGHTS_ONLY})
            continue
        try:
            verify_checkpoint(path, state=True)
        except CheckpointCorruptError as err:
            skipped.append({"step": step, "why": str(err)})
            continue
        if not skipped:
            return path, None
        note = {"step": step, "newest_step": checkpoints[-1][0], "skipped": skipped}
        logger.warning("run %s resumes from its checkpoint at step %d, not from the newer %s: %s",
                       run.id, step, [k["step"] for k in skipped], _listed(skipped))
        return path, note
    if not checkpoints:
        return None, None
    if not restart:
        damaged = any(k["why"] != WEIGHTS_ONLY for k in skipped)
        ended = "" if damaged else (
            f" (run {run.id} is {run.info.get('status')}: a run drops its optimizer state when it "
            "completes unless its config sets keep_optimizer_state=True)")
        raise (CheckpointCorruptError if damaged else InputError)(
            f"no checkpoint of run {run.id} can resume it: {_listed(skipped)}{ended}. Pass "
            "restart=True (CLI: --restart) to train it again from step 0 in the same run (its "
            "checkpoints are deleted), or start a new run from one of them with "
            "wb.load(run.checkpoint(N))")
    return None, {"step": 0, "newest_step": checkpoints[-1][0], "skipped": skipped,
                  "restart": True}


def discard_checkpoints(run, note: dict) -> None:
    """Delete the checkpoints a restart (`resume_point(run, restart=True)`'s `note`) passed over."""
    for _, path in run.checkpoints():
        shutil.rmtree(path, ignore_errors=True)
    logger.warning("run %s restarts from step 0 as asked; its checkpoints were deleted: %s",
                   run.id, _listed(note["skipped"]))


def _listed(skipped: list[dict]) -> str:
    return "; ".join(f"step {k['step']}: {k['why']}" for k in skipped)


def weights_dtype(folder: str | Path | None) -> str | None:
    """The dtype most weights in the checkpoint `folder` are stored in ('float16', 'float32', ...),
    read from the safetensors headers; None when unknown (no local safetensors)."""
    from safetensors import safe_open

    if folder is None or not Path(folder).is_dir():
        return None
    counts: dict[str, int] = {}
    for path in sorted(Path(folder).glob("*.safetensors")):
        if path.name.startswith(STATE_PREFIX):
            continue
        with safe_open(str(path), framework="pt") as handle:
            for key in handle.keys():
                name = _SAFETENSORS_DTYPES.get(handle.get_slice(key).get_dtype())
                if name:
                    counts[name] = counts.get(name, 0) + 1
    return max(counts, key=counts.get) if counts else None


def finalize(run, keep_last: int = 1, keep_steps: Iterable[int | None] = (),
             keep_state: bool = False, dtype: str | None = None) -> None:
    """What an ended run keeps: with `keep_state` the newest checkpoint whole (as before manifests);
    otherwise every kept checkpoint weights only, the weights in `dtype` (the base model's stored
    dtype) when that is narrower than theirs and every weight fits in it."""
    prune(run, keep_last, keep_steps, resumable=1 if keep_state else 0)
    if keep_state or dtype not in ("float16", "bfloat16"):
        return
    for step, path in run.checkpoints():
        _store_weights_as(run, step, path, getattr(torch, dtype))


def _store_weights_as(run, step: int, path: Path, dtype: torch.dtype) -> None:
    """Rewrite the weights-only checkpoint at `step` with its float32 weights cast to `dtype`
    (through `writing_checkpoint`: the old folder is replaced only once the new one is whole)."""
    from safetensors.torch import load_file, save_file

    source = path / "model.safetensors"
    if not source.is_file():
        return  # sharded weights: left as they are
    try:  # never re-hash a damaged file into a new manifest
        verify_checkpoint(path)
    except CheckpointCorruptError as err:
        logger.warning("checkpoint %s is left as it is: %s", path, err)
        return
    weights = load_file(str(source))
    if not any(t.dtype == torch.float32 for t in weights.values()):
        return
    cast = {k: t.to(dtype) if t.dtype == torch.float32 else t for k, t in weights.items()}
    if not all(torch.isfinite(t).all() for t in cast.values() if t.is_floating_point()):
        logger.warning("checkpoint %s keeps float32 weights: some do not fit in %s", path, dtype)
        return
    config = json.loads((path / "config.json").read_text())
    config["dtype"] = str(dtype).removeprefix("torch.")
    with run.writing_checkpoint(step) as tmp:
        for f in path.iterdir():
            if f.is_file() and f.name not in (MANIFEST, "model.safetensors", "config.json") \
                    and not f.name.startswith(STATE_PREFIX):
                shutil.copy2(f, tmp / f.name)
        save_file(cast, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


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
