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

COLUMNS = frozenset(v for k, v in dict(globals()).items() if k.isupper() and isinstance(v, str))
