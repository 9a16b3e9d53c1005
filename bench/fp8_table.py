#!/usr/bin/env python3
"""Seed 000's FP8 table (issue 16) from `remat bench fp8`: FP8 linears saving their float32 input
(as TorchAO's Float8Linear does) or their 1-byte FP8 input, without and with checkpointing, beside
float32 and bf16 autocast, on gpt-mini batch 8 and gpt-small batch 4, interleaved rounds.

  python3 bench/fp8_table.py [--remat .build/release/remat] [--rounds 5] [--out results/fp8-table]

Writes <out>.json and <out>.md (each atomically, the .md last).
"""
import argparse
import datetime
import json
import os
import subprocess

from benchlib import cpu_description, write_result

MIB = 1024 * 1024
SEED = [("Baseline (no FP8, no checkpointing)", 76.22), ("FP8 only", 74.25), ("Checkpointing only", 16.1),
        ("FP8 + Checkpointing", 29.70)]
NAMES = {"none": "float32", "none+autocast-bf16": "bf16 autocast", "none+fp8-linear-hp": "FP8, saving float32 inputs (TorchAO)",
         "none+fp8-linear": "FP8, saving FP8 inputs (Remat)"}


def label(policy, ckpt):
    base, _, rest = policy.partition("+")
    if base == "none":
        return NAMES[policy]
    suffix = {"": "float32", "autocast-bf16": "bf16 autocast", "fp8-linear-hp": "FP8 saving float32 inputs", "fp8-linear": "FP8 saving FP8 inputs"}[rest]
    return f"`{ckpt}` checkpointing, {suffix}"


def markdown(o):
    L = ["# FP8 and bf16 training with and without checkpointing (seed 000's table)", "",
         f"Command: `{o['command']}`, commit {o['commit']}{' (Sources modified)' if o['dirty'] else ''}, {o['cpu']}, "
         f"started {o['started']}, load average at start {o['load']:.2f}.", "",
         "Peaks are the ledger's (all tensor storage) in each row's last timed step; the activation peak is the "
         "activations category's own high-water mark. Step time: median over rounds of the row's step over the "
         "float32 row's in the same round (an untimed and a timed step of each row per round, the order reversed "
         "every other round). FP8 GEMMs run on dequantized float32 tiles (no FP8 hardware on this CPU): the FP8 rows "
         "are slower here by construction; their memory and numerics are the point. bf16 autocast: the products "
         "round operands and outputs to bf16 and run the float32 GEMM on those values (see `remat bench kernels` for "
         "the bf16 GEMM path), norms and softmax in float32, saved activations with bf16 values stored in 2 bytes.", ""]
    for run in o["runs"]:
        r = run["result"]
        base = r["variants"][0]
        L += [f"## {r['model']}, batch {r['batch']}, {r['threads']} threads, {r['rounds']} rounds", "",
              "| configuration | peak MiB | % of float32 | activation peak MiB | % of float32 | step × float32 |",
              "|---|---:|---:|---:|---:|---:|"]
        for v in r["variants"]:
            L.append(f"| {label(v['policy'], o['policy'])} | {v['peak_bytes'] / MIB:.1f} | {100 * v['peak_bytes'] / base['peak_bytes']:.1f}% "
                     f"| {v['activation_peak_bytes'] / MIB:.1f} | {100 * v['activation_peak_bytes'] / base['activation_peak_bytes']:.1f}% "
                     f"| {v['ratio_to_first']:.2f} ({v['ratio_min']:.2f}–{v['ratio_max']:.2f}) |")
        L.append("")
    L += ["Seed 000 (TorchAO on a GPU, memory utilisation of the device):", "",
          "| configuration | memory |", "|---|---:|"] + [f"| {n} | {m:.2f}% |" for n, m in SEED] + [""]
    return "\n".join(L)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--remat", default=".build/release/remat")
    p.add_argument("--runs", default="gpt-mini:8,gpt-small:4", help="MODEL:BATCH pairs")
    p.add_argument("--policy", default="all")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="results/fp8-table")
    a = p.parse_args()
    started = datetime.datetime.now().isoformat(timespec="seconds")
    load = os.getloadavg()[0]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--", "Sources"], capture_output=True, text=True, check=True).stdout.strip())
    runs = []
    for spec in a.runs.split(","):
        model, batch = spec.split(":")
        cmd = [a.remat, "bench", "fp8", "--model", model, "--batch", batch, "--policy", a.policy, "--rounds", str(a.rounds),
               "--threads", str(a.threads), "--json"]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"failed: {' '.join(cmd)}\n{out.stderr}")
        runs.append({"command": " ".join(cmd), "result": json.loads(out.stdout.strip().splitlines()[-1])})
    o = {"command": "python3 bench/fp8_table.py " + " ".join(f"--{k} {v}" for k, v in [("runs", a.runs), ("policy", a.policy), ("rounds", a.rounds)]),
         "commit": commit, "dirty": dirty, "cpu": cpu_description(), "started": started, "load": load, "policy": a.policy, "runs": runs}
    write_result(a.out, o, markdown(o))


if __name__ == "__main__":
    main()
