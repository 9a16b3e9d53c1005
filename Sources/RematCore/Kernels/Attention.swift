import CRematBLAS
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
    return Autograd.op(.causalMask, inputs: [scores]) {
        OpResult(causalMaskKernel(scores.contiguousInput(), scale: scale, fill: -.infinity, label: "causal_mask")) { _, g in
            [causalMaskKernel(g.contiguousInput(), scale: scale, fill: 0, label: "causal_mask_backward")]
        }
    }
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
    return Autograd.op(.causalSoftmax, inputs: [scores]) {
        let x = scores.contiguousInput()
        let out = Tensor(uninitializedShape: scores.shape, label: "causal_softmax")
        let rows = s == 0 ? 0 : out.count / s
        if rows > 0 {
            let px = x.floatPointer, po = out.floatPointer
            parallelChunks(rows, grain: Swift.max(1, elementwiseGrain / s)) { lo, hi in
                remat_causal_softmax_f32(px, po, t, s, scale, lo, hi)
            }
        }
        return OpResult(out, saving: [("output", out)]) { ctx, g in
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
    }
}

/// Causal attention probabilities `P = causalSoftmax(q·kᵀ, scale: scale)` in one op that computes
/// only the score blocks some query can see: per head, the rows in blocks of
/// ``attentionRowBlock`` queries, each block's GEMM over the keys its last query sees (for `S = T`
/// and 4 blocks, 10/16 of the full `T×S` product), written straight into the probability tensor
/// and softmaxed there (no score tensor, no mask pass). The backward does the same for `dq = dS·k`
/// and `dk = dSᵀ·q`.
///
/// Shapes: `q` `[B, H, T, Dh]`, `k` `[B, H, S, Dh]` with `S ≥ T` (query `i` sees keys
/// `j ≤ i + (S − T)`); strided views are used in place when each row is contiguous. Output
/// `[B, H, T, S]`, contiguous, exactly 0 at masked positions.
/// Saves: `q`, `k` (often views of one QKV tensor: no extra bytes) and `P` (`4·B·H·T·S` bytes).
/// Under autocast (``AutocastPrecision``) `q`, `k` (unless their values already are the
/// precision's) and `P` are rounded to the precision; the softmax itself runs in float32; backward
/// rounds the probabilities' gradient and the gradients of `q` and `k`.
public func causalAttentionProbabilities(q: Tensor, k: Tensor, scale: Float) -> Tensor {
    precondition(q.rank == 4 && k.rank == 4 && q.dtype == .float32 && k.dtype == .float32,
                 "causalAttentionProbabilities: q and k must be float32 [B, H, T, Dh] and [B, H, S, Dh], got \(q.shape) \(q.dtype), \(k.shape) \(k.dtype)")
    precondition(q.shape[0] == k.shape[0] && q.shape[1] == k.shape[1] && q.shape[3] == k.shape[3] && k.shape[2] >= q.shape[2],
                 "causalAttentionProbabilities: shapes q \(q.shape), k \(k.shape) do not match (need [B, H, T, Dh] and [B, H, S, Dh], S >= T)")
    let precision = Autocast.current
    return Autograd.op(.attentionProbabilities, inputs: [q, k]) {
        let geometry = CausalGeometry(q: q, k: k)
        let q = Autocast.operand(q, precision, label: "attention_q_autocast")
        let k = Autocast.operand(k, precision, label: "attention_k_autocast")
        let out = causalProbabilitiesKernel(HeadRows(q), HeadRows(k), geometry, scale: scale)
        if let precision { Autocast.roundInPlace(out, precision) }
        return OpResult(out, saving: [("q", q), ("k", k), ("output", out)]) { ctx, g in
            let dp = Autocast.operand(g, precision, label: "attention_grad_autocast").contiguousInput()
            let (dq, dk) = causalProbabilitiesBackward(q: HeadRows(ctx.saved[0]), k: HeadRows(ctx.saved[1]),
                                                       p: ctx.saved[2].contiguousInput(), dp: dp, geometry,
                                                       scale: scale, needQ: ctx.needsInputGrad[0], needK: ctx.needsInputGrad[1])
            return Autocast.gradients([dq, dk], precision)
        }
    }
}

/// Queries per row block of ``causalAttentionProbabilities(q:k:scale:)``.
public let attentionRowBlock = 64

/// Sizes of a causal attention product.
struct CausalGeometry {
    let batch: Int, heads: Int, t: Int, s: Int, d: Int
    init(q: Tensor, k: Tensor) {
        batch = q.shape[0]; heads = q.shape[1]; t = q.shape[2]; s = k.shape[2]; d = q.shape[3]
    }
    var slices: Int { batch * heads }
    /// Keys seen by query rows `[r0, r1)`: `0..<visible(r1)`.
    func visible(through r1: Int) -> Int { Swift.min(s, r1 + (s - t)) }
}

/// The `[rows, Dh]` matrices of a `[B, H, rows, Dh]` tensor, each with unit stride along `Dh`
/// (a copy when the tensor's rows are not laid out so).
struct HeadRows {
    let tensor: Tensor
    let rowStride: Int
    init(_ t: Tensor) {
        let rows = t.shape[2], d = t.shape[3]
        let usable = (t.strides[3] == 1 || d <= 1) && (rows <= 1 || t.strides[2] >= d)
        tensor = usable ? t : t.contiguousCopy(label: "attention_operand")
        rowStride = rows <= 1 ? Swift.max(d, 1) : tensor.strides[2]
    }
    func matrix(_ slice: Int) -> UnsafeMutablePointer<Float> {
        let heads = tensor.shape[1]
        return tensor.floatPointer + (slice / heads) * tensor.strides[0] + (slice % heads) * tensor.strides[1]
    }
}

/// Splits the heads `0..<slices` into `parts` ranges and runs `body(part, heads, gemmThreads)` on
/// each: in parallel with single-threaded GEMMs when there are at least as many heads as
/// threads, else one range with threaded GEMMs. `parts` ≤ the engine's threads, so per-part
/// scratch buffers can be made before the call.
struct HeadPartition {
    let slices: Int
    let parts: Int
    let gemmThreads: Int32

    init(slices: Int) {
        self.slices = slices
        let threads = Runtime.threads
        let parallel = slices >= threads && threads > 1
        parts = parallel ? threads : 1
        gemmThreads = parallel ? 1 : Int32(threads)
    }

    func run(_ body: (Int, Range<Int>, Int32) -> Void) {
        guard slices > 0 else { return }
        parallelChunks(parts, grain: 1) { lo, hi in
            for part in lo..<hi { body(part, (slices * part / parts)..<(slices * (part + 1) / parts), gemmThreads) }
        }
    }
}

private func causalProbabilitiesKernel(_ q: HeadRows, _ k: HeadRows, _ g: CausalGeometry, scale: Float) -> Tensor {
    let out = Tensor(uninitializedShape: [g.batch, g.heads, g.t, g.s], label: "attention_probs")
    guard out.count > 0 else { return out }
    let po = out.floatPointer
    if g.d == 0 { po.initialize(repeating: 0, count: out.count) }
    withExtendedLifetime((q, k)) {
        HeadPartition(slices: g.slices).run { _, heads, threads in
            for i in heads {
                let pq = q.matrix(i), pk = k.matrix(i), pp = po + i * g.t * g.s
                if g.d > 0 {
                    for r0 in stride(from: 0, to: g.t, by: attentionRowBlock) {
                        let r1 = Swift.min(g.t, r0 + attentionRowBlock)
                        // P[r0..<r1, 0..<c] = q[r0..<r1] · k[0..<c]ᵀ
                        remat_sgemm_raw(threads, 0, 1, Int32(r1 - r0), Int32(g.visible(through: r1)), Int32(g.d), 1,
                                        pq + r0 * q.rowStride, Int32(q.rowStride), pk, Int32(k.rowStride), 0,
                                        pp + r0 * g.s, Int32(g.s))
                    }
                }
                remat_causal_softmax_inplace_f32(pp, g.t, g.s, scale, 0, g.t)
            }
        }
    }
    return out
}

private func causalProbabilitiesBackward(q: HeadRows, k: HeadRows, p: Tensor, dp: Tensor, _ g: CausalGeometry, scale: Float,
                                         needQ: Bool, needK: Bool) -> (Tensor?, Tensor?) {
    let dq = needQ ? Tensor(uninitializedShape: [g.batch, g.heads, g.t, g.d], label: "attention_probs_backward") : nil
    let dk = needK ? Tensor(uninitializedShape: [g.batch, g.heads, g.s, g.d], label: "attention_probs_backward") : nil
    guard needQ || needK, p.count > 0, g.d > 0 else {
        dq?.floatPointer.initialize(repeating: 0, count: dq!.count)
        dk?.floatPointer.initialize(repeating: 0, count: dk!.count)
        return (dq, dk)
    }
    // dS = scale · P ⊙ (dP − Σ dP⊙P), 0 at masked positions (gradient of the raw scores), one
    // head at a time in a per-thread scratch buffer (no [B, H, T, S] tensor beside dP).
    let partition = HeadPartition(slices: g.slices)
    let scratch = Tensor(uninitializedShape: [partition.parts, g.t, g.s], label: "attention_probs_backward")
    let pscratch = scratch.floatPointer, pp = p.floatPointer, pg = dp.floatPointer
    withExtendedLifetime((q, k, p, dp, scratch)) {
        partition.run { part, heads, threads in
            let dsi = pscratch + part * g.t * g.s
            for i in heads {
                remat_causal_softmax_backward_f32(pp + i * g.t * g.s, pg + i * g.t * g.s, dsi, g.t, g.s, scale, 0, g.t)
                if let dq {
                    let pdq = dq.floatPointer + i * g.t * g.d, pk = k.matrix(i)
                    for r0 in stride(from: 0, to: g.t, by: attentionRowBlock) {
                        let r1 = Swift.min(g.t, r0 + attentionRowBlock)
                        // dq[r0..<r1] = dS[r0..<r1, 0..<c] · k[0..<c]
                        remat_sgemm_raw(threads, 0, 0, Int32(r1 - r0), Int32(g.d), Int32(g.visible(through: r1)), 1,
                                        dsi + r0 * g.s, Int32(g.s), pk, Int32(k.rowStride), 0, pdq + r0 * g.d, Int32(g.d))
                    }
                }
                if let dk {
                    let pdk = dk.floatPointer + i * g.s * g.d, pq = q.matrix(i)
                    for c0 in stride(from: 0, to: g.s, by: attentionRowBlock) {
                        let c1 = Swift.min(g.s, c0 + attentionRowBlock)
                        // Keys c0..<c1 are seen by queries rs..<T (i + S − T ≥ c0; rs < T as c0 < S): dk = dSᵀ · q over those rows.
                        let rs = Swift.max(0, c0 - (g.s - g.t))
                        remat_sgemm_raw(threads, 1, 0, Int32(c1 - c0), Int32(g.d), Int32(g.t - rs), 1,
                                        dsi + rs * g.s + c0, Int32(g.s), pq + rs * q.rowStride, Int32(q.rowStride), 0,
                                        pdk + c0 * g.d, Int32(g.d))
                    }
                }
            }
        }
    }
    return (dq, dk)
}

/// Causal multi-head self-attention with materialised probabilities, composed from engine ops:
/// `P = causalAttentionProbabilities(q, k, scale: 1/√Dh)` (`softmax(mask(q·kᵀ/√Dh))`, only the
/// visible score blocks computed), `out = matmul(P, v)`.
///
/// Shapes: `q` is `[B, H, T, Dh]`, `k` and `v` are `[B, H, S, Dh]` with `S ≥ T` (normally `S = T`;
/// query `i` sees keys `j ≤ i + (S − T)`). The output is `[B, H, T, Dh]`, contiguous. Inputs may be
/// strided views (e.g. heads split from a fused QKV projection by reshape/permute/narrow).
///
/// What each step saves for backward (bytes with float32, n = B·H):
/// 1. `causalAttentionProbabilities`: `q` (`4·n·T·Dh`), `k` (`4·n·S·Dh`) and its output `P` (`4·n·T·S`).
/// 2. `matmul(P, v)`: `P` (as operand `a`) and `v` (`4·n·S·Dh`).
///
/// `P` is saved twice (by the probabilities op as its output and by the second matmul as operand `a`) but it is
/// the same storage, so the ledger counts it once: `4·B·H·T·S` bytes (`4·B·H·T²` for `S = T`) —
/// the dominant activation for `T ≫ Dh`. There is no separate score tensor. `q`, `k`, `v` count only if they are not already held for
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
    let p = causalAttentionProbabilities(q: q, k: k, scale: scale)
    return matmul(p, v)
}
