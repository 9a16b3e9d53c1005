#!/usr/bin/env python3
"""Training loss of FP8 linears and bf16 autocast beside float32 (issue 16): `remat train` on the same seed and data
for each --precision, the loss every 20 steps, and the last step's loss relative to float32's.

  python3 bench/fp8_loss.py [--remat .build/release/remat] [--model gpt-mini] [--steps 200] [--out results/fp8-loss-gpt-mini]

Writes <out>.json and <out>.md (each atomically, the .md last).
"""
import argparse
import datetime
import os
import re
import subprocess

from benchlib import cpu_description, write_result

LINE = re.compile(r"step\s+(\d+)/\d+\s+loss ([0-9.naninf]+)\s+(\d+) ms")
SCALING = re.compile(r"fp16 loss scaling: (\d+) of (\d+) steps skipped.*loss scale now ([0-9.e+]+)")


def train(a, precision):
    cmd = [a.remat, "train", "--model", a.model, "--steps", str(a.steps), "--log-every", str(a.every), "--seed", str(a.seed),
           "--precision", precision, "--threads", str(a.threads)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{p.stderr}")
    rows = [(int(m.group(1)), float(m.group(2)), int(m.group(3))) for m in map(LINE.search, p.stdout.splitlines()) if m]
    run = {"command": " ".join(cmd), "steps": rows}
    # What ran the products: the GEMM library and, under autocast, the bf16 GEMM path.
    for line in p.stdout.splitlines():
        if line.startswith("GEMM: "):
            run["gemm"] = line[len("GEMM: "):]
        elif line.startswith("bf16/fp16 products: "):
            run["low_precision_gemm"] = line[len("bf16/fp16 products: "):]
    scaling = [m for m in map(SCALING.search, p.stdout.splitlines()) if m]
    if scaling:
        run["skipped_steps"], run["final_loss_scale"] = int(scaling[-1].group(1)), float(scaling[-1].group(3))
    return run


def markdown(o):
    runs = o["runs"]
    names = list(runs)
    L = [f"# Training loss: {o['model']}, " + ", ".join(names[1:]) + " beside float32", "",
         f"Command: `{o['command']}`, commit {o['commit']}{' (Sources modified)' if o['dirty'] else ''}, {o['cpu']}, "
         f"started {o['started']}. Same seed ({o['seed']}), weights and batches (built-in arithmetic data) for every run; "
         "`remat train --precision P`, AdamW with warm-up and cosine decay.", "",
         "| step | " + " | ".join(names) + " | " + " | ".join(f"{n} / float32" for n in names[1:]) + " |",
         "|---:|" + "---:|" * (2 * len(names) - 1)]
    base = {s: l for s, l, _ in runs[names[0]]["steps"]}
    for s, _, _ in runs[names[0]]["steps"]:
        vals = [dict((x, l) for x, l, _ in runs[n]["steps"]).get(s) for n in names]
        ratios = [f"{v / base[s]:.4f}" if v is not None else "" for v in vals[1:]]
        L.append(f"| {s} | " + " | ".join(f"{v:.4f}" for v in vals) + " | " + " | ".join(ratios) + " |")
    L.append("")
    for n in names:
        gemm = runs[n].get("gemm", "?") + (f"; {runs[n]['low_precision_gemm']}" if "low_precision_gemm" in runs[n] else "")
        L.append(f"- {n} GEMM: {gemm}")
    L.append("")
    last = runs[names[0]]["steps"][-1][0]
    for n in names[1:]:
        v = dict((x, l) for x, l, _ in runs[n]["steps"])[last]
        worst = max(abs(dict((x, l) for x, l, _ in runs[n]["steps"])[s] / base[s] - 1) for s, _, _ in runs[names[0]]["steps"])
        scaling = (f" Loss scaling: {runs[n]['skipped_steps']} of {last} steps skipped (inf/NaN gradients), final scale "
                   f"{runs[n]['final_loss_scale']:g}.") if "skipped_steps" in runs[n] else ""
        L.append(f"- {n}: loss at step {last} {v:.4f}, {100 * (v / base[last] - 1):+.2f}% against float32's {base[last]:.4f} "
                 f"(largest gap at a tabled step {100 * worst:.2f}%).{scaling}")
    L.append("")
    return "\n".join(L)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--remat", default=".build/release/remat")
    p.add_argument("--model", default="gpt-mini")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--every", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--precisions", default="float32,bf16,fp8,fp8-save-hp")
    p.add_argument("--out", default="results/fp8-loss-gpt-mini")
    a = p.parse_args()
    started = datetime.datetime.now().isoformat(timespec="seconds")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--", "Sources"], capture_output=True, text=True, check=True).stdout.strip())
    runs = {pr: train(a, pr) for pr in a.precisions.split(",")}
    env = f"REMAT_OPENBLAS={os.environ['REMAT_OPENBLAS']} " if os.environ.get("REMAT_OPENBLAS") else ""
    o = {"command": f"{env}python3 bench/fp8_loss.py --model {a.model} --steps {a.steps} --precisions {a.precisions}", "model": a.model,
         "seed": a.seed, "commit": commit, "dirty": dirty, "cpu": cpu_description(), "started": started, "runs": runs}
    write_result(a.out, o, markdown(o))


if __name__ == "__main__":
    main()
