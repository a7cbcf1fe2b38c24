"""One call, every difference: `compare_models(lm_a, lm_b, texts)` -> a `ModelDiff` of tidy frames.

For two checkpoints that share a tokenizer and a (layers, heads) shape (a model and its
fine-tuned run, two runs, two pretraining checkpoints), on the same texts:

- `heads`: per (layer, head) the attention change of `compare_attention` (Jensen-Shannon
  distance, cosine), head importance in each model (`head_importance`, gradient method, masked-LM
  loss; both models need an MLM head) and its change, and the role of the head in each model
  (`head_roles`) with `role_changed`;
- `layers`: per transformer layer the mean JS distance over its heads, the linear CKA between
  the two models' outputs of that layer (`similarity`, token rows), the mean |importance change|
  and the number of heads whose role changed. Layer l's attention produces hidden state l + 1,
  so the CKA of layer l is read at representation layer l + 1 (0 = embeddings, in `cka`);
- `cka`: the full layer x layer CKA table of `similarity`;
- `predictions` (masked LMs): every non-special token of every text masked in turn (the
  positions `score` uses for PLL), each model's top-1 filler and whether they agree;
- `pll`: each text's pseudo-log-likelihood under each model (`score`) and the change.

Parts that cannot be computed for these models (no MLM head) are None, with the reason in
`skipped`. Identical models give JS 0, CKA 1, no role change and full agreement.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from .. import schema as S
from ..capture import as_text_list
from ..errors import InputError
from ..config import check_bool, check_positive_int
from ..models import LM, check_lm
from .ablation import head_importance
from .compare import compare_attention
from .fill_mask import masked_logprobs
from .head_roles import head_roles
from .pll import default_max_tokens, score, scored_positions, tokenize_for_scoring
from .similarity import similarity


@dataclass
class ModelDiff:
    """The frames of `compare_models`; None where a part was skipped (reason in `skipped`)."""

    model_a: str
    model_b: str
    heads: pd.DataFrame
    layers: pd.DataFrame
    cka: pd.DataFrame | None
    predictions: pd.DataFrame | None
    pll: pd.DataFrame | None
    skipped: dict[str, str] = field(default_factory=dict)

    def summary(self) -> pd.Series:
        """A handful of headline numbers (means over heads, layers or positions)."""
        out = {S.JS_DISTANCE: self.heads[S.JS_DISTANCE].mean(),
               S.ROLE_CHANGED: int(self.heads[S.ROLE_CHANGED].sum())
               if S.ROLE_CHANGED in self.heads else np.nan,
               "most_changed_layer": int(self.layers.loc[self.layers[S.JS_DISTANCE].idxmax(),
                                                         S.LAYER])}
        if S.CKA in self.layers:
            out["min_layer_cka"] = self.layers[S.CKA].min()
        if self.predictions is not None:
            out["top1_agreement"] = self.predictions[S.AGREE].mean()
        if self.pll is not None:
            out["mean_pll_change"] = self.pll[S.LOGPROB_CHANGE].mean()
        return pd.Series(out, name=f"{self.model_a} -> {self.model_b}")


def top1_predictions(lm: LM, texts, *, max_tokens: int | None = None) -> pd.DataFrame:
    """Each model token of each text masked in turn: the top-1 filler. One row per position.

    Columns: text_id, position, token (the true token id's text), prediction (top-1 piece).
    Copies are packed into batches of at most `max_tokens` tokens (rows x longest row).
    """
    lm.require_mlm_head("top-1 prediction changes")
    texts = as_text_list(texts)
    enc = tokenize_for_scoring(lm, texts)
    seqs = [list(e.ids) for e in enc.encodings]
    items = [(i, p) for i, e in enumerate(enc.encodings) for p in scored_positions(e)]
    items.sort(key=lambda it: -len(seqs[it[0]]))
    budget = max_tokens or default_max_tokens(lm)
    tok, mask_id = lm.tokenizer, lm.tokenizer.mask_token_id
    preds: list[int] = []
    start = 0
    while start < len(items):
        width = len(seqs[items[start][0]])                 # longest row of this batch
        chunk = items[start:start + max(1, budget // width)]
        ids = torch.full((len(chunk), width), tok.pad_token_id, dtype=torch.long)   # (N, T)
        att = torch.zeros_like(ids)
        for r, (i, p) in enumerate(chunk):
            ids[r, :len(seqs[i])] = torch.tensor(seqs[i])
            att[r, :len(seqs[i])] = 1
            ids[r, p] = mask_id
        rows, cols = torch.arange(len(chunk)), torch.tensor([p for _, p in chunk])
        preds += masked_logprobs(lm, ids, att, rows, cols).argmax(-1).tolist()     # (N,)
        start += len(chunk)
    return pd.DataFrame({
        S.TEXT_ID: [i for i, _ in items], S.POSITION: [p for _, p in items],
        S.TOKEN: [tok.convert_ids_to_tokens(seqs[i][p]) for i, p in items],
        S.PREDICTION: tok.convert_ids_to_tokens(preds)}).sort_values(
            [S.TEXT_ID, S.POSITION], ignore_index=True)


def _head_frame(lm_a: LM, lm_b: LM, texts, importance: bool, roles: bool, syntax,
                batch_size: int, progress: bool, skipped: dict) -> pd.DataFrame:
    heads = compare_attention(lm_a, lm_b, texts, batch_size=batch_size, progress=progress)
    key = [S.LAYER, S.HEAD]
    if importance and lm_a.has_mlm_head and lm_b.has_mlm_head:
        imp = [head_importance(m, texts, batch_size=batch_size, progress=progress)
               for m in (lm_a, lm_b)]
        heads = heads.merge(imp[0][key + [S.SCORE]].rename(columns={S.SCORE: S.IMPORTANCE_A}),
                            on=key).merge(imp[1][key + [S.SCORE]].rename(
                                columns={S.SCORE: S.IMPORTANCE_B}), on=key)
        heads[S.IMPORTANCE_CHANGE] = heads[S.IMPORTANCE_B] - heads[S.IMPORTANCE_A]
    elif importance:
        skipped["importance"] = ("head importance is measured on the masked-LM loss and one of "
                                 "the models has no MLM head")
    if roles:
        r = [head_roles(m, texts, syntax=syntax, batch_size=batch_size, progress=progress)
             for m in (lm_a, lm_b)]
        for side, frame in zip((S.ROLE_A, S.ROLE_B), r):
            heads = heads.merge(frame[key + [S.ROLE]].rename(columns={S.ROLE: side}), on=key)
        heads[S.ROLE_CHANGED] = heads[S.ROLE_A] != heads[S.ROLE_B]
    return heads


def _layer_frame(heads: pd.DataFrame, cka: pd.DataFrame | None) -> pd.DataFrame:
    agg = {S.JS_DISTANCE: (S.JS_DISTANCE, "mean"), S.COSINE: (S.COSINE, "mean")}
    if S.IMPORTANCE_CHANGE in heads:
        agg[S.IMPORTANCE_CHANGE] = (S.IMPORTANCE_CHANGE, lambda d: float(np.abs(d).mean()))
    if S.ROLE_CHANGED in heads:
        agg[S.ROLE_CHANGED] = (S.ROLE_CHANGED, "sum")
    layers = heads.groupby(S.LAYER, as_index=False).agg(**agg)
    if cka is not None:
        diag = cka[cka[S.LAYER_A] == cka[S.LAYER_B]]
        out = dict(zip(diag[S.LAYER_A] - 1, diag[S.VALUE]))   # hidden state l+1 = layer l's output
        layers[S.CKA] = layers[S.LAYER].map(out)
    return layers


def compare_models(lm_a: LM, lm_b: LM, texts, *, importance: bool = True, roles: bool = True,
                   cka: bool = True, predictions: bool = True, syntax: bool | str = False,
                   max_rows: int | None = 5000, batch_size: int = 16,
                   progress: bool = True) -> ModelDiff:
    """Every difference between two checkpoints with one tokenizer on `texts` (see module doc).

    Raises `InputError` when the models do not share a tokenizer or a (layers, heads) shape.
    `syntax` is passed to `head_roles` (off by default: it parses the texts twice).

    >>> diff = wb.compare_models(wb.load("demo"), wb.load(run), sentences)  # doctest: +SKIP
    >>> diff.layers                                                          # doctest: +SKIP
    """
    check_lm(lm_a, "lm_a")
    check_lm(lm_b, "lm_b")
    for name, value in (("importance", importance), ("roles", roles), ("cka", cka),
                        ("predictions", predictions), ("progress", progress)):
        check_bool(name, value)
    if not (isinstance(syntax, bool) or syntax == "auto"):
        raise InputError(f"syntax={syntax!r}; use True, False or 'auto'")
    check_positive_int("max_rows", max_rows, allow_none=True)
    check_positive_int("batch_size", batch_size)
    texts = as_text_list(texts)
    skipped: dict[str, str] = {}
    heads = _head_frame(lm_a, lm_b, texts, importance, roles, syntax, batch_size, progress,
                        skipped)
    table = similarity(lm_a, lm_b, texts, pool="tokens", max_rows=max_rows,
                       batch_size=batch_size, progress=progress, cache=False) if cka else None
    preds = pll = None
    both_mlm = lm_a.has_mlm_head and lm_b.has_mlm_head
    if predictions and both_mlm:
        pa, pb = top1_predictions(lm_a, texts), top1_predictions(lm_b, texts)
        preds = pa.rename(columns={S.PREDICTION: S.PREDICTION_A})
        preds[S.PREDICTION_B] = pb[S.PREDICTION].to_numpy()
        preds[S.AGREE] = preds[S.PREDICTION_A] == preds[S.PREDICTION_B]
        sa, sb = score(lm_a, texts), score(lm_b, texts)
        pll = pd.DataFrame({S.TEXT_ID: sa[S.TEXT_ID], S.TEXT: sa[S.TEXT],
                            S.LOGPROB_A: sa[S.LOGPROB], S.LOGPROB_B: sb[S.LOGPROB].to_numpy()})
        pll[S.LOGPROB_CHANGE] = pll[S.LOGPROB_B] - pll[S.LOGPROB_A]
    elif predictions:
        skipped["predictions"] = ("fill-mask predictions and PLL need an MLM head in both models "
                                  f"({lm_a.name}: {lm_a.kind}, {lm_b.name}: {lm_b.kind})")
    return ModelDiff(lm_a.name, lm_b.name, heads, _layer_frame(heads, table), table, preds, pll,
                     skipped)
