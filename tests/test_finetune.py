"""Fine-tuning end to end on a tiny model: it learns, it resumes exactly, it survives a SIGKILL.

Oracles: chance accuracy (0.5) for learning; for resume, an uninterrupted run with the same config
(weights and optimizer tensors must be identical, step by step losses equal); for crashes, a child
process killed with SIGKILL in the middle of writing a checkpoint.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

import workbench as wb
from workbench.testing import run_two_processes
from workbench.training.events import StopFlag
from workbench.training.finetune import (FineTuneConfig, collate, finetune, length_grouped_batches,
                                        pad_multiple)

FILL = ["the", "film", "was", "a", "story", "of", "it", "and", "plot", "with", "some", "scenes"]


def separable(n: int = 160, seed: int = 0, labels=("neg", "pos")) -> pd.DataFrame:
    """Each text holds one cue word ('excellent' or 'dreadful') among random filler words."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        y = i % 2
        words = list(rng.choice(FILL, rng.integers(3, 9)))
        words.insert(int(rng.integers(0, len(words) + 1)), "excellent" if y else "dreadful")
        rows.append({"text": " ".join(words), "label": labels[y]})
    return pd.DataFrame(rows)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


FAST = dict(learning_rate=3e-3, batch_size=16, weight_decay=0.0, device="cpu", log_every=1,
            validation_split=0.25, warmup_ratio=0.0)


def test_tiny_model_learns_a_separable_task(tiny_model_dir, run_root):
    data = separable(160)
    run = finetune(tiny_model_dir, data, config=FineTuneConfig(max_steps=30, eval_every=15, **FAST),
                   progress=False)
    assert run.status == "completed" and run.summary["steps"] == 30
    assert (run.info["attention"], run.info["precision"]) == ("sdpa", "fp32")  # CPU default
    assert run.summary["eval_accuracy"] >= 0.9, run.summary  # chance is 0.5
    evals = run.metrics("eval")
    assert list(evals["step"]) == [15, 30]
    assert evals["eval_loss"].iloc[-1] < np.log(2)  # below the loss of guessing
    # the checkpoint opens in the analyses as a classifier with the table's label names
    lm = wb.load(run, device="cpu")
    assert lm.kind == "classifier" and list(lm.config.id2label.values()) == ["neg", "pos"]
    pred = wb.classify(lm, ["the film was excellent", "the film was dreadful"])
    assert list(pred["label"]) == ["pos", "neg"]
    metrics, matrix = wb.evaluate_classifier(lm, separable(40, seed=7))
    assert metrics["accuracy"] >= 0.9 and int(matrix.to_numpy().sum()) == 40
    # ... and in the runs table
    table = wb.runs()
    assert run.id in set(table["id"]) and "eval_accuracy" in table.columns


def test_sentence_pairs_and_regression_train(tiny_model_dir, run_root):
    rng = np.random.default_rng(1)
    pairs = pd.DataFrame({"premise": [f"the film was {w}" for w in rng.choice(FILL, 48)],
                          "hypothesis": ["it was excellent" if i % 2 else "it was dreadful"
                                         for i in range(48)],
                          "gold": [0.9 if i % 2 else 0.1 for i in range(48)]})
    cfg = FineTuneConfig(text_column="premise", pair_column="hypothesis", label_column="gold",
                         max_steps=3, **FAST)
    run = finetune(tiny_model_dir, pairs, config=cfg, progress=False)
    assert run.summary["task"] == "regression" and run.summary["num_labels"] == 1
    assert {"eval_pearson", "eval_spearman", "eval_mse"} <= set(run.summary)
    lm = wb.load(run, device="cpu")
    scores = wb.classify(lm, ["the film was long"], ["it was excellent"])
    assert "score" in scores.columns and np.isfinite(scores["score"]).all()


def test_length_grouped_batches_cover_everything_once_and_group_lengths():
    lengths = list(np.random.default_rng(0).integers(3, 60, size=1000))
    batches = length_grouped_batches(lengths, 16, seed=3)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(1000))
    assert batches == length_grouped_batches(lengths, 16, seed=3)  # deterministic for resume
    assert batches != length_grouped_batches(lengths, 16, seed=4)
    spread = np.mean([max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches])
    rand = np.mean([np.ptp([lengths[i] for i in b]) for b in np.array_split(np.arange(1000), 63)])
    assert spread < rand / 3  # padding per batch far below random batching


def test_gpu_padding_rounds_lengths_up_to_8_and_leaves_the_logits_unchanged(tiny_model_dir):
    """On CUDA batches are padded to multiples of 8 (fewer shapes for cuDNN to plan): the extra
    padding must be masked out exactly, and never pass max_length."""
    assert pad_multiple(torch.device("cuda")) == 8 and pad_multiple(torch.device("cpu")) == 1
    lm = wb.load(tiny_model_dir, device="cpu")
    texts = ["the film was a story", "it and plot with some scenes of the film was", "a"]
    ids = {"input_ids": [lm.tokenizer(t)["input_ids"] for t in texts]}
    labels = np.array([0, 1, 0])
    exact = collate(ids, labels, [0, 1, 2], lm.tokenizer.pad_token_id, torch.device("cpu"))
    padded = collate(ids, labels, [0, 1, 2], lm.tokenizer.pad_token_id, torch.device("cpu"), 8)
    longest = max(len(x) for x in ids["input_ids"])
    assert exact["input_ids"].shape[1] == longest
    assert padded["input_ids"].shape[1] == -(-longest // 8) * 8 > longest
    capped = collate(ids, labels, [0, 1, 2], lm.tokenizer.pad_token_id, torch.device("cpu"), 8,
                     max_length=longest + 1)
    assert capped["input_ids"].shape[1] == longest + 1  # rounding stops at max_length
    lm.model.eval()
    with torch.no_grad():
        out = [lm.model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
               for b in (exact, padded)]
    for row, n in enumerate(len(x) for x in ids["input_ids"]):
        torch.testing.assert_close(out[1][row, :n], out[0][row, :n], atol=1e-5, rtol=1e-5)


def _state_tensors(run, step):
    return load_file(str(run.checkpoint(step) / "training_state.safetensors"))


def _weights(run, step=None):
    return load_file(str(run.checkpoint(step) / "model.safetensors"))


def _assert_same_tensors(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture()
def dropout_lm(tiny_model_dir):
    """The tiny model with dropout on, so resuming must also restore the RNG state."""
    lm = wb.load(tiny_model_dir, device="cpu")
    lm.config.hidden_dropout_prob = 0.1
    return lm


def test_stop_then_resume_matches_an_uninterrupted_run(dropout_lm, run_root):
    data = separable(96)
    cfg = FineTuneConfig(max_steps=10, eval_every=5, checkpoint_every=3, keep_checkpoints=2,
                         keep_optimizer_state=True, **FAST)  # compared below
    whole = finetune(dropout_lm, data, config=cfg, progress=False)

    stop = StopFlag()
    seen = []

    def stop_at_4(event):
        seen.append((event.kind, event.step))
        if event.kind == "step" and event.step == 4:
            stop.request()

    part = finetune(dropout_lm, data, config=cfg, stop=stop, callbacks=[stop_at_4], progress=False)
    assert part.status == "stopped" and [s for s, _ in part.checkpoints()] == [3, 4]
    assert seen[-1] == ("stopped", 4)
    # the newest two checkpoints keep the optimizer state while the run is live (the second is
    # the fallback if the newest is damaged: tests/test_integrity.py)
    assert (part.checkpoint(3) / "training_state.safetensors").exists()

    steps = []
    resumed = finetune(None, data, resume=part, progress=False,
                       callbacks=[lambda e: steps.append(e.step) if e.kind == "step" else None])
    assert resumed == part and resumed.status == "completed"
    assert steps[0] == 5 and steps[-1] == 10  # continues at the right step
    # same weights and optimizer state as never stopping, and the same loss at every step
    _assert_same_tensors(_state_tensors(resumed, 10), _state_tensors(whole, 10))
    _assert_same_tensors(_weights(resumed), _weights(whole))
    a, b = resumed.metrics("step"), whole.metrics("step")
    assert list(a["step"]) == list(b["step"]) == list(range(1, 11))  # no step twice
    assert a["loss"].tolist() == b["loss"].tolist()
    assert resumed.metrics("eval")["step"].tolist() == [5, 10]


_CHILD = textwrap.dedent("""
    import os, signal, sys
    import workbench.store as store
    import pandas as pd
    import torch
    from workbench.training.finetune import FineTuneConfig, finetune
    model, data_path, root, cfg_json, threads = sys.argv[1:6]
    torch.set_num_threads(int(threads))  # as the parent: same float reduction order
    real = store.RunFolder.writing_checkpoint
    calls = []

    def dying(self, step, keep_last=None, keep_steps=()):
        calls.append(step)
        if len(calls) == 2:  # the second checkpoint: die with the folder half written
            ctx = real(self, step, keep_last, keep_steps)
            tmp = ctx.__enter__()
            (tmp / "model.safetensors").write_bytes(b"partial")
            os.kill(os.getpid(), signal.SIGKILL)
        return real(self, step, keep_last, keep_steps)

    store.RunFolder.writing_checkpoint = dying
    cfg = FineTuneConfig.from_dict(__import__("json").loads(cfg_json))
    finetune(model, pd.read_csv(data_path), config=cfg, root=root, progress=False)
""")


def test_sigkill_while_writing_a_checkpoint_leaves_a_resumable_run(tiny_model_dir, tmp_path,
                                                                   run_root):
    data = separable(96)
    data_path = tmp_path / "data.csv"
    data.to_csv(data_path, index=False)
    cfg = FineTuneConfig(max_steps=8, eval_every=4, checkpoint_every=3, keep_checkpoints=10,
                         keep_optimizer_state=True, **FAST)  # the final states are compared
    child_root = tmp_path / "child_runs"
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(tiny_model_dir), str(data_path),
                           str(child_root), json.dumps(cfg.to_dict()), str(torch.get_num_threads())],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]

    (folder,) = [p for p in child_root.iterdir() if p.is_dir()]
    killed = wb.Run.open(folder)
    # it never got to say otherwise, but its process is gone: readers see it as interrupted
    assert killed.info["status"] == "running" and killed.status == "interrupted"
    assert set(wb.runs(child_root)["status"]) == {"interrupted"}
    # the second checkpoint, torn, is step 4's: the first evaluation, saved as the best so far
    assert [s for s, _ in killed.checkpoints()] == [3]  # the torn step-4 folder is not listed
    assert list(killed.metrics("step")["step"]) == list(range(1, 5))
    assert folder.name in set(wb.runs(child_root)["id"])  # the store still reads
    # the torn folder is invisible to wb.load too: the run opens at its last complete checkpoint
    assert wb.load(killed, device="cpu").config.num_labels == 2

    resumed = finetune(None, pd.read_csv(data_path), resume=killed, root=child_root,
                       progress=False)
    assert resumed.status == "completed" and resumed.summary["steps"] == 8
    whole = finetune(tiny_model_dir, pd.read_csv(data_path), config=cfg, progress=False)
    _assert_same_tensors(_weights(resumed), _weights(whole))
    _assert_same_tensors(_state_tensors(resumed, 8), _state_tensors(whole, 8))


def test_resume_refuses_other_data_or_config(tiny_model_dir, run_root):
    data = separable(64)
    cfg = FineTuneConfig(max_steps=4, checkpoint_every=2, **FAST)
    stop = StopFlag()
    stop.request()  # stop after the first step
    run = finetune(tiny_model_dir, data, config=cfg, stop=stop, progress=False)
    assert run.status == "stopped" and run.summary["steps"] == 1
    with pytest.raises(wb.InputError, match="data differ"):
        finetune(None, separable(64, seed=5), resume=run, progress=False)
    assert run.status == "stopped" and run.info["error"] is None  # refused before any write
    with pytest.raises(wb.InputError, match="learning_rate"):
        finetune(None, data, resume=run, config=cfg.replace(learning_rate=1e-4), progress=False)


def test_early_stopping_stops_when_the_metric_stalls(tiny_model_dir, run_root):
    data = separable(64)
    cfg = FineTuneConfig(max_steps=40, eval_every=1, early_stopping_patience=2,
                         early_stopping_metric="eval_accuracy",
                         **{**FAST, "learning_rate": 1e-9})  # accuracy cannot move at this rate
    run = finetune(tiny_model_dir, data, config=cfg, progress=False)
    assert run.status == "early_stopped"
    assert run.summary["steps"] == 3  # the first evaluation sets the best, two more fail to beat it
    assert len(run.metrics("eval")) == 3


def test_the_best_evaluation_is_kept_and_opened_by_load(tiny_model_dir, run_root):
    """The best evaluation's checkpoint survives keep_checkpoints=1, and wb.load(run) opens it
    (as the Trainer's load_best_model_at_end would); "latest" still opens the last one."""
    data = separable(64)
    cfg = FineTuneConfig(max_steps=6, eval_every=1, keep_checkpoints=1, checkpoint_every=3,
                         early_stopping_metric="eval_accuracy",
                         **{**FAST, "learning_rate": 1e-9})  # the first evaluation stays the best
    run = finetune(tiny_model_dir, data, config=cfg, progress=False)
    assert run.summary["best_step"] == 1 == run.best_step
    assert [s for s, _ in run.checkpoints()] == [1, 6]
    # a completed run keeps no optimizer state (keep_optimizer_state=False): both weights only
    assert not (run.checkpoint(1) / "training_state.json").exists()
    assert not (run.checkpoint(6) / "training_state.json").exists()
    from workbench.training.checkpoint import disk_mb

    assert run.summary["disk_mb"] == pytest.approx(disk_mb(run.path), abs=0.05)
    assert Path(wb.load(run, device="cpu").path) == run.checkpoint(1)
    assert Path(wb.load(run.path, device="cpu").path) == run.checkpoint(1)
    assert Path(wb.load(run, step="latest", device="cpu").path) == run.checkpoint(6)


@pytest.mark.gpu
def test_gpu_run_uses_bf16_autocast_and_sdpa_and_learns(tiny_model_dir, run_root):
    if not torch.cuda.is_available():
        pytest.fail("the gpu marker was selected but torch sees no CUDA device")
    cfg = FineTuneConfig(max_steps=30, eval_every=15, **{**FAST, "device": "auto"})
    run = finetune(tiny_model_dir, separable(160), config=cfg, progress=False)
    info = run.info
    assert info["device"].startswith("cuda")
    assert info["precision"] == ("bf16" if torch.cuda.is_bf16_supported() else "fp32")
    assert run.summary["eval_accuracy"] >= 0.9
    assert info["attention"] == "sdpa"
    weights = _weights(run)  # master weights stay fp32 in the checkpoint
    assert all(t.dtype == torch.float32 for t in weights.values())


# ----------------------------------------------------------------------------- several processes
# The torchrun / accelerate path of a multi-GPU machine, on CPU with gloo. Oracle: rank r of 2 takes
# every other batch, so one step of two processes is batches (2k, 2k+1); one process with
# grad_accumulation=2 takes the same pair per step and halves each loss, as the gradient all_reduce
# averages them. The two runs must agree to float rounding.

_DDP_CHILD = textwrap.dedent("""
    import json, sys
    import pandas as pd
    import torch
    torch.set_num_threads(1)
    from workbench.training.finetune import FineTuneConfig, finetune
    model, data_path, root, cfg_json = sys.argv[1:5]
    finetune(model, pd.read_csv(data_path), config=FineTuneConfig.from_dict(json.loads(cfg_json)),
             root=root, progress=False)
""")


def test_two_processes_match_one_with_gradient_accumulation(tiny_model_dir, tmp_path, run_root):
    data = separable(128)  # 96 training rows: 12 batches of 8, an even number per epoch
    data_path = tmp_path / "data.csv"
    data.to_csv(data_path, index=False)
    cfg = FineTuneConfig(max_steps=6, eval_every=3, **{**FAST, "batch_size": 8})
    root = tmp_path / "runs2"
    run_two_processes(_DDP_CHILD, [tiny_model_dir, data_path, root, json.dumps(cfg.to_dict())],
                      tmp_path)
    (folder,) = [p for p in root.iterdir() if p.is_dir()]  # rank 0 alone wrote a run
    two = wb.Run.open(folder)
    assert two.info["processes"] == 2 and two.status == "completed"

    one = finetune(tiny_model_dir, data, config=cfg.replace(grad_accumulation=2), progress=False)
    assert two.summary["examples_seen"] == one.summary["examples_seen"]
    # evaluation is sharded over the two processes and summed: the same numbers as one process
    assert len(two.metrics("eval")) == len(one.metrics("eval")) == 2
    for a, b in zip(two.metrics("eval")["eval_loss"], one.metrics("eval")["eval_loss"]):
        assert a == pytest.approx(b, abs=1e-5)
    assert two.metrics("eval")["eval_accuracy"].tolist() == one.metrics("eval")["eval_accuracy"].tolist()
    wa, wb_ = _weights(two), _weights(one)
    for k in wa:
        torch.testing.assert_close(wa[k], wb_[k], atol=1e-5, rtol=1e-4)


def test_ctrl_c_marks_the_run_interrupted_and_a_kill_before_any_checkpoint_restarts(
        tiny_model_dir, run_root):
    """KeyboardInterrupt in a callback -> "interrupted" (as in pretraining); with no checkpoint
    yet, resuming starts over at step 0 in the same run, with the killed attempt's rows gone."""
    data = separable(64)
    cfg = FineTuneConfig(max_steps=6, eval_every=3, checkpoint_every=100, **FAST)

    def ctrl_c(event):
        if event.kind == "step" and event.step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        finetune(tiny_model_dir, data, config=cfg, callbacks=[ctrl_c], progress=False)
    (run,) = [wb.Run.open(p) for p in run_root.iterdir() if not p.name.startswith(".")]
    assert run.info["status"] == "interrupted" and run.checkpoints() == []
    assert run.metrics("step")["step"].tolist() == [1, 2]
    resumed = finetune(None, data, resume=run.id, progress=False)  # the run's own base model
    whole = finetune(tiny_model_dir, data, config=cfg, progress=False)
    assert resumed.id == run.id and resumed.status == "completed"
    assert resumed.metrics("step")["step"].tolist() == list(range(1, 7))
    _assert_same_tensors(_weights(resumed), _weights(whole))


def test_a_wall_clock_interval_also_checkpoints(tiny_model_dir, run_root):
    cfg = FineTuneConfig(max_steps=3, eval_every=100, checkpoint_every=100, keep_checkpoints=5,
                         checkpoint_minutes=1e-9, **FAST)  # due after every step
    run = finetune(tiny_model_dir, separable(64), config=cfg, progress=False)
    assert [s for s, _ in run.checkpoints()] == [1, 2, 3]
    assert FineTuneConfig().checkpoint_minutes == 10.0  # the default: every 10 minutes


@pytest.mark.parametrize("field, value", [
    ("eval_every", -1), ("checkpoint_every", -2), ("log_every", 0), ("max_grad_norm", -1.0),
    ("weight_decay", -0.1), ("warmup_steps", -1), ("batch_size", "8"), ("learning_rate", -1e-4),
    ("learning_rate", float("inf")), ("checkpoint_minutes", -1.0), ("epochs", 1.5),
])
def test_every_bad_field_is_refused_at_construction(field, value):
    with pytest.raises(wb.InputError, match=field):
        FineTuneConfig(**{field: value})


def test_non_finite_regression_labels_are_refused_before_the_run_exists(tiny_model_dir, run_root):
    rows = pd.DataFrame({"text": [f"the film {w}" for w in FILL] * 4,
                         "score": [0.5] * 47 + [float("inf")]})
    with pytest.raises(wb.InputError, match="infinite or NaN"):
        finetune(tiny_model_dir, rows, config=FineTuneConfig(label_column="score", **FAST),
                 progress=False)
    assert not run_root.exists() or not [p for p in run_root.iterdir() if not p.name.startswith(".")]


def test_the_default_learning_rate_follows_the_model_size(tiny_model_dir, run_root):
    from transformers import RobertaConfig

    auto = FineTuneConfig(learning_rate=0.0)
    assert auto.peak_learning_rate(RobertaConfig(hidden_size=768).hidden_size) == 2e-5  # roberta-base
    assert auto.peak_learning_rate(384) == 1e-4  # the demo model
    assert FineTuneConfig(learning_rate=3e-5).peak_learning_rate(384) == 3e-5
    cfg = FineTuneConfig(**{**FAST, "learning_rate": 0.0}, max_steps=1)
    run = finetune(tiny_model_dir, separable(64), config=cfg, progress=False)
    assert run.summary["learning_rate"] == run.info["learning_rate"] == 1e-4
