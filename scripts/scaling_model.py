#!/usr/bin/env python3
"""The α–β model of the ring all-reduce behind docs/scaling.md (a model, not a measurement).

    python3 scripts/scaling_model.py [FLOPS_PER_RANK]

A ring all-reduce of S bytes over N ranks sends 2(N−1) messages per rank, each of S/N bytes:
time = 2(N−1)·α + 2(N−1)/N · S/β. Gradients in B buckets pay the latency once per bucket.
With overlap, the buckets reduce while backward runs; what stays exposed is at least the last
bucket's all-reduce (it starts when backward ends), and all of what backward cannot cover:
exposed ≈ max(last bucket, total − backward·(1 − 1/B)) (gradients assumed to become final
evenly through backward, in reverse order). A step's compute per rank is taken as 6·P·tokens
floating-point operations (2 forward, 4 backward), at FLOPS_PER_RANK (default 1e12, a
two-socket CPU server's order; this project's 2-core machine runs gpt-mini at about 1e11).
"""
import math
import sys

MIB = 2 ** 20
MODELS = {"gpt-small": 38_222_848, "1B GPT": 1_000_000_000}   # parameters (float32 gradients)
TOKENS = {"gpt-small": 4 * 512, "1B GPT": 2048}   # tokens per rank per step (gpt-small: batch 4 of T 512)
LINKS = {"10 Gb/s": (20e-6, 10e9 / 8), "100 Gb/s": (5e-6, 100e9 / 8)}   # α (s), β (bytes/s)
RANKS = [2, 4, 8, 16, 32, 64]


def all_reduce(size, ranks, alpha, beta, bucket):
    buckets = max(1, math.ceil(size / bucket))
    total = buckets * 2 * (ranks - 1) * alpha + 2 * (ranks - 1) / ranks * size / beta
    last = 2 * (ranks - 1) * alpha + 2 * (ranks - 1) / ranks * min(size, bucket) / beta
    return buckets, total, last


def exposed(total, last, buckets, backward):
    return max(last, total - backward * (1 - 1 / buckets))


def main():
    flops = float(sys.argv[1]) if len(sys.argv) > 1 else 1e12
    print("all-reduce time per step (ms), 25 MiB buckets; in brackets the latency part")
    print("| model | link | " + " | ".join(f"N = {n}" for n in RANKS) + " |")
    print("|---|---|" + "---:|" * len(RANKS))
    for name, params in MODELS.items():
        for link, (alpha, beta) in LINKS.items():
            cells = []
            for n in RANKS:
                b, total, _ = all_reduce(4 * params, n, alpha, beta, 25 * MIB)
                cells.append(f"{1000 * total:.1f} ({1000 * b * 2 * (n - 1) * alpha:.1f})")
            print(f"| {name} | {link} | " + " | ".join(cells) + " |")
    print()
    print(f"N = 64, compute at {flops:.0e} FLOP/s per rank: the all-reduce left after backward (exposed), and the step's")
    print("efficiency (compute / (compute + exposed)); without overlap every all-reduce is exposed")
    print("| model | compute per step | link | bucket | buckets | all-reduce | last bucket | exposed | efficiency | without overlap |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, params in MODELS.items():
        compute = 6 * params * TOKENS[name] / flops
        backward = compute * 4 / 6
        for link, (alpha, beta) in LINKS.items():
            for mib in [1, 4, 25, 100]:
                b, total, last = all_reduce(4 * params, 64, alpha, beta, mib * MIB)
                e = exposed(total, last, b, backward)
                print(f"| {name} | {1000 * compute:.0f} ms | {link} | {mib} MiB | {b} | {1000 * total:.1f} | {1000 * last:.1f} | "
                      f"{1000 * e:.1f} | {100 * compute / (compute + e):.0f}% | {100 * compute / (compute + total):.0f}% |")


if __name__ == "__main__":
    main()
