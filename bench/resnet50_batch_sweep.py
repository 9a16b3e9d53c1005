#!/usr/bin/env python3
"""The μ-TWO batch table at its own scale (issue 22): `resnet50` (torchvision's ResNet-50, 224×224,
1000 classes) at seed 001's batch sizes, Remat with and without a plan, beside PyTorch measured in
the same run.

  PATH=/path/to/venv-with-torch/bin:$PATH python3 bench/resnet50_batch_sweep.py [--batches 4,8,16,32,64] [--rounds 1]

Per batch size: `remat profile` once, then two plans from that profile (`remat plan --stats DIR
--budget B --json`): the seed's reduction (budget = (1 - seed's total-peak reduction - margin) x the
unplanned peak, or the least peak if that is higher) and the least peak any plan reaches. Each round
runs, in an order that alternates between rounds: `remat bench train` with no plan, with each plan
(`--plan FILE`), and bench/torch_resnet.py without checkpointing and with torch.utils.checkpoint on
every bottleneck, each PyTorch run with one more untimed step under torch.profiler for its peak of
live CPU tensor bytes (bench/torch_resnet.py --profile-memory). Times are medians of the timed
steps of a run; ratios are to the same round's `none` of the same framework, medians over rounds.
Remat's peaks come from its ledger (total, and by category at the peak).

Writes <out>.json and <out>.md together (each atomically; the .md last).
"""
import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import cpu_description, write_result

MIB = 1024 * 1024
SEED = {4: (1449.6, 1128.0), 8: (2128.6, 1420.0), 16: (3466.0, 2148.0), 32: (6191.1, 3676.0), 64: (11682.0, 4392.0)}


def seed_reduction(b):
    none, plan = SEED[b]
    return 1 - plan / none


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr.strip()[-2000:]}")
    return p.stdout


def remat_bench(a, b, extra):
    out = run([a.remat, "bench", "train", "--model", "resnet50", "--batch", str(b), "--steps", str(a.steps),
               "--threads", str(a.threads), "--json"] + extra)
    return json.loads(out.strip().splitlines()[-1])


def torch_bench(a, b, checkpoint):
    out = run([sys.executable, "bench/torch_resnet.py", "--model", "resnet50", "--batch", str(b),
               "--steps", str(a.steps + 2), "--warmup", "2", "--threads", str(a.threads),
               "--checkpoint", checkpoint, "--profile-memory"])
    return json.loads(out.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--remat", default=".build/release/remat")
    p.add_argument("--batches", default="4,8,16,32,64")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--steps", type=int, default=3, help="timed steps per run (after 2 warm-up)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--margin", type=float, default=0.01, help="taken off the budget beyond the seed's reduction")
    p.add_argument("--out", default="results/resnet50-224-batch-sweep")
    a = p.parse_args()
    started = datetime.datetime.now().isoformat(timespec="seconds")
    t0 = time.time()
    load = os.getloadavg()[0]
    commit = run(["git", "rev-parse", "--short", "HEAD"]).strip()
    dirty = bool(run(["git", "status", "--porcelain", "--", "Sources"]).strip())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for b in [int(x) for x in a.batches.split(",")]:
            prof = os.path.join(tmp, f"b{b}")
            run([a.remat, "profile", "--model", "resnet50", "--batch", str(b), "--threads", str(a.threads), "--out", prof])
            probe = json.loads(run([a.remat, "plan", "--stats", prof, "--budget", "1.0", "--json"]))
            none_peak, least = probe["unconstrainedPeakBytes"], probe["minimumPeakBytes"]
            target = max(int(none_peak * (1 - seed_reduction(b) - a.margin)), least)
            plans = {}
            for name, budget in [("seed", target), ("least", least)]:
                path = os.path.join(tmp, f"b{b}-{name}.json")
                text = run([a.remat, "plan", "--stats", prof, "--budget", f"{budget}B", "--json"])
                with open(path, "w") as f:
                    f.write(text)
                plan = json.loads(text)
                plans[name] = {"path": path, "budget_bytes": budget, "predicted_peak_bytes": plan["predictedPeakBytes"],
                               "predicted_step_ratio": plan["predictedStepSeconds"] / plan["baseStepSeconds"]
                               if plan.get("baseStepSeconds") else None}
            rounds = []
            for r in range(a.rounds):
                order = ["remat-none", "remat-seed", "remat-least", "torch-none", "torch-blocks"]
                if r % 2:
                    order.reverse()
                res = {}
                for k in order:
                    if k == "remat-none":
                        res[k] = remat_bench(a, b, ["--policy", "none"])
                    elif k.startswith("remat-"):
                        res[k] = remat_bench(a, b, ["--plan", plans[k[6:]]["path"]])
                    else:
                        res[k] = torch_bench(a, b, k[6:])
                    print(f"batch {b} round {r} {k}: {res[k]['median_step_ms']:.0f} ms", file=sys.stderr, flush=True)
                rounds.append(res)
            rows.append({"batch": b, "seed_none_mib": SEED[b][0], "seed_plan_mib": SEED[b][1],
                         "seed_reduction": seed_reduction(b), "plans": {k: {x: v[x] for x in v if x != "path"} for k, v in plans.items()},
                         "rounds": rounds})
    out = {"workload": "resnet50", "started": started, "minutes": (time.time() - t0) / 60, "commit": commit,
           "sources_modified": dirty, "cpu": cpu_description(), "threads": a.threads, "rounds": a.rounds,
           "steps": a.steps, "load_at_start": load, "command": " ".join(["python3"] + sys.argv), "rows": rows}
    write_result(a.out, out, markdown(out))


def med(rounds, key, field="median_step_ms"):
    return statistics.median(r[key][field] for r in rounds)


def ratio(rounds, key, base):
    return statistics.median(r[key]["median_step_ms"] / r[base]["median_step_ms"] for r in rounds)


def markdown(o):
    L = ["# The μ-TWO batch table at ImageNet size: `resnet50` (224×224, 1000 classes)", "",
         f"Command: `{o['command']}`, commit {o['commit']}{' (Sources modified)' if o['sources_modified'] else ''}, "
         f"{o['cpu']}, {o['threads']} threads, {o['rounds']} round(s) of {o['steps']} timed steps per run after 2 warm-up, "
         f"load average at start {o['load_at_start']:.2f} (2-core shared machine), {o['minutes']:.0f} min; started {o['started']}.", "",
         "Remat peaks are the ledger's (all tensor storage: parameters, gradients, optimizer state, activations, "
         "temporaries). PyTorch peaks: torch.profiler's memory timeline, peak of live CPU tensor bytes over one whole "
         "step (bench/torch_resnet.py --profile-memory). The seed's figures are seed 001's (GPU, PyTorch), printed "
         "beside ours. `seed plan`: the budget takes the seed's total-peak reduction (+1%) off Remat's unplanned "
         "peak; `least`: the least peak a plan reaches. × none: step time over the same round's unplanned step of "
         "the same framework.", "",
         "| batch | Remat none: peak MiB (params / grads / opt / act / temp) | seed: none → plan MiB (reduction) | "
         "Remat seed plan: peak MiB (reduction) | × none | Remat least: peak MiB (reduction) | × none | "
         "PyTorch none: peak MiB | PyTorch per-block ckpt: peak MiB | × none | Remat / PyTorch (none) |",
         "|---:|---|---|---|---:|---|---:|---:|---:|---:|---:|"]
    for row in o["rows"]:
        rs = row["rounds"]
        n = rs[0]["remat-none"]
        c = n["peak_by_category"]
        cats = " / ".join(f"{c.get(k, 0) / MIB:.0f}" for k in ["parameters", "gradients", "optimizer", "activations", "temporaries"])
        npk = max(r["remat-none"]["peak_bytes"] for r in rs)
        sp = max(r["remat-seed"]["peak_bytes"] for r in rs)
        lp = max(r["remat-least"]["peak_bytes"] for r in rs)
        tn = max(r["torch-none"]["profiler_peak_bytes"] for r in rs)
        tb = max(r["torch-blocks"]["profiler_peak_bytes"] for r in rs)
        L.append(f"| {row['batch']} | {npk / MIB:.1f} ({cats}) | {row['seed_none_mib']:.1f} → {row['seed_plan_mib']:.1f} "
                 f"({100 * row['seed_reduction']:.1f}%) | {sp / MIB:.1f} ({100 * (1 - sp / npk):.1f}%) | "
                 f"{ratio(rs, 'remat-seed', 'remat-none'):.2f} | {lp / MIB:.1f} ({100 * (1 - lp / npk):.1f}%) | "
                 f"{ratio(rs, 'remat-least', 'remat-none'):.2f} | {tn / MIB:.1f} | {tb / MIB:.1f} | "
                 f"{ratio(rs, 'torch-blocks', 'torch-none'):.2f} | {ratio_cross(rs):.2f} |")
    L += ["", "Step times (ms, medians):", "",
          "| batch | Remat none | Remat seed plan | Remat least | PyTorch none | PyTorch per-block ckpt | plan predicted × none (seed, least) |",
          "|---:|---:|---:|---:|---:|---:|---|"]
    for row in o["rows"]:
        rs = row["rounds"]
        pr = row["plans"]
        L.append(f"| {row['batch']} | {med(rs, 'remat-none'):.0f} | {med(rs, 'remat-seed'):.0f} | {med(rs, 'remat-least'):.0f} | "
                 f"{med(rs, 'torch-none'):.0f} | {med(rs, 'torch-blocks'):.0f} | "
                 f"{pr['seed']['predicted_step_ratio'] or float('nan'):.2f}, {pr['least']['predicted_step_ratio'] or float('nan'):.2f} |")
    return "\n".join(L) + "\n"


def ratio_cross(rs):
    return statistics.median(r["remat-none"]["median_step_ms"] / r["torch-none"]["median_step_ms"] for r in rs)


if __name__ == "__main__":
    main()
