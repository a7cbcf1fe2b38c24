#!/usr/bin/env bash
# Every GPU measurement of issue 15 as one command, in at most BUDGET_S (470 s) of GPU time:
#   1. fine-tuning examples/s vs the Trainer: roberta-base shape (12x768, random weights), bf16,
#      20,000 SST-2 sentences x 2 epochs, 3 pairs of fresh processes, order alternated (~4 min);
#   2. pretraining tokens/s vs Trainer + DataCollatorForLanguageModeling at the demo model's shape
#      (6x384, batch 128x256), 3 pairs, with the MFU of both sides (~2.5 min);
#   3. pretraining MFU of ours at roberta-base's shape, seq 128 (batch 256) and 512 (batch 64)
#      (~1 min each; skipped when the budget is spent);
#   4. optionally (PROFILE=1) benchmarks/profile_pretrain.py and profile_finetune.py: where a step's
#      time goes, and the host waits per pretraining step (expected: none).
# Steps run in that order of priority, each under what is left of the budget (`within`).
# Each runner call writes its JSON into $OUT/$TAG/ (TAG = <gpu>-<date>, e.g. h200-2026-12-02);
# everything printed goes to $OUT/$TAG/log.txt. Copy that folder to benchmarks/results/$TAG/.
# Optionally (TRAIN_DEMO=1, MINUTES=5) it first retrains the embedded model (not counted above).
#
# Before the session, here (SST-2 is outside the repository, so carry a copy; ignored by git):
#   mkdir -p .cache/sst2 && cp ../shared/data/sst2/*.tsv .cache/sst2/
#   run(command="OUT=$OUT bash scripts/gpu_session.sh", carry=[".cache/sst2"], timeout_s=560)
# Check it here (CPU, seconds per step):  QUICK=1 OUT=/tmp/gpu bash scripts/gpu_session.sh
set -u
OUT=${OUT:-/tmp/gpu-session}
BUDGET_S=${BUDGET_S:-470}
PY=${PY:-python3}
QUICK=${QUICK:-}
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 | awk '{print tolower($NF)}')
TAG=${TAG:-${GPU:-cpu}-$(date +%Y-%m-%d)}
DIR="$OUT/$TAG"
mkdir -p "$DIR"
exec > >(tee "$DIR/log.txt") 2>&1
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the benchmarks import workbench from here
export WORKBENCH_BENCH_SST2=${WORKBENCH_BENCH_SST2:-$PWD/.cache/sst2}
export WORKBENCH_DEMO_MODEL=/nonexistent  # fine-tuning: the roberta-base-shaped random model
Q=${QUICK:+--quick}
PSHAPE=demo; [ -n "$QUICK" ] && PSHAPE=quick

left() { echo $(( BUDGET_S - SECONDS )); }
# run "$@" under what is left of the budget (at most $1 seconds), or skip it when under 30 s are left
within() { local cap=$1; shift; local t; t=$(left); [ "$t" -gt "$cap" ] && t=$cap
           if [ "$t" -lt 30 ]; then echo "skipped (only $(left)s left): $*"
           else echo "+ $* (limit ${t}s)"; timeout "$t" "$@"; echo "exit $? at ${SECONDS}s"; fi; }

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv || echo "no GPU"
$PY -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
uptime; ls "$WORKBENCH_BENCH_SST2" 2>/dev/null || echo "no SST-2 at $WORKBENCH_BENCH_SST2: the demo table"

if [ -n "${TRAIN_DEMO:-}" ]; then  # not part of the 470 s
    $PY scripts/train_demo_model.py --data .cache/demo_corpus --out data/demo-model \
        --minutes "${MINUTES:-5}" --runs /tmp/demo-runs --max-steps 40000
    tar cf "$DIR/demo-model.tar" -C data/demo-model .
    SECONDS=0
fi

echo "== 1. fine-tuning vs Trainer at ${SECONDS}s"
within 250 $PY benchmarks/runner.py $Q --only finetune --out "$DIR"
echo "== 2. pretraining vs Trainer + collator, demo shape, with MFU at ${SECONDS}s"
within 170 env WORKBENCH_BENCH_PRETRAIN=demo $PY benchmarks/runner.py $Q --only pretrain --out "$DIR"
for shape in base128 base512; do
    echo "== 3. pretraining MFU at $shape at ${SECONDS}s"
    within 90 env WORKBENCH_BENCH_PRETRAIN=$shape $PY benchmarks/runner.py $Q --only pretrain --out "$DIR"
done
if [ -n "${PROFILE:-}" ]; then
    echo "== 4. profiles at ${SECONDS}s"
    within 60 $PY benchmarks/profile_pretrain.py --shape "$PSHAPE" --steps 10 \
        > "$DIR/profile_pretrain.txt"
    within 120 $PY benchmarks/profile_finetune.py $Q --steps 40 > "$DIR/profile_finetune.txt"
fi
echo "== done at ${SECONDS}s (budget ${BUDGET_S}s)"
ls -la "$DIR"
