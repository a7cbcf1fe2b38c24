"""Contextual vectors as features: `features(lm, texts, layers=..., pool=...) -> Features`.

What belongs here: running the encoder on many texts (batched by length, padding excluded),
pooling each layer's hidden states into one vector per text, token or word, and the disk cache
that makes a notebook re-run free. Probes, maps and CKA (the sibling modules) consume `Features`.

Layer numbering follows `output_hidden_states`: layer 0 is the embedding output, layer l >= 1 the
output of transformer block l-1 (so `lm.num_layers + 1` representation layers in all). This is the
convention of the probing literature; attention frames number blocks from 0.

Pools (padding never enters any of them):
- "cls": the vector at position 0 (`<s>` / `[CLS]`), one row per text;
- "mean": the mean over the text's non-special tokens, one row per text;
- "tokens": one row per non-special token;
- "words": one row per word, the mean of its sub-word tokens. Words are `TokenView.word_spans`,
  or, when a text is given pre-split as a list of words (CoNLL style), exactly those words.

Cache: `$WORKBENCH_CACHE/features` (default `~/.cache/workbench/features`), one
`<key>.safetensors` (the array) + `<key>.json` (index, layers, pool) per call; the key hashes the
model's identity (config, tokenizer, the bytes of every weight tensor), the texts, the
layers, the pool and the truncation length. No pickles. The cache is bypassed (neither read nor
written) while any forward hook is registered on the model, global hooks included: inside
`wb.ablate(...)` or under a user's own hooks the features come from the model as it runs now.
"""

from __future__ import annotations

import hashlib
import weakref
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
import numpy as np
import pandas as pd
import torch

from .. import capture, resources
from .. import schema as S
from ..errors import InputError
from ..models import LM
from ..tokens import TokenView
from ..config import check_positive_int
from ..models import check_lm
from ..capture import check_text_container

POOLS = ("mean", "cls", "tokens", "words")


@dataclass
class Features:
    """Pooled hidden states: `array[i, j]` is row i's vector at layer `layers[j]`.

    `index` has one row per vector (text_id, and token/word columns for the token and word pools);
    `texts` are the inputs as encoded; `cached` says whether this came from the disk cache.
    """

    array: np.ndarray          # (N, L', D) float32; a read-only np.memmap from features(out=)
    index: pd.DataFrame        # N rows
    layers: list[int]
    pool: str
    model: str
    texts: list[str] = field(default_factory=list)
    cached: bool = False

    def __len__(self) -> int:
        return self.array.shape[0]

    @property
    def dim(self) -> int:
        return self.array.shape[2]

    def layer(self, layer: int) -> np.ndarray:
        """(N, D) vectors of one representation layer (0 = embeddings)."""
        if layer not in self.layers:
            raise InputError(f"layer {layer} was not computed; these features hold layers {self.layers}")
        return self.array[:, self.layers.index(layer)]

    def to_frame(self, layer: int | None = None) -> pd.DataFrame:
        """Tidy-wide frame: the index columns, `layer`, then one column `f0..f{D-1}` per dimension."""
        chosen = self.layers if layer is None else [layer]
        parts = []
        for lay in chosen:
            vec = pd.DataFrame(self.layer(lay), columns=[f"f{i}" for i in range(self.dim)])
            part = pd.concat([self.index.reset_index(drop=True), vec], axis=1)
            part.insert(len(self.index.columns), S.LAYER, lay)
            parts.append(part)
        out = pd.concat(parts, ignore_index=True)
        out.insert(0, S.MODEL, self.model)
        return out


def resolve_layers(lm: LM, layers) -> list[int]:
    """'all' -> [0..L]; ints (negative count from the top) -> sorted unique hidden-state indices."""
    n = lm.num_layers + 1
    if isinstance(layers, str):
        if layers != "all":
            raise InputError(f"layers={layers!r}; pass 'all', an int or a list of ints in 0..{n - 1}")
        return list(range(n))
    if isinstance(layers, (int, np.integer)):
        layers = [int(layers)]
    out = []
    for lay in layers:
        lay = int(lay)
        if not -n <= lay < n:
            raise InputError(f"layer {lay} is out of range: {lm.name!r} has representation "
                             f"layers 0..{n - 1} (0 = embeddings)")
        out.append(lay % n)
    if not out:
        raise InputError("layers is empty: pass 'all' or at least one layer")
    return sorted(set(out))


def _normalise_texts(texts) -> tuple[list[str], list[list[str]] | None]:
    """Accept str, [str], or [[word, ...], ...] (pre-split words, joined with single spaces)."""
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if texts and all(isinstance(t, (list, tuple)) for t in texts):
        words = []
        for i, ws in enumerate(texts):
            ws = [str(w) for w in ws]
            if not ws or any(not w.strip() or any(c.isspace() for c in w) for w in ws):
                raise InputError(f"texts[{i}] must be a non-empty list of words without spaces")
            words.append(ws)
        return [" ".join(ws) for ws in words], words
    return capture.as_text_list(texts), None


def word_groups(view: TokenView, words: list[str] | None = None) -> list[list[int]]:
    """Token positions of each word: `view.word_spans`, or of the given pre-split `words`.

    For given words (the text is `" ".join(words)`), a word collects every tokenizer word that lies
    inside its characters; a word cut off by truncation gets an empty list.
    """
    if words is None:
        return [list(s) for s in view.word_spans]
    starts, cursor = [], 0
    for w in view.words:                      # tokenizer words appear in order in the text
        at = view.text.find(w, cursor) if w else cursor
        starts.append(at if at >= 0 else cursor)
        cursor = starts[-1] + len(w)
    bounds, cursor = [], 0
    for w in words:
        bounds.append((cursor, cursor + len(w)))
        cursor += len(w) + 1
    groups: list[list[int]] = [[] for _ in words]
    k = 0
    for start, span in zip(starts, view.word_spans):
        while k < len(bounds) - 1 and start >= bounds[k][1]:
            k += 1
        groups[k].extend(span)
    return groups


def _pool_rows(view: TokenView, pool: str, words: list[str] | None) -> tuple[list[list[int]], list[dict]]:
    """Positions averaged into each output row, and that row's index record."""
    content = [p for p, s in enumerate(view.special) if not s] or list(range(len(view)))
    if pool == "cls":
        return [[0]], [{}]
    if pool == "mean":
        return [content], [{}]
    if pool == "tokens":
        return [[p] for p in content], [
            {S.POSITION: p, S.TOKEN: view.tokens[p], S.TOKEN_ID: view.ids[p],
             S.WORD_ID: view.word_ids[p]} for p in content]
    groups = word_groups(view, words)
    names = words if words is not None else view.words
    rows, recs = [], []
    for w, (name, g) in enumerate(zip(names, groups)):
        if g:  # a word lost to truncation has no vector
            rows.append(g)
            recs.append({S.WORD_ID: w, S.WORD: name, S.POSITION: g[0]})
    return rows, recs


def model_fingerprint(lm: LM) -> str:
    """A hash of what determines the model's outputs: config, tokenizer and every weight's bytes.

    All bytes, not a sample: a copy changed in a few weights must not hit another model's cache.
    The weights' hash is reused while no parameter tensor was replaced or modified in place
    (torch bumps a tensor's `_version` on every in-place write).
    """
    h = hashlib.sha256()
    cfg = {k: v for k, v in lm.config.to_dict().items()
           if not k.startswith("_") and k not in ("transformers_version", "name_or_path")}
    h.update(json.dumps(cfg, sort_keys=True, default=str).encode())
    h.update(str(lm.dtype).encode())
    backend = getattr(lm.tokenizer, "backend_tokenizer", None)
    if backend is not None:  # padding/truncation state changes with each call: leave it out
        spec = {k: v for k, v in json.loads(backend.to_str()).items()
                if k not in ("padding", "truncation")}
        h.update(json.dumps(spec, sort_keys=True).encode())
    else:
        h.update(repr(sorted(lm.tokenizer.get_vocab().items())).encode())
    h.update(_weights_digest(lm.model).encode())
    return h.hexdigest()


_WEIGHT_DIGESTS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _weights_digest(model: torch.nn.Module) -> str:
    # the Parameter and buffer objects themselves (state_dict() makes new tensors on every call)
    state = dict(model.named_parameters(remove_duplicate=False))
    state.update(model.named_buffers(remove_duplicate=False))
    versions = tuple((name, id(t), t._version) for name, t in state.items())
    known = _WEIGHT_DIGESTS.get(model)
    if known is not None and known[0] == versions:
        return known[1]
    h = hashlib.blake2b(digest_size=32)
    with torch.no_grad():
        for name, t in state.items():
            h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
            # raw bytes of any dtype (bf16 included), no float conversion
            h.update(t.detach().contiguous().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    _WEIGHT_DIGESTS[model] = (versions, h.hexdigest())
    return h.hexdigest()


# hooks that only observe: transformers 5 installs them on first use to collect hidden states
_OBSERVERS = ("transformers.utils.output_capturing",)


def hooked(lm: LM) -> bool:
    """Whether a forward hook (`wb.ablate`'s gates, or anyone's) could change `lm`'s outputs now."""
    from torch.nn.modules import module as torch_module

    found = [*torch_module._global_forward_hooks.values(),
             *torch_module._global_forward_pre_hooks.values()]
    for m in lm.model.modules():
        found += [*m._forward_hooks.values(), *m._forward_pre_hooks.values()]
    return any(getattr(fn, "__module__", None) not in _OBSERVERS for fn in found)


def cache_dir() -> Path:
    """`$WORKBENCH_CACHE/features` (see `workbench.resources`)."""
    return resources.cache_dir("features")


def _cache_key(lm: LM, texts: list[str], words, layers, pool, max_length) -> str:
    h = hashlib.sha256()
    h.update(model_fingerprint(lm).encode())
    h.update(json.dumps({"texts": texts, "words": words, "layers": layers, "pool": pool,
                         "max_length": max_length}).encode())
    return h.hexdigest()[:32]


def _load_cached(path: Path, lm: LM) -> Features | None:
    from safetensors.numpy import load_file

    meta_path = path.with_suffix(".json")
    if not (path.exists() and meta_path.exists()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
        array = load_file(str(path))["array"]
    except (OSError, ValueError, KeyError):
        return None  # a half-written or foreign file: recompute
    index = pd.DataFrame(**meta["index"])
    return Features(array=array, index=index, layers=meta["layers"], pool=meta["pool"],
                    model=lm.name, texts=meta["texts"], cached=True)


def _save_cached(path: Path, feats: Features) -> None:
    from safetensors.numpy import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    save_file({"array": np.ascontiguousarray(feats.array)}, str(tmp))
    meta = {"layers": feats.layers, "pool": feats.pool, "model": feats.model, "texts": feats.texts,
            "index": json.loads(feats.index.to_json(orient="split", index=False))}
    tmp_meta = path.with_name(path.stem + f".json.tmp{os.getpid()}")
    tmp_meta.write_text(json.dumps(meta))
    os.replace(tmp, path)
    os.replace(tmp_meta, path.with_suffix(".json"))


def features(lm: LM, texts, *, layers="all", pool: str = "mean", batch_size: int = 32,
             max_length: int | None = None, progress: bool = True, cache: bool = True,
             out: str | os.PathLike | None = None, shard_texts: int | None = None) -> Features:
    """Hidden states of `texts` at `layers`, pooled per text, token or word (see module docstring).

    `texts`: a string, a list of strings, or a list of pre-split word lists (CoNLL style).
    Returns `Features` (`.array` (N, L', D), `.index`, `.to_frame()`); with `cache=True` a repeated
    call with the same model, texts and settings reads the result from disk instead of running,
    except while hooks are on the model (inside `wb.ablate`, say): then it always runs, uncached.
    `out=FOLDER` (corpus scale): vectors are written to FOLDER in shards of `shard_texts` texts as
    they are computed, a rerun after a kill resumes, and `.array` is a read-only memory map
    (`analysis.feature_store`; launched by torchrun, each process takes every world-th shard).

    >>> f = features(lm, ["The cat sat.", "A dog barked."], layers=[0, -1])   # doctest: +SKIP
    >>> f.array.shape                                                        # doctest: +SKIP
    (2, 2, 768)
    """
    if pool not in POOLS:
        raise InputError(f"pool={pool!r}; use one of {POOLS}")
    check_lm(lm), check_text_container(texts), check_positive_int("batch_size", batch_size)
    strings, words = _normalise_texts(texts)
    layer_ids = resolve_layers(lm, layers)
    if out is not None:
        return _features_to_folder(lm, strings, words, layer_ids, pool, out, shard_texts,
                                   batch_size=batch_size, max_length=max_length, progress=progress)
    path = None
    if cache and not hooked(lm):
        key = _cache_key(lm, strings, words, layer_ids, pool, max_length)
        path = cache_dir() / f"{key}.safetensors"
        hit = _load_cached(path, lm)
        if hit is not None:
            return hit

    from tqdm.auto import tqdm

    lengths = capture.token_lengths(lm, strings, max_length=max_length)
    bar = tqdm(total=len(strings), desc="features", unit="text", disable=not progress, leave=False)
    array, index = compute_rows(lm, strings, words, lengths, layer_ids, pool, batch_size=batch_size,
                                max_length=max_length, bar=bar)
    bar.close()
    feats = Features(array=array, index=index, layers=layer_ids, pool=pool, model=lm.name,
                     texts=strings)
    if path is not None:
        _save_cached(path, feats)
    return feats


def _features_to_folder(lm: LM, strings, words, layer_ids, pool, out, shard_texts, *,
                        batch_size, max_length, progress) -> Features:
    """`features(..., out=out)`: shards of texts written by `feature_store.sharded_rows`."""
    from . import feature_store as fs

    if hooked(lm):
        raise InputError("out= files features under the model's identity, but hooks (wb.ablate, "
                         "or your own) change its outputs now: compute them without out=")
    check_positive_int("shard_texts", shard_texts, allow_none=True)
    lengths = capture.token_lengths(lm, strings, max_length=max_length)  # refuses long texts now
    dim = lm.config.hidden_size
    if shard_texts is None:
        shard_texts = fs.default_shard_texts(pool, len(layer_ids), dim, float(np.mean(lengths)))
    manifest = {"format": fs.FORMAT, "model": model_fingerprint(lm),
                "texts": fs.texts_digest(strings, words), "n_texts": len(strings),
                "layers": layer_ids, "pool": pool, "max_length": max_length,
                "shard_texts": int(shard_texts), "dim": dim}

    def shard(lo: int, hi: int, bar):
        return compute_rows(lm, strings[lo:hi], None if words is None else words[lo:hi],
                            lengths[lo:hi], layer_ids, pool, batch_size=batch_size,
                            max_length=max_length, bar=bar, first_id=lo)

    array, index, done = fs.sharded_rows(out, manifest, len(strings), int(shard_texts), shard,
                                         (len(layer_ids), dim), progress=progress,
                                         device=str(lm.device))
    return Features(array=array, index=index, layers=layer_ids, pool=pool, model=lm.name,
                    texts=strings, cached=done)


def compute_rows(lm: LM, strings: list[str], words, lengths: list[int], layer_ids: list[int],
                 pool: str, *, batch_size: int, max_length: int | None, bar=None,
                 first_id: int = 0) -> tuple[np.ndarray, pd.DataFrame]:
    """The pooled vectors (R, L', D) float32 and index of `strings` (numbered from `first_id`),
    batched by length; `words` are their pre-split words or None. The work of `features`."""
    chunks: dict[int, tuple[np.ndarray, list[dict]]] = {}
    for idx in capture.batches(lengths, batch_size):
        batch = capture.encode(lm, [strings[i] for i in idx], max_length=max_length)
        out = capture.forward(lm, batch, hidden_states=True)
        hs = torch.stack([out.hidden_states[lay] for lay in layer_ids], dim=1).float()  # (B, L', T, D)
        for b, i in enumerate(idx):
            view = batch.views[b]
            rows, recs = _pool_rows(view, pool, words[i] if words is not None else None)
            n = len(view)
            weights = torch.zeros(len(rows), n, dtype=hs.dtype, device=hs.device)  # (R, n)
            for r, pos in enumerate(rows):
                weights[r, pos] = 1.0 / len(pos)
            vecs = (weights @ hs[b, :, :n]).transpose(0, 1)  # (R, L', D); einsum was 4x slower
            for rec in recs:
                rec[S.TEXT_ID] = first_id + i
                if pool in ("cls", "mean"):
                    rec[S.TEXT] = strings[i]
            chunks[i] = (vecs.cpu().numpy(), recs)
        if bar is not None:
            bar.update(len(idx))

    arrays = [chunks[i][0] for i in range(len(strings))]
    records = [rec for i in range(len(strings)) for rec in chunks[i][1]]
    first = [S.TEXT_ID] + ([S.TEXT] if pool in ("cls", "mean") else [])
    index = pd.DataFrame.from_records(records)
    index = index[first + [c for c in index.columns if c not in first]]
    return np.concatenate(arrays, axis=0).astype(np.float32, copy=False), index

