"""Tiny random models for tests, notebooks in test mode and examples.

`make_tiny_model(folder)` trains a real byte-level BPE tokenizer in about a second on text that is
always available offline (the standard library's `pydoc_data` topics), builds a 2-layer RoBERTa
with random weights and writes both with `save_pretrained`, so callers exercise the real
`wb.load` path. Not imported by the library itself.
"""

from __future__ import annotations

import re
from pathlib import Path


def offline_text(max_chars: int | None = None) -> list[str]:
    """Paragraphs of English prose from the standard library's pydoc topics (always installed)."""
    from pydoc_data.topics import topics

    paras = []
    for body in topics.values():
        for p in re.split(r"\n\s*\n", body):
            p = " ".join(p.split())
            if len(p) > 40 and not p.startswith(("*", ">>>", "|", "-")):
                paras.append(p)
    if max_chars:
        out, total = [], 0
        for p in paras:
            out.append(p)
            total += len(p)
            if total >= max_chars:
                break
        return out
    return paras


def make_tiny_model(folder: str | Path, *, vocab_size: int = 1000, hidden_size: int = 32,
                    num_layers: int = 2, num_heads: int = 4, max_positions: int = 130,
                    seed: int = 0, head: str = "mlm", num_labels: int = 2) -> Path:
    """Write a tiny random RoBERTa (`head` = 'mlm', 'classifier' or 'encoder') to `folder`."""
    import torch
    from transformers import (RobertaConfig, RobertaForMaskedLM,
                              RobertaForSequenceClassification, RobertaModel)

    from .training.tokenizer import train_bpe_tokenizer

    folder = Path(folder)
    tok = train_bpe_tokenizer(offline_text(200_000), folder, vocab_size=vocab_size,
                              model_max_length=max_positions - 2)
    config = RobertaConfig(
        vocab_size=len(tok), hidden_size=hidden_size, num_hidden_layers=num_layers,
        num_attention_heads=num_heads, intermediate_size=hidden_size * 2,
        max_position_embeddings=max_positions, pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, type_vocab_size=1,
        num_labels=num_labels, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )
    torch.manual_seed(seed)
    cls = {"mlm": RobertaForMaskedLM, "classifier": RobertaForSequenceClassification,
           "encoder": RobertaModel}[head]
    model = cls(config)
    model.save_pretrained(folder)
    return folder


def run_two_processes(script: str, args: list[str], folder: str | Path, port: int | None = None) -> None:
    """Run Python source `script` with `args` under `torch.distributed.run`: 2 CPU processes on
    gloo, as a multi-GPU launch would run them (each sees WORLD_SIZE, RANK, LOCAL_RANK). `port`
    None takes a free one (two launches at once on one machine must not share it). Raises
    AssertionError with the end of stderr when the launch fails."""
    import os
    import socket
    import subprocess
    import sys

    if port is None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]

    path = Path(folder) / "two_processes.py"
    path.write_text(script)
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", str(port), str(path), *map(str, args)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def chain_logprob_by_loop(lm, text: str, positions: list[int]) -> float:
    """Oracle for chain scoring: log P of the tokens at `positions` of `text`, left to right, each
    predicted with itself and the later ones masked and every other token (a prefix touching the
    mask included) as it is; one plain forward per position, in float64 log-softmax."""
    import torch

    ids = torch.tensor(lm.tokenizer(text)["input_ids"])
    total = 0.0
    for k, p in enumerate(positions):
        x = ids.clone()
        x[positions[k:]] = lm.tokenizer.mask_token_id
        with torch.no_grad():
            logits = lm.model(input_ids=x[None].to(lm.device)).logits[0, p]
        total += float(torch.log_softmax(logits.double(), -1)[ids[p]])
    return total


def value_zeroing_by_full_forwards(lm, text: str):
    """Oracle for value zeroing (Mohebbi et al. 2023): (L, T, T) distances, one full forward
    pass of the stock model per (layer, zeroed token j) with a hook zeroing j's value vectors in
    that layer; entry [l, i, j] = 1 - cosine(token i's layer-l output, the clean one), clamped
    at 0 (not row-normalised)."""
    import torch
    import torch.nn.functional as F

    from .capture import attention_modules, encode, hooks

    inputs = encode(lm, [text]).inputs

    def hidden(pairs=()):  # each layer's output for the one text: L + 1 of (T, D)
        with torch.no_grad(), hooks(pairs):
            out = lm.encoder(**inputs, output_hidden_states=True, return_dict=True)
        return [h[0].float() for h in out.hidden_states]

    clean = hidden()
    n_tokens = clean[0].shape[0]
    out = torch.empty(lm.num_layers, n_tokens, n_tokens)
    for layer, part in enumerate(attention_modules(lm)):
        for j in range(n_tokens):
            def zero(module, args, values, j=j):
                values = values.clone()
                values[:, j] = 0.0
                return values
            zeroed = hidden([(part.value, zero, "forward")])
            out[layer, :, j] = 1 - F.cosine_similarity(zeroed[layer + 1], clean[layer + 1], dim=-1)
    return out.clamp_min(0)


def browser_for_tests():
    """(playwright's sync_playwright, browser path) for the browser tests, or a pytest skip.

    The browser is the one static export would use (`workbench.browser.find_browser`). Without
    one the test skips with the reason, unless WORKBENCH_REQUIRE_BROWSER=1 (CI's full run), where
    a missing browser is a failure.
    """
    import os

    import pytest

    from .browser import ENABLE_HINT, find_browser

    required = os.environ.get("WORKBENCH_REQUIRE_BROWSER") == "1"
    exe = find_browser()
    if exe is None:
        msg = f"no Chrome/Chromium on this machine: {ENABLE_HINT}"
        pytest.fail(msg + " (WORKBENCH_REQUIRE_BROWSER=1)") if required else pytest.skip(msg)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        msg = "playwright is not installed (pip install -e '.[dev]')"
        pytest.fail(msg) if required else pytest.skip(msg)
    return sync_playwright, exe
