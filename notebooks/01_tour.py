# %% [markdown]
# # 01 · A tour of the workbench: attention, masked-token probing and training in ten minutes
#
# **What you will learn.** The workbench's three families of analyses, once each, on one model,
# with no network:
#
# 1. **Attention**: what each head looks at, as numbers (a tidy table) and as a picture.
# 2. **Masked-token probing**: what the model puts in a blank, and how much it prefers a
#    grammatical sentence to an ungrammatical one.
# 3. **Training**: fine-tune the model for a few steps, then ask which heads changed.
#
# On the way: how RoBERTa's tokenizer splits a sentence into pieces and words, and how any figure
# is exported for a paper. **Concepts covered:** self-attention weights and per-head attention
# statistics over a corpus (Clark et al. 2019), masked-LM prediction, pseudo-log-likelihood and
# minimal pairs (Salazar et al. 2020), fine-tuning a sequence classifier, and how far fine-tuning
# moves each head's attention (Jensen–Shannon distance; Kovaleva et al. 2019).
#
# Every analysis has three faces computed once: a function returning a pandas DataFrame, a plotly
# figure drawn from that frame, and a widget that lets you change the inputs. The later notebooks
# (02–11) go deep on each family; this one is the map.
#
# **Change the model in the next cell.** `"demo"` is the small RoBERTa that ships with the
# repository (trained by the workbench itself, offline). `"roberta-base"` (with the network, or a
# local copy) or the folder of any fine-tuned checkpoint works the same; on a machine with a GPU
# the model goes there automatically.

# %% tags=["parameters"]
MODEL = "demo"
QUICK = False            # small sizes, used by the tests and `make demo --quick`
TEXT = "The keys to the cabinet are on the table."
N_SENTENCES = 300        # corpus size for the head statistics
FT_EXAMPLES = 1000       # fine-tuning examples (offline sentiment table)
FT_STEPS = 60            # fine-tuning optimiser steps
FT_LR = 1e-4             # for the demo model (1e-3 was unstable); use 2e-5 for roberta-base

# %%
import workbench as wb
from workbench.plots.attention import attention_heatmap
from workbench.plots.heads import compare_heatmap, head_heatmap
from workbench.plots.probing import topk_bars
from workbench.plots.training import training_curves

if QUICK:
    N_SENTENCES, FT_EXAMPLES, FT_STEPS = 24, 64, 4

lm = wb.load(MODEL)
lm

# %% [markdown]
# `lm` bundles the model, its tokenizer and its device. Start by looking at how the model *reads*
# a sentence: RoBERTa's byte-level BPE splits rare words into pieces and marks a leading space
# with `Ġ`. The workbench shows tokens readably (no `Ġ`) and keeps track of which pieces form a
# word, so every table and figure can work on words as well as tokens.

# %%
lm.tokens(TEXT).to_frame()

# %% [markdown]
# ## 1. Attention
#
# `wb.attention` returns one row per (text, layer, head, query token, key token) with the
# attention weight. Because it is a plain table, any question is a pandas one-liner: here, for
# each layer, the head whose attention is most concentrated on the sentence-start token `<s>`
# (a "no-op" pattern that many heads of trained models show).

# %%
att = wb.attention(lm, [TEXT])
att.head()

# %%
to_bos = att[att["key"] == 0].groupby(["layer", "head"])["weight"].mean()
to_bos.groupby("layer").idxmax()

# %% [markdown]
# The same table drawn as a heatmap for one head: rows are the tokens attending (queries),
# columns the tokens attended to (keys); each row sums to 1. Try other layers and heads, and
# `merge_subwords=True` / `drop_special=True` in `wb.attention` to look at words without `<s>`.

# %%
last = lm.num_layers - 1
attention_heatmap(att, layer=last, head=0)

# %% [markdown]
# The interactive version: type texts, pick layer/head, switch between the heatmap, the head view
# (lines between tokens), the model view (all heads at once) and the query/key view, and export
# the figure or the table. It runs the model once per text and only re-draws afterwards.

# %%
wb.widgets.AttentionExplorer(lm, [TEXT])

# %% [markdown]
# One sentence is an anecdote. `wb.head_stats` streams a corpus through the model and summarises
# every head: how much it attends to `<s>`, `</s>`, the previous or next token, punctuation, its
# entropy and mean attention distance. Here over sentences of the offline sentiment table. Look
# for heads that stand out: a column-like pattern (attention to `<s>`) is common in trained
# models, while a random model shows flat values everywhere.

# %%
corpus = wb.sentiment_demo(n=N_SENTENCES)["text"].tolist()
stats = wb.head_stats(lm, corpus, progress=False)
head_heatmap(stats, "attn_prev")

# %% [markdown]
# ## 2. Masked-token probing
#
# `wb.fill_mask` asks the model what belongs in each `<mask>` (probabilities over its whole
# vocabulary, shown as readable tokens). Unlike the usual pipeline it never silently scores only
# the first piece of a multi-token word; `wb.score_candidates` scores whole words jointly.

# %%
preds = wb.fill_mask(lm, "The capital of France is <mask>.", top_k=8)
topk_bars(preds)

# %% [markdown]
# A masked LM does not give sentence probabilities directly; the standard substitute is the
# pseudo-log-likelihood (PLL, Salazar et al. 2020): mask each token in turn and add up the
# log-probabilities of the true tokens. With it, minimal pairs test grammatical knowledge: a model
# that has learned subject–verb agreement should give the grammatical sentence the higher score
# (a positive margin). A random model is right about half the time.

# %%
good = ["The keys to the cabinet are on the table.", "The author that the guards like laughs.",
        "Many people were eating pizza."]
bad = ["The keys to the cabinet is on the table.", "The author that the guards like laugh.",
       "Many people was eating pizza."]
pairs = wb.compare_pairs(lm, good, bad)
pairs[["good", "bad", "margin", "correct"]]

# %% [markdown]
# The widget version: type a sentence with `<mask>`, see the top predictions (several models side
# by side when you pass a dict of models), and score your own candidates.

# %%
wb.widgets.MaskProbe(lm)

# %% [markdown]
# ## 3. Training: fine-tune, then look inside
#
# `wb.finetune` trains a sequence classifier from a table (here the offline Rotten Tomatoes
# sentiment snippets; your own CSV/TSV/JSONL or a `datasets` name work the same). Each run is a
# folder in the run store with its config, metrics and safetensors checkpoints; `wb.runs()` lists
# them, and `wb.load(run)` opens a checkpoint in every analysis. The full story, with live
# curves, stopping and resuming, is notebook 06; pretraining with dynamic masking is notebook 05.

# %%
data = wb.sentiment_demo(n=FT_EXAMPLES, split="train")
config = wb.FineTuneConfig(max_steps=FT_STEPS, batch_size=16, learning_rate=FT_LR,
                           eval_every=max(FT_STEPS // 3, 1), log_every=1)
run = wb.finetune(lm, data, config=config, name="tour-sentiment")
run

# %%
training_curves(run.metrics())

# %% [markdown]
# What did fine-tuning change? `wb.compare_attention` runs both models on the same texts and
# measures, per head, how far the attention maps moved (Jensen–Shannon distance, averaged over
# queries and texts). Kovaleva et al. (2019) found the last layers change most when BERT is
# fine-tuned; after a short run expect small numbers, larger towards the top.

# %%
tuned = wb.load(run)
changes = wb.compare_attention(lm, tuned, corpus[:50], progress=False)
compare_heatmap(changes)

# %% [markdown]
# ## 4. Figures for a paper
#
# Every figure above is a plotly figure: `wb.figures.export` writes it as PDF, SVG or PNG sized
# for one column (`width="column"`) or a full page, in the paper theme (readable fonts, colour
# maps that survive greyscale printing). Notebook 07 regenerates a whole report's figures in one
# call.

# %%
fig = head_heatmap(stats, "attn_prev", title="Attention to the previous token")
for path in ("figures/tour_prev_token_heads.svg", "figures/tour_prev_token_heads.pdf"):
    wb.figures.export(fig, path, width="column", fallback="html")

# %% [markdown]
# ## What to try next
#
# * Change `MODEL` to `"roberta-base"` (with the network, or a local copy) and re-run: the same
#   cells then describe the published model.
# * Draw another column of `stats` (`head_heatmap(stats, "attn_next")`, `"attn_punct"`,
#   `"entropy"`), and look at `TEXT` through rollout:
#   `attention_heatmap(wb.attention(lm, [TEXT], mode="rollout", layers=[last]))`.
# * Add your own minimal pairs to `good` / `bad` in section 2, or score single sentences with
#   `wb.score(lm, sentences)` and read the per-token `token_logprobs`.
# * Raise `FT_STEPS` and `FT_EXAMPLES`, then redraw `compare_heatmap(changes)`: is the change still
#   largest in the top layers?
# * Each family in depth:
#   - **00_encoder_by_hand**: one sentence through the encoder, every step recomputed and checked.
#   - **02_attention**: head, model and query/key views; rollout and norm-based attention; words
#     vs subwords.
#   - **03_masked_token_probing**: BPE pitfalls, candidates, PLL, probe sets, the logit lens.
#   - **04_heads**: head statistics at corpus scale, clustering, importance by ablation.
#   - **05_pretraining_dynamic_masking**: RoBERTa's static vs dynamic masking experiment.
#   - **06_fine_tuning**: a run with live curves, stop/resume, what changed in the heads.
#   - **07_figures_for_papers**: every figure of a report from saved runs, as PDF/SVG.
#   - **08_representations**: features, layer-wise probes, CKA and attributions.
#   - **09_beyond_peers**: the query–key atlas, named head roles, a one-call model diff.
#   - **10_mlm_and_nsp**: BERT's two objectives (15% masking, 80/10/10, NSP) and what RoBERTa kept.
#   - **11_finetune_vs_features**: frozen features vs fine-tuning on one task.
#
# ## Papers to cite
#
# * Liu et al. 2019, *RoBERTa: A Robustly Optimized BERT Pretraining Approach*
#   (arXiv:1907.11692): the model.
# * Clark, Khandelwal, Levy & Manning 2019, *What Does BERT Look At? An Analysis of BERT's
#   Attention* (BlackboxNLP): the per-head statistics of `wb.head_stats`, attention to special
#   tokens as a "no-op".
# * Vig 2019, *A Multiscale Visualization of Attention in the Transformer Model* (ACL, system
#   demonstrations): the head view and model view of the explorer.
# * Salazar, Liang, Nguyen & Kirchhoff 2020, *Masked Language Model Scoring* (ACL):
#   pseudo-log-likelihood.
# * Kovaleva, Romanov, Rogers & Rumshisky 2019, *Revealing the Dark Secrets of BERT*
#   (EMNLP-IJCNLP): which heads change under fine-tuning.
# * Pang & Lee 2005, *Seeing Stars: Exploiting Class Relationships for Sentiment Categorization
#   with Respect to Rating Scales* (ACL): the movie-review sentences of the sentiment table.
