#!/usr/bin/env python3
"""PyTorch peer for the resnet50-64 and resnet50 workloads (../shared/spec/workloads.md): times full
training steps of torchvision's ResNet-50 on random images (resnet50-64: 100 classes, 3x64x64;
resnet50: torchvision's defaults, 1000 classes, 3x224x224). A step = zero_grad + forward +
cross-entropy + backward + SGD step (lr 0.1, momentum 0.9). Prints one JSON line like bench/torch_train.py.
PyTorch (CPU) and torchvision are used here only, never by the package.

  python3 bench/torch_resnet.py --batch 16 --threads 1
  python3 bench/torch_resnet.py --model resnet50 --batch 8 --threads 2
  python3 bench/torch_resnet.py --layers --batch 16 --threads 1   # per-conv-shape timings (docs/convolution.md)
"""
import argparse
import json
import resource
import statistics
import time

import torch
import torch.nn.functional as F
from torchvision.models import resnet50

p = argparse.ArgumentParser()
p.add_argument("--model", choices=["resnet50-64", "resnet50"], default="resnet50-64")
p.add_argument("--batch", type=int, default=16)
p.add_argument("--threads", type=int, default=1)
p.add_argument("--steps", type=int, default=7, help="total steps; the first --warmup are warm-up, the rest timed")
p.add_argument("--warmup", type=int, default=2)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--checkpoint", choices=["none", "blocks"], default="none",
               help="blocks: torch.utils.checkpoint (use_reentrant=False) on every bottleneck block")
p.add_argument("--profile-memory", action="store_true",
               help="one more untimed step under torch.profiler: peak live CPU tensor bytes of the whole step "
                    "(as bench/torch_train.py --profile-memory)")
p.add_argument("--layers", action="store_true",
               help="instead of steps: time forward+backward of F.conv2d alone on every distinct conv shape")
a = p.parse_args()
if a.steps <= a.warmup:
    p.error("--steps must exceed --warmup")

torch.set_num_threads(a.threads)
torch.manual_seed(a.seed)
classes, size = (1000, 224) if a.model == "resnet50" else (100, 64)
model = resnet50(num_classes=classes)
model.train()


class CheckpointedBlock(torch.nn.Module):
    """A bottleneck whose forward runs under torch.utils.checkpoint: only its input is saved."""

    def __init__(self, block):
        super().__init__()
        self.block = block

    def forward(self, x):
        return torch.utils.checkpoint.checkpoint(self.block, x, use_reentrant=False)


if a.checkpoint == "blocks":
    import torch.utils.checkpoint
    for layer in [model.layer1, model.layer2, model.layer3, model.layer4]:
        for i in range(len(layer)):
            layer[i] = CheckpointedBlock(layer[i])

if a.layers:
    # Distinct (Cin, H, W, Cout, k, stride, pad) of the convolutions a forward runs, with counts.
    shapes = {}

    def hook(mod, inp, out):
        x = inp[0]
        key = (x.shape[1], x.shape[2], x.shape[3], mod.out_channels, mod.kernel_size[0], mod.stride[0], mod.padding[0])
        shapes[key] = shapes.get(key, 0) + 1

    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        model(torch.randn(1, 3, size, size))
    for h in hs:
        h.remove()
    rows = []
    for (cin, h, w, cout, k, s, pad), count in sorted(shapes.items(), key=lambda kv: (-kv[0][1], kv[0])):
        x = torch.randn(a.batch, cin, h, w, requires_grad=cin != 3)  # the stem's image needs no gradient
        wt = torch.randn(cout, cin, k, k, requires_grad=True)
        fwd, bwd = [], []
        for i in range(a.steps):
            t0 = time.perf_counter()
            y = F.conv2d(x, wt, None, s, pad)
            t1 = time.perf_counter()
            y.backward(torch.ones_like(y))
            t2 = time.perf_counter()
            x.grad = None
            wt.grad = None
            if i >= a.warmup:
                fwd.append((t1 - t0) * 1e3)
                bwd.append((t2 - t1) * 1e3)
        oh = (h + 2 * pad - k) // s + 1
        flops = 2 * a.batch * cout * oh * oh * cin * k * k
        f, b = statistics.median(fwd), statistics.median(bwd)
        rows.append({"cin": cin, "hw": h, "cout": cout, "k": k, "stride": s, "pad": pad, "count": count,
                     "fwd_ms": round(f, 3), "bwd_ms": round(b, 3),
                     "fwd_gflops": round(flops / f / 1e6, 1),
                     "bwd_gflops": round((1 if cin == 3 else 2) * flops / b / 1e6, 1)})
    print(json.dumps({"framework": "torch", "batch": a.batch, "threads": a.threads, "torch": torch.__version__,
                      "total_fwd_ms": round(sum(r["fwd_ms"] * r["count"] for r in rows), 1),
                      "total_bwd_ms": round(sum(r["bwd_ms"] * r["count"] for r in rows), 1),
                      "convs": rows}))
    raise SystemExit

opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
gen = torch.Generator().manual_seed(a.seed + 1)

times, losses = [], []
for step in range(a.steps):
    images = torch.randn(a.batch, 3, size, size, generator=gen)
    targets = torch.randint(0, classes, (a.batch,), generator=gen, dtype=torch.int64)
    t0 = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(images), targets)
    loss.backward()
    opt.step()
    dt = time.perf_counter() - t0
    losses.append(loss.item())
    if step >= a.warmup:
        times.append(dt * 1e3)

prof_peak = prof_start = None
if a.profile_memory:
    from torch.profiler._memory_profiler import MemoryProfileTimeline

    images = torch.randn(a.batch, 3, size, size, generator=gen)
    targets = torch.randint(0, classes, (a.batch,), generator=gen, dtype=torch.int64)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True,
                                record_shapes=True, with_stack=True) as prof:
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(images), targets)
        loss.backward()
        opt.step()
    _, sizes = MemoryProfileTimeline(prof._memory_profile())._coalesce_timeline("cpu")
    totals = [sum(row) for row in sizes]
    prof_peak, prof_start = max(totals), totals[0]

print(json.dumps({
    "framework": "torch",
    "model": a.model,
    "checkpoint": a.checkpoint,
    "batch": a.batch,
    "threads": a.threads,
    "median_step_ms": round(statistics.median(times), 3),
    "step_ms": [round(t, 3) for t in times],
    "torch": torch.__version__,
    "params": sum(p.numel() for p in model.parameters()),
    "last_loss": round(losses[-1], 5),
    "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    **({"profiler_peak_bytes": prof_peak, "profiler_start_bytes": prof_start} if a.profile_memory else {}),
}))
