"""Layer-wise linear probes: which layer's vectors linearly encode a label (Tenney et al. 2019).

What belongs here: `linear_probe(lm, data, task=...)`, which computes `features` for the data,
fits one scikit-learn logistic regression per layer on a train split and scores it on held-out
texts, beside two baselines that keep the curve honest:

- `majority`: the accuracy of always answering the most frequent training label;
- `control_accuracy`: the same probe trained on a *control task* (Hewitt & Liang 2019): every
  word type (token task) or text (sentence task) gets a fixed random label drawn from the label
  distribution. A probe that scores well there is memorising, not reading the representation;
  `selectivity` = accuracy - control_accuracy. For sentence tasks each text is its own type, so
  the control is the shuffled-label baseline and sits at chance on unseen texts.

Splits are by text (`text_id`), so words of one sentence never sit on both sides.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import pandas as pd

from .. import schema as S
from ..config import check_finite, check_int
from ..errors import InputError
from ..models import as_lm_dict
from .bootstrap import (LEVEL, add_interval, check_boot, percentile_interval, resample_ratio,
                        row_weights)
from .features import Features, features
from .pos_data import sentences
from .streaming import fit_score_streamed, is_streamed

TASKS = ("sentence", "token")


def _sentence_data(data, text_col: str, label_col: str) -> tuple[list[str], list]:
    if isinstance(data, pd.DataFrame):
        missing = {text_col, label_col} - set(data.columns)
        if missing:
            raise InputError(f"data lacks column(s) {sorted(missing)}: pass text_col=/label_col= "
                             f"naming the text and label columns (it has {list(data.columns)})")
        check_labels(list(data[text_col]), f"text_col {text_col!r}", "it would be probed as "
                     "the text 'nan'")
        return [str(t) for t in data[text_col]], list(data[label_col])
    try:
        texts, labels = zip(*data)
    except (TypeError, ValueError):
        raise InputError("sentence data must be a DataFrame with text and label columns or a "
                         "list of (text, label) pairs") from None
    return list(texts), list(labels)


def _token_frame(data) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        missing = {S.TEXT_ID, S.WORD_ID, S.WORD, S.LABEL} - set(data.columns)
        if missing:
            raise InputError(f"token data lacks column(s) {sorted(missing)}; use read_conll or "
                             "pos_corpus, or a frame with text_id, word_id, word, label")
        return data
    try:
        rows = [(t, w, str(word), tag) for t, sent in enumerate(data)
                for w, (word, tag) in enumerate(sent)]
    except (TypeError, ValueError):
        raise InputError("token data must be a frame (text_id, word_id, word, label) or a list of "
                         "sentences, each a list of (word, label) pairs") from None
    return pd.DataFrame(rows, columns=[S.TEXT_ID, S.WORD_ID, S.WORD, S.LABEL])


def check_labels(labels: Sequence, what: str = "labels", why: str = "a missing label is not a "
                 "class") -> None:
    """Refuse NaN/None labels (they were counted as a class of their own), naming the rows."""
    missing = [i for i, v in enumerate(labels) if np.ndim(v) == 0 and pd.isna(v)]
    if missing:
        raise InputError(f"{what} has {len(missing)} missing value(s) (NaN/None) of {len(labels)}, "
                         f"at rows {missing[:5]}{' ...' if len(missing) > 5 else ''}: {why}; drop "
                         "those rows (frame.dropna(subset=[...])) or fill them, then probe again")


def control_labels(types: Sequence, labels: Sequence, seed: int = 0) -> np.ndarray:
    """Hewitt & Liang control task: one fixed random label per type, drawn from the label frequencies."""
    labels = np.asarray(labels)
    values, counts = np.unique(labels, return_counts=True)
    uniq, inverse = np.unique(np.asarray(types, dtype=str), return_inverse=True)
    rng = np.random.default_rng(seed)
    per_type = rng.choice(len(values), size=len(uniq), p=counts / counts.sum())
    return values[per_type[inverse]]


def _fit_score(x_tr, y_tr, x_te, y_te, C: float, max_iter: int) -> tuple[np.ndarray, bool]:
    """(whether each test row is predicted right (n_test,) bool, whether the fit converged)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        probe.fit(x_tr, y_tr)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return probe.predict(x_te) == y_te, converged


def _fit_layer(array: np.ndarray, j: int, tr, te, y, C: float, max_iter: int):
    """`_fit_score` on layer slot j; over a memory map, the same probe fitted in row blocks."""
    if is_streamed(array):
        return fit_score_streamed(array, j, tr, te, y, C, max_iter)
    x = array[:, j]
    return _fit_score(x[tr], y[tr], x[te], y[te], C, max_iter)


def _accuracy(weights: np.ndarray, hits: np.ndarray) -> np.ndarray:
    """Accuracy under each row of `weights` (K, n_test): (K,)."""
    return resample_ratio(weights, hits.astype(float))


MIN_TEST_ROWS = 2     # fewer test rows: refused (an accuracy of 0 or 1 from one row)
WARN_TEST_ROWS = 30   # fewer: a UserWarning says the accuracy is coarse


def probe_features(feats: Features, labels: Sequence, *, types: Sequence | None = None,
                   groups: Sequence | None = None, test_size: float = 0.25, seed: int = 0,
                   C: float = 1.0, max_iter: int = 1000, control: bool = True,
                   n_boot: int | None = None, level: float = LEVEL, mdl: bool = False) -> pd.DataFrame:
    """Probe already computed features: `labels` (and `types`, `groups`) align with `feats.index`.

    `groups` (default the `text_id` column) decide the split; `types` (default the `word`/`token`
    column, else the text) define the control task. Returns the same frame as `linear_probe`.
    Features on disk (`out=`) are probed in row blocks, same model (`streaming.fit_score_streamed`).
    """
    check_labels(labels)
    n_boot, level = check_boot(n_boot, level)
    y = np.asarray(labels)
    if len(y) != len(feats):
        raise InputError(f"{len(y)} labels for {len(feats)} feature rows: they must align")
    index = feats.index
    groups = np.asarray(groups if groups is not None else index[S.TEXT_ID])
    if types is None:
        col = next((c for c in (S.WORD, S.TOKEN) if c in index), None)
        types = index[col] if col else index[S.TEXT_ID]
    if not 0 < test_size < 1:
        raise InputError(f"test_size={test_size}; use a fraction between 0 and 1")
    if len(np.unique(y)) < 2:
        raise InputError("the labels have a single value: a probe needs at least two classes")
    if len(np.unique(groups)) < 2:
        raise InputError("need at least two texts to split train and test by text")

    from sklearn.model_selection import GroupShuffleSplit

    split = GroupShuffleSplit(n_splits=1, test_size=test_size, random_state=seed)
    tr, te = next(split.split(np.zeros(len(y)), y, groups))
    if len(te) < MIN_TEST_ROWS:
        raise InputError(f"data: only {len(te)} test rows ({len(y)} rows, test_size={test_size}); "
                         f"an accuracy on fewer than {MIN_TEST_ROWS} rows means nothing: pass more "
                         "rows or a larger test_size")
    if len(te) < WARN_TEST_ROWS:
        warnings.warn(f"linear_probe: accuracy on {len(te)} test rows moves in steps of "
                      f"{1 / len(te):.2f}; report it with its sample size", stacklevel=3)
    values, counts = np.unique(y[tr], return_counts=True)
    if len(values) < 2:
        raise InputError("the training split holds a single label: pass more data or another seed")
    majority = y[te] == values[counts.argmax()]                         # (n_test,) bool
    yc = control_labels(types, y, seed) if control else None
    # each test row's weight in each resample of the test texts (rows go with their text)
    weights = np.ones((1, len(te))) if n_boot is None else np.vstack(
        [np.ones(len(te)), row_weights(groups[te], n_boot)])          # (1 + n_boot, n_test)

    rows, unconverged, coded = [], [], []
    if mdl and is_streamed(feats.array):
        raise InputError("mdl=True needs features in memory: probe a subset without out=, or "
                         "pass mdl=False for features on disk")
    for j, layer in enumerate(feats.layers):
        x = feats.array[:, j]                                            # (N, D)
        hits, ok = _fit_layer(feats.array, j, tr, te, y, C, max_iter)
        acc = _accuracy(weights, hits)
        rows += [(layer, "accuracy", acc), (layer, "majority", _accuracy(weights, majority))]
        if not ok:
            unconverged.append(layer)
        if yc is not None:
            chits, _ = _fit_layer(feats.array, j, tr, te, yc, C, max_iter)
            cacc = _accuracy(weights, chits)
            rows += [(layer, "control_accuracy", cacc), (layer, "selectivity", acc - cacc)]
        if mdl:  # online code over all rows (Voita & Titov 2020), see analysis.mdl
            from .mdl import mdl_rows

            coded += [(layer, m, v) for m, v in mdl_rows(x, y, yc, groups=groups, seed=seed, C=C,
                                                         max_iter=max_iter)]
    out = pd.DataFrame([(la, m, v[0]) for la, m, v in rows], columns=[S.LAYER, S.METRIC, S.VALUE])
    if n_boot is not None:    # row 0 of each is the full test set, rows 1: the resamples
        low, high = percentile_interval(np.stack([v[1:] for _, _, v in rows], 1), level)
        out = add_interval(out, low, high, n_texts=len(np.unique(groups[te])), n_boot=n_boot,
                           level=level)
    if coded:  # code lengths have no bootstrap interval
        out = pd.concat([out, pd.DataFrame(coded, columns=[S.LAYER, S.METRIC, S.VALUE])],
                        ignore_index=True)
    out.insert(0, S.MODEL, feats.model)
    out[S.SPLIT] = "test"
    return out.assign(**{S.N_TRAIN: int(len(tr)), S.N_TEST: int(len(te)),
                         S.N_LABELS: int(len(np.unique(y))), S.POOL: feats.pool,
                         S.CONVERGED: ~out[S.LAYER].isin(unconverged)})


def linear_probe(lm, data, *, task: str = "sentence", layers="all", pool: str | None = None,
                 text_col: str = S.TEXT, label_col: str = S.LABEL, test_size: float = 0.25,
                 seed: int = 0, C: float = 1.0, max_iter: int = 1000, control: bool = True,
                 n_boot: int | None = None, level: float = LEVEL, batch_size: int = 32,
                 progress: bool = True, cache: bool = True, mdl: bool = False) -> pd.DataFrame:
    """Per-layer probe accuracy with majority and control-task baselines.

    `lm`: an `LM`, a dict {name: LM} (one curve per model), or ready `Features` (then `data` are
    labels aligned with its rows). `task="sentence"`: `data` is a frame with `text_col` and
    `label_col` (or (text, label) pairs), pooled with `pool` ("mean" default, or "cls").
    `task="token"`: `data` is a frame (text_id, word_id, word, label) from `read_conll` /
    `pos_corpus`, or a list of sentences of (word, label) pairs; one vector per word.
    Missing labels (NaN/None) are refused, naming their rows, not dropped and not made a class.

    Returns a tidy frame: model, layer, metric ("accuracy", "majority", "control_accuracy",
    "selectivity"), value, split ("test"), n_train, n_test (rows fitted on, scored on), n_labels,
    pool, converged (whether the layer's probe converged in `max_iter` steps). A test split of fewer than 2 rows is
    refused and one of fewer than 30 rows warns: accuracies on so few rows are too coarse to read.
    `n_boot` (e.g. 200; default None) adds percentile bootstrap intervals over the test texts
    (a text's rows are resampled together; the probes are not refitted, so the interval is the
    test-sample uncertainty of these probes): ci_low, ci_high, n_texts (test texts), n_boot, level.
    `mdl=True` adds the online code length of all rows' labels (Voita & Titov 2020, `analysis.mdl`):
    "codelength_kbits", "uniform_kbits", "compression" and, with `control`, the control task's.
    """
    check_finite("test_size", test_size, low=0, high=1, low_open=True, high_open=True)
    check_finite("C", C, low=0, low_open=True), check_int("max_iter", max_iter, minimum=1)
    if data is None:
        raise InputError("data is None: pass a frame with text and label columns (or word rows)")
    if task not in TASKS:
        raise InputError(f"task={task!r}; use 'sentence' (one label per text) or 'token' (per word)")
    opts = dict(test_size=test_size, seed=seed, C=C, max_iter=max_iter, control=control,
                n_boot=n_boot, level=level, mdl=mdl)
    if isinstance(lm, Features):
        return probe_features(lm, data, **opts)
    if task == "sentence":
        pool = pool or "mean"
        if pool not in ("mean", "cls"):
            raise InputError(f"pool={pool!r} for a sentence task; use 'mean' or 'cls'")
        texts, labels = _sentence_data(data, text_col, label_col)
        check_labels(labels, f"label_col {label_col!r}")            # before any forward pass
    else:
        if pool not in (None, "words"):
            raise InputError(f"pool={pool!r} for a token task: token tasks use one vector per word")
        frame = _token_frame(data).sort_values([S.TEXT_ID, S.WORD_ID]).reset_index(drop=True)
        check_labels(frame[S.LABEL].tolist(), "the words' label column")
        texts, pool = sentences(frame), "words"
        ids = {t: k for k, t in enumerate(sorted(frame[S.TEXT_ID].unique()))}  # text_id -> input index
    parts = []
    for name, model in as_lm_dict(lm).items():
        feats = features(model, texts, layers=layers, pool=pool, batch_size=batch_size,
                         progress=progress, cache=cache)
        feats.model = name
        if task == "sentence":
            y = [labels[i] for i in feats.index[S.TEXT_ID]]
        else:
            keyed = frame.assign(**{S.TEXT_ID: frame[S.TEXT_ID].map(ids)})
            merged = feats.index[[S.TEXT_ID, S.WORD_ID]].merge(
                keyed[[S.TEXT_ID, S.WORD_ID, S.LABEL]], on=[S.TEXT_ID, S.WORD_ID], how="left")
            y = merged[S.LABEL].to_numpy()
        parts.append(probe_features(feats, y, **opts))
    return pd.concat(parts, ignore_index=True)
