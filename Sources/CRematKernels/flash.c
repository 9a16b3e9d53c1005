// Elementwise parts of the fused attention (include/remat_flash.h). The loops vectorise in each
// target_clones version; masking is a per-row visible-key count, not a per-element test.

#include "remat_flash.h"

#include <math.h>

#include "reduce_inline.h"
#include "remat_math.h"
#include "remat_multiversion.h"

// Keys [0, n) of the block are visible from block row i (query r0 + i).
NN_INLINE long visible_in_block(long i, long cols, long r0, long c0, long shift, int causal) {
    if (!causal) return cols;
    long last = r0 + i + shift - c0;   // last visible key, in block coordinates
    if (last < 0) return 0;
    return last + 1 < cols ? last + 1 : cols;
}

REMAT_MULTIVERSION
void remat_flash_forward_step(float *s, long ld, long rows, long cols, long r0, long c0, long shift, int causal,
                              float scale, float *m, float *l, float *o, long ldo, long d) {
    for (long i = 0; i < rows; i++) {
        float *si = s + i * ld;
        long n = visible_in_block(i, cols, r0, c0, shift, causal);
        if (n == 0) {
            for (long j = 0; j < cols; j++) si[j] = 0;
            continue;
        }
        // One pointer per loop: each vectorises without alias checks.
        for (long j = 0; j < n; j++) si[j] *= scale;
        float bm = row_max(si, n);
        float mold = m[i], mnew = mold > bm ? mold : bm;
        for (long j = 0; j < n; j++) si[j] = remat_exp(si[j] - mnew);
        float sum = row_sum(si, n);
        for (long j = n; j < cols; j++) si[j] = 0;
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
        float inv = 1.0f / l[i];
        float *oi = o + i * ldo;
        for (long c = 0; c < d; c++) oi[c] *= inv;
        lse[i] = m[i] + logf(l[i]);
    }
}

// g[j] = scale · p[j] · (g[j] − d) (p and g distinct rows).
NN_INLINE void backward_row(const float *restrict p, float *restrict g, long n, float d, float scale) {
    for (long j = 0; j < n; j++) g[j] = (p[j] * (g[j] - d)) * scale;
}

REMAT_MULTIVERSION
void remat_flash_backward_step(float *s, float *dp, long ld, long rows, long cols, long r0, long c0, long shift,
                               int causal, float scale, const float *lse, const float *dvec) {
    for (long i = 0; i < rows; i++) {
        float *si = s + i * ld, *gi = dp + i * ld;
        long n = visible_in_block(i, cols, r0, c0, shift, causal);
        float li = lse[i], di = dvec[i];
        for (long j = 0; j < n; j++) si[j] = remat_exp(si[j] * scale - li);
        backward_row(si, gi, n, di, scale);
        for (long j = n; j < cols; j++) { si[j] = 0; gi[j] = 0; }
    }
}

REMAT_MULTIVERSION
void remat_flash_row_dots(const float *a, long lda, const float *b, long ldb, long rows, long d, float *out) {
    for (long i = 0; i < rows; i++) out[i] = row_dot(a + i * lda, b + i * ldb, d);
}
