"""wb.load: local folders, run folders, attention that is never silently empty, clear errors."""

from __future__ import annotations

import shutil

import pytest
import torch

import workbench as wb
from workbench.capture import encode, forward
from workbench.store import Run


def test_load_local_folder_gives_mlm_on_sdpa(tiny_lm):
    assert tiny_lm.kind == "mlm" and tiny_lm.has_mlm_head
    assert tiny_lm.device.type == "cpu" and tiny_lm.dtype == torch.float32
    assert tiny_lm.config._attn_implementation == "sdpa"  # fast path by default
    assert "RobertaForMaskedLM" in type(tiny_lm.model).__name__


def test_sdpa_alone_returns_empty_attentions_and_capture_does_not(tiny_lm):
    batch = encode(tiny_lm, ["The cat sat on the mat.", "Short."])
    with torch.inference_mode():
        raw = tiny_lm.encoder(**batch.inputs, output_attentions=True)
    # the transformers-5 trap this package exists to avoid
    assert not raw.attentions
    out = forward(tiny_lm, batch, attentions=True)
    assert len(out.attentions) == tiny_lm.num_layers
    B, T = batch.inputs["input_ids"].shape
    assert out.attentions[0].shape == (B, tiny_lm.num_heads, T, T)
    # sdpa is restored afterwards, so training and inference stay fast
    assert tiny_lm.config._attn_implementation == "sdpa"
    # rows of real (non-padded) queries sum to one
    n = batch.lengths[1]
    rows = out.attentions[0][1, :, :n, :n].sum(-1)
    assert torch.allclose(rows, torch.ones_like(rows), atol=1e-5)


def test_eager_and_sdpa_give_the_same_hidden_states(tiny_lm):
    batch = encode(tiny_lm, ["A sentence to compare."])
    fast = forward(tiny_lm, batch).last_hidden_state
    slow = forward(tiny_lm, batch, attentions=True).last_hidden_state
    assert torch.allclose(fast, slow, atol=1e-5)


def test_device_cuda_without_gpu_is_a_clear_error(tiny_model_dir):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU; the error path cannot be exercised")
    with pytest.raises(wb.DeviceError, match="no CUDA GPU"):
        wb.load(tiny_model_dir, device="cuda")


def test_unknown_name_offline_is_a_clear_error():
    with pytest.raises(wb.ModelNotFoundError, match="not in the local cache.*local folder"):
        wb.load("nobody/no-such-model-xyz")


def test_missing_folder_and_folder_without_weights(tmp_path, tiny_model_dir):
    with pytest.raises(wb.ModelNotFoundError, match="no such folder"):
        wb.load(str(tmp_path / "absent") if str(tmp_path).startswith("/") else "./absent")
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "model.safetensors").unlink()
    with pytest.raises(wb.ModelNotFoundError, match="no weights"):
        wb.load(broken)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(wb.ModelNotFoundError, match="no config.json"):
        wb.load(empty)


def test_checkpoint_without_mlm_head_loads_encoder_and_says_so(tiny_encoder_dir):
    lm = wb.load(tiny_encoder_dir, device="cpu")
    assert lm.kind == "encoder" and not lm.has_mlm_head
    with pytest.raises(wb.MissingHeadError, match="fill-mask.*masked-LM head.*Attention"):
        lm.require_mlm_head("fill-mask")
    out = forward(lm, encode(lm, ["Attention still works."]), attentions=True)
    assert len(out.attentions) == lm.num_layers


def test_run_folder_loads_its_latest_complete_checkpoint(tmp_path, tiny_lm):
    run = Run.create("finetune", {"lr": 1e-3}, name="unit", base_model=tiny_lm.name,
                     root=tmp_path / "runs")
    with pytest.raises(wb.ModelNotFoundError, match="no complete checkpoint"):
        wb.load(run.path)
    for step in (10, 20):
        with run.writing_checkpoint(step) as folder:
            tiny_lm.model.save_pretrained(folder)
            tiny_lm.tokenizer.save_pretrained(folder)
    # an interrupted write leaves a temp folder that must be ignored
    (run.path / "checkpoints" / ".tmp-step-00000030-dead").mkdir()
    lm = wb.load(run.path, device="cpu")
    assert lm.path.endswith("step-00000020")
    assert run.id in lm.name
    assert Run.open(run.id, root=tmp_path / "runs").path == run.path
    assert list(wb.runs(tmp_path / "runs")["id"]) == [run.id]


def test_bad_task_argument():
    with pytest.raises(ValueError, match="task="):
        wb.load("demo", task="nonsense")
