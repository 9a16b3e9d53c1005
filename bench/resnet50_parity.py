#!/usr/bin/env python3
"""Parity of one training step of the `resnet50` workload with torchvision's ResNet-50 (issue 22).

  python3 bench/resnet50_parity.py [--remat .build/release/remat] [--batch 2] [--out results/resnet50-224-parity.md]

torchvision `resnet50()` as it is (1000 classes, 224x224), torch.manual_seed(0) init, then every
BatchNorm's weight, bias and running statistics perturbed (so that nothing sits at the trivial 1/0
values, as the resnet_tiny fixture does). A batch of N(0,1) images with random classes (seed 1234).
The same weights run one forward + cross-entropy + backward in float32 and in float64
(model.double()); Remat runs `remat step --model resnet50 --weights W --batch X --save-grads G`
on the same files. For every parameter: the normwise relative error of Remat's gradient and of
PyTorch float32's against float64 (||g - g64|| / ||g64||). The yardstick is PyTorch float32's own
error: the report gives the ratio per parameter, its median and worst, and the loss of each.
Writes the Markdown table (with the command, commit and CPU) to --out, atomically.

Requires torch, torchvision, safetensors, numpy; PyTorch is used only here, never by the package.
"""
import argparse
import json
import os
import statistics
import subprocess
import tempfile

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torchvision.models import resnet50

from benchlib import cpu_description

p = argparse.ArgumentParser()
p.add_argument("--remat", default=".build/release/remat")
p.add_argument("--batch", type=int, default=2)
p.add_argument("--out", default="results/resnet50-224-parity.md")
a = p.parse_args()

torch.manual_seed(0)
model = resnet50()
with torch.no_grad():
    g = torch.Generator().manual_seed(7)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.weight.copy_(1 + 0.2 * torch.randn(n, generator=g))
            m.bias.copy_(0.1 * torch.randn(n, generator=g))
            m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
            m.running_var.copy_(1 + 0.2 * torch.rand(n, generator=g))
model.train()
state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
gen = torch.Generator().manual_seed(1234)
images = torch.randn(a.batch, 3, 224, 224, generator=gen)
targets = torch.randint(0, 1000, (a.batch,), generator=gen, dtype=torch.int64)


def grads(dtype):
    m = resnet50()
    m.load_state_dict(state)
    m = m.to(dtype)
    m.train()
    loss = F.cross_entropy(m(images.to(dtype)), targets)
    loss.backward()
    return loss.item(), {n: q.grad.detach().to(torch.float64) for n, q in m.named_parameters()}


loss32, g32 = grads(torch.float32)
loss64, g64 = grads(torch.float64)

with tempfile.TemporaryDirectory() as d:
    w, x, gpath = (os.path.join(d, f) for f in ("w.safetensors", "x.safetensors", "g.safetensors"))
    save_file(state, w)
    save_file({"input": images.contiguous(), "target": targets}, x)
    run = subprocess.run([a.remat, "step", "--model", "resnet50", "--weights", w, "--batch", x,
                          "--save-grads", gpath, "--json"], capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"remat step failed ({run.returncode}): {run.stderr.strip()}")
    loss_remat = json.loads(run.stdout.strip().splitlines()[-1])["loss"]
    gr = {k: v.to(torch.float64) for k, v in load_file(gpath).items()}

missing = sorted(set(g64) - set(gr))
if missing:
    raise SystemExit(f"remat wrote no gradient for {len(missing)} parameters, e.g. {missing[:3]}")


def err(g, ref):
    return (torch.linalg.vector_norm(g - ref) / torch.linalg.vector_norm(ref).clamp_min(1e-300)).item()


rows = []
for n in g64:
    e_t, e_r = err(g32[n], g64[n]), err(gr[n], g64[n])
    rows.append((n, e_t, e_r, e_r / e_t if e_t > 0 else float("inf")))
ratios = [r[3] for r in rows]
worst = max(rows, key=lambda r: r[3])
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
dirty = subprocess.run(["git", "status", "--porcelain", "--", "Sources"], capture_output=True, text=True).stdout.strip()

lines = [
    "# One training step of `resnet50` (224×224, 1000 classes) against torchvision's ResNet-50",
    "",
    f"Command: `python3 bench/resnet50_parity.py --batch {a.batch}`, commit {commit}{' (Sources modified)' if dirty else ''}, "
    f"{cpu_description()}, torch {torch.__version__}.",
    "",
    "torchvision `resnet50()` initialised with torch.manual_seed(0), every BatchNorm's weight, bias and running "
    "statistics perturbed; one forward + cross-entropy + backward in training mode on N(0, 1) images with random "
    "classes (seed 1234), in PyTorch float32, PyTorch float64 and Remat (`remat step --save-grads`, float32) on the "
    "same safetensors files. Error: normwise relative error of a gradient against float64's.",
    "",
    f"Loss: float64 {loss64:.10f}, PyTorch float32 {loss32:.10f} (|Δ| {abs(loss32 - loss64):.2e}), "
    f"Remat {loss_remat:.10f} (|Δ| {abs(loss_remat - loss64):.2e}).",
    "",
    f"Over all {len(rows)} parameters, Remat's error / PyTorch float32's: median {statistics.median(ratios):.2f}, "
    f"worst {worst[3]:.2f} (`{worst[0]}`: Remat {worst[2]:.2e}, PyTorch {worst[1]:.2e}); "
    f"largest Remat error {max(r[2] for r in rows):.2e} (PyTorch float32's largest {max(r[1] for r in rows):.2e}).",
    "",
    "| parameter | PyTorch f32 error | Remat error | ratio |",
    "|---|---|---|---|",
]
for n, e_t, e_r, q in rows:
    lines.append(f"| `{n}` | {e_t:.2e} | {e_r:.2e} | {q:.2f} |")
os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
tmp = a.out + ".tmp"
with open(tmp, "w") as f:
    f.write("\n".join(lines) + "\n")
os.replace(tmp, a.out)
print(f"median ratio {statistics.median(ratios):.2f}, worst {worst[3]:.2f} ({worst[0]}); wrote {a.out}")
