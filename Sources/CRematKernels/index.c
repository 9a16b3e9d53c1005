// Indexing, dropout and masking kernels. See include/remat_index.h for the contracts.
#include "remat_index.h"
#include "remat_philox.h"
#include <string.h>


#include "remat_multiversion.h"

// ---- index validation --------------------------------------------------------------------------

// Blocked so the common all-valid case is a branch-free vectorised OR-reduction per block.
#define FIRST_INVALID(T)                                                                    \
    const long B = 1024;                                                                    \
    for (long base = 0; base < n; base += B) {                                              \
        long m = n - base < B ? n - base : B;                                               \
        int bad = 0;                                                                        \
        for (long i = 0; i < m; i++) {                                                      \
            T v = idx[base + i];                                                            \
            bad |= (v < 0) | (v >= (T)rows);                                                \
        }                                                                                   \
        if (bad) {                                                                          \
            for (long i = 0; i < m; i++) {                                                  \
                T v = idx[base + i];                                                        \
                if (v < 0 || v >= (T)rows) return base + i;                                 \
            }                                                                               \
        }                                                                                   \
    }                                                                                       \
    return -1;

REMAT_MULTIVERSION long remat_index_first_invalid_i32(const int32_t *idx, long n, long rows) {
    FIRST_INVALID(int64_t)  // compared widened to 64 bits, so any `rows` is exact
}

REMAT_MULTIVERSION long remat_index_first_invalid_i64(const int64_t *idx, long n, long rows) {
    FIRST_INVALID(int64_t)
}

// ---- embedding ---------------------------------------------------------------------------------

void remat_embedding_gather_i32(const int32_t *idx, const float *weight, long dim, float *out,
                                long begin, long end) {
    for (long p = begin; p < end; p++)
        memcpy(out + p * dim, weight + (long)idx[p] * dim, (size_t)dim * sizeof(float));
}

void remat_embedding_gather_i64(const int64_t *idx, const float *weight, long dim, float *out,
                                long begin, long end) {
    for (long p = begin; p < end; p++)
        memcpy(out + p * dim, weight + (long)idx[p] * dim, (size_t)dim * sizeof(float));
}

#define SCATTER_ADD                                                                         \
    long w = col_end - col_begin;                                                           \
    for (long p = 0; p < n; p++) {                                                          \
        const float *g = grad + p * dim + col_begin;                                        \
        float *d = dweight + (long)idx[p] * dim + col_begin;                                \
        for (long c = 0; c < w; c++) d[c] += g[c];                                          \
    }

REMAT_MULTIVERSION void remat_embedding_scatter_add_i32(const int32_t *idx, long n, const float *grad,
                                                        long dim, float *dweight, long col_begin,
                                                        long col_end) {
    SCATTER_ADD
}

REMAT_MULTIVERSION void remat_embedding_scatter_add_i64(const int64_t *idx, long n, const float *grad,
                                                        long dim, float *dweight, long col_begin,
                                                        long col_end) {
    SCATTER_ADD
}

// ---- dropout -----------------------------------------------------------------------------------

#define DROPOUT_TILE 1024  // elements per Philox tile (4 KiB on the stack); a multiple of 4

REMAT_MULTIVERSION void remat_dropout_f32(const float *x, float *out, long begin, long end, uint64_t seed,
                                          uint64_t block, float p, float scale) {
    float u[DROPOUT_TILE];
    // Tiles start at multiples of 4 so that a tile's first element is lane 0 of its first block.
    for (long t = begin & ~3L; t < end; t += DROPOUT_TILE) {
        long m = end - t < DROPOUT_TILE ? end - t : DROPOUT_TILE;
        remat_philox_fill_uniform(u, m, seed, block + (uint64_t)(t >> 2));
        long j0 = begin > t ? begin - t : 0;
        const float *xs = x + t;
        float *os = out + t;
        for (long j = j0; j < m; j++) os[j] = u[j] >= p ? xs[j] * scale : 0.0f;
    }
}

// ---- causal mask -------------------------------------------------------------------------------

REMAT_MULTIVERSION void remat_causal_mask_f32(const float *x, float *out, long row_begin, long row_end,
                                              long t, long s, float scale, float fill) {
    for (long r = row_begin; r < row_end; r++) {
        long visible = r % t + (s - t) + 1;  // keys 0..<visible are seen
        if (visible > s) visible = s;
        const float *xr = x + r * s;
        float *o = out + r * s;
        if (scale == 1.0f) for (long j = 0; j < visible; j++) o[j] = xr[j];
        else for (long j = 0; j < visible; j++) o[j] = xr[j] * scale;
        for (long j = visible; j < s; j++) o[j] = fill;
    }
}
