#!/usr/bin/env bash
# Checkpointing policy table: Remat (`remat bench train --policy`, `remat explain`) beside PyTorch
# (bench/torch_train.py --checkpoint none|all|alternate|sac-matmuls), same threads, alternating runs,
# one invocation. Workloads: gpt-mini (batch 8), gpt-mini-long (batch 2), resnet50-64 (batch 64,
# Remat only) if this build of `remat` has it.
# Writes results/checkpoint-table-<threads>t.json and .md (see bench/checkpoint_table.py).
# Usage: bench/checkpoint_table.sh [THREADS] [ROUNDS]
#   env STEPS_MINI (default 5), STEPS_LONG (default 3): timed steps per run after 2 warm-up steps.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-1}
ROUNDS=${2:-3}
STEPS_MINI=${STEPS_MINI:-5}
STEPS_LONG=${STEPS_LONG:-3}
swift build -c release --product remat >/dev/null
# Other sessions may rebuild .build/release/remat while this runs (~25 min): time one fixed copy.
PIN=$(mktemp -d)
trap 'rm -rf "$PIN"' EXIT
cp .build/release/remat "$PIN/remat"
CMD="bench/checkpoint_table.sh $THREADS $ROUNDS"
if [ "$STEPS_MINI" != 5 ] || [ "$STEPS_LONG" != 3 ]; then CMD="STEPS_MINI=$STEPS_MINI STEPS_LONG=$STEPS_LONG $CMD"; fi
python3 bench/checkpoint_table.py --threads "$THREADS" --rounds "$ROUNDS" \
    --steps-mini "$STEPS_MINI" --steps-long "$STEPS_LONG" --command "$CMD" --remat "$PIN/remat"
