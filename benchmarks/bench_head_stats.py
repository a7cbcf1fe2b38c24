"""wb.head_stats over 2,000 sentences vs the obvious per-sentence loop, same model, same run.

The peer is what a bertviz user writes: the model loaded with eager attention, one sentence at a
time through `output_attentions=True`, and the same statistics reduced per sentence with numpy
(vectorised over layers and heads, so the peer is not handicapped by Python loops). Ours streams
length-sorted batches and reduces each batch's maps on the device. Both results are compared
(max abs difference in the notes) so the speed is for the same numbers.

Memory: on CUDA `torch.cuda.max_memory_allocated` around each; on CPU the peak growth of the
process's resident memory, sampled every millisecond (torch's CPU tensors are invisible to
tracemalloc), after returning freed memory to the OS between the two.

Model: the embedded default model when it is built, else a random RoBERTa of the same kind of
size (4 layers, 256 wide); on a GPU a roberta-base-shaped random model. Quick mode: 100
sentences on the tiny test model.
"""

from __future__ import annotations

import ctypes
import os
import re
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch


def sentences(n: int) -> list[str]:
    from workbench.testing import offline_text

    out = []
    for para in offline_text():
        for s in re.split(r"(?<=[.!?])\s+", para):
            if 4 <= len(s.split()) <= 60:
                out.append(s)
    if len(out) < n:
        out = (out * (n // max(len(out), 1) + 1))
    return out[:n]


def _model_folder(tmp: Path, quick: bool, cuda: bool) -> tuple[str, str]:
    """(folder or 'demo', description)."""
    from workbench.resources import demo_model_dir
    from workbench.testing import make_tiny_model

    if quick:
        return str(make_tiny_model(tmp / "tiny")), "tiny random RoBERTa (2 layers, 32 wide)"
    if cuda:
        folder = make_tiny_model(tmp / "base", hidden_size=768, num_layers=12, num_heads=12,
                                 max_positions=514)
        return str(folder), "roberta-base-shaped random model (12 layers, 768 wide, 12 heads)"
    if (demo_model_dir() / "config.json").exists():
        return "demo", "the embedded default model"
    folder = make_tiny_model(tmp / "small", hidden_size=256, num_layers=4, num_heads=4,
                             max_positions=130)
    return str(folder), "random RoBERTa (4 layers, 256 wide, 4 heads)"


def _peer_stats(model, tokenizer, texts, device) -> np.ndarray:
    """The per-sentence loop: (L, H, 14) means of the same statistics as head_stats."""
    from workbench.analysis.heads import is_punctuation

    sums, count = None, 0
    bos_ids = {tokenizer.cls_token_id, tokenizer.bos_token_id} - {None}
    eos_ids = {tokenizer.sep_token_id, tokenizer.eos_token_id} - {None}
    for text in texts:
        enc = tokenizer(text, return_tensors="pt", truncation=True, return_offsets_mapping=True)
        offsets = enc.pop("offset_mapping")[0].tolist()
        with torch.no_grad():
            out = model(**{k: v.to(device) for k, v in enc.items()}, output_attentions=True)
        a = torch.stack(out.attentions)[:, 0].float().cpu().numpy()   # (L, H, n, n)
        ids = enc["input_ids"][0].tolist()
        n = len(ids)
        bos = np.array([i in bos_ids for i in ids])
        eos = np.array([i in eos_ids for i in ids])
        punct = np.array([not (i in bos_ids or i in eos_ids) and is_punctuation(text[s:e])
                          for i, (s, e) in zip(ids, offsets)])
        pos = np.arange(n)
        top = a.argmax(-1)                                             # (L, H, n)
        with np.errstate(divide="ignore", invalid="ignore"):
            ent = -np.where(a > 0, a * np.log(a), 0.0).sum(-1)
        prev = np.concatenate([np.zeros(a.shape[:2] + (1,)), np.diagonal(a, -1, 2, 3)], -1)
        nxt = np.concatenate([np.diagonal(a, 1, 2, 3), np.zeros(a.shape[:2] + (1,))], -1)
        per_query = np.stack([
            a[..., bos].sum(-1), a[..., eos].sum(-1), a[..., punct].sum(-1),
            np.diagonal(a, 0, 2, 3), prev, nxt,
            (a * np.abs(pos[None, :] - pos[:, None])).sum(-1), ent,
            bos[top], eos[top], punct[top], top == pos, top == pos - 1, top == pos + 1,
        ], -1)                                                         # (L, H, n, 14)
        s = per_query.sum(2)
        sums = s if sums is None else sums + s
        count += n
    return sums / count


class _PeakRSS:
    """Peak growth of resident memory while the block runs (sampled every millisecond)."""

    def __enter__(self):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except OSError:
            pass
        self.base = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _sample(self):
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, self._rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    @property
    def mib(self) -> float:
        return (self.peak - self.base) / 2**20


def _measure(fn, cuda: bool):
    """(result, seconds, peak MiB)."""
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        t0 = time.perf_counter()
        result = fn()
        torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        return result, seconds, (torch.cuda.max_memory_allocated() - base) / 2**20
    with _PeakRSS() as mem:
        t0 = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - t0
    return result, seconds, mem.mib


def run(quick: bool = False) -> list[dict]:
    from transformers import AutoModel

    import workbench as wb
    from workbench.analysis.heads import STATS

    cuda = torch.cuda.is_available()
    n = 100 if quick else 2000
    texts = sentences(n)
    batch_size = 64 if cuda else 32
    with tempfile.TemporaryDirectory() as tmp:
        source, what = _model_folder(Path(tmp), quick, cuda)
        lm = wb.load(source, device="auto", dtype="float32")
        peer_model = AutoModel.from_pretrained(lm.path, attn_implementation="eager",
                                               dtype=torch.float32).to(lm.device).eval()
        tok = lm.tokenizer
        wb.head_stats(lm, texts[:8], progress=False)                  # warm-up both
        _peer_stats(peer_model, tok, texts[:8], lm.device)
        ours, ours_s, ours_mib = _measure(
            lambda: wb.head_stats(lm, texts, batch_size=batch_size, progress=False), cuda)
        peer, peer_s, peer_mib = _measure(
            lambda: _peer_stats(peer_model, tok, texts, lm.device), cuda)
    L, H = lm.num_layers, lm.num_heads
    diff = float(np.abs(ours[list(STATS)].to_numpy().reshape(L, H, -1) - peer).max())
    device = torch.cuda.get_device_name(0) if cuda else "CPU"
    note = (f"{n} sentences, {what}, fp32, batch {batch_size}, {device}; "
            f"max |ours - peer| over all statistics {diff:.1e}")
    mem_what = "torch.cuda.max_memory_allocated" if cuda else "peak RSS growth, sampled"
    return [
        {"benchmark": "head_stats", "measure": "throughput", "unit": "sentences/s",
         "ours": n / ours_s, "peer": n / peer_s, "peer_name": "per-sentence output_attentions loop",
         "higher_is_better": True, "notes": note},
        {"benchmark": "head_stats", "measure": "peak memory", "unit": "MiB",
         "ours": ours_mib, "peer": peer_mib, "peer_name": "per-sentence output_attentions loop",
         "higher_is_better": False, "notes": f"{mem_what}; {note}"},
    ]


if __name__ == "__main__":
    import sys

    for row in run(quick="--quick" in sys.argv):
        print(row)
