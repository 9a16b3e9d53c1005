/// Concatenation and splitting along an axis.
///
/// `concat` copies its inputs into one new contiguous tensor (any dtype, as long as all inputs
/// share it; inputs may be strided views). Backward: input `k`'s gradient is the slice
/// `dout.narrowed(axis, start_k, length_k)` made contiguous. Saves: nothing (0 bytes; only the
/// extents along `axis` are kept).
///
/// `split` and `chunk` return views made with ``Tensor/narrowed(axis:start:length:)``: no copy,
/// and nothing saved (each view's backward places its gradient in a zero tensor of the input's
/// shape; the engine sums the pieces).
///
/// - Precondition: at least one input; all inputs have the same rank, dtype and extents except
///   along `axis` (the message names the op and the shapes).
public func concat(_ tensors: [Tensor], axis: Int) -> Tensor {
    precondition(!tensors.isEmpty, "concat: needs at least one tensor")
    let first = tensors[0]
    precondition(first.rank >= 1, "concat: cannot concatenate rank-0 tensors (shapes \(tensors.map(\.shape)))")
    let ax = ShapeRules.axis(axis, rank: first.rank, op: "concat")
    let shapes = tensors.map(\.shape)
    for t in tensors {
        precondition(t.dtype == first.dtype, "concat: dtypes differ (\(tensors.map(\.dtype))) for shapes \(shapes)")
        precondition(t.rank == first.rank
                     && (0..<first.rank).allSatisfy { $0 == ax || t.shape[$0] == first.shape[$0] },
                     "concat: shapes \(shapes) differ outside axis \(axis)")
    }
    let lengths = tensors.map { $0.shape[ax] }
    var outShape = first.shape
    outShape[ax] = lengths.reduce(0, +)
    return Autograd.op(.concat, inputs: tensors) {
        let out = Tensor(uninitializedShape: outShape, dtype: first.dtype, label: "concat")
        var starts: [Int] = []
        var start = 0
        for (t, length) in zip(tensors, lengths) {
            starts.append(start)
            if length > 0 { t.copyElements(into: out.rawSlice(axis: ax, start: start, length: length)) }
            start += length
        }
        return OpResult(out) { ctx, g in
            (0..<lengths.count).map { k -> Tensor? in
                guard ctx.needsInputGrad[k] else { return nil }
                return g.rawSlice(axis: ax, start: starts[k], length: lengths[k]).contiguousCopy(label: "concat_backward")
            }
        }
    }
}

/// Views of `x` along `axis` with the given extents (which must add up to `x.shape[axis]`).
public func split(_ x: Tensor, sizes: [Int], axis: Int) -> [Tensor] {
    let ax = ShapeRules.axis(axis, rank: x.rank, op: "split")
    precondition(sizes.allSatisfy { $0 >= 0 } && sizes.reduce(0, +) == x.shape[ax],
                 "split: sizes \(sizes) do not add up to extent \(x.shape[ax]) of axis \(axis) of shape \(x.shape)")
    var start = 0
    return sizes.map { size in
        defer { start += size }
        return x.narrowed(axis: ax, start: start, length: size)
    }
}

/// `x` cut into `parts` views along `axis`, as PyTorch's `chunk`: every piece has
/// `⌈extent / parts⌉` elements along `axis` except the last, which has the rest — so fewer than
/// `parts` pieces come back when the extent is not large enough (e.g. extent 5, 4 parts → 2, 2, 1).
/// An extent divisible by `parts` gives exactly `parts` equal pieces.
public func chunk(_ x: Tensor, _ parts: Int, axis: Int) -> [Tensor] {
    let ax = ShapeRules.axis(axis, rank: x.rank, op: "chunk")
    precondition(parts >= 1, "chunk: parts must be at least 1, got \(parts) (shape \(x.shape))")
    let extent = x.shape[ax]
    if extent == 0 { return [x.narrowed(axis: ax, start: 0, length: 0)] }
    let size = (extent + parts - 1) / parts
    var sizes: [Int] = []
    var rest = extent
    while rest > 0 {
        sizes.append(Swift.min(size, rest))
        rest -= size
    }
    return split(x, sizes: sizes, axis: ax)
}

extension Tensor {
    /// A slice view along `axis` without autograd (for the copy and the backward).
    fileprivate func rawSlice(axis: Int, start: Int, length: Int) -> Tensor {
        var s = shape
        s[axis] = length
        return Tensor(storage: storage, shape: s, strides: strides, offset: offset + start * strides[axis], dtype: dtype)
    }
}
