// Normalisation and loss kernels: softmax / log-softmax (forward and backward), layer norm
// (forward and backward), fused cross-entropy. Plain loops that clang vectorises; reductions
// along a row use 16 independent partial accumulators (vectorisable without -ffast-math and with
// less rounding error than one running sum). exp is remat_exp (no libm call per element); logf
// and sqrtf are called once per row.
#include "remat_nn.h"
#include "remat_math.h"
#include <math.h>
#include <string.h>

#include "remat_multiversion.h"

#include "reduce_inline.h"

#define TILE REMAT_NN_INNER_TILE

// MARK: Softmax

NN_INLINE void softmax_row(const float *x, float *y, long n, int log_sm) {
    float m = row_max(x, n);
    if (m == -INFINITY) {
        // All -inf (or -inf and NaN): exp(-inf − -inf) is undefined; PyTorch gives NaN.
        for (long j = 0; j < n; j++) y[j] = NAN;
        return;
    }
    if (!log_sm) {
        float s = row_sum_exp(x, y, m, n);
        float inv = 1.0f / s;
        for (long j = 0; j < n; j++) y[j] *= inv;
    } else {
        float ls = logf(row_sum_exp(x, NULL, m, n));
        for (long j = 0; j < n; j++) y[j] = (x[j] - m) - ls;
    }
}

// One tile of w ≤ TILE inner positions of an [n, inner] slab (row stride `inner`).
NN_INLINE void softmax_tile(const float *x, float *y, long n, long inner, long w, int log_sm) {
    float mx[TILE], sm[TILE];
    for (long i = 0; i < w; i++) { mx[i] = -INFINITY; sm[i] = 0; }
    for (long k = 0; k < n; k++) {
        const float *r = x + k * inner;
        for (long i = 0; i < w; i++) mx[i] = r[i] > mx[i] ? r[i] : mx[i];
    }
    if (!log_sm) {
        for (long k = 0; k < n; k++) {
            const float *r = x + k * inner;
            float *o = y + k * inner;
            for (long i = 0; i < w; i++) { float e = remat_exp(r[i] - mx[i]); o[i] = e; sm[i] += e; }
        }
        for (long i = 0; i < w; i++) sm[i] = mx[i] == -INFINITY ? NAN : 1.0f / sm[i];
        for (long k = 0; k < n; k++) {
            float *o = y + k * inner;
            for (long i = 0; i < w; i++) o[i] *= sm[i];
        }
    } else {
        for (long k = 0; k < n; k++) {
            const float *r = x + k * inner;
            for (long i = 0; i < w; i++) sm[i] += remat_exp(r[i] - mx[i]);
        }
        for (long i = 0; i < w; i++) sm[i] = mx[i] == -INFINITY ? NAN : logf(sm[i]);
        for (long k = 0; k < n; k++) {
            const float *r = x + k * inner;
            float *o = y + k * inner;
            for (long i = 0; i < w; i++) o[i] = (r[i] - mx[i]) - sm[i];
        }
    }
}

REMAT_MULTIVERSION
void remat_softmax_f32(const float *x, float *y, long n, long inner, int log_softmax,
                       long item_begin, long item_end) {
    if (inner == 1) {
        for (long r = item_begin; r < item_end; r++) softmax_row(x + r * n, y + r * n, n, log_softmax);
        return;
    }
    long tiles = (inner + TILE - 1) / TILE;
    for (long it = item_begin; it < item_end; it++) {
        long o = it / tiles, t = it % tiles;
        long start = t * TILE, w = inner - start < TILE ? inner - start : TILE;
        long base = o * n * inner + start;
        softmax_tile(x + base, y + base, n, inner, w, log_softmax);
    }
}

// Causal softmax: row r of x [rows, s] is query r % t, which sees keys 0..<visible with
// visible = min(s, r % t + (s − t) + 1); y = softmax(scale·x) over those and exactly 0 after.
NN_INLINE long causal_visible(long r, long t, long s) {
    long visible = r % t + (s - t) + 1;
    return visible > s ? s : visible;
}

// Softmax in place over yr[0, visible) (already scaled), zeros in yr[visible, s). One pointer:
// the loops vectorise without alias checks.
NN_INLINE void causal_softmax_row_inplace(float *yr, long visible, long s) {
    float m = row_max(yr, visible);
    if (m == -INFINITY) {
        for (long j = 0; j < visible; j++) yr[j] = NAN;
    } else {
        for (long j = 0; j < visible; j++) yr[j] = remat_exp(yr[j] - m);
        float inv = 1.0f / row_sum(yr, visible);
        for (long j = 0; j < visible; j++) yr[j] *= inv;
    }
    for (long j = visible; j < s; j++) yr[j] = 0;
}

REMAT_MULTIVERSION
void remat_causal_softmax_f32(const float *x, float *y, long t, long s, float scale,
                              long row_begin, long row_end) {
    for (long r = row_begin; r < row_end; r++) {
        long visible = causal_visible(r, t, s);
        const float *xr = x + r * s;
        float *yr = y + r * s;
        for (long j = 0; j < visible; j++) yr[j] = xr[j] * scale;
        causal_softmax_row_inplace(yr, visible, s);
    }
}

REMAT_MULTIVERSION
void remat_causal_softmax_inplace_f32(float *y, long t, long s, float scale, long row_begin, long row_end) {
    for (long r = row_begin; r < row_end; r++) {
        long visible = causal_visible(r, t, s);
        float *yr = y + r * s;
        for (long j = 0; j < visible; j++) yr[j] *= scale;
        causal_softmax_row_inplace(yr, visible, s);
    }
}

REMAT_MULTIVERSION
void remat_causal_softmax_backward_f32(const float *y, const float *dy, float *dx, long t, long s, float scale,
                                       long row_begin, long row_end) {
    for (long r = row_begin; r < row_end; r++) {
        long visible = causal_visible(r, t, s);
        const float *yr = y + r * s, *gr = dy + r * s;
        float *dr = dx + r * s;
        float dot = row_dot(gr, yr, visible);
        for (long j = 0; j < visible; j++) dr[j] = (yr[j] * (gr[j] - dot)) * scale;
        for (long j = visible; j < s; j++) dr[j] = 0;
    }
}

NN_INLINE void softmax_backward_row(const float *y, const float *dy, float *dx, long n, int log_sm) {
    if (!log_sm) {
        float dot = row_dot(dy, y, n);
        for (long j = 0; j < n; j++) dx[j] = y[j] * (dy[j] - dot);
    } else {
        float s = row_sum(dy, n);
        for (long j = 0; j < n; j++) dx[j] = dy[j] - remat_exp(y[j]) * s;
    }
}

NN_INLINE void softmax_backward_tile(const float *y, const float *dy, float *dx, long n, long inner,
                                         long w, int log_sm) {
    float acc[TILE];
    for (long i = 0; i < w; i++) acc[i] = 0;
    if (!log_sm) {
        for (long k = 0; k < n; k++) {
            const float *py = y + k * inner, *pg = dy + k * inner;
            for (long i = 0; i < w; i++) acc[i] += pg[i] * py[i];
        }
        for (long k = 0; k < n; k++) {
            const float *py = y + k * inner, *pg = dy + k * inner;
            float *pd = dx + k * inner;
            for (long i = 0; i < w; i++) pd[i] = py[i] * (pg[i] - acc[i]);
        }
    } else {
        for (long k = 0; k < n; k++) {
            const float *pg = dy + k * inner;
            for (long i = 0; i < w; i++) acc[i] += pg[i];
        }
        for (long k = 0; k < n; k++) {
            const float *py = y + k * inner, *pg = dy + k * inner;
            float *pd = dx + k * inner;
            for (long i = 0; i < w; i++) pd[i] = pg[i] - remat_exp(py[i]) * acc[i];
        }
    }
}

REMAT_MULTIVERSION
void remat_softmax_backward_f32(const float *y, const float *dy, float *dx, long n, long inner,
                                int log_softmax, long item_begin, long item_end) {
    if (inner == 1) {
        for (long r = item_begin; r < item_end; r++)
            softmax_backward_row(y + r * n, dy + r * n, dx + r * n, n, log_softmax);
        return;
    }
    long tiles = (inner + TILE - 1) / TILE;
    for (long it = item_begin; it < item_end; it++) {
        long o = it / tiles, t = it % tiles;
        long start = t * TILE, w = inner - start < TILE ? inner - start : TILE;
        long base = o * n * inner + start;
        softmax_backward_tile(y + base, dy + base, dx + base, n, inner, w, log_softmax);
    }
}

// MARK: Layer norm

REMAT_MULTIVERSION
void remat_layer_norm_f32(const float *x, const float *w, const float *b, float *y,
                          float *mean, float *rstd, long n, float eps, long row_begin, long row_end) {
    for (long r = row_begin; r < row_end; r++) {
        const float *px = x + r * n;
        float *py = y + r * n;
        // Two passes: the mean, then the mean squared deviation (no cancellation, unlike E[x²] − E[x]²).
        float mu = row_sum(px, n) / (float)n;
        float acc[LANES] = {0};
        long k = 0;
        for (; k + LANES <= n; k += LANES)
            for (int l = 0; l < LANES; l++) { float d = px[k + l] - mu; acc[l] += d * d; }
        float tail = 0;
        for (; k < n; k++) { float d = px[k] - mu; tail += d * d; }
        float var = reduce_lanes(acc, tail) / (float)n;
        float rs = 1.0f / sqrtf(var + eps);
        mean[r] = mu;
        rstd[r] = rs;
        if (w && b) { for (long j = 0; j < n; j++) py[j] = (px[j] - mu) * rs * w[j] + b[j]; }
        else if (w) { for (long j = 0; j < n; j++) py[j] = (px[j] - mu) * rs * w[j]; }
        else if (b) { for (long j = 0; j < n; j++) py[j] = (px[j] - mu) * rs + b[j]; }
        else        { for (long j = 0; j < n; j++) py[j] = (px[j] - mu) * rs; }
    }
}

REMAT_MULTIVERSION
void remat_layer_norm_backward_f32(const float *x, const float *w, const float *mean, const float *rstd,
                                   const float *dy, float *dx, float *dw_acc, float *db_acc,
                                   long n, long row_begin, long row_end) {
    for (long r = row_begin; r < row_end; r++) {
        const float *px = x + r * n, *pg = dy + r * n;
        const float mu = mean[r], rs = rstd[r];
        if (dw_acc) for (long j = 0; j < n; j++) dw_acc[j] += pg[j] * ((px[j] - mu) * rs);
        if (db_acc) for (long j = 0; j < n; j++) db_acc[j] += pg[j];
        if (!dx) continue;
        // a = Σ g, c = Σ g·x̂ with g = dy·w.
        float acc_a[LANES] = {0}, acc_c[LANES] = {0};
        long k = 0;
        float ta = 0, tc = 0;
        if (w) {
            for (; k + LANES <= n; k += LANES)
                for (int l = 0; l < LANES; l++) {
                    float g = pg[k + l] * w[k + l], xh = (px[k + l] - mu) * rs;
                    acc_a[l] += g; acc_c[l] += g * xh;
                }
            for (; k < n; k++) { float g = pg[k] * w[k], xh = (px[k] - mu) * rs; ta += g; tc += g * xh; }
        } else {
            for (; k + LANES <= n; k += LANES)
                for (int l = 0; l < LANES; l++) {
                    float g = pg[k + l], xh = (px[k + l] - mu) * rs;
                    acc_a[l] += g; acc_c[l] += g * xh;
                }
            for (; k < n; k++) { float g = pg[k], xh = (px[k] - mu) * rs; ta += g; tc += g * xh; }
        }
        const float ma = reduce_lanes(acc_a, ta) / (float)n, mc = reduce_lanes(acc_c, tc) / (float)n;
        float *pd = dx + r * n;
        if (w) { for (long j = 0; j < n; j++) pd[j] = rs * (pg[j] * w[j] - ma - ((px[j] - mu) * rs) * mc); }
        else   { for (long j = 0; j < n; j++) pd[j] = rs * (pg[j] - ma - ((px[j] - mu) * rs) * mc); }
    }
}

void remat_sum_rows_into_first_f32(float *buf, long chunks, long n) {
    for (long c = 1; c < chunks; c++) {
        const float *src = buf + c * n;
        for (long j = 0; j < n; j++) buf[j] += src[j];
    }
}

// MARK: Cross-entropy

NN_INLINE long target_at(const int32_t *t32, const int64_t *t64, long r) {
    return t32 ? (long)t32[r] : (long)t64[r];
}

REMAT_MULTIVERSION
void remat_cross_entropy_f32(const float *x, const int32_t *t32, const int64_t *t64, long ignore_index,
                             float *loss, float *stats, long n_classes, long row_begin, long row_end) {
    for (long r = row_begin; r < row_end; r++) {
        long t = target_at(t32, t64, r);
        if (t == ignore_index) {
            loss[r] = 0; stats[2 * r] = 0; stats[2 * r + 1] = 0;
            continue;
        }
        const float *px = x + r * n_classes;
        float m = row_max(px, n_classes);
        // m = -inf (all -inf): exp(NaN) makes the sum, hence the loss, NaN.
        float ls = logf(row_sum_exp(px, NULL, m, n_classes));
        stats[2 * r] = m;
        stats[2 * r + 1] = ls;
        // (m − x_t) first: exact for nearby values, so large logits (~1e4) keep full precision.
        loss[r] = (m - px[t]) + ls;
    }
}

REMAT_MULTIVERSION
void remat_cross_entropy_backward_f32(const float *x, const int32_t *t32, const int64_t *t64,
                                      long ignore_index, const float *stats, float scale, float *dx,
                                      long n_classes, long row_begin, long row_end) {
    for (long r = row_begin; r < row_end; r++) {
        long t = target_at(t32, t64, r);
        float *pd = dx + r * n_classes;
        if (t == ignore_index) {
            memset(pd, 0, (size_t)n_classes * sizeof(float));
            continue;
        }
        const float *px = x + r * n_classes;
        const float m = stats[2 * r], ls = stats[2 * r + 1];
        for (long j = 0; j < n_classes; j++) pd[j] = scale * remat_exp((px[j] - m) - ls);
        pd[t] -= scale;
    }
}
