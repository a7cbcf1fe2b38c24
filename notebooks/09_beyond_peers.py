# %% [markdown]
# # 09 · Beyond the peers: the query–key atlas, named head roles, and a one-call model diff
#
# Three analyses that the peer tools offer only in part (AttentionViz as a web prototype for a few
# fixed models, TransformerLens's head detector for decoders, bertviz and LIT one model at a time),
# here for encoders, on any checkpoint the workbench loads, offline:
#
# 1. **The query–key atlas** (`wb.qk_atlas`, after Yeh et al. 2023, "AttentionViz"): the query and
#    key vectors of every token, for every head, projected *jointly* into 2-D, so a query lies
#    near the keys it attends to. AttentionViz's two softmax-preserving changes are applied first:
#    keys are translated to share the queries' centroid (adding a constant vector to every key
#    adds the same number to a query's whole score row, which softmax ignores) and queries and
#    keys are scaled by *a* and 1/*a* to the same mean norm (dot products unchanged).
# 2. **Head roles** (`wb.head_roles`): every head named from a fixed vocabulary — previous/next
#    token, self, fixed offset, `<s>`, `</s>`, punctuation, a dependency relation (Clark et al.
#    2019), broad, mixed — with the score behind the name and the runner-up, cross-checked against
#    Kovaleva et al. 2019's pattern classes.
# 3. **One-call model diff** (`wb.compare_models`): per-head attention change, head importance and
#    role, per-layer CKA, and for two masked LMs the change in top-1 fill-mask predictions and PLL.
#
# Each returns a tidy DataFrame (the diff: a small object of DataFrames); the figures are drawn from
# those frames and export to PDF/SVG.
#
# **What you will learn.** How to read a head from the geometry of its queries and keys, how to
# give every head a name with the evidence behind it (score, attention mass, runner-up), and how
# to see in one call where two checkpoints differ, checked on a controlled case where the answer
# is known. **Concepts covered:** queries and keys of scaled dot-product attention and the
# transformations softmax ignores (AttentionViz, Yeh et al. 2023); head roles from attention
# statistics and dependency arcs (Clark et al. 2019) cross-checked against attention pattern
# classes (Kovaleva et al. 2019); attention change per head (Jensen–Shannon distance), head
# importance (Michel et al. 2019), layer similarity (linear CKA, Kornblith et al. 2019), and the
# change in fill-mask predictions and pseudo-log-likelihood (Salazar et al. 2020).

# %% tags=["parameters"]
MODEL = "demo"
QUICK = False           # small sizes, used by the tests
N_ATLAS = 100           # sentences in the query-key atlas (~2,900 tokens on the demo model)
N_ROLES = 200           # sentences for the head roles
N_DIFF = 200            # sentences both models read in the diff
FT_EXAMPLES = 800       # fine-tuning examples (offline sentiment table)
FT_STEPS = 60           # fine-tuning optimiser steps
FT_LR = 1e-4            # for the demo model; use 2e-5 for roberta-base

# %%
import torch

import workbench as wb
from workbench.plots.compare_models import diff_overview
from workbench.plots.head_roles import role_grid
from workbench.plots.qk_atlas import atlas_grid, head_detail

if QUICK:
    N_ATLAS, N_ROLES, N_DIFF, FT_EXAMPLES, FT_STEPS = 8, 12, 8, 48, 3

lm = wb.load(MODEL)
corpus = wb.sentiment_demo(n=max(N_ATLAS, N_ROLES, N_DIFF))["text"].tolist()
lm

# %% [markdown]
# ## 1. The query–key atlas
#
# One row per (layer, head, kind, token), with the token's type (special, punctuation, word start,
# continuation), a position bucket and, where spaCy is installed, its part of speech.

# %%
labels = ["token_type", "position_bucket"]
try:
    import spacy  # noqa: F401  (the syntax extra)
    labels.append("pos")
except ImportError:
    pass
atlas = wb.qk_atlas(lm, corpus[:N_ATLAS], labels=labels)
atlas.head()

# %% [markdown]
# All heads at once (a sample of 300 points per head keeps the page small). Blue are queries,
# orange keys.

# %%
atlas_grid(atlas)

# %% [markdown]
# Coloured by position instead: in the middle layers of the demo model many heads lay their
# vectors out on a ring ordered by position, the signature of heads that attend by relative
# position.

# %%
atlas_grid(atlas, color="position_bucket")

# %% [markdown]
# One head in detail, with the attention row of one query drawn over the keys (the model's own
# weights, from `wb.attention`). On the demo model, layer 2 head 4 is a previous-token head: the
# query (star) sits next to the key of the token before it.

# %%
LAYER, HEAD = (2, 4) if lm.num_layers > 2 else (1, 0)
text_id, position = 3 % len(corpus[:N_ATLAS]), 3
frame = wb.attention(lm, [corpus[text_id]], layers=[LAYER], heads=[HEAD])
row = frame[frame["query"] == position]
head_detail(atlas, LAYER, HEAD, color="token_type", query=(text_id, position), weights=row)

# %% [markdown]
# In JupyterLab the same is interactive: `wb.widgets.QKAtlas(lm, texts, atlas=atlas)` — click a
# head in the grid to open it, click a query (circle) to draw its attention row and open the
# sentence in the attention head view.

# %%
explorer = wb.widgets.QKAtlas(lm, corpus[:N_ATLAS], atlas=atlas)
explorer.select_head(LAYER, HEAD)
explorer

# %% [markdown]
# ## 2. Every head named
#
# Every role is scored on one scale: the share of query tokens whose most-attended key is the
# role's target (for a dependency role, Clark et al.'s accuracy). A head takes the best role
# reaching 0.5 — its target is the top key for a majority of tokens, more than 10× chance on
# sentences of 20–30 tokens — unless its attention is spread nearly uniformly ("broad":
# normalised entropy ≥ 0.8). `weight` is the attention *mass* on the target.

# %%
roles = wb.head_roles(lm, corpus[:N_ROLES], progress=not QUICK)
roles[["layer", "head", "role", "score", "weight", "runner_up", "runner_up_score", "pattern"]]

# %%
role_grid(roles)

# %% [markdown]
# How sharp are the names? The named heads sorted by score (a broad head's score is its normalised
# entropy, on its own scale). The four positional heads sit far above the 0.5 threshold; a few
# heads sit close to it, and for those the runner-up matters as much as the name.
# `pattern_agrees` says, for each head whose role implies a Kovaleva et al. class (positional
# → diagonal, `<s>`/`</s>`/punctuation → vertical, broad → heterogeneous or block), whether it
# carries it; its mean is the share that agree.

# %%
agrees = roles["pattern_agrees"]
print(agrees.mean(), "of", agrees.count(), "heads agree with Kovaleva's classes")
named = roles[~roles["role"].isin(["broad", "mixed"])]
named.sort_values("score", ascending=False)[["layer", "head", "role", "score", "runner_up", "runner_up_score"]]

# %% [markdown]
# **Reading (demo model, 200 sentences).** The lower layers hold the sharp positional heads:
# layer 1 heads 2 and 3 are next-token heads, layer 1 head 5 and layer 2 head 4 previous-token
# heads, each with its target as top key for 0.91–0.92 of the tokens and 0.90–0.92 of the
# attention mass (Clark et al.'s per-sentence means) — the heads `head_stats` singles out. Layer 0 and layer 5 are mostly broad (bag-of-words)
# heads; layers 3–5 have self heads and one `</s>` head (layer 4 head 5: the top key for 0.86 of
# the tokens with only 0.38 of the mass, Clark et al.'s no-op pattern). Five heads in layers 2–4
# have no positional majority but track one dependency clearly better than the best fixed-offset
# baseline (layer 3 head 4: `prt` 0.95, layer 2 head 5: `xcomp` 0.72, layer 4 head 2: `acomp`
# 0.69). Layer 3 head 0 sits right at the threshold (next token 0.50, runner-up `det` 0.73): a
# name is only as sharp as its margin over the runner-up, which is why both are reported. Where a
# role implies a Kovaleva class it matches for 18 of 21 heads (0.86).

# %% [markdown]
# ## 3. What fine-tuning changes, in one call
#
# A short sentiment fine-tuning run (as in notebook 04), then `wb.compare_models` on the same
# sentences. The fine-tuned model is a classifier without an MLM head, so head importance on the
# masked-LM loss and the fill-mask/PLL comparison are skipped — the diff says so in `skipped`.

# %%
data = wb.sentiment_demo(n=FT_EXAMPLES, seed=1, split="train")
config = wb.FineTuneConfig(max_steps=FT_STEPS, batch_size=16, learning_rate=FT_LR,
                           eval_every=max(FT_STEPS // 2, 1), log_every=max(FT_STEPS // 10, 1))
run = wb.finetune(lm, data, config=config, name="beyond-peers-sentiment", progress=not QUICK)
tuned = wb.load(run)
diff = wb.compare_models(lm, tuned, corpus[:N_DIFF], progress=not QUICK)
diff.skipped

# %%
diff.layers

# %%
diff_overview(diff)

# %% [markdown]
# **Reading (demo model, 200 sentences, 60 fine-tuning steps on 800 sentiment examples).** The
# change grows with depth, as Kovaleva et al. 2019 found for BERT: the mean Jensen–Shannon distance
# between the attention rows of the two models rises layer by layer from 0.03 (layer 0) through
# 0.07, 0.11, 0.11 and 0.14 to 0.20 (layer 5), and the same-layer CKA falls from 0.999 to 0.95.
# The heads that moved most are in the last two layers (layer 5 heads 0 and 1, layer 4's `</s>`
# head, JS 0.20–0.26), and three heads lost their role, all in layers 3 and 5 (layer 5 head 1 was
# a self head and became mixed). The sharp positional heads of layers 1–2 kept their roles.

# %%
diff.heads[diff.heads["role_changed"]][["layer", "head", "role_a", "role_b", "js_distance"]]

# %% [markdown]
# Two masked LMs get every panel, including top-1 agreement and the PLL change. As a controlled
# case, a copy of the model with only the last layer's query and key weights disturbed: the diff
# must put all the change in that layer (JS 0 and CKA 1 below it), and the predictions move.

# %%
copy = wb.load(MODEL)
with torch.no_grad():
    for lin in (copy.encoder.encoder.layer[-1].attention.self.query,
                copy.encoder.encoder.layer[-1].attention.self.key):
        lin.weight.mul_(1.5)
disturbed = wb.compare_models(lm, copy, corpus[:N_DIFF // 4 or 1], roles=False, progress=not QUICK)
below = disturbed.layers.iloc[:-1]
assert below["js_distance"].max() < 1e-5 and below["cka"].min() > 1 - 1e-6   # nothing upstream moved
disturbed.summary()

# %%
diff_overview(disturbed)

# %% [markdown]
# The README's feature table lists these three analyses against AttentionViz, TransformerLens's
# head detector and bertviz/LIT.
#
# ## What to try next
#
# * Other projections of the atlas: `wb.qk_atlas(lm, texts, method="tsne")` (or `"umap"`), and
#   `align=False` to see the queries and keys before AttentionViz's translation and scaling.
# * Make the names stricter or looser: `wb.head_roles(lm, texts, threshold=0.6, broad=0.7)`, or
#   `syntax=True` to require the dependency roles (spaCy with an English pipeline).
# * Diff two masked LMs to get every panel, e.g. notebook 05's `static x10` and `dynamic` runs,
#   each opened with `wb.load(run)` (`compare_models` needs one tokenizer and one layers × heads
#   shape, which they share), and read `diff.predictions` and `diff.pll`; `syntax=True` adds
#   dependency roles to the diff.
# * Re-run with `MODEL = "roberta-base"` (and `FT_LR = 2e-5`); notebook 04 has the head statistics
#   and importance one analysis at a time, notebook 06 a full fine-tuning run diffed the same way.
#
# ## Papers to cite
#
# * Yeh, Chen, Wu, Zhao, Kunkel, Wattenberg & Viégas 2023, *AttentionViz: A Global View of
#   Transformer Attention* (IEEE VIS 2023, IEEE TVCG): the joint query–key projection and its
#   softmax-preserving alignment.
# * Clark, Khandelwal, Levy & Manning 2019, *What Does BERT Look At? An Analysis of BERT's
#   Attention* (BlackboxNLP): positional, special-token and dependency heads, fixed-offset
#   baselines.
# * Kovaleva, Romanov, Rogers & Rumshisky 2019, *Revealing the Dark Secrets of BERT*
#   (EMNLP-IJCNLP): attention pattern classes, attention change under fine-tuning.
# * Michel, Levy & Neubig 2019, *Are Sixteen Heads Really Better than One?* (NeurIPS): head
#   importance.
# * Kornblith, Norouzi, Lee & Hinton 2019, *Similarity of Neural Network Representations
#   Revisited* (ICML): CKA.
# * Salazar, Liang, Nguyen & Kirchhoff 2020, *Masked Language Model Scoring* (ACL):
#   pseudo-log-likelihood.
# * Liu et al. 2019, *RoBERTa: A Robustly Optimized BERT Pretraining Approach*
#   (arXiv:1907.11692): the model.
