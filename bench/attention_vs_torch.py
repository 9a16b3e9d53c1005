#!/usr/bin/env python3
"""Causal attention kernels beside PyTorch's, measured in the same run (issue 17).

For each thread count and round: `remat bench attention --json` (the fused
scaledDotProductAttention and the explicit probabilities, interleaved), then PyTorch's
`scaled_dot_product_attention` with the flash CPU kernel and with the math backend on the same
shapes. Rounds alternate Remat and PyTorch; per-round medians, then the median over rounds; the
ratio Remat fused / PyTorch flash is taken within each round. Saved bytes: what each framework
holds for backward beyond q, k, v (PyTorch: unique storages through saved_tensors_hooks).
Writes results/attention.{json,md}. PyTorch (CPU, from PyPI) is used here only.

Usage: bench/attention_vs_torch.py [--python VENV_PYTHON] [--threads 1,2] [--rounds 3] [--reps 5]
"""
import argparse, json, os, statistics, subprocess, sys

sys.path.insert(0, os.path.dirname(__file__))
from benchlib import cpu_description, write_result

TORCH = r'''
import json, statistics, sys, time
import torch
import torch.nn.functional as F
from torch.nn.attention import sdpa_kernel, SDPBackend
threads, heads, hd, reps = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
shapes = [tuple(map(int, s.split("x"))) for s in sys.argv[5].split(",")]
torch.set_num_threads(threads)
torch.manual_seed(11)
rows = []
for b, t in shapes:
    q, k, v = [torch.randn(b, heads, t, hd, requires_grad=True) for _ in range(3)]
    g = torch.randn(b, heads, t, hd)
    inputs = {x.untyped_storage().data_ptr() for x in (q, k, v)}
    for name, backend in [("torch-flash", SDPBackend.FLASH_ATTENTION), ("torch-math", SDPBackend.MATH)]:
        fwd, both, saved = [], [], 0
        for rep in range(-1, reps):
            for x in (q, k, v): x.grad = None
            storages = {}
            def pack(x):
                s = x.untyped_storage()
                if s.data_ptr() not in inputs: storages[s.data_ptr()] = s.nbytes()
                return x
            with sdpa_kernel([backend]), torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
                t0 = time.perf_counter(); y = F.scaled_dot_product_attention(q, k, v, is_causal=True); f = time.perf_counter() - t0
            saved = sum(storages.values())
            del y
            with sdpa_kernel([backend]):
                t0 = time.perf_counter(); F.scaled_dot_product_attention(q, k, v, is_causal=True).backward(g); fb = time.perf_counter() - t0
            if rep >= 0: fwd.append(f); both.append(fb)
        rows.append({"kernel": name, "batch": b, "heads": heads, "t": t, "head_dim": hd, "forward_ms": statistics.median(fwd) * 1e3,
                     "forward_backward_ms": statistics.median(both) * 1e3, "saved_bytes": saved})
print(json.dumps({"torch": torch.__version__, "rows": rows}))
'''


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--python", default="/work/venv-torch/bin/python")
    p.add_argument("--remat", default=".build/release/remat")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--shapes", default="8x256,2x1024,1x4096")
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--head-dim", type=int, default=32)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--out", default="results/attention")
    a = p.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    runs = []   # (threads, round, rows)
    torch_version = "?"
    for threads in [int(x) for x in a.threads.split(",")]:
        for r in range(a.rounds):
            out = subprocess.run([a.remat, "bench", "attention", "--threads", str(threads), "--shapes", a.shapes, "--heads", str(a.heads),
                                  "--head-dim", str(a.head_dim), "--reps", str(a.reps), "--json"], capture_output=True, text=True, check=True).stdout
            remat = json.loads(out)
            blas = remat["blas"]
            out = subprocess.run([a.python, "-c", TORCH, str(threads), str(a.heads), str(a.head_dim), str(a.reps), a.shapes],
                                 capture_output=True, text=True, check=True).stdout
            torch = json.loads(out)
            torch_version = torch["torch"]
            runs.append((threads, r, remat["rows"] + torch["rows"]))
            print(f"threads {threads} round {r + 1}/{a.rounds} done", file=sys.stderr)
    kernels = ["fused", "explicit", "torch-flash", "torch-math"]
    table = []
    for threads in sorted({t for t, _, _ in runs}):
        for shape in a.shapes.split(","):
            b, t = map(int, shape.split("x"))
            def rows_of(kernel):
                return [next(x for x in rows if x["kernel"] == kernel and x["batch"] == b and x["t"] == t) for th, _, rows in runs if th == threads]
            entry = {"threads": threads, "batch": b, "t": t}
            for kernel in kernels:
                rs = rows_of(kernel)
                entry[kernel] = {"forward_ms": statistics.median(x["forward_ms"] for x in rs),
                                 "forward_backward_ms": statistics.median(x["forward_backward_ms"] for x in rs),
                                 "saved_bytes": rs[-1]["saved_bytes"]}
            f, tf = rows_of("fused"), rows_of("torch-flash")
            entry["fused_vs_torch_flash_forward"] = statistics.median(x["forward_ms"] / y["forward_ms"] for x, y in zip(f, tf))
            entry["fused_vs_torch_flash_forward_backward"] = statistics.median(x["forward_backward_ms"] / y["forward_backward_ms"] for x, y in zip(f, tf))
            table.append(entry)
    cpu = cpu_description()
    cmd = "python3 bench/attention_vs_torch.py " + " ".join(sys.argv[1:])
    md = [f"# Causal attention kernels beside PyTorch (issue 17)", "",
          f"Commit {commit}, {cpu}, {blas}, PyTorch {torch_version}. `{cmd}`: {a.rounds} rounds per thread count, "
          f"each round `remat bench attention` then PyTorch on the same shapes, {a.reps} repetitions of each kernel per round after a warm-up "
          f"(Remat's two kernels interleaved, PyTorch's two interleaved); medians of the rounds' medians. {a.heads} heads of {a.head_dim} "
          f"(gpt-mini's), causal, float32, inputs requiring gradients; forward timed with the graph recorded, fwd+bwd from a fixed output gradient. "
          f"Ratios Remat fused / PyTorch flash within each round (median). Saved: bytes held for backward beyond q, k, v.", "",
          "| threads | B×T | kernel | forward ms | fwd+bwd ms | saved MiB |", "|---|---|---|---|---|---|"]
    names = {"fused": "Remat fused (sdpa)", "explicit": "Remat explicit (probabilities)", "torch-flash": "PyTorch SDPA flash", "torch-math": "PyTorch SDPA math"}
    for e in table:
        for kernel in kernels:
            x = e[kernel]
            md.append(f"| {e['threads']} | {e['batch']}×{e['t']} | {names[kernel]} | {x['forward_ms']:.2f} | {x['forward_backward_ms']:.2f} | {x['saved_bytes'] / 2**20:.2f} |")
    md += ["", "| threads | B×T | fused / PyTorch flash, forward | fused / PyTorch flash, fwd+bwd |", "|---|---|---|---|"]
    for e in table:
        md.append(f"| {e['threads']} | {e['batch']}×{e['t']} | {e['fused_vs_torch_flash_forward']:.2f}× | {e['fused_vs_torch_flash_forward_backward']:.2f}× |")
    write_result(a.out, {"commit": commit, "cpu": cpu, "blas": blas, "torch": torch_version, "command": cmd, "rounds": a.rounds, "reps": a.reps,
                         "table": table, "runs": [{"threads": t, "round": r, "rows": rows} for t, r, rows in runs]}, "\n".join(md) + "\n")


if __name__ == "__main__":
    main()
