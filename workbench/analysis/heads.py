"""Head statistics at corpus scale: `head_stats(lm, texts)` -> one row per (layer, head).

The statistics are those of Clark et al. 2019 ("What Does BERT Look At?"). Each is first a
per-query number; `head_stats` averages it, by default as the paper does (`average="text"`): the
mean over the query tokens of each text (special tokens included as queries, padding never), then
the mean of those per-text means over the texts, so every text weighs the same. `average="token"`
pools every query token of the corpus instead (long texts weigh more).

- `attn_bos`, `attn_eos`, `attn_punct`: attention mass on `<s>`/[CLS], on `</s>`/[SEP], on
  punctuation tokens: with `punctuation="clark"` (default, as in the paper) the tokens "." and ","
  only; with `punctuation="unicode"` every token made only of Unicode punctuation marks;
- `attn_self`, `attn_prev`, `attn_next`: attention on the query itself, the token before, after;
- `distance`: attention-weighted mean |query - key| in tokens;
- `entropy`: entropy of the query's attention row in nats (uniform over n keys gives log n);
- `top_*`: the share of queries whose most-attended key is `<s>`, `</s>`, punctuation, itself,
  the previous or the next token.

The computation streams: texts go through the encoder in length-sorted batches (`capture.encode`,
`capture.batches`), each layer's attention map is reduced to per-head sums on the model's device
inside a forward hook as soon as it is computed, and only those sums (L, H, F) are kept: peak
memory holds one layer's maps of one batch. `head_sums` works on any given attention tensor, so the statistics can be
checked on synthetic maps (see tests/test_heads.py).
"""

from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .. import schema as S
from ..capture import (Batch, as_text_list, attention_modules, batches, encode, hooks,
                       token_lengths)
from ..errors import InputError
from ..models import LM, as_lm_dict
from ..config import check_positive_int
from .bootstrap import LEVEL, N_BOOT, add_interval, check_boot, ratio_interval

# the statistics, in the order of the last axis of `head_sums`
STATS = (S.ATTN_BOS, S.ATTN_EOS, S.ATTN_PUNCT, S.ATTN_SELF, S.ATTN_PREV, S.ATTN_NEXT,
         S.DISTANCE, S.ENTROPY, S.TOP_BOS, S.TOP_EOS, S.TOP_PUNCT, S.TOP_SELF, S.TOP_PREV,
         S.TOP_NEXT)


@dataclass
class KeyMasks:
    """Which positions of a padded batch are real tokens, `<s>`, `</s>` and punctuation."""

    valid: torch.Tensor  # (B, T) bool: not padding
    bos: torch.Tensor    # (B, T) bool: <s> / [CLS]
    eos: torch.Tensor    # (B, T) bool: </s> / [SEP]
    punct: torch.Tensor  # (B, T) bool: a non-special token made only of punctuation

    def to(self, device) -> "KeyMasks":
        return KeyMasks(*(m.to(device) for m in (self.valid, self.bos, self.eos, self.punct)))


AVERAGES = ("text", "token")
PUNCTUATION = ("clark", "unicode")
CLARK_PUNCTUATION = (".", ",")


def is_punctuation(token: str) -> bool:
    return bool(token) and all(unicodedata.category(c).startswith("P") for c in token)


def _check_definition(average: str, punctuation: str | None = None) -> None:
    if average not in AVERAGES:
        raise InputError(f"average={average!r}; use 'text' (mean per text, then over texts, as "
                         "Clark et al. 2019) or 'token' (mean over every query token)")
    if punctuation is not None and punctuation not in PUNCTUATION:
        raise InputError(f"punctuation={punctuation!r}; use 'clark' ('.' and ',' only, as Clark "
                         "et al. 2019) or 'unicode' (tokens made only of punctuation marks)")


def key_masks(lm: LM, batch: Batch, punctuation: str = "unicode") -> KeyMasks:
    """Build the masks of a batch from its input ids and readable tokens (`punctuation`: see the
    module docstring)."""
    ids = batch.inputs["input_ids"].cpu()                        # (B, T)
    valid = batch.inputs["attention_mask"].cpu().bool()
    tok = lm.tokenizer
    bos_ids = {i for i in (tok.cls_token_id, tok.bos_token_id) if i is not None}
    eos_ids = {i for i in (tok.sep_token_id, tok.eos_token_id) if i is not None}
    bos = torch.isin(ids, torch.tensor(sorted(bos_ids), dtype=ids.dtype)) & valid
    eos = torch.isin(ids, torch.tensor(sorted(eos_ids), dtype=ids.dtype)) & valid
    punct = torch.zeros_like(valid)
    for row, view in enumerate(batch.views):
        for pos, (text, special) in enumerate(zip(view.tokens, view.special)):
            if special:
                continue
            if (text.strip() in CLARK_PUNCTUATION if punctuation == "clark"
                    else is_punctuation(text)):
                punct[row, pos] = True
    return KeyMasks(valid=valid, bos=bos, eos=eos, punct=punct)


def head_sums(att: torch.Tensor, masks: KeyMasks) -> torch.Tensor:
    """Per-row sums over valid queries of every statistic in `STATS`: (B, H, T, T) -> (B, H, F).

    `att[b, h, q, k]` is the attention of query q to key k; padded keys must carry zero weight
    (as the model's attention mask guarantees) and padded queries are ignored.
    """
    a = att.float()                                               # (B, H, T, T)
    B, H, T, _ = a.shape
    pos = torch.arange(T, device=a.device)
    sets = torch.stack([masks.bos, masks.eos, masks.punct], -1).to(a.dtype)    # (B, T, 3)
    to_sets = torch.einsum("bhqk,bks->bhqs", a, sets)             # (B, H, T, 3)
    to_self = a.diagonal(dim1=-2, dim2=-1)                        # (B, H, T)
    to_prev = F.pad(a.diagonal(offset=-1, dim1=-2, dim2=-1), (1, 0))  # a[q, q-1], 0 at q=0
    to_next = F.pad(a.diagonal(offset=1, dim1=-2, dim2=-1), (0, 1))   # a[q, q+1], 0 at q=T-1
    gap = (pos[None, :] - pos[:, None]).abs().to(a.dtype)         # (T, T)
    distance = torch.einsum("bhqk,qk->bhq", a, gap)               # (B, H, T)
    entropy = -torch.special.xlogy(a, a).sum(-1)                  # (B, H, T)
    top = a.argmax(-1)                                            # (B, H, T)
    top_in = [torch.gather(m[:, None, :].expand(B, H, T), -1, top)
              for m in (masks.bos, masks.eos, masks.punct)]
    top_rel = [top == pos, top == pos - 1, top == pos + 1]
    per_query = torch.stack(
        [to_sets[..., 0], to_sets[..., 1], to_sets[..., 2], to_self, to_prev, to_next,
         distance, entropy] + [t.to(a.dtype) for t in top_in + top_rel], -1)  # (B, H, T, F)
    q = masks.valid[:, None, :, None].to(a.dtype)                 # (B, 1, T, 1)
    return (per_query * q).sum(2)                                 # (B, H, F)


class HeadStatsAccumulator:
    """Running per-head sums of `STATS` over batches (on the device), optionally per text."""

    def __init__(self, num_layers: int, num_heads: int, device: torch.device,
                 num_texts: int | None = None):
        acc_dtype = torch.float32 if device.type == "mps" else torch.float64
        self.sums = torch.zeros(num_layers, num_heads, len(STATS), dtype=acc_dtype,
                                device=device)                    # (L, H, F)
        self.text_means = torch.zeros_like(self.sums)             # (L, H, F) sum of per-text means
        self.queries = torch.zeros((), dtype=acc_dtype, device=device)
        self.uniform = [0.0, 0.0]    # summed distance and entropy uniform attention would give
        self.uniform_text = [0.0, 0.0]   # the same, summed per-text means
        self.texts = 0
        self.per_text = None if num_texts is None else torch.zeros(
            num_texts, num_layers, num_heads, len(STATS), dtype=torch.float64)  # (N, L, H, F)
        self.per_text_queries = None if num_texts is None else torch.zeros(num_texts,
                                                                           dtype=torch.float64)

    def update(self, attentions: Sequence[torch.Tensor], masks: KeyMasks,
               text_ids: Sequence[int] | None = None) -> None:
        """Add one batch: `attentions` holds one (B, H, T, T) tensor per layer."""
        masks = masks.to(attentions[0].device)
        self.add(torch.stack([head_sums(a, masks) for a in attentions], 1), masks, text_ids)

    def add(self, per_layer: torch.Tensor, masks: KeyMasks,
            text_ids: Sequence[int] | None = None) -> None:
        """Add one batch's `head_sums`, stacked over layers: (B, L, H, F)."""
        self.sums += per_layer.sum(0).to(self.sums.dtype)
        counts = masks.valid.sum(1)                               # (B,)
        per_text = per_layer.to(self.sums.dtype) / counts.clamp(min=1).to(
            device=per_layer.device, dtype=self.sums.dtype)[:, None, None, None]  # (B, L, H, F)
        self.text_means += per_text[counts > 0].sum(0)
        self.queries += counts.sum().to(self.queries.dtype)
        self.texts += len(counts)
        for n in counts.tolist():   # uniform over n keys: sum_q mean_k |q-k| = (n^2-1)/3
            self.uniform[0] += (n * n - 1) / 3
            self.uniform[1] += n * float(np.log(max(n, 1)))
            self.uniform_text[0] += (n * n - 1) / 3 / max(n, 1)
            self.uniform_text[1] += float(np.log(max(n, 1)))
        if self.per_text is not None:
            if text_ids is None:
                raise ValueError("text_ids are needed when accumulating per text")
            idx = torch.as_tensor(list(text_ids))
            self.per_text[idx] = per_layer.double().cpu()
            self.per_text_queries[idx] = counts.double().cpu()

    def frame(self, model: str = "", average: str = "token", pooled: bool = False
              ) -> pd.DataFrame:
        """One row per (layer, head) (or per (text_id, layer, head) when kept per text, unless
        `pooled`); `average` "token" pools every query of the corpus, "text" averages the
        per-text means."""
        _check_definition(average)
        by_text = average == "text"
        if self.per_text is None or pooled:
            means = (self.text_means / max(self.texts, 1) if by_text
                     else self.sums / self.queries.clamp(min=1)).cpu().numpy()  # (L, H, F)
            L, H, _ = means.shape
            df = pd.DataFrame(means.reshape(L * H, -1), columns=list(STATS))
            df.insert(0, S.HEAD, np.tile(np.arange(H), L))
            df.insert(0, S.LAYER, np.repeat(np.arange(L), H))
        else:
            means = (self.per_text / self.per_text_queries.clamp(min=1)[:, None, None, None])
            N, L, H, _ = means.shape
            df = pd.DataFrame(means.numpy().reshape(N * L * H, -1), columns=list(STATS))
            df.insert(0, S.HEAD, np.tile(np.arange(H), N * L))
            df.insert(0, S.LAYER, np.tile(np.repeat(np.arange(L), H), N))
            df.insert(0, S.TEXT_ID, np.repeat(np.arange(N), L * H))
        df.insert(0, S.MODEL, model)
        return df.assign(**self._reference_columns(len(df), average, pooled))

    def _reference_columns(self, rows: int, average: str, pooled: bool) -> dict:
        """n_texts, n_queries, the uniform references and `average` of a pooled frame; a per-text
        frame's n_queries and uniform references are its text's (their mean over texts is the
        "text" average's)."""
        if self.per_text is None or pooled:
            queries = int(self.queries.item())
            uniform, over = ((self.uniform_text, self.texts) if average == "text"
                             else (self.uniform, queries))
            return {S.N_TEXTS: int(self.texts), S.N_QUERIES: queries,
                    S.UNIFORM_DISTANCE: uniform[0] / max(over, 1),
                    S.UNIFORM_ENTROPY: uniform[1] / max(over, 1), S.AVERAGE: average}
        n = self.per_text_queries.numpy()                         # (N,) queries of each text
        each = rows // max(len(n), 1)                             # L * H rows per text
        return {S.N_QUERIES: np.repeat(n.astype(np.int64), each),
                S.UNIFORM_DISTANCE: np.repeat((n * n - 1) / 3 / np.maximum(n, 1), each),
                S.UNIFORM_ENTROPY: np.repeat(np.log(np.maximum(n, 1)), each)}


def attention_stats(attentions: Sequence[torch.Tensor], masks: KeyMasks, model: str = "",
                    average: str = "text") -> pd.DataFrame:
    """`head_stats` for given maps: one (B, H, T, T) tensor per layer and their `KeyMasks`; each
    row of the batch is one text."""
    acc = HeadStatsAccumulator(len(attentions), attentions[0].shape[1], attentions[0].device)
    acc.update(attentions, masks)
    return acc.frame(model, average)


def layer_sums(lm: LM, batch: Batch, masks: KeyMasks) -> torch.Tensor:
    """`head_sums` of every layer of one forward pass: (B, L, H, F).

    Each layer's attention (B, H, T, T) is reduced inside a forward hook on its self-attention
    module as soon as it is computed and then dropped, so peak memory holds one layer's maps, not
    all of them as `output_attentions=True` would. Like `capture.forward`, it fails loudly when
    a layer hands over no weights.
    """
    parts = attention_modules(lm)
    owners = {id(p.query): p.layer for p in parts}
    modules = {owners[id(m.query)]: m for m in lm.encoder.modules()
               if isinstance(getattr(m, "query", None), torch.nn.Module) and id(m.query) in owners}
    sums: dict[int, torch.Tensor] = {}

    def make_hook(layer: int):
        def hook(module, args, output):
            weights = output[1] if isinstance(output, tuple) and len(output) > 1 else None
            if weights is None:
                raise RuntimeError(f"layer {layer}'s attention returned no weights under "
                                   f"{lm.config._attn_implementation!r} attention: this is a "
                                   "workbench bug, please report it")
            sums[layer] = head_sums(weights, masks)               # (B, H, F)
        return hook

    with torch.inference_mode(), lm.eager_attention(), hooks(
            (modules[p.layer], make_hook(p.layer), "forward") for p in parts):
        lm.encoder(**batch.inputs, return_dict=True)
    if len(sums) != len(parts):
        raise RuntimeError(f"attention weights came back from {len(sums)} of {len(parts)} "
                           "layers: this is a workbench bug, please report it")
    return torch.stack([sums[layer] for layer in range(len(parts))], 1)


def iter_batches(lm: LM, texts: Sequence[str], *, batch_size: int = 32,
                 max_length: int | None = None, progress: bool = True,
                 desc: str = "batches") -> Iterator[tuple[list[int], Batch]]:
    """Yield `(text indices, Batch)` over `texts`, grouped by token length (longest first)."""
    from tqdm.auto import tqdm

    batch_size = check_positive_int("batch_size", batch_size)
    lengths = token_lengths(lm, texts, max_length=max_length)
    groups = list(batches(lengths, batch_size))
    with tqdm(total=len(texts), desc=desc, unit="text", disable=not progress,
              leave=False) as bar:
        for idx in groups:
            yield idx, encode(lm, [texts[i] for i in idx], max_length=max_length)
            bar.update(len(idx))


def accumulate(lm: LM, texts: Sequence[str], *, per_text: bool = False, batch_size: int = 32,
               max_length: int | None = None, punctuation: str = "clark", progress: bool = True,
               desc: str = "head stats") -> HeadStatsAccumulator:
    """Stream `texts` through one model into a `HeadStatsAccumulator` (kept per text if asked)."""
    acc = HeadStatsAccumulator(lm.num_layers, lm.num_heads, lm.device,
                               num_texts=len(texts) if per_text else None)
    for idx, batch in iter_batches(lm, texts, batch_size=batch_size, max_length=max_length,
                                   progress=progress, desc=desc):
        masks = key_masks(lm, batch, punctuation).to(lm.device)
        acc.add(layer_sums(lm, batch, masks), masks, idx)
    return acc


def head_stats(lm, texts, *, batch_size: int = 32, max_length: int | None = None,
               by_text: bool = False, average: str = "text", punctuation: str = "clark",
               progress: bool = True, out: str | os.PathLike | None = None):
    """Attention statistics of every head of `lm` (or a dict {name: LM}) over a corpus.

    Returns one row per (model, layer, head) with the columns of `STATS` (see the module
    docstring); `by_text=True` gives one row per (model, text_id, layer, head) instead.
    Definitions (Clark et al. 2019 by default): `average="text"` takes each statistic's mean over
    the query tokens of each text, then the mean over texts; `average="token"` the mean over every
    query token of the corpus. `punctuation="clark"` counts only "." and "," as punctuation
    (`attn_punct`, `top_punct`); `"unicode"` every token made only of punctuation marks.
    Columns after the statistics, repeated on each row so they survive concat and filtering:
    `n_texts`, `n_queries` (query tokens), `uniform_distance` and `uniform_entropy` (the distance
    and entropy uniform attention would have on the same texts, averaged the same way: references
    for those columns), `average`, `punctuation`. A `by_text=True` row carries its own text's
    `n_queries` and uniform references (their mean over texts is the pooled "text" reference) and
    `punctuation`. Padding never counts: a text alone or in a padded batch gives the same numbers.

    `by_text=True, out="stats.parquet"` (corpus scale): the per-text rows are streamed to that
    parquet file, texts in order, 4096 texts at a time, instead of held, and the path is returned;
    read parts back with `pd.read_parquet(path, filters=[("layer", "==", 3)])`. The file appears
    only when complete.

    >>> wb.head_stats(lm, sentences).sort_values("attn_prev").tail(3)   # doctest: +SKIP
    """
    _check_definition(average, punctuation)
    texts = as_text_list(texts)
    if out is not None:
        if not by_text:
            raise InputError("out= streams the per-text rows: pass by_text=True (the pooled "
                             "table has one row per head and needs no file)")
        return _per_text_to_parquet(lm, texts, Path(out), batch_size=batch_size,
                                    max_length=max_length, average=average,
                                    punctuation=punctuation, progress=progress)
    frames = []
    for name, one in as_lm_dict(lm).items():
        acc = accumulate(one, texts, per_text=by_text, batch_size=batch_size,
                         max_length=max_length, punctuation=punctuation, progress=progress,
                         desc=f"head stats {name}")
        frames.append(acc.frame(name, average))
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return df.assign(**{S.PUNCTUATION: punctuation})


PARQUET_TEXTS = 4096   # texts per block of rows written by head_stats(by_text=True, out=...)


def _per_text_to_parquet(lm, texts: list[str], path: Path, *, batch_size: int, max_length,
                         average: str, punctuation: str, progress: bool) -> Path:
    """`head_stats(by_text=True, out=path)`: blocks of texts accumulated and appended in order."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from tqdm.auto import tqdm

    from .feature_store import disk_errors, return_freed_memory

    models = as_lm_dict(lm)
    for one in models.values():        # refuse a long text before writing anything
        token_lengths(one, texts, max_length=max_length)
    tmp, writer = path.with_name(path.name + f".tmp{os.getpid()}"), None
    bar = tqdm(total=len(texts) * len(models), desc="head stats -> parquet", unit="text",
               disable=not progress, leave=False)
    try:
        with disk_errors(path.parent, "head stats", "Nothing was kept"):
            for name, one in models.items():
                for lo in range(0, len(texts), PARQUET_TEXTS):
                    block = texts[lo:lo + PARQUET_TEXTS]
                    df = accumulate(one, block, per_text=True, batch_size=batch_size,
                                    max_length=max_length, punctuation=punctuation,
                                    progress=False).frame(name, average)
                    df = df.assign(**{S.TEXT_ID: df[S.TEXT_ID] + lo, S.PUNCTUATION: punctuation})
                    table = pa.Table.from_pandas(df, preserve_index=False).replace_schema_metadata()
                    writer = writer or pq.ParquetWriter(tmp, table.schema)
                    writer.write_table(table)
                    del df, table
                    return_freed_memory()
                    bar.update(len(block))
            writer.close()
            os.replace(tmp, path)
    finally:
        bar.close()
        if writer is not None and writer.is_open:      # an error midway: close, then drop it
            writer.close()
        tmp.unlink(missing_ok=True)
    return path


def head_stat_intervals(lm: LM, texts, *, stats: Sequence[str] = STATS, n_boot: int = N_BOOT,
                        level: float = LEVEL, average: str = "text", punctuation: str = "clark",
                        batch_size: int = 32, max_length: int | None = None,
                        progress: bool = True) -> pd.DataFrame:
    """`head_stats` with percentile bootstrap intervals over texts (`analysis.bootstrap`).

    One row per (model, layer, head, metric): `value` is the statistic of `head_stats` (same
    `average` and `punctuation`), `ci_low`/`ci_high` its interval at `level` from `n_boot`
    resamples of the texts, `n_texts`, `n_boot`, `level`. The model runs once; each resample
    re-weights the per-text sums (texts drawn twice count twice).

    >>> wb.head_stat_intervals(lm, sentences, stats=["attn_prev"])            # doctest: +SKIP
    """
    _check_definition(average, punctuation)
    n_boot, level = check_boot(n_boot, level)
    unknown = [s for s in stats if s not in STATS]
    if isinstance(stats, str) or unknown or not stats:
        raise InputError(f"stats={stats!r}: pass a list of names from {list(STATS)}")
    texts = as_text_list(texts)
    cols = [STATS.index(s) for s in stats]
    frames = []
    for name, one in as_lm_dict(lm).items():
        acc = accumulate(one, texts, per_text=True, batch_size=batch_size, max_length=max_length,
                         punctuation=punctuation, progress=progress, desc=f"head stats {name}")
        sums = acc.per_text[..., cols].numpy()                   # (N, L, H, F')
        queries = acc.per_text_queries.numpy()                   # (N,)
        if average == "text":   # mean over each text's queries, then over texts
            num, den = sums / np.maximum(queries, 1)[:, None, None, None], None
        else:                   # every query of the corpus pooled
            num, den = sums, queries
        point, low, high = ratio_interval(num, den, n_boot=n_boot, level=level)  # (L, H, F')
        L, H, F_ = point.shape
        df = pd.DataFrame({S.MODEL: name, S.LAYER: np.repeat(np.arange(L), H * F_),
                           S.HEAD: np.tile(np.repeat(np.arange(H), F_), L),
                           S.METRIC: np.tile(list(stats), L * H), S.VALUE: point.reshape(-1)})
        frames.append(add_interval(df, low, high, n_texts=len(texts), n_boot=n_boot, level=level))
    return pd.concat(frames, ignore_index=True)
