#!/usr/bin/env bash
# Installs what Remat needs to build and check, idempotently. Linux (Debian/Ubuntu): the GEMM
# library from apt when it is missing; Open MPI (openmpi-bin, libopenmpi-dev) for the data-parallel
# target; on Debian also Chromium and Python 3, which the test
# command uses to open the HTML reports in a real browser (scripts/check_report.py; skipped with
# a message when they cannot be installed, or with REMAT_NO_BROWSER=1). macOS: nothing (Accelerate
# ships with the system; the browser check runs when Chromium is found).
set -euo pipefail

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

apt_install() {
    local SUDO=""
    if [[ "$(id -u)" != "0" ]]; then SUDO="sudo"; fi
    echo "setup: installing $*" >&2
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

if [[ "$(uname -s)" == "Linux" ]] && command -v dpkg-query >/dev/null; then
    installed libopenblas0 || apt_install libopenblas0
    # Open MPI for the data-parallel target (RematDistributed is built only when its development
    # files are found; its tests run under mpirun). REMAT_NO_MPI=1 skips it.
    if [[ "${REMAT_NO_MPI:-0}" != "1" ]]; then
        mpi=()
        installed openmpi-bin || mpi+=(openmpi-bin)
        installed libopenmpi-dev || mpi+=(libopenmpi-dev)
        if ((${#mpi[@]})); then
            apt_install "${mpi[@]}" || echo "setup: could not install ${mpi[*]}; RematDistributed and its tests will be left out" >&2
        fi
    fi
    # The browser check's tools. Debian packages Chromium as `chromium`; Ubuntu's is a snap, which
    # containers cannot run, so there the check is skipped unless CHROMIUM names a browser.
    if [[ "${REMAT_NO_BROWSER:-0}" != "1" ]] && grep -q '^ID=debian' /etc/os-release 2>/dev/null; then
        browser=()
        installed chromium || browser+=(chromium)
        command -v python3 >/dev/null || browser+=(python3)
        if ((${#browser[@]})); then
            apt_install "${browser[@]}" || echo "setup: could not install ${browser[*]}; the browser check of the reports will be skipped" >&2
        fi
    fi
fi
command -v swift >/dev/null || { echo "setup: the Swift toolchain (6.1 or newer) is required: https://swift.org/install" >&2; exit 1; }
