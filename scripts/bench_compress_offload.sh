#!/usr/bin/env bash
# The table of results/compress-offload.md: activation peak and step time relative to `none` for
# each codec and offload, alone and with `all` / `save-matmuls`, interleaved (one step of each
# variant per round; ratios within rounds). Usage: bash scripts/bench_compress_offload.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-5}"
swift build -c release --product remat >/dev/null
remat=.build/release/remat
gpt="none+bf16,none+fp8-e4m3,none+fp8-e4m3/g128,none+int8,all,all+bf16,all+fp8-e4m3,all+offload,save-matmuls,save-matmuls+bf16,save-matmuls+fp8-e4m3,save-matmuls+fp8-e4m3/g128,save-matmuls+offload"
$remat bench train --model gpt-mini --batch 8 --compare "$gpt" --rounds "$rounds"
resnet="none+bf16,none+fp8-e4m3/g128,none+relu-mask,none+relu-mask+bf16,all,all+bf16,all+offload,save-matmuls,save-matmuls+fp8-e4m3/g128"
$remat bench train --model resnet50-64 --batch 64 --compare "$resnet" --rounds "$((rounds > 3 ? 3 : rounds))"
