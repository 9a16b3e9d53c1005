#!/usr/bin/env python3
"""Write the gpt_tiny fixtures used by the Swift GPT tests (deterministic; run once, outputs committed).

  python3 scripts/make_gpt_fixture.py            # from the package root

Model: bench/ref_gpt.py RefGPT, tiny config (vocab 256, T 16, layers 2, heads 2, d_model 32, mlp 64),
init per spec with torch.manual_seed(0). Batch B=2 of random bytes (seed 1234): each row draws T+1
bytes, input = bytes[:T], target = bytes[1:] (next-byte prediction).

Outputs (Tests/RematTests/Fixtures/):
  gpt_tiny_weights.safetensors  every parameter by its state_dict name, F32
  gpt_tiny_batch.safetensors    input, target: I64 [B, T]
  gpt_tiny_grads.safetensors    <name>: grad from the float32 forward/backward (F32)
                                f64.<name>: grad from a float64 forward/backward of the same weights, stored as F32
  gpt_tiny.json                 config, loss (f32), loss_f64, one AdamW step on 3 parameters, torch version
Requires: torch, safetensors, numpy. PyTorch is used only here, never by the package.
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from ref_gpt import BETAS, EPS, LR, WEIGHT_DECAY, RefGPT, make_optimizer  # noqa: E402

OUT = os.path.join(ROOT, "Tests", "RematTests", "Fixtures")
CONFIG = dict(vocab=256, T=16, layers=2, heads=2, d_model=32, mlp_hidden=64)
B = 2
WEIGHT_SEED, BATCH_SEED = 0, 1234
ADAMW_PARAMS = ["tok_emb.weight", "blocks.0.attn.qkv.bias", "blocks.1.mlp.fc.weight"]
N_FIRST = 8


def first(t, n=N_FIRST):
    return [float(v) for v in t.detach().reshape(-1)[:n].tolist()]


def main():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    os.makedirs(OUT, exist_ok=True)

    torch.manual_seed(WEIGHT_SEED)
    m32 = RefGPT(**CONFIG)
    weights = {k: v.detach().clone().contiguous() for k, v in m32.state_dict().items()}
    assert "lm_head.weight" not in weights

    g = torch.Generator().manual_seed(BATCH_SEED)
    seq = torch.randint(0, CONFIG["vocab"], (B, CONFIG["T"] + 1), generator=g, dtype=torch.int64)
    inp, tgt = seq[:, :-1].contiguous(), seq[:, 1:].contiguous()

    # float64 reference: same weights, cast to double
    m64 = RefGPT(**CONFIG).double()
    m64.load_state_dict({k: v.double() for k, v in weights.items()})

    m32.train(); m64.train()  # dropout is 0, train == eval
    logits32, loss32 = m32(inp, tgt)
    loss32.backward()
    logits64, loss64 = m64(inp, tgt)
    loss64.backward()

    grads = {}
    for (n, p32), (n64, p64) in zip(m32.named_parameters(), m64.named_parameters()):
        assert n == n64
        grads[n] = p32.grad.detach().float().contiguous()
        grads["f64." + n] = p64.grad.detach().float().contiguous()

    # one AdamW step (weight decay 0.1 on 2-D params incl. embeddings; none on biases / norms)
    params32, params64 = dict(m32.named_parameters()), dict(m64.named_parameters())
    before = {n: first(params32[n]) for n in ADAMW_PARAMS}
    opt32, opt64 = make_optimizer(m32), make_optimizer(m64)
    opt32.step(); opt64.step()
    adamw = {}
    for n in ADAMW_PARAMS:
        adamw[n] = {
            "shape": list(params32[n].shape),
            "weight_decay": WEIGHT_DECAY if params32[n].dim() >= 2 else 0.0,
            "before": before[n],
            "grad": first(grads[n]),
            "after": first(params32[n]),
            "grad_f64": first(grads["f64." + n]),
            "after_f64": first(params64[n]),
        }

    save_file(weights, os.path.join(OUT, "gpt_tiny_weights.safetensors"), metadata={"format": "pt"})
    save_file({"input": inp, "target": tgt}, os.path.join(OUT, "gpt_tiny_batch.safetensors"),
              metadata={"format": "pt"})
    save_file(grads, os.path.join(OUT, "gpt_tiny_grads.safetensors"), metadata={"format": "pt"})

    info = {
        "config": dict(CONFIG, head_size=CONFIG["d_model"] // CONFIG["heads"], batch=B, dropout=0.0,
                       ln_eps=1e-5, gelu="tanh", tied_head=True,
                       weight_seed=WEIGHT_SEED, batch_seed=BATCH_SEED),
        "loss": float(loss32.item()),
        "loss_f64": float(loss64.item()),
        "logits_first8": first(logits32),
        "logits_f64_first8": first(logits64),
        "adamw_step": {
            "lr": LR, "betas": list(BETAS), "eps": EPS, "weight_decay": WEIGHT_DECAY,
            "decay_rule": "weight decay on every 2-D parameter (all Linear weights, tok_emb.weight, "
                          "pos_emb.weight); none on biases and LayerNorm weights/biases",
            "step": 1,
            "params": adamw,
        },
        "torch_version": torch.__version__,
    }
    with open(os.path.join(OUT, "gpt_tiny.json"), "w") as f:
        json.dump(info, f, indent=1)
        f.write("\n")

    for fn in sorted(os.listdir(OUT)):
        if fn.startswith("gpt_tiny"):
            print(f"{fn}: {os.path.getsize(os.path.join(OUT, fn))} bytes")
    print(f"loss f32 {loss32.item():.7f}  loss f64 {loss64.item():.10f}")
    worst = max(float((grads[n] - grads["f64." + n]).abs().max()) for n in weights)
    print(f"max |grad f32 - grad f64| = {worst:.3e}")


if __name__ == "__main__":
    main()
