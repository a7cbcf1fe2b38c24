"""Attention beyond raw weights: rollout, flow (Abnar & Zuidema 2020) and norm-based (Kobayashi et al. 2020).

Everything here is a pure function of captured tensors, so a cached forward pass serves every mode:

- `attention_rollout(weights)`: A'_l = row-normalised(0.5 * mean_h A_l + 0.5 * I); R_l = A'_l @ R_{l-1}, R_0 = A'_0.
- `attention_flow(weights)`: the same residual-augmented graph seen as a layered flow network; the flow from
  query i at the top of layer l to input token j is the max-flow value between those two nodes, and
  each row is normalised to sum to 1 (as in the paper's code). It solves one max-flow problem per
  (layer, query, key), so it is limited to `FLOW_MAX_TOKENS` tokens (scipy's integer max-flow on
  capacities scaled by `FLOW_SCALE`, i.e. ~1e-6 precision).
- `norm_weights(weights, value_norms)`: ||alpha_ij f_h(x_j)|| = alpha_ij * ||f_h(x_j)|| per head, where
  f_h(x_j) = (x_j W_V^h + b_V^h) W_O^h is the value vector pushed through head h's slice of the output
  projection; `norm_layer(weights, gram)` is the whole-layer ||sum_h alpha^h_ij f_h(x_j)||, computed
  exactly from the per-key Gram matrix <f_h(x_j), f_g(x_j)>.
  These are sizes, not a distribution: dropping tokens never renormalises them.
- `merged_norms(contrib, gram, groups)`: words. A key word W gets ||sum_{j in W} c_j f(x_j)||, the
  norm of the summed vectors (not the sum of the pieces' norms); a query word Q takes the mean of
  its pieces' attention, c_j = mean_{i in Q} alpha_ij, i.e. the norm of the word's mean output
  contribution (the word's vector being the mean of its pieces). Exact from the Gram matrices
  <f_h(x_j), f_g(x_k)> of token pairs inside one word.
- `value_capture(lm)`: forward hooks on the stock model's value projections (via
  `capture.attention_modules`) that yield the norms and Gram matrices; no forked model code.

Shapes: L layers, H heads, T tokens.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import numpy as np
import torch

from ..capture import attention_modules, hooks
from ..errors import InputError
from ..models import LM
from ..config import check_finite

FLOW_MAX_TOKENS = 40      # flow solves L*T*T max-flow problems: ~1 min at 40 tokens x 12 layers
FLOW_SCALE = 1_000_000    # scipy's max-flow needs integer capacities


def residual_attention(weights: torch.Tensor, residual: float = 0.5) -> torch.Tensor:
    """(L, H, T, T) -> (L, T, T): mean over heads mixed with the identity, rows renormalised."""
    a = weights.mean(dim=1)                                   # (L, T, T)
    eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
    a = (1.0 - residual) * a + residual * eye
    return a / a.sum(dim=-1, keepdim=True)


def attention_rollout(weights: torch.Tensor, residual: float = 0.5) -> torch.Tensor:
    """Attention rollout through layers 0..l for every l: (L, H, T, T) -> (L, T, T)."""
    residual = check_finite("residual", residual, low=0, high=1)
    a = residual_attention(weights, residual)                # (L, T, T)
    out = torch.empty_like(a)
    acc = a[0]
    out[0] = acc
    for layer in range(1, a.shape[0]):
        acc = a[layer] @ acc                                   # (T, T)
        out[layer] = acc
    return out


def attention_flow(weights: torch.Tensor, layers: Sequence[int] | None = None,
         residual: float = 0.5) -> torch.Tensor:
    """Attention flow for the given layers (default all): (L, H, T, T) -> (len(layers), T, T)."""
    residual = check_finite("residual", residual, low=0, high=1)
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import maximum_flow

    n_layers, _, t, _ = weights.shape
    if t > FLOW_MAX_TOKENS:
        raise InputError(
            f"attention flow on {t} tokens: flow solves one max-flow problem per (layer, query, key), "
            f"which is only feasible up to {FLOW_MAX_TOKENS} tokens. Use mode='rollout' for long "
            "inputs, or shorten the text")
    layers = list(range(n_layers)) if layers is None else [int(x) % n_layers for x in layers]
    a = residual_attention(weights, residual).double().cpu().numpy()   # (L, T, T)
    # node (level, pos) -> level * t + pos; level 0 = input tokens, level l+1 = output of layer l.
    out = np.zeros((len(layers), t, t))
    for row, layer in enumerate(layers):
        levels = layer + 2
        src, dst, cap = [], [], []
        for lv in range(layer + 1):
            q, k = np.meshgrid(np.arange(t), np.arange(t), indexing="ij")
            src.append((lv + 1) * t + q.ravel())
            dst.append(lv * t + k.ravel())
            cap.append(np.rint(a[lv].ravel() * FLOW_SCALE).astype(np.int32))
        graph = csr_matrix((np.concatenate(cap), (np.concatenate(src), np.concatenate(dst))),
                           shape=(levels * t, levels * t))
        graph.eliminate_zeros()
        for i in range(t):
            source = (layer + 1) * t + i
            for j in range(t):
                out[row, i, j] = maximum_flow(graph, source, j).flow_value / FLOW_SCALE
    out /= np.clip(out.sum(axis=-1, keepdims=True), 1e-12, None)
    return torch.from_numpy(out).to(weights.dtype)


def norm_weights(weights: torch.Tensor, value_norms: torch.Tensor) -> torch.Tensor:
    """Per-head ||alpha_ij f_h(x_j)||: (L, H, T, T) x (L, H, T) -> (L, H, T, T)."""
    return weights * value_norms[:, :, None, :]


def norm_layer(weights: torch.Tensor, gram: torch.Tensor) -> torch.Tensor:
    """Whole-layer ||sum_h alpha^h_ij f_h(x_j)||: (L, H, T, T) x (L, T, H, H) -> (L, T, T)."""
    out = []
    for a, g in zip(weights, gram):                            # (H, T, T), (T, H, H)
        sq = torch.einsum("hqk,gqk,khg->qk", a, a, g)          # (T, T)
        out.append(sq.clamp_min(0).sqrt())
    return torch.stack(out)


def merged_norms(contrib: torch.Tensor, gram, groups: Sequence[Sequence[int]],
                 whole_layer: bool) -> torch.Tensor:
    """Norm-based attention to key units: (L, H, Q, T) -> (L, H or 1, Q, U).

    `contrib[l, h, q, j]` is the weight c_qj query unit q gives token j (mean over its pieces);
    `gram(j, k)` returns <f_h(x_j), f_g(x_k)> (L, H, H) for tokens j, k of one unit; `groups` the
    token positions of each key unit. Per head: ||sum_{j in W} c^h_qj f_h(x_j)||; `whole_layer`:
    ||sum_h sum_{j in W} c^h_qj f_h(x_j)||.
    """
    out = []
    for group in groups:
        sq = 0.0
        for j in group:
            for k in group:
                g = gram(j, k)                                             # (L, H, H)
                if whole_layer:
                    sq = sq + torch.einsum("lhq,lgq,lhg->lq", contrib[..., j], contrib[..., k],
                                           g)[:, None]                     # (L, 1, Q)
                else:
                    diag = g.diagonal(dim1=-2, dim2=-1)[..., None]          # (L, H, 1)
                    sq = sq + contrib[..., j] * contrib[..., k] * diag      # (L, H, Q)
        out.append(torch.as_tensor(sq).clamp_min(0).sqrt())
    return torch.stack(out, -1)


class ValueCapture:
    """Filled by `value_capture`: per layer, the norms and Gram matrices of f_h(x_j), and the
    Gram matrices <f_h(x_j), f_g(x_k)> of the token pairs asked for (pieces of one word)."""

    def __init__(self, n_layers: int):
        self.norms: list[torch.Tensor | None] = [None] * n_layers   # (B, H, T) each
        self.grams: list[torch.Tensor | None] = [None] * n_layers   # (B, T, H, H) each
        self.pair_grams: list[list[torch.Tensor] | None] = [None] * n_layers  # B x (P, H, H)

    def stacked(self, row: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Row `row` of the batch, cut to its `n` real tokens: (L, H, n), (L, n, H, H) on CPU."""
        norms = torch.stack([x[row, :, :n] for x in self.norms]).float().cpu()
        grams = torch.stack([x[row, :n] for x in self.grams]).float().cpu()
        return norms, grams

    def pairs(self, row: int) -> torch.Tensor:
        """Row `row`'s pair Gram matrices: (L, P, H, H) on CPU."""
        return torch.stack([x[row] for x in self.pair_grams]).float().cpu()


@contextlib.contextmanager
def value_capture(lm: LM, pairs: Sequence[torch.Tensor] | None = None) -> Iterator[ValueCapture]:
    """Hook every layer's value projection; on each forward store ||f_h(x_j)|| and their Gram,
    and, given `pairs` (one (P, 2) tensor of token positions per batch row), <f_h(x_j), f_g(x_k)>
    for each pair (j, k)."""
    parts = attention_modules(lm)
    store = ValueCapture(len(parts))

    def make_hook(p):
        def hook(module, inputs, output):                      # output: (B, T, hidden)
            b, t, _ = output.shape
            v = output.float().view(b, t, p.num_heads, p.head_dim)          # (B, T, H, d)
            w = p.output.weight.float().view(-1, p.num_heads, p.head_dim)   # (hidden, H, d)
            f = torch.einsum("bthd,ohd->btho", v, w)                         # (B, T, H, hidden)
            store.norms[p.layer] = f.norm(dim=-1).transpose(1, 2)            # (B, H, T)
            store.grams[p.layer] = torch.einsum("btho,btgo->bthg", f, f)     # (B, T, H, H)
            if pairs is not None:
                store.pair_grams[p.layer] = [
                    torch.einsum("pho,pgo->phg", f[r, idx[:, 0]], f[r, idx[:, 1]])
                    for r, idx in enumerate(pairs)]                          # B x (P, H, H)
        return hook

    with hooks((p.value, make_hook(p), "forward") for p in parts):
        yield store


@contextlib.contextmanager
def qk_capture(lm: LM) -> Iterator[dict]:
    """Hook every layer's query/key projections; yields {"queries"|"keys": [(B, H, T, d) per layer]}."""
    parts = attention_modules(lm)
    store = {"queries": [None] * len(parts), "keys": [None] * len(parts)}

    def make_hook(p, name):
        def hook(module, inputs, output):                      # output: (B, T, hidden)
            b, t, _ = output.shape
            store[name][p.layer] = output.float().view(b, t, p.num_heads, p.head_dim).transpose(1, 2)
        return hook

    with hooks([(p.query, make_hook(p, "queries"), "forward") for p in parts]
               + [(p.key, make_hook(p, "keys"), "forward") for p in parts]):
        yield store


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise InputError(f"mode={mode!r}; use one of {sorted(MODES)}")
    return mode


MODES = {
    "weights": "raw softmax attention weights per head",
    "rollout": "attention rollout (Abnar & Zuidema 2020), heads averaged, residual 0.5",
    "flow": f"attention flow (Abnar & Zuidema 2020), heads averaged, <= {FLOW_MAX_TOKENS} tokens",
    "norm": "norm-based attention ||alpha f(x)|| (Kobayashi et al. 2020): not a distribution, "
            "so never renormalised; a word is the norm of its pieces' summed vectors",
}
