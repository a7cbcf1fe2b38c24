# %% [markdown]
# # 03 · Masked-token probing: fill-mask done right, candidates, PLL, minimal pairs, logit lens
#
# "What does the model put in the blank?" looks like one line of code, and with RoBERTa it hides
# three traps:
#
# 1. **The leading space is part of the token.** RoBERTa's byte-level BPE writes ` Paris` (after a
#    space) as `ĠParis` and `Paris` (at the start of a text, or glued to a word) as another token.
# 2. **Words of several tokens.** A word missing from the vocabulary is several pieces; a tool
#    that scores "the target" by its first piece answers a different question without saying so.
# 3. **Several masks are predicted independently.** Two `<mask>`s each get their own top-k; a
#    pair that fits *together* needs joint scoring.
#
# **What you will learn.** Each trap and the workbench's answer; then how to score whole
# sentences with pseudo-log-likelihood (PLL), test grammatical knowledge with minimal pairs, run a
# small LAMA-style probe set, look inside the model with a logit lens, and compare two models on
# all of it. Every function takes one model or a dict of models and returns one DataFrame with a
# `model` column. **Concepts covered:** masked-LM prediction (fill-mask) and RoBERTa's byte-level
# BPE; joint scoring of multi-token fillers (the chain rule); pseudo-log-likelihood (Salazar et
# al. 2020) and its within-word variant (Kauf & Ivanova 2023); minimal pairs (BLiMP, Warstadt et
# al. 2020); cloze knowledge probes (LAMA, Petroni et al. 2019); the logit lens (nostalgebraist
# 2020).

# %% tags=["parameters"]
MODEL = "demo"
QUICK = False           # small sizes, used by the tests
COMPARE = None          # a second model to compare with (path or hub id); None: MODEL in bf16
PROBE_ROWS = 100        # rows of the shipped probe set to use
BLIMP_DIR = None        # a folder of BLiMP .jsonl files (e.g. unzipped BLiMP.zip), optional
BLIMP_PAIRS = 100       # pairs per BLiMP paradigm when BLIMP_DIR is set

# %%
from pathlib import Path

import pandas as pd

import workbench as wb
from workbench.plots.probing import (candidate_bars, logit_lens_heatmap, margin_histogram,
                                     probe_bars, topk_bars)

if QUICK:
    PROBE_ROWS, BLIMP_PAIRS = 12, 5

lm = wb.load(MODEL)
lm

# %% [markdown]
# ## 1. Fill-mask, and the leading space
#
# `wb.fill_mask` gives the top-k fillers of every mask as a tidy frame. Write the mask as `<mask>`
# or `[MASK]`, whatever the model: both are accepted. The `token` column keeps the leading space
# (`" Paris"`), and `word_start` says whether the piece begins a word. A piece *without* a leading
# space after "is" would glue onto the previous word ("isParis"): that is what the model means
# when it ranks such a piece high.

# %%
TEXT = "The capital of France is <mask>."
fm = wb.fill_mask(lm, TEXT, top_k=10)
fm[["rank", "token", "word_start", "prob"]]

# %%
topk_bars(fm)

# %% [markdown]
# How does the tokenizer see a word with and without the space? In a small vocabulary most
# words are several pieces; roberta-base has most common words as one `Ġ` token.

# %%
pd.DataFrame({w: [lm.tokenizer.tokenize(w)] for w in [" Paris", "Paris", " pizza", "pizza"]},
             index=["pieces"]).T

# %% [markdown]
# ## 2. Candidates: words of any length, scored whole
#
# `transformers`' fill-mask pipeline takes `targets=[" pizza"]` and, when that is several tokens,
# silently scores only its first piece. `wb.score_candidates` puts each candidate *into the text*
# (so it gets the space the text gives it) and scores all its tokens. Three methods:
#
# - `"chain"`: log P(candidate tokens | context), left to right, the later pieces still masked;
#   a proper joint probability of the filler (given its number of tokens);
# - `"pll"`: the pseudo-log-likelihood of the whole filled sentence (Salazar et al. 2020);
# - `"pll-word-l2r"`: PLL where a word's later pieces stay masked while its earlier pieces are
#   scored (Kauf & Ivanova 2023), which removes PLL's bias towards multi-token words.
#
# Look at `n_tokens` and `pieces`: nothing is shortened to a first piece.

# %%
CANDIDATES = ["pizza", "sandwich", "salad", "soup"]
cands = pd.concat([wb.score_candidates(lm, "For lunch I ate a <mask>.", CANDIDATES, method=m)
                   for m in ("chain", "pll", "pll-word-l2r")])
cands[["method", "candidate", "n_tokens", "pieces", "logprob", "span_logprob", "rank"]]

# %%
candidate_bars(cands[cands.method == "chain"])

# %% [markdown]
# ## 3. Several masks: independent predictions vs joint scoring
#
# With two masks, fill-mask predicts each from the text with *both* masks in place: the two top-1
# answers need not fit together. To ask which *pair* fits, score pairs jointly: one tuple per
# candidate, one string per mask.

# %%
TWO = "She flew from <mask> to <mask> last week."
wb.fill_mask(lm, TWO, top_k=3)[["mask_index", "rank", "token", "prob"]]

# %%
pairs = [("Paris", "London"), ("London", "Paris"), ("New York", "Boston"), ("the", "the")]
wb.score_candidates(lm, TWO, pairs, method="chain")[["candidate", "n_tokens", "logprob", "rank"]]

# %% [markdown]
# ## 4. Sentence scores: pseudo-log-likelihood
#
# `wb.score` masks every token in turn and sums the log-probability of the true token. The
# workbench packs all masked copies of all sentences into batches by a token budget and applies
# the 50k-word output layer only at the masked position of each copy (a large saving: see
# `benchmarks/bench_pll.py`). The per-token values show *where* a sentence is surprising.

# %%
SENTENCES = ["The keys to the cabinet are on the table.",
             "The keys to the cabinet is on the table.",
             "Colorless green ideas sleep furiously."]
pll = wb.score(lm, SENTENCES)
pll[["text", "logprob", "n_tokens"]]

# %%
row = pll.iloc[1]
pd.DataFrame({"token": row.tokens, "logprob": row.token_logprobs}).T

# %% [markdown]
# ## 5. Minimal pairs (BLiMP-style)
#
# A minimal pair differs in one place; the model "knows" the contrast if it gives the good
# sentence the higher PLL. The probe set shipped with the workbench defines 60 pairs from its
# plural and agreement rows (`load_probe_set(as_pairs=True)`). Set `BLIMP_DIR` to a folder of
# BLiMP `.jsonl` files to run real paradigms (the full evaluation with minicons beside it is
# `benchmarks/eval_blimp.py`).

# %%
mp = wb.load_probe_set(as_pairs=True)
if QUICK:
    mp = mp.groupby("relation").head(4)
if BLIMP_DIR:
    files = sorted(Path(BLIMP_DIR).glob("*.jsonl"))[:5]
    mp = pd.concat([pd.read_json(f, lines=True).head(BLIMP_PAIRS) for f in files])
    mp = mp.rename(columns={"sentence_good": "good", "sentence_bad": "bad", "UID": "relation"})
res = wb.compare_pairs(lm, mp[["good", "bad", "relation"]])
res.groupby("group").correct.mean().rename("accuracy").to_frame()

# %%
margin_histogram(res)

# %% [markdown]
# ## 6. A cloze probe set (LAMA-style)
#
# `wb.probe` takes rows with a template and accepted answers and reports P@1, P@k and MRR per
# relation. In `mode="vocab"` each answer is ranked against the whole vocabulary, as in LAMA; an
# answer that is not a single token at the mask cannot be ranked that way and is counted in
# `n_skipped` rather than reduced to a piece. `mode="closed"` ranks the answers among the
# relation's own answers and foils, scored jointly, so every row counts.

# %%
probes = wb.load_probe_set().groupby("relation").head(PROBE_ROWS)
vocab = wb.probe(lm, probes, k=10)
closed = wb.probe(lm, probes, k=3, mode="closed")
pd.concat([vocab, closed])

# %%
probe_bars(closed, metric="mrr")

# %% [markdown]
# ## 7. Logit lens: when does the answer appear?
#
# The hidden state at the mask after every layer goes through the model's own output head. Layer
# 0 is the embedding; the last layer is exactly fill-mask. The heatmap shows each layer's top
# guesses; the `track` rows follow chosen words (by default the final answer) through the layers.

# %%
lens = wb.logit_lens(lm, TEXT, top_k=5)
logit_lens_heatmap(lens)

# %%
lens[lens.kind == "track"][["layer", "token", "rank", "prob"]]

# %% [markdown]
# ## 8. Comparing models
#
# Every function accepts a dict of models. Here the second model is `COMPARE` if you set one (a
# fine-tuned checkpoint, `roberta-base`, one of your pretraining runs), otherwise the same model
# in bfloat16: does lower precision change what it predicts or which sentence it prefers?

# %%
other = wb.load(COMPARE) if COMPARE else wb.load(MODEL, dtype="bfloat16")
models = {lm.name: lm, (other.name if COMPARE else f"{lm.name} (bf16)"): other}
topk_bars(wb.fill_mask(models, TEXT, top_k=5))

# %%
both = wb.compare_pairs(models, mp[["good", "bad", "relation"]])
both.groupby("model", sort=False).correct.mean().rename("accuracy").to_frame()

# %% [markdown]
# ## 9. Interactive: MaskProbe
#
# Type a sentence, press **insert &lt;mask&gt;** (or pick a word and **mask this word**), change
# top-k, type candidates (`pizza, pasta`; for two masks `New|York, Los|Angeles`), and compare the
# models side by side. **export** writes the figures as PDF/SVG/PNG/HTML.

# %%
wb.widgets.MaskProbe(models, TEXT, candidates="Paris, London, Rome")

# %% [markdown]
# ## What to try next
#
# * Score the sentences of section 4 with `wb.score(lm, SENTENCES, method="pll-word-l2r")` beside
#   `method="pll"`, and see which sentences with words of several pieces move.
# * Set `BLIMP_DIR` to a folder of BLiMP `.jsonl` files for real paradigms; the full evaluation is
#   `benchmarks/eval_blimp.py`.
# * Follow chosen words through the layers: `wb.logit_lens(lm, TEXT, track=["Paris", "London"])`
#   (each must be one token at the mask); see which probe rows fail with
#   `wb.probe(lm, probes, per_item=True)`; bring your own probe set with `wb.load_probe_set(path)`.
# * Set `COMPARE` to a checkpoint of yours (a pretraining run from notebook 05, or
#   `"roberta-base"`), or remove heads with `wb.ablate` (notebook 04) and re-run `wb.fill_mask`.
# * Notebook 10 shows how the masked-LM head is trained (15% of tokens, 80/10/10); notebook 08
#   explains one fill-mask answer with integrated gradients (`wb.attribute`).
#
# ## Papers to cite
#
# * Liu et al. 2019, *RoBERTa: A Robustly Optimized BERT Pretraining Approach*
#   (arXiv:1907.11692): the model and its byte-level BPE (§4.4).
# * Salazar, Liang, Nguyen & Kirchhoff 2020, *Masked Language Model Scoring* (ACL):
#   pseudo-log-likelihood.
# * Kauf & Ivanova 2023, *A Better Way to Do Masked Language Model Scoring* (ACL): PLL-word-l2r.
# * Warstadt, Parrish, Liu, Mohananey, Peng, Wang & Bowman 2020, *BLiMP: The Benchmark of
#   Linguistic Minimal Pairs for English* (TACL): minimal-pair paradigms.
# * Petroni, Rocktäschel, Lewis, Bakhtin, Wu, Miller & Riedel 2019, *Language Models as Knowledge
#   Bases?* (EMNLP-IJCNLP): LAMA-style cloze probes.
# * nostalgebraist 2020, *interpreting GPT: the logit lens* (LessWrong blog post): reading each
#   layer's hidden state through the output head.
