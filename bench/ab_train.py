#!/usr/bin/env python3
"""A/B step times of `remat bench train`: runs each variant once per round, alternating (order
reversed on odd rounds), and prints every variant's median step time and its per-round ratio to
the first variant measured in the same round (the only comparison that means something on a
shared, noisy machine).

  python3 bench/ab_train.py --model gpt-mini --rounds 4 none save-matmuls all
  python3 bench/ab_train.py --model gpt-mini /tmp/old-remat@none .build/release/remat@none
  python3 bench/ab_train.py --model gpt-mini --out ab.json old@plan=p.json new@plan=p.json

A variant is POLICY (with --remat's binary) or BINARY@POLICY (another build of remat); POLICY
`plan=FILE` runs under a saved plan (`remat plan --json`, `remat bench train --plan FILE`).
With --out, every round's step time and ledger figures are written as JSON.
"""
import argparse
import json
import statistics
import subprocess

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("variants", nargs="+")
p.add_argument("--remat", default=".build/release/remat")
p.add_argument("--model", default="gpt-mini")
p.add_argument("--rounds", type=int, default=4)
p.add_argument("--steps", type=int, default=5)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--out", help="write every round's figures here (JSON)")
a = p.parse_args()

results = {v: [] for v in a.variants}
for r in range(a.rounds):
    for v in (a.variants if r % 2 == 0 else a.variants[::-1]):
        binary, _, policy = v.rpartition("@")
        how = ["--plan", policy[5:]] if policy.startswith("plan=") else ["--policy", policy]
        cmd = [binary or a.remat, "bench", "train", "--model", a.model, *how, "--steps", str(a.steps),
               "--threads", str(a.threads), "--json"]
        d = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
        results[v].append((d["median_step_ms"], d["peak_bytes"], d["peak_by_category"].get("activations", 0),
                           d["peak_by_category"], d["step_ms"]))

base = results[a.variants[0]]
for v in a.variants:
    ratios = [x[0] / b[0] for x, b in zip(results[v], base)]
    print(f"{v:44s} {statistics.median(x[0] for x in results[v]):7.1f} ms  x first {statistics.median(ratios):.3f} "
          f"(rounds {', '.join(f'{x:.2f}' for x in ratios)})  peak {results[v][0][1] / 2**20:.1f} MiB, "
          f"activations at peak {results[v][0][2] / 2**20:.1f} MiB")
if a.out:
    with open(a.out, "w") as f:
        json.dump({"model": a.model, "rounds": a.rounds, "steps": a.steps, "threads": a.threads,
                   "variants": {v: [{"median_step_ms": x[0], "peak_bytes": x[1], "peak_by_category": x[3], "step_ms": x[4]}
                                    for x in results[v]] for v in a.variants}}, f, indent=1, sort_keys=True)
