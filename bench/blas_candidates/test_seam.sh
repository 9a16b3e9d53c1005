#!/bin/sh
# Builds Sources/CRematBLAS/remat_blas.c directly with the correctness test and runs it, then runs
# it again with OpenBLAS already linked into the process (kernel cannot be forced then).
set -e
cd "$(dirname "$0")"
SEAM=../../Sources/CRematBLAS
OUT=${OUT:-/tmp/remat_blas_test}; mkdir -p "$OUT"
${CC:-cc} -O2 -std=c11 -Wall -Wextra seam_test.c $SEAM/remat_blas.c -I$SEAM/include -o "$OUT/seam_test" -lm -ldl -lpthread
"$OUT/seam_test"
echo "--- with REMAT_THREADS=1 OPENBLAS_CORETYPE=Haswell (user override respected)"
REMAT_THREADS=1 OPENBLAS_CORETYPE=Haswell "$OUT/seam_test" | head -3
echo "--- with OpenBLAS linked at load time (before remat_blas_init)"
${CC:-cc} -O2 -std=c11 seam_test.c $SEAM/remat_blas.c -I$SEAM/include -o "$OUT/seam_test_linked" -lm -ldl -lpthread -Wl,--no-as-needed -lopenblas
OPENBLAS_CORETYPE=Prescott "$OUT/seam_test_linked" | head -2
"$OUT/seam_test_linked" | tail -1
