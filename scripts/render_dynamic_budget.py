#!/usr/bin/env python3
"""Renders `remat bench dynamic --json` output as the Markdown tables of results/dynamic-budget*.md.

usage: render_dynamic_budget.py RUN.json [--steady]   (--steady: the steady-state table of a
fixed-shape run: median step over steps 1.. against none, and each mode against planned)
"""
import json
import statistics
import sys


def mib(b):
    return f"{b / 1048576:.1f} MiB"


def main():
    path = sys.argv[1]
    d = json.load(open(path))
    peak = d["largest_shape_peak_bytes"]
    runs = d["runs"]
    none = next((r for r in runs if r["mode"] == "none"), None)
    print(f"Largest shape's unconstrained peak: {mib(peak)}.\n")
    print("| mode | budget | total s | vs none | steps over budget | highest step | distinct shapes | evictions | recomputes |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        budget = "-" if r.get("budgetBytes") is None else f"{mib(r['budgetBytes'])} ({r['budgetBytes'] / peak:.1f})"
        ratio = f"{r['totalSeconds'] / none['totalSeconds']:.2f}×" if none else "-"
        over = r.get("stepsOverBudget", [])
        if r["mode"] == "none":
            overs = "-"
        elif over:
            overs = f"{len(over)}: " + ", ".join(map(str, over[:8])) + (", …" if len(over) > 8 else "")
        else:
            overs = "0"
        line = (f"| {r['mode']} | {budget} | {r['totalSeconds']:.1f} | {ratio} | {overs} | {mib(r['highestBytes'])} | "
                f"{r['distinctShapes']} | {r['evictions']} | {r['rematerializations']} |")
        if r.get("failure"):
            line += f" — stopped: {r['failure']}"
        print(line)
    if "--steady" in sys.argv:
        def med(r):
            return statistics.median(s["milliseconds"] for s in r["steps"][1:])
        print("\n| budget | none ms | planned ms (× none) | dynamic ms (× none) | hybrid ms (× none) | dynamic / planned | hybrid / planned |")
        print("|---|---|---|---|---|---|---|")
        budgets = sorted({r["budgetBytes"] for r in runs if r.get("budgetBytes")}, reverse=True)
        base = med(none)
        for b in budgets:
            by = {r["mode"]: r for r in runs if r.get("budgetBytes") == b}
            cells = []
            for m in ("planned", "dynamic", "hybrid"):
                r = by.get(m)
                if r is None or len(r["steps"]) < 2:
                    cells.append("-")
                    continue
                v = med(r)
                note = ", over the budget every step" if len(r.get("stepsOverBudget", [])) == len(r["steps"]) else ""
                cells.append(f"{v:.1f} ({v / base:.2f}×){note}")
            p = by.get("planned")
            ratios = []
            for m in ("dynamic", "hybrid"):
                r = by.get(m)
                ratios.append(f"{med(r) / med(p):.2f}" if r and p and len(r["steps"]) > 1 and len(p["steps"]) > 1 else "-")
            print(f"| {b / peak:.1f} ({mib(b)}) | {base:.1f} | {cells[0]} | {cells[1]} | {cells[2]} | {ratios[0]} | {ratios[1]} |")


if __name__ == "__main__":
    main()
