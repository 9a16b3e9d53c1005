// Correctness test for Sources/CRematBLAS (remat_sgemm / remat_sgemm_raw) against a naive loop.
// Build+run: sh bench/blas_candidates/test_seam.sh
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "remat_blas.h"

static float frand(void) { return (float)rand() / (float)RAND_MAX - 0.5f; }

static int check(int tA, int tB, int M, int N, int K, float alpha, float beta, int pad, int threads) {
  int lda = (tA ? M : K) + pad, ldb = (tB ? K : N) + pad, ldc = N + pad;
  int arows = tA ? K : M, brows = tB ? N : K;
  float *A = malloc(sizeof(float) * ((size_t)arows * lda + 1));
  float *B = malloc(sizeof(float) * ((size_t)brows * ldb + 1));
  float *C = malloc(sizeof(float) * ((size_t)M * ldc + 1));
  double *R = malloc(sizeof(double) * ((size_t)M * N + 1));
  for (size_t i = 0; i < (size_t)arows * lda; i++) A[i] = frand();
  for (size_t i = 0; i < (size_t)brows * ldb; i++) B[i] = frand();
  for (int i = 0; i < M; i++)
    for (int j = 0; j < ldc; j++) C[(size_t)i * ldc + j] = (beta == 0.0f && j < N) ? NAN : frand();
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) {
      double s = 0;
      for (int p = 0; p < K; p++) {
        double a = tA ? A[(size_t)p * lda + i] : A[(size_t)i * lda + p];
        double b = tB ? B[(size_t)j * ldb + p] : B[(size_t)p * ldb + j];
        s += a * b;
      }
      double c0 = beta == 0.0f ? 0.0 : C[(size_t)i * ldc + j];
      R[(size_t)i * N + j] = alpha * s + beta * c0;
    }
  float padval = pad ? C[ldc - 1] : 0;  // padding must stay untouched
  if (threads < 0) remat_sgemm(tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  else remat_sgemm_raw(threads, tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  double maxerr = 0;
  int bad = 0;
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) {
      double e = fabs(C[(size_t)i * ldc + j] - R[(size_t)i * N + j]);
      if (!(e <= 1e-4 * (K + 1))) bad = 1;
      if (e > maxerr) maxerr = e;
    }
  if (pad && C[ldc - 1] != padval) bad = 1;
  if (bad)
    printf("FAIL tA=%d tB=%d M=%d N=%d K=%d alpha=%g beta=%g pad=%d thr=%d maxerr=%g\n", tA, tB, M,
           N, K, alpha, beta, pad, threads, maxerr);
  free(A); free(B); free(C); free(R);
  return bad;
}

int main(void) {
  int rc = remat_blas_init();
  printf("init=%d\n%s\nthreads=%d\n", rc, remat_blas_describe(), remat_blas_get_threads());
  int sizes[][3] = {{1, 1, 1}, {3, 5, 7}, {17, 1, 33}, {1, 31, 9}, {37, 29, 41}, {64, 64, 64},
                    {129, 65, 257}, {255, 300, 127}, {301, 257, 513}, {5, 7, 0}};
  float ab[][2] = {{1, 0}, {0.5f, 1}, {-2, 0.25f}};
  int fails = 0, n = 0;
  for (int tA = 0; tA < 2; tA++)
    for (int tB = 0; tB < 2; tB++)
      for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
        for (size_t k = 0; k < 3; k++)
          for (int pad = 0; pad < 2; pad++)
            for (int thr = -1; thr <= 2; thr += 2) {  // -1: remat_sgemm, 1: raw(1), ... raw(2)
              int t = thr < 0 ? -1 : thr == 1 ? 1 : 2;
              fails += check(tA, tB, sizes[s][0], sizes[s][1], sizes[s][2], ab[k][0], ab[k][1], pad, t);
              n++;
            }
  for (int t = 1; t <= 2; t++) { fails += check(0, 0, 512, 512, 512, 1, 0, 3, t); n++; }
  remat_blas_set_threads(3);
  if (remat_blas_get_threads() != 3) { printf("FAIL set_threads\n"); fails++; }
  printf("%d/%d cases passed\n", n - fails, n);
  return fails != 0;
}
