#!/usr/bin/env python3
"""PyTorch peer for `remat bench train`: times full training steps of the reference GPT (bench/ref_gpt.py)
on the workloads of the spec, same thread count. A step = zero_grad + forward + loss + backward +
optimizer.step (AdamW lr 3e-4, betas (0.9, 0.95), eps 1e-8, weight decay 0.1 on every 2-D parameter
incl. the embeddings, none on biases/norms). Prints one JSON line. PyTorch (CPU) is used here only.

  python3 bench/torch_train.py --model gpt-mini --threads 2
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ref_gpt import CONFIGS, RefGPT, make_optimizer  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--model", choices=sorted(CONFIGS), default="gpt-mini")
p.add_argument("--batch", type=int, default=None, help="override the workload's batch size")
p.add_argument("--threads", type=int, default=2)
p.add_argument("--steps", type=int, default=7, help="total steps; the first 2 are warm-up, the rest timed")
p.add_argument("--warmup", type=int, default=2)
p.add_argument("--checkpoint", choices=["none", "all"], default="none",
               help="all: torch.utils.checkpoint around every block (use_reentrant=False)")
p.add_argument("--seed", type=int, default=0)
a = p.parse_args()
if a.steps <= a.warmup:
    p.error("--steps must exceed --warmup")

torch.set_num_threads(a.threads)
torch.manual_seed(a.seed)
cfg = dict(CONFIGS[a.model])
batch = a.batch if a.batch is not None else cfg.pop("batch")
cfg.pop("batch", None)
T, vocab = cfg["T"], cfg["vocab"]

model = RefGPT(**cfg, dropout=0.0, checkpoint=(a.checkpoint == "all"))
model.train()
opt = make_optimizer(model)
gen = torch.Generator().manual_seed(a.seed + 1)

times, losses = [], []
for step in range(a.steps):
    seq = torch.randint(0, vocab, (batch, T + 1), generator=gen, dtype=torch.int64)  # random bytes
    inp, tgt = seq[:, :-1], seq[:, 1:]
    t0 = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    _, loss = model(inp, tgt)
    loss.backward()
    opt.step()
    dt = time.perf_counter() - t0
    losses.append(loss.item())  # after timing: .item() is outside the step (CPU is synchronous anyway)
    if step >= a.warmup:
        times.append(dt * 1e3)

print(json.dumps({
    "framework": "torch",
    "model": a.model,
    "batch": batch,
    "threads": a.threads,
    "median_step_ms": round(statistics.median(times), 3),
    "step_ms": [round(t, 3) for t in times],
    "checkpoint": a.checkpoint,
    "torch": torch.__version__,
    "params": sum(p.numel() for p in model.parameters()),
    "last_loss": round(losses[-1], 5),
    "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
}))
