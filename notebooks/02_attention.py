# %% [markdown]
# # 02 · Attention: numbers, views and figures
#
# This notebook looks at a model's attention three ways: as a tidy table (`wb.attention`), as
# interactive views that work with no network (head view, model view, query/key view), and as
# paper figures. Everything runs on the embedded default model (`MODEL = "demo"`) or any
# RoBERTa-family checkpoint (`"roberta-base"` with hub access, or a local folder).
#
# **What you will learn.** How to get attention as a table you can group and test (one row per
# text, layer, head, query and key, with the sentence of each token in a pair), how to draw one
# head or an average over heads and layers, what changes when subword pieces are merged into
# words, how to read the head, model and query/key views, and why raw weights are not the whole
# story. **Concepts covered:** scaled dot-product self-attention (queries, keys, q·k/√d, softmax)
# per layer and head; subword-to-word aggregation of attention; attention rollout and attention
# flow (Abnar & Zuidema 2020); norm-based attention ‖α f(x)‖ (Kobayashi et al. 2020).

# %% tags=["parameters"]
MODEL = "demo"
TEXT = "The pizzeria on the corner was closed, unfortunately."
PAIR = ("A man is eating pizza.", "He is hungry.")
LAYER = 0
HEAD = 0
QUICK = False

# %%
import tempfile
from pathlib import Path

import workbench as wb
from workbench.plots.attention import attention_heatmap

lm = wb.load(MODEL)
LAYER = min(LAYER, lm.num_layers - 1)
HEAD = min(HEAD, lm.num_heads - 1)
out_dir = Path(tempfile.mkdtemp(prefix="wb-attention-"))
lm

# %% [markdown]
# ## 1. The numbers
#
# `wb.attention` returns one row per (text, layer, head, query, key). Tokens are readable (no
# `Ġ`), positions index the tokens shown, and each row of a head's matrix sums to 1.

# %%
df = wb.attention(lm, [TEXT], layers=[LAYER], heads=[HEAD])
df.head()

# %%
df.groupby(["layer", "head", "query"])["weight"].sum().describe()

# %% [markdown]
# Sentence pairs (`<s> A </s></s> B </s>`) are marked: `segment` is the query's sentence and
# `key_segment` the key's, so cross-sentence attention is one `groupby` away.

# %%
pair = wb.attention(lm, [PAIR])
pair.groupby(["segment", "key_segment"])["weight"].mean().unstack()

# %% [markdown]
# ## 2. A heatmap for one head, and an aggregate
#
# The plotly heatmap takes the same frame. Dropping `<s>`/`</s>` and renormalising often makes a
# head's pattern visible: many heads park most of their weight on the special tokens.

# %%
fig = attention_heatmap(
    wb.attention(lm, TEXT, layers=[LAYER], heads=[HEAD], drop_special=True))
fig.show()

# %%
mean_fig = attention_heatmap(
    wb.attention(lm, TEXT, aggregate=["heads", "layers"], drop_special=True),
    title="mean over all layers and heads")
mean_fig.show()

# %% [markdown]
# ## 3. Subwords vs words
#
# With `merge_subwords=True` tokens are merged into words: weights are **summed over the keys**
# of a word (a row still sums to 1) and **averaged over the queries** of a word. Compare the
# token labels above with the word labels here.

# %%
x_tok, tokens = wb.attention_tensor(lm, TEXT)
x_word, words = wb.attention_tensor(lm, TEXT, merge_subwords=True)
print(len(tokens), "tokens:", tokens)
print(len(words), "words:", words)

# %%
attention_heatmap(
    wb.attention(lm, TEXT, layers=[LAYER], heads=[HEAD], merge_subwords=True, drop_special=True),
    title="words, specials dropped").show()

# %% [markdown]
# ## 4. Head view, model view, query/key view (no network needed)
#
# The head view draws lines from each token (left) to the tokens it attends to (right), one colour
# per head: hover a token to isolate its lines, click heads' colour boxes to hide them. The model
# view shows every layer × head as a small map: look for diagonal (previous/next token),
# vertical stripes (attention to `<s>` or punctuation) and broad patterns.

# %%
wb.views.head_view(x_tok, tokens, layer=LAYER)

# %%
wb.views.model_view(x_tok, tokens)

# %% [markdown]
# The query/key view opens one head: pick a query token and see, for every key, the key vector,
# the element-wise product q∘k, the score q·k/√d and the softmax weight. The vectors come from
# forward hooks on the stock model's projections.

# %%
qk = wb.attention_qk(lm, TEXT)
wb.views.query_key_view(qk["queries"], qk["keys"], qk["tokens"], layer=LAYER, head=HEAD)

# %% [markdown]
# Every view saves as one standalone HTML file that opens offline (e.g. on a cluster).

# %%
wb.views.head_view(x_tok, tokens).save(out_dir / "head_view.html")

# %% [markdown]
# ## 5. Beyond raw weights: rollout and norm-based attention
#
# Raw weights ignore the residual stream and the size of the vectors being mixed.
# **Rollout** (Abnar & Zuidema 2020) multiplies residual-augmented, head-averaged attention
# through the layers: row *i* of layer *l* says how much each input token reaches token *i* at
# that depth. **Norm-based attention** (Kobayashi et al. 2020) weighs each weight by the norm of
# the transformed value vector, ‖α f(x)‖: a large weight on a token with a tiny value vector
# contributes little. (Attention flow, `mode="flow"`, is exact but solves a max-flow problem per
# pair, so it is limited to short inputs.)

# %%
last = lm.num_layers - 1
attention_heatmap(
    wb.attention(lm, TEXT, mode="rollout", layers=[last]), title=f"rollout to layer {last}").show()

# %%
norm = wb.attention(lm, TEXT, mode="norm", layers=[LAYER], aggregate="heads")
attention_heatmap(norm, title=f"‖Σ_h α f(x)‖, layer {LAYER}").show()

# %% [markdown]
# ## 6. Exporting a figure for a paper
#
# `wb.figures.export` writes vector PDF/SVG (or PNG) sized for one column (3.3 in) or a full page
# (6.9 in) in the paper theme; the colour map stays readable in greyscale. The numbers behind a
# figure export with pandas.

# %%
pdf = wb.figures.export(fig, out_dir / "head.pdf", width="column", aspect=1.0, fallback="html")
df.to_csv(out_dir / "head.csv", index=False)
sorted(p.name for p in out_dir.iterdir())

# %% [markdown]
# ## 7. The explorer
#
# `AttentionExplorer` puts all of this behind controls: type texts (one per line, `A || B` for a
# pair), press Run once, then change layer, head, view, mode and options freely: the forward pass
# is cached. Click tokens in the head view to select them; export the figure or the table.

# %%
wb.widgets.AttentionExplorer(lm, [TEXT, PAIR])

# %% [markdown]
# ## What to try next
#
# * Set `PAIR` to two sentences of your own and compare the `segment` / `key_segment` means layer
#   by layer: `wb.attention(lm, [PAIR], aggregate="heads")`.
# * Attention flow beside rollout on a short text (flow is limited to 40 tokens):
#   `wb.attention(lm, TEXT, mode="flow", layers=[last])`.
# * Keep only some query rows with `select=[...]` (positions or token strings), or combine
#   `merge_subwords=True` with `mode="norm"` to see norm-based attention between words.
# * Notebook 00 recomputes one head by hand; notebook 04 summarises every head over a corpus
#   (`wb.head_stats`, `wb.head_clusters`, `wb.head_importance`); notebook 09 maps the queries and
#   keys of every head at once (`wb.qk_atlas`); notebook 08 sets rollout beside gradient
#   attributions (`wb.attribute`).
#
# ## Papers to cite
#
# * Vaswani et al. 2017, *Attention Is All You Need* (NeurIPS): scaled dot-product and multi-head
#   attention, the quantities of the query/key view.
# * Vig 2019, *A Multiscale Visualization of Attention in the Transformer Model* (ACL, system
#   demonstrations): bertviz's head view, model view and neuron (query/key) view, which these
#   offline views follow.
# * Abnar & Zuidema 2020, *Quantifying Attention Flow in Transformers* (ACL): attention rollout
#   and attention flow.
# * Kobayashi, Kuribayashi, Yokoi & Inui 2020, *Attention is Not Only a Weight: Analyzing
#   Transformers with Vector Norms* (EMNLP): norm-based attention.
# * Liu et al. 2019, *RoBERTa: A Robustly Optimized BERT Pretraining Approach*
#   (arXiv:1907.11692): the model.
