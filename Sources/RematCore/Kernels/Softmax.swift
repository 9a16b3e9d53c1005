import CRematKernels

/// Softmax and log-softmax along one axis.
///
/// Math (for a slice `x` along `axis`, `m = max x`):
/// - `softmax(x)ᵢ = exp(xᵢ − m) / Σⱼ exp(xⱼ − m)`
/// - `logSoftmax(x)ᵢ = (xᵢ − m) − log Σⱼ exp(xⱼ − m)`
///
/// Backward, from the saved output `y` only:
/// - softmax: `dx = y ⊙ (dy − Σ dy⊙y)`
/// - log-softmax: `dx = dy − exp(y) · Σ dy`
///
/// Saves: only the output (`4·numel` bytes, role "output"); the input is not kept.
///
/// Layout: the input is viewed as `[outer, n, inner]` with `n` the extent of `axis` (a contiguous
/// copy is made first only when the input is not contiguous). For the last axis (`inner == 1`)
/// each row is one fused kernel pass (max, Σexp, scale); for another axis the kernel works on
/// tiles of up to 64 inner positions with the same three passes, so no permute or extra copy is
/// needed. The output is contiguous with the input's shape.
///
/// Numerics: the slice max is subtracted before `exp` (remat_exp, ≤ 2 ulp), so large logits do not
/// overflow; sums use 16 float partial accumulators. `-inf` entries (causal masks) give exactly 0
/// (softmax) / `-inf` (log-softmax). A slice that is entirely `-inf` gives NaN, as in PyTorch;
/// NaN anywhere in a slice makes the whole slice NaN; `+inf` likewise gives NaN.
public func softmax(_ x: Tensor, axis: Int = -1) -> Tensor {
    softmaxFamily(x, axis: axis, log: false)
}

/// Log-softmax along `axis`: `(xᵢ − m) − log Σⱼ exp(xⱼ − m)`. See ``softmax(_:axis:)`` for the
/// layout, numerics and what is saved (only the output, `4·numel` bytes).
public func logSoftmax(_ x: Tensor, axis: Int = -1) -> Tensor {
    softmaxFamily(x, axis: axis, log: true)
}

private func softmaxFamily(_ x: Tensor, axis: Int, log: Bool) -> Tensor {
    let op = log ? "log_softmax" : "softmax"
    precondition(x.dtype == .float32, "\(op): input must be float32, got \(x.dtype) (shape \(x.shape))")
    let shape = x.shape
    // A scalar is one slice of one element.
    let a = x.rank == 0 ? 0 : ShapeRules.axis(axis, rank: x.rank, op: op)
    let outer = x.rank == 0 ? 1 : shape[..<a].reduce(1, *)
    let n = x.rank == 0 ? 1 : shape[a]
    let inner = x.rank == 0 ? 1 : shape[(a + 1)...].reduce(1, *)
    return Autograd.op(log ? .logSoftmax : .softmax, inputs: [x]) {
        let out = softmaxKernel(x.contiguousInput(), outer: outer, n: n, inner: inner, log: log, op: op)
        return OpResult(out, saving: [("output", out)]) { ctx, g in
            let y = ctx.saved[0].contiguousInput()
            let dy = g.contiguousInput()
            let dx = Tensor(uninitializedShape: shape, label: "\(op)_backward")
            guard dx.count > 0 else { return [dx] }
            let py = y.floatPointer, pg = dy.floatPointer, pd = dx.floatPointer
            let items = softmaxWorkItems(outer: outer, inner: inner)
            parallelChunks(items.count, grain: items.grain(n: n)) { lo, hi in
                remat_softmax_backward_f32(py, pg, pd, n, inner, log ? 1 : 0, lo, hi)
            }
            return [dx]
        }
    }
}

/// Forward kernel on a contiguous `[outer, n, inner]` input (no autograd).
private func softmaxKernel(_ x: Tensor, outer: Int, n: Int, inner: Int, log: Bool, op: String) -> Tensor {
    let out = Tensor(uninitializedShape: x.shape, label: op)
    guard out.count > 0 else { return out }
    let px = x.floatPointer, po = out.floatPointer
    let items = softmaxWorkItems(outer: outer, inner: inner)
    parallelChunks(items.count, grain: items.grain(n: n)) { lo, hi in
        remat_softmax_f32(px, po, n, inner, log ? 1 : 0, lo, hi)
    }
    return out
}

/// The kernels' work items: rows when `inner == 1`, else (outer, inner tile) pairs.
private struct SoftmaxWorkItems {
    let count: Int
    let elementsPerItem: Int
    /// Items per chunk so that one chunk has at least ~64K elements.
    func grain(n: Int) -> Int { Swift.max(1, elementwiseGrain / Swift.max(n * elementsPerItem, 1)) }
}

private func softmaxWorkItems(outer: Int, inner: Int) -> SoftmaxWorkItems {
    let tile = Int(REMAT_NN_INNER_TILE)
    if inner == 1 { return SoftmaxWorkItems(count: outer, elementsPerItem: 1) }
    let tiles = (inner + tile - 1) / tile
    return SoftmaxWorkItems(count: outer * tiles, elementsPerItem: Swift.min(inner, tile))
}
