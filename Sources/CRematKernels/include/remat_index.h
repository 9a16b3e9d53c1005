#ifndef REMAT_INDEX_H
#define REMAT_INDEX_H
// Indexing, dropout and masking kernels: embedding gather / scatter-add, Philox-fused dropout,
// causal masking. Plain loops that clang vectorises; no allocation; no libm.
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// The first position p in [0, n) with idx[p] < 0 or idx[p] >= rows, or -1 when every index is in range.
long remat_index_first_invalid_i32(const int32_t *idx, long n, long rows);
long remat_index_first_invalid_i64(const int64_t *idx, long n, long rows);

/// Embedding gather: out[p, :] = weight[idx[p], :] for p in [begin, end). weight is contiguous
/// [rows, dim], out contiguous [n, dim]. Indices must already be checked.
void remat_embedding_gather_i32(const int32_t *idx, const float *weight, long dim, float *out,
                                long begin, long end);
void remat_embedding_gather_i64(const int64_t *idx, const float *weight, long dim, float *out,
                                long begin, long end);

/// Embedding backward: dweight[idx[p], c] += grad[p, c] for every p in [0, n) (in order) and the
/// columns c in [col_begin, col_end). dweight [rows, dim] and grad [n, dim] contiguous. Callers that
/// split the columns between threads write disjoint memory; the sum order per element is fixed
/// (p ascending), so the result does not depend on the split.
void remat_embedding_scatter_add_i32(const int32_t *idx, long n, const float *grad, long dim,
                                     float *dweight, long col_begin, long col_end);
void remat_embedding_scatter_add_i64(const int64_t *idx, long n, const float *grad, long dim,
                                     float *dweight, long col_begin, long col_end);

/// Inverted dropout fused with the Philox draw, for elements i in [begin, end) of a contiguous array:
///   u_i = lane (i % 4) of Philox block (block + i / 4) as a uniform float in [0, 1) exactly as
///         remat_philox_fill_uniform gives it;
///   out[i] = u_i >= p ? x[i] * scale : 0.
/// The same call on the output gradient gives the backward (same seed / block -> the same mask).
/// `begin` need not be a multiple of 4. Uniforms are drawn in stack tiles, never stored in full.
void remat_dropout_f32(const float *x, float *out, long begin, long end, uint64_t seed,
                       uint64_t block, float p, float scale);

/// Causal mask over rows [row_begin, row_end) of a contiguous [rows, s] array whose rows cycle
/// through query positions 0..<t (row r is query i = r % t): out[r, j] = j <= i + (s - t) ? x[r, j]·scale : fill.
void remat_causal_mask_f32(const float *x, float *out, long row_begin, long row_end, long t, long s,
                           float scale, float fill);

#ifdef __cplusplus
}
#endif

#endif // REMAT_INDEX_H
