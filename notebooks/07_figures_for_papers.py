# %% [markdown]
# # 07 · Figures for papers: every figure of a report, from saved runs, in one call
#
# Exploring happens in the other notebooks; this one is for the day you write the paper. One call,
# `wb.make_report`, re-runs the analyses on a model and on the training runs saved in the run
# store, draws each figure in the paper theme (readable 10-pt fonts, thin axes, colour maps that
# survive greyscale printing) and writes it as **vector PDF and SVG** sized for a one-column
# layout. Because the figures are regenerated from code and saved runs, a changed model or a
# reviewer's request is a re-run, not an afternoon of screenshots.
#
# Beside the figures it writes `figures.json` and `SOURCES.md`: for every figure, the call that
# made it, the model's name and path, the run id, the number and SHA-256 of the input texts, the
# workbench version and the date. That is what you cite (see the end of the notebook).
#
# **What you will learn.** How to regenerate every figure of a report from a model and the saved
# runs with one call (`wb.make_report`), check that each figure was made, look at the files you
# will put in the paper, and cite where each figure came from. **Concepts covered:** reproducible,
# provenance-tracked figures (model, run, input hash, version); vector export sized for a column
# or a page; the analyses behind the figures: per-head attention statistics and clusters, head
# importance, layer CKA, masked-LM prediction, the logit lens, cloze probes and minimal pairs
# scored by pseudo-log-likelihood, training curves, attention change under fine-tuning and the
# confusion matrix.

# %% tags=["parameters"]
MODEL = "demo"
QUICK = False
OUT = "paper_figures"     # folder for the PDFs, SVGs, figures.json and SOURCES.md
N_TEXTS = 300             # corpus size for head statistics, clusters, CKA, head importance
RUNS = None               # None: every run in the store; or a list of run ids / folders
WIDTH = "column"          # "column" (3.3 in), "page" (6.9 in) or inches

# %%
from pathlib import Path

from IPython.display import SVG, IFrame, Markdown, display

import workbench as wb

if QUICK:
    N_TEXTS = 24

lm = wb.load(MODEL)
texts = wb.sentiment_demo(n=N_TEXTS)["text"].tolist()
held_out = wb.sentiment_demo(n=200 if not QUICK else 32, split="test")
lm

# %% [markdown]
# ## The saved runs
#
# `wb.runs()` lists the run store: every pretraining and fine-tuning run, with its status and
# summary metrics. After `make demo` it holds the runs of the notebooks before this one (01, 04, 05
# and 06 train). If the store is
# empty (you opened this notebook first), the next cell trains one short fine-tuning run so that
# the report has a run to draw; skip it on your own projects.

# %%
if not len(wb.runs()):
    quick_config = wb.FineTuneConfig(max_steps=30 if not QUICK else 4, batch_size=16,
                                     learning_rate=5e-5 if not QUICK else 1e-3, eval_every=10,
                                     log_every=1)
    wb.finetune(lm, wb.sentiment_demo(n=400 if not QUICK else 64, split="train"),
                config=quick_config, name="figures-example")
wb.runs()[["id", "kind", "name", "status"]]

# %% [markdown]
# ## One call
#
# The report covers the model (attention on an example, head statistics, head clusters, layer
# CKA, head importance, fill-mask, the logit lens, the probe set and its minimal pairs) and each
# run (training curves; for fine-tuning runs also which heads changed and the confusion matrix on
# a held-out table). Figures that need a part the model lacks (e.g. fill-mask on a classifier
# without an MLM head) are listed with a note instead of failing the whole report.

# %%
report = wb.make_report(lm, OUT, runs=RUNS, texts=texts, eval_data=held_out, width=WIDTH)
report[["figure", "seconds", "note"]]

# %% [markdown]
# Every figure below must have been written: an empty file list means an analysis or the export
# failed, and the note says why.

# %%
failed = report[report["files"].map(len) == 0]
assert failed.empty, f"figures not made:\n{failed[['figure', 'note']].to_string()}"
sorted(p.name for p in Path(OUT).iterdir())

# %% [markdown]
# ## What they look like
#
# The SVGs are the exact files you put in the paper (the PDFs are the same drawings). Check that
# labels are readable at column width and that nothing relies on colour alone. (On a machine
# without a browser for static export the report writes interactive HTML instead and says so.)

# %%
for name in ["heads_attn_bos", "head_clusters", "attention_example"]:
    display(Markdown(f"**{name}**: {report.set_index('figure').loc[name, 'caption']}"))
    svg = Path(OUT) / f"{name}.svg"
    # without a browser for static export the report wrote the HTML version instead
    display(SVG(filename=str(svg)) if svg.exists() else IFrame(str(svg.with_suffix(".html")),
                                                                width=400, height=320))

# %% [markdown]
# ## Citing a figure's source
#
# Each entry of `SOURCES.md` says exactly which model, run and inputs a figure came from. Put the
# relevant lines in the figure caption or the appendix, e.g. "Attention to `<s>` per head of
# roberta-base over 300 Rotten Tomatoes snippets (texts SHA-256 `3fa1…`), made with RoBERTa
# Workbench 0.1.0 (`wb.head_stats`)". Cite the papers behind the methods too (listed at the end
# of the notebook), and the data sources' licences (see `data/README.md`).

# %%
display(Markdown("\n".join((Path(OUT) / "SOURCES.md").read_text().splitlines()[:30])))

# %% [markdown]
# ## What to try next
#
# * Point the report at a model of your own (`MODEL = "roberta-base"`, a checkpoint folder) and at
#   chosen runs (`RUNS = [run ids or folders]`); pass your own corpus as `texts=` and your own
#   labelled table as `eval_data=`.
# * `WIDTH = "page"` (6.9 in) or a number of inches; `formats=("pdf", "svg", "png")` in
#   `wb.make_report` for raster copies; `strict=True` to stop at the first figure that fails.
# * A single figure from any notebook goes out the same way: `wb.figures.export(fig, "x.pdf",
#   width="column")`, and its numbers with pandas (`df.to_csv`).
# * The analyses behind the figures, one by one: notebooks 02 (attention), 03 (fill-mask, PLL,
#   probes, logit lens), 04 (head statistics, clusters, importance), 06 (fine-tuning runs),
#   08 (CKA) and 09 (the model diff).
#
# ## Papers to cite
#
# * Liu et al. 2019, *RoBERTa: A Robustly Optimized BERT Pretraining Approach*
#   (arXiv:1907.11692): the model.
# * Clark, Khandelwal, Levy & Manning 2019, *What Does BERT Look At? An Analysis of BERT's
#   Attention* (BlackboxNLP): head statistics and the Jensen–Shannon map of heads.
# * Kovaleva, Romanov, Rogers & Rumshisky 2019, *Revealing the Dark Secrets of BERT*
#   (EMNLP-IJCNLP): head patterns, attention change under fine-tuning.
# * Michel, Levy & Neubig 2019, *Are Sixteen Heads Really Better than One?* (NeurIPS): head
#   importance.
# * Kornblith, Norouzi, Lee & Hinton 2019, *Similarity of Neural Network Representations
#   Revisited* (ICML): CKA.
# * Salazar, Liang, Nguyen & Kirchhoff 2020, *Masked Language Model Scoring* (ACL):
#   pseudo-log-likelihood for the minimal pairs.
# * Petroni, Rocktäschel, Lewis, Bakhtin, Wu, Miller & Riedel 2019, *Language Models as Knowledge
#   Bases?* (EMNLP-IJCNLP): cloze probes.
# * nostalgebraist 2020, *interpreting GPT: the logit lens* (LessWrong blog post): the logit lens.
