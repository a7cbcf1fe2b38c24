"""Both training configs share one vocabulary; the old spellings keep working for one release."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from workbench.errors import InputError
from workbench.training.configs import RENAMED_FIELDS, FineTuneConfig, PretrainConfig


def test_shared_settings_have_one_name_in_both_configs():
    pre = {f.name for f in dataclasses.fields(PretrainConfig)}
    fine = {f.name for f in dataclasses.fields(FineTuneConfig)}
    for name in ("learning_rate", "grad_accumulation", "batch_size", "max_steps", "warmup_steps",
                 "weight_decay", "max_grad_norm", "seed", "precision", "device", "eval_every",
                 "checkpoint_every", "checkpoint_minutes", "keep_checkpoints", "log_every"):
        assert name in pre and name in fine, name
    assert not (set(RENAMED_FIELDS) & (pre | fine))


def test_old_names_work_with_a_future_warning():
    with pytest.warns(FutureWarning, match="use learning_rate"):
        cfg = PretrainConfig(lr=5e-4, grad_accumulation=2)
    assert cfg.learning_rate == 5e-4
    with pytest.warns(FutureWarning, match=r"\.grad_accumulation"):
        assert cfg.grad_accum == 2
    with pytest.warns(FutureWarning):
        assert PretrainConfig.from_preset("tiny", lr=2e-3).learning_rate == 2e-3
    with pytest.raises(InputError, match="learning_rate= only"):
        PretrainConfig(lr=1e-3, learning_rate=1e-3)
    with pytest.raises(AttributeError):
        cfg.colour  # noqa: B018 - an unknown attribute is still an error


def test_a_config_saved_by_an_earlier_release_loads():
    saved = {**PretrainConfig().to_dict()}
    saved["lr"], saved["grad_accum"] = saved.pop("learning_rate"), saved.pop("grad_accumulation")
    saved["lr"] = 3e-4
    assert PretrainConfig.from_dict(saved).learning_rate == 3e-4


def test_old_cli_flag_works_and_says_so(tmp_path):

    code = ("import sys; from workbench.cli import build_parser; "
            "a = build_parser().parse_args(['pretrain', 'x.txt', '--lr', '0.002']); "
            "from workbench.training.flags import given_fields; print(given_fields(a))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "'learning_rate': 0.002" in done.stdout
    assert "--lr is deprecated, use --learning-rate" in done.stderr


def test_auto_learning_rate_is_resolved_by_the_config():
    auto = FineTuneConfig()
    assert auto.learning_rate == 0.0  # "auto"
    assert auto.peak_learning_rate(768) == 2e-5 and auto.peak_learning_rate(384) == 1e-4
    assert FineTuneConfig(learning_rate=3e-5).peak_learning_rate(384) == 3e-5
