# %% [markdown]
# # 11 · Using a pretrained encoder downstream: frozen features vs fine-tuning
#
# **What you will learn.** The two ways to put a pretrained encoder to work on a task, measured
# on the same sentiment split with the same model: **feature extraction** (the encoder is frozen;
# only a small classifier on its vectors is trained) and **fine-tuning** (every weight is trained
# a little, starting from the pretrained ones). We run four arms with one test set:
#
# * **(a)** frozen features from *every* layer + logistic regression: which layer's vectors hold
#   the sentiment (a layer curve);
# * **(b)** frozen encoder + the classification head RoBERTa uses for fine-tuning, trained alone
#   ("only the output layer is changed");
# * **(c)** full fine-tuning with `wb.finetune`;
# * **(d)** the same architecture from **random** initial weights, fine-tuned the same way: what
#   pretraining is worth.
#
# **Concepts covered:** the fine-tuning and feature-based approaches of Devlin et al. 2019 (§5.3),
# and the common claim that in fine-tuning "usually only the output layer is changed and the rest
# is kept" — which (b) vs (c) tests directly.
#
# **Data.** By default the offline sentiment table that ships in `data/sentiment/`
# (Rotten Tomatoes critic snippets from Pang & Lee's movie-review data, the same source SST-2's
# sentences were drawn from), with its fixed train/test partition. Point `SST2_DIR` at a GLUE
# SST-2 folder (`train.tsv`, and `test.tsv` or `dev.tsv`, columns `sentence`, `label`) to run the
# same arms on SST-2.

# %% tags=["parameters"]
MODEL = "demo"
QUICK = False
SST2_DIR = None        # or a folder with GLUE SST-2's train.tsv and test.tsv/dev.tsv
N_TRAIN = 1500         # training sentences (every arm sees the same ones)
N_TEST = None          # test sentences (None: the whole test split)
EPOCHS = 2             # fine-tuning epochs, arms (c) and (d)
LEARNING_RATE = 1e-4   # fine-tuning, arms (c) and (d) (the demo model; 2e-5 for roberta-base)
HEAD_EPOCHS = 20       # arm (b): epochs over the cached frozen vectors (batches of 64)
HEAD_LEARNING_RATE = 1e-3
SEED = 0

# %%
import time
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.express as px
import torch
from scipy.stats import binomtest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from transformers import RobertaForMaskedLM
from transformers.models.roberta.modeling_roberta import RobertaClassificationHead

import workbench as wb
from workbench.plots.labels import finish

if QUICK:
    N_TRAIN, N_TEST, EPOCHS, HEAD_EPOCHS = 96, 48, 1, 3
lm = wb.load(MODEL, device="cpu", dtype="fp32")
if SST2_DIR:
    folder = Path(SST2_DIR)
    test_file = folder / "test.tsv" if (folder / "test.tsv").exists() else folder / "dev.tsv"
    read = lambda p: pd.read_csv(p, sep="\t", quoting=3).rename(columns={"sentence": "text"})
    train = read(folder / "train.tsv").sample(n=N_TRAIN, random_state=SEED)
    test = read(test_file)
    DATA = f"SST-2 ({test_file.name})"
else:
    train = wb.sentiment_demo(n=N_TRAIN, seed=SEED, split="train")
    test = wb.sentiment_demo(split="test")
    DATA = "Rotten Tomatoes demo table"
if N_TEST:
    test = test.sample(n=min(N_TEST, len(test)), random_state=SEED)
train, test = train[["text", "label"]].reset_index(drop=True), test[["text", "label"]].reset_index(drop=True)
labels = sorted(train["label"].astype(str).unique())
y_train = train["label"].astype(str).map(labels.index).to_numpy()
y_test = test["label"].astype(str).map(labels.index).to_numpy()
majority = max(np.mean(y_test == k) for k in range(len(labels)))
print(f"{DATA}: {len(train)} training and {len(test)} test sentences, labels {labels}; "
      f"majority-class accuracy on test {majority:.3f}")
results = []                       # one row per arm: accuracy, wall time, trained parameters
correct = {}                       # arm -> (N_test,) bool: which test sentences it got right


def record(arm, right, seconds, trained, note=""):
    correct[arm] = np.asarray(right, dtype=bool)
    n = len(y_test)
    k = int(np.sum(right))
    ci = binomtest(k, n).proportion_ci(method="wilson")
    results.append({"arm": arm, "test accuracy": k / n, "95% CI low": ci.low,
                    "95% CI high": ci.high, "wall s": round(seconds, 1),
                    "trained parameters": trained, "note": note})
    print(f"{arm}: accuracy {k / n:.3f} [{ci.low:.3f}, {ci.high:.3f}] in {seconds:.1f} s")

# %% [markdown]
# ## (a) Frozen features from every layer + logistic regression
#
# `wb.features` runs the frozen encoder once over all sentences and keeps the mean of the token
# vectors at every layer (layer 0 = the embeddings). A standardised logistic regression per layer
# is fitted on the training sentences and scored on the test sentences; the layer reported in
# the table is chosen by cross-validation on the training sentences, never by the test score.

# %%
start = time.perf_counter()
feats = wb.features(lm, train["text"].tolist() + test["text"].tolist(), layers="all",
                    pool="mean", cache=False, progress=not QUICK)
encode_s = time.perf_counter() - start
X_all = feats.array                                                  # (N_train + N_test, L+1, d)
X_tr, X_te = X_all[:len(train)], X_all[len(train):]


def probe():
    """A standardised logistic regression (a fresh one for each fit)."""
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))


curve = []
for j, layer in enumerate(feats.layers):
    t = time.perf_counter()
    cv = cross_val_score(probe(), X_tr[:, j], y_train, cv=3).mean()   # chooses the layer
    acc = probe().fit(X_tr[:, j], y_train).score(X_te[:, j], y_test)
    curve.append({"layer": layer, "train 3-fold CV accuracy": cv, "test accuracy": acc,
                  "fit s": time.perf_counter() - t})
curve = pd.DataFrame(curve)
chosen = int(curve["train 3-fold CV accuracy"].idxmax())       # picked without the test set
pred = probe().fit(X_tr[:, chosen], y_train).predict(X_te[:, chosen])
record(f"(a) frozen layer {feats.layers[chosen]} + logistic regression", pred == y_test,
       encode_s + curve["fit s"].sum(), X_tr.shape[-1] + 1, "layer chosen by 3-fold CV on train")
last = len(feats.layers) - 1
pred = probe().fit(X_tr[:, last], y_train).predict(X_te[:, last])
record("(a) frozen last layer + logistic regression", pred == y_test,
       encode_s + curve["fit s"].iloc[-1], X_tr.shape[-1] + 1)
curve.round(3)

# %%
fig = px.line(curve.melt(id_vars="layer", value_vars=["train 3-fold CV accuracy", "test accuracy"],
                         var_name="measured on", value_name="accuracy"),
              x="layer", y="accuracy", color="measured on", markers=True,
              title=f"(a) logistic regression on frozen mean-pooled vectors, per layer ({DATA})")
fig.add_hline(y=majority, line_dash="dot", annotation_text="majority class")

# %% [markdown]
# ## (b) Frozen encoder, trained classification head only
#
# Fine-tuning RoBERTa puts `RobertaClassificationHead` on the `<s>` vector of the last layer:
# dense $d \times d$, tanh, dropout, and a $d \times$ (labels) output layer. Here the encoder is
# frozen and only that head is trained. With a frozen encoder in evaluation mode the `<s>` vectors
# never change, so we compute them once and train the head on them for `HEAD_EPOCHS` epochs: the
# same result as running the frozen encoder every step, without paying for it. (`wb.finetune`
# has no option to freeze the encoder, so this arm is plain torch.)

# %%
start = time.perf_counter()
cls = wb.features(lm, train["text"].tolist() + test["text"].tolist(), layers=[-1], pool="cls",
                  cache=False, progress=not QUICK).array[:, 0]             # (N, d)
C_tr = torch.tensor(cls[:len(train)])
C_te = torch.tensor(cls[len(train):])
head_cfg = lm.config.__class__.from_dict({**lm.config.to_dict(), "num_labels": len(labels)})
torch.manual_seed(SEED)
head = RobertaClassificationHead(head_cfg)          # expects (B, T, d) and reads position 0
optimizer = torch.optim.AdamW(head.parameters(), lr=HEAD_LEARNING_RATE, weight_decay=0.01)
target = torch.tensor(y_train)
gen = torch.Generator().manual_seed(SEED)
threads = torch.get_num_threads()
torch.set_num_threads(1)               # matrices this small train faster on one thread
try:
    for epoch in range(HEAD_EPOCHS):
        head.train()
        for rows in torch.randperm(len(C_tr), generator=gen).split(64):
            loss = torch.nn.functional.cross_entropy(head(C_tr[rows, None]), target[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
finally:
    torch.set_num_threads(threads)
head.eval()
with torch.no_grad():
    pred = head(C_te[:, None]).argmax(-1).numpy()
record("(b) frozen encoder + classification head", pred == y_test, time.perf_counter() - start,
       sum(p.numel() for p in head.parameters()))

# %% [markdown]
# ## (c) Full fine-tuning, and (d) the same shape from random weights
#
# `wb.finetune` trains every weight (encoder and a fresh head) with AdamW, linear warm-up and
# decay, and evaluates on a validation slice carved from the training sentences; we then score
# the run's best checkpoint on the same test sentences as above. Arm (d) gives `wb.finetune` a
# model of the same configuration and tokenizer whose weights were drawn at random.

# %%
config = wb.FineTuneConfig(epochs=EPOCHS, learning_rate=LEARNING_RATE, batch_size=32, seed=SEED,
                           log_every=10)
torch.manual_seed(SEED)
random_lm = wb.LM(model=RobertaForMaskedLM(lm.config).eval(), tokenizer=lm.tokenizer,
                  device=torch.device("cpu"), name=f"{lm.name} (random init)")
runs = {}


def finetune_arm(arm, base):
    """Fine-tune `base` on the training sentences, score its best checkpoint on the test ones."""
    start = time.perf_counter()
    run = wb.finetune(base, train, config=config, name=arm.split(")")[0].strip("("),
                      progress=not QUICK)   # minutes on a CPU: a bar with steps/s and ETA
    seconds = time.perf_counter() - start
    tuned = wb.load(run, device="cpu")
    scores = wb.classify(tuned, test["text"].tolist())
    runs[arm] = (run, tuned)
    record(arm, scores["label"].astype(str).map(labels.index).to_numpy() == y_test, seconds,
           sum(p.numel() for p in tuned.model.parameters()))


finetune_arm("(c) full fine-tuning", lm)

# %%
finetune_arm("(d) random init, fine-tuned", random_lm)

# %% [markdown]
# ## One table, one figure

# %%
table = pd.DataFrame(results)
table.round(3)

# %%
# points labelled by their letter only (the legend names each arm), in the paper theme
table["key"] = table["arm"].str.extract(r"^(\([a-z]\))", expand=False).fillna(table["arm"])
fig = px.scatter(table, x="wall s", y="test accuracy", text="key", color="arm",
                 color_discrete_sequence=wb.figures.CATEGORICAL,
                 error_y=table["95% CI high"] - table["test accuracy"],
                 error_y_minus=table["test accuracy"] - table["95% CI low"],
                 title=f"{lm.name} on {DATA}: accuracy vs wall time (95% Wilson intervals)",
                 labels={"wall s": "wall time (s, this machine)", "arm": ""})
fig.update_traces(textposition="middle right", cliponaxis=False)
fig.add_hline(y=majority, line_dash="dot", annotation_text="majority class",
              annotation_position="bottom right")
fig.update_layout(legend=dict(orientation="h", y=-0.25, yanchor="top"))
finish(fig)

# %% [markdown]
# ## Is "only the output layer is changed" true?
#
# Two readings of the claim, both checked:
#
# 1. **As a recipe** (train only the head, keep the encoder): arm (b). Compare its accuracy with
#    full fine-tuning (c) in the table above; the gap is what adapting the encoder buys.
# 2. **As a description** of what fine-tuning does to the weights: below, the relative change
#    $\lVert W_{\text{tuned}} - W_{\text{pre}} \rVert / \lVert W_{\text{pre}} \rVert$ of every
#    encoder matrix after arm (c). If only the output layer changed, these would be zero.

# %%
tuned_enc = runs["(c) full fine-tuning"][1].encoder.state_dict()
change = []
for name, before in lm.encoder.state_dict().items():
    if name in tuned_enc and before.ndim == 2 and before.norm() > 0:
        after = tuned_enc[name].float()
        part = name.split(".")
        where = f"layer {part[2]}" if part[:2] == ["encoder", "layer"] else part[0]
        change.append({"where": where, "matrix": name,
                       "relative change": ((after - before).norm() / before.norm()).item()})
change = pd.DataFrame(change)
print(f"every encoder matrix changed: {bool((change['relative change'] > 0).all())}; "
      f"median relative change {change['relative change'].median():.2e}, "
      f"largest {change['relative change'].max():.2e} ({change.loc[change['relative change'].idxmax(), 'matrix']})")
px.box(change, x="where", y="relative change", points="all",
       title="(c) full fine-tuning: relative change of each encoder weight matrix")

# %% [markdown]
# What these numbers say: fine-tuning changes **every** weight, but by a small fraction of its
# size (the median above), and the new head is the only part trained from scratch. Whether that
# small change matters is what (b) vs (c) measures, printed below as a paired comparison on the
# same test sentences (McNemar's exact test on the sentences the two arms disagree on). For
# comparison, the BERT paper found the gap small for a large pretrained model on NER
# (feature-based 96.1 F1 from four concatenated layers vs 96.4 fine-tuned, Devlin et al. 2019,
# Table 7); a small encoder like the demo model may need its encoder adapted more.

# %%
b_right, c_right = correct["(b) frozen encoder + classification head"], correct["(c) full fine-tuning"]
only_c, only_b = int(np.sum(c_right & ~b_right)), int(np.sum(b_right & ~c_right))
p_value = binomtest(only_c, only_c + only_b, 0.5).pvalue if only_c + only_b else 1.0
print(f"(c) - (b) = {np.mean(c_right) - np.mean(b_right):+.3f} accuracy; sentences only (c) gets "
      f"right: {only_c}, only (b): {only_b}; McNemar exact p = {p_value:.3g}")

# %% [markdown]
# **Beside the published figure.** roberta-base fine-tuned on SST-2 scores **94.8** on GLUE's
# SST-2 dev set (the fairseq RoBERTa README's GLUE table; the paper's Table 5 reports only
# RoBERTa-large, 96.4). Our numbers come from a 17 M-parameter model trained on ~490 M tokens
# (roberta-base: 125 M parameters, 160 GB of text), a few thousand training sentences, a few
# CPU minutes and one seed, so they are not comparable in size, only in shape: the ordering of
# the arms is the lesson, not the level. With `SST2_DIR` set and `N_TRAIN=20000, EPOCHS=1`, the
# workbench's CPU benchmark measured 81.5 for arm (c) and 75.8 for arm (d) on SST-2's dev set
# (`benchmarks/results/cpu-2026-11-28-session2/`).

# %% [markdown]
# ## What to try next
#
# * Unfreeze only the top *k* layers (set `requires_grad=False` on the others in a copy of the
#   model) and watch (b) turn into (c).
# * Run more seeds: with a few hundred test sentences the intervals above are several points wide.
# * `SST2_DIR="../shared/data/sst2"` (if you have GLUE's SST-2) and a larger `N_TRAIN`.
# * Open the fine-tuned run in the analyses (`wb.load(run)`): notebook 06 compares its attention
#   with the base model's; notebook 08 probes its layers.
#
# ## Papers to cite
#
# * Devlin et al. 2019, *BERT* (NAACL): fine-tuning vs feature-based (§5.3, Table 7).
# * Liu et al. 2019, *RoBERTa* (arXiv:1907.11692); roberta-base's GLUE dev results from the
#   fairseq repository (`examples/roberta/README.md`).
# * Peters, Ruder & Smith 2019, *To Tune or Not to Tune? Adapting Pretrained Representations to
#   Diverse Tasks* (RepL4NLP): a systematic comparison of the two approaches.
# * Tenney et al. 2019, *BERT Rediscovers the Classical NLP Pipeline* (ACL): layer-wise probing.
# * Socher et al. 2013 (SST); Pang & Lee 2005 (the movie-review sentences).
