"""Running the stock model on batches and capturing what analyses need.

- `encode(lm, texts, pairs)` tokenises a batch (dynamic padding) and returns the `TokenView`s;
- `forward(lm, batch, attentions=..., hidden_states=...)` runs it without gradients, with eager
  attention when weights are asked for, and fails loudly if they come back empty;
- `batches(lengths, batch_size)` groups inputs by length so padding stays small;
- `attention_modules(lm)` finds each layer's q/k/v and output projections for hooks
  (norm-based attention, head gates) without forking model code.

Padding never leaks into results: callers slice each row to `len(view)` tokens.

Truncation never happens silently, because it never happens: `encode` and `token_lengths` are the
one tokenisation path of every analysis, and both refuse a text longer than `max_length` (None:
the model's limit) with an `InputError` that names it and its length, so an analysis never
describes a text it saw only the start of. Both leave the tokenizer's backend as they found it
(`tokens.tokenize`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence

import torch

from .config import check_int, check_positive_int
from .errors import InputError
from .models import LM
from .tokens import TokenView, token_view, tokenize


@dataclass
class Batch:
    """A tokenised batch on the model's device plus readable views of each row."""

    inputs: dict[str, torch.Tensor]   # input_ids (B, T), attention_mask (B, T)
    views: list[TokenView]

    @property
    def lengths(self) -> list[int]:
        return [len(v) for v in self.views]


def as_text_list(texts: str | Sequence[str], what: str = "texts") -> list[str]:
    """`texts` as a non-empty list of non-blank strings (one string becomes a list of one).

    Accepts a string, a list/tuple, a pandas Series or any iterable of strings; refuses None,
    bytes, a dict or a DataFrame (iterating those gives keys or column names, not texts).
    """
    if isinstance(texts, str):
        texts = [texts]
    check_text_container(texts, what)
    texts = list(texts)
    if not texts:
        raise InputError(f"{what} is empty: pass at least one string")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise InputError(f"{what}[{i}]={_short(t)} is a {type(t).__name__}, not a string: "
                             "pass strings only (drop or convert missing values)")
        if not t.strip():
            raise InputError(f"{what}[{i}]={t!r} is empty or whitespace only: drop it")
    return texts


def as_one_text(text, what: str = "text") -> str:
    """One non-blank string (for functions that analyse a single text)."""
    if not isinstance(text, str):
        many = " (this function takes one text; loop over a list)" if isinstance(text, (list, tuple)) else ""
        raise InputError(f"{what}={_short(text)} is a {type(text).__name__}{many}; pass one string")
    return as_text_list(text, what)[0]


def check_text_container(texts, what: str = "texts") -> None:
    """Refuse None, bytes, a dict, a DataFrame or a non-iterable where a list of texts belongs."""
    if texts is None or isinstance(texts, (bytes, bytearray, dict)) or _is_frame(texts) \
            or not isinstance(texts, Iterable):
        hint = " (decode it first: data.decode('utf-8'))" if isinstance(texts, (bytes, bytearray)) else ""
        raise InputError(f"{what}={_short(texts)} is a {type(texts).__name__}{hint}; pass a string "
                         "or a list of strings")


def _is_frame(value) -> bool:
    return type(value).__name__ == "DataFrame"


def _short(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def encode(lm: LM, texts: Sequence[str], pairs: Sequence[str] | None = None,
           max_length: int | None = None) -> Batch:
    """Tokenise `texts` (optionally paired with `pairs`) into one padded batch on `lm.device`.

    `max_length` (None: the model's limit) must fit the special tokens and at most the model's
    position table; a longer input is refused (`refuse_overflow`), never truncated.
    """
    limit = check_max_length(lm, max_length)
    enc = tokenize(lm.tokenizer, list(texts), list(pairs) if pairs is not None else None,
                   padding=True, truncation=False, verbose=False,
                   return_tensors="pt", return_offsets_mapping=False)
    refuse_overflow(enc["attention_mask"].sum(1).tolist(), limit, max_length, texts)
    views = [
        token_view(lm.tokenizer, t, pairs[i] if pairs is not None else None,
                   encoding=enc.encodings[i])
        for i, t in enumerate(texts)
    ]
    inputs = {k: v.to(lm.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
    if "token_type_ids" in enc and getattr(lm.config, "type_vocab_size", 1) > 1:
        inputs["token_type_ids"] = enc["token_type_ids"].to(lm.device)  # BERT pairs
    return Batch(inputs=inputs, views=views)


def refuse_overflow(lengths: Sequence[int], limit: int, max_length: int | None,
                    texts: Sequence[str]) -> None:
    """Raise `InputError` if any text has more than `limit` tokens (the analyses' one rule)."""
    long = [i for i, n in enumerate(lengths) if n > limit]
    if not long:
        return
    i = long[0]
    what = f"max_length={limit}" + (" (the model's limit)" if max_length is None else "")
    raise InputError(
        f"{len(long)} of {len(lengths)} texts have more than {what} tokens: texts[{i}] "
        f"({_short(texts[i], 40)}) has {lengths[i]:,}. Analyses never truncate (a cut text would "
        "be analysed without its end): split long texts into sentences or windows first"
        + ("" if max_length is None else ", or raise max_length"))


def check_max_length(lm: LM, max_length: int | None, minimum: int = 4) -> int:
    """`max_length` checked against the model (None: the model's own limit); returns the limit."""
    limit = lm.max_length
    if max_length is None:
        return limit
    check_int("max_length", max_length, minimum=minimum)
    if max_length > limit:
        raise InputError(f"max_length={max_length} is above what {lm.name!r} can take ({limit} "
                         f"tokens, from its position embeddings): set max_length <= {limit}")
    return max_length


def forward(lm: LM, batch: Batch, *, attentions: bool = False, hidden_states: bool = False,
            encoder_only: bool = True):
    """Run the model on `batch` without gradients.

    Returns the transformers output; with `attentions=True` its `.attentions` is a tuple of
    `num_layers` tensors (B, H, T, T) in fp32, guaranteed non-empty.
    """
    model = lm.encoder if encoder_only else lm.model
    ctx = lm.eager_attention() if attentions else contextlib.nullcontext()
    with torch.inference_mode(), ctx, eval_mode(model):                # no dropout, mode restored
        out = model(**batch.inputs, output_attentions=attentions,
                    output_hidden_states=hidden_states, return_dict=True)
    if attentions:
        att = getattr(out, "attentions", None)
        if not att or any(a is None for a in att):
            raise RuntimeError(
                "the model returned no attention weights although output_attentions=True; "
                f"its attention implementation is {lm.config._attn_implementation!r}. "
                "This is a workbench bug: please report it."
            )
    return out


def batches(lengths: Sequence[int], batch_size: int, sort: bool = True) -> Iterator[list[int]]:
    """Yield lists of indices, grouped by length (longest first) so each batch pads little."""
    batch_size = check_positive_int("batch_size", batch_size)  # checked now, not on first next()
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i]) if sort else list(range(len(lengths)))
    return iter([order[start:start + batch_size] for start in range(0, len(order), batch_size)])


def token_lengths(lm: LM, texts: Sequence[str], pairs: Sequence[str] | None = None,
                  max_length: int | None = None) -> list[int]:
    """Tokens (with specials) of each text, refusing one above `max_length` (`refuse_overflow`)."""
    texts, pairs = list(texts), list(pairs) if pairs is not None else None
    lengths = []
    for lo in range(0, len(texts), 8192):   # a block's ids at a time, not a whole corpus's
        ids = tokenize(lm.tokenizer, texts[lo:lo + 8192],
                       pairs[lo:lo + 8192] if pairs is not None else None,
                       truncation=False, verbose=False)["input_ids"]
        lengths += [len(x) for x in ids]
    refuse_overflow(lengths, check_max_length(lm, max_length), max_length, texts)
    return lengths


@dataclass
class AttentionParts:
    """The modules of one layer's self-attention that hooks need."""

    layer: int
    query: torch.nn.Linear
    key: torch.nn.Linear
    value: torch.nn.Linear
    output: torch.nn.Linear      # projection applied to the concatenated head contexts
    num_heads: int
    head_dim: int


def attention_modules(lm: LM) -> list[AttentionParts]:
    """Locate q/k/v/output projections per layer for BERT/RoBERTa/XLM-R style encoders."""
    enc = lm.encoder
    layers = getattr(getattr(enc, "encoder", None), "layer", None)
    if layers is None:
        raise NotImplementedError(
            f"{type(lm.model).__name__}: only BERT/RoBERTa-style encoders (encoder.layer[i]."
            "attention.self/.output) are supported for hook-based analyses")
    parts = []
    for i, layer in enumerate(layers):
        self_attn = layer.attention.self
        n = lm.config.num_attention_heads
        parts.append(AttentionParts(
            layer=i, query=self_attn.query, key=self_attn.key, value=self_attn.value,
            output=layer.attention.output.dense, num_heads=n,
            head_dim=lm.config.hidden_size // n))
    return parts


def encoder_layers(lm: LM) -> list[torch.nn.Module]:
    """The encoder's layer modules (BERT/RoBERTa style: `.attention.self/.output`, `.intermediate`,
    `.output.dense/.LayerNorm`), for analyses that re-run or patch whole layers."""
    attention_modules(lm)                                   # same architecture check and error
    return list(lm.encoder.encoder.layer)


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Run the block in eval mode (no dropout), then give every module back its own mode."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


@contextlib.contextmanager
def hooks(pairs: Iterable[tuple[torch.nn.Module, Callable, str]]) -> Iterator[None]:
    """Register (module, fn, kind) hooks for the block; kind is 'forward', 'pre' or 'pre_kwargs'
    (a pre-hook called as fn(module, args, kwargs)). Always removed."""
    handles = []
    try:
        for module, fn, kind in pairs:
            if kind == "pre_kwargs":
                handles.append(module.register_forward_pre_hook(fn, with_kwargs=True))
            elif kind == "pre":
                handles.append(module.register_forward_pre_hook(fn))
            else:
                handles.append(module.register_forward_hook(fn))
        yield
    finally:
        for h in handles:
            h.remove()
