"""How well do attention and context-mixing scores agree with attributions of a classifier?

The evaluation that Ferrando et al. (2022, Sec. 6), Modarressi et al. (2022, Sec. 4) and
Mohebbi et al. (2023, Sec. 5) use: a fine-tuned classifier reads the representation at position
0 (`<s>` / `[CLS]`) after the last layer, so a mixing method's token scores for one text are
row 0 of its matrix, combined over all layers by rollout; they are compared with two
attributions of the predicted class's probability:

- "grad_x_input": |gradient x input| of each token's word embedding, summed over the hidden
  dimension (`wb.attribute(method="grad_x_input")`), absolute value as in the papers;
- "blank_out": leave-one-out, the drop in the predicted class's probability when the token is
  replaced by the mask token (one batched pass over the T copies).

Methods: "attention" (row 0 of the last layer, heads averaged), "rollout" (Abnar & Zuidema;
residual 0.5), "norm" (Kobayashi et al.'s whole-layer ||sum_h alpha f(x)|| of the last layer),
and `context_mixing`'s "value_zeroing", "alti", "globenc" (rollout of all layers). Agreement is
Spearman's rho over the text's non-special tokens, per text; the summary is its mean over texts
with a percentile bootstrap interval over texts (`n_boot` resamples, 95%).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr

from .. import schema as S
from ..capture import as_text_list, encode
from ..errors import MissingHeadError
from ..models import LM, check_lm
from . import attention_modes as modes
from .attention import capture_attention
from .attribution import attribute
from .context_mixing import check_method, mixing_matrices

METHODS = ("attention", "rollout", "norm", "value_zeroing", "alti", "globenc")
REFERENCES = ("grad_x_input", "blank_out")


def blank_out(lm: LM, text: str) -> np.ndarray:
    """(T,) drop of the predicted class's probability when each token becomes the mask token."""
    batch = encode(lm, [text])
    ids = batch.inputs["input_ids"]                                  # (1, T)
    t = ids.shape[1]
    copies = ids.repeat(t + 1, 1)                                    # row t: the intact text
    copies[torch.arange(t), torch.arange(t)] = lm.tokenizer.mask_token_id
    inputs = {k: v.repeat(t + 1, 1) for k, v in batch.inputs.items()}
    inputs["input_ids"] = copies
    with torch.inference_mode():
        probs = torch.softmax(lm.model(**inputs).logits.float(), -1)    # (T + 1, C)
    c = int(probs[t].argmax())
    return (probs[t, c] - probs[:t, c]).double().cpu().numpy()


def method_scores(lm: LM, text: str, method: str) -> np.ndarray:
    """(T,) the row of position 0 of `method` (see the module docstring)."""
    if method in ("attention", "rollout", "norm"):
        cap = capture_attention(lm, [text], norms=(method == "norm"))[0]
        if method == "attention":
            return cap.weights[-1].mean(0)[0].double().numpy()
        if method == "rollout":
            return modes.attention_rollout(cap.weights)[-1][0].double().numpy()
        return modes.norm_layer(cap.weights[-1:], cap.value_gram[-1:])[0][0].double().numpy()
    check_method(method)
    mats = mixing_matrices(lm, text, method)[1]                      # (L, T, T)
    return modes.attention_rollout(mats[:, None], residual=0.0)[-1][0].double().numpy()


def _bootstrap(values: np.ndarray, n_boot: int, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    means = rng.choice(values, size=(n_boot, len(values)), replace=True).mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def mixing_agreement(lm: LM, texts, *, methods=METHODS, references=REFERENCES,
                     n_boot: int = 1000, seed: int = 0, by_text: bool = False) -> pd.DataFrame:
    """Spearman agreement of each method with each attribution on a classifier's predictions.

    One row per (method, reference): model, method, target (the reference), score (mean rho over
    texts), low / high (95% bootstrap interval over texts), count (texts with a defined rho).
    `by_text=True`: one row per (text_id, method, reference) with that text's rho instead.
    """
    check_lm(lm)
    if lm.kind != "classifier":
        raise MissingHeadError(f"mixing_agreement compares with attributions of a fine-tuned "
                               f"classifier, but {lm.name!r} was loaded as {lm.kind!r}: load a "
                               "fine-tuning run or a classifier checkpoint")
    texts = as_text_list(texts)
    methods = [methods] if isinstance(methods, str) else list(methods)
    for m in methods:
        if m not in ("attention", "rollout", "norm"):
            check_method(m)
    rows = []
    for text_id, text in enumerate(texts):
        keep = [i for i, sp in enumerate(lm.tokens(text).special) if not sp]
        refs = {}
        if "grad_x_input" in references:
            gx = attribute(lm, text, method="grad_x_input")
            refs["grad_x_input"] = np.abs(gx.sort_values(S.POSITION)[S.SCORE].to_numpy())
        if "blank_out" in references:
            refs["blank_out"] = blank_out(lm, text)
        for m in methods:
            ours = method_scores(lm, text, m)
            for ref, values in refs.items():
                rho = spearmanr(ours[keep], values[keep]).statistic if len(keep) > 1 else np.nan
                rows.append({S.TEXT_ID: text_id, S.METHOD: m, S.TARGET: ref, S.SCORE: rho})
    per_text = pd.DataFrame(rows)
    per_text.insert(0, S.MODEL, lm.name)
    if by_text:
        return per_text
    out = []
    for (m, ref), part in per_text.groupby([S.METHOD, S.TARGET], sort=False):
        vals = part[S.SCORE].dropna().to_numpy()
        low, high = _bootstrap(vals, n_boot, seed) if len(vals) else (np.nan, np.nan)
        out.append({S.MODEL: lm.name, S.METHOD: m, S.TARGET: ref,
                    S.SCORE: float(vals.mean()) if len(vals) else np.nan, S.CI_LOW: low,
                    S.CI_HIGH: high, S.COUNT: len(vals)})
    return pd.DataFrame(out)
