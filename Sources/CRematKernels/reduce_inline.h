// Row reductions shared by the kernels of nn.c and flash.c: forced inline so that each
// multiversioned caller compiles them for its own ISA (a helper the inliner leaves out-of-line is
// compiled once, for baseline x86-64 only). 16 independent partial accumulators: vectorisable
// without -ffast-math, and less rounding error than one running sum.
#ifndef REMAT_REDUCE_INLINE_H
#define REMAT_REDUCE_INLINE_H

#include <math.h>

#include "remat_math.h"

#define NN_INLINE static inline __attribute__((always_inline))

#define LANES 16

// MARK: Row reductions (inlined into each multiversioned caller)

// Max of a row; NaN elements are skipped here (they make the later sums NaN anyway).
NN_INLINE float row_max(const float *x, long n) {
    float acc[LANES];
    for (int l = 0; l < LANES; l++) acc[l] = -INFINITY;
    long k = 0;
    for (; k + LANES <= n; k += LANES)
        for (int l = 0; l < LANES; l++) { float v = x[k + l]; acc[l] = v > acc[l] ? v : acc[l]; }
    float m = -INFINITY;
    for (; k < n; k++) m = x[k] > m ? x[k] : m;
    for (int l = 0; l < LANES; l++) m = acc[l] > m ? acc[l] : m;
    return m;
}

NN_INLINE float reduce_lanes(const float *acc, float tail) {
    float s = 0;
    for (int l = 0; l < LANES; l++) s += acc[l];
    return s + tail;
}

// acc[l] += e[k + l] over 16-wide blocks of e[0, len); returns the sum of the tail.
NN_INLINE float accumulate_lanes(float *acc, const float *e, long len) {
    long k = 0;
    for (; k + LANES <= len; k += LANES)
        for (int l = 0; l < LANES; l++) acc[l] += e[k + l];
    float tail = 0;
    for (; k < len; k++) tail += e[k];
    return tail;
}

#define EXP_BLOCK 256

// Σ exp(x − m), storing the exponentials in y when y is not NULL. The exponentials are computed
// in a plain elementwise loop (which clang vectorises; a 16-lane loop around remat_exp is not)
// into y or a stack block, then summed with 16 partial sums.
NN_INLINE float row_sum_exp(const float *x, float *y, float m, long n) {
    float block[EXP_BLOCK];
    float acc[LANES] = {0};
    float tail = 0;
    for (long k0 = 0; k0 < n; k0 += EXP_BLOCK) {
        long len = n - k0 < EXP_BLOCK ? n - k0 : EXP_BLOCK;
        float *e = y ? y + k0 : block;
        const float *px = x + k0;
        for (long j = 0; j < len; j++) e[j] = remat_exp(px[j] - m);
        tail += accumulate_lanes(acc, e, len);
    }
    return reduce_lanes(acc, tail);
}

NN_INLINE float row_sum(const float *x, long n) {
    float acc[LANES] = {0};
    long k = 0;
    for (; k + LANES <= n; k += LANES)
        for (int l = 0; l < LANES; l++) acc[l] += x[k + l];
    float tail = 0;
    for (; k < n; k++) tail += x[k];
    return reduce_lanes(acc, tail);
}

NN_INLINE float row_dot(const float *a, const float *b, long n) {
    float acc[LANES] = {0};
    long k = 0;
    for (; k + LANES <= n; k += LANES)
        for (int l = 0; l < LANES; l++) acc[l] += a[k + l] * b[k + l];
    float tail = 0;
    for (; k < n; k++) tail += a[k] * b[k];
    return reduce_lanes(acc, tail);
}

#endif
