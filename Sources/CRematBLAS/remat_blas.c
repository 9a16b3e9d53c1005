// remat_blas.c -- see include/remat_blas.h and docs/blas-choice.md.
#if !defined(__APPLE__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE  // sched_getaffinity / CPU_COUNT
#endif
#include "remat_blas.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

// ---------------------------------------------------------------------------------------------
// Shared state and helpers
// ---------------------------------------------------------------------------------------------

// Below this many flops (2*M*N*K) remat_sgemm runs single-threaded. Measured on a 2-core AMD EPYC
// (Zen 4) VM with OpenBLAS 0.3.21: 2 threads only win reliably from about 256x256x256 (33.5 MFLOP);
// below that, waking the second thread costs more than it saves. See docs/blas-choice.md.
#define REMAT_DEFAULT_MT_MIN_FLOPS (32.0 * 1024 * 1024)
#define REMAT_MAX_DEFAULT_THREADS 4

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_init_status = 0;
static char g_desc[512] = "remat_blas: not initialised";
static atomic_int g_threads = 1;
static double g_mt_min_flops = REMAT_DEFAULT_MT_MIN_FLOPS;

static int usable_cpus(void) {
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
#endif
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}

static int env_int(const char *name, int dflt) {
  const char *s = getenv(name);
  if (!s || !*s) return dflt;
  char *end = NULL;
  long v = strtol(s, &end, 10);
  return (end && *end == '\0' && v > 0 && v < 4096) ? (int)v : dflt;
}

static void init_common(void) {
  int n = usable_cpus();
  if (n > REMAT_MAX_DEFAULT_THREADS) n = REMAT_MAX_DEFAULT_THREADS;
  atomic_store(&g_threads, env_int("REMAT_THREADS", n));
  const char *f = getenv("REMAT_GEMM_MT_MIN_FLOPS");
  if (f && *f) {
    char *end = NULL;
    double v = strtod(f, &end);
    if (end && *end == '\0' && v >= 0) g_mt_min_flops = v;
  }
}

// Portable reference GEMM (used only if no BLAS library could be loaded).
static void ref_sgemm(int tA, int tB, int M, int N, int K, float alpha, const float *A, int lda,
                      const float *B, int ldb, float beta, float *C, int ldc) {
  for (int i = 0; i < M; i++) {
    float *c = C + (size_t)i * ldc;
    if (beta == 0.0f) {
      for (int j = 0; j < N; j++) c[j] = 0.0f;
    } else if (beta != 1.0f) {
      for (int j = 0; j < N; j++) c[j] *= beta;
    }
    if (alpha == 0.0f) continue;
    for (int p = 0; p < K; p++) {
      float a = alpha * (tA ? A[(size_t)p * lda + i] : A[(size_t)i * lda + p]);
      if (!tB) {
        const float *b = B + (size_t)p * ldb;
        for (int j = 0; j < N; j++) c[j] += a * b[j];
      } else {
        for (int j = 0; j < N; j++) c[j] += a * B[(size_t)j * ldb + p];
      }
    }
  }
}

#if defined(__APPLE__)
// ---------------------------------------------------------------------------------------------
// Apple: Accelerate
// ---------------------------------------------------------------------------------------------
#ifndef ACCELERATE_NEW_LAPACK
#define ACCELERATE_NEW_LAPACK
#endif
#include <Accelerate/Accelerate.h>

static int g_has_sbgemm = 0;  // Accelerate has no bf16 GEMM

static void lib_sbgemm(int threads, int tA, int tB, int M, int N, int K, float alpha,
                       const uint16_t *A, int lda, const uint16_t *B, int ldb, float beta, float *C,
                       int ldc) {
  (void)threads; (void)tA; (void)tB; (void)M; (void)N; (void)K; (void)alpha; (void)A; (void)lda;
  (void)B; (void)ldb; (void)beta; (void)C; (void)ldc;
  fprintf(stderr, "remat_sbgemm_raw: no bf16 GEMM in this library (check remat_blas_has_sbgemm)\n");
  abort();
}

static void do_init(void) {
  init_common();
  snprintf(g_desc, sizeof g_desc, "Apple Accelerate cblas_sgemm (threads managed by Accelerate)");
  g_init_status = 0;
}

static void lib_sgemm(int threads, int tA, int tB, int M, int N, int K, float alpha,
                      const float *A, int lda, const float *B, int ldb, float beta, float *C,
                      int ldc) {
  (void)threads;  // Accelerate manages its own threading.
  cblas_sgemm(CblasRowMajor, tA ? CblasTrans : CblasNoTrans, tB ? CblasTrans : CblasNoTrans, M, N,
              K, alpha, A, lda, B, ldb, beta, C, ldc);
}

#else
// ---------------------------------------------------------------------------------------------
// Linux / other: OpenBLAS via dlopen
// ---------------------------------------------------------------------------------------------
#include <dlfcn.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

// CBLAS constants (values fixed by the CBLAS standard).
enum { RB_ROW_MAJOR = 101, RB_NO_TRANS = 111, RB_TRANS = 112 };
typedef void (*cblas_sgemm_fn)(int order, int tA, int tB, int M, int N, int K, float alpha,
                               const float *A, int lda, const float *B, int ldb, float beta,
                               float *C, int ldc);
typedef void (*set_threads_fn)(int);
typedef char *(*get_str_fn)(void);
typedef int (*get_int_fn)(void);

typedef void (*cblas_sbgemm_fn)(int order, int tA, int tB, int M, int N, int K, float alpha,
                                const uint16_t *A, int lda, const uint16_t *B, int ldb, float beta,
                                float *C, int ldc);
static cblas_sgemm_fn p_sgemm = NULL;
static cblas_sbgemm_fn p_sbgemm = NULL;
static set_threads_fn p_set_threads = NULL;
static int g_has_sbgemm = 0;  // the loaded library exports cblas_sbgemm (a BUILD_BFLOAT16 build)

// openblas_set_num_threads is process-global, and OpenBLAS's sgemm gives other bits with 1 and
// with 2 threads for most shapes (0.3.21, Haswell kernel: it blocks the product differently). So
// a call must run with the count it asks for even while another thread of the process asks for
// another: calls run under a shared "thread mode" -- any number at once with the same count, a
// call with another count waits until they are done, then sets the library's count. Admission is
// first come, first served (a ticket), so a waiting count is not starved by a stream of others.
static pthread_mutex_t g_mode_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_mode_cv = PTHREAD_COND_INITIALIZER;
static int g_lib_threads = -1;            // the count last passed to openblas_set_num_threads
static int g_mode_active = 0;             // calls running under it
static unsigned long g_next_ticket = 0, g_serving = 0;

static void threads_acquire(int threads) {
  if (!p_set_threads) return;
  pthread_mutex_lock(&g_mode_mu);
  unsigned long ticket = g_next_ticket++;
  while (ticket != g_serving || (g_mode_active > 0 && g_lib_threads != threads))
    pthread_cond_wait(&g_mode_cv, &g_mode_mu);
  if (g_lib_threads != threads) {
    p_set_threads(threads);
    g_lib_threads = threads;
  }
  g_mode_active++;
  g_serving++;
  pthread_cond_broadcast(&g_mode_cv);
  pthread_mutex_unlock(&g_mode_mu);
}

static void threads_release(void) {
  if (!p_set_threads) return;
  pthread_mutex_lock(&g_mode_mu);
  if (--g_mode_active == 0) pthread_cond_broadcast(&g_mode_cv);
  pthread_mutex_unlock(&g_mode_mu);
}

// Best OpenBLAS x86 kernel family for SGEMM that this CPU + OS can run, or NULL to let OpenBLAS
// decide. Cooperlake/SapphireRapids/Zen4 use the same SGEMM kernel as SkylakeX, Zen1-3 the Haswell
// one, so these two names cover every fast path OpenBLAS has for sgemm on x86-64.
static const char *best_x86_coretype(void) {
#if defined(__x86_64__) || defined(__i386__)
  unsigned a, b, c, d;
  if (!__get_cpuid_count(1, 0, &a, &b, &c, &d)) return NULL;
  int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1;
  if (!osxsave || !avx) return NULL;
  unsigned xlo, xhi;
  __asm__ volatile("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
  if ((xlo & 0x6) != 0x6) return NULL;  // OS does not save XMM/YMM state
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return NULL;
  int avx2 = (b >> 5) & 1;
  int avx512 = ((b >> 16) & 1) /*F*/ && ((b >> 17) & 1) /*DQ*/ && ((b >> 28) & 1) /*CD*/ &&
               ((b >> 30) & 1) /*BW*/ && ((b >> 31) & 1) /*VL*/;
  if (avx512 && (xlo & 0xE6) == 0xE6) return "SkylakeX";
  if (avx2 && fma) return "Haswell";
#endif
  return NULL;
}

static int is_generic_core(const char *core) {
  static const char *weak[] = {"prescott", "core2",   "penryn",    "dunnington", "nehalem",
                               "atom",     "athlon",  "opteron",   "barcelona",  "bobcat",
                               "katmai",   "coppermine", "northwood", "banias",  "nano",
                               "unknown",  "generic"};
  for (size_t i = 0; i < sizeof weak / sizeof weak[0]; i++)
    if (strncasecmp(core, weak[i], strlen(weak[i])) == 0) return 1;
  return 0;
}

static void do_init(void) {
  init_common();
  const char *candidates[6];
  int nc = 0;
  const char *user = getenv("REMAT_OPENBLAS");
  if (user && *user) candidates[nc++] = user;
  candidates[nc++] = "libopenblas.so.0";   // Debian/Ubuntu (pthread or openmp variant)
  candidates[nc++] = "libopenblasp.so.0";  // Fedora/RHEL pthread variant
  candidates[nc++] = "libopenblas.so";     // dev symlink / custom builds

  // Choose the kernel before the library's constructor runs (it reads OPENBLAS_CORETYPE once).
  const char *user_core = getenv("OPENBLAS_CORETYPE");
  const char *forced = NULL;
  int already_loaded = 0;
  for (int i = 0; i < nc; i++) {
    void *h = dlopen(candidates[i], RTLD_NOW | RTLD_NOLOAD);
    if (h) { already_loaded = 1; dlclose(h); break; }
  }
  if (!(user_core && *user_core) && !already_loaded) {
    forced = best_x86_coretype();
    if (forced) setenv("OPENBLAS_CORETYPE", forced, 1);
  }

  void *h = NULL;
  const char *loaded = NULL;
  char errbuf[256] = "";
  for (int i = 0; i < nc && !h; i++) {
    h = dlopen(candidates[i], RTLD_NOW | RTLD_LOCAL);
    if (h) loaded = candidates[i];
    else if (!errbuf[0]) snprintf(errbuf, sizeof errbuf, "%s", dlerror());
  }
  if (forced) unsetenv("OPENBLAS_CORETYPE");  // do not leak into child processes

  if (h) {
    p_sgemm = (cblas_sgemm_fn)dlsym(h, "cblas_sgemm");
    p_set_threads = (set_threads_fn)dlsym(h, "openblas_set_num_threads");
    p_sbgemm = (cblas_sbgemm_fn)dlsym(h, "cblas_sbgemm");
    g_has_sbgemm = p_sbgemm != NULL;
  }
  if (!h || !p_sgemm) {
    p_sgemm = NULL;
    g_init_status = 1;
    snprintf(g_desc, sizeof g_desc,
             "remat_blas: could not load OpenBLAS (%s); install the runtime package "
             "(Debian/Ubuntu: libopenblas0) or set REMAT_OPENBLAS=/path/to/libopenblas.so. "
             "Using a slow reference GEMM.",
             h ? "cblas_sgemm not found" : errbuf);
    return;
  }
  get_str_fn p_core = (get_str_fn)dlsym(h, "openblas_get_corename");
  get_str_fn p_config = (get_str_fn)dlsym(h, "openblas_get_config");
  get_int_fn p_parallel = (get_int_fn)dlsym(h, "openblas_get_parallel");
  const char *core = p_core ? p_core() : "unknown";
  char version[64] = "OpenBLAS";
  if (p_config) {  // "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH ..." -> first two words
    const char *cfg = p_config();
    const char *sp = strchr(cfg, ' ');
    if (sp) sp = strchr(sp + 1, ' ');
    size_t len = sp ? (size_t)(sp - cfg) : strlen(cfg);
    if (len >= sizeof version) len = sizeof version - 1;
    memcpy(version, cfg, len);
    version[len] = '\0';
    if (strstr(cfg, "USE64BITINT")) {  // ILP64 build: our int prototypes would be wrong
      p_sgemm = NULL;
      g_init_status = 2;
      snprintf(g_desc, sizeof g_desc,
               "remat_blas: %s is an ILP64 (64-bit integer) OpenBLAS build, unsupported; "
               "using a slow reference GEMM", loaded);
      return;
    }
  }
  int par = p_parallel ? p_parallel() : -1;
  const char *par_s = par == 0 ? "sequential build" : par == 1 ? "pthreads" : par == 2 ? "OpenMP" : "?";
  const char *note = "";
  char notebuf[160] = "";
  // A library built for one newer AVX-512 target (Cooperlake, SapphireRapids: e.g. a BUILD_BFLOAT16
  // build) ignores the request but runs the SkylakeX SGEMM kernel: the request is met.
  int same_sgemm = forced && strcasecmp(forced, "SkylakeX") == 0 &&
                   (strcasecmp(core, "Cooperlake") == 0 || strcasecmp(core, "SapphireRapids") == 0);
  if (forced && strcasecmp(core, forced) != 0 && !same_sgemm) {
    snprintf(notebuf, sizeof notebuf, "; WARNING: requested %s kernel not honoured", forced);
    note = notebuf;
  } else if (!forced && best_x86_coretype() && is_generic_core(core)) {
    snprintf(notebuf, sizeof notebuf, "; WARNING: generic kernel although CPU supports %s%s",
             best_x86_coretype(),
             already_loaded ? " (OpenBLAS was loaded before remat_blas_init)" : "");
    note = notebuf;
  }
  snprintf(g_desc, sizeof g_desc, "%s (%s kernel%s, %s, %d threads%s)", version, core,
           forced ? " [selected by remat]" : (user_core && *user_core) ? " [OPENBLAS_CORETYPE]" : "",
           par_s, atomic_load(&g_threads), note);
  g_init_status = 0;
}

static void lib_sgemm(int threads, int tA, int tB, int M, int N, int K, float alpha,
                      const float *A, int lda, const float *B, int ldb, float beta, float *C,
                      int ldc) {
  if (!p_sgemm) {
    ref_sgemm(tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  // Runs with exactly `threads` library threads, whatever other threads ask for (see threads_acquire).
  threads_acquire(threads);
  p_sgemm(RB_ROW_MAJOR, tA ? RB_TRANS : RB_NO_TRANS, tB ? RB_TRANS : RB_NO_TRANS, M, N, K, alpha,
          A, lda, B, ldb, beta, C, ldc);
  threads_release();
}

static void lib_sbgemm(int threads, int tA, int tB, int M, int N, int K, float alpha,
                       const uint16_t *A, int lda, const uint16_t *B, int ldb, float beta, float *C,
                       int ldc) {
  if (!p_sbgemm) {
    fprintf(stderr, "remat_sbgemm_raw: no cblas_sbgemm in the loaded library (check remat_blas_has_sbgemm)\n");
    abort();
  }
  threads_acquire(threads);
  p_sbgemm(RB_ROW_MAJOR, tA ? RB_TRANS : RB_NO_TRANS, tB ? RB_TRANS : RB_NO_TRANS, M, N, K, alpha,
           A, lda, B, ldb, beta, C, ldc);
  threads_release();
}
#endif

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

int remat_blas_init(void) {
  pthread_once(&g_once, do_init);
  return g_init_status;
}

const char *remat_blas_describe(void) {
  remat_blas_init();
  return g_desc;
}

void remat_blas_set_threads(int n) {
  remat_blas_init();
  atomic_store(&g_threads, n < 1 ? 1 : n);
}

int remat_blas_has_sbgemm(void) {
  remat_blas_init();
  return g_has_sbgemm;
}

int remat_cpu_has_avx512_bf16(void) {
#if (defined(__x86_64__) || defined(__i386__)) && !defined(__APPLE__)
  unsigned a, b, c, d;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || a < 1) return 0;  // leaf 7 subleaf 1 absent
  if (!__get_cpuid_count(7, 1, &a, &b, &c, &d)) return 0;
  return (a >> 5) & 1;  // CPUID.(EAX=7,ECX=1):EAX[5] = AVX512_BF16
#else
  return 0;
#endif
}

int remat_blas_get_threads(void) {
  remat_blas_init();
  return atomic_load(&g_threads);
}

void remat_sbgemm_raw(int threads, int transA, int transB, int M, int N, int K, float alpha,
                      const uint16_t *A, int lda, const uint16_t *B, int ldb, float beta, float *C,
                      int ldc) {
  remat_blas_init();
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.0f) {  // C = beta*C
    ref_sgemm(0, 0, M, N, 0, 0.0f, NULL, lda, NULL, ldb, beta, C, ldc);
    return;
  }
  if (threads < 1) threads = atomic_load(&g_threads);
  lib_sbgemm(threads, transA != 0, transB != 0, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void remat_sgemm_raw(int threads, int transA, int transB, int M, int N, int K, float alpha,
                     const float *A, int lda, const float *B, int ldb, float beta, float *C,
                     int ldc) {
  remat_blas_init();
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.0f) {  // C = beta*C; avoids BLAS ld checks when K == 0
    ref_sgemm(0, 0, M, N, 0, 0.0f, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  if (threads < 1) threads = atomic_load(&g_threads);
  lib_sgemm(threads, transA != 0, transB != 0, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void remat_sgemm(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                 const float *B, int ldb, float beta, float *C, int ldc) {
  remat_blas_init();
  double flops = 2.0 * (double)M * (double)N * (double)K;
  int threads = flops < g_mt_min_flops ? 1 : atomic_load(&g_threads);
  remat_sgemm_raw(threads, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
