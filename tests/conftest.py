"""Shared fixtures: offline mode, and tiny random models built once per session through wb.load."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WORKBENCH_RUNS", os.path.join(os.getcwd(), ".pytest_cache", "runs"))

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random RoBERTa with an MLM head and a real byte-level BPE tokenizer."""
    from workbench.testing import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def tiny_lm(tiny_model_dir):
    import torch

    import workbench as wb

    torch.manual_seed(0)
    return wb.load(tiny_model_dir, device="cpu")


@pytest.fixture(scope="session")
def sharp_tiny_lm(tiny_model_dir):
    """The tiny model with its encoder's matrices scaled x10. At init (std 0.02) the residual
    swamps attention: value zeroing moves outputs by ~1e-7, patches and pruned heads barely move
    the metric, and oracles on them could not fail. A copy of its own (tiny_lm is untouched)."""
    import torch

    import workbench as wb

    model = wb.load(tiny_model_dir, device="cpu")
    with torch.no_grad():
        for p in model.encoder.encoder.parameters():
            if p.dim() == 2:
                p.mul_(10.0)
    return model


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory):
    """The same kind of tiny model saved without an MLM head."""
    from workbench.testing import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny_enc") / "model", head="encoder")


@pytest.fixture()
def run_root(tmp_path, monkeypatch):
    """An empty run store root for one test."""
    root = tmp_path / "runs"
    monkeypatch.setenv("WORKBENCH_RUNS", str(root))
    return root


@pytest.fixture()
def one_torch_thread():
    """Tiny models train fastest on one thread (thread start-up costs more than their matmuls)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
