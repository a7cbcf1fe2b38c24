"""Edge probing over a learned scalar mix of all layers (Tenney et al. 2019a, 2019b).

What belongs here: `edge_probe(lm, data, tasks=...)`, span and span-pair classification from
Universal Dependencies trees, read the way "BERT Rediscovers the Classical NLP Pipeline" reads
it. Spans are words (the mean of their subword tokens, `word_vectors`); a span pair is a
(head, dependent) pair of words.

Tasks (`TASKS`): "upos" (a word's universal POS), "deprel" (the pair head -> dependent labelled
with its universal relation, subtypes such as `:poss` dropped, as Tenney et al.'s UD EWT task)
and "depth" (a word's distance to the root, 0..3 and "4+", a tree-shape task).

The probe: mixed vector = gamma * sum_l softmax(w)_l h_l (AllenNLP's ScalarMix), a shared linear
projection to `proj` dims per span, spans concatenated, then Tenney's MLP classifier (Linear,
tanh, LayerNorm, Linear), trained with Adam on cross-entropy. Per task it reports:

- mixing weights s_l and the expected layer E_s[l] = sum_l l * s_l (Tenney 2019b, eq. 1);
- the cumulative scores: probe P(l) trained on layers 0..l, Delta(l) = score(l) - score(l-1),
  and the center of gravity E_Delta[l] = sum_{l>=1} l * Delta(l) / sum_{l>=1} Delta(l) (eq. 2);
  score = accuracy (= micro F1 for one label per span);
- a control task (Hewitt & Liang 2019): each word type (pair of types for "deprel") gets a fixed
  random label drawn from the label distribution, probed with the full mix: selectivity =
  accuracy - control accuracy; with `mdl=True` the online code length of the labels given the
  learned mix (Voita & Titov 2020, `analysis.mdl`), real and control.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from .. import schema as S
from ..config import check_choice, check_finite, check_int, check_sequence
from ..errors import InputError
from ..models import check_lm
from .linear_probe import control_labels
from .structural_probe import one_thread
from .trees import tree_depths
from .word_vectors import word_vectors

TASKS = ("upos", "deprel", "depth")
DEPTH_CAP = 4


@dataclass
class EdgeProbeResult:
    """`layers`: task, layer, metric ("mix_weight", "cumulative_accuracy", "delta"), value.
    `summary`: task, metric ("accuracy", "control_accuracy", "selectivity", "majority",
    "expected_layer", "center_of_gravity", "n_train", "n_test", and with `mdl` the code lengths),
    value. Both carry the model's name."""

    layers: pd.DataFrame
    summary: pd.DataFrame


def task_examples(frame: pd.DataFrame, task: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows (N, spans) into `frame`, labels (N,), types (N,)) of one task."""
    base = np.arange(len(frame)) - frame[S.WORD_ID].to_numpy()   # row of each sentence's word 0
    words = frame[S.WORD].to_numpy(str)
    if task == "upos":
        return np.arange(len(frame))[:, None], frame[S.POS].to_numpy(str), words
    if task == "depth":
        depth = np.concatenate([tree_depths(g[S.DEP_HEAD].to_numpy())
                                for _, g in frame.groupby(S.TEXT_ID, sort=False)])
        labels = np.where(depth >= DEPTH_CAP, f"{DEPTH_CAP}+", depth.astype(str))
        return np.arange(len(frame))[:, None], labels, words
    heads = frame[S.DEP_HEAD].to_numpy()
    dep = np.flatnonzero(heads >= 0)                              # every word but the root
    head = base[dep] + heads[dep]
    rel = np.array([r.split(":")[0] for r in frame[S.RELATION].to_numpy(str)[dep]])
    types = np.char.add(np.char.add(words[head], "|"), words[dep])
    return np.stack([head, dep], axis=1), rel, types


class _Probe(nn.Module):
    def __init__(self, n_layers: int, dim: int, n_spans: int, n_classes: int, proj: int, hidden: int):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(n_layers))          # scalar mix logits
        self.gamma = nn.Parameter(torch.ones(()))
        self.proj = nn.Linear(dim, proj)
        self.mlp = nn.Sequential(nn.Linear(proj * n_spans, hidden), nn.Tanh(),
                                 nn.LayerNorm(hidden), nn.Linear(hidden, n_classes))

    def mix(self, x: torch.Tensor) -> torch.Tensor:          # (B, spans, L, D) -> (B, spans, D)
        return self.gamma * torch.einsum("l,bsld->bsd", torch.softmax(self.w, 0), x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.proj(self.mix(x)).flatten(1))    # (B, classes)


def _train(x_all, rows_tr, y_tr, rows_te, y_te, n_classes, opts, seed) -> tuple[float, _Probe]:
    """Fit one probe on the layers in x_all (N_words, L, D); accuracy on the test rows."""
    torch.manual_seed(seed)
    probe = _Probe(x_all.shape[1], x_all.shape[2], rows_tr.shape[1], n_classes, opts["proj"],
                   opts["hidden"])
    opt = torch.optim.Adam(probe.parameters(), lr=opts["lr"])
    gen = torch.Generator().manual_seed(seed)
    y_tr_t = torch.as_tensor(y_tr)
    for _ in range(opts["epochs"]):
        for idx in torch.randperm(len(y_tr), generator=gen).split(opts["batch_size"]):
            opt.zero_grad()
            logits = probe(x_all[torch.as_tensor(rows_tr)[idx]])
            nn.functional.cross_entropy(logits, y_tr_t[idx]).backward()
            opt.step()
    with torch.no_grad():
        pred = torch.cat([probe(x_all[torch.as_tensor(r)]).argmax(-1)
                          for r in np.array_split(rows_te, max(1, len(rows_te) // 2048))])
    return float((pred.numpy() == y_te).mean()), probe


def _split(frame: pd.DataFrame, test_size: float, seed: int) -> np.ndarray:
    """Boolean (N_words,) test mask, split by text."""
    texts = frame[S.TEXT_ID].unique()
    rng = np.random.default_rng(seed)
    n_test = max(1, int(round(test_size * len(texts))))
    test = set(rng.permutation(texts)[:n_test].tolist())
    return frame[S.TEXT_ID].isin(test).to_numpy()


def _encode(labels: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Class indices of `labels` in the training `values`; -1 (always wrong) for unseen labels."""
    y = np.searchsorted(values, labels).clip(0, len(values) - 1)
    return np.where(values[y] == labels, y, -1)


def expected_layer(weights, layer_ids) -> float:
    """Tenney et al. 2019b eq. 1: E_s[l] = sum_l l * s_l over the mixing weights."""
    return float((np.asarray(layer_ids) * np.asarray(weights)).sum())


def center_of_gravity(scores, layer_ids) -> float:
    """Tenney et al. 2019b eq. 2: sum_{l>=1} l * Delta(l) / sum_{l>=1} Delta(l), Delta(l) =
    score(l) - score(l-1) of the cumulative probes; NaN when the deltas sum to zero."""
    deltas = np.diff(np.asarray(scores, dtype=float))
    total = deltas.sum()
    return float((np.asarray(layer_ids)[1:] * deltas).sum() / total) if total != 0 else float("nan")


def _run_task(x_all, layer_ids, frame, is_test, task, opts, control, mdl, seed):
    """Layer rows and summary rows of one task (layers numbered as `layer_ids`)."""
    rows, labels, types = task_examples(frame, task)
    te = is_test[rows[:, 0]]
    values = np.unique(labels[~te])
    if len(values) < 2:
        raise InputError(f"task {task!r}: the training split holds {len(values)} label(s); pass "
                         "more sentences")
    y = _encode(labels, values)
    ids = np.asarray(layer_ids)
    n_layers = x_all.shape[1]
    layer_rows, cum = [], []
    for top in range(n_layers):                         # P(l): layers 0..l
        acc, probe = _train(x_all[:, :top + 1], rows[~te], y[~te], rows[te], y[te], len(values),
                            opts, seed)
        cum.append(acc)
        layer_rows.append((ids[top], "cumulative_accuracy", acc))
        if top:
            layer_rows.append((ids[top], "delta", acc - cum[top - 1]))
    weights = torch.softmax(probe.w.detach(), 0).numpy()
    layer_rows += [(ids[j], "mix_weight", float(w)) for j, w in enumerate(weights)]
    summary = [("accuracy", cum[-1]), ("n_train", float((~te).sum())), ("n_test", float(te.sum())),
               ("majority", float((y[te] == np.bincount(y[~te]).argmax()).mean())),
               ("expected_layer", expected_layer(weights, ids)),
               ("center_of_gravity", center_of_gravity(cum, ids))]
    ctrl = None
    if control:  # one random label per type, shared by train and test
        ctrl = control_labels(types, labels, seed)
        yc = _encode(ctrl, values)
        cacc, _ = _train(x_all, rows[~te], yc[~te], rows[te], yc[te], len(values), opts, seed)
        summary += [("control_accuracy", cacc), ("selectivity", cum[-1] - cacc)]
    if mdl:
        from .mdl import mdl_rows

        with torch.no_grad():
            mixed = probe.mix(x_all[torch.as_tensor(rows)]).flatten(1).numpy()
        groups = frame[S.TEXT_ID].to_numpy()[rows[:, 0]]
        summary += mdl_rows(mixed, labels, ctrl, groups=groups, seed=seed)
    return layer_rows, summary


def _stack(parts, test_size: float, seed: int):
    """One word frame, its (N_words, L, D) vectors and the test mask, from the kept sentences of
    `data` (and `test`, whose text ids are shifted past data's)."""
    frames, stacks = [], []
    for p in parts:
        keep = np.repeat(p.kept, np.diff(p.offsets))                  # (N_words,) bool
        frames.append(p.frame[keep])
        stacks.append(np.stack([p.layer(lay) for lay in p.layers], axis=1)[keep])
    if len(parts) == 2:
        shift = frames[0][S.TEXT_ID].max() + 1
        frames[1] = frames[1].assign(**{S.TEXT_ID: frames[1][S.TEXT_ID] + shift})
    frame = pd.concat(frames, ignore_index=True)
    is_test = (np.arange(len(frame)) >= len(frames[0]) if len(parts) == 2
               else _split(frame, test_size, seed))
    return frame, torch.from_numpy(np.concatenate(stacks)), is_test


def edge_probe(lm, data, *, tasks=TASKS, test=None, test_size: float = 0.25, layers="all",
               epochs: int = 5, batch_size: int = 64, lr: float = 1e-3, proj: int = 128,
               hidden: int = 128, control: bool = True, mdl: bool = False, seed: int = 0,
               progress: bool = False, cache: bool = True) -> EdgeProbeResult:
    """Edge probing of UD-derived tasks over a scalar mix of `layers` (see module docstring).

    `data` (and `test`): CoNLL-U paths or `wb.read_conll(path, format="conllu")` frames; without
    `test`, `test_size` of the sentences of `data` are held out. Returns `EdgeProbeResult`.
    """
    check_lm(lm)
    tasks = check_sequence("tasks", tasks)
    for t in tasks:
        check_choice("tasks", t, TASKS)
    check_int("epochs", epochs, minimum=1), check_int("batch_size", batch_size, minimum=1)
    check_int("proj", proj, minimum=1), check_int("hidden", hidden, minimum=1)
    check_finite("lr", lr, low=0, low_open=True)
    check_finite("test_size", test_size, low=0, high=1, low_open=True, high_open=True)
    parts = [word_vectors(lm, d, layers=layers, progress=progress, cache=cache, what=name)
             for d, name in ((data, "data"), (test, "test")) if d is not None]
    frame, x_all, is_test = _stack(parts, test_size, seed)
    opts = dict(epochs=epochs, batch_size=batch_size, lr=lr, proj=proj, hidden=hidden)
    layer_rows, summary_rows = [], []
    for task in tasks:
        with one_thread():
            lr_rows, sm_rows = _run_task(x_all, parts[0].layers, frame, is_test, task, opts,
                                         control, mdl, seed)
        layer_rows += [(task, int(j), m, v) for j, m, v in lr_rows]
        summary_rows += [(task, m, v) for m, v in sm_rows]
    lay = pd.DataFrame(layer_rows, columns=[S.TASK, S.LAYER, S.METRIC, S.VALUE])
    summ = pd.DataFrame(summary_rows, columns=[S.TASK, S.METRIC, S.VALUE])
    for df in (lay, summ):
        df.insert(0, S.MODEL, lm.name)
    return EdgeProbeResult(layers=lay, summary=summ)
