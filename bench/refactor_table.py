#!/usr/bin/env python3
"""Table of a refactor's A/B (bench/refactor_ab.sh): per workload and policy, the new/old step-time
ratio of each round (old and new ran back to back in the same round), its median and range, and
whether every ledger figure (peak and each category at the peak, every round) is the same in both.

  python3 bench/refactor_table.py results/refactor-ab-gpt-mini.json results/refactor-ab-resnet50-64.json
"""
import json
import statistics
import sys

rows = []
for path in sys.argv[1:]:
    d = json.load(open(path))
    variants = d["variants"]
    olds = [v for v in variants if v.split("@", 1)[0].endswith("old") or "remat-old" in v.split("@", 1)[0]]
    for old in olds:
        policy = old.split("@", 1)[1]
        new = next(v for v in variants if v != old and v.split("@", 1)[1] == policy)
        ratios = [n["median_step_ms"] / o["median_step_ms"] for o, n in zip(variants[old], variants[new])]
        figures = lambda runs: {(r["peak_bytes"], tuple(sorted(r["peak_by_category"].items()))) for r in runs}
        same = figures(variants[old]) == figures(variants[new]) and len(figures(variants[old])) == 1
        peak = variants[new][0]["peak_bytes"] / 2**20
        act = variants[new][0]["peak_by_category"].get("activations", 0) / 2**20
        rows.append((d["model"], "plan (0.6, saved)" if policy.startswith("plan=") else policy,
                     statistics.median(o["median_step_ms"] for o in variants[old]),
                     statistics.median(n["median_step_ms"] for n in variants[new]),
                     statistics.median(ratios), min(ratios), max(ratios), peak, act, same))

print("| workload | policy | old ms | new ms | new / old (median, range over rounds) | peak MiB | activations at peak MiB | every ledger figure identical |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for m, p, o, n, r, lo, hi, peak, act, same in rows:
    print(f"| {m} | {p} | {o:.0f} | {n:.0f} | {r:.3f} ({lo:.2f}–{hi:.2f}) | {peak:.1f} | {act:.1f} | {'yes' if same else 'NO'} |")
