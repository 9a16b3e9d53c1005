#!/usr/bin/env bash
# The README's test command: set up, then run the whole test suite in a release build
# (numeric tests are slow unoptimised; the tests use only the public API, so no -enable-testing).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
swift test -c release "$@"
