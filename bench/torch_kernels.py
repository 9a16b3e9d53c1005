#!/usr/bin/env python3
"""PyTorch peer for `remat bench kernels`: torch.mm GFLOP/s and elementwise GB/s on the same
sizes and thread count. Prints JSON in the same shape as `remat bench kernels --json`.
PyTorch (CPU) from PyPI is used here only, never by the package."""
import argparse, json, statistics, time
import torch

p = argparse.ArgumentParser()
p.add_argument("--threads", type=int, default=2)
p.add_argument("--sizes", default="256,512,1024,2048")
p.add_argument("--elements", type=int, default=1 << 22)
p.add_argument("--reps", type=int, default=15)
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)

def timed(fn, reps):
    fn()
    out = []
    for _ in range(reps):
        t0 = time.perf_counter(); fn(); out.append(time.perf_counter() - t0)
    return statistics.median(out)

mm = []
for n in [int(s) for s in a.sizes.split(",")]:
    x, y = torch.randn(n, n), torch.randn(n, n)
    reps = a.reps if n <= 1024 else max(5, a.reps // 3)
    t = timed(lambda: torch.mm(x, y), reps)
    mm.append({"n": n, "gflops": 2 * n ** 3 / t / 1e9})

n = a.elements
x, y = torch.randn(n), torch.randn(n)
rows = n // 1024
xr = torch.randn(rows, 1024); w = torch.ones(1024); b = torch.zeros(1024)
cases = [
    ("add", 3 * 4 * n, lambda: x + y),
    ("mul", 3 * 4 * n, lambda: x * y),
    ("exp", 2 * 4 * n, lambda: torch.exp(x)),
    ("relu", 2 * 4 * n, lambda: torch.relu(x)),
    ("gelu_tanh", 2 * 4 * n, lambda: torch.nn.functional.gelu(x, approximate="tanh")),
    ("layer_norm", 2 * 4 * n, lambda: torch.nn.functional.layer_norm(xr, (1024,), w, b)),
    ("softmax", 2 * 4 * n, lambda: torch.softmax(xr, dim=-1)),
]
ew = [{"name": name, "gbps": moved / timed(fn, a.reps) / 1e9} for name, moved, fn in cases]
print(json.dumps({"threads": a.threads, "torch": torch.__version__, "matmul": mm, "elementwise": ew}))
