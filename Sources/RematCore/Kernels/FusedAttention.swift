import CRematBLAS
import CRematKernels

/// Fused scaled dot-product attention, `dropout(softmax(scale · q·kᵀ + mask [causal])) · v` with
/// `scale = 1/√Dh`, computed as FlashAttention-2 does: for each block of query rows, an online
/// softmax over blocks of keys (running row max and sum, the output block rescaled as the max
/// grows), so the `T×S` probabilities never exist whole. Saves only `q`, `k`, `v` (no extra
/// bytes when they are views of a kept QKV projection), the output, each row's log-sum-exp
/// (`4·B·H·T` bytes) and the mask if there is one; backward recomputes the probabilities block by
/// block from them (`P = exp(scale·q·kᵀ + mask − lse)`), with `D = Σ dO⊙O` per row.
///
/// Shapes: `q` `[B, H, T, Dh]`, `k` and `v` `[B, H, S, Dh]`; causal needs `S ≥ T` and query `i`
/// sees keys `j ≤ i + (S − T)`, as ``causalSelfAttention(q:k:v:)``. Inputs may be strided views
/// whose rows have unit stride. Output `[B, H, T, Dh]`, contiguous.
///
/// `mask`: an additive float32 bias broadcastable to `[B, H, T, S]` (right-aligned, each dimension
/// but the last 1 or the full size: `[B, 1, 1, S]` for key padding, `[T, S]` for a shared bias), added to the
/// scaled scores; `−inf` hides a key (may be combined with `causal`). A query row with every key
/// hidden has output 0 and gradient 0 (the explicit softmax would give NaN). If the mask needs a
/// gradient (a learned bias), backward returns it: `dS` summed over its broadcast dimensions (this
/// materialises `4·B·H·T·S` bytes of gradient for the duration of the backward).
///
/// `dropout`: probability `p` of zeroing a probability (kept ones scaled by `fl(1/(1 − p))`),
/// applied after the softmax as ``dropout(_:probability:generator:training:)`` applies it to the
/// whole `[B, H, T, S]` probability tensor: same stream positions (element `((b·H + h)·T + i)·S + j`),
/// same rule, so the mask equals the explicit path's for the same generator state. The mask is
/// never stored: backward redraws it from the generator state the call captured (Philox is
/// counter-based). Consumes `⌈B·H·T·S / 4⌉` blocks of `generator` when `p > 0` (also for causal
/// or hidden keys), nothing when `p = 0`; a checkpoint region replays the state (the generator
/// observer), so a recompute is bitwise the original.
///
/// Saves: `q`, `k`, `v`, `output` (`4·B·H·T·Dh` bytes), `lse` (`4·B·H·T` bytes) and `mask`.
/// Backward: `dV = Zᵀ·dO` (`Z` the dropped-out `P`), `dZ = dO·vᵀ`, `dS = P ⊙ (dropout(dZ) − D)`,
/// `dQ = scale·dS·k`, `dK = scale·dSᵀ·q`, key block by key block (dK, dV finished per block; dQ
/// accumulated).
///
/// Under autocast (``AutocastPrecision``, as PyTorch's CPU autocast runs
/// `scaled_dot_product_attention` in bf16) `q`, `k`, `v` (unless their values already are the
/// precision's: views of an autocast projection) and the output are rounded to the precision; the
/// softmax, its statistics and the block products stay float32 (so does the mask); backward rounds
/// the output gradient and the returned gradients.
///
/// Numerics: float32 GEMMs on 64×256 (forward) and 64×64 (backward) blocks and remat_exp; the
/// values differ from the explicit path's (``causalSelfAttention(q:k:v:)``: one softmax per whole row) by float32 rounding
/// (≲ 1e-6 relative), not bitwise. Threads: forward over (head, query block) pairs, backward over
/// heads; per-thread scratch made once per call (no allocation per block).
///
/// - Precondition: float32 operands of matching shapes, a broadcastable mask, `0 ≤ p < 1`, a
///   generator when `p > 0`.
public func scaledDotProductAttention(q: Tensor, k: Tensor, v: Tensor, causal: Bool, mask: Tensor? = nil,
                                      dropout p: Float = 0, generator: RandomGenerator? = nil) -> Tensor {
    precondition(q.rank == 4 && k.rank == 4 && v.rank == 4 && [q, k, v].allSatisfy { $0.dtype == .float32 },
                 "scaledDotProductAttention: q, k, v must be float32 [B, H, T, Dh], [B, H, S, Dh], [B, H, S, Dh]; got \(q.shape) \(q.dtype), \(k.shape) \(k.dtype), \(v.shape) \(v.dtype)")
    precondition(k.shape == v.shape && q.shape[0] == k.shape[0] && q.shape[1] == k.shape[1] && q.shape[3] == k.shape[3]
                 && (!causal || k.shape[2] >= q.shape[2]),
                 "scaledDotProductAttention: shapes q \(q.shape), k \(k.shape), v \(v.shape) do not match (need k == v = [B, H, S, Dh]\(causal ? ", S >= T when causal" : ""))")
    let full = [q.shape[0], q.shape[1], q.shape[2], k.shape[2]]
    if let mask {
        precondition(mask.dtype == .float32 && (1...4).contains(mask.rank) && mask.shape.last == full[3]
                     && zip(mask.shape.reversed(), full.reversed()).allSatisfy { $0 == 1 || $0 == $1 },
                     "scaledDotProductAttention: mask \(mask.shape) \(mask.dtype) is not a float32 bias broadcastable to [B, H, T, S] = \(full) with last dimension S")
    }
    precondition(p >= 0 && p < 1, "scaledDotProductAttention: dropout probability \(p) is not in [0, 1)")
    precondition(p == 0 || generator != nil, "scaledDotProductAttention: dropout \(p) needs a generator")
    let scale = 1 / Float(Double(q.shape[3]).squareRoot())
    var drop: FlashDropout?
    if p > 0, let generator {
        AutogradContext.current.generatorObserver?(generator)   // a region captures the state to replay
        drop = FlashDropout(state: generator.state, p: p)
        generator.state.offset &+= UInt64((full.reduce(1, *) + 3) / 4)   // the fillUniform rule, as dropout's
    }
    let inputs = mask.map { [q, k, v, $0] } ?? [q, k, v]
    let precision = Autocast.current
    return Autograd.op(.scaledDotProductAttention, inputs: inputs) {
        let geometry = FlashGeometry(q: q, k: k, causal: causal)
        let bias = mask.map { FlashBias($0) }
        let q = Autocast.operand(q, precision, label: "sdpa_q_autocast"), k = Autocast.operand(k, precision, label: "sdpa_k_autocast")
        let v = Autocast.operand(v, precision, label: "sdpa_v_autocast")
        let (out, lse) = flashForward(HeadRows(q), HeadRows(k), HeadRows(v), bias, drop, geometry, scale: scale)
        if let precision { Autocast.roundInPlace(out, precision) }
        var saving: [(String, Tensor)] = [("q", q), ("k", k), ("v", v), ("output", out), ("lse", lse)]
        if let mask { saving.append(("mask", mask)) }
        return OpResult(out, saving: saving) { ctx, g in
            let dOut = Autocast.operand(g, precision, label: "sdpa_grad_autocast").contiguousInput()
            let grads = flashBackward(q: HeadRows(ctx.saved[0]), k: HeadRows(ctx.saved[1]), v: HeadRows(ctx.saved[2]),
                                      out: ctx.saved[3], lse: ctx.saved[4], bias: mask == nil ? nil : FlashBias(ctx.saved[5]),
                                      drop, dOut: dOut, geometry, scale: scale, need: ctx.needsInputGrad)
            return Autocast.gradients(grads, precision)
        }
    }
}

/// The dropout of ``scaledDotProductAttention(q:k:v:causal:mask:dropout:generator:)``: the
/// generator state before the draw and the probability (plain values: nothing is stored).
struct FlashDropout {
    let state: RNGState
    let p: Float
    /// The C description for the block at query `r0`, key `c0` of slice `slice`.
    func block(slice: Int, r0: Int, c0: Int, _ g: FlashGeometry) -> remat_flash_dropout {
        remat_flash_dropout(seed: state.seed, block: state.offset, p: p, scale: 1 / (1 - p),
                            base: (slice * g.t + r0) * g.s + c0, ld: g.s)
    }
}

/// An additive mask broadcast to `[B, H, T, S]` by zero strides (no copy of a broadcast mask).
struct FlashBias {
    let tensor: Tensor
    /// The mask's own shape (its gradient's).
    let shape: [Int]
    let batchStride: Int, headStride: Int, rowStride: Int
    init(_ mask: Tensor) {
        tensor = mask.contiguousInput()
        shape = mask.shape
        let padded = Array(repeating: 1, count: 4 - mask.rank) + mask.shape
        var strides = [0, 0, 0, 0], step = 1
        for axis in stride(from: 3, through: 0, by: -1) {
            strides[axis] = padded[axis] == 1 ? 0 : step
            step *= padded[axis]
        }
        (batchStride, headStride, rowStride) = (strides[0], strides[1], strides[2])
    }
    /// The bias of slice `slice` (batch · H + head), query row `r`, key `c`.
    func pointer(slice: Int, heads: Int, row r: Int, key c: Int) -> UnsafePointer<Float> {
        UnsafePointer(tensor.floatPointer + (slice / heads) * batchStride + (slice % heads) * headStride + r * rowStride + c)
    }
}

/// Query rows per block of ``scaledDotProductAttention(q:k:v:causal:mask:dropout:generator:)``,
/// forward and backward.
public let flashBlockRows = 64
/// Keys per forward block: 64×256 float32 score blocks (64 KiB, in L2 beside the k, v rows they
/// read). Fewer, larger GEMM calls and output rescales than 64-key blocks: 0.8–0.9× the forward
/// time at T = 1024 and 4096, one thread (`remat bench attention`, AVX-512 EPYC).
public let flashForwardBlockKeys = 256
/// Keys per backward block: 64×64 (two score-sized blocks per thread); 64 to 256 measured alike.
public let flashBackwardBlockKeys = 64

struct FlashGeometry {
    let batch: Int, heads: Int, t: Int, s: Int, d: Int
    let causal: Bool
    init(q: Tensor, k: Tensor, causal: Bool) {
        batch = q.shape[0]; heads = q.shape[1]; t = q.shape[2]; s = k.shape[2]; d = q.shape[3]
        self.causal = causal
    }
    var slices: Int { batch * heads }
    /// Query `i` sees keys `j ≤ i + shift` when causal.
    var shift: Int { s - t }
    /// Keys seen by query rows `[r0, r1)`: `0..<keysVisible(through: r1)`.
    func keysVisible(through r1: Int) -> Int { causal ? Swift.max(0, Swift.min(s, r1 + shift)) : s }
    /// The first query row that sees key `c0`.
    func firstQuery(seeing c0: Int) -> Int { causal ? Swift.max(0, c0 - shift) : 0 }
    var queryBlocks: Int { (t + flashBlockRows - 1) / flashBlockRows }
}

private func flashForward(_ q: HeadRows, _ k: HeadRows, _ v: HeadRows, _ bias: FlashBias?, _ drop: FlashDropout?,
                          _ g: FlashGeometry, scale: Float) -> (Tensor, Tensor) {
    let out = Tensor(uninitializedShape: [g.batch, g.heads, g.t, g.d], label: "sdpa")
    let lse = Tensor(uninitializedShape: [g.batch, g.heads, g.t], label: "sdpa_lse")
    let units = g.slices * g.queryBlocks
    guard units > 0 else { return (out, lse) }
    let po = out.floatPointer, pl = lse.floatPointer
    let br = flashBlockRows, bc = flashForwardBlockKeys
    // (head, query block) pairs split into `parts` ranges, one per thread, each with its scratch:
    // a score block and the block's running max and sum.
    let parts = Swift.min(Runtime.threads, units)
    let scratch = Tensor(uninitializedShape: [parts, br * bc + 2 * br], label: "sdpa_scratch")
    let ps = scratch.floatPointer
    withExtendedLifetime((q, k, v, bias, scratch)) {
        parallelChunks(parts, grain: 1) { lo, hi in
            for part in lo..<hi {
                let sb = ps + part * (br * bc + 2 * br), m = sb + br * bc, l = m + br
                for unit in (units * part / parts)..<(units * (part + 1) / parts) {
                    let i = unit / g.queryBlocks, r0 = (unit % g.queryBlocks) * br
                    let rows = Swift.min(br, g.t - r0)
                    let pq = q.matrix(i) + r0 * q.rowStride, pk = k.matrix(i), pv = v.matrix(i)
                    let o = po + (i * g.t + r0) * g.d
                    o.initialize(repeating: 0, count: rows * g.d)
                    m.initialize(repeating: -.infinity, count: rows)
                    l.initialize(repeating: 0, count: rows)
                    let keys = g.keysVisible(through: r0 + rows)
                    if g.d > 0 {
                        for c0 in stride(from: 0, to: keys, by: bc) {
                            let cols = Swift.min(bc, keys - c0)
                            // S = q[r0..] · k[c0..]ᵀ, then P and the running statistics, then O += P · v[c0..].
                            remat_sgemm_raw(1, 0, 1, Int32(rows), Int32(cols), Int32(g.d), 1, pq, Int32(q.rowStride),
                                            pk + c0 * k.rowStride, Int32(k.rowStride), 0, sb, Int32(bc))
                            let pb = bias?.pointer(slice: i, heads: g.heads, row: r0, key: c0)
                            var dropBlock = drop?.block(slice: i, r0: r0, c0: c0, g)
                            withOptionalPointer(&dropBlock) { pd in
                                remat_flash_forward_step(sb, bc, rows, cols, r0, c0, g.shift, g.causal ? 1 : 0, scale,
                                                         pb, bias?.rowStride ?? 0, pd, m, l, o, g.d, g.d)
                            }
                            remat_sgemm_raw(1, 0, 0, Int32(rows), Int32(g.d), Int32(cols), 1, sb, Int32(bc),
                                            pv + c0 * v.rowStride, Int32(v.rowStride), 1, o, Int32(g.d))
                        }
                    } else {
                        // Dh = 0: the output is empty; the statistics are never read (backward returns at once).
                        for r in 0..<rows { m[r] = 0; l[r] = 1 }
                    }
                    remat_flash_forward_finish(o, g.d, rows, g.d, m, l, pl + i * g.t + r0)
                }
            }
        }
    }
    return (out, lse)
}

private func flashBackward(q: HeadRows, k: HeadRows, v: HeadRows, out: Tensor, lse: Tensor, bias: FlashBias?, _ drop: FlashDropout?,
                           dOut: Tensor, _ g: FlashGeometry, scale: Float, need: [Bool]) -> [Tensor?] {
    // dQ always (it is accumulated while dK and dV are computed; dropped if not needed).
    let dq = Tensor.zeros([g.batch, g.heads, g.t, g.d], label: "sdpa_backward")
    let dk = Tensor.zeros([g.batch, g.heads, g.s, g.d], label: "sdpa_backward")
    let dv = Tensor.zeros([g.batch, g.heads, g.s, g.d], label: "sdpa_backward")
    // A mask that needs its gradient gets dS whole, then summed over its broadcast dimensions.
    let dBias = bias != nil && need[3] ? Tensor.zeros([g.batch, g.heads, g.t, g.s], label: "sdpa_backward") : nil
    func results() -> [Tensor?] {
        let grads = [need[0] ? dq : nil, need[1] ? dk : nil, need[2] ? dv : nil]
        guard let bias else { return grads }
        return grads + [dBias.map { $0.summed(toShape: bias.shape) }]
    }
    guard g.slices > 0, g.t > 0, g.s > 0, g.d > 0 else { return results() }
    let br = flashBlockRows, bc = flashBackwardBlockKeys
    let o = out.contiguousInput()
    let partition = HeadPartition(slices: g.slices)
    // Per part: the score block, the dP block and the rows' D.
    let scratch = Tensor(uninitializedShape: [partition.parts, 2 * br * bc + g.t], label: "sdpa_scratch")
    let ps = scratch.floatPointer, pdo = dOut.floatPointer, pout = o.floatPointer, pl = lse.contiguousInput().floatPointer
    withExtendedLifetime((q, k, v, o, lse, bias, dOut, dBias, scratch)) {
        partition.run { part, heads, threads in
            let sb = ps + part * (2 * br * bc + g.t), dpb = sb + br * bc, dvec = dpb + br * bc
            for i in heads {
                let pq = q.matrix(i), pk = k.matrix(i), pv = v.matrix(i)
                let gdo = pdo + i * g.t * g.d, gl = pl + i * g.t
                let pdq = dq.floatPointer + i * g.t * g.d, pdk = dk.floatPointer + i * g.s * g.d, pdv = dv.floatPointer + i * g.s * g.d
                remat_flash_row_dots(gdo, g.d, pout + i * g.t * g.d, g.d, g.t, g.d, dvec)
                for c0 in stride(from: 0, to: g.s, by: bc) {
                    let cols = Swift.min(bc, g.s - c0)
                    let first = (g.firstQuery(seeing: c0) / br) * br
                    for r0 in stride(from: first, to: g.t, by: br) {
                        let rows = Swift.min(br, g.t - r0)
                        let qr = pq + r0 * q.rowStride, kc = pk + c0 * k.rowStride, vc = pv + c0 * v.rowStride, dor = gdo + r0 * g.d
                        // S = q_r · k_cᵀ and dZ = dO_r · v_cᵀ, then Z and dS in place.
                        remat_sgemm_raw(threads, 0, 1, Int32(rows), Int32(cols), Int32(g.d), 1, qr, Int32(q.rowStride),
                                        kc, Int32(k.rowStride), 0, sb, Int32(bc))
                        remat_sgemm_raw(threads, 0, 1, Int32(rows), Int32(cols), Int32(g.d), 1, dor, Int32(g.d),
                                        vc, Int32(v.rowStride), 0, dpb, Int32(bc))
                        let pb = bias?.pointer(slice: i, heads: g.heads, row: r0, key: c0)
                        var dropBlock = drop?.block(slice: i, r0: r0, c0: c0, g)
                        withOptionalPointer(&dropBlock) { pd in
                            remat_flash_backward_step(sb, dpb, bc, rows, cols, r0, c0, g.shift, g.causal ? 1 : 0, scale,
                                                      pb, bias?.rowStride ?? 0, pd, gl + r0, dvec + r0)
                        }
                        if let dBias {
                            let pdb = dBias.floatPointer + (i * g.t + r0) * g.s + c0
                            for r in 0..<rows { (pdb + r * g.s).update(from: dpb + r * bc, count: cols) }
                        }
                        // dV_c += Zᵀ · dO_r, dK_c += scale · dSᵀ · q_r, dQ_r += scale · dS · k_c.
                        remat_sgemm_raw(threads, 1, 0, Int32(cols), Int32(g.d), Int32(rows), 1, sb, Int32(bc), dor, Int32(g.d),
                                        1, pdv + c0 * g.d, Int32(g.d))
                        remat_sgemm_raw(threads, 1, 0, Int32(cols), Int32(g.d), Int32(rows), scale, dpb, Int32(bc), qr, Int32(q.rowStride),
                                        1, pdk + c0 * g.d, Int32(g.d))
                        remat_sgemm_raw(threads, 0, 0, Int32(rows), Int32(g.d), Int32(cols), scale, dpb, Int32(bc), kc, Int32(k.rowStride),
                                        1, pdq + r0 * g.d, Int32(g.d))
                    }
                }
            }
        }
    }
    return results()
}

/// `body` with a pointer to `value`, or NULL when it is nil.
private func withOptionalPointer<T, R>(_ value: inout T?, _ body: (UnsafePointer<T>?) -> R) -> R {
    guard value != nil else { return body(nil) }
    return withUnsafePointer(to: &value!) { body($0) }
}
