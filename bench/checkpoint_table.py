#!/usr/bin/env python3
"""Checkpointing benchmark table: Remat policies beside PyTorch checkpoint / SAC, same machine, same run.

Driven by bench/checkpoint_table.sh (which builds `remat` first). For each workload:

  * memory pass (once per model and policy, untimed):
      Remat:   `remat explain --model M --policy P --batch B --threads T --json`
               -> measured_peak_activation_bytes (ledger, forward + backward), kept_bytes (activations
                  live at the end of the forward), estimated_activation_bytes (the seed's per-block
                  estimator), and the same measured figures without the policy.
  * ROUNDS timed rounds; in each round Remat and PyTorch runs alternate policy by policy
      (Remat none, PyTorch none, Remat all, PyTorch all, ..., then the Remat-only policies; the
      order is reversed on even rounds so no policy always runs first or last):
      Remat:   `remat bench train --model M --batch B --policy P --threads T --steps S --json`
      PyTorch: `python3 bench/torch_train.py --model M --batch B --checkpoint C --threads T
                --steps S+2 --warmup 2` (+ `--profile-memory` in round 1, `--no-memory` after;
                the memory steps run after the timed steps).
    A run's time is its median_step_ms (median of S timed steps after 2 warm-up steps); a policy's
    time is the median over rounds; "x none" divides by the same framework's `none` median from
    this invocation; "Remat/PyTorch" divides the matching policies' medians (none/none, all/all,
    alternate/alternate, save-matmuls/sac-matmuls).

Writes results/checkpoint-table-<T>t.json (everything, incl. raw runs) and .md.
"""
import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REMAT = os.path.join(ROOT, ".build", "release", "remat")  # replaced by --remat (a private copy, see the .sh)

GPT_POLICIES = ["none", "all", "alternate", "every-k:2", "sqrt", "revolve:2", "heavy-ops", "save-matmuls"]
TORCH_PEER = {"none": "none", "all": "all", "alternate": "alternate", "save-matmuls": "sac-matmuls"}

p = argparse.ArgumentParser()
p.add_argument("--threads", type=int, default=1)
p.add_argument("--rounds", type=int, default=3)
p.add_argument("--steps-mini", type=int, default=5, help="timed steps per run for gpt-mini (after 2 warm-up)")
p.add_argument("--steps-long", type=int, default=3, help="timed steps per run for gpt-mini-long (after 2 warm-up)")
p.add_argument("--steps-resnet", type=int, default=3)
p.add_argument("--command", default=None, help="the command line to print at the top of the markdown")
p.add_argument("--remat", default=None, help="remat binary to run (the .sh passes a copy taken right after the build, "
               "so other sessions rebuilding .build/release during the run cannot change it)")
a = p.parse_args()
if a.remat:
    REMAT = a.remat


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run_json(cmd):
    t0 = time.time()
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr[-2000:]}")
    line = [l for l in out.stdout.splitlines() if l.strip().startswith("{")][-1]
    res = json.loads(line)
    res["_wall_s"] = round(time.time() - t0, 2)
    return res


def remat_has_model(name):
    out = subprocess.run([REMAT, "bench", "train", "--help"], cwd=ROOT, capture_output=True, text=True)
    return name in out.stdout


workloads = [
    dict(model="gpt-mini", batch=8, policies=GPT_POLICIES + ["store-nothing"], steps=a.steps_mini, torch=True),
    dict(model="gpt-mini-long", batch=2, policies=GPT_POLICIES, steps=a.steps_long, torch=True),
]
missing = []
if remat_has_model("resnet50-64"):
    # bench/torch_train.py is GPT-only; no PyTorch checkpoint peer for the ResNet here.
    workloads.append(dict(model="resnet50-64", batch=64, policies=GPT_POLICIES,
                          steps=a.steps_resnet, torch=False))
else:
    missing.append("resnet50-64 (`remat bench train --model resnet50-64` does not exist in this build)")

started = datetime.datetime.now().isoformat(timespec="seconds")
load_start = os.getloadavg()
t_start = time.time()
git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
dirty = subprocess.run(["git", "status", "--porcelain", "--", "Sources", "Package.swift"], cwd=ROOT,
                       capture_output=True, text=True).stdout.split("\n")
dirty = len([l for l in dirty if l.strip()])
import hashlib  # noqa: E402
remat_sha = hashlib.sha256(open(REMAT, "rb").read()).hexdigest()[:16]

explain = {}   # (model, policy) -> dict
for w in workloads:
    for pol in w["policies"]:
        cmd = [REMAT, "explain", "--model", w["model"], "--policy", pol, "--batch", str(w["batch"]),
               "--threads", str(a.threads), "--json"]
        try:
            e = run_json(cmd)
            e["saved_tensors"] = len(e.pop("saved", []))
            e.pop("checkpointed_modules", None)
        except Exception as err:  # e.g. explain does not know the model
            e = {"error": str(err).splitlines()[0]}
        explain[(w["model"], pol)] = e
        log(f"explain {w['model']} {pol}: {e.get('measured_peak_activation_bytes')}")

runs = []  # dicts: framework, model, policy, round, result
for r in range(1, a.rounds + 1):
    for w in workloads:
        order = []
        for pol in w["policies"]:
            order.append(("remat", pol))
            if w["torch"] and pol in TORCH_PEER:
                order.append(("torch", TORCH_PEER[pol]))
        if r % 2 == 0:
            order.reverse()
        for fw, pol in order:
            if fw == "remat":
                cmd = [REMAT, "bench", "train", "--model", w["model"], "--batch", str(w["batch"]), "--policy", pol,
                       "--threads", str(a.threads), "--steps", str(w["steps"]), "--json"]
            else:
                cmd = [sys.executable, os.path.join(ROOT, "bench", "torch_train.py"), "--model", w["model"],
                       "--batch", str(w["batch"]), "--checkpoint", pol, "--threads", str(a.threads),
                       "--steps", str(w["steps"] + 2), "--warmup", "2"]
                cmd += ["--profile-memory"] if r == 1 else ["--no-memory"]
            res = run_json(cmd)
            runs.append(dict(framework=fw, model=w["model"], policy=pol, round=r, result=res))
            log(f"round {r} {fw:5s} {w['model']} {pol}: {res['median_step_ms']:.0f} ms")

load_end = os.getloadavg()
elapsed = time.time() - t_start


def med(xs):
    return statistics.median(xs) if xs else None


table = []
for w in workloads:
    m = w["model"]
    sel = lambda fw, pol: [x for x in runs if x["framework"] == fw and x["model"] == m and x["policy"] == pol]
    r_none = med([x["result"]["median_step_ms"] for x in sel("remat", "none")])
    t_none = med([x["result"]["median_step_ms"] for x in sel("torch", "none")]) if w["torch"] else None
    rows = []
    for pol in w["policies"]:
        rr = sel("remat", pol)
        ms = med([x["result"]["median_step_ms"] for x in rr])
        per_round = {}
        for x in rr:
            base = [y for y in sel("remat", "none") if y["round"] == x["round"]]
            per_round[x["round"]] = x["result"]["median_step_ms"] / base[0]["result"]["median_step_ms"]
        first = rr[0]["result"]
        cats = first["peak_by_category"]
        acts = sorted({x["result"]["peak_by_category"]["activations"] for x in rr})
        e = explain[(m, pol)]
        row = dict(policy=pol, remat_median_step_ms=ms, remat_step_ms_per_round=[x["result"]["median_step_ms"] for x in rr],
                   remat_x_none=ms / r_none, remat_x_none_per_round=[per_round[k] for k in sorted(per_round)],
                   remat_peak_bytes=first["peak_bytes"], remat_peak_by_category=cats,
                   remat_bench_peak_activation_bytes=acts[-1], remat_bench_peak_activation_bytes_all_rounds=acts,
                   remat_step_peak_above_params_optimizer=first["peak_bytes"] - cats["parameters"] - cats["optimizer"],
                   explain=e)
        tp = TORCH_PEER.get(pol) if w["torch"] else None
        if tp:
            tr = sel("torch", tp)
            tms = med([x["result"]["median_step_ms"] for x in tr])
            mem = [x["result"] for x in tr if x["result"].get("saved_activation_bytes") is not None][0]
            row.update(torch_checkpoint=tp, torch_median_step_ms=tms,
                       torch_step_ms_per_round=[x["result"]["median_step_ms"] for x in tr],
                       torch_x_none=tms / t_none, torch_saved_activation_bytes=mem["saved_activation_bytes"],
                       torch_profiler_peak_bytes=mem.get("profiler_peak_bytes"),
                       torch_profiler_start_bytes=mem.get("profiler_start_bytes"),
                       torch_step_peak_above_params_optimizer=(mem["profiler_peak_bytes"] - mem["profiler_start_bytes"])
                       if mem.get("profiler_peak_bytes") is not None else None,
                       remat_over_torch=ms / tms,
                       remat_over_torch_per_round=[a_["result"]["median_step_ms"] / b_["result"]["median_step_ms"]
                                                   for a_ in rr for b_ in tr if a_["round"] == b_["round"]])
        rows.append(row)
    table.append(dict(model=m, batch=w["batch"], timed_steps_per_run=w["steps"], warmup_steps_per_run=2,
                      remat_none_median_ms=r_none, torch_none_median_ms=t_none, rows=rows))

# ---- targets ----
targets = []
for t in table:
    row = {x["policy"]: x for x in t["rows"]}
    if "all" in row:
        v = row["all"]["remat_x_none"]
        targets.append(dict(target=f"`all` <= 1.40x `none` step time ({t['model']})", value=f"{v:.2f}x", passed=v <= 1.40))
for t in table:
    if t["model"] != "gpt-mini":
        continue
    row = {x["policy"]: x for x in t["rows"]}
    for pol in ("save-matmuls", "heavy-ops"):
        e = row[pol]["explain"]
        cut = 1 - e["measured_peak_activation_bytes"] / e["measured_peak_activation_bytes_without_policy"]
        cut_bench = 1 - row[pol]["remat_bench_peak_activation_bytes"] / row["none"]["remat_bench_peak_activation_bytes"]
        x = row[pol]["remat_x_none"]
        targets.append(dict(target=f"`{pol}` on gpt-mini: activation peak cut >= 40% at <= 1.10x step time",
                            value=f"cut {100 * cut:.1f}% (explain) / {100 * cut_bench:.1f}% (bench ledger), {x:.2f}x",
                            passed=cut >= 0.40 and cut_bench >= 0.40 and x <= 1.10))
for t in table:
    for x in t["rows"]:
        if "torch_median_step_ms" not in x:
            continue
        mem_r, mem_t = x["explain"]["kept_bytes"], x["torch_saved_activation_bytes"]
        pk_r, pk_t = x["remat_step_peak_above_params_optimizer"], x["torch_step_peak_above_params_optimizer"]
        targets.append(dict(
            target=f"Remat ahead of PyTorch at equal memory ({t['model']}, {x['policy']} vs {x['torch_checkpoint']})",
            value=f"time {x['remat_over_torch']:.2f}x; held at fwd end {mem_r / mem_t:.3f}x; step peak above params+opt {pk_r / pk_t:.3f}x",
            # equal memory: held at the end of the forward within 1% and whole-step peak within 5%
            passed=x["remat_over_torch"] < 1.0 and mem_r <= mem_t * 1.01 and pk_r <= pk_t * 1.05))

out = dict(command=a.command, started=started, git=git, sources_dirty_files=dirty, remat_binary=REMAT,
           remat_binary_sha256_16=remat_sha, threads=a.threads, rounds=a.rounds, elapsed_s=round(elapsed),
           loadavg_start=load_start, loadavg_end=load_end, missing=missing,
           torch=next((x["result"]["torch"] for x in runs if x["framework"] == "torch"), None),
           table=table, targets=targets, runs=runs)
os.makedirs(os.path.join(ROOT, "results"), exist_ok=True)
jpath = os.path.join(ROOT, "results", f"checkpoint-table-{a.threads}t.json")
with open(jpath, "w") as f:
    json.dump(out, f, indent=1)

MiB = lambda b: "—" if b is None else f"{b / 2**20:.1f}"
lines = [f"# Checkpointing policies: Remat vs PyTorch, {a.threads} thread{'s' if a.threads > 1 else ''}", "",
         "```", a.command or f"bench/checkpoint_table.sh {a.threads} {a.rounds}", "```", "",
         f"{started}, git {git} ({dirty} uncommitted files under Sources/ at build time), remat binary sha256 "
         f"{remat_sha}… (one copy for the whole run), torch {out['torch']}, {a.rounds} rounds (Remat and PyTorch runs alternate; "
         f"order reversed on even rounds), {round(elapsed / 60, 1)} min, load average at start "
         f"{load_start[0]:.2f} / end {load_end[0]:.2f} (2-core shared machine).", ""]
for t in table:
    lines += [f"## {t['model']}, batch {t['batch']} — {t['timed_steps_per_run']} timed steps per run after 2 warm-up; "
              f"median over rounds", "",
              "| Remat policy | ms | × none | act. at total peak, bench (MiB) | act. peak, explain (MiB) | held at fwd end (MiB) | estimate (MiB) | step peak − params − opt (MiB) "
              "| PyTorch | ms | × none | held at fwd end (MiB) | step peak − params − opt (MiB) | Remat / PyTorch time |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|"]
    for x in t["rows"]:
        e = x["explain"]
        cells = [f"`{x['policy']}`", f"{x['remat_median_step_ms']:.0f}", f"{x['remat_x_none']:.2f}",
                 MiB(x["remat_bench_peak_activation_bytes"]), MiB(e.get("measured_peak_activation_bytes")),
                 MiB(e.get("kept_bytes")), MiB(e.get("estimated_activation_bytes")),
                 MiB(x["remat_step_peak_above_params_optimizer"])]
        if "torch_median_step_ms" in x:
            cells += [f"`{x['torch_checkpoint']}`", f"{x['torch_median_step_ms']:.0f}", f"{x['torch_x_none']:.2f}",
                      MiB(x["torch_saved_activation_bytes"]), MiB(x["torch_step_peak_above_params_optimizer"]),
                      f"**{x['remat_over_torch']:.2f}**"]
        else:
            cells += [""] * 6
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Per-round Remat × none: " + "; ".join(
        f"`{x['policy']}` " + ", ".join(f"{v:.2f}" for v in x["remat_x_none_per_round"]) for x in t["rows"]) + ".")
    per = [f"`{x['policy']}` " + ", ".join(f"{v:.2f}" for v in x["remat_over_torch_per_round"])
           for x in t["rows"] if "remat_over_torch_per_round" in x]
    if per:
        lines.append("Per-round Remat/PyTorch: " + "; ".join(per) + ".")
    lines.append("")
if missing:
    lines += ["Missing: " + "; ".join(missing) + ".", ""]
lines += ["## Targets (issue 5)", "",
          "Equal memory = Remat's bytes held at the end of the forward within 1% of PyTorch's and its whole-step peak "
          "(− params − opt) within 5%.", "", "| target | measured | |", "|---|---|---|"]
for g in targets:
    lines.append(f"| {g['target']} | {g['value']} | {'PASS' if g['passed'] else 'FAIL'} |")
lines += ["", "## Columns", "",
          "- **ms**: median over rounds of each run's median step (zero_grad + forward + loss + backward + AdamW). "
          "**× none**: divided by the same framework's `none` median from this invocation.",
          "- **act. at total peak, bench**: Remat `bench train` `peak_by_category.activations` — activation bytes at the moment of the "
          "total peak (not necessarily the activations' own peak).",
          "- **act. peak, explain**: `remat explain` `measured_peak_activation_bytes` — the ledger's peak of the activations "
          "category over one forward + backward (recomputed tensors count as activations).",
          "- **held at fwd end**: Remat: explain `kept_bytes` (activations live when the forward ends). PyTorch: "
          "`saved_activation_bytes` of bench/torch_train.py — unique storages (excluding parameters) autograd holds for "
          "backward when the forward ends, via saved_tensors_hooks, incl. SAC-cached outputs and region inputs.",
          "- **estimate**: explain `estimated_activation_bytes`, the seed's estimator (plain bytes − per-block bytes × "
          "checkpointed blocks).",
          "- **step peak − params − opt**: whole-step peak of all live tensor bytes minus parameters and optimizer state "
          "(activations + gradients + temporaries at the peak). Remat: `peak_bytes − parameters − optimizer` from the ledger. "
          "PyTorch: torch.profiler memory timeline (CPU) peak − live bytes at step start, one untimed profiled step.",
          "- **Remat / PyTorch time**: ratio of the two medians for the matching policy (`save-matmuls` ↔ SAC keeping "
          "aten.addmm/mm outputs, i.e. the nn.Linear outputs, and att@V). < 1: Remat faster.", ""]
mdpath = os.path.join(ROOT, "results", f"checkpoint-table-{a.threads}t.md")
with open(mdpath, "w") as f:
    f.write("\n".join(lines))
print("\n".join(lines))
log(f"wrote {jpath} and {mdpath}")
