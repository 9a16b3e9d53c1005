// Convolution helpers (im2col / col2im / block transposes), batch norm and pooling kernels for
// NCHW float32 data. Plain loops that clang vectorises; each hot function is compiled for
// AVX-512, AVX2+FMA and baseline x86-64 and picked at load time (remat_multiversion.h).
// Reductions accumulate in double with 8 independent partial sums (vectorisable without
// -ffast-math); batch-norm statistics over N·H·W elements therefore lose no precision to the
// length of the reduction.
#include "remat_conv.h"
#include "remat_multiversion.h"
#include <math.h>
#include <string.h>

#define CONV_INLINE static inline __attribute__((always_inline))
#define DLANES 8

// MARK: Reductions (inlined into each multiversioned caller)

CONV_INLINE double sum_d(const float *x, long n) {
    if (n < 2 * DLANES) {
        double s = 0;
        for (long k = 0; k < n; k++) s += (double)x[k];
        return s;
    }
    double acc[DLANES] = {0};
    long k = 0;
    for (; k + DLANES <= n; k += DLANES)
        for (int l = 0; l < DLANES; l++) acc[l] += (double)x[k + l];
    double s = 0;
    for (; k < n; k++) s += (double)x[k];
    for (int l = 0; l < DLANES; l++) s += acc[l];
    return s;
}

// Σ (x − m)²
CONV_INLINE double sq_dev_d(const float *x, double m, long n) {
    if (n < 2 * DLANES) {
        double s = 0;
        for (long k = 0; k < n; k++) { double d = (double)x[k] - m; s += d * d; }
        return s;
    }
    double acc[DLANES] = {0};
    long k = 0;
    for (; k + DLANES <= n; k += DLANES)
        for (int l = 0; l < DLANES; l++) { double d = (double)x[k + l] - m; acc[l] += d * d; }
    double s = 0;
    for (; k < n; k++) { double d = (double)x[k] - m; s += d * d; }
    for (int l = 0; l < DLANES; l++) s += acc[l];
    return s;
}

// Σ dy and Σ dy·(x − m)
CONV_INLINE void dot_dev_d(const float *x, const float *dy, float m, long n, double *sdy, double *sdyx) {
    if (n < 2 * DLANES) {
        double s1 = 0, s2 = 0;
        for (long k = 0; k < n; k++) { double g = (double)dy[k]; s1 += g; s2 += g * (double)(x[k] - m); }
        *sdy = s1;
        *sdyx = s2;
        return;
    }
    double a[DLANES] = {0}, b[DLANES] = {0};
    long k = 0;
    for (; k + DLANES <= n; k += DLANES)
        for (int l = 0; l < DLANES; l++) {
            double g = (double)dy[k + l];
            a[l] += g;
            b[l] += g * (double)(x[k + l] - m);
        }
    double s1 = 0, s2 = 0;
    for (; k < n; k++) { double g = (double)dy[k]; s1 += g; s2 += g * (double)(x[k] - m); }
    for (int l = 0; l < DLANES; l++) { s1 += a[l]; s2 += b[l]; }
    *sdy = s1;
    *sdyx = s2;
}

// First and one-past-last output column whose input column ow·s − pad + off lies in [0, W).
CONV_INLINE void valid_range(long out, long stride, long pad, long off, long in, long *lo, long *hi) {
    long start = pad - off;                           // need ow·s ≥ start
    long l = start <= 0 ? 0 : (start + stride - 1) / stride;
    long end = in + pad - off;                        // need ow·s < end
    long h = end <= 0 ? 0 : (end + stride - 1) / stride;
    if (h > out) h = out;
    if (l > h) l = h;
    *lo = l;
    *hi = h;
}

// MARK: im2col / col2im
//
// Two paths. When the convolution has stride 1 and OW == W (a "same" convolution, or 1x1), output
// pixel j = oh·W + ow of tap (ki, kj) reads input pixel j + delta with one delta for the whole
// plane, so a tap of one image is ONE contiguous copy of the span from its first to its last valid
// pixel; the few positions that wrapped around a row edge (and rows outside the image) are zeroed
// afterwards. Otherwise (strided convolutions) rows are copied one by one, with stride 2 handled
// by its own loop so that clang vectorises the interleaved load.

// Tap geometry on the stride-1 "same" path: valid output rows [*oh_lo, *oh_hi), valid columns
// [*lo, *hi) and the plane offset delta.
CONV_INLINE void tap_span(const remat_conv_geometry *g, long ki, long kj, long *oh_lo, long *oh_hi,
                          long *lo, long *hi, long *delta) {
    const long H = g->height, W = g->width, OH = g->out_h;
    long roff = ki * g->dilation_h - g->pad_h, coff = kj * g->dilation_w - g->pad_w;
    long a = -roff, b = H - roff;                     // oh + roff in [0, H)
    if (a < 0) a = 0;
    if (b > OH) b = OH;
    if (a > b) a = b;
    valid_range(g->out_w, 1, g->pad_w, kj * g->dilation_w, W, lo, hi);
    *oh_lo = a;
    *oh_hi = b;
    *delta = roff * W + coff;
}

CONV_INLINE int is_same_stride1(const remat_conv_geometry *g) {
    return g->stride_h == 1 && g->stride_w == 1 && g->out_w == g->width;
}

// Per-tap tables (computed once per call: valid_range divides). Same path: [oh_lo, oh_hi, lo, hi, delta];
// row path: [lo, hi].
typedef struct { long a, b, lo, hi, delta; } tap_info;

CONV_INLINE void fill_taps(const remat_conv_geometry *g, int same, tap_info *taps) {
    for (long ki = 0; ki < g->kernel_h; ki++) {
        for (long kj = 0; kj < g->kernel_w; kj++) {
            tap_info *t = taps + ki * g->kernel_w + kj;
            if (same) {
                tap_span(g, ki, kj, &t->a, &t->b, &t->lo, &t->hi, &t->delta);
            } else {
                valid_range(g->out_w, g->stride_w, g->pad_w, kj * g->dilation_w, g->width, &t->lo, &t->hi);
                t->a = t->b = t->delta = 0;
            }
        }
    }
}

// The geometry fields im2col and col2im read, as locals, and the tap table of the stride-1 "same"
// path (`same` says whether it applies).
#define CONV_GEOMETRY_LOCALS(g)                                                                      \
    const long C = (g)->channels, H = (g)->height, W = (g)->width, kh = (g)->kernel_h,               \
               kw = (g)->kernel_w;                                                                   \
    const long sh = (g)->stride_h, sw = (g)->stride_w, ph = (g)->pad_h, dh = (g)->dilation_h;        \
    const long pw = (g)->pad_w, dw = (g)->dilation_w, OH = (g)->out_h, OW = (g)->out_w, P = OH * OW; \
    const int same = is_same_stride1(g);                                                             \
    tap_info taps[kh * kw];                                                                          \
    fill_taps((g), same, taps)

// Short copies and fills are written as loops (no libc call per 2-16 floats); long ones use memcpy.
REMAT_MULTIVERSION __attribute__((no_builtin("memcpy", "memset")))
void remat_im2col_f32(const float *x, const remat_conv_geometry *g, long n_begin, long n_end,
                      long c_begin, long c_end, float *col, long ldcol) {
    CONV_GEOMETRY_LOCALS(g);
    for (long c = c_begin; c < c_end; c++) {
        for (long ki = 0; ki < kh; ki++) {
            for (long kj = 0; kj < kw; kj++) {
                const tap_info t = taps[ki * kw + kj];
                float *row = col + ((c * kh + ki) * kw + kj) * ldcol;
                const long lo = t.lo, hi = t.hi;
                for (long n = n_begin; n < n_end; n++) {
                    const float *plane = x + (n * C + c) * H * W;
                    float *dst = row + (n - n_begin) * P;
                    if (same) {
                        const long a = t.a, b = t.b;
                        if (a >= b || lo >= hi) {
                            for (long j = 0; j < P; j++) dst[j] = 0;
                            continue;
                        }
                        for (long j = 0; j < a * OW; j++) dst[j] = 0;
                        const long first = a * OW + lo, last = (b - 1) * OW + hi;
                        const float *src = plane + first + t.delta;
                        if (last - first >= 64) {
                            memcpy(dst + first, src, sizeof(float) * (size_t)(last - first));
                        } else {
                            for (long j = 0; j < last - first; j++) dst[first + j] = src[j];
                        }
                        if (lo > 0 || hi < OW) {
                            for (long oh = a; oh < b; oh++) {
                                for (long ow = 0; ow < lo; ow++) dst[oh * OW + ow] = 0;
                                for (long ow = hi; ow < OW; ow++) dst[oh * OW + ow] = 0;
                            }
                        }
                        for (long j = b * OW; j < P; j++) dst[j] = 0;
                        continue;
                    }
                    for (long oh = 0; oh < OH; oh++, dst += OW) {
                        long ih = oh * sh - ph + ki * dh;
                        if (ih < 0 || ih >= H) {
                            for (long ow = 0; ow < OW; ow++) dst[ow] = 0;
                            continue;
                        }
                        const float *src = plane + ih * W - pw + kj * dw;
                        for (long ow = 0; ow < lo; ow++) dst[ow] = 0;
                        if (sw == 1) {
                            for (long ow = lo; ow < hi; ow++) dst[ow] = src[ow];
                        } else if (sw == 2) {
                            for (long ow = lo; ow < hi; ow++) dst[ow] = src[2 * ow];
                        } else {
                            for (long ow = lo; ow < hi; ow++) dst[ow] = src[ow * sw];
                        }
                        for (long ow = hi; ow < OW; ow++) dst[ow] = 0;
                    }
                }
            }
        }
    }
}

REMAT_MULTIVERSION __attribute__((no_builtin("memset")))
void remat_col2im_f32(float *col, long ldcol, const remat_conv_geometry *g, long n_begin, long n_end,
                      long c_begin, long c_end, float *dx) {
    CONV_GEOMETRY_LOCALS(g);
    for (long c = c_begin; c < c_end; c++) {
        for (long n = n_begin; n < n_end; n++) {
            float *plane = dx + (n * C + c) * H * W;
            for (long j = 0; j < H * W; j++) plane[j] = 0;
            for (long ki = 0; ki < kh; ki++) {
                for (long kj = 0; kj < kw; kj++) {
                    const tap_info t = taps[ki * kw + kj];
                    const long lo = t.lo, hi = t.hi;
                    float *src = col + ((c * kh + ki) * kw + kj) * ldcol + (n - n_begin) * P;
                    if (same) {
                        const long a = t.a, b = t.b;
                        if (a >= b || lo >= hi) continue;
                        // Clear the wrapped positions inside the span, then add the span at once.
                        if (lo > 0 || hi < OW) {
                            for (long oh = a; oh < b; oh++) {
                                for (long ow = 0; ow < lo; ow++) src[oh * OW + ow] = 0;
                                for (long ow = hi; ow < OW; ow++) src[oh * OW + ow] = 0;
                            }
                        }
                        const long first = a * OW + lo, last = (b - 1) * OW + hi;
                        float *dst = plane + first + t.delta;
                        const float *s = src + first;
                        for (long j = 0; j < last - first; j++) dst[j] += s[j];
                        continue;
                    }
                    for (long oh = 0; oh < OH; oh++, src += OW) {
                        long ih = oh * sh - ph + ki * dh;
                        if (ih < 0 || ih >= H) continue;
                        float *dst = plane + ih * W - pw + kj * dw;
                        if (sw == 1) {
                            for (long ow = lo; ow < hi; ow++) dst[ow] += src[ow];
                        } else if (sw == 2) {
                            for (long ow = lo; ow < hi; ow++) dst[2 * ow] += src[ow];
                        } else {
                            for (long ow = lo; ow < hi; ow++) dst[ow * sw] += src[ow];
                        }
                    }
                }
            }
        }
    }
}

REMAT_MULTIVERSION
void remat_swap_outer_f32(const float *src, float *dst, long A, long B, long P, const float *bias,
                          long a_begin, long a_end) {
    for (long a = a_begin; a < a_end; a++) {
        const float *s = src + a * B * P;
        if (bias) {
            float v = bias[a];
            for (long b = 0; b < B; b++) {
                float *d = dst + (b * A + a) * P;
                for (long p = 0; p < P; p++) d[p] = s[b * P + p] + v;
            }
        } else {
            for (long b = 0; b < B; b++) memcpy(dst + (b * A + a) * P, s + b * P, sizeof(float) * (size_t)P);
        }
    }
}

REMAT_MULTIVERSION
void remat_add_channel_bias_f32(float *y, const float *bias, long C, long P, long plane_begin, long plane_end) {
    for (long r = plane_begin; r < plane_end; r++) {
        float v = bias[r % C];
        float *d = y + r * P;
        for (long p = 0; p < P; p++) d[p] += v;
    }
}

REMAT_MULTIVERSION
void remat_channel_sum_f32(const float *x, long N, long C, long P, float *out, long c_begin, long c_end) {
    for (long c = c_begin; c < c_end; c++) {
        double s = 0;
        for (long n = 0; n < N; n++) s += sum_d(x + (n * C + c) * P, P);
        out[c] = (float)s;
    }
}

// MARK: Batch norm
//
// Channel c of [N, C, P] is N rows of P values, C·P apart. With large planes each channel is
// walked row by row. With small planes (P < SMALL_PLANE: ResNet's 4×4 and 2×2 maps) that walk
// would touch one cache line and one page per 16–64 bytes, so the loops run image by image over
// a block of channels instead (contiguous memory), with per-channel accumulators on the stack.

#define SMALL_PLANE 32
#define CHANNEL_BLOCK 256

REMAT_MULTIVERSION
void remat_batch_norm_stats_f32(const float *x, long N, long C, long P, float *mean, float *var,
                                long c_begin, long c_end) {
    const double M = (double)(N * P);
    if (P < SMALL_PLANE) {
        double s[CHANNEL_BLOCK], q[CHANNEL_BLOCK];
        for (long cb = c_begin; cb < c_end; cb += CHANNEL_BLOCK) {
            const long ce = cb + CHANNEL_BLOCK < c_end ? cb + CHANNEL_BLOCK : c_end;
            for (long c = cb; c < ce; c++) s[c - cb] = q[c - cb] = 0;
            for (long n = 0; n < N; n++)
                for (long c = cb; c < ce; c++) s[c - cb] += sum_d(x + (n * C + c) * P, P);
            for (long c = cb; c < ce; c++) s[c - cb] /= M;
            for (long n = 0; n < N; n++)
                for (long c = cb; c < ce; c++) q[c - cb] += sq_dev_d(x + (n * C + c) * P, s[c - cb], P);
            for (long c = cb; c < ce; c++) {
                mean[c] = (float)s[c - cb];
                var[c] = (float)(q[c - cb] / M);
            }
        }
        return;
    }
    for (long c = c_begin; c < c_end; c++) {
        double s = 0;
        for (long n = 0; n < N; n++) s += sum_d(x + (n * C + c) * P, P);
        double m = s / M;
        double q = 0;
        for (long n = 0; n < N; n++) q += sq_dev_d(x + (n * C + c) * P, m, P);
        mean[c] = (float)m;
        var[c] = (float)(q / M);
    }
}

REMAT_MULTIVERSION
void remat_batch_norm_apply_f32(const float *x, long N, long C, long P, const float *mean, const float *rstd,
                                const float *w, const float *b, float *y, long c_begin, long c_end) {
    if (P < SMALL_PLANE) {
        for (long n = 0; n < N; n++) {
            for (long c = c_begin; c < c_end; c++) {
                const float m = mean[c], scale = rstd[c] * (w ? w[c] : 1.0f), shift = b ? b[c] : 0.0f;
                const float *s = x + (n * C + c) * P;
                float *d = y + (n * C + c) * P;
                for (long p = 0; p < P; p++) d[p] = (s[p] - m) * scale + shift;
            }
        }
        return;
    }
    for (long c = c_begin; c < c_end; c++) {
        const float m = mean[c], scale = rstd[c] * (w ? w[c] : 1.0f), shift = b ? b[c] : 0.0f;
        for (long n = 0; n < N; n++) {
            const float *s = x + (n * C + c) * P;
            float *d = y + (n * C + c) * P;
            for (long p = 0; p < P; p++) d[p] = (s[p] - m) * scale + shift;
        }
    }
}

// dx for one row of P values of channel c.
CONV_INLINE void bn_dx_row(const float *xs, const float *gs, float *d, long P, float m, float k, float a, float q,
                           int training) {
    if (training) {
        for (long p = 0; p < P; p++) d[p] = k * (gs[p] - a - (xs[p] - m) * q);
    } else {
        for (long p = 0; p < P; p++) d[p] = k * gs[p];
    }
}

REMAT_MULTIVERSION
void remat_batch_norm_backward_f32(const float *x, const float *dy, long N, long C, long P,
                                   const float *mean, const float *rstd, const float *w, int training,
                                   float *dx, float *dw, float *db, long c_begin, long c_end) {
    const double M = (double)(N * P);
    if (P < SMALL_PLANE) {
        double s1[CHANNEL_BLOCK], s2[CHANNEL_BLOCK];
        float ka[CHANNEL_BLOCK], aa[CHANNEL_BLOCK], qa[CHANNEL_BLOCK];
        for (long cb = c_begin; cb < c_end; cb += CHANNEL_BLOCK) {
            const long ce = cb + CHANNEL_BLOCK < c_end ? cb + CHANNEL_BLOCK : c_end;
            for (long c = cb; c < ce; c++) s1[c - cb] = s2[c - cb] = 0;
            for (long n = 0; n < N; n++) {
                for (long c = cb; c < ce; c++) {
                    double a, b;
                    dot_dev_d(x + (n * C + c) * P, dy + (n * C + c) * P, mean[c], P, &a, &b);
                    s1[c - cb] += a;
                    s2[c - cb] += b;
                }
            }
            for (long c = cb; c < ce; c++) {
                const double r = (double)rstd[c];
                if (dw) dw[c] = (float)(s2[c - cb] * r);
                if (db) db[c] = (float)s1[c - cb];
                ka[c - cb] = (w ? w[c] : 1.0f) * rstd[c];
                aa[c - cb] = (float)(s1[c - cb] / M);
                qa[c - cb] = (float)(r * r * s2[c - cb] / M);
            }
            if (!dx) continue;
            for (long n = 0; n < N; n++) {
                for (long c = cb; c < ce; c++) {
                    const long o = (n * C + c) * P;
                    bn_dx_row(x + o, dy + o, dx + o, P, mean[c], ka[c - cb], aa[c - cb], qa[c - cb], training);
                }
            }
        }
        return;
    }
    for (long c = c_begin; c < c_end; c++) {
        const float m = mean[c], r = rstd[c], wc = w ? w[c] : 1.0f;
        double sdy = 0, sdyx = 0;
        for (long n = 0; n < N; n++) {
            double a, b;
            dot_dev_d(x + (n * C + c) * P, dy + (n * C + c) * P, m, P, &a, &b);
            sdy += a;
            sdyx += b;
        }
        if (dw) dw[c] = (float)(sdyx * (double)r);
        if (db) db[c] = (float)sdy;
        if (!dx) continue;
        const float k = wc * r, a = (float)(sdy / M), q = (float)((double)r * (double)r * sdyx / M);
        for (long n = 0; n < N; n++) {
            const long o = (n * C + c) * P;
            bn_dx_row(x + o, dy + o, dx + o, P, m, k, a, q, training);
        }
    }
}

// MARK: Pooling

// Running max of one tap over a run of outputs: vectorises across the outputs (the comparisons
// are data-dependent, so a per-output scalar max is both latency-bound and branch-mispredicted).
#define MAXPOOL_TAP(STRIDE)                                                          \
    for (long ow = a; ow < b; ow++) {                                                \
        const int32_t i = (int32_t)(base + (STRIDE) * ow);                          \
        const float v = plane[i];                                                    \
        const int take = (v > ob[ow]) | (v != v);                                    \
        ob[ow] = take ? v : ob[ow];                                                  \
        ib[ow] = take ? i : ib[ow];                                                  \
    }

REMAT_MULTIVERSION
void remat_max_pool2d_f32(const float *x, const remat_conv_geometry *g, float *y, int32_t *idx,
                          long plane_begin, long plane_end) {
    const long H = g->height, W = g->width, kh = g->kernel_h, kw = g->kernel_w;
    const long sh = g->stride_h, sw = g->stride_w, ph = g->pad_h, pw = g->pad_w;
    const long dh = g->dilation_h, dw = g->dilation_w, OH = g->out_h, OW = g->out_w;
    // Interior output columns [a, b): every tap of the window is inside the image.
    long a = 0, b = OW;
    while (a < OW && a * sw - pw < 0) a++;
    while (b > a && (b - 1) * sw - pw + (kw - 1) * dw >= W) b--;
    for (long r = plane_begin; r < plane_end; r++) {
        const float *plane = x + r * H * W;
        for (long oh = 0; oh < OH; oh++) {
            const long hstart = oh * sh - ph;
            long ki_lo = 0, ki_hi = kh;
            while (ki_lo < kh && hstart + ki_lo * dh < 0) ki_lo++;
            while (ki_hi > ki_lo && hstart + (ki_hi - 1) * dh >= H) ki_hi--;
            float *ob = y + (r * OH + oh) * OW;
            int32_t *ib = idx + (r * OH + oh) * OW;
            // Edge columns [0, a) and [b, OW): scalar, with bounds checks. The first valid tap
            // starts the max (every window has one: padding ≤ kernel/2); later taps win if larger or NaN.
            for (long e = 0; e < a + (OW - b); e++) {
                const long ow = e < a ? e : b + (e - a);
                const long wstart = ow * sw - pw;
                long bi = -1;
                float best = -INFINITY;
                for (long ki = ki_lo; ki < ki_hi; ki++) {
                    const long row = (hstart + ki * dh) * W;
                    for (long kj = 0; kj < kw; kj++) {
                        const long iw = wstart + kj * dw;
                        if (iw < 0 || iw >= W) continue;
                        const float v = plane[row + iw];
                        if (bi < 0 || v > best || v != v) { best = v; bi = row + iw; }
                    }
                }
                ob[ow] = best;
                ib[ow] = (int32_t)bi;
            }
            // Interior columns: tap by tap over the whole run.
            if (a < b && ki_lo < ki_hi) {
                for (long ow = a; ow < b; ow++) {
                    ob[ow] = -INFINITY;
                    ib[ow] = (int32_t)((hstart + ki_lo * dh) * W + ow * sw - pw);
                }
                for (long ki = ki_lo; ki < ki_hi; ki++) {
                    for (long kj = 0; kj < kw; kj++) {
                        const long base = (hstart + ki * dh) * W - pw + kj * dw;
                        if (sw == 1) { MAXPOOL_TAP(1) }
                        else if (sw == 2) { MAXPOOL_TAP(2) }
                        else { MAXPOOL_TAP(sw) }
                    }
                }
            }
        }
    }
}

void remat_max_pool2d_backward_f32(const float *dy, const int32_t *idx, long in_plane, long out_plane,
                                   float *dx, long plane_begin, long plane_end) {
    for (long r = plane_begin; r < plane_end; r++) {
        float *d = dx + r * in_plane;
        memset(d, 0, sizeof(float) * (size_t)in_plane);
        const float *g = dy + r * out_plane;
        const int32_t *ix = idx + r * out_plane;
        for (long o = 0; o < out_plane; o++) d[ix[o]] += g[o];
    }
}

REMAT_MULTIVERSION
void remat_plane_mean_f32(const float *x, long P, float *y, long plane_begin, long plane_end) {
    for (long r = plane_begin; r < plane_end; r++) y[r] = (float)(sum_d(x + r * P, P) / (double)P);
}

REMAT_MULTIVERSION
void remat_plane_mean_backward_f32(const float *dy, long P, float *dx, long plane_begin, long plane_end) {
    const float inv = 1.0f / (float)P;
    for (long r = plane_begin; r < plane_end; r++) {
        float v = dy[r] * inv;
        float *d = dx + r * P;
        for (long p = 0; p < P; p++) d[p] = v;
    }
}
