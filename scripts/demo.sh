#!/usr/bin/env bash
# The README's main job: set up, build, and run `remat demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
swift build -c release --product remat
exec .build/release/remat demo "$@"
