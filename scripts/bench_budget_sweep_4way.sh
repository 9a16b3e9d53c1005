#!/usr/bin/env bash
# The four-way budget sweeps of results/budget-sweep-4way-*.md: for each workload, plans at a grid
# of budgets for recompute-only, lossless (codecs and offload) and bf16-allowed actions, each run beside none
# (remat bench sweep), then rendered as markdown. Usage: bash scripts/bench_budget_sweep_4way.sh
# [POINTS] [ROUNDS]. Takes about 10 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
points=${1:-5}
rounds=${2:-5}
swift build -c release >/dev/null
bin=$(swift build -c release --show-bin-path)/remat
mkdir -p results/budget-sweep-4way
for spec in gpt-mini:8 gpt-mini-long:2 resnet50-64:64; do
    model=${spec%%:*}; batch=${spec##*:}
    "$bin" bench sweep --model "$model" --batch "$batch" --points "$points" --rounds "$rounds" --allow-lossy bf16 --json \
        > "results/budget-sweep-4way/$model-b$batch.json.tmp"
    mv "results/budget-sweep-4way/$model-b$batch.json.tmp" "results/budget-sweep-4way/$model-b$batch.json"
    python3 scripts/render_budget_sweep.py "results/budget-sweep-4way/$model-b$batch.json" \
        "bash scripts/bench_budget_sweep_4way.sh $points $rounds" > "results/budget-sweep-4way-$model.md"
done
