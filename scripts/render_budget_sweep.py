"""Renders a `remat bench sweep --json` result as the markdown of results/budget-sweep-4way-*.md."""
import json, platform, subprocess, sys

path, command = sys.argv[1], sys.argv[2]
r = json.load(open(path))
mib = lambda b: f"{b / 2**20:.1f}"
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
cpu += " with AVX-512" if "avx512f" in open("/proc/cpuinfo").read() else " (AVX2)"
commit = sys.argv[3] if len(sys.argv) > 3 else subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
print(f"# Budget sweep over keep / recompute / compress / offload: {r['model']} batch {r['batch']}\n")
print(f"Command: `{command}` (raw: `{path}`), commit {commit}, {cpu}, {r['threads']} threads, "
      f"{r['rounds']} rounds (each plan and `none` one untimed and one timed step per round, interleaved).\n")
print(f"`none`: {r['none_median_step_ms']:.0f} ms a step (median), peak {mib(r['unconstrained_peak_bytes'])} MiB, "
      f"activation peak {mib(r['none_activation_peak_bytes'])} MiB. Planning all {len(r['rows'])} plans took {r['planning_seconds']:.1f} s.\n")
print("Least predicted peak each set of actions reaches: " + ", ".join(f"{k} {mib(v)} MiB" for k, v in sorted(r['least_peak_bytes'].items())) + ".\n")
empty = [x for x in r["rows"] if x["recomputed_ops"] == 0 and x["compressed_ops"] == 0 and x.get("offloaded_ops", 0) == 0]
if empty:
    print("How far to trust the measured times: the empty plans (at the unconstrained budget, the same step as `none`) "
          "measure " + ", ".join(f"{x['measured_ratio']:.3f}" for x in empty) + " against `none` in the same rounds; "
          "a measured ratio is the prediction's check only to within that spread.\n")
print("| actions | budget MiB | predicted peak MiB | measured peak MiB | peak error | ≤ budget | activation peak MiB | predicted time vs none | measured (range over rounds) | recomputed | compressed | offloaded (MiB) | lossy |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for x in r["rows"]:
    err = (x["predicted_peak_bytes"] - x["measured_peak_bytes"]) / x["measured_peak_bytes"]
    print(f"| {x['actions']} | {mib(x['budget_bytes'])} | {mib(x['predicted_peak_bytes'])} | {mib(x['measured_peak_bytes'])} | {100*err:+.2f}% | "
          f"{'yes' if x['measured_peak_bytes'] <= x['budget_bytes'] else '**no**'} | {mib(x['activation_peak_bytes'])} | {x['predicted_ratio']:.3f} | "
          f"{x['measured_ratio']:.3f} ({x['ratio_min']:.2f}–{x['ratio_max']:.2f}) | {x['recomputed_ops']} | {x['compressed_ops']} | {x.get('offloaded_ops', 0)} ({mib(x.get('offloaded_bytes', 0))}) | {x['lossy_ops']} |")
# Same budget, set against set (prediction; the measurement's rounds are in the ranges above).
by = {}
for x in r["rows"]:
    by.setdefault(x["budget_bytes"], {})[x["actions"]] = x
print("\nAt each budget, predicted time of the four-way plans over the recompute-only plan (≤ 1 by construction: `auto` "
      "also runs the recompute-only solvers and keeps the fastest plan that fits):\n")
print("| budget MiB | lossless / recompute-only | bf16 allowed / recompute-only |")
print("|---|---|---|")
for b in sorted(by, reverse=True):
    row = by[b]
    if "recompute-only" not in row:
        print(f"| {mib(b)} | below recompute-only's least peak | " + (f"{row['lossy:bf16']['predicted_ratio']:.3f} (alone)" if 'lossy:bf16' in row else "") + " |")
        continue
    base = row["recompute-only"]["predicted_ratio"]
    cells = [f"{row[k]['predicted_ratio'] / base:.4f}" if k in row else "—" for k in ("lossless", "lossy:bf16")]
    print(f"| {mib(b)} | {cells[0]} | {cells[1]} |")
