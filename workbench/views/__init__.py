"""Self-contained HTML views (no CDN: JavaScript comes from files in `views/static/`).

    x, tokens = wb.attention_tensor(lm, "The cat sat.")
    wb.views.head_view(x, tokens)                 # lines between tokens, one colour per head
    wb.views.model_view(x, tokens)                # layer x head grid of small maps
    qk = wb.attention_qk(lm, "The cat sat.")
    wb.views.query_key_view(qk["queries"], qk["keys"], qk["tokens"], layer=0, head=0)
    wb.views.head_view(x, tokens).save("head.html")   # standalone, works offline
"""

from __future__ import annotations

from .attention import AttentionView, head_view, model_view, query_key_view
from .bertviz_adapter import bertviz_offline

__all__ = ["AttentionView", "head_view", "model_view", "query_key_view", "bertviz_offline"]
