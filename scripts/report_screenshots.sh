#!/usr/bin/env bash
# Regenerates the README's report screenshots (docs/report/REPORT-SECTION.png) and the browser
# check's figures (results/html-report.txt): the gpt-mini and resnet50-64 reports at their spec
# batches and the report of a 200-step gpt-mini run under a 150 MiB budget, each opened in headless
# Chromium by scripts/check_report.py (load time, console errors, one PNG per section).
# Takes about 5 minutes on 2 cores. Usage: bash scripts/report_screenshots.sh [OUT_DIR_FOR_HTML]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
swift build -c release --product remat
html=${1:-$(mktemp -d)}
mkdir -p "$html" docs/report
R=.build/release/remat
$R report --model gpt-mini --compare all --compare save-matmuls --budget 0.6 --out "$html/gpt-mini.html"
$R report --model resnet50-64 --compare all --budget 0.6 --out "$html/resnet50-64.html"
$R train --steps 200 --budget 150MiB --log-every 50 --report "$html/train-gpt-mini-200.html"
{
    echo "# scripts/report_screenshots.sh at $(git rev-parse --short HEAD) on $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(chromium --version 2>/dev/null | head -1)"
    # Five loads of each: the check's load-event time varies with the machine's load.
    for i in 1 2 3 4 5; do python3 scripts/check_report.py "$html"/*.html; done
    python3 scripts/check_report.py --png-dir docs/report "$html"/*.html
} | tee results/html-report.txt
