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

COLUMNS = frozenset(v for k, v in dict(globals()).items() if k.isupper() and isinstance(v, str))
