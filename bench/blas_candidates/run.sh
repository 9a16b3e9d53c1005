#!/bin/sh
# Reproduce: sh bench/blas_candidates/run.sh [rounds]   (from the package root)
# Builds one binary per backend and runs them interleaved; prints per-round lines then medians.
set -e
cd "$(dirname "$0")"
ROUNDS=${1:-3}
OUT=${OUT:-/tmp/remat_blas_bench}
mkdir -p "$OUT"
CC=${CC:-cc}
CF="-O2 -std=c11"
$CC $CF -DB_OPENBLAS gemm_bench.c -o "$OUT/b_openblas" -I/usr/include/x86_64-linux-gnu/openblas-pthread -lopenblas
$CC $CF -DB_DNNL gemm_bench.c -o "$OUT/b_dnnl" -fopenmp -ldnnl
$CC $CF -DB_BLIS gemm_bench.c -o "$OUT/b_blis" -fopenmp -I/usr/include/x86_64-linux-gnu/blis-openmp -L/usr/lib/x86_64-linux-gnu/blis-openmp -Wl,-rpath,/usr/lib/x86_64-linux-gnu/blis-openmp -lblis
SEAM=../../Sources/CRematBLAS
if [ -f $SEAM/remat_blas.c ]; then
  $CC $CF -DB_SEAM gemm_bench.c $SEAM/remat_blas.c -I$SEAM/include -o "$OUT/b_seam" -lpthread -ldl
fi
: > "$OUT/all.tsv"
for r in $(seq "$ROUNDS"); do
  BENCH_TAG=openblas-default "$OUT/b_openblas" | tee -a "$OUT/all.tsv"
  BENCH_TAG=openblas-SkylakeX OPENBLAS_CORETYPE=SkylakeX "$OUT/b_openblas" | tee -a "$OUT/all.tsv"
  BENCH_TAG=openblas-Haswell OPENBLAS_CORETYPE=Haswell "$OUT/b_openblas" | tee -a "$OUT/all.tsv"
  BENCH_TAG=openblas-Prescott OPENBLAS_CORETYPE=Prescott "$OUT/b_openblas" | tee -a "$OUT/all.tsv"
  BENCH_TAG=dnnl "$OUT/b_dnnl" | tee -a "$OUT/all.tsv"
  BENCH_TAG=blis "$OUT/b_blis" | tee -a "$OUT/all.tsv"
  [ -x "$OUT/b_seam" ] && BENCH_TAG=seam "$OUT/b_seam" | tee -a "$OUT/all.tsv"
  if python3 -c "import torch" 2>/dev/null; then python3 torch_bench.py | tee -a "$OUT/all.tsv"; fi
done
echo "== medians over rounds (GFLOP/s) =="
python3 - "$OUT/all.tsv" <<'PY'
import sys, statistics, collections
d = collections.defaultdict(list)
for line in open(sys.argv[1]):
    tag, t, shape, g = line.split("\t"); d[(shape, t, tag)].append(float(g))
tags = list(dict.fromkeys(k[2] for k in d))
shapes = list(dict.fromkeys(k[0] for k in d))
print("shape\tthr\t" + "\t".join(tags))
for s in shapes:
    for t in ("1", "2"):
        print(f"{s}\t{t}\t" + "\t".join(f"{statistics.median(d[(s,t,g)]):.1f}" if d.get((s,t,g)) else "-" for g in tags))
PY
