#!/usr/bin/env bash
# `remat bench train` beside PyTorch (bench/torch_train.py for the GPTs, bench/torch_resnet.py
# for resnet50-64 and resnet50) in one invocation, same threads, alternating rounds. Writes
# results/train-<model>[-b<batch>]-<threads>t.json and prints the ratio.
# Usage: bench/train.sh [MODEL] [THREADS] [ROUNDS] [BATCH]
# TORCH_ATTENTION=sdpa: PyTorch's GPT uses F.scaled_dot_product_attention (result file suffix -sdpa).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-gpt-mini}
THREADS=${2:-2}
ROUNDS=${3:-3}
BATCH=${4:-}
BATCH_ARG=()
SUFFIX=""
if [[ -n "$BATCH" ]]; then BATCH_ARG=(--batch "$BATCH"); SUFFIX="-b$BATCH"; fi
PYTHON=${PYTHON:-python3}
if [[ "$MODEL" == resnet* ]]; then PEER=("$PYTHON" bench/torch_resnet.py --model "$MODEL" --steps 7 --warmup 2)
else PEER=("$PYTHON" bench/torch_train.py --model "$MODEL" --attention "${TORCH_ATTENTION:-explicit}"); fi
if [[ -n "${TORCH_ATTENTION:-}" && "$TORCH_ATTENTION" != explicit ]]; then SUFFIX="$SUFFIX-$TORCH_ATTENTION"; fi
bash scripts/setup.sh
swift build -c release --product remat >/dev/null
mkdir -p results
: > /tmp/remat_train.jsonl
for r in $(seq "$ROUNDS"); do
    .build/release/remat bench train --model "$MODEL" --threads "$THREADS" "${BATCH_ARG[@]}" --json | sed 's/^/{"framework":"remat","result":/; s/$/}/' >> /tmp/remat_train.jsonl
    "${PEER[@]}" --threads "$THREADS" "${BATCH_ARG[@]}" | tail -1 | sed 's/^/{"framework":"torch","result":/; s/$/}/' >> /tmp/remat_train.jsonl
done
python3 - "results/train-${MODEL}${SUFFIX}-${THREADS}t.json" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open("/tmp/remat_train.jsonl")]
remat = [r["result"] for r in rows if r["framework"] == "remat"]
torch = [r["result"] for r in rows if r["framework"] == "torch"]
rm = statistics.median([x["median_step_ms"] for x in remat]); tm = statistics.median([x["median_step_ms"] for x in torch])
pairs = [a["median_step_ms"] / b["median_step_ms"] for a, b in zip(remat, torch)]
out = {"model": remat[0]["model"], "batch": remat[0]["batch"], "threads": remat[0]["threads"], "rounds": len(remat),
       "remat_median_step_ms": rm, "torch_median_step_ms": tm, "ratio_remat_over_torch": rm / tm,
       "per_round_ratios": pairs, "peak_bytes": remat[-1]["peak_bytes"], "peak_by_category": remat[-1]["peak_by_category"]}
json.dump(out, open(sys.argv[1], "w"), indent=1)
mib = lambda b: f"{b / 2**20:.1f} MiB"
print(f"{out['model']} batch {out['batch']}, {out['threads']} threads, {out['rounds']} alternating rounds (median of 5 steps after 2 warm-up each)")
print(f"Remat {rm:.0f} ms   PyTorch {tm:.0f} ms   ratio Remat/PyTorch {rm / tm:.2f}   (per round: {', '.join(f'{p:.2f}' for p in pairs)})")
print("Remat peak " + mib(out["peak_bytes"]) + ": " + ", ".join(f"{k} {mib(v)}" for k, v in sorted(out["peak_by_category"].items()) if v))
PY
