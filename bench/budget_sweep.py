#!/usr/bin/env python3
"""Planning under a memory budget, measured (issue 6).

sweep:   for one workload, budgets from the unconstrained peak down to the least peak a plan
         reaches, each planned by `greedy` and by the best solver (`auto`), beside the manual
         checkpointing policies: measured and predicted peak, step time relative to `none`
         (a Pareto table), and whether the best solver is at least as fast as every manual policy
         that fits each budget.
batches: the seed's batch-size sweep for resnet50-64: peak and time without a plan, with a plan,
         and with every block checkpointed (`all`), and the reduction of the activation part of
         the peak (peak minus parameters, gradients and optimizer state at the peak).

Every point is one `remat bench train --json` process (with `--budget B --solver S` or
`--policy P`). Runs of one round go in a shuffled order; time ratios are to the `none` run of the
same round; medians over rounds. Writes <out>.json and <out>.md.
"""
import argparse
import datetime
import json
import os
import random
import statistics
import subprocess
import sys
import time

from benchlib import write_result

MIB = 1024 * 1024
SEED_REDUCTIONS = {4: 0.22, 8: 0.33, 16: 0.38, 32: 0.41, 64: 0.62}   # seed 001, total-peak reductions


def run_bench(remat, model, batch, steps, extra):
    cmd = [remat, "bench", "train", "--model", model, "--batch", str(batch), "--steps", str(steps), "--json"] + extra
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        return {"error": (p.stderr.strip() or p.stdout.strip()).splitlines()[-1], "command": " ".join(cmd[1:])}
    r = json.loads(p.stdout.strip().splitlines()[-1])
    r["command"] = " ".join(["remat"] + cmd[1:])
    return r


def probe(remat, model, batch):
    p = subprocess.run([remat, "plan", "--model", model, "--batch", str(batch), "--budget", "1.0", "--json"],
                       capture_output=True, text=True, check=True)
    plan = json.loads(p.stdout)
    return plan["unconstrainedPeakBytes"], plan["minimumPeakBytes"]


def fixed_part(r):
    c = r["peak_by_category"]
    return c.get("parameters", 0) + c.get("gradients", 0) + c.get("optimizer", 0)


def header(args, started, load=None):
    git = load["git"] if load else subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    avg = load["load"] if load else os.getloadavg()[0]
    return (f"{started}, git {git}, {args.rounds} round(s), {args.steps} timed steps per run after 2 warm-up, "
            f"load average at start {avg:.2f} (2-core shared machine)")


def sweep(args):
    started = datetime.datetime.now().isoformat(timespec="seconds")
    load_at_start = os.getloadavg()[0]
    t0 = time.time()
    unconstrained, minimum = probe(args.remat, args.model, args.batch)
    fractions = [float(f) for f in args.levels.split(",")]
    budgets = [int(minimum + (unconstrained - minimum) * f) for f in fractions]
    configs = [("policy", p) for p in args.policies.split(",")]
    for b in budgets:
        for s in args.solvers.split(","):
            configs.append(("budget", (b, s)))
    rng = random.Random(7)
    runs = {c: [] for c in configs}
    for rnd in range(args.rounds):
        order = configs[:]
        rng.shuffle(order)
        for c in order:
            kind, v = c
            extra = ["--policy", v] if kind == "policy" else ["--budget", str(v[0]), "--solver", v[1]]
            r = run_bench(args.remat, args.model, args.batch, args.steps, extra)
            r["round"] = rnd
            runs[c].append(r)
            print(f"round {rnd} {kind} {v}: {r.get('median_step_ms', r.get('error'))}", file=sys.stderr, flush=True)
    none_ms = {r["round"]: r["median_step_ms"] for r in runs[("policy", "none")]}
    rows = []
    for c in configs:
        kind, v = c
        ok = [r for r in runs[c] if "error" not in r]
        row = {"kind": kind, "config": v if kind == "policy" else f"budget {v[0] / MIB:.1f} MiB, {v[1]}",
               "runs": runs[c]}
        if kind == "budget":
            row["budget_bytes"] = v[0]
            row["solver_requested"] = v[1]
        if not ok:
            row["error"] = runs[c][0]["error"]
            rows.append(row)
            continue
        row["ratio"] = statistics.median(r["median_step_ms"] / none_ms[r["round"]] for r in ok)
        row["ratios"] = [round(r["median_step_ms"] / none_ms[r["round"]], 3) for r in ok]
        row["median_step_ms"] = statistics.median(r["median_step_ms"] for r in ok)
        row["peak_bytes"] = max(r["peak_bytes"] for r in ok)
        if kind == "budget":
            row["predicted_peak_bytes"] = ok[0]["predicted_peak_bytes"]
            row["solver"] = ok[0]["solver"]
            row["recomputed_ops"] = ok[0]["recomputed_ops"]
            row["predicted_step_ratio"] = ok[0]["predicted_step_ratio"]
            row["planning_seconds"] = ok[0]["planning_seconds"]
        rows.append(row)
    checks = pareto_checks(rows, budgets, args.tolerance)
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    out = {"model": args.model, "batch": args.batch, "started": started, "command": args.command,
           "load": {"git": git, "load": load_at_start},
           "unconstrained_peak_bytes": unconstrained, "minimum_peak_bytes": minimum, "levels": fractions,
           "tolerance": args.tolerance, "rows": rows, "checks": checks, "minutes": (time.time() - t0) / 60}
    write_result(args.out, out, sweep_markdown(args, out, started, load=out["load"]))


def pareto_checks(rows, budgets, tolerance):
    """At each budget, the best solver against every manual policy that fits. A plan that
    recomputes nothing is the `none` step itself: against `none` it is the same configuration."""
    checks = []
    for b in budgets:
        best = next((r for r in rows if r.get("budget_bytes") == b and r.get("solver_requested") == "auto" and "ratio" in r), None)
        if best is None:
            continue
        fitting = [r for r in rows if r["kind"] == "policy" and "ratio" in r and r["peak_bytes"] <= b]
        for p in fitting:
            same = p["config"] == "none" and best["recomputed_ops"] == 0
            checks.append({"budget_bytes": b, "policy": p["config"], "policy_ratio": p["ratio"], "best_ratio": best["ratio"],
                           "same_step": same, "pass": same or best["ratio"] <= p["ratio"] * (1 + tolerance)})
        if not fitting:
            checks.append({"budget_bytes": b, "policy": None, "best_ratio": best["ratio"], "pass": True})
    return checks


def render(args):
    """Rewrites <out>.md (and the checks in <out>.json) from <out>.json."""
    with open(args.out + ".json") as f:
        out = json.load(f)
    budgets = sorted({r["budget_bytes"] for r in out["rows"] if "budget_bytes" in r}, reverse=True)
    out["checks"] = pareto_checks(out["rows"], budgets, out["tolerance"])
    args.model, args.batch, args.command = out["model"], out["batch"], out["command"]
    args.rounds = max(r["round"] for row in out["rows"] for r in row["runs"]) + 1
    args.steps = out["rows"][0]["runs"][0].get("steps", args.steps)
    write_result(args.out, out, sweep_markdown(args, out, out["started"], load=out.get("load")))


def sweep_markdown(args, out, started, load=None):
    L = [f"# Budget sweep: {args.model}, batch {args.batch}", "", "```", args.command, "```", "",
         header(args, started, load) + f", {out['minutes']:.1f} min.", "",
         f"Profiled step (`remat plan --model {args.model} --batch {args.batch} --budget 1.0 --json`): unconstrained peak "
         f"{out['unconstrained_peak_bytes'] / MIB:.1f} MiB, least peak a plan reaches {out['minimum_peak_bytes'] / MIB:.1f} MiB. "
         f"Budgets: that minimum + ({', '.join(str(f) for f in out['levels'])}) x (unconstrained - minimum).", "",
         "Sorted by measured peak. × none: step time over the `none` run of the same round, median over rounds.", "",
         "| configuration | budget (MiB) | predicted peak (MiB) | measured peak (MiB) | pred. error | × none | predicted × | ops recomputed | solver used |",
         "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    ok = sorted([r for r in out["rows"] if "ratio" in r], key=lambda r: r["peak_bytes"])
    for r in ok:
        name = f"`{r['config']}`" if r["kind"] == "policy" else f"plan, {r['solver_requested']}"
        budget = f"{r['budget_bytes'] / MIB:.1f}" if "budget_bytes" in r else ""
        pred = f"{r['predicted_peak_bytes'] / MIB:.1f}" if "predicted_peak_bytes" in r else ""
        err = f"{100 * (r['predicted_peak_bytes'] - r['peak_bytes']) / r['peak_bytes']:+.2f}%" if "predicted_peak_bytes" in r else ""
        pr = f"{r['predicted_step_ratio']:.2f}" if "predicted_step_ratio" in r else ""
        L.append(f"| {name} | {budget} | {pred} | {r['peak_bytes'] / MIB:.1f} | {err} | {r['ratio']:.2f} | {pr} | "
                 f"{r.get('recomputed_ops', '')} | {r.get('solver', '')} |")
    failed = [r for r in out["rows"] if "error" in r]
    if failed:
        L += ["", "Points that did not run:", ""]
        L += [f"- {r['config']}: {r['error']}" for r in failed]
    L += ["", f"## Best solver against every manual policy that fits (tie tolerance {100 * out['tolerance']:.0f}%)", "",
          "| budget (MiB) | manual policy that fits | its × none | best solver × none | |", "|---:|---|---:|---:|---|"]
    for c in out["checks"]:
        if c["policy"] is None:
            L.append(f"| {c['budget_bytes'] / MIB:.1f} | (none fits) | | {c['best_ratio']:.2f} | PASS |")
        else:
            verdict = "PASS (same step: the plan recomputes nothing)" if c.get("same_step") else ("PASS" if c["pass"] else "FAIL")
            L.append(f"| {c['budget_bytes'] / MIB:.1f} | `{c['policy']}` | {c['policy_ratio']:.2f} | {c['best_ratio']:.2f} | {verdict} |")
    n_fail = sum(not c["pass"] for c in out["checks"])
    L += ["", f"{len(out['checks']) - n_fail} of {len(out['checks'])} comparisons pass."]
    return "\n".join(L) + "\n"


def batches(args):
    started = datetime.datetime.now().isoformat(timespec="seconds")
    t0 = time.time()
    rows = []
    for b in [int(x) for x in args.batches.split(",")]:
        seed = SEED_REDUCTIONS.get(b)
        per_round = []
        budget = None
        _, minimum = probe(args.remat, args.model, b)
        for rnd in range(args.rounds):
            none = run_bench(args.remat, args.model, b, args.steps, ["--policy", "none"])
            if budget is None:
                # The seed's reduction (plus a margin) taken off the unplanned activation part,
                # never below the least peak a plan reaches.
                act = none["peak_bytes"] - fixed_part(none)
                target = (seed or 0.3) + args.margin
                budget = max(int(none["peak_bytes"] - target * act), int(minimum * 1.002))
            pair = [("all", ["--policy", "all"]), ("plan", ["--budget", str(budget)])]
            if rnd % 2:
                pair.reverse()
            res = {"none": none}
            for name, extra in pair:
                res[name] = run_bench(args.remat, args.model, b, args.steps, extra)
            per_round.append(res)
            print(f"batch {b} round {rnd}: " + ", ".join(f"{k} {v.get('median_step_ms', v.get('error'))}" for k, v in res.items()),
                  file=sys.stderr, flush=True)
        row = {"batch": b, "seed_reduction": seed, "budget_bytes": budget, "rounds": per_round}
        for name in ["none", "all", "plan"]:
            ok = [r[name] for r in per_round if "error" not in r[name]]
            if not ok:
                row[name] = {"error": per_round[0][name]["error"]}
                continue
            peak = max(r["peak_bytes"] for r in ok)
            last = ok[0]
            row[name] = {"peak_bytes": peak, "activation_part_bytes": peak - fixed_part(last),
                         "median_step_ms": statistics.median(r["median_step_ms"] for r in ok),
                         "ratio": statistics.median(r[name]["median_step_ms"] / r["none"]["median_step_ms"]
                                                    for r in per_round if "error" not in r[name])}
            if name == "plan":
                row[name]["predicted_peak_bytes"] = last["predicted_peak_bytes"]
                row[name]["solver"] = last["solver"]
        if "error" not in row["plan"] and "error" not in row["none"]:
            n, p = row["none"], row["plan"]
            row["activation_reduction"] = 1 - p["activation_part_bytes"] / n["activation_part_bytes"]
            row["total_reduction"] = 1 - p["peak_bytes"] / n["peak_bytes"]
            row["pass"] = (seed is None or row["activation_reduction"] >= seed) and \
                ("error" in row["all"] or p["ratio"] < row["all"]["ratio"])
        rows.append(row)
    out = {"model": args.model, "started": started, "command": args.command, "margin": args.margin, "rows": rows,
           "minutes": (time.time() - t0) / 60}
    write_result(args.out, out, batches_markdown(args, out, started))


def batches_markdown(args, out, started):
    L = [f"# Batch-size sweep: {args.model} with and without a plan", "", "```", args.command, "```", "",
         header(args, started) + f", {out['minutes']:.1f} min.", "",
         "Activation part = peak minus parameters, gradients and optimizer state at the peak (ledger). "
         f"Budget = unplanned peak - (seed's reduction + {out['margin']:.2f}) x its activation part, or the least peak a plan "
         "reaches if that is higher; `all` = every block "
         "checkpointed. × none: step time over the `none` run of the same round, median over rounds.", "",
         "| batch | none: peak (MiB) | act. part | ms | plan: budget | predicted | peak | act. part | × none | all: peak | act. part | × none | act. reduction (plan) | seed | total reduction (plan) | |",
         "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in out["rows"]:
        n, p, a = r["none"], r["plan"], r["all"]
        if "error" in n or "error" in p:
            L.append(f"| {r['batch']} | {n.get('error', '')} {p.get('error', '')} |" + " |" * 15)
            continue
        al = a if "error" not in a else {"peak_bytes": 0, "activation_part_bytes": 0, "ratio": float("nan")}
        L.append(f"| {r['batch']} | {n['peak_bytes'] / MIB:.1f} | {n['activation_part_bytes'] / MIB:.1f} | {n['median_step_ms']:.0f} | "
                 f"{r['budget_bytes'] / MIB:.1f} | {p['predicted_peak_bytes'] / MIB:.1f} | {p['peak_bytes'] / MIB:.1f} | "
                 f"{p['activation_part_bytes'] / MIB:.1f} | {p['ratio']:.2f} | {al['peak_bytes'] / MIB:.1f} | "
                 f"{al['activation_part_bytes'] / MIB:.1f} | {al['ratio']:.2f} | {100 * r['activation_reduction']:.0f}% | "
                 f"{100 * (r['seed_reduction'] or 0):.0f}% | {100 * r['total_reduction']:.0f}% | {'PASS' if r['pass'] else 'FAIL'} |")
    L += ["", "PASS: the plan's activation-part reduction is at least the seed's total-peak reduction at that batch size, "
          "at a lower step-time overhead than checkpointing every block."]
    return "\n".join(L) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--remat", required=True)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--command", required=True)
    sub = ap.add_subparsers(dest="what", required=True)
    s = sub.add_parser("sweep")
    s.add_argument("--model", required=True)
    s.add_argument("--batch", type=int, required=True)
    s.add_argument("--levels", default="1.0,0.8,0.6,0.45,0.3,0.15,0.05,0.01")
    s.add_argument("--solvers", default="greedy,auto")
    s.add_argument("--policies", default="none,all,alternate,every-k:2,sqrt,heavy-ops,save-matmuls,revolve:2")
    s.add_argument("--tolerance", type=float, default=0.03)
    s.add_argument("--out", required=True)
    r = sub.add_parser("render")
    r.add_argument("--out", required=True)
    b = sub.add_parser("batches")
    b.add_argument("--model", default="resnet50-64")
    b.add_argument("--batches", default="4,8,16,32,64")
    b.add_argument("--margin", type=float, default=0.01)
    b.add_argument("--out", required=True)
    args = ap.parse_args()
    {"sweep": sweep, "batches": batches, "render": render}[args.what](args)


if __name__ == "__main__":
    main()
