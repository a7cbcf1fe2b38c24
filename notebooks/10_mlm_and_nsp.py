# %% [markdown]
# # 10 · BERT's two objectives, and what RoBERTa kept: masked LM (15%, 80/10/10) and NSP
#
# **What you will learn.** What the masked-language-model objective asks of the model, why 15%
# of the tokens are chosen and why those are replaced 80/10/10 (`<mask>` / random token /
# unchanged), measured on real batches from the workbench's own masker; what next-sentence
# prediction (NSP) was, why RoBERTa dropped it, and what the input formats of the RoBERTa paper's
# Table 2 look like, on a batch packed from our corpus. **Concepts covered:** BERT's pretraining
# objectives (Devlin et al. 2019) and RoBERTa's changes to them (Liu et al. 2019, §4.1–4.2).
# Static vs dynamic masking, the third change, has its own notebook (05).

# %% tags=["parameters"]
MODEL = "demo"
QUICK = False
N_DOCUMENTS = 400      # documents of the offline corpus packed for the batches below
SEQ_LEN = 128          # tokens per packed sequence
BATCH_SIZE = 32
N_DRAWS = 200          # masked batches drawn to measure the masker's rates
N_EVAL_BATCHES = 4     # batches the model predicts, to score <mask> / random / unchanged positions
N_PAIRS = 300          # sentence pairs per class for the NSP probe (truncated to 96 tokens)

# %%
import numpy as np
import pandas as pd
import plotly.express as px
import torch
from scipy.stats import binomtest
from sklearn.linear_model import LogisticRegression

import workbench as wb
from workbench.training.corpus import pack, split_sentences
from workbench.training.masking import IGNORE_INDEX, Masker, TokenTables

if QUICK:
    N_DOCUMENTS, SEQ_LEN, BATCH_SIZE, N_DRAWS, N_EVAL_BATCHES, N_PAIRS = 60, 48, 8, 20, 2, 40
lm = wb.load(MODEL, device="cpu", dtype="fp32")
tok = lm.tokenizer
lm

# %% [markdown]
# ## 1. The masked-LM objective
#
# A fraction of the input positions $\mathcal{M}$ is chosen, the input is corrupted at those
# positions into $\tilde X$, and the model is trained to recover the original tokens there:
#
# $$\mathcal{L}_{\text{MLM}} = -\sum_{m \in \mathcal{M}} \log P(x_m \mid \tilde X), \qquad
#   P(x_m = w_k \mid \tilde X) = \mathrm{softmax}(W h_m + b)_k ,$$
#
# with $h_m$ the encoder's output at position $m$ and $W$ the (tied) embedding matrix
# (notebook 00 rebuilds this head by hand). Only the chosen positions carry a loss: the others get
# the label `-100`, which PyTorch's cross-entropy ignores.
#
# **Why 15%?** A trade-off, chosen by Devlin et al. without an ablation: every sequence yields
# targets only at the chosen positions, so fewer masks means less training signal per sequence;
# more masks leave less context to predict them from. The number is not sacred: Wettig et al.
# (2023) found that masking 40% gave better downstream results than 15% for BERT-large-sized
# models, with the best rate depending on model size and the masking scheme.
#
# **Why 80/10/10?** `<mask>` never occurs when the model is fine-tuned or used as a feature
# extractor. If every chosen token became `<mask>`, the model would only need useful
# representations at `<mask>` positions, and the inputs it sees downstream would look unlike
# anything from pretraining (the *pretrain–fine-tune mismatch*). So of the chosen tokens BERT
# replaces 80% with `<mask>`, 10% with a random token and leaves 10% unchanged: the model cannot
# tell which visible tokens are targets, so it must build a contextual representation of **every**
# token, and the unchanged 10% bias it towards the word actually observed. BERT's own ablation
# (Devlin et al. 2019, Appendix C.2, Table 8) found the differences small on fine-tuning but
# larger for feature-based use, where the representations are not adapted afterwards:

# %%
bert_table8 = pd.DataFrame(
    [(80, 10, 10, 84.2, 95.4, 94.9), (100, 0, 0, 84.3, 94.9, 94.0), (80, 0, 20, 84.1, 95.2, 94.6),
     (80, 20, 0, 84.4, 95.2, 94.7), (0, 20, 80, 83.7, 94.8, 94.6), (0, 0, 100, 83.6, 94.9, 94.6)],
    columns=["% <mask>", "% unchanged", "% random", "MNLI-m (fine-tune)", "NER (fine-tune)",
             "NER (feature-based)"])
bert_table8.style.set_caption("Devlin et al. 2019, Table 8: BERT-base, dev-set results")

# %% [markdown]
# ## 2. The workbench's masker, measured
#
# `wb.pretrain` masks with `workbench.training.masking.Masker`: every random number is a hash of
# (seed, draw, sequence, position), so a mask is reproducible and a resumed run draws the same
# masks. We pack a slice of the offline corpus with the model's tokenizer and draw `N_DRAWS`
# dynamic masks, then count, over all non-special tokens: how many were chosen, and how the chosen
# ones were replaced.

# %%
if QUICK:
    from pydoc_data.topics import topics  # always installed: a few pages of English prose

    corpus = wb.Corpus.from_texts(list(topics.values())[:N_DOCUMENTS], name="pydoc")
else:
    full = wb.Corpus.demo()
    corpus = wb.Corpus(full.documents[::max(1, len(full) // N_DOCUMENTS)][:N_DOCUMENTS],
                       name=f"demo-{N_DOCUMENTS}")
packed = pack(corpus, tok, seq_len=SEQ_LEN, mode="full")
train = torch.from_numpy(packed.train.astype(np.int64))          # (N, SEQ_LEN)
masker = Masker(TokenTables.from_tokenizer(tok), mode="dynamic", seed=0)
print(packed)

# %%
counts = dict(eligible=0, selected=0, mask=0, random=0, unchanged=0)
n_rows = train.shape[0]
for draw in range(N_DRAWS):
    rows = torch.arange(draw * BATCH_SIZE, (draw + 1) * BATCH_SIZE) % n_rows    # (B,)
    ids = train[rows]                                                           # (B, T)
    masked, labels = masker(ids, rows, epoch=0, draw=draw)
    chosen = labels != IGNORE_INDEX                                             # (B, T)
    counts["eligible"] += int((~masker.tables.special[ids]).sum())
    counts["selected"] += int(chosen.sum())
    counts["mask"] += int((chosen & (masked == tok.mask_token_id)).sum())
    counts["unchanged"] += int((chosen & (masked == ids)).sum())
    counts["random"] += int((chosen & (masked != ids) & (masked != tok.mask_token_id)).sum())
assert counts["mask"] + counts["random"] + counts["unchanged"] == counts["selected"]


def rate(what, k, n, nominal):
    test = binomtest(k, n, nominal)
    ci = test.proportion_ci(confidence_level=0.95, method="wilson")
    return {"quantity": what, "count": k, "out of": n, "measured": k / n, "95% CI low": ci.low,
            "95% CI high": ci.high, "nominal": nominal, "p-value vs nominal": test.pvalue}


V = len(masker.tables.replacements)
rates = pd.DataFrame([
    rate("chosen / eligible tokens", counts["selected"], counts["eligible"], 0.15),
    rate("<mask> / chosen", counts["mask"], counts["selected"], 0.80),
    rate("random token / chosen", counts["random"], counts["selected"], 0.10 * (1 - 1 / V)),
    rate("unchanged / chosen", counts["unchanged"], counts["selected"], 0.10 + 0.10 / V),
])
rates.round(5)

# %% [markdown]
# A random replacement can draw the original token itself (probability $1/V$ for $V$ candidate
# tokens), so "unchanged" is nominally $0.1 + 0.1/V$, a hair above 10%. Each measured rate should
# sit inside its 95% interval around the nominal value (a p-value well above 0.05); these counts
# are exact integers from the masker's output, not estimates from a formula.

# %%
assert all(rates["p-value vs nominal"] > 1e-4), rates
fig = px.bar(rates, x="quantity", y="measured", error_y=rates["95% CI high"] - rates["measured"],
             error_y_minus=rates["measured"] - rates["95% CI low"], text_auto=".4f",
             title=f"masking rates over {N_DRAWS} batches ({counts['eligible']:,} eligible tokens)")
fig.add_scatter(x=rates["quantity"], y=rates["nominal"], mode="markers", name="nominal",
                marker=dict(symbol="line-ew-open", size=30, color="black"))

# %% [markdown]
# One masked sequence, decoded (chosen positions in brackets: `[<mask>]`, `[random→original]`,
# `[=unchanged]`). Dynamic masking draws a **new** mask each time the sequence is fed; notebook 05
# compares it with BERT's static masks.

# %%
row = torch.tensor([0])
for draw in (0, 1):
    masked, labels = masker(train[row], row, epoch=0, draw=draw)
    shown = []
    for orig, now, lab in zip(train[0].tolist(), masked[0].tolist(), labels[0].tolist()):
        if orig == tok.pad_token_id:
            break
        word, was = tok.decode([now]), tok.decode([orig]).strip()
        if lab == IGNORE_INDEX:
            shown.append(word)
        elif now == tok.mask_token_id:
            shown.append(" [<mask>]")
        elif now == orig:
            shown.append(f" [={was}]")
        else:
            shown.append(f" [{word.strip()}→{was}]")
    print(f"draw {draw}:", "".join(shown)[:600], "\n")

# %% [markdown]
# ## 3. What the model does with each kind of position
#
# The model we loaded was pretrained with this masker. Scoring its top-1 prediction separately at
# `<mask>`, random and unchanged positions shows what 80/10/10 teaches: at an unchanged position
# the answer is in the input, so accuracy is high (but below 100%: the model has learned that a
# visible token may be a lie); at a random position the input token is wrong and must be
# overruled from context. (On the tiny random test model these numbers are noise.)

# %%
kinds = {"<mask>": [0, 0], "random": [0, 0], "unchanged": [0, 0]}   # kind -> [correct, total]
heldout = torch.from_numpy((packed.heldout if len(packed.heldout) else packed.train)
                           .astype(np.int64))
with torch.no_grad():
    for b in range(N_EVAL_BATCHES):
        rows = torch.arange(b * BATCH_SIZE, (b + 1) * BATCH_SIZE) % heldout.shape[0]
        ids = heldout[rows]
        masked, labels = masker.evaluation(ids, rows, eval_seed=1234 + b)
        hidden = lm.encoder(input_ids=masked,
                            attention_mask=(ids != tok.pad_token_id).long()).last_hidden_state
        chosen = labels != IGNORE_INDEX                                        # (B, T)
        right = torch.zeros_like(chosen)
        right[chosen] = lm.model.lm_head(hidden[chosen]).argmax(-1) == ids[chosen]  # head at targets only
        for kind, where in (("<mask>", masked == tok.mask_token_id),
                            ("unchanged", masked == ids),
                            ("random", (masked != ids) & (masked != tok.mask_token_id))):
            kinds[kind][0] += int((right & chosen & where).sum())
            kinds[kind][1] += int((chosen & where).sum())
by_kind = pd.DataFrame([{"position": k, "top-1 correct": c, "positions": n,
                         "accuracy": c / n if n else float("nan")} for k, (c, n) in kinds.items()])
by_kind.round(3)

# %% [markdown]
# ## 4. Next-sentence prediction, and why RoBERTa dropped it
#
# BERT's second objective: the input is two segments, `[CLS] A [SEP] B [SEP]`, each marked with
# its own token-type (segment) embedding; half the time B really follows A in the same document,
# half the time B comes from another document. A classifier on the `[CLS]` vector predicts
# `IsNext` / `NotNext`. Devlin et al. reported that removing NSP hurt QNLI, MNLI and SQuAD 1.1.
#
# RoBERTa (§4.2) separated two things that experiment had mixed up: the NSP *loss*, and the *input
# format* (pairs of short segments vs long contiguous text). It pretrained BERT-base-sized models
# on the same data with four formats (Liu et al. 2019, **Table 2**, development sets, medians of
# five seeds; SQuAD is F1, the others accuracy):
#
# * **SEGMENT-PAIR+NSP**: BERT's original: a pair of segments, each possibly several sentences,
#   together at most 512 tokens;
# * **SENTENCE-PAIR+NSP**: a pair of single natural sentences (much shorter inputs; the batch was
#   enlarged to keep the number of tokens similar);
# * **FULL-SENTENCES**: no NSP; contiguous full sentences packed up to 512 tokens, crossing
#   document boundaries with an extra separator token;
# * **DOC-SENTENCES**: no NSP; the same, but never crossing a document boundary (shorter inputs
#   near the end of documents, so the batch size varies).

# %%
table2 = pd.DataFrame([
    ("SEGMENT-PAIR", "yes", 90.4, 78.7, 84.0, 92.9, 64.2),
    ("SENTENCE-PAIR", "yes", 88.7, 76.2, 82.9, 92.1, 63.0),
    ("FULL-SENTENCES", "no", 90.4, 79.1, 84.7, 92.5, 64.8),
    ("DOC-SENTENCES", "no", 90.6, 79.7, 84.7, 92.7, 65.6),
    ("BERT-base (Devlin et al.)", "yes", 88.5, 76.3, 84.3, 92.8, 64.3),
], columns=["input format", "NSP loss", "SQuAD 1.1 F1", "SQuAD 2.0 F1", "MNLI-m", "SST-2", "RACE"])
table2.set_index("input format")

# %% [markdown]
# Reading it: single-sentence pairs hurt everywhere (the model sees short inputs and learns less
# long-range context); dropping NSP while packing long contiguous text matches or beats BERT's
# format on every task but SST-2 (−0.4 and −0.2, within seed noise). DOC-SENTENCES was slightly
# best, but RoBERTa kept FULL-SENTENCES for the rest of the paper because its batch size is fixed.
# The workbench's pretraining packs FULL-SENTENCES by default (`pack(..., mode="full")`), and
# `mode="doc"` gives DOC-SENTENCES.

# %% [markdown]
# ### Our corpus, packed both ways
#
# A FULL-SENTENCES row that crosses a document boundary: `<s>`, the end of one document, an
# extra `</s>` where the next document begins, and `</s>` at the end. No token types, no NSP label.

# %%
eos = tok.eos_token_id
real_len = (packed.train != tok.pad_token_id).sum(1)                      # (N,)
crossing = [i for i, r in enumerate(packed.train)           # an </s> followed by more text
            if any(r[p] == eos and r[p + 1] != eos for p in range(1, real_len[i] - 1))]
i = crossing[0] if crossing else 0
text = tok.decode([t for t in packed.train[i].tolist() if t != tok.pad_token_id])
for special in (tok.bos_token, tok.eos_token):
    text = text.replace(special, f" ⟦{special}⟧ ")
print(f"row {i} of {len(packed.train)} ({len(crossing)} rows cross a document boundary):\n")
print(text[:1500])

# %%
doc_packed = pack(corpus, tok, seq_len=SEQ_LEN, mode="doc")
formats = pd.DataFrame([
    {"format": name, "sequences": len(p.train), "real tokens": p.tokens("train"),
     "tokens per sequence": p.tokens("train") / len(p.train),
     "padding share": 1 - p.tokens("train") / p.train.size}
    for name, p in (("FULL-SENTENCES", packed), ("DOC-SENTENCES", doc_packed))])
formats.round(3)

# %% [markdown]
# DOC-SENTENCES needs more, shorter sequences for the same text (every document's last sequence
# is padded): that is the variable batch size RoBERTa avoided by choosing FULL-SENTENCES.

# %% [markdown]
# ## 5. A small experiment we *can* run: how much NSP does a model know without NSP?
#
# **What we cannot run here.** Table 2 pretrains five BERT-base models for 1 M steps of 256
# sequences of up to 512 tokens. A training step costs about $6N$ floating-point operations per
# token ($N$ = the non-embedding parameters, forward and backward), and a 2-core CPU does roughly
# $10^{11}$ fp32 operations per second at best. The cell below turns that into time, for
# roberta-base's shape and for the demo model's. Even a demo-sized NSP vs no-NSP pair of runs, cut
# to the minutes this notebook has, would still sit on the unigram plateau (the workbench's own
# pretraining stayed there for its first ~70 M tokens, on a GPU: notebook 05), so it would compare
# noise.

# %%
tokens_per_run = 1_000_000 * 256 * 512
for name, d_model, layers_, d_ff in (("roberta-base", 768, 12, 3072),
                                     (lm.name, lm.config.hidden_size, lm.config.num_hidden_layers,
                                      lm.config.intermediate_size)):
    n_params = layers_ * (4 * d_model * d_model + 2 * d_model * d_ff)   # weights of the layers
    seconds = 6 * n_params * tokens_per_run / 1e11
    print(f"{name}: {n_params / 1e6:.1f} M layer weights, one Table-2 run of "
          f"{tokens_per_run:.2e} tokens ≈ {seconds / 86_400 / 365:.1f} years on this CPU")

# %% [markdown]
# **What we run instead.** Our model was pretrained *without* NSP (FULL-SENTENCES). We build
# sentence pairs from the corpus slice above (text of the kind the model was pretrained on), encode them RoBERTa's way (`<s> A </s></s> B </s>`) and fit a
# logistic regression on the frozen `<s>` vector of the last layer for two tasks:
#
# * **NSP**: B follows A, vs B is a sentence from *another* document (BERT's negatives);
# * **order**: B follows A, vs the same two sentences swapped (ALBERT's sentence-order prediction,
#   Lan et al. 2020), which topic cannot solve.
#
# Train and test pairs come from different documents.

# %%
docs = [[s for para in split_sentences(doc) for s in para] for doc in corpus.documents]
docs = [d for d in docs if len(d) >= 3]
rng = np.random.default_rng(0)
pairs = []
for _ in range(N_PAIRS):
    d = int(rng.integers(len(docs)))
    j = int(rng.integers(len(docs[d]) - 1))
    a, b = docs[d][j], docs[d][j + 1]
    other = int(rng.choice([k for k in range(len(docs)) if k != d]))
    pairs += [(d, a, b, "next"), (d, a, str(rng.choice(docs[other])), "other document"),
              (d, b, a, "swapped")]
pairs = pd.DataFrame(pairs, columns=["doc", "a", "b", "kind"])


def pair_vectors(frame, batch_size=32):
    """Last-layer vectors of each (a, b) pair: the <s> vector and the mean over tokens, (N, d) each."""
    first, mean = [], []
    with torch.no_grad():
        for s in range(0, len(frame), batch_size):
            part = frame.iloc[s:s + batch_size]
            enc = tok(list(part["a"]), list(part["b"]), padding=True, truncation=True,
                      max_length=min(SEQ_LEN, 96), return_tensors="pt")
            hidden = lm.encoder(**enc).last_hidden_state                     # (B, T, d)
            keep = enc["attention_mask"].unsqueeze(-1).float()               # (B, T, 1)
            first.append(hidden[:, 0])
            mean.append((hidden * keep).sum(1) / keep.sum(1))
    return {"<s> vector": torch.cat(first).numpy(), "mean of tokens": torch.cat(mean).numpy()}


vectors = pair_vectors(pairs)
test_docs = set(rng.permutation(sorted(pairs["doc"].unique()))[: max(1, pairs["doc"].nunique() // 4)])
is_test = pairs["doc"].isin(test_docs).to_numpy()
y = (pairs["kind"] == "next").to_numpy()
results = []
for task, negative in (("NSP: next vs other document", "other document"),
                       ("order: next vs swapped", "swapped")):
    keep = pairs["kind"].isin(["next", negative]).to_numpy()
    for pool, X in vectors.items():
        clf = LogisticRegression(max_iter=2000).fit(X[keep & ~is_test], y[keep & ~is_test])
        n = int((keep & is_test).sum())
        k = int((clf.predict(X[keep & is_test]) == y[keep & is_test]).sum())
        ci = binomtest(k, n).proportion_ci(method="wilson")
        results.append({"task": task, "features": pool, "test pairs": n, "accuracy": k / n,
                        "95% CI low": ci.low, "95% CI high": ci.high, "chance": 0.5})
nsp_probe = pd.DataFrame(results)
for _, r in nsp_probe.iterrows():
    low, high = r["95% CI low"], r["95% CI high"]
    verdict = "above chance" if low > 0.5 else "not distinguishable from chance"
    print(f"{r['task']:<30} {r['features']:<15} {r['accuracy']:.3f} [{low:.3f}, {high:.3f}]: {verdict}")
nsp_probe.round(3)

# %% [markdown]
# **Reading it.** This probe asks what a model pretrained *without* NSP already encodes about
# sentence pairs, read out linearly from frozen vectors; it is not the paper's experiment (that
# would pretrain with and without the NSP loss). Two things to look for. First, whether the NSP
# row is above chance: BERT's NSP negatives come from another document, which usually differs in
# topic and vocabulary, so NSP is largely *topic* prediction (the criticism that led ALBERT to
# sentence-order prediction); the MLM objective alone already teaches topic. Second, whether the
# order row is: swapping two adjacent sentences keeps the topic, so only discourse knowledge helps.
# The `<s>` vector of a model never trained with a sentence-level objective is not a summary of
# the input, so the mean of the tokens is usually the better read-out. A few hundred pairs and one
# split give wide intervals (printed above); on the tiny random test model every row is chance.

# %% [markdown]
# ## What to try next
#
# * Change the masker's `probability` (e.g. 0.4, as Wettig et al. suggest) or `rates`, and
#   pretrain with `wb.PretrainConfig(mask_probability=..., ...)` in notebook 05's setting.
# * `whole_word=True` masks every piece of a chosen word together (whole-word masking).
# * Probe other layers (`lm.encoder(..., output_hidden_states=True)`) for the NSP/order tasks.
# * Notebook 11 puts the pretrained encoder to work downstream: frozen features vs fine-tuning.
#
# ## Papers to cite
#
# * Devlin et al. 2019, *BERT: Pre-training of Deep Bidirectional Transformers for Language
#   Understanding* (NAACL): MLM, 15%, 80/10/10 (Appendix C.2, Table 8), NSP.
# * Liu et al. 2019, *RoBERTa: A Robustly Optimized BERT Pretraining Approach*
#   (arXiv:1907.11692): §4.1 dynamic masking (Table 1), §4.2 input formats and NSP (Table 2).
# * Lan et al. 2020, *ALBERT* (ICLR): sentence-order prediction instead of NSP.
# * Wettig et al. 2023, *Should You Mask 15% in Masked Language Modeling?* (EACL).
