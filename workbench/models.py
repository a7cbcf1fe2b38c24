"""Loading encoders: `load(name_or_path) -> LM`, the one object every analysis and training call takes.

`LM` keeps the model on sdpa attention (fast, for training and inference) and switches it to eager
attention only inside `lm.eager_attention()`, because transformers 5 returns an *empty* tuple for
`output_attentions=True` under sdpa. Analyses that need attention weights go through
`workbench.capture`, which does that switch and checks the weights are really there.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch

from .device import resolve_device, resolve_dtype
from .config import check_choice
from .errors import InputError, MissingHeadError, ModelNotFoundError
from .resources import demo_model_dir
from .store import is_run_folder, resolve_checkpoint
from .tokens import TokenView, token_view

DEMO_NAME = "demo"
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                    "vocab.json", "added_tokens.json")


@dataclass
class LM:
    """A loaded encoder: `.model`, `.tokenizer`, `.device`, `.name`.

    `kind` is "mlm" (masked-LM head present), "classifier" (a fine-tuned sequence classifier) or
    "encoder" (no task head: attention and representation analyses work, fill-mask does not).
    """

    model: torch.nn.Module
    tokenizer: object
    device: torch.device
    name: str
    kind: str = "mlm"
    path: str | None = None
    missing_head_reason: str | None = None
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def config(self):
        return self.model.config

    @property
    def has_mlm_head(self) -> bool:
        return self.kind == "mlm"

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def encoder(self) -> torch.nn.Module:
        """The bare transformer (no task head)."""
        return self.model.base_model

    @property
    def num_layers(self) -> int:
        return self.model.config.num_hidden_layers

    @property
    def num_heads(self) -> int:
        return self.model.config.num_attention_heads

    @property
    def max_length(self) -> int:
        """Tokens the model takes in one text, specials included (analyses refuse longer texts)."""
        n = int(getattr(self.config, "max_position_embeddings", 512))
        if getattr(self.config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
            n -= 2  # RoBERTa's position table has 2 extra slots (the padding_idx offset)
        tok_max = getattr(self.tokenizer, "model_max_length", None)
        return tok_max if isinstance(tok_max, int) and 0 < tok_max < n else n  # huge = unset

    @property
    def mask_token(self) -> str:
        return self.tokenizer.mask_token

    def require_mlm_head(self, analysis: str) -> None:
        if not self.has_mlm_head:
            raise MissingHeadError(
                f"{analysis} needs a masked-LM head, but {self.name!r} was loaded as "
                f"{self.kind!r} ({self.missing_head_reason or 'no MLM head in the checkpoint'}). "
                "Attention, head and representation analyses still work; for masked-token "
                "probing load a checkpoint with an MLM head (e.g. 'roberta-base' or a pretraining run)."
            )

    def tokens(self, text: str, text_pair: str | None = None) -> TokenView:
        """Readable tokens, special-token flags and word spans of `text` (see `workbench.tokens`)."""
        for name, value in (("text", text), ("text_pair", text_pair)):
            if not isinstance(value, str) and not (name == "text_pair" and value is None):
                many = " (one text: loop over a list)" if isinstance(value, (list, tuple)) else ""
                raise InputError(f"lm.tokens({name}={_short(value)}): a {type(value).__name__}"
                                 f"{many}; pass a string")
        return token_view(self.tokenizer, text, text_pair)

    @contextlib.contextmanager
    def eager_attention(self) -> Iterator[None]:
        """Run the block with eager attention so `output_attentions=True` returns real weights."""
        before = self.model.config._attn_implementation
        if before == "eager":
            yield
            return
        self.model.set_attn_implementation("eager")
        try:
            yield
        finally:
            self.model.set_attn_implementation(before)

    def __repr__(self) -> str:
        return (f"LM(name={self.name!r}, kind={self.kind!r}, layers={self.num_layers}, "
                f"heads={self.num_heads}, device={self.device}, dtype={self.dtype})")


def _has_weights(folder: Path) -> bool:
    return any((folder / f).exists() for f in _WEIGHT_FILES)


def _check_json(path: Path) -> dict:
    """A JSON object read from `path`, or `ModelNotFoundError` naming the corrupt file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelNotFoundError(
            f"{path} is corrupt (not valid UTF-8 JSON: {err}); the save was probably interrupted: "
            "save the model again or pick another checkpoint") from None
    if not isinstance(data, dict):
        raise ModelNotFoundError(f"{path} holds a JSON {type(data).__name__}, not an object; "
                                 "save the model again with save_pretrained")
    return data


def _check_safetensors(path: Path) -> None:
    """Open the header of a safetensors file (cheap: memory-mapped) so a truncated or corrupt file
    is refused by name instead of failing deep inside transformers."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            handle.keys()
    except (SafetensorError, OSError) as err:
        raise ModelNotFoundError(
            f"{path} is corrupt or truncated ({err}); the save or download was probably "
            "interrupted: save the model again, download it again or pick another checkpoint"
        ) from None


def _check_local_files(folder: Path) -> None:
    """Refuse a local checkpoint whose config, tokenizer files or weights are unreadable."""
    config = _check_json(folder / "config.json")
    if "model_type" not in config:
        raise ModelNotFoundError(f"{folder / 'config.json'} has no 'model_type' key: it was not "
                                 "written by save_pretrained; save the model again")
    for name in _TOKENIZER_FILES:
        if (folder / name).is_file():
            _check_json(folder / name)
    index = folder / "model.safetensors.index.json"
    if (folder / "model.safetensors").is_file():
        _check_safetensors(folder / "model.safetensors")
    elif index.is_file():
        shards = sorted(set(_check_json(index).get("weight_map", {}).values()))
        for shard in shards:
            if not (folder / shard).is_file():
                raise ModelNotFoundError(f"{index} lists {shard}, which is missing from {folder}")
            _check_safetensors(folder / shard)


def _resolve_source(name_or_path, step: int | str | None = None) -> tuple[str, str | None]:
    """Return (what to pass to from_pretrained, local path or None)."""
    if hasattr(name_or_path, "path") and not isinstance(name_or_path, (str, os.PathLike)):
        name_or_path = name_or_path.path  # a Run or RunFolder
    if not isinstance(name_or_path, (str, os.PathLike)) or not str(name_or_path).strip():
        raise InputError(
            f"name_or_path={name_or_path!r}: pass a hub id such as 'roberta-base', a local folder, "
            "a workbench run (folder or Run), or 'demo' for the embedded default model")
    if step is not None and not is_run_folder(Path(str(name_or_path)).expanduser()):
        raise InputError(f"step={step!r} applies to a workbench run; {name_or_path!r} is not one")
    if str(name_or_path) == DEMO_NAME:
        path = demo_model_dir()
        if not _has_weights(path):
            raise ModelNotFoundError(
                f"the embedded default model is missing at {path}. It ships with the repository "
                "(workbench/data/demo-model, package data); reinstall the package, or rebuild it with "
                "`workbench pretrain --preset demo` (see data/README.md)."
            )
        _check_local_files(path)
        return str(path), str(path)
    path = Path(str(name_or_path)).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelNotFoundError(f"{path} is a file; pass the folder that holds config.json")
        path = resolve_checkpoint(path, step)  # a run's checkpoint, verified by its hashes
        if not (path / "config.json").exists():
            raise ModelNotFoundError(
                f"{path} has no config.json: pass a folder written by save_pretrained, "
                "a workbench run folder, or a hub id such as 'roberta-base'"
            )
        if not _has_weights(path):
            raise ModelNotFoundError(
                f"{path} has a config.json but no weights (expected one of {list(_WEIGHT_FILES)}); "
                "the save may have been interrupted: save the model again or pick another checkpoint"
            )
        _check_local_files(path)
        return str(path), str(path)
    if str(name_or_path).startswith((".", "/", "~")):
        raise ModelNotFoundError(f"no such folder: {path}")
    return str(name_or_path), None


def check_source(name_or_path) -> str:
    """Check a model argument without loading it (for commands that must refuse a bad model before
    writing anything): a local folder, run or 'demo' must exist and hold readable config,
    tokenizer and weight files; a hub id is returned as it is (loading will say if it is missing).
    Returns what `load` would pass to transformers."""
    return _resolve_source(name_or_path)[0]


def _hub_error(name: str, err: Exception) -> ModelNotFoundError:
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    why = "HF_HUB_OFFLINE is set" if offline else "the hub is unreachable or has no such model"
    return ModelNotFoundError(
        f"model {name!r} is not in the local cache and could not be downloaded ({why}): "
        "pass a local folder (written by save_pretrained), a workbench run folder, 'demo' for the "
        f"embedded default model, or connect to the network. Underlying error: {type(err).__name__}"
    )


def _load_tokenizer(source: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
    if not getattr(tok, "is_fast", False):
        raise ModelNotFoundError(
            f"{source!r} has only a slow tokenizer; the workbench needs a fast tokenizer "
            "(offsets for word spans). Save one with tokenizer.save_pretrained from a fast tokenizer."
        )
    return tok


def load(name_or_path, *, step: int | str | None = None, device: str | torch.device = "auto",
         dtype: str | torch.dtype = "auto", task: str = "auto") -> LM:
    """Load a RoBERTa-family checkpoint as an `LM`.

    `name_or_path`: a hub id ('roberta-base', 'xlm-roberta-base', 'bert-base-uncased', ...), a
    folder written by `save_pretrained`, a workbench run folder (the checkpoint of a finished
    fine-tuning run's best evaluation, else its latest), a `Run`,
    or 'demo' for the embedded default model. For a run, `step=None` opens its best checkpoint
    (a finished fine-tuning run's best evaluation), else its latest; `step="latest"` or a step
    number picks one. `device="auto"` picks cuda, then mps, then cpu;
    `dtype="auto"` picks bf16 on a CUDA device that supports it, else fp32. `task` is "auto",
    "mlm", "classifier" or "encoder".

    >>> lm = load("demo")                               # doctest: +SKIP
    >>> lm.tokens("Hello world").tokens                  # doctest: +SKIP
    ['<s>', 'Hello', 'world', '</s>']
    """
    check_choice("task", task, ("auto", "mlm", "classifier", "encoder"))
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    source, local = _resolve_source(name_or_path, step)
    display = Path(local).name if local else source
    if local and is_run_folder(Path(local).parent.parent):
        display = f"{Path(local).parent.parent.name}/{Path(local).name}"
    config, tokenizer = _read_config_and_tokenizer(source, local)
    archs = config.architectures or []
    if task == "auto":
        task = "classifier" if any("SequenceClassification" in a for a in archs) else "mlm"
    model, task, missing_reason = _load_weights(source, local, task, torch_dtype,
                                                archs or config.model_type)
    model.to(dev)
    model.eval()
    return LM(model=model, tokenizer=tokenizer, device=dev, name=display, kind=task,
              path=local, missing_head_reason=missing_reason)


def _read_config_and_tokenizer(source: str, local: str | None):
    """(config, tokenizer) of `source`, or a ModelNotFoundError saying what is wrong."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(source, trust_remote_code=False), _load_tokenizer(source)
    except OSError as err:
        if local:
            raise ModelNotFoundError(f"could not read {local}: {err}") from err
        raise _hub_error(source, err) from err
    except (ValueError, UnicodeDecodeError) as err:  # a corrupt file in the hub cache
        raise ModelNotFoundError(f"the config or tokenizer files of {source!r} are unreadable or "
                                 f"unsupported ({type(err).__name__}: {err}); if it is a cached "
                                 "download, delete it and download it again") from err


def _load_weights(source: str, local: str | None, task: str, torch_dtype, archs):
    """(model, task, why it has no MLM head or None) for `task`; a checkpoint without MLM head
    weights asked for as "mlm" loads as an encoder. Unreadable weights: ModelNotFoundError."""
    from safetensors import SafetensorError
    from transformers import AutoModel, AutoModelForMaskedLM, AutoModelForSequenceClassification

    kwargs = dict(dtype=torch_dtype, attn_implementation="sdpa", trust_remote_code=False)
    try:
        if task == "classifier":
            model = AutoModelForSequenceClassification.from_pretrained(source, **kwargs)
            return model, task, "fine-tuned classifier checkpoint"
        if task == "encoder":
            return AutoModel.from_pretrained(source, **kwargs), task, "loaded with task='encoder'"
        model, info = AutoModelForMaskedLM.from_pretrained(source, output_loading_info=True, **kwargs)
        head_missing = [k for k in info.get("missing_keys", [])
                        if any(h in k for h in ("lm_head", "cls.predictions", "vocab_"))]
        if not head_missing:
            return model, task, None
        # the checkpoint has an encoder only: don't pretend a random head is a model
        return (AutoModel.from_pretrained(source, **kwargs), "encoder",
                f"checkpoint has no MLM head weights ({head_missing[0]} missing)")
    except pickle.UnpicklingError:   # torch.load(weights_only=True) refused the pickle
        raise ModelNotFoundError(
            f"the weights of {local or source!r} (pytorch_model.bin) hold pickled Python objects, "
            "not only tensors, and the workbench never unpickles code: the file may be malicious. "
            "Do not load it with weights_only=False; use a safetensors copy from a trusted source"
        ) from None
    except OSError as err:
        if local:
            raise ModelNotFoundError(f"could not load weights from {local}: {err}") from err
        raise _hub_error(source, err) from err
    except ValueError as err:
        if "Unrecognized" in str(err) or "not supported" in str(err).lower():
            raise ModelNotFoundError(
                f"{source!r} is not a supported encoder architecture ({archs}); "
                "the workbench supports BERT-family encoders (RoBERTa, XLM-R, BERT, DistilRoBERTa ...)"
            ) from err
        raise
    except (SafetensorError, RuntimeError) as err:
        if isinstance(err, RuntimeError) and "size mismatch" not in str(err):
            raise
        raise ModelNotFoundError(
            f"the weights of {local or source!r} are corrupt or do not match its config.json "
            f"({type(err).__name__}: {str(err)[:300]}); save or download the model again") from err


def check_lm(lm, what: str = "lm") -> LM:
    """`lm` itself when it is an `LM`; otherwise an `InputError` naming the argument."""
    if not isinstance(lm, LM):
        raise InputError(f"{what}={_short(lm)} ({type(lm).__name__}): pass a model loaded with "
                         "wb.load(...)")
    return lm


def as_lm_dict(lm_or_dict) -> dict[str, LM]:
    """Normalise one `LM` or a {name: LM} dict (for functions that compare models)."""
    if isinstance(lm_or_dict, LM):
        return {lm_or_dict.name: lm_or_dict}
    if (isinstance(lm_or_dict, dict) and lm_or_dict
            and all(isinstance(v, LM) for v in lm_or_dict.values())):
        return dict(lm_or_dict)
    raise InputError(f"lm={_short(lm_or_dict)} ({type(lm_or_dict).__name__}): pass an LM from "
                     "wb.load(...) or a non-empty dict {name: LM}")


def _short(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
