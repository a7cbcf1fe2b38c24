# %% [markdown]
# # 12 · Context mixing beyond attention, activation patching, head-pruning curves
#
# **What you will learn.** Three analyses that researchers of BERT-family encoders moved to once
# raw attention weights were found wanting, each on one model, offline:
#
# 1. **How much does each token contribute to another's representation?** Raw attention, attention
#    rollout and norm-based attention beside three measures that count the value vectors, the
#    residual stream and the LayerNorms: value zeroing (Mohebbi et al. 2023), ALTI (Ferrando et
#    al. 2022) and GlobEnc (Modarressi et al. 2022), and how well each agrees with gradient ×
#    input and blank-out attributions of a fine-tuned classifier.
# 2. **Where is the information that decides a prediction?** Activation patching (causal
#    tracing) on subject–verb agreement: run the model on a sentence whose subject has the other
#    number, put back one clean activation at a time, and see which (layer, position) and which
#    head restores the clean preference between *is* and *are*.
# 3. **How many heads does the model need?** Michel et al.'s (2019) pruning curve: masked-token
#    accuracy as heads are removed in order of importance, against a random order.
#
# **Concepts covered:** value vectors and the residual stream as part of context mixing;
# decomposing a LayerNorm once its scale is fixed; rollout across layers; clean/corrupted runs
# and the normalised effect of a patch; ROME-style noise corruption; head importance re-estimated
# after each pruning step.
#
# `"demo"` is the 17 M-parameter RoBERTa that ships with the repository (6 layers, 6 heads,
# pretrained here on ~21 MB of text). It shows the mechanics and some real structure, but the
# clean patterns of the papers come from roberta-base or BERT-base: set `MODEL = "roberta-base"`
# where you have it.

# %% tags=["parameters"]
MODEL = "demo"
QUICK = False           # small sizes, used by the tests
SENTENCE = "The keys to the old cabinet are on the table."
BLIMP = "auto"          # a folder with BLiMP's .jsonl files or BLiMP.zip; "auto": shared/data/blimp
                        # in the working folder or any folder above it; None: the built-in pairs
CLASSIFIER = None       # a fine-tuned classifier for the agreement test; None: the newest finished
                        # fine-tuning run in the run store (notebook 06 leaves one), if any
N_AGREE = 8             # texts for the agreement with attributions
N_PAIRS = 12            # agreement pairs for patching
N_PRUNE_TEXTS = 32      # texts for the pruning curve
PRUNE_STEP = 0.15       # share of the heads removed per pruning step

# %%
import json
import zipfile
from pathlib import Path

import pandas as pd
from IPython.display import display

import workbench as wb
from workbench.plots.attention import attention_heatmap
from workbench.plots.context_mixing import agreement_bars, mixing_panels
from workbench.plots.patching import effect_by_span, head_grid, patch_heatmap
from workbench.plots.pruning import pruning_curve

if QUICK:
    N_PAIRS, N_PRUNE_TEXTS, PRUNE_STEP, N_AGREE = 2, 8, 0.25, 2

lm = wb.load(MODEL)
last = lm.num_layers - 1
lm

# %% [markdown]
# ## 1. One sentence, six ways to say "who mixes into whom"
#
# `wb.context_mixing(lm, text, method=...)` returns the same tidy frame as `wb.attention` (one
# row per layer, query and key, rows summing to 1), so every attention figure draws it.
# `layers="all"` combines the layers by rollout (C_L-1 ··· C_0, no identity added: the residual
# is already inside each method's matrix), as the three papers do. Definitions, and where the
# biases go, are in `help(wb.context_mixing)` and the module docstring.

# %%
methods = {}
methods["attention, last layer (heads averaged)"] = wb.attention(
    lm, SENTENCE, layers=[last], aggregate="heads")
methods["attention rollout (Abnar & Zuidema)"] = wb.attention(
    lm, SENTENCE, mode="rollout", layers=[last])
norm = wb.attention(lm, SENTENCE, mode="norm", layers=[last], aggregate="heads")
norm["weight"] = norm["weight"] / norm.groupby("query")["weight"].transform("sum")
methods["norm-based, last layer (row shares)"] = norm
for name, method in [("value zeroing", "value_zeroing"), ("ALTI", "alti"),
                     ("GlobEnc", "globenc")]:
    methods[f"{name}, rollout of all layers"] = wb.context_mixing(lm, SENTENCE, method=method,
                                                                  layers="all")
side = pd.concat([df.assign(method=name) for name, df in methods.items()], ignore_index=True)
fig = mixing_panels(side, title=f"{lm.name} on one sentence: raw attention vs context mixing "
                                "(each row sums to 1)")
fig

# %% [markdown]
# *What was computed:* one sentence through the model once per method. Top row: the last
# layer's attention averaged over heads, attention rollout through all layers (heads averaged,
# residual 0.5), and Kobayashi et al.'s norm ||Σ_h α f_h(x)|| at the last layer, divided by its row
# sum for display. Bottom row: value zeroing, ALTI and GlobEnc, each combined over all layers by
# rollout. Read it row by row: which keys does each query's final representation draw on?
#
# In BERT-family models raw attention often puts much of its mass on `<s>`, `</s>` and
# punctuation (Clark et al. 2019), mass that does little because those tokens' value vectors are
# small (Kobayashi et al. 2020); the measures that include the value vectors and the residual
# stream move weight back to the token itself and its neighbours, the papers' main finding.
# The side-by-side shows how much of that holds for this model; the share on the diagonal
# (a token keeping its own information) is the first thing to compare across panels.

# %% [markdown]
# Any one layer is a row of the same frame; the last layer's ALTI matrix alone:

# %%
alti = wb.context_mixing(lm, SENTENCE, method="alti", layers=[last], drop_special=True)
attention_heatmap(alti, title=f"ALTI (Ferrando et al. 2022), layer {last}, special tokens "
                              "dropped and rows renormalised")

# %% [markdown]
# ### Do the scores agree with attributions of a prediction?
#
# The papers' evaluation: on a fine-tuned classifier, which reads position 0 (`<s>`), compare
# row 0 of each method (combined over layers by rollout) with gradient × input and with
# blank-out (the drop in the predicted class's probability when a token becomes `<mask>`), by
# Spearman's rho per text, averaged over texts with a 95% bootstrap interval
# (`wb.mixing_agreement`). It needs a classifier: `CLASSIFIER`, or the newest finished
# fine-tuning run in the store (notebook 06 leaves one when run before this one, as `make demo`
# does).

# %%
finished = wb.runs()
finished = finished[(finished["kind"] == "finetune")
                    & finished["status"].isin(["completed", "early_stopped", "stopped"])]
if CLASSIFIER is None and len(finished):
    CLASSIFIER = finished["path"].iloc[0]
if CLASSIFIER is None:
    print("no fine-tuned classifier: set CLASSIFIER, or run notebook 06 first; skipped")
else:
    clf = wb.load(CLASSIFIER)
    agree_texts = wb.sentiment_demo(n=N_AGREE)["text"].tolist()
    agreement = wb.mixing_agreement(clf, agree_texts)
    display(agreement_bars(agreement, n_texts=len(agree_texts),
                           title=f"{clf.name}: agreement of token scores with attributions of its "
                                 f"prediction (Spearman, mean over {len(agree_texts)} texts, 95% "
                                 "bootstrap)"))

# %% [markdown]
# *What was computed:* for each text, each method's scores for the non-special tokens against
# |gradient × input| and blank-out of the classifier's predicted class; bars are the mean rho,
# whiskers the bootstrap interval over texts. The papers found value zeroing, ALTI and GlobEnc
# well above raw attention on BERT-base; with a dozen texts the intervals are wide, so read
# only differences that clear them.

# %% [markdown]
# ## 2. Activation patching on subject–verb agreement
#
# A pair of sentences differing only in the subject's number, the verb masked: clean "The keys
# … `<mask>`", corrupted "The key … `<mask>`". The metric is log P(clean verb) − log P(corrupted
# verb) at the mask. `wb.patch` runs the corrupted sentence with one clean activation put back
# (batched: all sites of a grid in a few forward passes) and reports the normalised effect:
# 1 means that site alone restores the clean metric, 0 that it changes nothing.
#
# The pairs come from BLiMP's `regular_plural_subject_verb_agreement_2` paradigm (subjects
# differ, the verb is shared; the other verb form is looked up in paradigm `_1`) when the
# `BLIMP` folder exists, and from a small built-in list otherwise. Pairs whose two sentences
# tokenise to different lengths, or whose verbs are not one token, are skipped and counted.

# %%
BUILT_IN = [  # (clean, corrupted, clean verb, corrupted verb)
    ("The keys to the cabinet <mask> here.", "The key to the cabinet <mask> here.", "are", "is"),
    ("The man near the door <mask> here.", "The men near the door <mask> here.", "is", "are"),
    ("The author of the books <mask> tired.", "The authors of the books <mask> tired.", "is", "are"),
    ("The dogs in the garden <mask> barking.", "The dog in the garden <mask> barking.", "are", "is"),
    ("The girl with the flowers <mask> happy.", "The girls with the flowers <mask> happy.", "is", "are"),
    ("The cars on the road <mask> fast.", "The car on the road <mask> fast.", "are", "is"),
    ("The teacher of the students <mask> late.", "The teachers of the students <mask> late.", "is", "are"),
    ("The birds over the lake <mask> loud.", "The bird over the lake <mask> loud.", "are", "is"),
]


def blimp_rows(folder, paradigm):
    """The rows of one BLiMP paradigm from a folder of .jsonl files or one with BLiMP.zip."""
    folder = Path(folder)
    name = f"{paradigm}.jsonl"
    if (folder / name).exists():
        return [json.loads(x) for x in (folder / name).read_text().splitlines() if x.strip()]
    with zipfile.ZipFile(folder / "BLiMP.zip") as z:
        member = next(m for m in z.namelist() if m.endswith("/" + name))
        return [json.loads(x) for x in z.read(member).decode().splitlines() if x.strip()]


def blimp_pairs(folder):
    forms = {}
    for paradigm in ("regular_plural_subject_verb_agreement_1",
                     "irregular_plural_subject_verb_agreement_1"):
        for r in blimp_rows(folder, paradigm):
            forms[r["one_prefix_word_good"]] = r["one_prefix_word_bad"]
            forms[r["one_prefix_word_bad"]] = r["one_prefix_word_good"]
    out = []
    for r in blimp_rows(folder, "regular_plural_subject_verb_agreement_2"):
        verb, good = r["two_prefix_word"], r["two_prefix_prefix_good"]
        rest = r["sentence_good"][len(good) + 1 + len(verb):]
        if verb in forms:
            out.append((f"{good} <mask>{rest}", f"{r['two_prefix_prefix_bad']} <mask>{rest}",
                        verb, forms[verb]))
    return out


def has_blimp(folder):
    return (folder / "BLiMP.zip").exists() or any(folder.glob("*.jsonl"))


if BLIMP == "auto":
    found = [p / "shared" / "data" / "blimp" for p in [Path.cwd(), *Path.cwd().parents]]
    BLIMP = next((f for f in found if f.is_dir() and has_blimp(f)), None)
use_blimp = not QUICK and BLIMP is not None and has_blimp(Path(BLIMP))
pairs = blimp_pairs(BLIMP) if use_blimp else BUILT_IN
source = "built-in list" if pairs is BUILT_IN else f"BLiMP ({len(pairs)} candidate pairs)"
print(f"pairs from the {source}")

# %%
frames, skipped = [], []
for clean, corrupted, good, bad in pairs:
    if len(frames) == N_PAIRS:
        break
    try:
        df = wb.patch(lm, clean, corrupted, candidates=(good, bad), sites=["resid", "head"])
    except wb.InputError as err:
        skipped.append("different token lengths" if "same number of tokens" in str(err)
                       else "a verb is not one token" if "not one token" in str(err) else str(err))
        continue
    frames.append(df.assign(text_id=len(frames), text=clean))
traced = pd.concat(frames, ignore_index=True)
print(f"{len(frames)} pairs patched, {len(skipped)} skipped "
      f"({pd.Series(skipped).value_counts().to_dict() if skipped else 'none'})")
first = traced[traced["text_id"] == 0]
patch_heatmap(first, title=f"Residual stream patched one (layer, position) at a time: "
                           f"'{first['text'].iloc[0]}' ({first['metric'].iloc[0]})")

# %% [markdown]
# *What was computed:* for the first pair, the normalised effect of putting the clean residual
# stream back at one (layer, position) in the corrupted run; every cell is one corrupted forward
# pass (batched). At the last layer only the mask position can matter (the MLM head reads it
# alone, so its effect there is exactly 1 and every other cell 0). If the model tracks
# agreement, early layers show the effect at the subject and later layers at the mask; the layer
# where it moves is where the number is copied.

# %%
effect_by_span(traced, n_pairs=len(frames))

# %% [markdown]
# *What was computed:* the same residual-stream patching for every pair, the effect averaged per
# layer over the positions whose token differs between the two sentences ("corrupted": the
# subject), the mask position, and all other positions; bars are ± one standard error over
# positions. Which heads move the information is the next figure.

# %%
mean_heads = (traced[traced["site"] == "head"]
              .groupby(["site", "layer", "head", "position"], as_index=False)["effect"].mean())
head_grid(mean_heads, title=f"Patching one head's output (all positions) at a time: mean effect over "
                f"{len(frames)} pairs")

# %% [markdown]
# *What was computed:* for each (layer, head), that head's context vector at every position
# patched from the clean run into the corrupted run, then averaged over the pairs. Heads
# are small parts of the residual update, so single heads rarely restore much alone.
#
# Noise instead of a paired sentence (ROME's causal tracing): `noise=[positions]` adds Gaussian
# noise of 3 × the embedding matrix's standard deviation to those tokens' embeddings.

# %%
clean0, _, good0, bad0 = next(p for p in pairs if len(lm.tokens(p[0])) == len(lm.tokens(p[1])))
noised = wb.patch(lm, clean0, noise=[1, 2], candidates=(good0, bad0))
patch_heatmap(noised, title=f"Residual stream patched into a run with noise on tokens 1–2: "
                            f"'{clean0}'")

# %% [markdown]
# ## 3. How many heads does the model need? The pruning curve
#
# `wb.prune_heads_curve` removes `PRUNE_STEP` of the heads at a time (with the same gates as
# `wb.ablate`) and measures masked-token accuracy on a fixed-seed masking of the texts. The
# "iterative" order re-estimates `wb.head_importance` with the pruned heads gated off after
# each step (Michel et al. 2019); "once" uses the intact model's importance; "random" is the
# baseline an importance score has to beat.

# %%
texts = wb.sentiment_demo(n=N_PRUNE_TEXTS)["text"].tolist()
curve = wb.prune_heads_curve(lm, texts, step=PRUNE_STEP)
pruning_curve(curve, n_texts=len(texts))

# %% [markdown]
# *What was computed:* masked-token accuracy (15% of tokens masked with a fixed seed) of the
# model with the first k heads of each order removed, on the same texts the importance was
# measured on. Michel et al. pruned ~40% of BERT-base's heads on MNLI without a noticeable drop;
# read how far each curve stays flat here, and whether the importance orders stay above random
# for longer. The accuracy is over the masked tokens of a few dozen short texts (a few hundred
# predictions), so differences of a couple of points are noise. The pruned set of any row is
# ready for `wb.ablate`:

# %%
row = curve[curve["order"] == "iterative"].iloc[len(curve[curve["order"] == "iterative"]) // 2]
with wb.ablate(lm, heads=list(row["heads"])):
    print(wb.fill_mask(lm, "The capital of France is <mask>.", top_k=3)[["token", "prob"]])
row[["order", "n_pruned", "accuracy", "loss"]]

# %% [markdown]
# ## What to try next
#
# * `wb.widgets.PatchProbe(lm, clean, corrupted, (a, b))`: the patching heatmaps for your own
#   minimal pair, one site at a time.
# * `sites=["attn", "ffn"]` in `wb.patch` separates what the attention and the FFN sublayers
#   write into the residual stream.
# * `wb.context_mixing(..., merge_subwords=True, drop_special=True)` for word-level matrices.
# * A fine-tuned classifier (`metric="prob", target=...` in `wb.patch`, labels in
#   `wb.prune_heads_curve`).
#
# **Papers:** Mohebbi, Zuidema, Chrupała & Alishahi 2023, "Quantifying Context Mixing in
# Transformers" (EACL); Ferrando, Gállego & Costa-jussà 2022, "Measuring the Mixing of Contextual
# Information in the Transformer" (EMNLP); Modarressi, Fayyaz, Yaghoobzadeh & Pilehvar 2022,
# "GlobEnc" (NAACL); Kobayashi et al. 2020, "Attention is Not Only a Weight" (EMNLP); Abnar &
# Zuidema 2020, "Quantifying Attention Flow in Transformers" (ACL); Vig et al. 2020, "Causal
# Mediation Analysis for Interpreting Neural NLP" (NeurIPS); Meng et al. 2022, "Locating and
# Editing Factual Associations in GPT" (NeurIPS); Michel, Levy & Neubig 2019, "Are Sixteen Heads
# Really Better than One?" (NeurIPS); Warstadt et al. 2020, "BLiMP" (TACL).
