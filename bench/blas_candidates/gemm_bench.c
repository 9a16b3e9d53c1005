// Scratch GEMM benchmark for choosing Remat's BLAS. Build one binary per backend:
//   -DB_OPENBLAS  (link -lopenblas; set OPENBLAS_CORETYPE in env to force a kernel)
//   -DB_DNNL      (link -ldnnl -fopenmp)
//   -DB_BLIS      (link -lblis -fopenmp, include /usr/include/x86_64-linux-gnu/blis-openmp)
//   -DB_SEAM      (compile with ../../Sources/CRematBLAS/remat_blas.c; uses remat_sgemm_raw)
// Usage: ./bench_X [maxn]   prints "backend threads shape gflops" lines (median of reps).
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(B_OPENBLAS)
#include <cblas.h>
extern char *openblas_get_corename(void);
extern char *openblas_get_config(void);
extern void openblas_set_num_threads(int);
static void set_threads(int t) { openblas_set_num_threads(t); }
static void gemm(int M, int N, int K, const float *A, const float *B, float *C) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.f, A, K, B, N, 0.f, C, N);
}
static void describe(char *buf, size_t n) { snprintf(buf, n, "openblas[%s|%s]", openblas_get_corename(), openblas_get_config()); }
#elif defined(B_DNNL)
#include <oneapi/dnnl/dnnl.h>
#include <omp.h>
static void set_threads(int t) { omp_set_num_threads(t); }
static void gemm(int M, int N, int K, const float *A, const float *B, float *C) {
  dnnl_sgemm('N', 'N', M, N, K, 1.f, A, K, B, N, 0.f, C, N);
}
static void describe(char *buf, size_t n) {
  const dnnl_version_t *v = dnnl_version();
  snprintf(buf, n, "dnnl[%d.%d.%d isa=%d omp_max=%d]", v->major, v->minor, v->patch, (int)dnnl_get_effective_cpu_isa(), omp_get_max_threads());
}
#elif defined(B_BLIS)
#include <blis.h>
#include <cblas.h>
static void set_threads(int t) { bli_thread_set_num_threads(t); }
static void gemm(int M, int N, int K, const float *A, const float *B, float *C) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.f, A, K, B, N, 0.f, C, N);
}
static void describe(char *buf, size_t n) { snprintf(buf, n, "blis[%s arch=%s]", bli_info_get_version_str(), bli_arch_string(bli_arch_query_id())); }
#elif defined(B_SEAM)
#include "remat_blas.h"
static int g_t = 1;
static void set_threads(int t) { g_t = t; }
static void gemm(int M, int N, int K, const float *A, const float *B, float *C) {
  remat_sgemm_raw(g_t, 0, 0, M, N, K, 1.f, A, K, B, N, 0.f, C, N);
}
static void describe(char *buf, size_t n) { remat_blas_init(); snprintf(buf, n, "seam[%s]", remat_blas_describe()); }
#else
#error "pick a backend"
#endif

static double now(void) { struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts); return ts.tv_sec + ts.tv_nsec * 1e-9; }
static int cmpd(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }

// BENCH_GAP_US=g: "cold" mode -- before each timed call, spin single-threaded for g microseconds
// (like the elementwise work between GEMMs in a training step), so worker threads may have gone
// to sleep; only the GEMM call itself is timed.
static double gap_us = 0;
static double bench(int M, int N, int K, const float *A, const float *B, float *C) {
  double flops = 2.0 * M * N * K;
  if (gap_us > 0) {
    double s[41]; int reps = M >= 1024 ? 9 : 41;
    gemm(M, N, K, A, B, C);
    for (int r = 0; r < reps; r++) {
      double until = now() + gap_us * 1e-6; while (now() < until) {}
      double t0 = now(); gemm(M, N, K, A, B, C); s[r] = now() - t0;
    }
    qsort(s, reps, sizeof(double), cmpd);
    return flops / s[reps / 2] * 1e-9;
  }
  gemm(M, N, K, A, B, C); gemm(M, N, K, A, B, C);  // warm-up
  // iterations per sample so that a sample takes >= ~20 ms
  double t0 = now(); gemm(M, N, K, A, B, C); double one = now() - t0;
  int iters = one > 0.02 ? 1 : (int)(0.02 / (one > 1e-7 ? one : 1e-7)) + 1;
  int reps = (M >= 2048) ? 5 : 9;
  double s[16];
  for (int r = 0; r < reps; r++) {
    t0 = now();
    for (int i = 0; i < iters; i++) gemm(M, N, K, A, B, C);
    s[r] = (now() - t0) / iters;
  }
  qsort(s, reps, sizeof(double), cmpd);
  return flops / s[reps / 2] * 1e-9;
}

int main(int argc, char **argv) {
  int maxn = argc > 1 ? atoi(argv[1]) : 2048;
  if (getenv("BENCH_GAP_US")) gap_us = atof(getenv("BENCH_GAP_US"));
  char d[512]; describe(d, sizeof d);
  fprintf(stderr, "# %s\n", d);
  const char *tag = getenv("BENCH_TAG") ? getenv("BENCH_TAG") : "?";
  size_t cap = (size_t)maxn * maxn;
  float *A = aligned_alloc(64, cap * 4), *B = aligned_alloc(64, cap * 4), *C = aligned_alloc(64, cap * 4);
  srand(1);
  for (size_t i = 0; i < cap; i++) { A[i] = rand() / (float)RAND_MAX - .5f; B[i] = rand() / (float)RAND_MAX - .5f; C[i] = 0; }
  int shapes[][3] = {{64, 64, 64}, {128, 128, 128}, {256, 64, 256}, {64, 512, 64}, {256, 256, 256},
                     {512, 512, 512}, {1024, 1024, 1024}, {2048, 2048, 2048}};
  const char *custom = getenv("BENCH_SHAPES");  // e.g. "128x128x128,256x64x256"
  static int cs[64][3];
  size_t ncs = 0;
  if (custom) {
    for (const char *p = custom; *p && ncs < 64;) {
      if (sscanf(p, "%dx%dx%d", &cs[ncs][0], &cs[ncs][1], &cs[ncs][2]) == 3) ncs++;
      p = strchr(p, ',');
      if (!p) break;
      p++;
    }
  }
  const char *only = getenv("BENCH_THREADS");
  for (int t = 1; t <= 2; t++) {
    if (only && atoi(only) != t) continue;
    set_threads(t);
    size_t ns = ncs ? ncs : sizeof shapes / sizeof shapes[0];
    for (size_t s = 0; s < ns; s++) {
      int M = ncs ? cs[s][0] : shapes[s][0], N = ncs ? cs[s][1] : shapes[s][1], K = ncs ? cs[s][2] : shapes[s][2];
      if (M > maxn || N > maxn || K > maxn) continue;
      printf("%s\t%d\t%dx%dx%d\t%.1f\n", tag, t, M, N, K, bench(M, N, K, A, B, C));
      fflush(stdout);
    }
  }
  return 0;
}
