"""Behavioural probes: minimal pairs (BLiMP-style) and cloze probe sets (LAMA-style).

- `compare_pairs(lm, good, bad)`: PLL of each sentence of a pair; the model "prefers" the good one
  when its total PLL is higher. One row per pair with its margin; accuracy per model =
  `df.groupby("model").correct.mean()`.
- `probe(lm, frame)`: rows give a template with one `<mask>` and the accepted answers; returns P@1,
  P@k and MRR per relation. `mode="vocab"` ranks each answer against the whole vocabulary at the
  mask (LAMA); an answer that is not one token in context is *skipped and counted* (`n_skipped`),
  never reduced to its first piece. `mode="closed"` ranks the answers among the relation's pool
  of answers and foils, each scored jointly with a left-to-right chain (works for any length).
- `load_probe_set()`: the small CC0 probe set shipped in `workbench/data/probes/` (capitals, plurals,
  subject-verb agreement), or a user's own JSONL/TSV/CSV with the same columns.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Sequence

import pandas as pd
import torch

from .. import schema as S
from ..config import check_int, check_sequence
from ..errors import InputError
from ..models import LM, as_lm_dict
from ..resources import probe_set_path
from ..tokens import tokenize
from .candidates import CANDIDATE, fill_text, score_candidates
from .fill_mask import check_masked_texts, count_masks, encode_masked, masked_logprobs
from .pll import score

PAIR_ID = "pair_id"
GROUP = "group"
GOOD, BAD = "good", "bad"
GOOD_LOGPROB, BAD_LOGPROB = "good_logprob", "bad_logprob"
MARGIN = "margin"          # good_logprob - bad_logprob (nats); > 0 means the good one is preferred
CORRECT = "correct"
RELATION, TEMPLATE, ANSWERS, FOILS = "relation", "template", "answers", "foils"
PREDICTION = "prediction"  # the model's top-1 filler (vocab mode) or best candidate (closed mode)



# --- minimal pairs -----------------------------------------------------------------------------

def _pair_lists(good, bad, group):
    if isinstance(good, pd.DataFrame):
        cols = next((c for c in [(GOOD, BAD), ("sentence_good", "sentence_bad")]
                     if set(c) <= set(good.columns)), None)
        if cols is None:
            raise InputError("the pairs frame needs columns 'good' and 'bad' (or BLiMP's "
                             f"'sentence_good' and 'sentence_bad'); it has {list(good.columns)}")
        if group is None:
            group = next((c for c in (GROUP, "UID", RELATION) if c in good.columns), None)
        groups = list(good[group]) if isinstance(group, str) else group
        return list(good[cols[0]]), list(good[cols[1]]), groups
    good = [good] if isinstance(good, str) else list(good)
    bad = [bad] if isinstance(bad, str) else list(bad or [])
    if len(good) != len(bad):
        raise InputError(f"{len(good)} good but {len(bad)} bad sentences: pass equal-length lists")
    return good, bad, group


def compare_pairs(lm_or_dict, good, bad: Sequence[str] | None = None, *, group=None,
                  method: str = "pll", max_tokens: int | None = None) -> pd.DataFrame:
    """Score minimal pairs; one row per (model, pair).

    `good`/`bad` are equal-length lists of sentences, or `good` is a frame with columns good/bad
    (or BLiMP's sentence_good/sentence_bad) and optionally a group column (group, UID or relation).
    Columns: model, pair_id, group (when given), good, bad, good_logprob, bad_logprob, margin,
    correct. Accuracy per model: `df.groupby("model").correct.mean()`.
    """
    if not isinstance(good, (pd.DataFrame, str)):
        check_sequence("good", good)
    goods, bads, groups = _pair_lists(good, bad, group)
    if not goods:
        raise InputError("no pairs given")
    if groups is not None and len(groups) != len(goods):
        raise InputError(f"group has {len(groups)} entries for {len(goods)} pairs")
    unique = list(dict.fromkeys(goods + bads))
    scores = score(lm_or_dict, unique, method=method, max_tokens=max_tokens)
    frames = []
    for name, sub in scores.groupby(S.MODEL, sort=False):
        lp = dict(zip(sub[S.TEXT], sub[S.LOGPROB]))
        df = pd.DataFrame({S.MODEL: name, PAIR_ID: range(len(goods)), GOOD: goods, BAD: bads,
                           GOOD_LOGPROB: [lp[g] for g in goods], BAD_LOGPROB: [lp[b] for b in bads]})
        if groups is not None:
            df.insert(2, GROUP, list(groups))
        frames.append(df)
    out = pd.concat(frames, ignore_index=True)
    out[MARGIN] = out[GOOD_LOGPROB] - out[BAD_LOGPROB]
    out[CORRECT] = out[MARGIN] > 0
    return out


# --- cloze probe sets --------------------------------------------------------------------------

def _as_list(value) -> list[str]:
    if isinstance(value, str):
        return [a.strip() for a in value.split("|") if a.strip()]
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return []
    return [str(a).strip() for a in value]


def _check_frame(frame: pd.DataFrame) -> pd.DataFrame:
    missing = {TEMPLATE, ANSWERS} - set(frame.columns)
    if missing:
        raise InputError(f"probe frame lacks column(s) {sorted(missing)}: it needs 'template' "
                         "(a sentence with one <mask>) and 'answers' (a list, or 'a|b' text)")
    df = frame.reset_index(drop=True).copy()
    df[ANSWERS] = df[ANSWERS].map(_as_list)
    df[FOILS] = df[FOILS].map(_as_list) if FOILS in df else [[] for _ in range(len(df))]
    if RELATION not in df:
        df[RELATION] = "all"
    for i, (t, a) in enumerate(zip(df[TEMPLATE], df[ANSWERS])):
        if count_masks(t) != 1:
            raise InputError(f"probe row {i}: template {t!r} must contain exactly one <mask>")
        if not a:
            raise InputError(f"probe row {i}: no answers given")
    return df


def single_token_id(lm: LM, template: str, answer: str, mask_index: int = 0) -> int | None:
    """Id of `answer` as one token at mask `mask_index` of `template`, None if it is not one token.

    The answer is put in the text, so the leading-space rule is the text's ("is <mask>" -> 'Ġx').
    """
    fillers = [None] * count_masks(template)
    fillers[mask_index] = answer.strip()
    filled, [(a, b)] = fill_text(template, fillers)
    enc = tokenize(lm.tokenizer, filled, return_offsets_mapping=True)
    covering = [i for i, (s, e) in enumerate(enc["offset_mapping"]) if e > s and s < b and e > a]
    if len(covering) == 1 and tuple(enc["offset_mapping"][covering[0]]) == (a, b):
        return enc["input_ids"][covering[0]]
    return None


def _vocab_ranks(lm: LM, df: pd.DataFrame, batch_size: int = 32) -> pd.DataFrame:
    texts = check_masked_texts(lm, list(df[TEMPLATE]))
    ranks, preds = [], []
    for start in range(0, len(texts), batch_size):
        enc, positions = encode_masked(lm, texts[start:start + batch_size])
        cols = torch.tensor([p[0] for p in positions])
        logp = masked_logprobs(lm, enc["input_ids"], enc["attention_mask"],
                               torch.arange(len(cols)), cols).cpu()          # (B, V)
        for r in range(len(cols)):
            i = start + r
            ids = [single_token_id(lm, texts[i], a) for a in df[ANSWERS][i]]
            ids = [t for t in ids if t is not None]
            best = min((int((logp[r] > logp[r, t]).sum()) + 1 for t in ids), default=None)
            ranks.append(best)
            preds.append(lm.tokenizer.decode([int(logp[r].argmax())]))
    return pd.DataFrame({S.RANK: ranks, PREDICTION: preds})


def _closed_ranks(lm: LM, df: pd.DataFrame, max_tokens: int | None,
                  rank_by: str) -> pd.DataFrame:
    ranks, preds = [None] * len(df), [None] * len(df)
    for _, idx in df.groupby(RELATION, sort=False).groups.items():
        idx = list(idx)
        pool = list(dict.fromkeys(a for i in idx for a in df[ANSWERS][i] + df[FOILS][i]))
        with warnings.catch_warnings():  # the docstring says how mixed lengths are ranked
            warnings.filterwarnings("ignore", message=".*token counts.*")
            sc = score_candidates(lm, list(df[TEMPLATE][idx]), pool, method="chain",
                                  max_tokens=max_tokens, rank_by=rank_by)
        for t_id, sub in sc.groupby(S.TEXT_ID):
            i = idx[t_id]
            good = sub[sub[CANDIDATE].isin(df[ANSWERS][i])]
            ranks[i] = int(good[S.RANK].min())
            preds[i] = sub.loc[sub[rank_by].idxmax(), CANDIDATE]
    return pd.DataFrame({S.RANK: ranks, PREDICTION: preds})


def probe(lm_or_dict, frame: pd.DataFrame, *, k: int = 10, mode: str = "vocab",
          per_item: bool = False, max_tokens: int | None = None,
          rank_by: str = "logprob") -> pd.DataFrame:
    """LAMA-style cloze probing: P@1, P@k and MRR per (model, relation).

    `frame` has columns template (one <mask>), answers (list or 'a|b'), optionally relation and
    foils (used as extra distractors in closed mode). Summary columns: model, relation, n (rows
    scored), n_skipped (rows with no single-token answer, vocab mode), p_at_1, p_at_k, mrr, k.
    With `per_item=True`: one row per (model, probe row) with rank (None if skipped),
    prediction, and the row's own columns.
    Closed mode ranks by `rank_by`: "logprob", the chain rule's total log-probability of the
    whole answer (a probability of strings, which favours answers of fewer tokens), or
    "mean_logprob", the mean per scored token (length-normalised).
    """
    if not isinstance(frame, pd.DataFrame):
        raise InputError(f"frame is a {type(frame).__name__}; pass a DataFrame (see load_probe_set)")
    check_int("k", k, minimum=1), check_int("max_tokens", max_tokens, minimum=1, allow_none=True)
    if mode not in ("vocab", "closed"):
        raise InputError(f"mode={mode!r}; use 'vocab' (rank in the whole vocabulary) or 'closed'")
    if not isinstance(k, int) or k < 1:
        raise InputError(f"k={k!r}; pass a positive integer")
    df = _check_frame(frame)
    frames = []
    for name, lm in as_lm_dict(lm_or_dict).items():
        lm.require_mlm_head("probe")
        found = (_vocab_ranks(lm, df) if mode == "vocab"
                 else _closed_ranks(lm, df, max_tokens, rank_by))
        item = pd.concat([df, found], axis=1)
        item.insert(0, S.MODEL, name)
        frames.append(item)
    items = pd.concat(frames, ignore_index=True)
    items["mode"] = mode
    if per_item:
        return items
    rows = []
    for (name, rel), sub in items.groupby([S.MODEL, RELATION], sort=False):
        r = sub[S.RANK].dropna().astype(float)
        rows.append({S.MODEL: name, RELATION: rel, "n": len(r), "n_skipped": len(sub) - len(r),
                     "p_at_1": float((r <= 1).mean()) if len(r) else float("nan"),
                     "p_at_k": float((r <= k).mean()) if len(r) else float("nan"),
                     "mrr": float((1 / r).mean()) if len(r) else float("nan"),
                     "k": k, "mode": mode})
    return pd.DataFrame(rows)


def load_probe_set(path: str | Path | None = None, *, as_pairs: bool = False) -> pd.DataFrame:
    """Load a probe set (default: the shipped CC0 set, workbench/data/probes/probe_set.jsonl).

    JSONL, TSV or CSV with columns template, answers (list or 'a|b'), optional relation, foils.
    `as_pairs=True` returns the minimal pairs the foils define (columns relation, good, bad) for
    `compare_pairs`: the template filled with the first answer vs. with each foil.
    """
    path = Path(path) if path is not None else probe_set_path()
    if not path.exists():
        raise InputError(f"probe set {path} does not exist: pass the path of a .jsonl/.tsv/.csv file")
    if path.suffix == ".jsonl":
        try:
            df = pd.DataFrame([json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
                               if line.strip()])
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise InputError(f"probe set {path} is not valid UTF-8 JSONL ({err}): one JSON object "
                             "per line") from None
    elif path.suffix in (".tsv", ".csv"):
        df = pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",")
    else:
        raise InputError(f"{path.name}: use a .jsonl, .tsv or .csv file")
    df = _check_frame(df)
    if not as_pairs:
        return df
    rows = [{RELATION: r[RELATION], GOOD: fill_text(r[TEMPLATE], [r[ANSWERS][0]])[0],
             BAD: fill_text(r[TEMPLATE], [foil])[0]}
            for _, r in df.iterrows() for foil in r[FOILS]]
    if not rows:
        raise InputError(f"{path.name} has no foils, so it defines no minimal pairs")
    return pd.DataFrame(rows)
