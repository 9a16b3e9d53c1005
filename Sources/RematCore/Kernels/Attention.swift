import CRematKernels

/// Causal masking of attention scores.
///
/// For `scores` of shape `[..., T, S]` with `S ≥ T` (the last `T` of `S` key positions are the
/// queries' own positions, as with a key/value cache), query `i` may see key `j` iff
/// `j ≤ i + (S − T)`: `out[..., i, j] = scale · scores[..., i, j]` there and `−∞` elsewhere (the
/// attention scale is fused here, saving a pass over the `T×S` tensor). The output is a new
/// contiguous tensor. Every query sees at least key 0, so a following softmax never meets an
/// all-`−∞` row.
///
/// Backward: `dscores = scale · dout` at visible positions, `0` at masked ones. Saves: nothing (0 bytes;
/// the mask is a function of `(i, j, T, S)`).
///
/// - Precondition: float32 of rank ≥ 2 with `S ≥ T`.
public func causalMask(_ scores: Tensor, scale: Float = 1) -> Tensor {
    precondition(scores.rank >= 2, "causalMask: scores must be [..., T, S], got shape \(scores.shape)")
    let t = scores.shape[scores.rank - 2], s = scores.shape[scores.rank - 1]
    precondition(s >= t, "causalMask: needs S >= T for scores [..., T, S], got shape \(scores.shape)")
    if let replayed = Autograd.replayed("causal_mask", inputs: [scores]) { return replayed }
    let out = causalMaskKernel(scores.contiguousInput(), scale: scale, fill: -.infinity, label: "causal_mask")
    Autograd.record("causal_mask", inputs: [scores], output: out, saving: []) { _, g in
        [causalMaskKernel(g.contiguousInput(), scale: scale, fill: 0, label: "causal_mask_backward")]
    }
    return out
}

/// Copies `x` ([..., T, S], contiguous) with positions `j > i + (S − T)` set to `fill` (no autograd).
func causalMaskKernel(_ x: Tensor, scale: Float, fill: Float, label: String) -> Tensor {
    let out = Tensor(uninitializedShape: x.shape, label: label)
    let t = x.shape[x.rank - 2], s = x.shape[x.rank - 1]
    guard out.count > 0 else { return out }
    let rows = out.count / s
    let px = x.floatPointer, po = out.floatPointer
    parallelChunks(rows, grain: Swift.max(1, elementwiseGrain / s)) { lo, hi in
        remat_causal_mask_f32(px, po, lo, hi, t, s, scale, fill)
    }
    return out
}

/// Causal softmax of attention scores: `softmax(causalMask(scores, scale: scale))` in one pass,
/// without the masked score tensor (masked positions are exactly 0, visible ones the softmax of
/// the scaled scores over the keys the query sees). Layout and visibility as in ``causalMask(_:scale:)``.
///
/// Saves: its output (`4·numel` bytes). Backward: `dscores = scale · P ⊙ (dP − Σ dP⊙P)` (0 at
/// masked positions).
///
/// - Precondition: float32 of rank ≥ 2 with `S ≥ T`.
public func causalSoftmax(_ scores: Tensor, scale: Float = 1) -> Tensor {
    precondition(scores.dtype == .float32, "causalSoftmax: scores must be float32, got \(scores.dtype) (shape \(scores.shape))")
    precondition(scores.rank >= 2, "causalSoftmax: scores must be [..., T, S], got shape \(scores.shape)")
    let t = scores.shape[scores.rank - 2], s = scores.shape[scores.rank - 1]
    precondition(s >= t, "causalSoftmax: needs S >= T for scores [..., T, S], got shape \(scores.shape)")
    if let replayed = Autograd.replayed("causal_softmax", inputs: [scores]) { return replayed }
    let x = scores.contiguousInput()
    let out = Tensor(uninitializedShape: scores.shape, label: "causal_softmax")
    let rows = s == 0 ? 0 : out.count / s
    if rows > 0 {
        let px = x.floatPointer, po = out.floatPointer
        parallelChunks(rows, grain: Swift.max(1, elementwiseGrain / s)) { lo, hi in
            remat_causal_softmax_f32(px, po, t, s, scale, lo, hi)
        }
    }
    let saving: [(role: String, tensor: Tensor)] = Autograd.needsGraph(scores) ? [("output", out)] : []
    Autograd.record("causal_softmax", inputs: [scores], output: out, saving: saving) { ctx, g in
        let y = ctx.saved[0].contiguousInput(), dy = g.contiguousInput()
        let dx = Tensor(uninitializedShape: y.shape, label: "causal_softmax_backward")
        if rows > 0 {
            let py = y.floatPointer, pg = dy.floatPointer, pd = dx.floatPointer
            parallelChunks(rows, grain: Swift.max(1, elementwiseGrain / s)) { lo, hi in
                remat_causal_softmax_backward_f32(py, pg, pd, t, s, scale, lo, hi)
            }
        }
        return [dx]
    }
    return out
}

/// Causal multi-head self-attention with materialised probabilities, composed from engine ops:
/// `P = causalSoftmax(matmul(q, kᵀ), scale: 1/√Dh)`, `out = matmul(P, v)`.
///
/// Shapes: `q` is `[B, H, T, Dh]`, `k` and `v` are `[B, H, S, Dh]` with `S ≥ T` (normally `S = T`;
/// query `i` sees keys `j ≤ i + (S − T)`). The output is `[B, H, T, Dh]`, contiguous. Inputs may be
/// strided views (e.g. heads split from a fused QKV projection by reshape/permute/narrow).
///
/// What each step saves for backward (bytes with float32, n = B·H):
/// 1. `matmul(q, kᵀ)`: saves `q` (`4·n·T·Dh`) and `kᵀ` (a view of `k`'s storage, `4·n·S·Dh`).
/// 2. `causalSoftmax` (scale, mask and softmax in one pass): its output `P` (`4·n·T·S`).
/// 3. `matmul(P, v)`: `P` (as operand `a`) and `v` (`4·n·S·Dh`).
///
/// `P` is saved twice (by the softmax as its output and by the second matmul as operand `a`) but it is
/// the same storage, so the ledger counts it once: `4·B·H·T·S` bytes (`4·B·H·T²` for `S = T`) —
/// the dominant activation for `T ≫ Dh`. The raw score tensor is a temporary freed after the
/// forward. `q`, `k`, `v` count only if they are not already held for
/// another reason; when they are views of one QKV tensor, its storage counts once.
/// Total saved: `4·n·(T·Dh + 2·S·Dh + T·S)` bytes for distinct q/k/v storages.
///
/// Numerics: scores are float32 GEMM outputs scaled after the product; masked probabilities are
/// exact zeros (every row sees key 0).
public func causalSelfAttention(q: Tensor, k: Tensor, v: Tensor) -> Tensor {
    precondition(q.rank == 4 && k.rank == 4 && v.rank == 4,
                 "causalSelfAttention: q, k, v must be [B, H, T, Dh], got \(q.shape), \(k.shape), \(v.shape)")
    precondition(k.shape == v.shape && q.shape[0] == k.shape[0] && q.shape[1] == k.shape[1]
                 && q.shape[3] == k.shape[3] && k.shape[2] >= q.shape[2],
                 "causalSelfAttention: shapes q \(q.shape), k \(k.shape), v \(v.shape) do not match (need k == v = [B, H, S, Dh], S >= T)")
    let dh = q.shape[3]
    let scale = 1 / Float(Double(dh).squareRoot())
    let p = causalSoftmax(matmul(q, k.transposed()), scale: scale)
    return matmul(p, v)
}
