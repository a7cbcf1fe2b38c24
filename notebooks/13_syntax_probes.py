# %% [markdown]
# # 13 · Does the model know syntax, and in which layer? Structural probes, edge probing and MDL
#
# **What you will learn.** Three ways the BERTology papers ask where syntax lives, run on Universal
# Dependencies trees:
#
# 1. the **structural probe** (Hewitt & Manning 2019): is the dependency tree a linear map away,
#    with tree distance = squared distance after the map (UUAS, DSpr) and depth = squared norm
#    (root accuracy, NSpr)? And how many dimensions does it need (the rank curve)?
# 2. **edge probing** (Tenney et al. 2019a/b): classify words and (head, dependent) word pairs
#    from a learned scalar mix of all layers; the mixing weights give an *expected layer*, and
#    probes over layers 0..l give the *center of gravity* of where each task is resolved;
# 3. **MDL probing** (Voita & Titov 2020): how many bits the labels cost with the online code,
#    beside accuracy and a control task (Hewitt & Liang 2019).
#
# **Concepts covered:** word vectors as the mean of their subword tokens; minimum spanning trees
# of predicted distances; Spearman correlations averaged per sentence length (5-50 words);
# scalar mix, expected layer and cumulative gains; control tasks and selectivity; prequential
# (online) code length and compression.
#
# **Data.** Universal Dependencies English-EWT (CC BY-SA 4.0) when it is found (`UD_DIR`, else
# `$WORKBENCH_UD_EWT`, else `../shared/data/ud_ewt` beside the repository), otherwise a tiny
# CoNLL-U sample written into this notebook: enough to run every cell, far too small for numbers.

# %% tags=["parameters"]
MODEL = "demo"          # one changed line runs it on roberta-base: MODEL = "roberta-base"
QUICK = False
UD_DIR = None           # a folder with en_ewt-ud-{train,test}.conllu(.gz); None: look for it
N_TRAIN = 1500          # training sentences for the structural probes (12,544 in EWT train)
N_TEST = 500            # held-out sentences (2,077 in EWT test)
N_EDGE = 600            # sentences for edge probing (EWT train; a quarter held out)
N_MDL = 300             # sentences for the MDL / accuracy comparison (EWT train)
EPOCHS = 10             # structural-probe epochs (the best on a held-out tenth is kept)
EDGE_EPOCHS = 3         # edge-probe epochs (each task trains one probe per layer prefix)
RANKS = [1, 2, 4, 8, 32, 128]
SEED = 0

# %%
import os
from pathlib import Path

import pandas as pd

import workbench as wb
from workbench.plots import syntax_probes as sp

if QUICK:  # the test harness runs every notebook on a tiny random model
    N_TRAIN, N_TEST, N_EDGE, N_MDL, EPOCHS, EDGE_EPOCHS, RANKS = 16, 4, 16, 16, 1, 1, [1, 4]

lm = wb.load(MODEL)
lm

# %% [markdown]
# ## 1. Trees
#
# `wb.read_conll(path)` reads CoNLL-U (plain or gzipped) into one row per *syntactic word*, with
# its head (`dep_head`, 0-based, -1 for the root) and relation. A multiword token such as
# "don't" (`2-3`) is split into its words "do" and "n't", and empty nodes (`8.1`, enhanced graphs
# only) are skipped, as UD defines; a malformed line or a sentence without a root is an error
# naming the line.

# %%
SAMPLE = """# sent_id = s1
1\tThe\tthe\tDET\tDT\t_\t2\tdet\t_\t_
2\tcat\tcat\tNOUN\tNN\t_\t3\tnsubj\t_\t_
3\tsat\tsit\tVERB\tVBD\t_\t0\troot\t_\t_
4\ton\ton\tADP\tIN\t_\t6\tcase\t_\t_
5\tthe\tthe\tDET\tDT\t_\t6\tdet\t_\t_
6\tmat\tmat\tNOUN\tNN\t_\t3\tobl\t_\t_
7\t.\t.\tPUNCT\t.\t_\t3\tpunct\t_\t_

# sent_id = s2
1\tShe\tshe\tPRON\tPRP\t_\t2\tnsubj\t_\t_
2-3\tdidn't\t_\t_\t_\t_\t_\t_\t_\t_
2\tdid\tdo\tAUX\tVBD\t_\t4\taux\t_\t_
3\tn't\tnot\tPART\tRB\t_\t4\tadvmod\t_\t_
4\tread\tread\tVERB\tVB\t_\t0\troot\t_\t_
5\tthe\tthe\tDET\tDT\t_\t7\tdet\t_\t_
6\told\told\tADJ\tJJ\t_\t7\tamod\t_\t_
7\tbooks\tbook\tNOUN\tNNS\t_\t4\tobj\t_\t_
8\t.\t.\tPUNCT\t.\t_\t4\tpunct\t_\t_

# sent_id = s3
1\tA\ta\tDET\tDT\t_\t2\tdet\t_\t_
2\tdog\tdog\tNOUN\tNN\t_\t3\tnsubj\t_\t_
3\tbarked\tbark\tVERB\tVBD\t_\t0\troot\t_\t_
4\tat\tat\tADP\tIN\t_\t6\tcase\t_\t_
5\tthe\tthe\tDET\tDT\t_\t6\tdet\t_\t_
6\tmailman\tmailman\tNOUN\tNN\t_\t3\tobl\t_\t_
7\tyesterday\tyesterday\tNOUN\tNN\t_\t3\tobl:tmod\t_\t_
8\t.\t.\tPUNCT\t.\t_\t3\tpunct\t_\t_

# sent_id = s4
1\tWe\twe\tPRON\tPRP\t_\t2\tnsubj\t_\t_
2\tsaw\tsee\tVERB\tVBD\t_\t0\troot\t_\t_
3\ta\ta\tDET\tDT\t_\t5\tdet\t_\t_
4\tsmall\tsmall\tADJ\tJJ\t_\t5\tamod\t_\t_
5\tbird\tbird\tNOUN\tNN\t_\t2\tobj\t_\t_
6\tin\tin\tADP\tIN\t_\t8\tcase\t_\t_
7\tthe\tthe\tDET\tDT\t_\t8\tdet\t_\t_
8\tgarden\tgarden\tNOUN\tNN\t_\t2\tobl\t_\t_
9\t.\t.\tPUNCT\t.\t_\t2\tpunct\t_\t_
"""


def find_ud(folder):
    """UD EWT's folder: the parameter, $WORKBENCH_UD_EWT, or ../shared/data/ud_ewt near the repo."""
    repo = Path(wb.__file__).resolve().parent.parent
    candidates = [folder, os.environ.get("WORKBENCH_UD_EWT"), repo.parent / "shared/data/ud_ewt",
                  repo.parent.parent / "shared/data/ud_ewt"]
    for c in candidates:
        if c and list(Path(c).glob("en_ewt-ud-train.conllu*")):
            return Path(c)
    return None


ud = None if QUICK else find_ud(UD_DIR)
if ud is not None:
    train_all = wb.read_conll(next(ud.glob("en_ewt-ud-train.conllu*")))
    test_all = wb.read_conll(next(ud.glob("en_ewt-ud-test.conllu*")))
    SOURCE = f"UD English-EWT ({ud})"
else:  # the tiny sample, repeated: every cell runs, no number means anything
    sample = wb.read_conll(SAMPLE, format="conllu")
    copies = max(N_TRAIN, N_EDGE, N_MDL) // 4
    reps = [sample.assign(text_id=sample["text_id"] + 4 * k) for k in range(copies)]
    train_all, test_all = pd.concat(reps, ignore_index=True), sample
    SOURCE = "the built-in 4-sentence sample (repeated): NOT a result"
train = train_all[train_all["text_id"] < N_TRAIN]
test = test_all[test_all["text_id"] < N_TEST]
print(f"{SOURCE}: train {train['text_id'].nunique()} sentences / {len(train)} words, "
      f"test {test['text_id'].nunique()} sentences / {len(test)} words")
wb.read_conll(SAMPLE, format="conllu").head(9)

# %% [markdown]
# ## 2. The distance probe, layer by layer
#
# One probe per layer on word vectors (the mean of each word's subword tokens), trained with
# Hewitt & Manning's L1 loss on squared distances divided by the squared sentence length.
# UUAS counts the edges of the minimum spanning tree of the predicted distances that are in the
# gold tree (punctuation words left out, as the paper); DSpr is the Spearman correlation of each
# word's predicted and gold distances, averaged per sentence length and then over lengths 5-50.
# The dotted line is the right-branching chain, a baseline that knows only word order.

# %%
dist = wb.structural_probe(lm, train, test, kind="distance", layers="all", rank=min(128, lm.config.hidden_size),
                           epochs=EPOCHS, seed=SEED)
dist.pivot_table(index="layer", columns="metric", values="value").round(3)

# %%
sp.structural_curve(dist)

# %% [markdown]
# ## 3. The depth probe
#
# The same idea for depth: the squared norm after the map should be the word's depth in the
# tree. Root accuracy asks whether the least deep non-punctuation word is the root.

# %%
depth = wb.structural_probe(lm, train, test, kind="depth", layers="all", rank=min(128, lm.config.hidden_size),
                            epochs=EPOCHS, seed=SEED)
depth.pivot_table(index="layer", columns="metric", values="value").round(3)

# %%
sp.structural_curve(depth)

# %% [markdown]
# ## 4. How many dimensions does the tree need? The rank curve
#
# At the best layer of section 2, probes of rank 1, 2, 4, ...: the paper found BERT's UUAS
# rising steeply up to rank ~64 and flat beyond, i.e. the syntax lives in a low-rank subspace.

# %%
uuas = dist[dist["metric"] == "uuas"]
best_layer = int(uuas.loc[uuas["value"].idxmax(), "layer"])
ranks = [r for r in RANKS if r <= lm.config.hidden_size]
curve = wb.structural_probe(lm, train, test, kind="distance", layers=[best_layer], rank=ranks,
                            epochs=EPOCHS, seed=SEED)
curve[curve["metric"].isin(["uuas", "dspr"])].pivot_table(index="probe_rank", columns="metric",
                                                           values="value").round(3)

# %%
sp.rank_curve(curve, title=f"UUAS by probe rank at layer {best_layer} ({SOURCE.split(' (')[0]})")

# %% [markdown]
# ## 5. Edge probing: which layers does each task draw on?
#
# For each task a probe classifies words (UPOS, tree depth) or (head, dependent) pairs
# (dependency relation) from a learned scalar mix of all layers. The **expected layer** is the
# mix-weighted mean layer; the **center of gravity** is where the cumulative probes (trained on
# layers 0..l) gain their accuracy. The control task gives each word type a random label: a
# probe that scores well on it memorises rather than reads the representation.

# %%
edge_data = train_all[train_all["text_id"] < N_EDGE]
edge = wb.edge_probe(lm, edge_data, tasks=["upos", "deprel", "depth"], epochs=EDGE_EPOCHS, seed=SEED)
edge.summary.pivot_table(index="task", columns="metric", values="value").round(3)

# %%
sp.edge_probe_grid(edge)

# %% [markdown]
# ## 6. MDL beside accuracy
#
# The online code transmits the UPOS tags block by block (0.1 % ... 100 % of the words, the
# paper's split), each block coded by a probe trained on the blocks before it. Compression =
# uniform code / online code: higher means the layer makes the tags easier to learn *from few
# examples*, which accuracy alone does not show. The control task compresses poorly on a good
# representation.

# %%
upos = train_all[train_all["text_id"] < N_MDL]
mdl = wb.linear_probe(lm, upos, task="token", mdl=True, seed=SEED, progress=False)
mdl.pivot_table(index="layer", columns="metric", values="value").round(3)

# %%
sp.mdl_beside_accuracy(mdl, title=f"UPOS: accuracy and MDL per layer ({upos['text_id'].nunique()} sentences)")

# %% [markdown]
# ## 7. Published figures beside ours
#
# Read these with their caveats: BERT-base has 12 layers of 768 dimensions and was trained on
# 3.3 B words; the demo model is a small RoBERTa the workbench pretrained on a few million words.
# Hewitt & Manning probe the Penn Treebank (WSJ, Stanford dependencies, PTB punctuation tags);
# we probe UD English-EWT (web text, UD relations, UPOS `PUNCT`), so even the same model would
# not give the same numbers. Tenney et al. 2019b report BERT-**large** (24 layers): compare the
# *relative* position (layer / number of layers) and the *order* of the tasks, not the values.

# %%
best = dist[dist["layer"] == best_layer].set_index("metric")["value"]
n_layers = lm.num_layers
summ = edge.summary.set_index(["task", "metric"])["value"]
published = pd.DataFrame([
    ("structural probe UUAS (best layer)", "BERT-base layer 7, PTB (H&M 2019)", 0.798,
     f"layer {best_layer}", best["uuas"]),
    ("structural probe DSpr (best layer)", "BERT-base layer 7, PTB (H&M 2019)", 0.85,
     f"layer {best_layer}", best["dspr"]),
    ("UUAS at rank 1 / rank 128", "BERT, PTB (H&M 2019, rank curve)", "0.266 / 0.799", "rank 1 / max",
     " / ".join(f"{curve[(curve['metric'] == 'uuas') & (curve['probe_rank'] == r)]['value'].iloc[0]:.3f}"
                for r in (min(ranks), max(ranks)))),
    ("POS center of gravity / layers", "BERT-large, 3.39 / 24 (Tenney 2019b)", round(3.39 / 24, 3),
     "upos", summ["upos", "center_of_gravity"] / n_layers),
    ("Deps center of gravity / layers", "BERT-large, 5.69 / 24 (Tenney 2019b)", round(5.69 / 24, 3),
     "deprel", summ["deprel", "center_of_gravity"] / n_layers),
], columns=["figure", "published setting", "published", "ours at", "ours"])
print("ours:", lm.name, "on", SOURCE)
published

# %% [markdown]
# The published numbers are printed, not recomputed: check them against the papers before citing.
# To run every cell on roberta-base, change one line in the parameters cell:
# `MODEL = "roberta-base"` (it downloads once, then runs from the cache; expect minutes per
# section on a CPU). `benchmarks/bench_syntax_probes.py` runs the full EWT layer sweep on the demo
# model and on a real pretrained MiniLM encoder from PyPI.
