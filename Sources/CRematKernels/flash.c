// Elementwise parts of the fused attention (include/remat_flash.h). The loops vectorise in each
// target_clones version; causal masking is a per-row visible-key count, not a per-element test.

#include "remat_flash.h"

#include <math.h>

#include "reduce_inline.h"
#include "remat_math.h"
#include "remat_multiversion.h"
#include "remat_philox.h"

// Keys [0, n) of the block are visible from block row i (query r0 + i).
NN_INLINE long visible_in_block(long i, long cols, long r0, long c0, long shift, int causal) {
    if (!causal) return cols;
    long last = r0 + i + shift - c0;   // last visible key, in block coordinates
    if (last < 0) return 0;
    return last + 1 < cols ? last + 1 : cols;
}

// x[j] = scale · x[j] (+ bias[j]) for j < n.
NN_INLINE void scores_row(float *restrict x, const float *restrict bias, long n, float scale) {
    if (bias) for (long j = 0; j < n; j++) x[j] = x[j] * scale + bias[j];
    else for (long j = 0; j < n; j++) x[j] *= scale;
}

// u[j] = the uniform of global stream element g + j, j < n (n ≤ the block's keys): the Philox
// fill starts at the multiple of 4 at or below g, so lanes line up with remat_dropout_f32's.
NN_INLINE void row_uniforms(float *u, long n, const remat_flash_dropout *drop, long g) {
    long g0 = g & ~3L, skip = g - g0;
    float tile[n + 4];
    remat_philox_fill_uniform(tile, n + skip, drop->seed, drop->block + (uint64_t)(g0 >> 2));
    for (long j = 0; j < n; j++) u[j] = tile[skip + j];
}

REMAT_MULTIVERSION
void remat_flash_forward_step(float *s, long ld, long rows, long cols, long r0, long c0, long shift, int causal,
                              float scale, const float *bias, long ldbias, const remat_flash_dropout *drop,
                              float *m, float *l, float *o, long ldo, long d) {
    for (long i = 0; i < rows; i++) {
        float *si = s + i * ld;
        long n = visible_in_block(i, cols, r0, c0, shift, causal);
        float bm = -INFINITY;
        if (n > 0) {
            // One pointer per loop: each vectorises without alias checks.
            scores_row(si, bias ? bias + i * ldbias : 0, n, scale);
            bm = row_max(si, n);
        }
        if (bm == -INFINITY) {   // no visible key, or every score hidden by the bias
            for (long j = 0; j < cols; j++) si[j] = 0;
            continue;
        }
        float mold = m[i], mnew = mold > bm ? mold : bm;
        for (long j = 0; j < n; j++) si[j] = remat_exp(si[j] - mnew);
        float sum = row_sum(si, n);
        for (long j = n; j < cols; j++) si[j] = 0;
        if (drop) {
            float u[n];
            row_uniforms(u, n, drop, drop->base + i * drop->ld);
            float p = drop->p, keep = drop->scale;
            for (long j = 0; j < n; j++) si[j] = u[j] >= p ? si[j] * keep : 0.0f;
        }
        // exp(−inf − m) = 0 at the first visible block: the zero accumulator is rescaled to zero.
        float alpha = mold == -INFINITY ? 0.0f : remat_exp(mold - mnew);
        l[i] = l[i] * alpha + sum;
        m[i] = mnew;
        if (alpha != 1.0f) {
            float *oi = o + i * ldo;
            for (long c = 0; c < d; c++) oi[c] *= alpha;
        }
    }
}

REMAT_MULTIVERSION
void remat_flash_forward_finish(float *o, long ldo, long rows, long d, const float *m, const float *l, float *lse) {
    for (long i = 0; i < rows; i++) {
        float *oi = o + i * ldo;
        if (l[i] == 0.0f) {
            for (long c = 0; c < d; c++) oi[c] = 0;
            lse[i] = -INFINITY;
            continue;
        }
        float inv = 1.0f / l[i];
        for (long c = 0; c < d; c++) oi[c] *= inv;
        lse[i] = m[i] + logf(l[i]);
    }
}

// g[j] = p[j] · (g[j] − d) (p and g distinct rows).
NN_INLINE void backward_row(const float *restrict p, float *restrict g, long n, float d) {
    for (long j = 0; j < n; j++) g[j] = p[j] * (g[j] - d);
}

// With dropout: g[j] = p[j] · (keep_j · dz[j] · scale − d) and then p[j] = keep_j · p[j] · scale.
NN_INLINE void backward_row_dropout(float *restrict p, float *restrict g, const float *restrict u, long n, float d,
                                    float prob, float keep) {
    for (long j = 0; j < n; j++) {
        int kept = u[j] >= prob;
        float dpj = kept ? g[j] * keep : 0.0f;
        g[j] = p[j] * (dpj - d);
        p[j] = kept ? p[j] * keep : 0.0f;
    }
}

REMAT_MULTIVERSION
void remat_flash_backward_step(float *s, float *dp, long ld, long rows, long cols, long r0, long c0, long shift,
                               int causal, float scale, const float *bias, long ldbias,
                               const remat_flash_dropout *drop, const float *lse, const float *dvec) {
    for (long i = 0; i < rows; i++) {
        float *si = s + i * ld, *gi = dp + i * ld;
        long n = visible_in_block(i, cols, r0, c0, shift, causal);
        float li = lse[i], di = dvec[i];
        if (li == -INFINITY) n = 0;   // the row had no probabilities
        if (n > 0) {
            scores_row(si, bias ? bias + i * ldbias : 0, n, scale);
            for (long j = 0; j < n; j++) si[j] = remat_exp(si[j] - li);
            if (drop) {
                float u[n];
                row_uniforms(u, n, drop, drop->base + i * drop->ld);
                backward_row_dropout(si, gi, u, n, di, drop->p, drop->scale);
            } else {
                backward_row(si, gi, n, di);
            }
        }
        for (long j = n; j < cols; j++) { si[j] = 0; gi[j] = 0; }
    }
}

REMAT_MULTIVERSION
void remat_flash_row_dots(const float *a, long lda, const float *b, long ldb, long rows, long d, float *out) {
    for (long i = 0; i < rows; i++) out[i] = row_dot(a + i * lda, b + i * ldb, d);
}
