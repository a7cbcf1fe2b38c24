"""GPU checks (marker `gpu`, deselected by default): run with `pytest -m gpu` on a CUDA machine."""

from __future__ import annotations

import pytest
import torch

import workbench as wb
from workbench.capture import encode, forward

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def cuda_lm(tiny_model_dir):
    if not torch.cuda.is_available():
        pytest.fail("the gpu marker was selected but torch sees no CUDA device")
    return wb.load(tiny_model_dir)  # device="auto", dtype="auto"


def test_auto_picks_cuda_and_bf16(cuda_lm):
    assert cuda_lm.device.type == "cuda"
    assert cuda_lm.dtype == (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32)


def test_attention_on_gpu_is_real_and_matches_cpu(cuda_lm, tiny_lm):
    texts = ["The cat sat on the mat.", "A longer sentence with a few more words in it."]
    gpu = forward(cuda_lm, encode(cuda_lm, texts), attentions=True).attentions
    cpu = forward(tiny_lm, encode(tiny_lm, texts), attentions=True).attentions
    assert len(gpu) == cuda_lm.num_layers
    for g, c in zip(gpu, cpu):
        assert torch.allclose(g.float().cpu(), c, atol=2e-2)  # bf16 tolerance
    assert cuda_lm.config._attn_implementation == "sdpa"
