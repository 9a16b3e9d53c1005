#!/usr/bin/env python3
"""PyTorch peer for `remat bench train`: times full training steps of the reference GPT (bench/ref_gpt.py)
on the workloads of the spec, same thread count. A step = zero_grad + forward + loss + backward +
optimizer.step (AdamW lr 3e-4, betas (0.9, 0.95), eps 1e-8, weight decay 0.1 on every 2-D parameter
incl. the embeddings, none on biases/norms). Prints one JSON line. PyTorch (CPU) is used here only.

  python3 bench/torch_train.py --model gpt-mini --threads 2
  python3 bench/torch_train.py --model gpt-mini --threads 1 --checkpoint sac-matmuls

--checkpoint (every variant is torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False)):
  none         no checkpointing
  all          every transformer block is a checkpoint region
  alternate    blocks 0, 2, 4, ... are regions (Remat's `alternate`)
  sac-matmuls  every block is a region with selective activation checkpointing
               (create_selective_checkpoint_contexts): MUST_SAVE for aten.addmm / aten.mm — inside a
               block these are exactly the four nn.Linear layers (qkv, attn.proj, mlp.fc, mlp.proj) —
               and for att@V (the aten.bmm whose first operand is the [B*H, T, T] probabilities),
               PREFER_RECOMPUTE for everything else (layer norms, GELU, QK^T, scale, mask, softmax).
               This is Remat's `save-matmuls` (keep outputs of linear layers and of attention's P·V)
               as closely as PyTorch allows.

Activation memory (torch has no allocator ledger on CPU). After the timed steps, one extra untimed
step runs its forward under torch.autograd.graph.saved_tensors_hooks whose pack hook records the
untyped storage (keyed by data_ptr, counted once, nbytes of the whole storage) of every tensor
autograd saves for backward, excluding storages of parameters. Tensors that SAC caches
(MUST_SAVE outputs) are routed through the same hook (checkpoint(..., respect_saved_tensors_hooks=True)),
and a non-reentrant checkpoint region's inputs are saved by its _NoopSaveInputs node, which the
hook also sees; tensors saved *inside* a region are only placeholders (the region's own hook) and
are not counted. The sum, `saved_activation_bytes`, is therefore the bytes held for backward at the
end of the forward (every saved tensor stays alive until backward) — the analogue of Remat's
`remat explain` kept_bytes / plain_saved_bytes, NOT a peak: the extra memory of recomputing a region
during backward is not included. `--no-memory` skips the extra step.

--profile-memory adds one more untimed step under torch.profiler (profile_memory, record_shapes,
with_stack) and reads torch's memory profiler timeline for the CPU device: `profiler_peak_bytes` is
the peak of all live CPU tensor bytes during that whole step (forward, backward with recompute,
optimizer step; parameters, gradients, optimizer state, activations, temporaries) and
`profiler_start_bytes` the live bytes when it started (parameters + optimizer state; gradients are
None). Their difference is the comparable figure to Remat's peak_bytes minus its parameters and
optimizer categories. (The profiler's own per-category split is not used: on CPU it files most
saved activations under AUTOGRAD_DETAIL and parameters under INPUT.)
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

import torch
import torch.utils.checkpoint as tuc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ref_gpt import CONFIGS, RefGPT, make_optimizer  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--model", choices=sorted(CONFIGS), default="gpt-mini")
p.add_argument("--batch", type=int, default=None, help="override the workload's batch size")
p.add_argument("--threads", type=int, default=2)
p.add_argument("--steps", type=int, default=7, help="total steps; the first 2 are warm-up, the rest timed")
p.add_argument("--warmup", type=int, default=2)
p.add_argument("--checkpoint", choices=["none", "all", "alternate", "sac-matmuls"], default="none",
               help="all: torch.utils.checkpoint around every block (use_reentrant=False); alternate: every "
                    "other block; sac-matmuls: every block, selective (keep nn.Linear outputs, recompute the rest)")
p.add_argument("--profile-memory", action="store_true",
               help="one more untimed step under torch.profiler: peak live CPU tensor bytes of the whole step")
p.add_argument("--no-memory", action="store_true", help="skip the extra untimed step that measures saved_activation_bytes")
p.add_argument("--seed", type=int, default=0)
p.add_argument("--attention", choices=["explicit", "sdpa"], default="explicit",
               help="sdpa: F.scaled_dot_product_attention (the fused CPU flash kernel) instead of the explicit softmax")
a = p.parse_args()
if a.steps <= a.warmup:
    p.error("--steps must exceed --warmup")

torch.set_num_threads(a.threads)
torch.manual_seed(a.seed)
cfg = dict(CONFIGS[a.model])
batch = a.batch if a.batch is not None else cfg.pop("batch")
cfg.pop("batch", None)
T, vocab = cfg["T"], cfg["vocab"]

import ref_gpt  # noqa: E402
ref_gpt.Attention.use_sdpa = a.attention == "sdpa"
model = RefGPT(**cfg, dropout=0.0, checkpoint=False)  # regions are installed below
model.train()

# Selective activation checkpointing: keep the outputs of the linear layers (aten.addmm for 3-D inputs
# with bias; aten.mm without bias) and attention's att@V (the aten.bmm whose first operand is the
# [B*H, T, T] probabilities), recompute everything else (QK^T, scale, mask, softmax, norms, GELU):
# Remat's `save-matmuls`.
SAVE_OPS = {torch.ops.aten.addmm.default, torch.ops.aten.mm.default}


def is_attention_values(func, args):
    if func is not torch.ops.aten.bmm.default:
        return False
    a = args[0]
    return a.dim() == 3 and a.shape[-1] == a.shape[-2]


def sac_policy(ctx, func, *args, **kwargs):
    if func in SAVE_OPS or is_attention_values(func, args):
        return tuc.CheckpointPolicy.MUST_SAVE
    return tuc.CheckpointPolicy.PREFER_RECOMPUTE


def sac_context():
    return tuc.create_selective_checkpoint_contexts(sac_policy)


def install_region(block, selective):
    inner = block.forward  # the bound Block.forward

    def forward(x):
        if not torch.is_grad_enabled():
            return inner(x)
        if selective:
            return tuc.checkpoint(inner, x, use_reentrant=False, context_fn=sac_context,
                                  respect_saved_tensors_hooks=True)
        return tuc.checkpoint(inner, x, use_reentrant=False)
    block.forward = forward  # instance attribute: Module.__call__ (and its hooks) still wraps it


for i, block in enumerate(model.blocks):
    if a.checkpoint == "all" or a.checkpoint == "sac-matmuls" or (a.checkpoint == "alternate" and i % 2 == 0):
        install_region(block, selective=(a.checkpoint == "sac-matmuls"))
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

saved_bytes = None
saved_count = None
if not a.no_memory:
    # One extra, untimed step: bytes autograd holds for backward at the end of the forward (see the docstring).
    param_ptrs = {q.untyped_storage().data_ptr() for q in model.parameters()}
    seen = {}
    packed = [0]

    def pack(t):
        packed[0] += 1
        st = t.untyped_storage()
        ptr = st.data_ptr()
        if ptr not in param_ptrs and ptr not in seen:
            seen[ptr] = st.nbytes()
        return t  # keep it alive exactly as autograd would

    seq = torch.randint(0, vocab, (batch, T + 1), generator=gen, dtype=torch.int64)
    opt.zero_grad(set_to_none=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        _, loss = model(seq[:, :-1], seq[:, 1:])
    saved_bytes = sum(seen.values())
    saved_count = packed[0]
    loss.backward()
    opt.zero_grad(set_to_none=True)

prof_peak = prof_start = None
if a.profile_memory:
    from torch.profiler._memory_profiler import MemoryProfileTimeline

    seq = torch.randint(0, vocab, (batch, T + 1), generator=gen, dtype=torch.int64)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True,
                                record_shapes=True, with_stack=True) as prof:
        opt.zero_grad(set_to_none=True)
        _, loss = model(seq[:, :-1], seq[:, 1:])
        loss.backward()
        opt.step()
    _, sizes = MemoryProfileTimeline(prof._memory_profile())._coalesce_timeline("cpu")
    totals = [sum(row) for row in sizes]
    prof_peak, prof_start = max(totals), totals[0]

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
    "saved_activation_bytes": saved_bytes,
    "saved_tensors_packed": saved_count,
    **({"profiler_peak_bytes": prof_peak, "profiler_start_bytes": prof_start} if a.profile_memory else {}),
}))
