#!/usr/bin/env bash
# Alternating A/B of the budget modes on one fixed shape: per round, one `remat bench train`
# process per configuration (none, planned, planned --recompute-only, hybrid), so that the
# machine's load falls on all of them alike; prints each round's median step time and, at the
# end, the median over rounds and each mode's ratio to planned.
# Usage: scripts/ab_budget_modes.sh BUDGET [ROUNDS] [MODEL] [REMAT]   (e.g. 162.9MiB 5 gpt-mini)
set -euo pipefail
budget=${1:?usage: ab_budget_modes.sh BUDGET [ROUNDS] [MODEL] [REMAT]}
rounds=${2:-5}
model=${3:-gpt-mini}
remat=${4:-.build/release/remat}
configs=("none|--policy none" "planned|--budget $budget --mode planned"
         "planned-recompute-only|--budget $budget --mode planned --recompute-only" "hybrid|--budget $budget --mode hybrid")
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for round in $(seq 1 "$rounds"); do
    for cfg in "${configs[@]}"; do
        name=${cfg%%|*}
        read -r -a args <<< "${cfg#*|}"
        ms=$("$remat" bench train --model "$model" "${args[@]}" --steps 8 --threads 2 --json | tail -1 |
             python3 -c "import json,sys; print(json.loads(sys.stdin.read())['median_step_ms'])")
        echo "$round $name $ms" | tee -a "$out"
    done
done
python3 - "$out" <<'PY'
import collections, statistics, sys
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    _, name, ms = line.split()
    runs[name].append(float(ms))
planned = statistics.median(runs["planned"])
for name, v in runs.items():
    m = statistics.median(v)
    print(f"{name}: median {m:.1f} ms over {len(v)} rounds, {m / planned:.3f}x planned")
PY
