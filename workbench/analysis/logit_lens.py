"""Logit lens for masked LMs: what each layer would predict at a mask, read through the model's head.

The hidden state at the masked position after every layer (layer 0 = the embeddings, layer L = the
final output) is passed through the model's own MLM head (its dense + activation + LayerNorm
transform and the tied decoder), giving a vocabulary distribution per layer. RoBERTa and BERT
are post-LayerNorm, so every layer's output is already normalised and the head applies as is.
The last layer's row is exactly `fill_mask`'s answer; earlier rows show when it emerges.

Rows come in two kinds (column `kind`): "top" (the layer's own top-k) and "track" (given tokens
followed through every layer with their rank and probability; by default the final top-1).
"""

from __future__ import annotations

import warnings
from typing import Sequence

import pandas as pd
import torch

from .. import schema as S
from ..config import check_int
from ..capture import as_text_list
from ..models import LM, as_lm_dict
from .fill_mask import check_masked_texts, encode_masked, encoder_hidden, head_logprobs
from .probes import single_token_id

KIND = "kind"   # column: "top" (a layer's top-k) or "track" (a followed token)


def _lens_one(lm: LM, texts: list[str], originals: list[str], top_k: int,
              track: Sequence[str] | None) -> pd.DataFrame:
    tok = lm.tokenizer
    enc, positions = encode_masked(lm, texts)
    hidden = encoder_hidden(lm, enc["input_ids"], enc["attention_mask"], all_layers=True)
    rows = torch.tensor([r for r, ps in enumerate(positions) for _ in ps])
    cols = torch.tensor([p for ps in positions for p in ps])
    per_layer = [head_logprobs(lm, h[rows.to(h.device), cols.to(h.device)]).cpu()
                 for h in hidden]                                   # L+1 x (N, V)
    final = per_layer[-1]
    parts, skipped = [], set()
    n = 0
    for r, ps in enumerate(positions):
        for m, pos in enumerate(ps):
            if track:
                ids = {w: single_token_id(lm, texts[r], w, m) for w in track}
                skipped |= {w for w, t in ids.items() if t is None}
                followed = [t for t in ids.values() if t is not None]
            else:
                followed = [int(final[n].argmax())]
            base = {S.TEXT_ID: r, S.TEXT: originals[r], S.MASK_INDEX: m, S.POSITION: pos}
            for layer, logp in enumerate(per_layer):
                lp = logp[n]                                        # (V,)
                top_lp, top_id = lp.topk(min(top_k, lp.numel()))
                ids = top_id.tolist()
                parts.append(pd.DataFrame({
                    **base, S.LAYER: layer, KIND: "top", S.RANK: range(1, len(ids) + 1),
                    S.TOKEN: [tok.decode([i]) for i in ids], S.TOKEN_ID: ids,
                    S.PROB: top_lp.exp().numpy(), S.LOGPROB: top_lp.numpy()}))
                parts.append(pd.DataFrame({
                    **base, S.LAYER: layer, KIND: "track",
                    S.RANK: [int((lp > lp[t]).sum()) + 1 for t in followed],
                    S.TOKEN: [tok.decode([t]) for t in followed], S.TOKEN_ID: followed,
                    S.PROB: [float(lp[t].exp()) for t in followed],
                    S.LOGPROB: [float(lp[t]) for t in followed]}))
            n += 1
    if skipped:
        warnings.warn(f"logit_lens: {sorted(skipped)} are not one token at some mask for "
                      f"{lm.name!r} (leading-space rule applied); they are not tracked there")
    return pd.concat(parts, ignore_index=True)


def logit_lens(lm_or_dict, texts: str | Sequence[str], *, top_k: int = 5,
               track: Sequence[str] | None = None) -> pd.DataFrame:
    """Per-layer predictions at every mask of `texts`, read through the model's own MLM head.

    Columns: model, text_id, text, mask_index, position, layer (0 = embeddings ... L = output),
    kind ("top" or "track"), rank, token, token_id, prob, logprob. `track` lists words to follow
    through the layers (each must be one token at the mask, leading-space rule applied; others are
    left out); by default the final layer's top-1 token is followed.
    """
    check_int("top_k", top_k, minimum=1)
    track = None if track is None else as_text_list(track, "track")
    originals = as_text_list(texts)
    frames = []
    for name, lm in as_lm_dict(lm_or_dict).items():
        lm.require_mlm_head("logit_lens")
        df = _lens_one(lm, check_masked_texts(lm, originals), originals, top_k, track)
        df.insert(0, S.MODEL, name)
        frames.append(df)
    return pd.concat(frames, ignore_index=True)
