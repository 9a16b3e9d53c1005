#ifndef REMAT_FLASH_H
#define REMAT_FLASH_H

#include <stdint.h>

/// The elementwise parts of the fused attention (FlashAttention-2's loop; the products are GEMM
/// calls made by the caller). A block is `rows` query rows starting at query `r0` against `cols`
/// keys starting at key `c0`, row-major with leading dimension `ld`. Key `c` is visible from
/// query `r` when `!causal` or `c <= r + shift` (shift = S − T: the last query sees every key).
/// Scores are `x = scale · (q·kᵀ) + bias`: `bias` (NULL: none) points at the additive mask of the
/// block's first row and key, rows `ldbias` apart (0: one row broadcast over the queries); a
/// `−inf` bias hides a key. A row whose scores are all hidden has no probabilities: its output is
/// 0 and its log-sum-exp `−inf`.

/// Dropout on the probabilities, drawn from the Philox stream (remat_philox.h) as
/// `remat_dropout_f32` draws it for the whole `[B, H, T, S]` probability tensor: element
/// `(r0 + i, c0 + j)` of the block is global element `base + i·ld + j` of the stream at `block`,
/// kept iff its uniform `u >= p`, and then multiplied by `scale` (`1/(1 − p)`).
typedef struct {
    uint64_t seed, block;
    float p, scale;
    long base, ld;
} remat_flash_dropout;

/// Online-softmax step. `s` holds the raw block `q·kᵀ`; on return it holds
/// `P = exp(x − m_new)` (0 where hidden), with dropout applied when `drop` is not NULL (after the
/// row sums: `l` counts every probability). `m` (running max of `x`, −inf at the start) and `l`
/// (running Σ exp(x − m)) are updated per row, and the rows of `o` (the unnormalised output,
/// `rows × d`, leading dimension `ldo`) are rescaled by `exp(m_old − m_new)` so that the caller's
/// `o += P·v` completes the step. A row with no visible key in the block is left as it was
/// (its P row is 0).
void remat_flash_forward_step(float *s, long ld, long rows, long cols, long r0, long c0, long shift, int causal,
                              float scale, const float *bias, long ldbias, const remat_flash_dropout *drop,
                              float *m, float *l, float *o, long ldo, long d);

/// End of a query block: `o /= l` per row and `lse = m + log(l)` (the row's log-sum-exp of `x`);
/// a row that saw no key (`l = 0`) gets `o = 0` and `lse = −inf`.
void remat_flash_forward_finish(float *o, long ldo, long rows, long d, const float *m, const float *l, float *lse);

/// Backward step. `s` holds the raw block `q·kᵀ`, `dp` the block `dO·vᵀ` (the gradient of the
/// dropped-out probabilities `Z`); on return `s` holds `Z` (`P = exp(x − lse)`, 0 where hidden,
/// with the forward's dropout replayed when `drop` is not NULL) and `dp` holds
/// `dS = P ⊙ (dP − D)`, the gradient of the scores `x`, with `dP = dropout(dZ)` and `D` the rows'
/// `Σ dO ⊙ O`. `lse` and `dvec` are indexed by the block's rows.
void remat_flash_backward_step(float *s, float *dp, long ld, long rows, long cols, long r0, long c0, long shift,
                               int causal, float scale, const float *bias, long ldbias,
                               const remat_flash_dropout *drop, const float *lse, const float *dvec);

/// `out[i] = Σ_c a[i·lda + c] · b[i·ldb + c]` for rows [0, rows) (D = rowsum(dO ⊙ O)).
void remat_flash_row_dots(const float *a, long lda, const float *b, long ldb, long rows, long d, float *out);

#endif
