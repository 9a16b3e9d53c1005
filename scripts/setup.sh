#!/usr/bin/env bash
# Installs what Remat needs to build, idempotently. Linux (Debian/Ubuntu): the GEMM library from
# apt when it is missing. macOS: nothing (Accelerate ships with the system).
set -euo pipefail

if [[ "$(uname -s)" == "Linux" ]]; then
    packages=(libopenblas0)
    missing=()
    for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if ((${#missing[@]})); then
        echo "setup: installing ${missing[*]}" >&2
        SUDO=""
        if [[ "$(id -u)" != "0" ]]; then SUDO="sudo"; fi
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
fi
command -v swift >/dev/null || { echo "setup: the Swift toolchain (6.1 or newer) is required: https://swift.org/install" >&2; exit 1; }
