#!/usr/bin/env bash
# Planning under a memory budget, measured (issue 6): budget sweeps beside the manual policies
# for gpt-mini (batch 8), gpt-mini-long (batch 2), resnet50-64 (batch 64), and the resnet50-64
# batch-size sweep. Writes results/budget-sweep-<model>.{json,md} and results/resnet-batch-sweep.{json,md}.
# Usage: bench/budget_sweep.sh [ROUNDS] [WHAT...]   (WHAT: gpt-mini gpt-mini-long resnet50-64 batches; default all)
#   env STEPS (default 3): timed steps per run after 2 warm-up steps.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-2}
shift || true
WHAT=${*:-gpt-mini gpt-mini-long resnet50-64 batches}
STEPS=${STEPS:-3}
swift build -c release --product remat >/dev/null
PIN=$(mktemp -d)
trap 'rm -rf "$PIN"' EXIT
cp .build/release/remat "$PIN/remat"
for w in $WHAT; do
    CMD="bench/budget_sweep.sh $ROUNDS $w"
    if [ "$STEPS" != 3 ]; then CMD="STEPS=$STEPS $CMD"; fi
    case $w in
        gpt-mini) python3 bench/budget_sweep.py --remat "$PIN/remat" --rounds "$ROUNDS" --steps "$STEPS" --command "$CMD" \
                      sweep --model gpt-mini --batch 8 --out results/budget-sweep-gpt-mini ;;
        gpt-mini-long) python3 bench/budget_sweep.py --remat "$PIN/remat" --rounds "$ROUNDS" --steps "$STEPS" --command "$CMD" \
                      sweep --model gpt-mini-long --batch 2 --out results/budget-sweep-gpt-mini-long ;;
        resnet50-64) python3 bench/budget_sweep.py --remat "$PIN/remat" --rounds "$ROUNDS" --steps "$STEPS" --command "$CMD" \
                      sweep --model resnet50-64 --batch 64 --out results/budget-sweep-resnet50-64 ;;
        batches) python3 bench/budget_sweep.py --remat "$PIN/remat" --rounds "$ROUNDS" --steps "$STEPS" --command "$CMD" \
                      batches --model resnet50-64 --out results/resnet-batch-sweep ;;
        *) echo "unknown: $w" >&2; exit 2 ;;
    esac
done
