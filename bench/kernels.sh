#!/usr/bin/env bash
# `remat bench kernels` beside PyTorch in one invocation, same threads. Prints a ratio table and
# writes results/kernels-<threads>t.json.  Usage: bench/kernels.sh [THREADS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-2}
ROUNDS=${2:-3}
bash scripts/setup.sh
swift build -c release --product remat >/dev/null
mkdir -p results
out="results/kernels-${THREADS}t.json"
: > /tmp/remat_kernels.jsonl
for r in $(seq "$ROUNDS"); do
    .build/release/remat bench kernels --threads "$THREADS" --json | sed 's/^/{"framework":"remat","round":'"$r"',"result":/; s/$/}/' >> /tmp/remat_kernels.jsonl
    python3 bench/torch_kernels.py --threads "$THREADS" | sed 's/^/{"framework":"torch","round":'"$r"',"result":/; s/$/}/' >> /tmp/remat_kernels.jsonl
done
python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open("/tmp/remat_kernels.jsonl")]
def med(xs): return statistics.median(xs)
remat = [r["result"] for r in rows if r["framework"] == "remat"]
torch = [r["result"] for r in rows if r["framework"] == "torch"]
summary = {"threads": remat[0]["threads"], "blas": remat[0]["blas"], "rounds": len(remat), "matmul": [], "elementwise": []}
for i, m in enumerate(remat[0]["matmul"]):
    n = m["n"]
    eng = med([r["matmul"][i]["gflops"] for r in remat]); raw = med([r["matmul"][i]["blas_gflops"] for r in remat])
    tm = med([t["matmul"][i]["gflops"] for t in torch])
    summary["matmul"].append({"n": n, "gflops": eng, "blas_gflops": raw, "torch_gflops": tm, "vs_blas": eng / raw, "vs_torch": eng / tm})
for i, e in enumerate(remat[0]["elementwise"]):
    g = med([r["elementwise"][i]["gbps"] for r in remat]); mc = med([r["elementwise"][i]["memcpy_gbps"] for r in remat])
    tg = med([t["elementwise"][i]["gbps"] for t in torch])
    summary["elementwise"].append({"name": e["name"], "gbps": g, "memcpy_gbps": mc, "torch_gbps": tg, "vs_memcpy": g / mc, "vs_torch": g / tg})
json.dump(summary, open(sys.argv[1], "w"), indent=1)
print(f"GEMM: {summary['blas']}, {summary['threads']} threads, medians of {summary['rounds']} rounds")
print("| n | Remat GFLOP/s | raw GEMM | torch.mm | Remat/raw | Remat/torch |")
print("|---|---|---|---|---|---|")
for m in summary["matmul"]:
    print(f"| {m['n']} | {m['gflops']:.0f} | {m['blas_gflops']:.0f} | {m['torch_gflops']:.0f} | {m['vs_blas']:.2f} | {m['vs_torch']:.2f} |")
print()
print("| op | Remat GB/s | memcpy GB/s | torch GB/s | Remat/memcpy | Remat/torch |")
print("|---|---|---|---|---|---|")
for e in summary["elementwise"]:
    print(f"| {e['name']} | {e['gbps']:.1f} | {e['memcpy_gbps']:.1f} | {e['torch_gbps']:.1f} | {e['vs_memcpy']:.2f} | {e['vs_torch']:.2f} |")
PY
