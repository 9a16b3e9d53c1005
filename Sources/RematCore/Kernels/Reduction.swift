import CRematKernels

/// Reductions over axes: sum, mean, max.
///
/// Sums accumulate in float32 with 16 partial sums along contiguous rows (vectorised, and with
/// less rounding error than one running sum). Saves: sum and mean save nothing (shapes only);
/// max saves the int32 index of the first maximum per output element (4 bytes each).
extension Tensor {
    /// Sum over `axes`. With `keepingDims` the reduced axes stay with extent 1.
    public func summed(alongAxes axes: [Int], keepingDims: Bool = false) -> Tensor {
        let ax = Set(axes.map { ShapeRules.axis($0, rank: rank, op: "sum") }).sorted()
        var keptShape = shape
        for a in ax { keptShape[a] = 1 }
        let finalShape = keepingDims ? keptShape : shape.enumerated().filter { !ax.contains($0.offset) }.map(\.element)
        let inputShape = shape
        return Autograd.op(.sum, inputs: [self]) {
            let sum = sumKernel(contiguousInput(), axes: ax)
            let out = Tensor(storage: sum.storage, shape: finalShape, strides: ShapeRules.contiguousStrides(finalShape), dtype: .float32)
            return OpResult(out) { _, g in
                [g.reshaped(keptShape).expanded(to: inputShape).contiguousCopy(label: "sum_backward")]
            }
        }
    }

    /// Sum of all elements (a scalar tensor).
    public func summed() -> Tensor { summed(alongAxes: Array(0..<rank)) }

    /// Mean over `axes`.
    public func mean(alongAxes axes: [Int], keepingDims: Bool = false) -> Tensor {
        let ax = Set(axes.map { ShapeRules.axis($0, rank: rank, op: "mean") })
        let n = ax.reduce(1) { $0 * shape[$1] }
        return summed(alongAxes: Array(ax), keepingDims: keepingDims) * (1 / Float(Swift.max(n, 1)))
    }

    /// Mean of all elements (a scalar tensor).
    public func mean() -> Tensor { mean(alongAxes: Array(0..<rank)) }

    /// Maximum along `axis` (NaN propagates). The gradient goes to the first maximal element.
    public func max(alongAxis axis: Int, keepingDims: Bool = false) -> Tensor {
        let a = ShapeRules.axis(axis, rank: rank, op: "max")
        let outer = shape[..<a].reduce(1, *), n = shape[a], inner = shape[(a + 1)...].reduce(1, *)
        precondition(n > 0, "max: axis \(axis) of shape \(shape) is empty")
        var keptShape = shape
        keptShape[a] = 1
        let finalShape = keepingDims ? keptShape : shape.enumerated().filter { $0.offset != a }.map(\.element)
        let inputShape = shape
        return Autograd.op(.max, inputs: [self]) {
            let x = contiguousInput()
            let out = Tensor(uninitializedShape: finalShape, label: "max")
            let indices = Tensor(uninitializedShape: finalShape, dtype: .int32, label: "max_indices")
            let px = x.floatPointer, po = out.floatPointer
            let pi = indices.rawPointer.assumingMemoryBound(to: Int32.self)
            parallelChunks(outer, grain: Swift.max(1, elementwiseGrain / Swift.max(n * inner, 1))) { lo, hi in
                remat_max_axis_f32(px, po, pi, lo, hi, n, inner)
            }
            return OpResult(out, saving: [("argmax", indices)]) { ctx, g in
                let idx = ctx.saved[0].rawPointer.assumingMemoryBound(to: Int32.self)
                let gc = g.contiguous()
                let dx = Tensor.zeros(inputShape, label: "max_backward")
                let pg = gc.floatPointer, pd = dx.floatPointer
                for o in 0..<outer {
                    for i in 0..<inner {
                        let k = Int(idx[o * inner + i])
                        pd[(o * n + k) * inner + i] += pg[o * inner + i]
                    }
                }
                return [dx]
            }
        }
    }

    /// This tensor as a contiguous float32 tensor for a kernel (a copy only when needed, no autograd).
    func contiguousInput() -> Tensor {
        precondition(dtype == .float32, "kernel input must be float32, got \(dtype)")
        return isContiguous ? self : contiguousCopy()
    }
}

/// Sums a contiguous tensor over the sorted axes `axes` (kept with extent 1), no autograd.
func sumKernel(_ x: Tensor, axes: [Int]) -> Tensor {
    var current = x
    var shape = x.shape
    if axes.isEmpty { return x.contiguousCopy(label: "sum") }
    for a in axes.reversed() {
        let outer = shape[..<a].reduce(1, *), n = shape[a], inner = shape[(a + 1)...].reduce(1, *)
        shape[a] = 1
        let out = Tensor(uninitializedShape: shape, label: "sum")
        if n == 0 {
            out.floatPointer.initialize(repeating: 0, count: out.count)
        } else {
            let px = current.floatPointer, po = out.floatPointer
            parallelChunks(outer, grain: Swift.max(1, elementwiseGrain / Swift.max(n * inner, 1))) { lo, hi in
                remat_sum_axis_f32(px, po, lo, hi, n, inner)
            }
        }
        current = out
    }
    return current
}
