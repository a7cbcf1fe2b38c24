"""Activation patching (causal tracing) for encoders: which site carries what decides a prediction.

`patch(lm, clean, corrupted, metric=...)` runs the model on a corrupted input and, one site at a
time, puts back the activation the clean input produced there, then reads the metric. A site
whose clean activation restores the clean metric carries the information that decides it
(Vig et al. 2020, causal mediation; Meng et al. 2022, ROME's causal tracing; the
"activation patching" of interpretability work on decoders).

Sites (post-LayerNorm BERT/RoBERTa layers, hooked on the stock modules):
- "resid": the residual stream after layer l (the layer's output) at one position;
- "attn": the attention sublayer's output at one position: the heads' output projection
  (attention.output.dense, bias included), before it is added to the residual and LN1;
- "ffn": the FFN sublayer's output at one position (output.dense), before the residual and LN2;
- "head": head h's context vector (its slice of the input of attention.output.dense) at every
  position: one site per (layer, head).
`positions="all"` patches every position of a layer at once (reported as position -1).

Corruption: a paired text of the same token length (a minimal pair), or `noise=[positions]`:
Gaussian noise added to the word embeddings of those tokens of the clean text, with standard
deviation `noise_scale` (3 by default, as ROME) times the standard deviation of the word
embedding matrix, from a fixed `seed`; the same noise in every corrupted run.

Metrics: "logprob_diff" (masked LM: log P(candidates[0]) - log P(candidates[1]) at the clean
text's one `<mask>`, each candidate one token), "logit" / "prob" / "logprob" of class `target`
(a classifier), or a callable taking the model's output logits ((B, T, V) or (B, C); the last
hidden states (B, T, D) for an encoder without a head) and returning one number per row (B,).

Every forward pass has W = max(batch_size, 2) rows, one site per row (short passes are filled
with unpatched rows), so a row's numbers do not depend on where its site falls. The first pass
carries the clean text (row 0), the corrupted one (row 1) and the first W - 2 sites, patched
from row 0 within the same pass; it records what the later passes need. Later passes take the
remaining sites in layer order and start at the first layer their sites need: a residual site
at layer l needs layers l + 1.. only, fed the recorded corrupted output of layer l with the clean
row put in (`_start_at`), so a 12-layer residual grid costs about L^2 / 2 layer-steps per
position instead of the L^2 of one forward per site; the skipped layers would recompute the fed
values bit for bit.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from .. import schema as S
from ..capture import as_one_text, attention_modules, encode, encoder_layers, hooks
from ..config import check_finite, check_positive_int
from ..errors import InputError, MissingHeadError
from ..models import LM, check_lm
from ..tokens import tokenize
from .fill_mask import mlm_head, normalise_masks
from .probes import single_token_id

SITES = ("resid", "attn", "ffn", "head")
CLASS_METRICS = ("logit", "prob", "logprob")


@dataclass(frozen=True)
class Site:
    """One patch: `kind` at `layer`, at token `position` (-1: all) or of `head` (-1: none)."""

    kind: str
    layer: int
    position: int = -1
    head: int = -1


def site_modules(lm: LM, kind: str, layer: int) -> tuple[torch.nn.Module, str]:
    """(module, hook kind) whose output (or, for heads, input) is the site's activation."""
    mod = encoder_layers(lm)[layer]
    if kind == "resid":
        return mod, "forward"
    if kind == "attn":
        return mod.attention.output.dense, "forward"
    if kind == "ffn":
        return mod.output.dense, "forward"
    return attention_modules(lm)[layer].output, "pre"


def _first(x):
    return x[0] if isinstance(x, tuple) else x


def _replace(x, new):
    return (new,) + tuple(x[1:]) if isinstance(x, tuple) else new


@contextlib.contextmanager
def _record(lm: LM, keys: set[tuple[str, int]], store: dict, row: int = 0):
    """Store row `row` of each (kind, layer) activation of the next forward: (T, D)."""
    def make(key):
        def fwd(module, args, out):
            store[key] = _first(out)[row].detach().clone()
        def pre(module, args):
            store[key] = args[0][row].detach().clone()
        return fwd, pre
    pairs = []
    for key in keys:
        module, how = site_modules(lm, *key)
        fwd, pre = make(key)
        pairs.append((module, fwd if how == "forward" else pre, how))
    with hooks(pairs):
        yield store


@contextlib.contextmanager
def _patching(lm: LM, rows: Sequence[Site | None], clean: dict, read_at: int | None = None):
    """Inside the block, batch row r carries site rows[r] patched with the clean activation.
    `read_at`: the one position the last layer computes (`_AtOne`), if it computes only one."""
    groups: dict[tuple[str, int], list[tuple[int, Site]]] = {}
    for r, site in enumerate(rows):
        if site is not None:
            groups.setdefault((site.kind, site.layer), []).append((r, site))
    d = attention_modules(lm)[0].head_dim

    def patched(key, x):
        x = x.clone()
        src = clean[key].to(x.dtype)                                 # (T, D), or (1, D) in _AtOne
        for r, site in groups[key]:
            if x.shape[1] == 1 and site.kind != "head" and site.position >= 0:
                if site.position == read_at:                         # _AtOne: the one row
                    x[r, 0] = src[0]
                continue                                             # a row no one reads
            if site.kind == "head":
                sl = slice(site.head * d, (site.head + 1) * d)
                x[r, :, sl] = src[:, sl]
            elif site.position < 0:
                x[r] = src
            else:
                x[r, site.position] = src[site.position]
        return x

    def make(key, how):
        if how == "forward":
            return lambda module, args, out: _replace(out, patched(key, _first(out)))
        return lambda module, args: (patched(key, args[0]),) + tuple(args[1:])

    pairs = []
    for key in groups:
        module, how = site_modules(lm, *key)
        pairs.append((module, make(key, how), how))
    with hooks(pairs):
        yield


@contextlib.contextmanager
def _start_at(lm: LM, start: int, hidden: torch.Tensor | None):
    """Inside the block a forward runs layers `start`.. only (none if start = L), fed `hidden`
    (B, T, D) in place of the embeddings' output: the corrupted input of layer `start` recorded
    in the first pass, with the residual patches of layer start - 1 already put in.

    For the unpatched rows the layers before `start` would compute exactly `hidden` again (same
    input, same batch shape), so skipping them changes no bit; the encoder's own forward, masks
    and task head run as usual (the layer list is swapped for its tail and always restored).
    """
    if start == 0:
        yield
        return
    enc = lm.encoder.encoder
    full = enc.layer

    def feed(module, args, out):
        return hidden.to(out.dtype)

    enc.layer = torch.nn.ModuleList(list(full)[start:])
    try:
        with hooks([(lm.encoder.embeddings, feed, "forward")]):
            yield
    finally:
        enc.layer = full


class _AtOne(torch.nn.Module):
    """A stock BERT/RoBERTa layer computed for one position `pos` only: keys and values of every
    position, then the query, attention output (LN1) and FFN (LN2) of `pos` alone; the output's
    other rows are zero. Used as the last layer when the metric reads only `pos` (the mask):
    L - 1 of every L positions of the last layer would be computed and thrown away. It keeps the
    layer's submodules, so the site hooks fire on them, with (B, 1, D) tensors."""

    def __init__(self, layer: torch.nn.Module, pos: int):
        super().__init__()
        self.attention, self.intermediate, self.output = (layer.attention, layer.intermediate,
                                                          layer.output)
        self.pos = pos

    def forward(self, hidden, attention_mask=None, *args, **kwargs):
        sa, (b, t, _) = self.attention.self, hidden.shape
        split = (b, -1, sa.num_attention_heads, sa.attention_head_size)
        k = sa.key(hidden).view(*split).transpose(1, 2)                      # (B, H, T, d)
        v = sa.value(hidden).view(*split).transpose(1, 2)
        x = hidden[:, self.pos:self.pos + 1]                                 # (B, 1, D)
        q = sa.query(x).view(*split).transpose(1, 2)                         # (B, H, 1, d)
        scores = (q @ k.transpose(2, 3)) * sa.scaling                        # (B, H, 1, T)
        if attention_mask is not None:                                       # 4-D, or none
            m = attention_mask[..., self.pos:self.pos + 1, :] if attention_mask.shape[-2] > 1 \
                else attention_mask
            scores = scores.masked_fill(~m, float("-inf")) if m.dtype == torch.bool \
                else scores + m
        ctx = (torch.softmax(scores, -1) @ v).transpose(1, 2).reshape(b, 1, -1)   # (B, 1, D)
        a = self.attention.output(ctx, x)                                    # LN1
        y = self.output(self.intermediate(a), a)                             # (B, 1, D) LN2
        out = hidden.new_zeros(b, t, y.shape[-1])
        out[:, self.pos] = y[:, 0]
        return out


@contextlib.contextmanager
def _last_layer_at(lm: LM, pos: int | None):
    """Inside the block the encoder's last layer is `_AtOne(pos)` (always restored); nothing
    changes if `pos` is None or the model's attention is not plain absolute-position attention."""
    enc = lm.encoder.encoder
    if pos is None or getattr(lm.config, "position_embedding_type", "absolute") != "absolute" \
            or getattr(lm.config, "is_decoder", False):
        yield
        return
    full = enc.layer
    enc.layer = torch.nn.ModuleList(list(full)[:-1] + [_AtOne(full[-1], pos)])
    try:
        yield
    finally:
        enc.layer = full


@contextlib.contextmanager
def _noise(lm: LM, positions: list[int] | None, scale: float, seed: int, first_row: int = 0):
    """Add fixed Gaussian noise to the word embeddings at `positions` of rows `first_row`.."""
    if not positions:
        yield
        return
    emb = lm.encoder.embeddings.word_embeddings
    sigma = float(emb.weight.float().std())
    gen = torch.Generator().manual_seed(int(seed))
    eps = torch.randn(len(positions), emb.embedding_dim, generator=gen) * scale * sigma

    def hook(module, args, out):
        out = out.clone()
        out[first_row:, positions] += eps.to(out.device, out.dtype)
        return out

    with hooks([(emb, hook, "forward")]):
        yield


def _metric_fn(lm: LM, clean: str, metric, candidates, target) -> tuple[Callable, str, int | None]:
    """(fn(inputs) -> (B,) metric values, description, mask position)."""
    if callable(metric):
        def run(inputs):
            out = lm.model(**inputs, return_dict=True)
            res = metric(out.logits if hasattr(out, "logits") else out.last_hidden_state)
            return torch.as_tensor(res).float().reshape(-1)
        return run, getattr(metric, "__name__", "custom"), None
    if metric == "logprob_diff":
        lm.require_mlm_head("patch(metric='logprob_diff')")
        ids = tokenize(lm.tokenizer, clean)["input_ids"]
        pos = [i for i, t in enumerate(ids) if t == lm.tokenizer.mask_token_id]
        if len(pos) != 1:
            raise InputError(f"metric='logprob_diff' needs exactly one {lm.mask_token} in the clean "
                             f"text; {clean!r} has {len(pos)}")
        if candidates is None or isinstance(candidates, str) or len(candidates) != 2:
            raise InputError("metric='logprob_diff' needs candidates=(a, b): two words, each one "
                             "token at the mask, e.g. candidates=('is', 'are')")
        tok = []
        for c in candidates:
            t = single_token_id(lm, clean, str(c))
            if t is None:
                raise InputError(f"candidate {c!r} is not one token at the mask of {clean!r} for "
                                 f"{lm.name!r}: pick a word the tokenizer keeps whole")
            tok.append(t)
        head = mlm_head(lm)

        def run(inputs):
            hidden = lm.encoder(**inputs, return_dict=True).last_hidden_state[:, pos[0]]
            logp = torch.log_softmax(head(hidden).float(), -1)          # (B, V)
            return logp[:, tok[0]] - logp[:, tok[1]]
        return run, f"log P({candidates[0]}) - log P({candidates[1]})", pos[0]
    if metric in CLASS_METRICS:
        if lm.kind != "classifier":
            raise MissingHeadError(f"metric={metric!r} reads a class, but {lm.name!r} was loaded "
                                   f"as {lm.kind!r}: load a fine-tuned classifier, or use "
                                   "metric='logprob_diff' on a masked LM")
        n = lm.config.num_labels
        names = {str(k): int(v) for k, v in (lm.config.label2id or {}).items()}
        cls = names.get(str(target), target) if isinstance(target, str) else target
        if cls is None or not isinstance(cls, (int, np.integer)) or not 0 <= int(cls) < n:
            raise InputError(f"target={target!r}: pass the class to read (0..{n - 1} or one of "
                             f"{sorted(names)})")

        def run(inputs):
            logits = lm.model(**inputs, return_dict=True).logits.float()  # (B, C)
            if metric == "prob":
                return torch.softmax(logits, -1)[:, int(cls)]
            if metric == "logprob":
                return torch.log_softmax(logits, -1)[:, int(cls)]
            return logits[:, int(cls)]
        return run, f"{metric} of class {target}", None
    raise InputError(f"metric={metric!r}; use 'logprob_diff' (masked LM), one of {CLASS_METRICS} "
                     "(classifier) or a callable(logits) -> one value per row")


def _sites(lm: LM, sites, layers, positions, n_tokens: int) -> list[Site]:
    sites = [sites] if isinstance(sites, str) else list(sites)
    bad = [s for s in sites if s not in SITES]
    if bad or not sites:
        raise InputError(f"sites={sites!r}; use any of {SITES}")
    layer_ids = list(range(lm.num_layers)) if layers is None else (
        [layers] if isinstance(layers, (int, np.integer)) else list(layers))
    for layer in layer_ids:
        if not isinstance(layer, (int, np.integer)) or not 0 <= int(layer) < lm.num_layers:
            raise InputError(f"layer {layer!r} is outside the model: {lm.name!r} has layers "
                             f"0..{lm.num_layers - 1}")
    if isinstance(positions, str):
        if positions != "all":
            raise InputError(f"positions={positions!r}; pass None (each), 'all' or a list")
        pos_ids = [-1]
    else:
        pos_ids = list(range(n_tokens)) if positions is None else [int(p) for p in positions]
        for p in pos_ids:
            if not 0 <= p < n_tokens:
                raise InputError(f"position {p} is outside the text's {n_tokens} tokens "
                                 f"(0..{n_tokens - 1})")
    out = []
    for kind in sites:
        for layer in layer_ids:
            if kind == "head":
                out += [Site(kind, int(layer), -1, h) for h in range(lm.num_heads)]
            else:
                out += [Site(kind, int(layer), p) for p in pos_ids]
    return out


def _inputs(lm: LM, clean: str, corrupted: str | None, max_length):
    a = encode(lm, [clean], max_length=max_length)
    if corrupted is None:
        return a, a
    b = encode(lm, [corrupted], max_length=max_length)
    if len(a.views[0]) != len(b.views[0]):
        raise InputError(
            f"clean and corrupted texts must have the same number of tokens to patch position by "
            f"position: clean has {len(a.views[0])} {a.views[0].display}, corrupted has "
            f"{len(b.views[0])} {b.views[0].display}; change a word so both tokenise alike")
    return a, b


def patch(lm: LM, clean: str, corrupted: str | None = None, *, metric="logprob_diff",
          candidates: Sequence[str] | None = None, target=None,
          sites: str | Sequence[str] = "resid", layers: Sequence[int] | int | None = None,
          positions: Sequence[int] | str | None = None, noise: Sequence[int] | None = None,
          noise_scale: float = 3.0, seed: int = 0, batch_size: int = 32,
          max_length: int | None = None) -> pd.DataFrame:
    """Activation patching of `lm` from `clean` into `corrupted` (see the module docstring).

    One row per site: model, site, layer, head (-1 unless site="head"), position (-1 for heads
    and positions="all"), token (the clean token there), span ("corrupted" where the two inputs
    differ or noise was added, "mask" at the metric's mask, else "other"), value (the metric with that site
    patched), clean and corrupted (the two unpatched metrics), effect = (value - corrupted) /
    (clean - corrupted) (1: the site alone restores the clean metric; NaN if clean == corrupted).

    >>> wb.patch(lm, "The keys to the cabinet <mask> here.", "The key to the cabinet <mask> here.",
    ...          candidates=("are", "is"))                                   # doctest: +SKIP
    """
    check_lm(lm)
    clean = normalise_masks(lm, as_one_text(clean, "clean"))
    if (corrupted is None) == (noise is None):
        raise InputError("pass either corrupted= (a paired text of the same token length) or "
                         "noise= (token positions whose embeddings get Gaussian noise), not both")
    if corrupted is not None:
        corrupted = normalise_masks(lm, as_one_text(corrupted, "corrupted"))
    noise_scale = check_finite("noise_scale", noise_scale, low=0)
    batch_size = check_positive_int("batch_size", batch_size)
    run, described, mask_pos = _metric_fn(lm, clean, metric, candidates, target)
    a, b = _inputs(lm, clean, corrupted, max_length)
    n = len(a.views[0])
    noisy = None
    if noise is not None:
        noisy = [int(p) for p in ([noise] if isinstance(noise, (int, np.integer)) else noise)]
        if not noisy or any(not 0 <= p < n for p in noisy):
            raise InputError(f"noise={noise!r}: pass token positions inside 0..{n - 1} to corrupt")
    todo = _sites(lm, sites, layers, positions, n)

    values, clean_value, corrupt_value = _run_sites(lm, run, todo, a, b, batch_size,
                                                    (noisy, noise_scale, seed), mask_pos)
    ids_a, ids_b = a.inputs["input_ids"][0].tolist(), b.inputs["input_ids"][0].tolist()
    changed = set(noisy or []) | {p for p in range(n) if ids_a[p] != ids_b[p]}
    spans = ["corrupted" if p in changed else "mask" if p == mask_pos else "other"
             for p in range(n)]
    return _frame(lm, todo, values, clean_value, corrupt_value, a.views[0].display, spans,
                  described)


def _run_sites(lm: LM, run: Callable, todo: list[Site], a, b, batch_size: int, noise,
               read_at: int | None = None):
    """(values per site, clean value, corrupted value); every forward has W = max(batch_size, 2)
    rows, sites sorted by layer.

    The first pass holds the clean text (row 0), the corrupted one (row 1) and the first W - 2
    sites, patched from row 0's activation of the same pass; it records row 0's activations at
    every later site and row 1's layer outputs. Each later pass starts at the first layer its
    sites need (`_first_layer`), fed the recorded corrupted input of that layer, so no pass
    recomputes a layer whose output it already has, and runs the metric. `read_at`: the one
    position the metric reads (the mask), so the last layer computes that position only.
    """
    width = max(batch_size, 2)
    order = sorted(range(len(todo)), key=lambda i: _first_layer([todo[i]]))   # stable
    head, later = order[:width - 2], order[width - 2:]
    values = np.empty(len(todo))
    clean: dict = {}
    corrupt: dict = {}
    resid_keys = {("resid", layer) for layer in range(lm.num_layers)}
    first_rows = [None, None] + [todo[i] for i in head] + [None] * (width - 2 - len(head))
    ids = torch.cat([a.inputs["input_ids"], b.inputs["input_ids"].expand(width - 1, -1)])
    inputs = {k: (ids if k == "input_ids" else torch.cat([v, b.inputs[k].expand(width - 1, -1)]))
              for k, v in a.inputs.items()}
    noisy, scale, seed = noise
    with torch.inference_mode(), _last_layer_at(lm, read_at):
        # row 0's hook records before the patching hook of the same module reads it
        with _record(lm, {(todo[i].kind, todo[i].layer) for i in order}, clean, row=0), \
                _record(lm, resid_keys, corrupt, row=1), _patching(lm, first_rows, clean, read_at), \
                _noise(lm, noisy, scale, seed, first_row=1):
            out = run(inputs).double().cpu().numpy()
        clean_value, corrupt_value = float(out[0]), float(out[1])
        values[head] = out[2:2 + len(head)]
        rep = {k: v.expand(width, *v.shape[1:]) for k, v in b.inputs.items()}
        for at in range(0, len(later), width):
            idx = later[at:at + width]
            rows = [todo[i] for i in idx] + [None] * (width - len(idx))
            start = _first_layer(rows)
            hidden = _fed_input(lm, start, rows, clean, corrupt, width)
            with _patching(lm, rows, clean, read_at), _start_at(lm, start, hidden), \
                    _noise(lm, noisy, scale, seed):
                values[idx] = run(rep)[:len(idx)].double().cpu().numpy()
    return values, clean_value, corrupt_value


def _first_layer(rows: Sequence[Site | None]) -> int:
    """The first layer a pass must run: a residual site at layer l needs layers l + 1.. only
    (its patched output is fed in); any other site at layer l needs layer l."""
    return min(s.layer + (s.kind == "resid") for s in rows if s is not None)


def _fed_input(lm: LM, start: int, rows: Sequence[Site | None], clean: dict, corrupt: dict,
               width: int) -> torch.Tensor | None:
    """(W, T, D) input of layer `start`: the corrupted output of layer start - 1 (recorded), with
    the clean output put in at the positions of the residual sites of that layer."""
    if start == 0:
        return None
    key = ("resid", start - 1)
    hidden = corrupt[key][None].repeat(width, 1, 1)
    for r, site in enumerate(rows):
        if site is not None and (site.kind, site.layer) == key:
            if site.position < 0:
                hidden[r] = clean[key]
            else:
                hidden[r, site.position] = clean[key][site.position]
    return hidden


def _frame(lm, todo, values, clean_value, corrupt_value, tokens, spans,
           described) -> pd.DataFrame:
    values = np.asarray(values, dtype=np.float64)
    gap = clean_value - corrupt_value
    effect = (values - corrupt_value) / gap if gap != 0 else np.full(len(values), np.nan)
    return pd.DataFrame({
        S.MODEL: lm.name, S.SITE: [s.kind for s in todo], S.LAYER: [s.layer for s in todo],
        S.HEAD: [s.head for s in todo], S.POSITION: [s.position for s in todo],
        S.TOKEN: [tokens[s.position] if s.position >= 0 else "" for s in todo],
        S.SPAN: [spans[s.position] if s.position >= 0 else "" for s in todo],
        S.VALUE: values, S.CLEAN: clean_value, S.CORRUPTED: corrupt_value, S.EFFECT: effect,
        S.METRIC: described})
