#ifndef REMAT_ELEMENTWISE_H
#define REMAT_ELEMENTWISE_H
#include <stdint.h>

/// Binary op codes for remat_binary_f32.
enum {
    REMAT_BIN_ADD = 0, REMAT_BIN_SUB = 1, REMAT_BIN_MUL = 2, REMAT_BIN_DIV = 3,
    REMAT_BIN_MAX = 4, REMAT_BIN_MIN = 5
};

/// out[r, j] = a[...] op b[...] over the rows [row_begin, row_end) of a coalesced layout.
/// `ndim` dims (already coalesced, ndim >= 1), `shape` is the output shape, out contiguous.
/// Strides in elements (0 for broadcast axes). Row r enumerates all dims but the last.
void remat_binary_f32(int op, int ndim, const long *shape,
                      const float *a, const long *astrides,
                      const float *b, const long *bstrides,
                      float *out, long row_begin, long row_end);

/// out[i] = a[i] op s for i in [begin, end).
void remat_binary_scalar_f32(int op, const float *a, float s, float *out, long begin, long end);
/// out[i] = s op a[i] (for SUB and DIV with the scalar on the left).
void remat_scalar_binary_f32(int op, float s, const float *a, float *out, long begin, long end);

/// dst[i] += alpha * src[i] for i in [begin, end).
void remat_axpy_f32(float alpha, const float *src, float *dst, long begin, long end);

/// Strided gather into contiguous dst: rows [row_begin, row_end) of a coalesced layout, element size
/// 1, 2, 4 or 8 bytes. Strides in elements.
void remat_copy_strided(int ndim, const long *shape, const void *src, const long *sstrides,
                        void *dst, int elem_size, long row_begin, long row_end);

/// Strided scatter: dst (strided) = src (strided), rows [row_begin, row_end) of a coalesced layout.
void remat_copy_strided2(int ndim, const long *shape, const void *src, const long *sstrides,
                         void *dst, const long *dstrides, int elem_size, long row_begin, long row_end);

/// Sum over the middle axis of a contiguous [outer, n, inner] array: out[o, i] = sum_k x[o, k, i],
/// for o in [outer_begin, outer_end). Accumulates in float (pairwise per 8-lane block for inner == 1).
void remat_sum_axis_f32(const float *x, float *out, long outer_begin, long outer_end, long n, long inner);
/// Max over the middle axis of [outer, n, inner], with the index of the first maximum
/// (NaN propagates: a NaN is the maximum, as in PyTorch).
void remat_max_axis_f32(const float *x, float *out, int32_t *argmax, long outer_begin, long outer_end, long n, long inner);

#endif
