import json, os, sys, time, tempfile, statistics
sys.path.insert(0, "/work/main/benchmarks")
from pathlib import Path
from bench_corpus_memory import make_corpus, _split_encode
import datasets
import workbench as wb
from workbench.training.corpus import _clean_backend, pack
from workbench.training.token_store import TextSource
tok = wb.load("demo", device="cpu").tokenizer
tmp = Path(tempfile.mkdtemp()); corpus = tmp / "tok.txt"
size = make_corpus(corpus, float(sys.argv[1]), seed=1); mb = size / 2**20
source = TextSource.from_files(corpus)
jsonl = tmp / "tok.jsonl"
with open(jsonl, "w", encoding="utf-8") as f:
    for doc in source.texts():
        f.write(json.dumps({"text": doc}) + "\n")
res = {"np1": [], "np2": [], "peer": []}
for r in range(int(sys.argv[2])):
    for side in (["np1", "np2", "peer"] if r % 2 == 0 else ["peer", "np2", "np1"]):
        s = time.perf_counter()
        if side == "peer":
            ds = datasets.load_dataset("json", data_files=str(jsonl), split="train", cache_dir=str(tmp / f"hf{r}"))
            ds.map(_split_encode(_clean_backend(tok)), batched=True, num_proc=2, remove_columns=["text"])
        else:
            pack(source, tok, seq_len=128, cache_dir=tmp / f"{side}{r}", num_proc=int(side[-1]))
        res[side].append(mb / (time.perf_counter() - s))
    print(r, {k: round(v[-1], 2) for k, v in res.items()}, os.getloadavg(), flush=True)
print({k: round(statistics.median(v), 2) for k, v in res.items()})
