# %% [markdown]
# # 00 · The encoder by hand: one sentence through RoBERTa, step by step
#
# **What you will learn.** How a Transformer encoder turns a sentence into predictions, one
# matrix product at a time: token and position embeddings, the queries, keys and values of
# self-attention, the scaled dot-product $A = \mathrm{softmax}(QK^\top/\sqrt{d_k})$, multi-head
# attention with its concatenation and output projection, the position-wise feed-forward network,
# residual connections with layer normalisation, and the masked-LM head that scores every word of
# the vocabulary. **Concept covered:** the Transformer encoder (Vaswani et al. 2017) as used by
# BERT and RoBERTa.
#
# **How.** We take the embedded model (`wb.load("demo")`, a 6-layer RoBERTa) and one sentence,
# recompute every step in plain `torch` from the model's own weights, and after each step
# **assert that our tensor equals the model's** (captured with forward hooks while the model runs
# itself). Every check prints the tensor's shape and the largest absolute difference; the
# tolerance is $10^{-5}$ in fp32. If a formula below were wrong, the notebook would stop there.
#
# You need linear algebra (matrix products, transposes) and nothing about Transformers. The
# same code runs on any RoBERTa checkpoint: set `MODEL = "roberta-base"` (with hub access).

# %% tags=["parameters"]
MODEL = "demo"
TEXT = "The cat sat on the mat because it was tired."
LAYER = 2        # the layer whose attention we take apart
HEAD = 1         # the head whose attention matrix we draw
TOLERANCE = 1e-5
QUICK = False

# %%
import math

import pandas as pd
import torch
import torch.nn.functional as F

import workbench as wb
from workbench.plots.attention import attention_heatmap

lm = wb.load(MODEL, device="cpu", dtype="fp32")   # fp32 so that 1e-5 is a fair tolerance
model = lm.model                                   # a transformers RobertaForMaskedLM
cfg = lm.config
LAYER, HEAD = min(LAYER, cfg.num_hidden_layers - 1), min(HEAD, cfg.num_attention_heads - 1)
d, h = cfg.hidden_size, cfg.num_attention_heads
d_k = d // h
print(f"{lm.name}: {cfg.num_hidden_layers} layers, hidden size d = {d}, {h} heads of "
      f"d_k = {d_k}, feed-forward size {cfg.intermediate_size}, vocabulary {cfg.vocab_size}")

# %% [markdown]
# ## 0. Run the model once and keep what it computed
#
# A *forward hook* is a function PyTorch calls with a module's input and output each time the
# module runs. We hang one on every piece we are going to rebuild, run the model once (with
# *eager* attention, the plain-PyTorch implementation: the fused `sdpa` kernel returns no
# attention weights), and keep the tensors. Dropout is off because the model is in `eval()` mode.

# %%
enc = model.roberta                 # the encoder: embeddings + layers
layers = enc.encoder.layer
seen = {}                           # name -> (input, output) captured during the forward pass


def keep(name):
    def hook(module, args, output):
        seen[name] = (args, output[0] if isinstance(output, tuple) else output)
    return hook


watch = {"embeddings": enc.embeddings, "lm_head": model.lm_head}
for i, layer in enumerate(layers):
    watch |= {f"{i}.query": layer.attention.self.query, f"{i}.key": layer.attention.self.key,
              f"{i}.value": layer.attention.self.value, f"{i}.heads": layer.attention.self,
              f"{i}.attention": layer.attention, f"{i}.ffn_inner": layer.intermediate,
              f"{i}.output": layer}
handles = [m.register_forward_hook(keep(n)) for n, m in watch.items()]
batch = lm.tokenizer(TEXT, return_tensors="pt")
model.eval()
try:
    with torch.no_grad(), lm.eager_attention():
        out = model(**batch, output_attentions=True, output_hidden_states=True)
finally:
    for handle in handles:
        handle.remove()
ids = batch["input_ids"]                            # (1, T)
T = ids.shape[1]
print(lm.tokens(TEXT).tokens)

# %%
checks = []


def check(step: str, mine: torch.Tensor, theirs: torch.Tensor, tol: float = TOLERANCE):
    """Assert that our tensor equals the model's; print and record the difference."""
    assert mine.shape == theirs.shape, f"{step}: shape {tuple(mine.shape)} vs {tuple(theirs.shape)}"
    diff = (mine - theirs).abs().max().item()
    checks.append({"step": step, "shape": tuple(mine.shape), "max_abs_diff": diff})
    print(f"{step:<46} shape {str(tuple(mine.shape)):<16} max |ours - model| = {diff:.2e}")
    assert diff <= tol, f"{step}: our result differs from the model's by {diff:.3g} > {tol}"

# %% [markdown]
# ## 1. Embeddings: token + learned position + token type, then LayerNorm
#
# Each token id $t_i$ picks a row of the embedding matrix $E \in \mathbb{R}^{V \times d}$. The
# encoder has no notion of order, so a learned position vector $P_{p_i}$ is added, plus a
# token-type vector (RoBERTa has a single type, so that one row is added to every token):
#
# $$x_i = \mathrm{LayerNorm}(E_{t_i} + P_{p_i} + S_0), \qquad
#   \mathrm{LayerNorm}(z) = \gamma \odot \frac{z - \mu(z)}{\sqrt{\sigma^2(z) + \varepsilon}} + \beta .$$
#
# **RoBERTa's position ids are offset.** They count only non-padding tokens and start after the
# padding index (inherited from fairseq): $p_i = \text{pad} + \sum_{j \le i} [t_j \ne \text{pad}]$
# for real tokens, and $p_i = \text{pad}$ for padding. With pad id 1 the first token sits at
# position 2, which is why the position table has `max_position_embeddings` = 2 + the longest input.

# %%
emb = enc.embeddings
pad = cfg.pad_token_id
not_pad = (ids != pad).long()                                     # (1, T)
position_ids = pad + torch.cumsum(not_pad, dim=1) * not_pad       # (1, T)
print("position ids:", position_ids[0].tolist())
with torch.no_grad():
    summed = (emb.word_embeddings.weight[ids]                      # (1, T, d) token
              + emb.position_embeddings.weight[position_ids]       # (1, T, d) position
              + emb.token_type_embeddings.weight[0])               # (d,)  the one token type
    mu = summed.mean(-1, keepdim=True)
    var = summed.var(-1, keepdim=True, unbiased=False)
    x = emb.LayerNorm.weight * (summed - mu) / torch.sqrt(var + emb.LayerNorm.eps) + emb.LayerNorm.bias
check("embeddings (after LayerNorm)", x, seen["embeddings"][1])
check("= hidden_states[0]", x, out.hidden_states[0])

# %% [markdown]
# ## 2. One layer of self-attention, taken apart
#
# **Queries, keys, values.** Three linear maps of the layer's input $X \in \mathbb{R}^{T \times d}$:
#
# $$Q = X W_Q + b_Q, \quad K = X W_K + b_K, \quad V = X W_V + b_V \qquad (T \times d).$$
#
# (`nn.Linear` stores $W^\top$, so in code `X @ W.T + b`.)

# %%
att = layers[LAYER].attention
X = seen[f"{LAYER}.query"][0][0]                                  # the layer's input, (1, T, d)
with torch.no_grad():
    Q = X @ att.self.query.weight.T + att.self.query.bias          # (1, T, d)
    K = X @ att.self.key.weight.T + att.self.key.bias              # (1, T, d)
    V = X @ att.self.value.weight.T + att.self.value.bias          # (1, T, d)
check(f"layer {LAYER} Q", Q, seen[f"{LAYER}.query"][1])
check(f"layer {LAYER} K", K, seen[f"{LAYER}.key"][1])
check(f"layer {LAYER} V", V, seen[f"{LAYER}.value"][1])
check(f"layer {LAYER} input = hidden_states[{LAYER}]", X, out.hidden_states[LAYER])

# %% [markdown]
# **Split into heads.** The $d$ columns are cut into $h$ blocks of $d_k = d/h$: head $j$ sees
# columns $j d_k \ldots (j+1) d_k - 1$ of $Q$, $K$ and $V$. Reshape $(1, T, d) \to (1, T, h, d_k)$
# and move the head axis forward: $(1, h, T, d_k)$.
#
# **Scaled dot-product attention**, for every head at once:
#
# $$S = \frac{Q_j K_j^\top}{\sqrt{d_k}} \quad (T \times T), \qquad
#   A = \mathrm{softmax}_{\text{row}}(S), \qquad Z_j = A V_j \quad (T \times d_k).$$
#
# Row $q$ of $A$ says how much query token $q$ takes from each key token; it sums to 1. Dividing
# by $\sqrt{d_k}$ keeps the scores' variance near 1 so the softmax does not saturate.

# %%
def heads(t):                                                      # (1, T, d) -> (1, h, T, d_k)
    return t.view(1, T, h, d_k).transpose(1, 2)


Qh, Kh, Vh = heads(Q), heads(K), heads(V)                          # (1, h, T, d_k) each
scores = Qh @ Kh.transpose(-1, -2) / math.sqrt(d_k)                # (1, h, T, T)
A = torch.softmax(scores, dim=-1)                                  # (1, h, T, T), rows sum to 1
Z = A @ Vh                                                         # (1, h, T, d_k)
print("Q per head", tuple(Qh.shape), " scores", tuple(scores.shape), " Z", tuple(Z.shape))
check(f"layer {LAYER} attention weights A (all heads)", A, out.attentions[LAYER])
assert torch.allclose(A.sum(-1), torch.ones(1, h, T), atol=1e-6), "rows of A must sum to 1"

# %% [markdown]
# The attention matrix of head `HEAD` in layer `LAYER`, drawn by the workbench's own figure from
# `wb.attention` (which runs the model separately), next to our hand-computed $A$:

# %%
frame = wb.attention(lm, TEXT, layers=[LAYER], heads=[HEAD])
theirs = (frame.pivot_table(index="query", columns="key", values="weight", observed=True)
          .sort_index().sort_index(axis=1).to_numpy())
check(f"layer {LAYER} head {HEAD}: A vs wb.attention", A[0, HEAD],
      torch.tensor(theirs, dtype=A.dtype))
attention_heatmap(frame, title=f"layer {LAYER}, head {HEAD}: softmax(QKᵀ/√d_k)")

# %% [markdown]
# To explore this head (and every other) interactively, with the text of your choice:
#
# ```python
# explorer = wb.widgets.AttentionExplorer(lm, [TEXT])
# explorer.layer.value, explorer.head.value = LAYER, HEAD
# explorer
# ```
#
# Its query/key view draws exactly the $Q_j$ and $K_j$ rows computed above.

# %% [markdown]
# **Concatenate and project.** The $h$ head outputs are put side by side again,
# $(1, h, T, d_k) \to (1, T, d)$, and mixed by the output projection. A residual connection adds
# the layer's input back, and LayerNorm normalises each token:
#
# $$\mathrm{MultiHead}(X) = [Z_1; \ldots; Z_h]\, W_O + b_O, \qquad
#   H = \mathrm{LayerNorm}(X + \mathrm{MultiHead}(X)).$$
#
# (RoBERTa, like BERT, normalises *after* the residual sum: a "post-LN" Transformer.)

# %%
concat = Z.transpose(1, 2).reshape(1, T, d)                        # (1, T, d)
check(f"layer {LAYER} concatenated heads", concat, seen[f"{LAYER}.heads"][1])
with torch.no_grad():
    mha = concat @ att.output.dense.weight.T + att.output.dense.bias          # (1, T, d)
    H = F.layer_norm(X + mha, (d,), att.output.LayerNorm.weight, att.output.LayerNorm.bias,
                     att.output.LayerNorm.eps)                                # (1, T, d)
check(f"layer {LAYER} residual + LayerNorm (H)", H, seen[f"{LAYER}.attention"][1])

# %% [markdown]
# **Position-wise feed-forward network.** The same two-layer MLP is applied to every token
# separately, widening to $d_{ff}$ = `intermediate_size` (4d) with a GELU in between, then another
# residual connection and LayerNorm:
#
# $$\mathrm{FFN}(H) = \mathrm{GELU}(H W_1 + b_1)\, W_2 + b_2, \qquad
#   \mathrm{GELU}(z) = z\,\Phi(z) = \tfrac{z}{2}\left(1 + \mathrm{erf}(z/\sqrt 2)\right),$$
# $$\text{layer output} = \mathrm{LayerNorm}(H + \mathrm{FFN}(H)).$$

# %%
ffn = layers[LAYER]
with torch.no_grad():
    inner = H @ ffn.intermediate.dense.weight.T + ffn.intermediate.dense.bias   # (1, T, d_ff)
    inner = inner * 0.5 * (1 + torch.erf(inner / math.sqrt(2)))                # exact GELU
    outer = inner @ ffn.output.dense.weight.T + ffn.output.dense.bias           # (1, T, d)
    Y = F.layer_norm(H + outer, (d,), ffn.output.LayerNorm.weight, ffn.output.LayerNorm.bias,
                     ffn.output.LayerNorm.eps)
check(f"layer {LAYER} FFN inner GELU(H W1 + b1)", inner, seen[f"{LAYER}.ffn_inner"][1])
check(f"layer {LAYER} output (residual + LayerNorm)", Y, seen[f"{LAYER}.output"][1])
check(f"= hidden_states[{LAYER + 1}]", Y, out.hidden_states[LAYER + 1])

# %% [markdown]
# ## 3. All layers, chained by hand
#
# The whole encoder is that block applied $L$ times, each layer with its own weights. Below, one
# function holds the layer we just took apart, and we chain it from our own embeddings, never
# touching the model's intermediate tensors. Rounding differences now accumulate over the layers,
# so the last check is the strictest.

# %%
def encoder_layer(x, layer):
    """One RoBERTa layer in plain torch: (1, T, d) -> (1, T, d)."""
    a, f = layer.attention, layer
    q, k, v = (heads(x @ m.weight.T + m.bias) for m in (a.self.query, a.self.key, a.self.value))
    z = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d_k), dim=-1) @ v   # (1, h, T, d_k)
    z = z.transpose(1, 2).reshape(1, T, d) @ a.output.dense.weight.T + a.output.dense.bias
    y = F.layer_norm(x + z, (d,), a.output.LayerNorm.weight, a.output.LayerNorm.bias,
                     a.output.LayerNorm.eps)
    inner = F.gelu(y @ f.intermediate.dense.weight.T + f.intermediate.dense.bias)
    return F.layer_norm(y + inner @ f.output.dense.weight.T + f.output.dense.bias, (d,),
                        f.output.LayerNorm.weight, f.output.LayerNorm.bias, f.output.LayerNorm.eps)


state = x                                                          # our embeddings, (1, T, d)
with torch.no_grad():
    for i, layer in enumerate(layers):
        state = encoder_layer(state, layer)
        check(f"layer {i} output, chained from our embeddings", state, out.hidden_states[i + 1])

# %% [markdown]
# ## 4. The masked-LM head: a distribution over the vocabulary at every position
#
# BERT's masked-LM objective asks, at a masked position $m$, for
# $P(x_m = w_k \mid X) = \mathrm{softmax}(W h_m + b)_k$. RoBERTa's head first transforms $h_m$
# (dense, GELU, LayerNorm) and then scores it against every token's **input embedding**: the
# decoder matrix $W$ *is* $E$ (weights tied), so only the bias $b$ is new:
#
# $$u = \mathrm{LayerNorm}(\mathrm{GELU}(h W_D + b_D)), \qquad \text{logits} = u E^\top + b .$$

# %%
head = model.lm_head
tied = head.decoder.weight.data_ptr() == enc.embeddings.word_embeddings.weight.data_ptr()
print("decoder weight is the embedding matrix E (tied):", tied)
assert tied, "this checkpoint does not tie its decoder to the embeddings"


def mlm_head(hidden):
    """(1, T, d) final hidden states -> (1, T, V) logits, in plain torch."""
    u = F.gelu(hidden @ head.dense.weight.T + head.dense.bias)                 # (1, T, d)
    u = F.layer_norm(u, (d,), head.layer_norm.weight, head.layer_norm.bias, head.layer_norm.eps)
    return u @ enc.embeddings.word_embeddings.weight.T + head.bias            # (1, T, V)


with torch.no_grad():
    check("MLM logits from the model's last hidden state", mlm_head(seen["lm_head"][0][0]),
          out.logits)
    logits = mlm_head(state)                                                   # fully by hand

# %% [markdown]
# And the logits of our **entire** hand-made forward pass (embeddings, every layer, head), never
# using a tensor of the model's. The logits are large (tens), and six layers of fp32 rounding add
# up, so this one check is *relative*: the difference must stay below $10^{-5}$ of the largest
# logit.

# %%
scale = out.logits.abs().max().item()
print(f"largest |logit| = {scale:.1f}")
check("MLM logits, whole forward pass by hand", logits, out.logits, tol=TOLERANCE * max(1.0, scale))

# %% [markdown]
# The same head fills a `<mask>`: put one in the sentence and read the top of the softmax, beside
# what `wb.fill_mask` (the workbench's own fill-mask) answers for the same sentence.

# %%
masked_text = TEXT.replace(" mat", f" {lm.mask_token}", 1) if " mat" in TEXT else TEXT
if lm.mask_token in masked_text:
    enc_m = lm.tokenizer(masked_text, return_tensors="pt")
    where = (enc_m["input_ids"][0] == lm.tokenizer.mask_token_id).nonzero()[0, 0]
    with torch.no_grad():
        probs = model(**enc_m).logits[0, where].softmax(-1)                   # (V,)
    top = probs.topk(5)
    ours = [lm.tokenizer.convert_ids_to_tokens(int(i)) for i in top.indices]
    theirs = wb.fill_mask(lm, masked_text, top_k=5)
    print(masked_text)
    display(pd.DataFrame({"ours": ours, "p": top.values.numpy().round(4),
                          "wb.fill_mask": theirs["token"].tolist()[:5],
                          "wb p": theirs["prob"].to_numpy()[:5].round(4)}))
    assert torch.allclose(top.values, torch.tensor(theirs["prob"].to_numpy()[:5],
                                                   dtype=top.values.dtype), atol=1e-5)

# %% [markdown]
# ## 5. Every check in one table

# %%
summary = pd.DataFrame(checks)
print(f"{len(summary)} checks, largest difference {summary['max_abs_diff'].max():.2e}")
summary

# %% [markdown]
# ## 6. Where the parameters are
#
# Counting from the configuration alone ($V$ vocabulary, $P$ positions, $d$ hidden, $d_{ff}$
# feed-forward, $L$ layers), per component of a `RobertaForMaskedLM`:
#
# | component | parameters |
# | --- | --- |
# | embeddings (token, position, type) | $(V + P + 1)\,d$ |
# | attention, per layer ($W_Q, W_K, W_V, W_O$ + biases) | $4(d^2 + d)$ |
# | feed-forward, per layer | $2\,d\,d_{ff} + d_{ff} + d$ |
# | LayerNorms ($\gamma, \beta$): 1 after the embeddings, 2 per layer, 1 in the head | $2d\,(2L + 2)$ |
# | MLM head: dense $d \times d$ + bias, output bias $b$ (the decoder is tied to $E$) | $d^2 + d + V$ |
#
# We check the arithmetic against the modules themselves, for the loaded model and for
# roberta-base's shape: `RobertaConfig()`'s defaults give its 12 layers × 768 (12 heads, 3072
# feed-forward), but BERT's vocabulary and positions, so we set roberta-base's own (50,265 tokens,
# 514 positions, one token type). The model is instantiated on PyTorch's `meta` device: shapes
# without memory, so this costs nothing.

# %%
from transformers import RobertaConfig, RobertaForMaskedLM


def count_from_config(c) -> dict:
    V, P, D, I, L = (c.vocab_size, c.max_position_embeddings, c.hidden_size,
                     c.intermediate_size, c.num_hidden_layers)
    return {"embeddings": (V + P + c.type_vocab_size) * D, "attention": L * 4 * (D * D + D),
            "feed-forward": L * (2 * D * I + I + D), "LayerNorms": 2 * D * (2 * L + 2),
            "MLM head": D * D + D + V}


def count_from_modules(m) -> dict:
    groups = {"embeddings": 0, "attention": 0, "feed-forward": 0, "LayerNorms": 0, "MLM head": 0}
    for name, p in m.named_parameters():            # tied weights are listed once
        if "LayerNorm" in name or "layer_norm" in name:
            groups["LayerNorms"] += p.numel()
        elif "embeddings" in name:
            groups["embeddings"] += p.numel()
        elif ".attention." in name:
            groups["attention"] += p.numel()
        elif ".intermediate." in name or ".output." in name:
            groups["feed-forward"] += p.numel()
        elif name.startswith("lm_head"):
            groups["MLM head"] += p.numel()
        else:
            raise AssertionError(f"parameter {name} fits no component")
    return groups


base_cfg = RobertaConfig(vocab_size=50265, max_position_embeddings=514, type_vocab_size=1,
                         pad_token_id=1, bos_token_id=0, eos_token_id=2)
with torch.device("meta"):
    base_model = RobertaForMaskedLM(base_cfg)
rows = []
for name, c, m in ((lm.name, cfg, model), ("roberta-base shape", base_cfg, base_model)):
    arithmetic, modules = count_from_config(c), count_from_modules(m)
    assert arithmetic == modules, f"{name}: {arithmetic} != {modules}"
    assert sum(modules.values()) == sum(p.numel() for p in m.parameters())
    rows += [{"model": name, "component": k, "parameters": v} for k, v in modules.items()]
params = pd.DataFrame(rows)
params["share"] = params["parameters"] / params.groupby("model")["parameters"].transform("sum")
order = list(count_from_config(cfg))
table = params.pivot(index="component", columns="model", values="parameters").loc[order]
table.loc["total"] = table.sum()
table.style.format("{:,}")

# %% [markdown]
# In roberta-base a third of the parameters are the embedding table (50,265 × 768), the layers
# split roughly 1 : 2 between attention and feed-forward, and the MLM head adds almost nothing
# because its decoder reuses $E$.

# %%
params.assign(share=params["share"].round(3)).pivot(index="component", columns="model",
                                                     values="share").loc[order]

# %% [markdown]
# ## What to try next
#
# * Change `LAYER`/`HEAD` and the sentence; open the same head in
#   `wb.widgets.AttentionExplorer(lm)` and in notebook 02 (attention) and 04 (heads).
# * Replace `torch.softmax` with a uniform matrix for one head and see how much the logits move:
#   notebook 04 does this properly with head ablation (`wb.ablate`).
# * Load `"roberta-base"` (online) and run this notebook unchanged: the same checks pass.
# * Notebook 10 covers how the MLM head is trained (15% masking, 80/10/10, NSP and its removal);
#   notebook 11 compares fine-tuning with frozen features.
#
# ## Papers to cite
#
# * Vaswani et al. 2017, *Attention Is All You Need* (NeurIPS): scaled dot-product and multi-head
#   attention, the feed-forward block, residual + LayerNorm.
# * Devlin et al. 2019, *BERT: Pre-training of Deep Bidirectional Transformers for Language
#   Understanding* (NAACL): the encoder-only model, learned positions, the MLM head.
# * Liu et al. 2019, *RoBERTa: A Robustly Optimized BERT Pretraining Approach* (arXiv:1907.11692).
# * Ba, Kiros & Hinton 2016, *Layer Normalization*; Hendrycks & Gimpel 2016, *Gaussian Error
#   Linear Units (GELUs)*.
