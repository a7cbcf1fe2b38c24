"""Fill-mask: what a masked LM puts in each `<mask>` of a text, plus the masked-only head it uses.

Everything masked-token probing needs at the bottom lives here:

- `normalise_masks(lm, text)` accepts both spellings, `<mask>` (RoBERTa, XLM-R) and `[MASK]`
  (BERT), whatever the model, and rewrites them to the model's own mask token;
- `masked_logprobs(lm, input_ids, attention_mask, rows, cols)` runs the encoder once and applies the
  MLM head only at the (row, column) positions asked for, never on the whole (B, T, V) grid: for
  roberta-base that head costs about half the encoder per position, and PLL needs one position per
  copy;
- `fill_mask(lm_or_dict, texts, top_k=10)` returns the top-k tokens of every mask as a tidy frame.

Every mask is predicted from the same input (the other masks stay masked), exactly as transformers'
`pipeline("fill-mask")` does: the predictions of two masks are *independent*. To score a filling of
several masks jointly, use `score_candidates` (`workbench.analysis.candidates`).
"""

from __future__ import annotations

import re
from typing import Sequence

import pandas as pd
import torch

from .. import schema as S
from ..capture import as_text_list, batches
from ..errors import InputError
from ..models import LM, as_lm_dict
from ..tokens import tokenize

MASK_SPELLINGS = re.compile(r"<mask>|\[MASK\]", re.IGNORECASE)
WORD_START = "word_start"   # column: the predicted piece begins a new word (Ġ / ▁ / not ##)


def normalise_masks(lm: LM, text: str) -> str:
    """Rewrite every `<mask>` / `[MASK]` (any case) in `text` to `lm`'s own mask token."""
    return MASK_SPELLINGS.sub(lambda _: lm.tokenizer.mask_token, text)


def count_masks(text: str) -> int:
    return len(MASK_SPELLINGS.findall(text))


def mlm_head(lm: LM):
    """The module mapping final hidden states (..., H) to vocabulary logits (..., V)."""
    lm.require_mlm_head("masked-token probing")
    for name in ("lm_head", "cls"):  # RoBERTa/XLM-R/CamemBERT, BERT
        head = getattr(lm.model, name, None)
        if isinstance(head, torch.nn.Module):
            return head
    raise NotImplementedError(
        f"{type(lm.model).__name__} keeps its MLM head under an unknown name (expected `lm_head` "
        "or `cls`); masked-token probing supports RoBERTa-, XLM-R- and BERT-style masked LMs")


def encoder_hidden(lm: LM, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   all_layers: bool = False):
    """Final hidden states (B, T, H), or the tuple of L+1 hidden states with `all_layers=True`."""
    with torch.inference_mode():
        out = lm.encoder(input_ids=input_ids.to(lm.device),
                         attention_mask=attention_mask.to(lm.device),
                         output_hidden_states=all_layers, return_dict=True)
    return out.hidden_states if all_layers else out.last_hidden_state


def head_logprobs(lm: LM, hidden: torch.Tensor) -> torch.Tensor:
    """Log-softmax over the vocabulary of the MLM head applied to `hidden` (N, H) -> (N, V), fp32."""
    with torch.inference_mode():
        logits = mlm_head(lm)(hidden)                  # (N, V)
        return torch.log_softmax(logits.float(), dim=-1)


def masked_logprobs(lm: LM, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Vocabulary log-probs (N, V) at positions (rows[i], cols[i]) of the batch (B, T).

    One encoder pass for the whole batch; the head runs on the N selected positions only.
    """
    hidden = encoder_hidden(lm, input_ids, attention_mask)      # (B, T, H)
    rows, cols = rows.to(hidden.device), cols.to(hidden.device)
    return head_logprobs(lm, hidden[rows, cols])                # (N, V)


def piece_starts_word(tokenizer, piece: str) -> bool:
    """Whether a vocabulary piece begins a word: `Ġx`/`▁x` in BPE/SentencePiece, not `##x` in WordPiece."""
    if is_wordpiece(tokenizer):
        return not piece.startswith("##")
    return piece.startswith(("Ġ", "▁"))


def is_wordpiece(tokenizer) -> bool:
    """True for BERT-style WordPiece vocabularies (no leading-space marker, `##` continuations)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    return type(getattr(backend, "model", None)).__name__ == "WordPiece"


def encode_masked(lm: LM, texts: Sequence[str]):
    """Tokenise texts that must contain masks; return (encoding, mask positions per text)."""
    limit = lm.max_length
    enc = tokenize(lm.tokenizer, list(texts), truncation=False, padding=True,
                   return_tensors="pt")
    ids = enc["input_ids"]                                       # (B, T)
    if ids.shape[1] > limit:
        long = [i for i, n in enumerate(enc["attention_mask"].sum(1).tolist()) if n > limit]
        raise InputError(
            f"text(s) {long} are longer than the model's {limit} tokens: shorten them so the "
            "mask and its context fit")
    positions = [torch.nonzero(row == lm.tokenizer.mask_token_id).flatten().tolist() for row in ids]
    return enc, positions


def check_masked_texts(lm: LM, texts) -> list[str]:
    """Validate texts that must hold at least one mask; return them with the model's mask token."""
    texts = as_text_list(texts)
    for i, t in enumerate(texts):
        if count_masks(t) == 0:
            raise InputError(
                f"text {i} ({t[:60]!r}) has no mask: write <mask> (or [MASK]) where the model "
                "should fill in, e.g. 'The capital of France is <mask>.'")
    return [normalise_masks(lm, t) for t in texts]


def _fill_one(lm: LM, texts: list[str], top_k: int, batch_size: int) -> pd.DataFrame:
    tok = lm.tokenizer
    lengths = [len(x) for x in tokenize(tok, texts)["input_ids"]]
    parts = []
    for idx in batches(lengths, batch_size):
        enc, positions = encode_masked(lm, [texts[i] for i in idx])
        rows = torch.tensor([r for r, ps in enumerate(positions) for _ in ps], dtype=torch.long)
        cols = torch.tensor([p for ps in positions for p in ps], dtype=torch.long)
        logp = masked_logprobs(lm, enc["input_ids"], enc["attention_mask"], rows, cols)  # (N, V)
        k = min(top_k, logp.shape[-1])
        top_lp, top_id = logp.topk(k, dim=-1)                    # (N, k)
        top_lp, top_id = top_lp.cpu(), top_id.cpu()
        n = 0
        for r, ps in enumerate(positions):
            for m, pos in enumerate(ps):
                ids = top_id[n].tolist()
                pieces = tok.convert_ids_to_tokens(ids)
                parts.append(pd.DataFrame({
                    S.TEXT_ID: idx[r], S.TEXT: texts[idx[r]], S.MASK_INDEX: m,
                    S.POSITION: pos, S.RANK: range(1, k + 1),
                    S.TOKEN: [tok.decode([i]) for i in ids], S.TOKEN_ID: ids,
                    WORD_START: [piece_starts_word(tok, p) for p in pieces],
                    S.PROB: top_lp[n].exp().numpy(), S.LOGPROB: top_lp[n].numpy(),
                }))
                n += 1
    return pd.concat(parts, ignore_index=True)


def fill_mask(lm_or_dict, texts: str | Sequence[str], *, top_k: int = 10,
              batch_size: int = 32) -> pd.DataFrame:
    """Top-k predictions for every mask in `texts`, one row per (model, text, mask, rank).

    Columns: model, text_id, text, mask_index (0-based within the text), position (token index),
    rank (1-based), token (decoded piece, *with* its leading space: ' Paris' and 'Paris' are
    different tokens in RoBERTa's BPE), token_id, word_start, prob, logprob.

    Write masks as `<mask>` or `[MASK]`; several per text are allowed and are predicted
    independently, each from the text with all masks in place (as transformers' pipeline does).
    A text without a mask raises `InputError`.

    >>> wb.fill_mask(lm, "The capital of France is <mask>.", top_k=3)   # doctest: +SKIP
    """
    if not isinstance(top_k, int) or top_k < 1:
        raise InputError(f"top_k={top_k!r}; pass a positive integer")
    frames = []
    for name, lm in as_lm_dict(lm_or_dict).items():
        lm.require_mlm_head("fill_mask")
        texts_n = check_masked_texts(lm, texts)
        df = _fill_one(lm, texts_n, top_k, batch_size)
        df[S.TEXT] = df[S.TEXT_ID].map(dict(enumerate(as_text_list(texts))))
        df = df.sort_values([S.TEXT_ID, S.MASK_INDEX, S.RANK], kind="stable")
        df.insert(0, S.MODEL, name)
        frames.append(df)
    return pd.concat(frames, ignore_index=True)
