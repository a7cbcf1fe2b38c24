"""Before/after: how much each head's attention differs between two models on the same texts.

`compare_attention(lm_a, lm_b, texts)` is the analysis of Kovaleva et al. 2019 ("which layers
change most in fine-tuning"): both models read the same token ids (so they must share the
tokenizer) and, per (layer, head), we report

- `js_distance`: the Jensen-Shannon distance (square root of the base-2 divergence, in [0, 1])
  between the two attention rows of each non-padding query token, averaged over all queries;
- `cosine`: the cosine similarity of the two flattened (T x T) maps of each text, averaged over
  texts (1 = same pattern up to scale).

A model compared with itself gives js_distance 0 and cosine 1.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .. import schema as S
from ..capture import as_text_list, forward
from ..errors import InputError
from ..models import LM, check_lm
from .heads import iter_batches


def _check_compatible(lm_a: LM, lm_b: LM) -> None:
    ta, tb = lm_a.tokenizer, lm_b.tokenizer
    if (len(ta) != len(tb) or ta.all_special_ids != tb.all_special_ids
            or ta.get_vocab() != tb.get_vocab()):
        raise InputError(
            f"{lm_a.name!r} and {lm_b.name!r} use different tokenizers, so their attention maps "
            "cover different tokens and cannot be compared head by head: compare a model with a "
            "fine-tuned or further-trained copy of itself (same tokenizer)")
    shape_a, shape_b = (lm_a.num_layers, lm_a.num_heads), (lm_b.num_layers, lm_b.num_heads)
    if shape_a != shape_b:
        raise InputError(f"{lm_a.name!r} has (layers, heads) = {shape_a} but {lm_b.name!r} has "
                         f"{shape_b}: heads can only be compared between models of one shape")


def pair_sums(att_a: torch.Tensor, att_b: torch.Tensor, valid: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per text: (JS distance summed over its valid queries (B, H), cosine (B, H)).

    `att_a`, `att_b`: (B, H, T, T) maps of one layer on the same batch; `valid`: (B, T).
    """
    a, b = att_a.float(), att_b.float()
    m = 0.5 * (a + b)
    kl = lambda p: (torch.special.xlogy(p, p) - torch.special.xlogy(p, m)).sum(-1)  # noqa: E731
    js = 0.5 * (kl(a) + kl(b)) / np.log(2.0)                      # (B, H, T) bits
    q = valid[:, None, :].to(js.dtype)                            # (B, 1, T)
    js_sum = (js.clamp(min=0).sqrt() * q).sum(2)                  # (B, H)
    keep = (valid[:, :, None] & valid[:, None, :])[:, None].to(a.dtype)  # (B, 1, T, T)
    fa, fb = (a * keep).flatten(2), (b * keep).flatten(2)         # (B, H, T*T)
    cos = torch.nn.functional.cosine_similarity(fa, fb, dim=-1)   # (B, H)
    return js_sum.double(), cos.double()


def compare_attention(lm_a: LM, lm_b: LM, texts, *, batch_size: int = 16,
                      max_length: int | None = None, progress: bool = True) -> pd.DataFrame:
    """Per-head difference of attention between `lm_a` and `lm_b` on `texts`.

    Returns one row per (layer, head) with columns model_a, model_b, layer, head, js_distance,
    cosine (definitions in the module docstring), n_texts, n_queries (query tokens compared). Raises `InputError` if the models do not share
    a tokenizer and a (layers, heads) shape.

    >>> wb.compare_attention(wb.load("roberta-base"), wb.load(run), sst2_sentences)  # doctest: +SKIP
    """
    js, cos, queries = attention_change_by_text(lm_a, lm_b, texts, batch_size=batch_size,
                                                max_length=max_length, progress=progress)
    df = attention_change_frame(lm_a, lm_b, js, cos, queries)
    return df.assign(**{S.N_TEXTS: len(queries), S.N_QUERIES: int(queries.sum())})


def attention_change_frame(lm_a: LM, lm_b: LM, js: np.ndarray, cos: np.ndarray,
                           queries: np.ndarray) -> pd.DataFrame:
    """`compare_attention`'s frame from the per-text sums of `attention_change_by_text`."""
    N, L, H = js.shape
    return pd.DataFrame({S.MODEL_A: lm_a.name, S.MODEL_B: lm_b.name,
                         S.LAYER: np.repeat(np.arange(L), H), S.HEAD: np.tile(np.arange(H), L),
                         S.JS_DISTANCE: (js.sum(0) / max(queries.sum(), 1)).reshape(-1),
                         S.COSINE: cos.mean(0).reshape(-1)})


def attention_change_by_text(lm_a: LM, lm_b: LM, texts, *, batch_size: int = 16,
                             max_length: int | None = None, progress: bool = True
                             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per text: JS distance summed over its queries (N, L, H), cosine (N, L, H), queries (N,).

    `compare_attention`'s numbers are js.sum(0) / queries.sum() and cos.mean(0); a bootstrap
    over texts re-weights these rows (`analysis.bootstrap`).
    """
    check_lm(lm_a, "lm_a"), check_lm(lm_b, "lm_b")
    _check_compatible(lm_a, lm_b)
    texts = as_text_list(texts)
    L, H = lm_a.num_layers, lm_a.num_heads
    js = np.zeros((len(texts), L, H))
    cos = np.zeros((len(texts), L, H))
    queries = np.zeros(len(texts))
    for idx, batch in iter_batches(lm_a, texts, batch_size=batch_size, max_length=max_length,
                                   progress=progress, desc="compare attention"):
        att_a = forward(lm_a, batch, attentions=True).attentions  # L x (B, H, T, T)
        if lm_b.device != lm_a.device:
            batch.inputs = {k: v.to(lm_b.device) for k, v in batch.inputs.items()}
        att_b = forward(lm_b, batch, attentions=True).attentions
        valid = batch.inputs["attention_mask"].bool().to(lm_a.device)
        for layer in range(L):
            j, c = pair_sums(att_a[layer], att_b[layer].to(lm_a.device), valid)
            js[idx, layer], cos[idx, layer] = j.cpu().numpy(), c.cpu().numpy()
        queries[idx] = valid.sum(1).cpu().numpy()
    return js, cos, queries
