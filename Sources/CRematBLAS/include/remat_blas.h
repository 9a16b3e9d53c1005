// remat_blas.h -- Remat's single GEMM seam.
//
// Linux:  OpenBLAS, loaded at run time with dlopen("libopenblas.so.0") by remat_blas_init(),
//         after choosing the best x86 kernel ourselves (AVX-512 -> SkylakeX, AVX2+FMA -> Haswell)
//         via OPENBLAS_CORETYPE, so the fast kernel is used without the user setting anything.
//         Only the runtime library is needed (Debian/Ubuntu package `libopenblas0`); no headers.
// Apple:  Accelerate's cblas_sgemm.
//
// Environment (all optional):
//   REMAT_THREADS=n            threads for large GEMMs (default: usable CPUs, capped at 4)
//   REMAT_GEMM_MT_MIN_FLOPS=f  2*M*N*K below which remat_sgemm runs single-threaded
//   REMAT_OPENBLAS=path        explicit OpenBLAS shared library to dlopen
//   OPENBLAS_CORETYPE=name     if set by the user, it is respected and not overridden
// See docs/blas-choice.md.
#ifndef REMAT_BLAS_H
#define REMAT_BLAS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Initialise once (idempotent, thread-safe via pthread_once). Returns 0 on success, nonzero with a
// message from remat_blas_describe() on failure (GEMMs then still work via a slow reference loop).
// Every other function calls it implicitly; calling it early (at program start, before other
// threads exist) is recommended because it may setenv/unsetenv OPENBLAS_CORETYPE.
int remat_blas_init(void);

// Human-readable description of library + kernel actually in use,
// e.g. "OpenBLAS 0.3.21 (SkylakeX kernel, pthreads, 2 threads)".
const char *remat_blas_describe(void);

void remat_blas_set_threads(int n);  // thread count used for large GEMMs (n < 1 -> 1)
int remat_blas_get_threads(void);

// Whether the loaded GEMM library exports cblas_sbgemm (OpenBLAS built with BUILD_BFLOAT16), and
// whether the CPU has AVX512_BF16 (CPUID leaf 7 subleaf 1, EAX bit 5).
int remat_blas_has_sbgemm(void);
int remat_cpu_has_avx512_bf16(void);

// bf16 GEMM: C = alpha*op(A)*op(B) + beta*C, row-major, A and B bfloat16 bit patterns, C float32
// (float32 accumulation), `threads` as remat_sgemm_raw. Only when remat_blas_has_sbgemm() (aborts
// otherwise).
void remat_sbgemm_raw(int threads, int transA, int transB, int M, int N, int K, float alpha,
                      const uint16_t *A, int lda, const uint16_t *B, int ldb, float beta, float *C,
                      int ldc);

// Row-major single precision GEMM: C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C.
// transA/transB: 0 = no transpose, 1 = transpose. lda/ldb/ldc are row-major leading dims.
// Uses a single thread when 2*M*N*K is below the measured threshold, remat_blas_get_threads()
// threads otherwise. beta == 0 means C is write-only (NaNs in C are not propagated).
void remat_sgemm(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                 const float *B, int ldb, float beta, float *C, int ldc);

// Same but forcing the given thread count (used by benchmarks to call "the raw library").
void remat_sgemm_raw(int threads, int transA, int transB, int M, int N, int K, float alpha,
                     const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);

#ifdef __cplusplus
}
#endif
#endif
