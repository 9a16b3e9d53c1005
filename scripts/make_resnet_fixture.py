#!/usr/bin/env python3
"""Write the resnet_tiny fixtures used by the Swift ResNet tests (deterministic; run once, outputs committed).

  python3 scripts/make_resnet_fixture.py            # from the package root

Model: a tiny ResNet built from torchvision's own Bottleneck block and torchvision's naming
(conv1, bn1, layer1.0.conv1 ... layer2.0.downsample.0/.1, fc): stages [1, 1], width 8, 3x16x16
inputs, 10 classes; torchvision init (torch.manual_seed(0)), then every BatchNorm's weight, bias
and running statistics are perturbed (so that nothing in the test sits at the trivial 1/0 values).
Batch B=4 of N(0,1) images and random targets (seed 1234). layer2 runs on 2x2 maps: its BatchNorms
normalise over B*2*2 = 16 values per channel, the ill-conditioned case of the issue.

The same weights are run in float32 and in float64 (model.double()): two SGD steps (lr 0.1,
momentum 0.9) on the same batch, each = zero_grad + forward (training mode) + cross-entropy +
backward + step.

Outputs (Tests/RematTests/Fixtures/):
  resnet_tiny_weights.safetensors  state_dict before the first step (F32; num_batches_tracked I64 [])
  resnet_tiny_batch.safetensors    input F32 [B,3,16,16], target I64 [B]
  resnet_tiny_grads.safetensors    <name>: step-1 gradient from float32 (F32); f64.<name>: from float64
  resnet_tiny_after.safetensors    f64.<name> / <name>: every state_dict entry after the two steps
                                   (float64 run / float32 run, stored as F32; num_batches_tracked I64)
  resnet_tiny.json                 config, step-1 losses, and for every parameter / buffer PyTorch
                                   float32's own normwise relative error against float64:
                                   grad_err (step-1 gradient), delta_err (change over the two steps),
                                   buffer_err (running statistics after the two steps);
                                   also torchvision resnet50(num_classes=100)'s parameter and
                                   state_dict names in order.
Requires: torch, torchvision, safetensors. PyTorch is used only here, never by the package.
"""
import json
import os

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file
from torchvision.models import resnet50
from torchvision.models.resnet import Bottleneck, conv1x1

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests", "RematTests", "Fixtures")
CONFIG = dict(stages=[1, 1], width=8, classes=10, image_size=16, in_channels=3)
B = 4
WEIGHT_SEED, BATCH_SEED = 0, 1234
LR, MOMENTUM, STEPS = 0.1, 0.9, 2


class TinyResNet(nn.Module):
    """torchvision.models.ResNet with configurable stage count and width (same code paths and names)."""

    def __init__(self, stages, width, classes, in_channels, **_):
        super().__init__()
        self.inplanes = width
        self.conv1 = nn.Conv2d(in_channels, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        for i, blocks in enumerate(stages):
            setattr(self, f"layer{i + 1}", self._make_layer(width << i, blocks, 1 if i == 0 else 2))
        self.n_stages = len(stages)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(self.inplanes, classes)
        for m in self.modules():  # torchvision's init
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes, blocks, stride):  # torchvision's ResNet._make_layer
        downsample = None
        if stride != 1 or self.inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes * Bottleneck.expansion, stride),
                                       nn.BatchNorm2d(planes * Bottleneck.expansion))
        layers = [Bottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(self.n_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def normwise(a, ref):
    a, ref = a.double(), ref.double()
    n = ref.norm().item()
    d = (a - ref).norm().item()
    return d / n if n > 0 else d


def run(model, inp, tgt):
    """Two SGD steps; returns (step-1 loss, step-1 grads by name)."""
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    loss1, grads = None, None
    for step in range(STEPS):
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(inp), tgt)
        loss.backward()
        if step == 0:
            loss1 = loss.item()
            grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
        opt.step()
    return loss1, grads


def main():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    os.makedirs(OUT, exist_ok=True)

    torch.manual_seed(WEIGHT_SEED)
    m32 = TinyResNet(**CONFIG)
    with torch.no_grad():
        for m in m32.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(1 + 0.2 * torch.randn(c))
                m.bias.copy_(0.2 * torch.randn(c))
                m.running_mean.copy_(0.1 * torch.randn(c))
                m.running_var.copy_(1 + 0.2 * torch.rand(c))
    weights = {k: v.detach().clone().contiguous() for k, v in m32.state_dict().items()}

    g = torch.Generator().manual_seed(BATCH_SEED)
    s = CONFIG["image_size"]
    inp = torch.randn(B, CONFIG["in_channels"], s, s, generator=g)
    tgt = torch.randint(0, CONFIG["classes"], (B,), generator=g, dtype=torch.int64)

    m64 = TinyResNet(**CONFIG).double()
    m64.load_state_dict({k: (v.double() if v.is_floating_point() else v) for k, v in weights.items()})
    m32.train(); m64.train()

    loss32, g32 = run(m32, inp, tgt)
    loss64, g64 = run(m64, inp.double(), tgt)

    grads, after = {}, {}
    info_params = {}
    for n in g32:
        grads[n] = g32[n].float().contiguous()
        grads["f64." + n] = g64[n].float().contiguous()
    sd32, sd64 = m32.state_dict(), m64.state_dict()
    for n in weights:
        a32, a64 = sd32[n].detach(), sd64[n].detach()
        if a32.is_floating_point():
            after[n] = a32.float().contiguous()
            after["f64." + n] = a64.float().contiguous()
        else:
            after[n] = a32.clone()
            after["f64." + n] = a64.clone()
    for n in g32:
        w0 = weights[n].double()
        info_params[n] = {
            "grad_err": normwise(g32[n], g64[n]),
            "delta_err": normwise(sd32[n].double() - w0, sd64[n].double() - w0),
        }
    info_buffers = {n: {"buffer_err": normwise(sd32[n], sd64[n])}
                    for n in weights if "running_" in n}

    tv = resnet50(num_classes=100)
    info = {
        "config": dict(CONFIG, batch=B, weight_seed=WEIGHT_SEED, batch_seed=BATCH_SEED),
        "sgd": {"lr": LR, "momentum": MOMENTUM, "steps": STEPS},
        "loss": loss32,
        "loss_f64": loss64,
        "params": info_params,
        "buffers": info_buffers,
        "num_batches_tracked_after": int(sd32["bn1.num_batches_tracked"].item()),
        "resnet50": {
            "parameter_names": [n for n, _ in tv.named_parameters()],
            "state_dict_names": list(tv.state_dict().keys()),
            "parameter_count": sum(p.numel() for p in tv.parameters()),
        },
        "torch_version": torch.__version__,
    }

    save_file(weights, os.path.join(OUT, "resnet_tiny_weights.safetensors"), metadata={"format": "pt"})
    save_file({"input": inp.contiguous(), "target": tgt}, os.path.join(OUT, "resnet_tiny_batch.safetensors"),
              metadata={"format": "pt"})
    save_file(grads, os.path.join(OUT, "resnet_tiny_grads.safetensors"), metadata={"format": "pt"})
    save_file(after, os.path.join(OUT, "resnet_tiny_after.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(OUT, "resnet_tiny.json"), "w") as f:
        json.dump(info, f, indent=1)
        f.write("\n")

    for fn in sorted(os.listdir(OUT)):
        if fn.startswith("resnet_tiny"):
            print(f"{fn}: {os.path.getsize(os.path.join(OUT, fn))} bytes")
    print(f"loss f32 {loss32:.7f}  loss f64 {loss64:.10f}")
    worst = sorted(((v["grad_err"], n) for n, v in info_params.items()), reverse=True)[:6]
    print("largest torch f32 grad errors:", ", ".join(f"{n} {e:.2e}" for e, n in worst))
    worst = sorted(((v["buffer_err"], n) for n, v in info_buffers.items()), reverse=True)[:4]
    print("largest torch f32 buffer errors:", ", ".join(f"{n} {e:.2e}" for e, n in worst))


if __name__ == "__main__":
    main()
