#ifndef REMAT_NN_H
#define REMAT_NN_H
#include <stdint.h>

/// Normalisation / loss kernels: softmax, log-softmax, layer norm, cross-entropy.
/// All operate on contiguous float32 data; the caller splits the work into ranges and runs the
/// ranges in parallel (the ranges write disjoint memory).

/// Width of the inner-axis tiles the softmax kernels use when the reduced axis is not the last
/// one (`inner > 1`): work items are (outer index, tile of up to this many inner positions).
enum { REMAT_NN_INNER_TILE = 64 };

/// Softmax (log_softmax != 0: log-softmax) of x viewed as [outer, n, inner], reduced over n.
/// Work items [item_begin, item_end) enumerate (o, t) as o * tiles + t with
/// tiles = ceil(inner / REMAT_NN_INNER_TILE) (tiles = 1 when inner == 1).
/// Numerically stable (the max along n is subtracted); a slice whose max is -inf (all -inf)
/// gives NaN; -inf entries give exactly 0 (softmax) / -inf (log-softmax).
void remat_softmax_f32(const float *x, float *y, long n, long inner, int log_softmax,
                       long item_begin, long item_end);

/// Softmax backward from the saved output y and dy, same layout and work items as the forward:
/// softmax:     dx = y ⊙ (dy − Σₙ dy⊙y)
/// log-softmax: dx = dy − exp(y) · Σₙ dy
void remat_softmax_backward_f32(const float *y, const float *dy, float *dx, long n, long inner,
                                int log_softmax, long item_begin, long item_end);

/// Causal softmax over rows [row_begin, row_end) of x [rows, s]; row r is query i = r % t of t,
/// which sees keys j < visible = min(s, i + (s − t) + 1): y[j] = exp(scale·x[j] − m) / Σ over the
/// visible keys (m their max), and y[j] = 0 for the others (the same values as softmax after a
/// −∞ causal mask, without the masked tensor).
void remat_causal_softmax_f32(const float *x, float *y, long t, long s, float scale,
                              long row_begin, long row_end);

/// The same in place on rows [row_begin, row_end) of y [rows, s] (the scores become probabilities;
/// entries at masked positions may hold anything before and are 0 after).
void remat_causal_softmax_inplace_f32(float *y, long t, long s, float scale, long row_begin, long row_end);

/// The causal softmax backward from the saved output y: dx = scale · y ⊙ (dy − Σ dy⊙y) at visible keys, 0 elsewhere.
void remat_causal_softmax_backward_f32(const float *y, const float *dy, float *dx, long t, long s, float scale,
                                       long row_begin, long row_end);

/// Layer norm forward over rows [row_begin, row_end) of x [rows, n]:
/// mean = Σx/n, var = Σ(x − mean)²/n (two passes), rstd = 1/√(var + eps),
/// y = (x − mean)·rstd·w + b (w, b may be NULL: 1 and 0). Writes mean[r], rstd[r].
void remat_layer_norm_f32(const float *x, const float *w, const float *b, float *y,
                          float *mean, float *rstd, long n, float eps, long row_begin, long row_end);

/// Layer norm backward over rows [row_begin, row_end). With x̂ = (x − mean)·rstd, g = dy·w:
/// dx = rstd·(g − mean(g) − x̂·mean(g⊙x̂)) (skipped when dx is NULL);
/// dw_acc[j] += Σ_rows dy·x̂ and db_acc[j] += Σ_rows dy (each skipped when NULL).
/// dw_acc / db_acc are the caller's per-range partial buffers (n floats each).
void remat_layer_norm_backward_f32(const float *x, const float *w, const float *mean, const float *rstd,
                                   const float *dy, float *dx, float *dw_acc, float *db_acc,
                                   long n, long row_begin, long row_end);

/// Cross-entropy forward over rows [row_begin, row_end) of logits x [rows, n_classes]:
/// with m = max x[r] and ls = log Σ exp(x[r] − m), writes stats[2r] = m, stats[2r+1] = ls and
/// loss[r] = (m − x[r, t_r]) + ls (that order keeps precision for large logits). Rows whose target
/// is `ignore_index` get loss 0 and stats 0. Targets come from t32 (int32) or, when t32 is NULL,
/// t64 (int64); they must already be validated to lie in [0, n_classes) or equal ignore_index.
void remat_cross_entropy_f32(const float *x, const int32_t *t32, const int64_t *t64, long ignore_index,
                             float *loss, float *stats, long n_classes, long row_begin, long row_end);

/// Cross-entropy backward: dx[r] = scale·(exp((x[r] − m) − ls) − onehot(t_r)), zeros on ignored rows.
void remat_cross_entropy_backward_f32(const float *x, const int32_t *t32, const int64_t *t64,
                                      long ignore_index, const float *stats, float scale, float *dx,
                                      long n_classes, long row_begin, long row_end);

/// buf[j] += buf[c·n + j] for c in [1, chunks): sums the per-chunk partial rows of buf [chunks, n] into row 0.
void remat_sum_rows_into_first_f32(float *buf, long chunks, long n);

#endif
