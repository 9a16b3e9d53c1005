// Elementwise, copy and axis-reduction kernels. Plain loops that clang vectorises; each hot
// function is compiled for AVX-512, AVX2+FMA and baseline x86-64 and picked at load time.
#include "remat_elementwise.h"
#include <string.h>
#include <math.h>

#include "remat_multiversion.h"

// Offsets of row `r` (all dims but the last) for a strided operand.
static inline long row_offset(int ndim, const long *shape, const long *strides, long r) {
    long off = 0;
    for (int d = ndim - 2; d >= 0; d--) {
        long idx = r % shape[d];
        r /= shape[d];
        off += idx * strides[d];
    }
    return off;
}

#define BINARY_LOOP(EXPR) \
    if (sa == 1 && sb == 1) { for (long j = 0; j < n; j++) { float x = pa[j], y = pb[j]; po[j] = (EXPR); } } \
    else if (sa == 1 && sb == 0) { float y = pb[0]; for (long j = 0; j < n; j++) { float x = pa[j]; po[j] = (EXPR); } } \
    else if (sa == 0 && sb == 1) { float x = pa[0]; for (long j = 0; j < n; j++) { float y = pb[j]; po[j] = (EXPR); } } \
    else { for (long j = 0; j < n; j++) { float x = pa[j * sa], y = pb[j * sb]; po[j] = (EXPR); } }

REMAT_MULTIVERSION
static void binary_row(int op, long n, const float *pa, long sa, const float *pb, long sb, float *po) {
    switch (op) {
    case REMAT_BIN_ADD: BINARY_LOOP(x + y) break;
    case REMAT_BIN_SUB: BINARY_LOOP(x - y) break;
    case REMAT_BIN_MUL: BINARY_LOOP(x * y) break;
    case REMAT_BIN_DIV: BINARY_LOOP(x / y) break;
    case REMAT_BIN_MAX: BINARY_LOOP((x != x || x > y) ? x : y) break;
    case REMAT_BIN_MIN: BINARY_LOOP((x != x || x < y) ? x : y) break;
    }
}

void remat_binary_f32(int op, int ndim, const long *shape,
                      const float *a, const long *astrides,
                      const float *b, const long *bstrides,
                      float *out, long row_begin, long row_end) {
    long n = shape[ndim - 1];
    long sa = astrides[ndim - 1], sb = bstrides[ndim - 1];
    for (long r = row_begin; r < row_end; r++) {
        const float *pa = a + row_offset(ndim, shape, astrides, r);
        const float *pb = b + row_offset(ndim, shape, bstrides, r);
        binary_row(op, n, pa, sa, pb, sb, out + r * n);
    }
}

#define SCALAR_LOOP(EXPR) for (long i = begin; i < end; i++) { float x = a[i]; out[i] = (EXPR); }

REMAT_MULTIVERSION
void remat_binary_scalar_f32(int op, const float *a, float s, float *out, long begin, long end) {
    switch (op) {
    case REMAT_BIN_ADD: SCALAR_LOOP(x + s) break;
    case REMAT_BIN_SUB: SCALAR_LOOP(x - s) break;
    case REMAT_BIN_MUL: SCALAR_LOOP(x * s) break;
    case REMAT_BIN_DIV: SCALAR_LOOP(x / s) break;
    case REMAT_BIN_MAX: SCALAR_LOOP((x != x || x > s) ? x : s) break;
    case REMAT_BIN_MIN: SCALAR_LOOP((x != x || x < s) ? x : s) break;
    }
}

REMAT_MULTIVERSION
void remat_scalar_binary_f32(int op, float s, const float *a, float *out, long begin, long end) {
    switch (op) {
    case REMAT_BIN_SUB: SCALAR_LOOP(s - x) break;
    case REMAT_BIN_DIV: SCALAR_LOOP(s / x) break;
    default: remat_binary_scalar_f32(op, a, s, out, begin, end); break;
    }
}

REMAT_MULTIVERSION
void remat_axpy_f32(float alpha, const float *src, float *dst, long begin, long end) {
    if (alpha == 1.0f) {
        for (long i = begin; i < end; i++) dst[i] += src[i];
    } else {
        for (long i = begin; i < end; i++) dst[i] += alpha * src[i];
    }
}

#define COPY_ROWS(T) { \
    const T *s = (const T *)src; T *d = (T *)dst; \
    for (long r = row_begin; r < row_end; r++) { \
        const T *ps = s + row_offset(ndim, shape, sstrides, r); T *pd = d + r * n; \
        if (ss == 1) memcpy(pd, ps, (size_t)n * sizeof(T)); \
        else if (ss == 0) { T v = ps[0]; for (long j = 0; j < n; j++) pd[j] = v; } \
        else for (long j = 0; j < n; j++) pd[j] = ps[j * ss]; \
    } }

REMAT_MULTIVERSION
void remat_copy_strided(int ndim, const long *shape, const void *src, const long *sstrides,
                        void *dst, int elem_size, long row_begin, long row_end) {
    long n = shape[ndim - 1];
    long ss = sstrides[ndim - 1];
    switch (elem_size) {
    case 1: COPY_ROWS(uint8_t) break;
    case 2: COPY_ROWS(uint16_t) break;
    case 4: COPY_ROWS(uint32_t) break;
    case 8: COPY_ROWS(uint64_t) break;
    }
}

#define COPY2_ROWS(T) { \
    const T *s = (const T *)src; T *d = (T *)dst; \
    for (long r = row_begin; r < row_end; r++) { \
        const T *ps = s + row_offset(ndim, shape, sstrides, r); \
        T *pd = d + row_offset(ndim, shape, dstrides, r); \
        if (ss == 1 && ds == 1) memcpy(pd, ps, (size_t)n * sizeof(T)); \
        else for (long j = 0; j < n; j++) pd[j * ds] = ps[j * ss]; \
    } }

void remat_copy_strided2(int ndim, const long *shape, const void *src, const long *sstrides,
                         void *dst, const long *dstrides, int elem_size, long row_begin, long row_end) {
    long n = shape[ndim - 1];
    long ss = sstrides[ndim - 1], ds = dstrides[ndim - 1];
    switch (elem_size) {
    case 1: COPY2_ROWS(uint8_t) break;
    case 2: COPY2_ROWS(uint16_t) break;
    case 4: COPY2_ROWS(uint32_t) break;
    case 8: COPY2_ROWS(uint64_t) break;
    }
}

REMAT_MULTIVERSION
void remat_sum_axis_f32(const float *x, float *out, long outer_begin, long outer_end, long n, long inner) {
    for (long o = outer_begin; o < outer_end; o++) {
        const float *px = x + o * n * inner;
        float *po = out + o * inner;
        if (inner == 1) {
            // 16 independent partial sums: vectorises and keeps rounding error low.
            float acc[16] = {0};
            long k = 0;
            for (; k + 16 <= n; k += 16)
                for (int l = 0; l < 16; l++) acc[l] += px[k + l];
            float s = 0;
            for (; k < n; k++) s += px[k];
            for (int l = 0; l < 16; l++) s += acc[l];
            po[0] = s;
        } else {
            for (long i = 0; i < inner; i++) po[i] = px[i];
            for (long k = 1; k < n; k++) {
                const float *row = px + k * inner;
                for (long i = 0; i < inner; i++) po[i] += row[i];
            }
        }
    }
}

void remat_max_axis_f32(const float *x, float *out, int32_t *argmax, long outer_begin, long outer_end, long n, long inner) {
    for (long o = outer_begin; o < outer_end; o++) {
        const float *px = x + o * n * inner;
        for (long i = 0; i < inner; i++) {
            float best = px[i];
            int32_t bi = 0;
            if (best == best) {
                for (long k = 1; k < n; k++) {
                    float v = px[k * inner + i];
                    if (v != v) { best = v; bi = (int32_t)k; break; }
                    if (v > best) { best = v; bi = (int32_t)k; }
                }
            }
            out[o * inner + i] = best;
            if (argmax) argmax[o * inner + i] = bi;
        }
    }
}
