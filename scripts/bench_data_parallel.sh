#!/usr/bin/env bash
# Data parallel on this machine: 1 process × 2 threads against 2 processes × 1 thread (same
# global batch), alternated job by job, and the all-reduce overlap at several bucket sizes.
#
#     bash scripts/bench_data_parallel.sh [PAIRS] [ROUNDS]
#
# Writes every job's JSON (remat bench data-parallel --json) to results/data-parallel.jsonl and
# prints a summary; results/data-parallel.md quotes it. Needs Open MPI (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
pairs=${1:-3}
rounds=${2:-5}
swift build -c release --product remat >/dev/null
remat=.build/release/remat
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
out=results/data-parallel.jsonl
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
job() {   # label, then the command
  local label=$1; shift
  "$@" --json | python3 -c 'import json,sys; r=json.load(sys.stdin); r["job"]=sys.argv[1]; print(json.dumps(r))' "$label" >>"$tmp"
}
for model in gpt-mini resnet50-64; do
  for p in $(seq "$pairs"); do
    job "1x2" "$remat" bench data-parallel --model "$model" --threads 2 --rounds "$rounds"
    job "2x1" mpirun -np 2 "$remat" bench data-parallel --model "$model" --threads 1 --rounds "$rounds"
  done
  for mib in 4 1; do
    job "2x1 bucket $mib" mpirun -np 2 "$remat" bench data-parallel --model "$model" --threads 1 --rounds "$rounds" --bucket-mib "$mib"
  done
done
{
  echo "{\"commit\": \"$(git rev-parse --short HEAD)\", \"cpu\": \"$(lscpu | sed -n 's/^Model name: *//p')\", \"cores\": $(nproc), \"pairs\": $pairs, \"rounds\": $rounds}"
  cat "$tmp"
} >"$out.tmp" && mv "$out.tmp" "$out"
python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
head, jobs = rows[0], rows[1:]
print(f"commit {head['commit']}, {head['cpu']}, {head['cores']} cores; {head['pairs']} pairs, {head['rounds']} rounds per job")
for model in dict.fromkeys(j["model"] for j in jobs):
    one = [j for j in jobs if j["model"] == model and j["job"] == "1x2"]
    two = [j for j in jobs if j["model"] == model and j["job"] == "2x1"]
    ratios = [b["median_step_ms_overlapped"] / a["median_step_ms_overlapped"] for a, b in zip(one, two)]
    print(f"{model}: 1x2 step {statistics.median(j['median_step_ms_overlapped'] for j in one):.1f} ms, peak {one[0]['peak_bytes']/2**20:.1f} MiB; "
          f"2x1 step {statistics.median(j['median_step_ms_overlapped'] for j in two):.1f} ms, peak {two[0]['peak_bytes']/2**20:.1f} MiB per rank; "
          f"2x1 / 1x2 per pair {', '.join(f'{r:.3f}' for r in ratios)} (median {statistics.median(ratios):.3f})")
    for j in [j for j in jobs if j["model"] == model and j["ranks"] == 2]:
        print(f"  {j['job']:<14} buckets {j['buckets']:>3} of ≤{j['bucket_bytes']/2**20:.0f} MiB ({j['gradient_bytes']/2**20:.1f} MiB of gradients), "
              f"started in backward {j['buckets_started_during_backward']:.0f}; step {j['median_step_ms_overlapped']:.1f} ms overlapped / {j['median_step_ms_after_backward']:.1f} ms not "
              f"(ratio {j['step_ratio_overlapped']:.3f}); all-reduce after backward {j['median_all_reduce_ms_overlapped']:.1f} / {j['median_all_reduce_ms_after_backward']:.1f} ms; "
              f"hidden {100*j['overlap_achieved']:.0f}%")
PY
