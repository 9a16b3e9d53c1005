#!/usr/bin/env bash
# Builds OpenBLAS with its bf16 GEMM (cblas_sbgemm; BUILD_BFLOAT16=1) for autocast's bf16 products,
# which the packaged OpenBLAS builds (Debian bookworm 0.3.21, trixie 0.3.29, PyPI scipy-openblas32)
# leave out. Opt-in (about 5 minutes on 2 cores); not run by setup.sh, demo.sh or test.sh.
#
#   bash scripts/build_openblas_bf16.sh            # prints the library's path
#   export REMAT_OPENBLAS=$(bash scripts/build_openblas_bf16.sh)
#
# Source: Debian's OpenBLAS 0.3.29 tarball (deb.debian.org); built for one target, COOPERLAKE
# (AVX-512 with AVX512_BF16: Cooper Lake, Sapphire Rapids, Zen 4/5), single precision and bf16
# only, pthreads, no LAPACK, into ${XDG_CACHE_HOME:-~/.cache}/remat/openblas-bf16. Idempotent:
# an existing build is reused. Refuses a CPU without AVX512_BF16 (sbgemm would not run fast there).
set -euo pipefail
version=0.3.29
prefix="${XDG_CACHE_HOME:-$HOME/.cache}/remat/openblas-bf16-$version"
lib="$prefix/libopenblas.so.0"
if [[ -f "$lib" ]]; then echo "$lib"; exit 0; fi
if ! grep -qw avx512_bf16 /proc/cpuinfo; then
    echo "build_openblas_bf16: this CPU has no AVX512_BF16; autocast's bf16 products run the float32 GEMM" >&2
    exit 1
fi
for tool in curl make cc tar xz; do
    command -v "$tool" >/dev/null || { echo "build_openblas_bf16: needs $tool" >&2; exit 1; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
url="http://deb.debian.org/debian/pool/main/o/openblas/openblas_${version}+ds.orig.tar.xz"
sha256=eb691e2cff83799400da22aa6ab93ebaa346ad317fea578b7ae119e226ce1b01
curl -fsSL -o "$work/src.tar.xz" "$url"
echo "$sha256  $work/src.tar.xz" | sha256sum -c --quiet
tar -xf "$work/src.tar.xz" -C "$work"
make -C "$work/OpenBLAS-$version" -j"$(nproc)" TARGET=COOPERLAKE BUILD_BFLOAT16=1 BUILD_SINGLE=1 NO_LAPACK=1 NOFORTRAN=1 \
    USE_OPENMP=0 USE_THREAD=1 NUM_THREADS=64 ONLY_CBLAS=1 NO_STATIC=1 libs shared >"$work/build.log" 2>&1 \
    || { tail -20 "$work/build.log" >&2; echo "build_openblas_bf16: build failed" >&2; exit 1; }
built=$(ls "$work/OpenBLAS-$version"/libopenblas_*-r$version.so | head -1)
# (grep without -q: reading all of nm's output, so pipefail sees no SIGPIPE.)
nm -D "$built" | grep " T cblas_sbgemm$" >/dev/null || { echo "build_openblas_bf16: the build has no cblas_sbgemm" >&2; exit 1; }
# Appear whole or not at all: copy beside, then rename into place.
mkdir -p "$(dirname "$prefix")"
staging="$prefix.partial.$$"
mkdir -p "$staging"
cp "$built" "$staging/libopenblas.so.0"
rm -rf "$prefix"
mv "$staging" "$prefix"
echo "$lib"
