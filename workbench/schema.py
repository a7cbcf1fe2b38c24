"""The closed vocabulary of DataFrame column names shared by every analysis.

Every tidy table the workbench returns uses these names, so tables from different analyses join
and plot the same way. Add a name here before using it in a frame.
"""

from __future__ import annotations

# identity of an input and of a model
MODEL = "model"            # display name of the LM a row came from (when comparing models)
TEXT_ID = "text_id"        # 0-based index of the input text in the call
TEXT = "text"
SEGMENT = "segment"        # 0 for sentence A, 1 for sentence B of a pair
KEY_SEGMENT = "key_segment"  # segment of the key token (attention between sentences of a pair)

# positions and tokens
LAYER = "layer"            # 0-based transformer layer
HEAD = "head"              # 0-based attention head
QUERY = "query"            # 0-based query position (token or word index)
KEY = "key"                # 0-based key position
QUERY_TOKEN = "query_token"
KEY_TOKEN = "key_token"
POSITION = "position"
TOKEN = "token"            # readable token text (no Ġ/▁ markers)
TOKEN_ID = "token_id"
WORD = "word"
WORD_ID = "word_id"

# values
WEIGHT = "weight"          # an attention weight or attribution share
PROB = "prob"
LOGPROB = "logprob"
RANK = "rank"              # 1-based rank among predictions
MASK_INDEX = "mask_index"  # 0-based index of the mask within its text
SCORE = "score"
VALUE = "value"
METRIC = "metric"
STEP = "step"
SPLIT = "split"
LABEL = "label"
# representations (issue 9)
X = "x"                    # 2-D map coordinates (embedding maps)
Y = "y"
METHOD = "method"          # an attribution or projection method, e.g. "ig", "pca"
TARGET = "target"          # what an attribution explains: a predicted token or class
DELTA = "delta"            # integrated gradients' convergence delta
LAYER_A = "layer_a"        # layer pairs compared across (or within) models, e.g. CKA
LAYER_B = "layer_b"
MODEL_A = "model_a"
MODEL_B = "model_b"
# heads (issue 7): per-head statistics are means over non-padding queries
ATTN_BOS, ATTN_EOS, ATTN_PUNCT = "attn_bos", "attn_eos", "attn_punct"  # attention to <s>, </s>, .,
ATTN_SELF, ATTN_PREV, ATTN_NEXT = "attn_self", "attn_prev", "attn_next"
TOP_BOS, TOP_EOS, TOP_PUNCT = "top_bos", "top_eos", "top_punct"  # share of queries whose top key is
TOP_SELF, TOP_PREV, TOP_NEXT = "top_self", "top_prev", "top_next"
DISTANCE = "distance"      # attention-weighted mean |query - key|, in tokens
ENTROPY = "entropy"        # entropy of a query's attention row, nats
PATTERN = "pattern"        # vertical | diagonal | block | heterogeneous (Kovaleva et al. 2019)
RELATION = "relation"      # a dependency relation label, e.g. "nsubj"
ACCURACY = "accuracy"
BASELINE = "baseline"      # accuracy of a fixed-offset baseline
OFFSET = "offset"          # the baseline's best offset, in words
COUNT = "count"
JS_DISTANCE = "js_distance"  # Jensen-Shannon distance (base 2, in [0, 1])
COSINE = "cosine"
OBJECTIVE = "objective"    # the loss a head importance is measured on: "mlm" | "classifier"
# query-key atlas, head roles, model diffs (issue 19)
KIND = "kind"              # which vector a point of the query-key atlas is: "query" | "key"
TOKEN_TYPE = "token_type"  # special | punct | word (word-initial) | continuation
POSITION_BUCKET = "position_bucket"  # a coarse position range, e.g. "1-4"
POS = "pos"                # a coarse part-of-speech tag (spaCy's Universal POS), "special" for <s>
ROLE = "role"              # a head's role from `analysis.head_roles.ROLES`, e.g. "previous token"
RUNNER_UP = "runner_up"    # the second-best role of a head
RUNNER_UP_SCORE = "runner_up_score"
CKA = "cka"                # linear CKA between the same layer of two models
AGREE = "agree"            # whether two models' top-1 predictions agree (bool)
PREDICTION = "prediction"  # a model's top-1 token at a masked position
# a model diff (compare_models): model a's and model b's value side by side, and b - a
IMPORTANCE_A, IMPORTANCE_B = "importance_a", "importance_b"   # wb.head_importance scores
IMPORTANCE_CHANGE = "importance_change"  # b - a per head; mean |b - a| per layer
ROLE_A, ROLE_B = "role_a", "role_b"
ROLE_CHANGED = "role_changed"            # bool per head; a count per layer
PREDICTION_A, PREDICTION_B = "prediction_a", "prediction_b"
LOGPROB_A, LOGPROB_B = "logprob_a", "logprob_b"
LOGPROB_CHANGE = "logprob_change"        # b - a
# syntax probes on Universal Dependencies (issue 24)
XPOS = "xpos"              # a treebank-specific part-of-speech tag (CoNLL-U field 5)
DEP_HEAD = "dep_head"      # 0-based word_id of a word's syntactic head in its sentence, -1 = root
SENT_ID = "sent_id"        # a CoNLL-U sentence's `# sent_id`
PROBE_RANK = "probe_rank"  # the rank (output dimension) of a structural probe's projection
TASK = "task"              # a probing task, e.g. "upos", "deprel"

# uncertainty (issue 28): bootstrap intervals over texts (`analysis.bootstrap`), role stability,
# changes measured against the spread between fine-tuning seeds
CI_LOW, CI_HIGH = "ci_low", "ci_high"    # percentile bootstrap interval of the row's value
N_TEXTS = "n_texts"        # texts (units resampled) behind the row's value
N_BOOT = "n_boot"          # bootstrap resamples behind ci_low / ci_high
LEVEL = "level"            # the interval's confidence level, e.g. 0.95
SUPPORT = "support"        # query tokens (or dependency arcs) a head's role score is computed on
MARGIN = "margin"          # score - runner_up_score of a targeted role (NaN for broad / mixed)
STABLE_FRACTION = "stable_fraction"  # share of resamples in which the head keeps its role
STABLE = "stable"          # stable_fraction >= analysis.bootstrap.STABLE_AT (0.9)
N_SEEDS = "n_seeds"        # fine-tuning runs (seeds) a change is averaged over
SEED_SD = "seed_sd"        # standard deviation of the change between seeds (ddof=1)
EXCEEDS_SEEDS = "exceeds_seeds"  # |mean change| > 2 x seed_sd (compare_models with several runs)
# context mixing, activation patching, pruning curves (issue 23)
SITE = "site"              # where a patch is applied: "resid" | "attn" | "ffn" | "head"
CLEAN = "clean"            # the metric on the clean input, unpatched
CORRUPTED = "corrupted"    # the metric on the corrupted input, unpatched
EFFECT = "effect"          # (patched - corrupted) / (clean - corrupted): 1 = fully restored
ORDER = "order"            # a pruning order: "iterative" | "once" | "random"
FRACTION = "fraction"      # share of heads removed
N_PRUNED = "n_pruned"      # number of heads removed
LOSS = "loss"
SPAN = "span"              # a patched position's part: "corrupted" (differs), "mask", "other"
HEADS = "heads"            # a set of (layer, head) pairs, e.g. the heads pruned so far

# result metadata as documented columns, repeated on the rows they describe (issue 25: never in
# pandas' `attrs`, which pandas drops on concat, groupby, merge and many filters)
N_QUERIES = "n_queries"    # query tokens behind the row's value
UNIFORM_DISTANCE = "uniform_distance"  # `distance` uniform attention would have on the same texts
UNIFORM_ENTROPY = "uniform_entropy"    # `entropy` uniform attention would have on the same texts
AVERAGE = "average"        # how per-query values were averaged: "text" (Clark et al.) | "token"
PUNCTUATION = "punctuation"  # which tokens count as punctuation: "clark" (. and ,) | "unicode"
NORMALIZE = "normalize"    # head importance normalisation: "layer" (Michel et al.) or None
BASE_LOSS = "base_loss"    # loss of the intact model that a leave-one-out score is measured from
TARGET_ID = "target_id"    # token (or class) id of an attribution's target
TARGET_POSITION = "target_position"  # position whose prediction is explained (the mask, or <s>)
OUTPUT = "output"          # what f is in an attribution: "prob" | "logprob" | "logit"
F_INPUT = "f_input"        # f at the input (integrated gradients' path end)
F_BASELINE = "f_baseline"  # f at the baseline (integrated gradients' path start)
VARIANCE_X = "variance_x"  # share of the vectors' variance along a PCA map's x axis
VARIANCE_Y = "variance_y"  # ... and along its y axis
VARIANCE_KEPT = "variance_kept"  # share of variance a 2-D PCA map keeps (NaN for t-SNE / UMAP)
SCALE = "scale"            # AttentionViz's query scale factor of the row's head (1 unaligned)
ALIGN = "align"            # whether queries and keys were aligned (AttentionViz) before projecting
N_TRAIN, N_TEST = "n_train", "n_test"  # rows a probe was fitted on / scored on
N_LABELS = "n_labels"      # distinct labels of a probing task
POOL = "pool"              # how a text's vectors were pooled: "mean" | "cls" | "words" | "tokens"
CONVERGED = "converged"    # whether the row's fit converged within its iteration budget
THRESHOLD = "threshold"    # the score a role needed (head_roles' `threshold`)
BROAD_THRESHOLD = "broad_threshold"  # normalised entropy from which a head is "broad"
PATTERN_AGREES = "pattern_agrees"    # role's implied Kovaleva class == pattern (NA: implies none)
SYNTAX = "syntax"          # whether dependency roles were candidates (a spaCy parse ran)
N_ARCS = "n_arcs"          # dependency arcs counted over all relations
SKIPPED_ARCS = "skipped_arcs"  # arcs (and roots) that could not be placed on the model's words

COLUMNS = frozenset(v for k, v in dict(globals()).items() if k.isupper() and isinstance(v, str))
