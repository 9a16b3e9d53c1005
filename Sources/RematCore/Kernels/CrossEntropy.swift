import CRematKernels

/// Cross-entropy loss of class logits against integer targets, mean over non-ignored targets.
///
/// Shapes: `logits` `[N, C]` float32 with `targets` `[N]`, or `[B, T, C]` with `targets` `[B, T]`
/// (any leading axes: they are flattened into N rows; the class axis is always the last one).
/// Targets are int32 or int64. A target equal to `ignoreIndex` contributes nothing; any other
/// target outside `[0, C)` stops with a precondition failure naming the op, the row, the value and C.
///
/// Math (one fused kernel pass per row, log-softmax + NLL, no `[N, C]` intermediate):
/// `m = max x`, `ls = log Σ exp(x − m)`, `loss_r = (m − x_t) + ls`,
/// `loss = Σ_{r not ignored} loss_r / count`. Per-row losses are summed in Double.
/// Backward: `dx_r = (dL/dloss / count) · (softmax(x_r) − onehot(t_r))`, zeros on ignored rows.
///
/// All targets ignored (or N = 0): the loss is NaN (0/0), matching PyTorch ≥ 1.10 with mean
/// reduction; the gradient is then all zeros (every row is ignored), as in PyTorch.
///
/// Saves: the logits input as-is (role "logits", `4·N·C` bytes — the same bytes as PyTorch's saved
/// log-softmax output, but no `[N, C]` tensor is allocated in forward, and the logits usually stay
/// alive anyway until the op ran), the targets (role "targets", `4·N` or `8·N` bytes), and per-row
/// `(max, log Σ exp(x − max))` (role "row_stats", `[N, 2]` float32, 8 bytes per row) so that
/// backward is a single pass `exp((x − m) − ls)` over the logits.
///
/// Numerics: the row max is subtracted before exp, and the loss is formed as `(m − x_t) + ls`, not
/// `(m + ls) − x_t`, so logits of magnitude ~1e4 keep full float precision (no catastrophic
/// rounding of `m + ls` at ulp(1e4) ≈ 1e-3). A row of all `-inf` logits gives NaN.
public func crossEntropy(logits: Tensor, targets: Tensor, ignoreIndex: Int = -100) -> Tensor {
    precondition(logits.dtype == .float32, "cross_entropy: logits must be float32, got \(logits.dtype) (shape \(logits.shape))")
    precondition(logits.rank >= 2, "cross_entropy: logits must be [N, C] or [B, T, C], got shape \(logits.shape)")
    precondition(targets.dtype == .int32 || targets.dtype == .int64,
                 "cross_entropy: targets must be int32 or int64, got \(targets.dtype)")
    let logitsShape = logits.shape
    precondition(targets.shape == Array(logitsShape.dropLast()),
                 "cross_entropy: targets shape \(targets.shape) must be logits shape \(logitsShape) without the class axis")
    let c = logitsShape[logitsShape.count - 1]
    let rows = targets.count
    let x = logits.contiguousInput()
    let t = targets.isContiguous ? targets : targets.contiguousCopy(label: "cross_entropy_targets")
    let t32: UnsafePointer<Int32>? = t.dtype == .int32 ? UnsafePointer(t.rawPointer.assumingMemoryBound(to: Int32.self)) : nil
    let t64: UnsafePointer<Int64>? = t.dtype == .int64 ? UnsafePointer(t.rawPointer.assumingMemoryBound(to: Int64.self)) : nil

    // Validate the targets and count the non-ignored ones.
    var count = 0
    for r in 0..<rows {
        let v = t32.map { Int($0[r]) } ?? Int(t64![r])
        if v == ignoreIndex { continue }
        precondition(v >= 0 && v < c,
                     "cross_entropy: target \(v) at row \(r) is out of range for \(c) classes (ignoreIndex \(ignoreIndex))")
        count += 1
    }

    return Autograd.op(.crossEntropy, inputs: [logits]) {
        let rowLoss = Tensor(uninitializedShape: [rows], label: "cross_entropy_row_loss")
        let stats = Tensor(uninitializedShape: [rows, 2], label: "cross_entropy_row_stats")
        if rows > 0 && count > 0 {
            let px = x.floatPointer, pl = rowLoss.floatPointer, ps = stats.floatPointer
            parallelChunks(rows, grain: Swift.max(1, elementwiseGrain / Swift.max(c, 1))) { lo, hi in
                remat_cross_entropy_f32(px, t32, t64, ignoreIndex, pl, ps, c, lo, hi)
            }
        }
        var total = 0.0
        if count > 0 {
            let pl = rowLoss.floatPointer
            for r in 0..<rows { total += Double(pl[r]) }
        }
        let out = Tensor(scalar: count > 0 ? Float(total / Double(count)) : .nan)
        return OpResult(out, saving: [("logits", logits), ("targets", targets), ("row_stats", stats)]) { ctx, g in
            let xs = ctx.saved[0].contiguousInput()
            let ts0 = ctx.saved[1]
            let ts = ts0.isContiguous ? ts0 : ts0.contiguousCopy(label: "cross_entropy_targets")
            let st = ctx.saved[2].contiguousInput()
            let dx = Tensor(uninitializedShape: logitsShape, label: "cross_entropy_backward")
            guard dx.count > 0 else { return [dx] }
            let scale = count > 0 ? g.item / Float(count) : 0
            let bt32: UnsafePointer<Int32>? = ts.dtype == .int32 ? UnsafePointer(ts.rawPointer.assumingMemoryBound(to: Int32.self)) : nil
            let bt64: UnsafePointer<Int64>? = ts.dtype == .int64 ? UnsafePointer(ts.rawPointer.assumingMemoryBound(to: Int64.self)) : nil
            let px = xs.floatPointer, ps = st.floatPointer, pd = dx.floatPointer
            parallelChunks(rows, grain: Swift.max(1, elementwiseGrain / Swift.max(c, 1))) { lo, hi in
                remat_cross_entropy_backward_f32(px, bt32, bt64, ignoreIndex, ps, scale, pd, c, lo, hi)
            }
            return [dx]
        }
    }
}
