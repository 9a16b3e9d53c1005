// Is OpenBLAS's bf16 GEMM (cblas_sbgemm) faster than its float32 GEMM on this CPU? (issue 16)
//
// Loads the library given as argv[1] (an OpenBLAS built with BUILD_BFLOAT16=1; the Debian and PyPI
// builds export no cblas_sbgemm), then for each square size n times, alternating, sgemm on float32
// operands whose values are bf16 and sbgemm on the same values as bf16 (plus, separately, the
// float32 -> bf16 conversion of both operands that a caller holding float32 storage pays), and
// prints medians and the sbgemm/sgemm time ratio measured in the same run, and the largest
// difference between the two results relative to the largest |C| entry.
//
//   cc -O2 -o /tmp/sbgemm_vs_sgemm bench/sbgemm_vs_sgemm.c -ldl -lm
//   /tmp/sbgemm_vs_sgemm /path/libopenblas.so THREADS REPS n1 n2 ...
#define _GNU_SOURCE
#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef void (*sgemm_fn)(int, int, int, int, int, int, float, const float *, int, const float *, int, float, float *, int);
typedef void (*sbgemm_fn)(int, int, int, int, int, int, float, const uint16_t *, int, const uint16_t *, int, float, float *, int);
typedef void (*threads_fn)(int);
typedef char *(*config_fn)(void);

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, n, sizeof *v, cmp);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static uint16_t bf16_bits(float x) {  // x is a bf16 value: its upper half
    uint32_t u;
    memcpy(&u, &x, 4);
    return (uint16_t)(u >> 16);
}

static float bf16_round(float x) {  // round to nearest even (finite inputs)
    uint32_t u;
    memcpy(&u, &x, 4);
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000u;
    memcpy(&x, &u, 4);
    return x;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s LIB THREADS REPS N...\n", argv[0]);
        return 2;
    }
    void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!h) { fprintf(stderr, "cannot load %s: %s\n", argv[1], dlerror()); return 1; }
    sgemm_fn sgemm = (sgemm_fn)dlsym(h, "cblas_sgemm");
    sbgemm_fn sbgemm = (sbgemm_fn)dlsym(h, "cblas_sbgemm");
    threads_fn set_threads = (threads_fn)dlsym(h, "openblas_set_num_threads");
    config_fn config = (config_fn)dlsym(h, "openblas_get_config");
    config_fn core = (config_fn)dlsym(h, "openblas_get_corename");
    if (!sgemm || !sbgemm) { fprintf(stderr, "%s exports no cblas_sbgemm\n", argv[1]); return 1; }
    int threads = atoi(argv[2]), reps = atoi(argv[3]);
    if (threads < 1 || reps < 1) { fprintf(stderr, "THREADS and REPS must be >= 1\n"); return 2; }
    if (set_threads) set_threads(threads);
    printf("library: %s (%s kernel), %d threads, %d reps, medians\n", config ? config() : "?", core ? core() : "?", threads, reps);
    printf("     n   sgemm ms  sbgemm ms  convert ms  sbgemm/sgemm  (sbgemm+convert)/sgemm  max |diff|/max|C|\n");
    srand(7);
    for (int a = 4; a < argc; a++) {
        int n = atoi(argv[a]);
        if (n < 1) { fprintf(stderr, "sizes must be >= 1\n"); return 2; }
        size_t nn = (size_t)n * n;
        float *A = malloc(nn * 4), *B = malloc(nn * 4), *C1 = malloc(nn * 4), *C2 = malloc(nn * 4);
        uint16_t *Ab = malloc(nn * 2), *Bb = malloc(nn * 2);
        for (size_t i = 0; i < nn; i++) {
            A[i] = bf16_round((float)rand() / RAND_MAX - 0.5f);
            B[i] = bf16_round((float)rand() / RAND_MAX - 0.5f);
        }
        double *ts = malloc(reps * sizeof(double)), *tb = malloc(reps * sizeof(double)), *tc = malloc(reps * sizeof(double));
        double *ratio = malloc(reps * sizeof(double)), *ratio2 = malloc(reps * sizeof(double));
        for (int r = -1; r < reps; r++) {  // r = -1: warm-up
            double t0 = now();
            sgemm(101, 111, 111, n, n, n, 1, A, n, B, n, 0, C1, n);
            double t1 = now();
            for (size_t i = 0; i < nn; i++) { Ab[i] = bf16_bits(A[i]); Bb[i] = bf16_bits(B[i]); }
            double t2 = now();
            sbgemm(101, 111, 111, n, n, n, 1, Ab, n, Bb, n, 0, C2, n);
            double t3 = now();
            if (r < 0) continue;
            ts[r] = t1 - t0; tc[r] = t2 - t1; tb[r] = t3 - t2;
            ratio[r] = tb[r] / ts[r];
            ratio2[r] = (tb[r] + tc[r]) / ts[r];
        }
        double maxc = 0, maxd = 0;
        for (size_t i = 0; i < nn; i++) {
            maxc = fmax(maxc, fabs(C1[i]));
            maxd = fmax(maxd, fabs(C1[i] - C2[i]));
        }
        printf("%6d  %9.2f  %9.2f  %10.2f  %12.2f  %22.2f  %17.2e\n", n, 1e3 * median(ts, reps), 1e3 * median(tb, reps),
               1e3 * median(tc, reps), median(ratio, reps), median(ratio2, reps), maxd / maxc);
        free(A); free(B); free(C1); free(C2); free(Ab); free(Bb); free(ts); free(tb); free(tc); free(ratio); free(ratio2);
    }
    return 0;
}
