/// Views and layout ops: reshape, permute/transpose, slicing (narrow), expand, squeeze/unsqueeze,
/// contiguous, tags. A view shares storage and costs no copy; its backward maps the gradient back to
/// the input's shape. Nothing is saved for backward (0 bytes): only shapes are kept.
extension Tensor {
    /// This tensor if it is contiguous, else a contiguous copy (differentiable, gradient passes through).
    public func contiguous() -> Tensor {
        if isContiguous { return self }
        return Autograd.op(.contiguous, inputs: [self]) {
            OpResult(contiguousCopy(label: "contiguous")) { _, g in [g] }
        }
    }

    /// The same elements with a new shape (one extent may be -1). A view when the data is
    /// contiguous, otherwise a copy first.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        var target = newShape
        if let unknown = newShape.firstIndex(of: -1) {
            let known = newShape.enumerated().filter { $0.offset != unknown }.map(\.element).reduce(1, *)
            precondition(known > 0 && count % known == 0,
                         "reshape: cannot reshape \(shape) (\(count) elements) to \(newShape)")
            target[unknown] = count / known
        }
        precondition(ShapeRules.count(target) == count,
                     "reshape: cannot reshape \(shape) (\(count) elements) to \(newShape)")
        if target == shape { return self }
        let source = contiguous()
        let inputShape = shape
        return Autograd.op(.reshape, inputs: [source]) {
            OpResult(Tensor(storage: source.storage, shape: target, strides: ShapeRules.contiguousStrides(target),
                            offset: source.offset, dtype: dtype)) { _, g in [g.reshaped(inputShape)] }
        }
    }

    /// Collapses axes `start...end` into one.
    public func flattened(from start: Int = 0, to end: Int = -1) -> Tensor {
        let s = ShapeRules.axis(start, rank: rank, op: "flatten")
        let e = ShapeRules.axis(end, rank: rank, op: "flatten")
        precondition(s <= e, "flatten: start axis \(start) is after end axis \(end) for shape \(shape)")
        let merged = shape[s...e].reduce(1, *)
        return reshaped(Array(shape[..<s]) + [merged] + Array(shape[(e + 1)...]))
    }

    /// Axes reordered: output axis i is input axis `axes[i]`.
    public func permuted(_ axes: [Int]) -> Tensor {
        precondition(axes.count == rank && Set(axes.map { ShapeRules.axis($0, rank: rank, op: "permute") }).count == rank,
                     "permute: \(axes) is not a permutation of the \(rank) axes of shape \(shape)")
        let ax = axes.map { ShapeRules.axis($0, rank: rank, op: "permute") }
        var inverse = [Int](repeating: 0, count: rank)
        for (i, a) in ax.enumerated() { inverse[a] = i }
        return Autograd.op(.permute, inputs: [self]) {
            OpResult(Tensor(storage: storage, shape: ax.map { shape[$0] }, strides: ax.map { strides[$0] },
                            offset: offset, dtype: dtype)) { _, g in [g.permuted(inverse)] }
        }
    }

    /// Two axes swapped (default: the last two).
    public func transposed(_ a: Int = -2, _ b: Int = -1) -> Tensor {
        var axes = Array(0..<rank)
        axes.swapAt(ShapeRules.axis(a, rank: rank, op: "transpose"), ShapeRules.axis(b, rank: rank, op: "transpose"))
        return permuted(axes)
    }

    /// Elements `start..<start+length` along `axis` (a view).
    public func narrowed(axis: Int, start: Int, length: Int) -> Tensor {
        let ax = ShapeRules.axis(axis, rank: rank, op: "narrow")
        precondition(start >= 0 && length >= 0 && start + length <= shape[ax],
                     "narrow: range \(start)..<\(start + length) is out of bounds for axis \(axis) of shape \(shape)")
        var newShape = shape
        newShape[ax] = length
        let inputShape = shape
        return Autograd.op(.narrow, inputs: [self]) {
            OpResult(Tensor(storage: storage, shape: newShape, strides: strides,
                            offset: offset + start * strides[ax], dtype: dtype)) { _, g in
                let full = Tensor.zeros(inputShape, label: "narrow_backward")
                g.copyElements(into: full.narrowed(axis: ax, start: start, length: length))
                return [full]
            }
        }
    }

    /// Size-1 axes (or new leading axes) repeated to `newShape` without copying (stride 0).
    public func expanded(to newShape: [Int]) -> Tensor {
        precondition(newShape.count >= rank, "expand: cannot expand shape \(shape) to fewer axes \(newShape)")
        let lead = newShape.count - rank
        var newStrides = [Int](repeating: 0, count: newShape.count)
        for i in 0..<newShape.count {
            if i < lead { continue }
            let d = shape[i - lead]
            precondition(d == newShape[i] || d == 1,
                         "expand: axis \(i - lead) of shape \(shape) has extent \(d), cannot expand to \(newShape)")
            newStrides[i] = d == 1 && newShape[i] != 1 ? 0 : strides[i - lead]
        }
        if newShape == shape { return self }
        let inputShape = shape
        return Autograd.op(.expand, inputs: [self]) {
            OpResult(Tensor(storage: storage, shape: newShape, strides: newStrides, offset: offset, dtype: dtype)) { _, g in
                [g.summed(toShape: inputShape)]
            }
        }
    }

    /// A size-1 axis inserted at `axis`.
    public func unsqueezed(_ axis: Int) -> Tensor {
        let ax = axis < 0 ? axis + rank + 1 : axis
        precondition(ax >= 0 && ax <= rank, "unsqueeze: axis \(axis) out of range for shape \(shape)")
        var s = shape
        s.insert(1, at: ax)
        var st = strides
        st.insert(ax < rank ? strides[ax] * shape[ax] : 1, at: ax)
        let inputShape = shape
        return Autograd.op(.unsqueeze, inputs: [self]) {
            OpResult(Tensor(storage: storage, shape: s, strides: st, offset: offset, dtype: dtype)) { _, g in [g.reshaped(inputShape)] }
        }
    }

    /// The size-1 axis `axis` removed.
    public func squeezed(_ axis: Int) -> Tensor {
        let ax = ShapeRules.axis(axis, rank: rank, op: "squeeze")
        precondition(shape[ax] == 1, "squeeze: axis \(axis) of shape \(shape) has extent \(shape[ax]), not 1")
        var s = shape, st = strides
        s.remove(at: ax)
        st.remove(at: ax)
        let inputShape = shape
        return Autograd.op(.squeeze, inputs: [self]) {
            OpResult(Tensor(storage: storage, shape: s, strides: st, offset: offset, dtype: dtype)) { _, g in [g.reshaped(inputShape)] }
        }
    }

    /// This tensor marked with `name` (numerically the identity, a view): recorded as op `tag:name`,
    /// so the name appears in node and saved-tensor names and selective policies can pick it
    /// (JAX's `checkpoint_name`). Saves nothing.
    public func tagged(_ name: String) -> Tensor {
        Autograd.op(.tag, tag: name, inputs: [self]) {
            OpResult(Tensor(storage: storage, shape: shape, strides: strides, offset: offset, dtype: dtype)) { _, g in [g] }
        }
    }

    /// Sums a broadcast gradient back to `target` (the shape an operand had before broadcasting).
    public func summed(toShape target: [Int]) -> Tensor {
        if shape == target { return self }
        let lead = rank - target.count
        precondition(lead >= 0, "sumToShape: cannot reduce shape \(shape) to larger rank \(target)")
        var axes: [Int] = Array(0..<lead)
        for i in 0..<target.count where target[i] == 1 && shape[lead + i] != 1 { axes.append(lead + i) }
        precondition((0..<target.count).allSatisfy { target[$0] == shape[lead + $0] || target[$0] == 1 },
                     "sumToShape: shape \(shape) does not broadcast from \(target)")
        return summed(alongAxes: axes, keepingDims: true).reshaped(target)
    }
}
