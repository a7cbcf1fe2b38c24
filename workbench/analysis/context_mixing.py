"""Context mixing beyond attention weights: value zeroing, ALTI and GlobEnc for encoders.

How much does token j contribute to token i's representation at the output of layer l, counting
the value vectors, the residual stream and the LayerNorms, not only the attention weights? Three
published answers, each a (T, T) matrix per layer whose rows are non-negative and sum to 1:

- `value_zeroing` (Mohebbi, Zuidema, Chrupała & Alishahi 2023, "Quantifying Context Mixing in
  Transformers", EACL; code: hmohebbi/ValueZeroing). For key token j, its value vector (after
  the value bias) is set to zero in every head of layer l; queries and keys are untouched; the
  layer is re-run on its real input and C[i, j] = cosine distance between token i's new layer
  output and its original one. Rows are divided by their sum, as in the paper's code. All T
  zeroings of a layer come from that layer's one traced pass, not T full forward passes nor T
  layer re-runs: the softmax weights do not change, so zeroing value j is a rank-1 update of the
  heads' output per head, and only LN1 and the FFN run again, batched (`_zeroing_distances`).
- `alti` (Ferrando, Gállego & Costa-jussà 2022, "Measuring the Mixing of Contextual Information
  in the Transformer", EMNLP; code: mt-upc/transformer-contributions). The attention block's
  output y_i = LN1(sum_h sum_j A^h_ij f_h(x_j) + b_O + x_i), with f_h(x_j) = (x_j W_V^h + b_V^h)
  W_O^h, is split into per-source vectors T_i(x_j) = g1 * (u_ij - mean(u_ij)) / s_i, where
  u_ij = sum_h A^h_ij f_h(x_j) + [i = j] x_i and s_i = sqrt(Var(LN1's real input) + eps); LN1 is
  linear once its scale s_i is fixed. Then C[i, j] = max(0, ||y_i||_1 - ||y_i - T_i(x_j)||_1),
  rows normalised (the paper's Eq. 9 and 10).
- `globenc` (Modarressi, Fayyaz, Yaghoobzadeh & Pilehvar 2022, "GlobEnc: Quantifying Global
  Token Attribution by Incorporating the Whole Encoder Layer in Transformers", NAACL; code:
  mohsenfayyaz/GlobEnc). The same vectors carried through the second LayerNorm:
  Z_i(x_j) = g2 * (T_i(x_j) - mean(T_i(x_j))) / s2_i with s2_i = sqrt(Var(LN2's real input) +
  eps); C[i, j] = ||Z_i(x_j)||_2, rows normalised. The approximation, as in the paper: the FFN is
  not decomposed; its output is kept as one term that belongs to no token, and LN2's scale s2_i
  is the one of the real input (attention output + FFN output).

Definition choices, the same as the papers' code: the value bias b_V is part of f_h(x_j), so it is
attributed to token j in proportion to the attention weight; the output bias b_O and the
LayerNorms' beta belong to no token (a bias term, `rest` in `mixing_vectors`). Both
decompositions are exact: the token vectors plus `rest` give the layer's real output (tested to
1e-5 in fp32; `rest` of GlobEnc holds the FFN output, captured from the model, not derived).
Across layers the matrices are combined by rollout without an added identity (the residual is
already inside each matrix), as all three papers do: `layers="all"` gives C_{L-1} ... C_0.

The frame is `wb.attention`'s (one row per text, layer, query, key; head = -1, plus `method`),
so every attention figure and view draws it; `drop_special` renormalises each row over the kept
keys and `merge_subwords` sums keys and averages queries over a word, as there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import pandas as pd
import torch
import torch.nn.functional as F

from .. import schema as S
from ..capture import as_text_list, attention_modules, encode, encoder_layers, hooks
from ..errors import InputError
from ..models import LM, check_lm
from .attention import ALL, AttentionCapture
from .attention_modes import attention_rollout

METHODS = {
    "value_zeroing": "value zeroing (Mohebbi et al. 2023): cosine distance of a token's layer "
                     "output when another token's value vectors are zeroed",
    "alti": "ALTI (Ferrando et al. 2022): L1 closeness of each source's share of the attention "
            "block output (heads, residual, first LayerNorm)",
    "globenc": "GlobEnc (Modarressi et al. 2022): norm of each source's share carried through "
               "the second LayerNorm (FFN not decomposed)",
}
_CHUNK_BYTES = 256 * 2**20   # cap on one chunk's (rows, T, D) tensors


@dataclass
class LayerTrace:
    """What one layer did on one text (batch of 1, no padding), fp32 on the model's device."""

    inputs: torch.Tensor      # (T, D) the layer's input hidden states
    kwargs: dict              # keyword arguments the encoder passed the layer (attention mask)
    output: torch.Tensor      # (T, D) the layer's output
    attn: torch.Tensor        # (H, T, T) softmax weights
    values: torch.Tensor      # (T, D) value projection output (bias included), heads concatenated
    post_ln1: torch.Tensor    # (T, D) attention block output (after LN1)
    pre_ln1: torch.Tensor     # (T, D) LN1's input
    pre_ln2: torch.Tensor     # (T, D) LN2's input
    ffn: torch.Tensor         # (T, D) FFN output (output.dense), before the residual and LN2


def trace_layers(lm: LM, text: str, max_length: int | None = None):
    """One forward pass over `text` with hooks; returns (TokenView, [LayerTrace per layer])."""
    batch = encode(lm, [text], max_length=max_length)
    layers = encoder_layers(lm)
    parts = attention_modules(lm)
    got: dict[tuple[int, str], object] = {}

    def keep(i, name, what="output"):
        def hook(module, args, out):
            x = args[0] if what == "input" else out
            got[(i, name)] = (x[0] if isinstance(x, tuple) else x)[0].float()
        return hook

    def keep_call(i):
        def hook(module, args, kwargs):
            got[(i, "in")] = (args[0] if args else kwargs["hidden_states"])[0].float()
            extra = dict(zip(("attention_mask",), args[1:2]))        # positional mask, if any
            got[(i, "kwargs")] = {**extra, **{k: v for k, v in kwargs.items() if k not in
                                              ("hidden_states", "output_attentions")}}
        return hook

    pairs = []
    for i, layer in enumerate(layers):
        pairs += [(layer, keep_call(i), "pre_kwargs"), (layer, keep(i, "out"), "forward"),
                  (parts[i].value, keep(i, "v"), "forward"),
                  (layer.attention.output.LayerNorm, keep(i, "pre1", "input"), "forward"),
                  (layer.attention.output.LayerNorm, keep(i, "post1"), "forward"),
                  (layer.output.LayerNorm, keep(i, "pre2", "input"), "forward"),
                  (layer.output.dense, keep(i, "ffn"), "forward")]
    with torch.inference_mode(), lm.eager_attention(), hooks(pairs):
        out = lm.encoder(**batch.inputs, output_attentions=True, return_dict=True)
    traces = [LayerTrace(inputs=got[(i, "in")], kwargs=got[(i, "kwargs")], output=got[(i, "out")],
                         attn=out.attentions[i][0].float(), values=got[(i, "v")],
                         post_ln1=got[(i, "post1")], pre_ln1=got[(i, "pre1")],
                         pre_ln2=got[(i, "pre2")], ffn=got[(i, "ffn")])
              for i in range(len(layers))]
    return batch.views[0], traces


def rerun_layer(layer: torch.nn.Module, inputs: torch.Tensor, kwargs: dict) -> torch.Tensor:
    """The stock layer module on `inputs` (B, T, D) with the captured kwargs expanded to B rows."""
    b = inputs.shape[0]
    kw = {k: (v.expand(b, *v.shape[1:]) if torch.is_tensor(v) and v.dim() and v.shape[0] == 1
              else v) for k, v in kwargs.items()}
    out = layer(inputs.to(next(layer.parameters()).dtype), **kw)
    return (out[0] if isinstance(out, tuple) else out).float()


def _zeroing_distances(lm: LM, layer: int, trace: LayerTrace) -> torch.Tensor:
    """(T, T) cosine distance [i, j] of token i's layer output with token j's values zeroed.

    Queries and keys are untouched, so the softmax weights A (H, T, T) are the traced ones and
    zeroing value row j changes head h's context of query i by -A[h, i, j] v_h(x_j): after the
    output projection, LN1's input for zeroing j is pre_ln1 - sum_h A[h, :, j] f_h(x_j), a rank-1
    update per head of one matmul (f_h as in ALTI, `_value_terms`). Only LN1 and the FFN then run,
    batched over chunks of zeroed tokens j: rows (n, T, D). No Q/K/softmax/value re-run.
    """
    mod = encoder_layers(lm)[layer]
    t, d = trace.inputs.shape
    f = _value_terms(lm, trace, layer)                                     # (T, H, D)
    dt = next(mod.parameters()).dtype
    n_max = max(1, _CHUNK_BYTES // (4 * t * 8 * d))                         # (n, T, 4D) FFN rows
    dist = torch.empty(t, t, device=trace.inputs.device)
    for start in range(0, t, n_max):
        js = slice(start, min(t, start + n_max))
        # delta[j, i] = sum_h A[h, i, j] f_h(x_j): one bmm (n, T, H) @ (n, H, D)
        delta = torch.bmm(trace.attn[:, :, js].permute(2, 1, 0), f[js])     # (n, T, D)
        pre1 = trace.pre_ln1[None] - delta
        a = mod.attention.output.LayerNorm(pre1.to(dt))                    # attention block out
        y = mod.output(mod.intermediate(a), a).float()                     # (n, T, D) layer out
        cos = F.cosine_similarity(y, trace.output[None].expand_as(y), dim=-1)   # (n, T): [j, i]
        dist[:, js] = (1.0 - cos).T
    return dist.clamp_min(0.0)


def _value_terms(lm: LM, trace: LayerTrace, layer: int) -> torch.Tensor:
    """(T, H, D) f_h(x_j) = (x_j W_V^h + b_V^h) W_O^h: token j's value through head h's slice of
    the output projection (no output bias), from the traced value rows."""
    parts = attention_modules(lm)[layer]
    h, hd = parts.num_heads, parts.head_dim
    w_o = parts.output.weight.float().view(-1, h, hd)                        # (D, H, d)
    return torch.einsum("jhe,ohe->jho", trace.values.view(-1, h, hd), w_o)


@torch.inference_mode()
def mixing_vectors(lm: LM, trace: LayerTrace, layer: int, through: str = "attention",
                   rows: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-source vectors of layer `layer`'s output: (vectors (Q, T, D), rest (Q, D)).

    `through="attention"` (ALTI): vectors[i, j] = T_i(x_j) of the attention block output (LN1
    included) and `rest` the bias term g1 * (b_O - mean(b_O)) / s_i + beta1, so that
    vectors.sum(1) + rest is the attention block's real output. `through="layer"` (GlobEnc): the
    vectors carried through LN2 and `rest` = g2 * (r_i - mean(r_i)) / s2_i + beta2 with r_i =
    LN1's bias term + the FFN output, so that vectors.sum(1) + rest is the layer's real output.
    `rows` picks query positions (default all). See the module docstring for the definitions.
    """
    parts, mod = attention_modules(lm)[layer], encoder_layers(lm)[layer]
    rows = list(range(trace.inputs.shape[0])) if rows is None else list(rows)
    rows_t = torch.tensor(rows, device=trace.inputs.device)
    f = _value_terms(lm, trace, layer)                                       # (T, H, D) f_h(x_j)
    u = torch.einsum("hij,jho->ijo", trace.attn[:, rows_t], f)               # (Q, T, D)
    u[torch.arange(len(rows)), rows_t] += trace.inputs[rows_t]              # residual, j = i
    ln1 = mod.attention.output.LayerNorm
    s1 = (trace.pre_ln1[rows_t].var(-1, unbiased=False) + ln1.eps).sqrt()    # (Q,)
    g1 = ln1.weight.float()
    vec = g1 * (u - u.mean(-1, keepdim=True)) / s1[:, None, None]            # (Q, T, D)
    b_o = parts.output.bias.float() if parts.output.bias is not None else torch.zeros_like(g1)
    rest = g1 * (b_o - b_o.mean()) / s1[:, None] + ln1.bias.float()          # (Q, D)
    if through == "attention":
        return vec, rest
    if through != "layer":
        raise InputError(f"through={through!r}; use 'attention' (ALTI) or 'layer' (GlobEnc)")
    ln2 = mod.output.LayerNorm
    s2 = (trace.pre_ln2[rows_t].var(-1, unbiased=False) + ln2.eps).sqrt()    # (Q,)
    g2 = ln2.weight.float()
    vec2 = g2 * (vec - vec.mean(-1, keepdim=True)) / s2[:, None, None]
    r = rest + trace.ffn[rows_t]                                             # (Q, D) no token's
    rest2 = g2 * (r - r.mean(-1, keepdim=True)) / s2[:, None] + ln2.bias.float()
    return vec2, rest2


def _decomposition_scores(lm: LM, trace: LayerTrace, layer: int, method: str) -> torch.Tensor:
    """(T, T) un-normalised ALTI or GlobEnc scores, computed in chunks of query rows."""
    t, d = trace.inputs.shape
    step = max(1, _CHUNK_BYTES // (4 * 3 * t * d))
    out = torch.empty(t, t, device=trace.inputs.device)
    for start in range(0, t, step):
        rows = list(range(start, min(t, start + step)))
        if method == "alti":
            vec, _ = mixing_vectors(lm, trace, layer, "attention", rows)
            y = trace.post_ln1[rows][:, None]                                   # (Q, 1, D)
            out[rows] = (y.abs().sum(-1) - (y - vec).abs().sum(-1)).clamp_min(0.0)
        else:
            vec, _ = mixing_vectors(lm, trace, layer, "layer", rows)
            out[rows] = vec.norm(dim=-1)
    return out


def mixing_matrices(lm: LM, text: str, method: str = "value_zeroing",
                    max_length: int | None = None):
    """One text's context-mixing matrices: (TokenView, tensor (L, T, T) on the CPU, rows sum 1)."""
    check_method(method)
    view, traces = trace_layers(lm, text, max_length)
    mats = []
    with torch.inference_mode(), lm.eager_attention():
        for i, tr in enumerate(traces):
            if method == "value_zeroing":
                raw = _zeroing_distances(lm, i, tr)
            else:
                raw = _decomposition_scores(lm, tr, i, method)
            mats.append(raw / raw.sum(-1, keepdim=True).clamp_min(1e-30))
    return view, torch.stack(mats).cpu()


def mixing_capture(lm: LM, text: str, method: str, *, text_id: int = 0,
                   max_length: int | None = None) -> AttentionCapture:
    """One text's mixing matrices as an `AttentionCapture` with one "head" per layer:
    weights (L, 1, T, T), so `transform`/`to_frame` (mode="weights") and every attention view
    draw them (`context_mixing`, `AttentionExplorer`'s mixing modes)."""
    view, mats = mixing_matrices(lm, text, method, max_length)          # (L, T, T)
    return AttentionCapture(view=view, weights=mats[:, None], model=lm.name, text_id=text_id)


def mixing_rollout(cap: AttentionCapture) -> AttentionCapture:
    """The rollout C_{L-1} ... C_0 of a `mixing_capture` across all layers, as a capture of one
    layer (1, 1, T, T); no identity is added (the residual is inside each matrix), as the papers."""
    mats = attention_rollout(cap.weights, residual=0.0)[-1:, None]      # (1, 1, T, T)
    return AttentionCapture(view=cap.view, weights=mats, model=cap.model, text_id=cap.text_id)


def check_method(method: str) -> str:
    if method not in METHODS:
        raise InputError(f"method={method!r}; use one of {sorted(METHODS)}")
    return method


def context_mixing(lm: LM, texts, *, method: str = "value_zeroing",
                   layers: Sequence[int] | int | str | None = None, drop_special: bool = False,
                   merge_subwords: bool = False, select: Sequence[int | str] | None = None,
                   max_length: int | None = None) -> pd.DataFrame:
    """Context mixing of `lm` on `texts` by `method`, as a tidy frame like `wb.attention`'s.

    `method`: "value_zeroing" (Mohebbi et al. 2023), "alti" (Ferrando et al. 2022) or "globenc"
    (Modarressi et al. 2022); the definitions, bias handling and GlobEnc's FFN approximation are
    in the module docstring. One row per (text_id, layer, query, key) with `weight` = C[i, j]
    (rows sum to 1), head = -1 and `method`. `layers`: None (all), an int or a list, or "all":
    the rollout C_{L-1} ... C_0 across every layer, reported as layer -1. `drop_special`,
    `merge_subwords` and `select` work as in `wb.attention`. Each text runs alone (no padding).

    >>> wb.context_mixing(lm, "The keys to the cabinet are here.", method="alti")  # doctest: +SKIP
    """
    check_lm(lm)
    check_method(method)
    texts = as_text_list(texts)
    rollout = isinstance(layers, str)
    if rollout and layers != "all":
        raise InputError(f"layers={layers!r}; pass None, layer numbers, or 'all' for the rollout")
    frames = []
    for text_id, text in enumerate(texts):
        cap = mixing_capture(lm, text, method, text_id=text_id, max_length=max_length)
        if rollout:
            cap = mixing_rollout(cap)
        df = cap.to_frame(layers=None if rollout else layers, drop_special=drop_special,
                          merge_subwords=merge_subwords, select=select)
        df[S.HEAD] = ALL
        if rollout:
            df[S.LAYER] = ALL
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    df[S.METHOD] = method
    for col in (S.MODEL, S.QUERY_TOKEN, S.KEY_TOKEN):
        df[col] = df[col].astype("category")
    return df

