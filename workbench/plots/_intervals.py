"""Bootstrap intervals drawn the same way in every figure: error bars and the caption's note.

A frame that carries `ci_low`/`ci_high` (an analysis called with `n_boot=`, see
`analysis.bootstrap`) gets asymmetric error bars from `error_bars`, and its title says what they
are with `interval_note` (level, resamples, texts). Frames without the columns draw as before.
Layer 3: no torch.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import schema as S


def has_interval(df: pd.DataFrame) -> bool:
    return S.CI_LOW in df.columns and S.CI_HIGH in df.columns


def error_bars(df: pd.DataFrame | None, value: str) -> dict | None:
    """plotly `error_y`/`error_x` for `df[value]` from its ci columns (None when it has none)."""
    if df is None or not has_interval(df):
        return None
    v = df[value].to_numpy(dtype=float)
    return dict(type="data", symmetric=False, thickness=1, width=2, color="#333",
                array=np.clip(df[S.CI_HIGH].to_numpy(dtype=float) - v, 0, None),
                arrayminus=np.clip(v - df[S.CI_LOW].to_numpy(dtype=float), 0, None))


def interval_note(df: pd.DataFrame, unit: str = "texts") -> str:
    """' (error bars: 95% percentile bootstrap intervals, 200 resamples of 50 texts)' or ''."""
    if not has_interval(df) or df.empty:
        return ""
    row = df.iloc[0]
    level = f"{row[S.LEVEL]:.0%} " if S.LEVEL in df.columns else ""
    n_boot = f"{int(row[S.N_BOOT])} resamples" if S.N_BOOT in df.columns else "resamples"
    n_texts = f" of {int(row[S.N_TEXTS])} {unit}" if S.N_TEXTS in df.columns else ""
    return f" (error bars: {level}bootstrap intervals, {n_boot}{n_texts})"
