"""Labelled tables for fine-tuning: read any table, check it, split it, tokenise it.

`load_task_data(data, text_column=..., label_column=...)` accepts a pandas DataFrame, a CSV / TSV /
JSONL path, a folder holding `train.*` and `dev.*`/`validation.*` files (the GLUE layout), a
`datasets` Dataset or DatasetDict, a `{"train": ..., "validation": ...}` dict of any of these, or a
`datasets` hub name ("glue/sst2", "imdb", "name:config"). It returns a `TaskData` with integer class
ids (or float targets for regression) and a validation split (carved out, stratified, when only
one table is given).

Every check that can fail runs here, before a model is touched: a missing column, an empty text,
a missing label, labels of mixed types, a single class, validation labels never seen in training,
and (`check_max_length`) a max length the model's position table cannot hold.
"""

from __future__ import annotations

import csv
import hashlib
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..config import check_choice, check_finite, check_int, check_str
from ..errors import InputError
from ..tokens import backend_unchanged

TEXT, PAIR, LABEL = "text", "text_pair", "label"   # column names of TaskData frames
TASKS = ("auto", "classification", "regression")
_SUFFIXES = {".csv": ",", ".tsv": "\t", ".txt": "\t", ".jsonl": None, ".json": None}
_TRAIN_NAMES = ("train",)
_VALIDATION_NAMES = ("validation", "dev", "valid", "val", "validation_matched")
_HUB_COLLECTIONS = ("glue", "super_glue")


@dataclass
class TaskData:
    """Train and validation frames with columns `text`, optional `text_pair`, and `label`.

    For classification `label` holds ids 0..K-1 and `label_names[i]` is the original value of id i;
    for regression `label` holds floats and `label_names` is empty.
    """

    train: pd.DataFrame
    validation: pd.DataFrame
    task: str
    label_names: list[str] = field(default_factory=list)
    source: str = ""

    @property
    def has_pairs(self) -> bool:
        return PAIR in self.train.columns

    @property
    def num_labels(self) -> int:
        return 1 if self.task == "regression" else len(self.label_names)

    def fingerprint(self) -> str:
        """A hash of every text and label in both splits (a resumed run checks it is unchanged)."""
        h = hashlib.sha256()
        for frame in (self.train, self.validation):
            cols = [c for c in (TEXT, PAIR, LABEL) if c in frame.columns]
            h.update(pd.util.hash_pandas_object(frame[cols], index=False).values.tobytes())
        h.update(repr((self.task, self.label_names)).encode())
        return h.hexdigest()[:16]


# ----------------------------------------------------------------------------- reading

def read_table(path: str | Path) -> pd.DataFrame:
    """Read one CSV / TSV / JSONL file into a DataFrame (only empty cells count as missing)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _SUFFIXES:
        raise InputError(f"cannot read {path.name!r}: use a .csv, .tsv or .jsonl file "
                         "(or pass a DataFrame / datasets Dataset)")
    if not path.is_file():
        raise InputError(f"no such file: {path}")
    try:
        frame = _parse_table(path, suffix)
    except UnicodeDecodeError as err:
        raise InputError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start}): it may be "
                         "binary or saved in another encoding; re-save it as UTF-8 CSV/TSV/JSONL"
                         ) from None
    except InputError:
        raise
    except pd.errors.EmptyDataError:
        raise InputError(f"{path} is empty: it needs a header row and at least one data row"
                         ) from None
    except ValueError as err:  # pandas' ParserError and read_json's errors are ValueErrors
        raise InputError(f"{path} could not be parsed as {suffix[1:].upper()} "
                         f"({str(err).strip()[:200]}); check its format") from None
    if len(frame) == 0:
        raise InputError(f"{path} has no data rows (columns: {list(frame.columns)})")
    return frame


def _parse_table(path: Path, suffix: str) -> pd.DataFrame:
    with open(path, "rb") as handle:
        head = handle.read(8192)
    if b"\x00" in head:  # NUL bytes: binary, or UTF-16/32 text
        raise UnicodeDecodeError("utf-8", b"\x00", 0, 1, "NUL byte (binary or UTF-16 data)")
    if suffix in (".jsonl", ".json"):
        try:
            return pd.read_json(path, lines=True, encoding="utf-8")
        except ValueError:
            return pd.read_json(path, encoding="utf-8")
    sep = _SUFFIXES[suffix]
    # TSV in the GLUE style carries quotes inside sentences: read them literally
    quoting = csv.QUOTE_NONE if sep == "\t" else csv.QUOTE_MINIMAL
    lines = _record_lines(path, sep, quoting)
    # index_col=False: pandas would otherwise take a first column it finds no header for as the
    # index, silently shifting every text and label by one column
    frame = pd.read_csv(path, sep=sep, quoting=quoting, keep_default_na=False, na_values=[""],
                        encoding="utf-8", encoding_errors="strict", index_col=False)
    if len(lines) == len(frame):     # errors below then name the file's lines, not row numbers
        frame.index = pd.Index(lines, name="line")
    return frame


def _record_lines(path: Path, sep: str, quoting: int) -> list[int]:
    """The file line of each data record; a record whose field count differs from the header's
    is refused by its line number (pandas blamed the good rows, or shifted the columns)."""
    lines: list[int] = []
    with open(path, newline="", encoding="utf-8", errors="strict") as handle:
        reader = csv.reader(handle, delimiter=sep, quoting=quoting, strict=True)
        header, end = None, 0
        try:
            for record in reader:
                start, end = end + 1, reader.line_num
                if not record:
                    continue                                   # a blank line
                if header is None:
                    header = record
                elif len(record) != len(header):
                    where = f"line {start}" + (f"-{end}" if end > start else "")
                    hint = ("a TSV text cannot hold a tab" if sep == "\t" else
                            'quote a text that holds a comma ("a, b")')
                    raise InputError(
                        f"{path}: {where} has {len(record)} field(s) but the header has "
                        f"{len(header)} ({sep.join(header)[:80]!r}): {hint}, and keep the "
                        "separators of empty cells; fix that line")
                else:
                    lines.append(end)
        except csv.Error as err:
            raise InputError(f"{path}: line {end + 1}: {err} (an unclosed quote?); fix that line"
                             ) from None
    return lines


def _check_columns(text_column, pair_column, label_column) -> None:
    check_str("text_column", text_column)
    check_str("pair_column", pair_column, allow_none=True)
    check_str("label_column", label_column)


def _find_split_file(folder: Path, names: Sequence[str]) -> Path | None:
    for name in names:
        for suffix in _SUFFIXES:
            p = folder / f"{name}{suffix}"
            if p.is_file():
                return p
    return None


def _from_datasets(obj: Any, label_column: str) -> dict[str, pd.DataFrame]:
    """A datasets Dataset/DatasetDict as {split: DataFrame}, class ids mapped to their names."""
    if hasattr(obj, "keys") and not hasattr(obj, "to_pandas"):  # DatasetDict
        splits = {name: obj[name] for name in obj.keys()}
    else:
        splits = {"train": obj}
    out = {}
    for name, ds in splits.items():
        frame = ds.to_pandas()
        feature = getattr(ds, "features", {}).get(label_column)
        names = getattr(feature, "names", None)
        if names and label_column in frame.columns:
            # unlabelled rows (GLUE test sets use -1) stay -1 and are refused by the checks
            frame[label_column] = [names[i] if 0 <= i < len(names) else i
                                   for i in frame[label_column]]
        out[name] = frame
    return out


def _from_hub(name: str, label_column: str) -> dict[str, pd.DataFrame]:
    try:
        import datasets
    except ImportError as err:  # pragma: no cover - datasets is a dependency
        raise InputError(f"{name!r} is not a file; loading a hub dataset needs `datasets`") from err
    if ":" in name:
        args = tuple(name.split(":", 1))
    elif name.count("/") == 1 and name.split("/")[0] in _HUB_COLLECTIONS:
        args = tuple(name.split("/"))
    else:
        args = (name,)
    try:
        ds = datasets.load_dataset(*args)
    except Exception as err:  # noqa: BLE001 - datasets raises many types when offline
        raise InputError(
            f"{name!r} is neither a local file nor a dataset that could be loaded "
            f"(datasets.load_dataset{args} failed: {type(err).__name__}: {str(err)[:200]}). "
            "Pass a CSV/TSV/JSONL path, a DataFrame, or connect to the network for hub datasets."
        ) from err
    return _from_datasets(ds, label_column)


def read_splits(data: Any, label_column: str = LABEL) -> tuple[dict[str, pd.DataFrame], str]:
    """Any supported input as ({split name: DataFrame}, a short description of the source)."""
    if isinstance(data, pd.DataFrame):
        return {"train": data}, f"DataFrame ({len(data)} rows)"
    if isinstance(data, dict):
        out = {}
        for name, part in data.items():
            frames, _ = read_splits(part, label_column)
            if len(frames) != 1:
                raise InputError(f"data[{name!r}] holds several splits; pass one table per key")
            out[name] = next(iter(frames.values()))
        return out, f"dict of splits {sorted(out)}"
    if isinstance(data, (str, Path)):
        path = Path(data).expanduser()
        if path.is_dir():
            train = _find_split_file(path, _TRAIN_NAMES)
            if train is None:
                raise InputError(f"folder {path} has no train.csv/.tsv/.jsonl; pass a file instead")
            out = {"train": read_table(train)}
            val = _find_split_file(path, _VALIDATION_NAMES)
            if val is not None:
                out["validation"] = read_table(val)
            return out, str(path)
        if path.exists() or path.suffix.lower() in _SUFFIXES:
            return {"train": read_table(path)}, str(path)
        return _from_hub(str(data), label_column), f"datasets:{data}"
    if hasattr(data, "to_pandas") or (hasattr(data, "keys") and hasattr(data, "column_names")):
        return _from_datasets(data, label_column), type(data).__name__
    raise InputError(
        f"data={str(data)[:60]!r} ({type(data).__name__}) cannot be read: pass a DataFrame, a CSV/TSV/"
        "JSONL path, a folder with train/dev files, a datasets Dataset/DatasetDict, or a dict "
        "{'train': ..., 'validation': ...}")


# ----------------------------------------------------------------------------- checking

def _kind(value: Any) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    if isinstance(value, numbers.Number):
        return "number"
    if isinstance(value, str):
        return "string"
    return type(value).__name__


def _rows(mask: np.ndarray, frame: pd.DataFrame, limit: int = 5) -> str:
    """'rows 3, 7' (a frame's index), or 'lines 5, 9' for a table read from a file."""
    idx = list(frame.index[mask][:limit])
    more = int(mask.sum()) - len(idx)
    word = "lines" if frame.index.name == "line" else "rows"
    return f"{word} " + ", ".join(map(str, idx)) + (f" and {more} more" if more > 0 else "")


def _check_frame(frame: pd.DataFrame, split: str, text_column: str, pair_column: str | None,
                 label_column: str) -> pd.DataFrame:
    """Select and rename the needed columns, refusing missing columns, empty texts and labels."""
    if len(frame) == 0:
        raise InputError(f"the {split} table is empty")
    needed = [text_column] + ([pair_column] if pair_column else []) + [label_column]
    for col in needed:
        if col not in frame.columns:
            raise InputError(
                f"column {col!r} is missing from the {split} table; its columns are "
                f"{list(frame.columns)}: set text_column/pair_column/label_column to match")
    out = pd.DataFrame({TEXT: frame[text_column].to_numpy()}, index=frame.index)
    if pair_column:
        out[PAIR] = frame[pair_column].to_numpy()
    for col, src in ((TEXT, text_column), (PAIR, pair_column)):
        if src is None:
            continue
        values = out[col]
        bad = np.array([not isinstance(v, str) for v in values])
        if bad.any():
            kinds = sorted({type(v).__name__ for v in values[bad]})
            raise InputError(f"column {src!r} of the {split} table has non-text values ({kinds}) "
                             f"in {_rows(bad, frame)}: fill or drop those rows")
        empty = np.array([not v.strip() for v in values])
        if empty.any():
            raise InputError(f"column {src!r} of the {split} table has empty text in "
                             f"{_rows(empty, frame)}: drop those rows or fill them")
    labels = frame[label_column]
    missing = labels.isna().to_numpy()
    if missing.any():
        raise InputError(f"label column {label_column!r} of the {split} table has missing values "
                         f"in {_rows(missing, frame)}: drop those rows or fill them")
    numeric = np.array([_kind(v) == "number" for v in labels])
    if numeric.any():
        values = np.array([float(v) if n else 0.0 for v, n in zip(labels, numeric)])
        bad = ~np.isfinite(values)
        if bad.any():
            raise InputError(f"label column {label_column!r} of the {split} table has infinite or "
                             f"NaN values in {_rows(bad, frame)}: drop or fix those rows")
    kinds = {_kind(v) for v in labels}
    if len(kinds) > 1:
        examples = {}
        for v in labels:
            examples.setdefault(_kind(v), v)
        shown = ", ".join(f"{v!r} ({k})" for k, v in sorted(examples.items()))
        raise InputError(f"label column {label_column!r} of the {split} table mixes types: "
                         f"{shown}; convert every label to one type (all strings or all numbers)")
    out[LABEL] = labels.to_numpy()
    return out.reset_index(drop=True)


def _infer_task(labels: pd.Series, task: str, label_column: str) -> str:
    kind = _kind(labels.iloc[0])
    numeric = kind in ("number", "bool")
    integral = numeric and bool(np.all(np.equal(np.mod(labels.astype(float), 1), 0)))
    if task == "auto":
        return "regression" if numeric and not integral else "classification"
    if task == "regression" and (not numeric or kind == "bool"):
        raise InputError(f"task='regression' needs numeric labels, but {label_column!r} holds "
                         f"{kind} values such as {labels.iloc[0]!r}; use task='classification'")
    if task == "classification" and numeric and not integral:
        raise InputError(f"label column {label_column!r} holds non-integer numbers such as "
                         f"{labels[np.mod(labels.astype(float), 1) != 0].iloc[0]!r}: use "
                         "task='regression', or map the values to classes first")
    return task


MAX_TARGET = 1e18   # training runs in float32 (or bf16): a squared error overflows near 1.8e19


def _check_target_range(train: pd.DataFrame, val: pd.DataFrame, label_column: str) -> None:
    """Refuse regression targets whose squared error would overflow training (before any run)."""
    for split, frame in (("train", train), ("validation", val)):
        big = (frame[LABEL].abs() > MAX_TARGET).to_numpy()
        if big.any():
            raise InputError(
                f"label column {label_column!r} of the {split} table has targets beyond "
                f"±{MAX_TARGET:.0e} (e.g. {frame[LABEL][big].iloc[0]:.3g}, {int(big.sum())} in all):"
                " training in float32 would overflow to inf and fail; standardise the targets "
                "(subtract the mean, divide by the standard deviation) or rescale them")


def _split(frame: pd.DataFrame, fraction: float, seed: int, stratify: bool):
    from sklearn.model_selection import train_test_split

    if len(frame) < 4:
        raise InputError(f"only {len(frame)} labelled rows: a train/validation split needs at "
                         "least 4 (pass a separate validation table, or more data)")
    labels = frame[LABEL]
    n_val = max(1, int(round(len(frame) * fraction)))
    can_stratify = stratify and labels.value_counts().min() >= 2 and n_val >= labels.nunique()
    train, val = train_test_split(frame, test_size=n_val, random_state=seed, shuffle=True,
                                  stratify=labels if can_stratify else None)
    return train.reset_index(drop=True), val.reset_index(drop=True)


def load_task_data(data: Any, *, text_column: str = "text", pair_column: str | None = None,
                   label_column: str = "label", task: str = "auto",
                   validation_split: float = 0.1, seed: int = 0) -> TaskData:
    """Read, check and split `data` (see the module docstring for what `data` may be)."""
    check_choice("task", task, TASKS)
    check_int("seed", seed)
    check_finite("validation_split", validation_split, low=0, high=1, low_open=True, high_open=True)
    _check_columns(text_column, pair_column, label_column)
    splits, source = read_splits(data, label_column)
    train_name = next((n for n in _TRAIN_NAMES if n in splits), None)
    if train_name is None:
        if len(splits) == 1:
            train_name = next(iter(splits))
        else:
            raise InputError(f"no 'train' split among {sorted(splits)}: name one split 'train'")
    val_name = next((n for n in _VALIDATION_NAMES if n in splits), None)
    train = _check_frame(splits[train_name], train_name, text_column, pair_column, label_column)
    task = _infer_task(train[LABEL], task, label_column)
    if val_name is not None:
        val = _check_frame(splits[val_name], val_name, text_column, pair_column, label_column)
        if _kind(val[LABEL].iloc[0]) != _kind(train[LABEL].iloc[0]):
            raise InputError(f"labels of the {val_name} table are {_kind(val[LABEL].iloc[0])}s "
                             f"but the training labels are {_kind(train[LABEL].iloc[0])}s")
    else:
        train, val = _split(train, validation_split, seed, stratify=task == "classification")

    if task == "regression":
        train[LABEL] = train[LABEL].astype(float)
        val[LABEL] = val[LABEL].astype(float)
        _check_target_range(train, val, label_column)
        if train[LABEL].nunique() < 2:
            raise InputError(f"every training label in {label_column!r} is "
                             f"{train[LABEL].iloc[0]!r}: regression needs varying targets")
        return TaskData(train, val, task, [], source)

    values = sorted(train[LABEL].unique().tolist())
    if len(values) < 2:
        raise InputError(f"the training data has one class only ({values[0]!r} in column "
                         f"{label_column!r}): a classifier needs at least two classes")
    unseen = sorted(set(val[LABEL].unique().tolist()) - set(values), key=str)
    if unseen:
        raise InputError(f"validation labels {unseen[:5]} never occur in the training data "
                         f"(training classes: {values[:10]}): fix the labels or the split")
    ids = {v: i for i, v in enumerate(values)}
    train[LABEL] = train[LABEL].map(ids).astype(np.int64)
    val[LABEL] = val[LABEL].map(ids).astype(np.int64)
    return TaskData(train, val, task, [str(v) for v in values], source)


# ----------------------------------------------------------------------------- tokens

def tokenize(tokenizer, frame: pd.DataFrame, max_length: int) -> dict[str, list[list[int]]]:
    """Token ids per row (truncated to `max_length`, not padded): {"input_ids": [...], ...}."""
    pairs = frame[PAIR].tolist() if PAIR in frame.columns else None
    with backend_unchanged(tokenizer):
        enc = tokenizer(frame[TEXT].tolist(), pairs, truncation=True, max_length=max_length,
                        padding=False, return_attention_mask=False)
    out = {"input_ids": enc["input_ids"]}
    if "token_type_ids" in enc and pairs is not None:
        out["token_type_ids"] = enc["token_type_ids"]
    return out


def load_labelled(data: Any, *, text_column: str = "text", pair_column: str | None = None,
                  label_column: str = "label", split: str | None = None) -> pd.DataFrame:
    """One checked table, unsplit (e.g. a test set): columns `text`, (`text_pair`), `label`.

    Labels keep their original values. `split` picks one split of a multi-split input (default:
    the validation split if there is one, else the only or the 'train' split).
    """
    _check_columns(text_column, pair_column, label_column)
    splits, _ = read_splits(data, label_column)
    if split is None:
        split = next((n for n in _VALIDATION_NAMES if n in splits), None)
        split = split or ("train" if "train" in splits else next(iter(splits)))
    if split not in splits:
        raise InputError(f"no split {split!r} in the data; it has {sorted(splits)}")
    return _check_frame(splits[split], split, text_column, pair_column, label_column)
