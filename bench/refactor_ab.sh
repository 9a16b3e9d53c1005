#!/usr/bin/env bash
# A/B of a refactor against an older build: alternating rounds of `remat bench train` on the
# refactor's check list (gpt-mini: none, all, save-matmuls, a saved 0.6-budget plan; resnet50-64:
# none, all), each old/new pair in the same round. Writes results/refactor-ab-<model>.json.
#
#   bash bench/refactor_ab.sh OLD_BINARY [ROUNDS]
#
# OLD_BINARY must accept `bench train --plan FILE` (the old build gets that harness option when
# it predates it; see results/refactor-ab.md). The plan is made once, by the new build, so both
# builds run the same recompute set.
set -euo pipefail
cd "$(dirname "$0")/.."
old=$1; rounds=${2:-4}; new=.build/release/remat
swift build -c release --product remat >/dev/null
mkdir -p results/tmp
plan=results/tmp/plan-gpt-mini-0.6.json
"$new" plan --model gpt-mini --budget 0.6 --json > "$plan"
python3 bench/ab_train.py --model gpt-mini --rounds "$rounds" --out results/refactor-ab-gpt-mini.json \
    "$old@none" "$new@none" "$old@all" "$new@all" "$old@save-matmuls" "$new@save-matmuls" "$old@plan=$plan" "$new@plan=$plan"
python3 bench/ab_train.py --model resnet50-64 --rounds "${RESNET_ROUNDS:-$rounds}" --out results/refactor-ab-resnet50-64.json \
    "$old@none" "$new@none" "$old@all" "$new@all"
