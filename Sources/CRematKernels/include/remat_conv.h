// Convolution, batch-norm and pooling kernels for NCHW float32 tensors (no GEMM here: the GEMMs
// of a convolution go through the BLAS seam, called from Swift). Every function works on a range
// of an outer index (channels or planes) so the caller can split it over threads; ranges write
// disjoint memory. All buffers are contiguous.
#ifndef REMAT_CONV_H
#define REMAT_CONV_H
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Geometry of one 2-D convolution (or pooling window) over NCHW data.
typedef struct {
    long channels, height, width;          // input C, H, W
    long kernel_h, kernel_w;
    long stride_h, stride_w;
    long pad_h, pad_w;
    long dilation_h, dilation_w;
    long out_h, out_w;                     // output OH, OW
} remat_conv_geometry;

/// im2col for images [n_begin, n_end) of x [N, C, H, W], channels [c_begin, c_end):
/// col[(c·kh + ki)·kw + kj][(n − n_begin)·OH·OW + oh·OW + ow] = x[n, c, oh·sh − ph + ki·dh, ow·sw − pw + kj·dw]
/// (0 outside the image). `ldcol` is the row length of col (≥ (n_end − n_begin)·OH·OW).
void remat_im2col_f32(const float *x, const remat_conv_geometry *g, long n_begin, long n_end,
                      long c_begin, long c_end, float *col, long ldcol);

/// col2im, the adjoint of remat_im2col_f32: for channels [c_begin, c_end) of images [n_begin, n_end),
/// dx[n, c, ·, ·] = Σ over the (ki, kj, oh, ow) that read each input pixel of col[...] (dx is
/// overwritten, not accumulated). col is clobbered: its entries at padding positions are zeroed.
void remat_col2im_f32(float *col, long ldcol, const remat_conv_geometry *g, long n_begin, long n_end,
                      long c_begin, long c_end, float *dx);

/// Block transpose between [A, B, P] and [B, A, P] (P-length runs are copied), rows a in [a_begin, a_end):
/// dst[(b·A + a)·P + p] = src[(a·B + b)·P + p]. `bias` (may be NULL) adds bias[a] to every element
/// written for a.
void remat_swap_outer_f32(const float *src, float *dst, long A, long B, long P, const float *bias,
                          long a_begin, long a_end);

/// y[n, c, p] += bias[c] for planes (n·C + c) in [plane_begin, plane_end) of [N, C, P].
void remat_add_channel_bias_f32(float *y, const float *bias, long C, long P, long plane_begin, long plane_end);

/// out[c] = Σ_{n, p} x[n, c, p] (accumulated in double) for channels [c_begin, c_end) of [N, C, P].
void remat_channel_sum_f32(const float *x, long N, long C, long P, float *out, long c_begin, long c_end);

// MARK: Batch norm (x viewed as [N, C, P], statistics per channel over the N·P elements)

/// Per-channel mean and biased variance (two passes, double accumulation) for channels [c_begin, c_end).
void remat_batch_norm_stats_f32(const float *x, long N, long C, long P, float *mean, float *var,
                                long c_begin, long c_end);

/// y = (x − mean[c])·rstd[c]·w[c] + b[c] (w, b may be NULL: 1 and 0), channels [c_begin, c_end).
void remat_batch_norm_apply_f32(const float *x, long N, long C, long P, const float *mean, const float *rstd,
                                const float *w, const float *b, float *y, long c_begin, long c_end);

/// Batch-norm backward for channels [c_begin, c_end). With x̂ = (x − mean)·rstd, M = N·P,
/// Σdy and Σdy·x̂ accumulated in double: dw[c] = Σdy·x̂ and db[c] = Σdy (each skipped when NULL);
/// dx (skipped when NULL) = w·rstd·(dy − Σdy/M − x̂·Σdy·x̂/M) when `training` (batch statistics),
/// dx = w·rstd·dy otherwise (running statistics are constants).
void remat_batch_norm_backward_f32(const float *x, const float *dy, long N, long C, long P,
                                   const float *mean, const float *rstd, const float *w, int training,
                                   float *dx, float *dw, float *db, long c_begin, long c_end);

// MARK: Pooling

/// Max pooling over planes [plane_begin, plane_end) of [N·C, H, W] → [N·C, OH, OW] (the geometry's
/// channel count is ignored; padding is −inf). idx gets the argmax as ih·W + iw within the plane
/// (the first maximum in row-major window order; a NaN wins and propagates, as in PyTorch).
void remat_max_pool2d_f32(const float *x, const remat_conv_geometry *g, float *y, int32_t *idx,
                          long plane_begin, long plane_end);

/// Max-pool backward: dx (overwritten) [plane, H·W] gets Σ of dy over the outputs whose argmax it is.
void remat_max_pool2d_backward_f32(const float *dy, const int32_t *idx, long in_plane, long out_plane,
                                   float *dx, long plane_begin, long plane_end);

/// Mean of each plane: y[r] = Σ_p x[r·P + p] / P for planes [plane_begin, plane_end).
void remat_plane_mean_f32(const float *x, long P, float *y, long plane_begin, long plane_end);

/// dx[r·P + p] = dy[r] / P for planes [plane_begin, plane_end).
void remat_plane_mean_backward_f32(const float *dy, long P, float *dx, long plane_begin, long plane_end);

#ifdef __cplusplus
}
#endif
#endif
