#!/usr/bin/env bash
# One lent-GPU session, prepared as a single command (the device is lent for minutes, not hours):
#   1. train the embedded default model (scripts/train_demo_model.py, --minutes of training),
#   2. pretraining throughput and MFU against transformers' Trainer (benchmarks/bench_pretrain.py),
#   3. fine-tuning throughput against the Trainer, roberta-base-shaped (benchmarks/bench_finetune.py).
# Each step gets what is left of BUDGET_S seconds, so the benchmarks never cut the training short.
# Everything printed goes to $OUT/log.txt; the exported model comes back as its weight shards plus
# one tar of the small files (the device returns at most 8 files).
#
#   .venv/bin/python scripts/build_demo_corpus.py --out .cache/demo_corpus     # here, ~1 min
#   OUT=/tmp/gpu MINUTES=5 bash scripts/gpu_session.sh                         # on the GPU machine
set -u
OUT=${OUT:-/tmp/gpu-session}
MINUTES=${MINUTES:-5}
BUDGET_S=${BUDGET_S:-580}
PY=${PY:-python3}
mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

left() { echo $(( BUDGET_S - SECONDS )); }
# run "$@" under what is left of the budget (at most $1 seconds), or skip it when under 30 s are left
within() { local cap=$1; shift; local t; t=$(left); [ "$t" -gt "$cap" ] && t=$cap
           if [ "$t" -lt 30 ]; then echo "skipped (only $(left)s left): $*"; else timeout "$t" "$@"; fi; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
$PY -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"

echo "== train the embedded default model ($MINUTES min) at ${SECONDS}s"
$PY scripts/train_demo_model.py --data .cache/demo_corpus --out data/demo-model \
    --minutes "$MINUTES" --runs /tmp/demo-runs --max-steps 40000
if [ -f data/demo-model/config.json ]; then
    tar cf "$OUT/demo-model-small-files.tar" -C data/demo-model --exclude='model*.safetensors' .
    cp data/demo-model/model*.safetensors "$OUT/"
fi

export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the benchmarks import workbench from here
echo "== bench_pretrain at ${SECONDS}s (left $(left)s)"
within 150 $PY benchmarks/bench_pretrain.py

echo "== bench_finetune (roberta-base-shaped random model) at ${SECONDS}s (left $(left)s)"
WORKBENCH_DEMO_MODEL=/nonexistent within 600 $PY benchmarks/bench_finetune.py
echo "== done at ${SECONDS}s"
