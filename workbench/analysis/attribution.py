"""Which input tokens drove a prediction: integrated gradients, gradient x input, attention rollout.

What belongs here: `attribute(lm, text, target=..., method=...)` for two kinds of prediction:
- a masked-LM's answer at a `<mask>` (target: a token or word, default the top prediction);
- a fine-tuned classifier's class (target: class index or label name, default the predicted one).

Methods (one tidy frame, one row per token or word and method, so they sit side by side):
- "ig": integrated gradients (Sundararajan et al. 2017) on the word embeddings, via captum's
  `LayerIntegratedGradients`. The baseline keeps every special token (`<s>`, `</s>`, `<mask>`)
  and puts `<pad>` everywhere else; only the word embeddings are interpolated, so positions stay
  those of the real input. Completeness: scores sum to f(x) - f(baseline) up to `delta`, the
  convergence delta (raise `n_steps` if it is large). The delta is computed here against f at the
  path's real end points: captum's own `return_convergence_delta` re-runs the model on the
  baseline *ids*, whose `<pad>` tokens move RoBERTa's position ids, so it measures another path.
- "grad_x_input": gradient of f with respect to the word embeddings times the embeddings
  (captum's `LayerGradientXActivation`), summed over the hidden dimension.
- "rollout": attention rollout (Abnar & Zuidema 2020) of the last layer from `wb.attention_tensor`
  (mode="rollout"), read at the predicting position (the mask, or `<s>` for a classifier).
  It explains no particular target: attention is not attribution, shown for comparison.

f is the target's probability by default (`output="logit"` or `"logprob"` otherwise). `score` is
the raw attribution, `weight` its signed share of the method's total |score|; word level sums the
scores of a word's sub-tokens (`TokenView.word_spans`), special tokens keep their own rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .. import schema as S
from ..config import check_int
from ..capture import as_one_text, as_text_list
from ..errors import InputError, MissingHeadError
from ..models import LM
from ..tokens import TokenView, tokenize
from .attention import attention_tensor

METHODS = ("ig", "grad_x_input", "rollout")
OUTPUTS = ("prob", "logprob", "logit")


def _methods(method) -> list[str]:
    chosen = list(METHODS) if method == "all" else [method] if isinstance(method, str) else list(method)
    bad = [m for m in chosen if m not in METHODS]
    if bad or not chosen:
        raise InputError(f"method={method!r}; use one of {METHODS}, a list of them, or 'all'")
    return chosen


def _mask_target(lm: LM, text: str, view: TokenView, target, mask_index: int, logits) -> tuple[int, int]:
    """(position of the chosen mask, target token id) for a masked-LM prediction."""
    mask_id = lm.tokenizer.mask_token_id
    positions = [p for p, i in enumerate(view.ids) if i == mask_id]
    if not positions:
        raise InputError(f"no {lm.mask_token} in {text!r}: a masked-LM attribution explains the "
                         f"prediction at a mask; put {lm.mask_token} where the word goes")
    if not 0 <= mask_index < len(positions):
        raise InputError(f"mask_index={mask_index} but the text has {len(positions)} mask(s)")
    pos = positions[mask_index]
    if target is None:
        return pos, int(logits[0, pos].argmax())
    if isinstance(target, (int, np.integer)):
        return pos, int(target)
    at = -1
    for _ in range(mask_index + 1):
        at = text.find(lm.mask_token, at + 1)
    word = str(target)
    if not word.startswith(" ") and at > 0 and text[at - 1].isspace():
        word = " " + word  # the mask ate the space before it (lstrip): the answer carries it
    ids = tokenize(lm.tokenizer, word, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        pieces = lm.tokenizer.convert_ids_to_tokens(ids)
        raise InputError(f"target {target!r} is {len(ids)} tokens {pieces} for this model; the "
                         "prediction at one mask is one token: pick a single-token target or its "
                         "token id")
    return pos, ids[0]


def _class_target(lm: LM, target, logits) -> int:
    n = logits.shape[-1]
    if target is None:
        return int(logits[0].argmax())
    if isinstance(target, str):
        label2id = {str(k): int(v) for k, v in (lm.config.label2id or {}).items()}
        if target not in label2id:
            raise InputError(f"target {target!r} is not a label of {lm.name!r}: {sorted(label2id)}")
        return label2id[target]
    if not 0 <= int(target) < n:
        raise InputError(f"target class {target} is out of range: the classifier has {n} classes")
    return int(target)


def _scalar(logits: torch.Tensor, output: str) -> torch.Tensor:
    if output == "prob":
        return logits.float().softmax(-1)
    if output == "logprob":
        return logits.float().log_softmax(-1)
    return logits.float()


def _merge_words(frame: pd.DataFrame, view: TokenView) -> pd.DataFrame:
    """Sum token scores within each word; special tokens stay single rows."""
    group = [("w", w) if w is not None else ("t", p) for p, w in enumerate(view.word_ids)]
    frame = frame.assign(_g=[group[p] for p in frame[S.POSITION]])
    rows = []
    for (_, key), part in frame.groupby([S.METHOD, "_g"], sort=False):
        first = part.iloc[0].to_dict()
        if key[0] == "w":
            first[S.TOKEN] = view.words[key[1]]
        first[S.SCORE] = part[S.SCORE].sum()
        rows.append(first)
    return pd.DataFrame(rows).drop(columns="_g")


def _attribute_one(lm: LM, text: str, target, methods, output, n_steps, internal_batch_size,
                   mask_index, level) -> pd.DataFrame:
    from captum.attr import LayerGradientXActivation, LayerIntegratedGradients

    view = lm.tokens(text)
    enc = tokenize(lm.tokenizer, text, return_tensors="pt", truncation=True)
    ids = enc["input_ids"].to(lm.device)                                 # (1, T)
    mask = enc["attention_mask"].to(lm.device)                           # (1, T)
    if ids.shape[1] != len(view):
        raise InputError(f"{text[:40]!r}... is longer than the model's window; shorten it")
    with torch.inference_mode():
        logits = lm.model(input_ids=ids, attention_mask=mask).logits     # (1, T, V) or (1, C)
    if lm.kind == "mlm":
        pos, tid = _mask_target(lm, text, view, target, mask_index, logits)
        label = lm.tokenizer.decode([tid]).strip()
        if not label or "\ufffd" in label:  # a lone byte piece: show the raw token
            label = lm.tokenizer.convert_ids_to_tokens(tid)
    else:
        pos, tid = 0, _class_target(lm, target, logits)
        label = str((lm.config.id2label or {}).get(tid, tid))

    def f(input_ids, attention_mask):                                    # (B, T) -> (B,)
        out = lm.model(input_ids=input_ids, attention_mask=attention_mask).logits
        out = out[:, pos] if lm.kind == "mlm" else out                   # (B, V) or (B, C)
        return _scalar(out, output)[:, tid]

    special = torch.tensor(view.special, device=lm.device)[None]         # (1, T)
    baseline = torch.where(special, ids, torch.full_like(ids, lm.tokenizer.pad_token_id))
    emb = lm.model.get_input_embeddings()
    scores: dict[str, np.ndarray] = {}
    ig_info: dict = {}                      # f(x), f(baseline) and delta, when IG runs
    with torch.enable_grad():
        if "ig" in methods:
            ig = LayerIntegratedGradients(f, emb)
            attr = ig.attribute(ids, baselines=baseline, additional_forward_args=(mask,),
                                n_steps=n_steps, internal_batch_size=internal_batch_size)  # (1, T, D)
            scores["ig"] = attr.sum(-1)[0].detach().float().cpu().numpy()
            with torch.no_grad():
                base_emb = emb(baseline)                                 # (1, T, D)
                handle = emb.register_forward_hook(lambda mod, inp, out: base_emb)
                try:
                    f_base = float(f(ids, mask)[0])  # baseline word embeddings, real positions
                finally:
                    handle.remove()
                f_x, total = float(f(ids, mask)[0]), float(attr.sum())
            ig_info = {S.F_INPUT: f_x, S.F_BASELINE: f_base, S.DELTA: total - (f_x - f_base)}
        if "grad_x_input" in methods:
            gxi = LayerGradientXActivation(f, emb)
            attr = gxi.attribute(ids, additional_forward_args=(mask,))      # (1, T, D)
            scores["grad_x_input"] = attr.sum(-1)[0].detach().float().cpu().numpy()
    if "rollout" in methods:
        roll, _ = attention_tensor(lm, text, mode="rollout", layers=[lm.num_layers - 1])
        scores["rollout"] = roll[0, 0, pos].float().cpu().numpy()        # (T,) row of the predictor

    parts = []
    for m in methods:
        part = pd.DataFrame({S.METHOD: m, S.POSITION: range(len(view)), S.TOKEN: view.tokens,
                             S.WORD_ID: pd.array(view.word_ids, dtype="Int64"), S.SCORE: scores[m]})
        parts.append(part)
    frame = pd.concat(parts, ignore_index=True)
    if level == "word":
        frame = _merge_words(frame, view)
        frame[S.WORD_ID] = frame[S.WORD_ID].astype("Int64")
    total = frame.groupby(S.METHOD)[S.SCORE].transform(lambda s: s.abs().sum())
    frame[S.WEIGHT] = np.where(total > 0, frame[S.SCORE] / total.where(total > 0, 1.0), 0.0)
    frame[S.TARGET] = label
    frame[S.TARGET_ID], frame[S.TARGET_POSITION], frame[S.OUTPUT] = tid, pos, output
    for col in (S.F_INPUT, S.F_BASELINE, S.DELTA):  # IG's completeness check, on its rows only
        frame[col] = np.where(frame[S.METHOD] == "ig", ig_info.get(col, np.nan), np.nan)
    return frame


def attribute(lm: LM, text, *, target=None, method="ig", level: str = "token",
              output: str = "prob", n_steps: int = 50, internal_batch_size: int | None = 16,
              mask_index: int = 0) -> pd.DataFrame:
    """Attribution of one prediction per text to its input tokens (see the module docstring).

    `text`: a string or a list of strings (same `target` for each). `target`: for a masked LM a
    token string (" Paris" or "Paris"), a token id, or None for the top prediction at the
    `mask_index`-th mask; for a classifier a class index, a label name, or None for the predicted
    class. `method`: "ig", "grad_x_input", "rollout", a list of them, or "all". `level`: "token"
    or "word".

    Returns a tidy frame: model, text_id, text, method, position, token, word_id, score, weight,
    target, target_id (its token or class id), target_position (the position whose prediction is
    explained: the mask, or 0 for a classifier), output (what f is), and on IG rows only (NaN
    elsewhere) f_input, f_baseline and delta (f(x), f(baseline), and IG's sum minus their
    difference). IG's sum per text: `df[df.method == "ig"].groupby("text_id").score.sum()`.
    A model loaded in bf16 (the default on recent GPUs) gives deltas of a few percent; load it
    with `dtype="fp32"` when completeness matters.
    """
    text = as_one_text(text) if not isinstance(text, (list, tuple)) else as_text_list(text, "text")
    check_int("n_steps", n_steps, minimum=2)
    if lm.kind not in ("mlm", "classifier"):
        raise MissingHeadError(
            f"attribution explains a prediction, but {lm.name!r} was loaded as {lm.kind!r} "
            "(no masked-LM or classification head): load a checkpoint with one of those heads")
    if output not in OUTPUTS:
        raise InputError(f"output={output!r}; use one of {OUTPUTS}")
    if level not in ("token", "word"):
        raise InputError(f"level={level!r}; use 'token' or 'word'")
    if n_steps < 2:
        raise InputError(f"n_steps={n_steps}; integrated gradients needs at least 2 steps")
    methods = _methods(method)
    texts = [text] if isinstance(text, str) else list(text)
    frames = []
    for i, t in enumerate(texts):
        frame = _attribute_one(lm, t, target, methods, output, n_steps, internal_batch_size,
                               mask_index, level)
        frame.insert(0, S.TEXT, t)
        frame.insert(0, S.TEXT_ID, i)
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True)
    out.insert(0, S.MODEL, lm.name)
    return out
