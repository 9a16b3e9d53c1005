import CRematKernels

/// Broadcasting arithmetic: `+ - * /`, elementwise maximum/minimum, and their scalar forms.
///
/// Shapes broadcast as in NumPy/PyTorch; the output is contiguous. Gradients are summed back to
/// each operand's shape. Saves: `*` saves both operands, `/` saves both operands; `+`/`-` save nothing.
enum BinaryOp: Int32 {
    case add = 0, sub = 1, mul = 2, div = 3, max = 4, min = 5
    var name: String { ["add", "sub", "mul", "div", "maximum", "minimum"][Int(rawValue)] }
}

/// Forward kernel for broadcast binary ops (no autograd).
func binaryKernel(_ op: BinaryOp, _ a: Tensor, _ b: Tensor) -> Tensor {
    precondition(a.dtype == .float32 && b.dtype == .float32, "\(op.name): needs float32 operands, got \(a.dtype) and \(b.dtype)")
    let outShape = ShapeRules.broadcast(a.shape, b.shape, op: op.name)
    let out = Tensor(uninitializedShape: outShape, label: op.name)
    let n = out.count
    guard n > 0 else { return out }
    let pa = a.floatPointer, pb = b.floatPointer, po = out.floatPointer
    if a.shape == b.shape && a.isContiguous && b.isContiguous {
        // Same-shape fast path: each chunk is one row of its own length.
        parallelChunks(n, grain: elementwiseGrain) { lo, hi in
            var length = hi - lo, unit = 1
            remat_binary_f32(op.rawValue, 1, &length, pa + lo, &unit, pb + lo, &unit, po + lo, 0, 1)
        }
        return out
    }
    let aStrides = broadcastStrides(a, to: outShape), bStrides = broadcastStrides(b, to: outShape)
    let layout = StridedLayout(shape: outShape, strides: [aStrides, bStrides, ShapeRules.contiguousStrides(outShape)])
    let rowLength = layout.rowLength
    layout.shape.withUnsafeBufferPointer { sp in
        layout.strides[0].withUnsafeBufferPointer { sa in
            layout.strides[1].withUnsafeBufferPointer { sb in
                let box = UncheckedSendableBox((sp.baseAddress!, sa.baseAddress!, sb.baseAddress!))
                parallelChunks(layout.rows, grain: max(1, elementwiseGrain / rowLength)) { lo, hi in
                    let (s, x, y) = box.value
                    remat_binary_f32(op.rawValue, Int32(layout.shape.count), s, pa, x, pb, y, po, lo, hi)
                }
            }
        }
    }
    return out
}

/// Strides that read `t` as if broadcast to `shape` (0 on broadcast axes).
func broadcastStrides(_ t: Tensor, to shape: [Int]) -> [Int] {
    let lead = shape.count - t.rank
    return (0..<shape.count).map { i in
        i < lead ? 0 : (t.shape[i - lead] == 1 && shape[i] != 1 ? 0 : t.strides[i - lead])
    }
}

/// `out = a op s` (or `s op a` when `scalarFirst`) over a contiguous copy of `a`.
func scalarKernel(_ op: BinaryOp, _ a: Tensor, _ s: Float, scalarFirst: Bool = false) -> Tensor {
    let x = a.isContiguous ? a : a.contiguousCopy()
    let out = Tensor(uninitializedShape: a.shape, label: op.name)
    let px = x.floatPointer, po = out.floatPointer
    parallelChunks(out.count, grain: elementwiseGrain) { lo, hi in
        if scalarFirst { remat_scalar_binary_f32(op.rawValue, s, px, po, lo, hi) }
        else { remat_binary_scalar_f32(op.rawValue, px, s, po, lo, hi) }
    }
    return out
}

extension Tensor {
    public static func + (a: Tensor, b: Tensor) -> Tensor {
        if let replayed = Autograd.replayed("add", inputs: [a, b]) { return replayed }
        let out = binaryKernel(.add, a, b)
        let sa = a.shape, sb = b.shape
        Autograd.record("add", inputs: [a, b], output: out) { ctx, g in
            [ctx.needsInputGrad[0] ? g.summed(toShape: sa) : nil,
             ctx.needsInputGrad[1] ? g.summed(toShape: sb) : nil]
        }
        return out
    }

    public static func - (a: Tensor, b: Tensor) -> Tensor {
        if let replayed = Autograd.replayed("sub", inputs: [a, b]) { return replayed }
        let out = binaryKernel(.sub, a, b)
        let sa = a.shape, sb = b.shape
        Autograd.record("sub", inputs: [a, b], output: out) { ctx, g in
            [ctx.needsInputGrad[0] ? g.summed(toShape: sa) : nil,
             ctx.needsInputGrad[1] ? (-g).summed(toShape: sb) : nil]
        }
        return out
    }

    public static func * (a: Tensor, b: Tensor) -> Tensor {
        if let replayed = Autograd.replayed("mul", inputs: [a, b]) { return replayed }
        let out = binaryKernel(.mul, a, b)
        let sa = a.shape, sb = b.shape
        let saving: [(role: String, tensor: Tensor)] = Autograd.needsGraph(a, b) ? [("lhs", a), ("rhs", b)] : []
        Autograd.record("mul", inputs: [a, b], output: out, saving: saving) { ctx, g in
            let x = ctx.saved[0], y = ctx.saved[1]
            return [ctx.needsInputGrad[0] ? binaryKernel(.mul, g, y).summed(toShape: sa) : nil,
                    ctx.needsInputGrad[1] ? binaryKernel(.mul, g, x).summed(toShape: sb) : nil]
        }
        return out
    }

    public static func / (a: Tensor, b: Tensor) -> Tensor {
        if let replayed = Autograd.replayed("div", inputs: [a, b]) { return replayed }
        let out = binaryKernel(.div, a, b)
        let sa = a.shape, sb = b.shape
        let saving: [(role: String, tensor: Tensor)] = Autograd.needsGraph(a, b) ? [("lhs", a), ("rhs", b)] : []
        Autograd.record("div", inputs: [a, b], output: out, saving: saving) { ctx, g in
            let x = ctx.saved[0], y = ctx.saved[1]
            let gx = binaryKernel(.div, g, y)
            var gy: Tensor? = nil
            if ctx.needsInputGrad[1] {
                // d(x/y)/dy = -x / y² = -(g/y) * x / y
                gy = (-binaryKernel(.div, binaryKernel(.mul, gx, x), y)).summed(toShape: sb)
            }
            return [ctx.needsInputGrad[0] ? gx.summed(toShape: sa) : nil, gy]
        }
        return out
    }

    public static prefix func - (a: Tensor) -> Tensor {
        if let replayed = Autograd.replayed("neg", inputs: [a]) { return replayed }
        let out = scalarKernel(.mul, a, -1)
        Autograd.record("neg", inputs: [a], output: out) { _, g in [scalarKernel(.mul, g, -1)] }
        return out
    }

    public static func + (a: Tensor, s: Float) -> Tensor {
        if let replayed = Autograd.replayed("add_scalar", inputs: [a]) { return replayed }
        let out = scalarKernel(.add, a, s)
        Autograd.record("add_scalar", inputs: [a], output: out) { _, g in [g] }
        return out
    }
    public static func + (s: Float, a: Tensor) -> Tensor { a + s }
    public static func - (a: Tensor, s: Float) -> Tensor { a + (-s) }
    public static func - (s: Float, a: Tensor) -> Tensor {
        if let replayed = Autograd.replayed("rsub_scalar", inputs: [a]) { return replayed }
        let out = scalarKernel(.sub, a, s, scalarFirst: true)
        Autograd.record("rsub_scalar", inputs: [a], output: out) { _, g in [scalarKernel(.mul, g, -1)] }
        return out
    }
    public static func * (a: Tensor, s: Float) -> Tensor {
        if let replayed = Autograd.replayed("mul_scalar", inputs: [a]) { return replayed }
        let out = scalarKernel(.mul, a, s)
        Autograd.record("mul_scalar", inputs: [a], output: out) { _, g in [scalarKernel(.mul, g, s)] }
        return out
    }
    public static func * (s: Float, a: Tensor) -> Tensor { a * s }
    public static func / (a: Tensor, s: Float) -> Tensor { a * (1 / s) }

    /// Elementwise maximum (NaN propagates). The gradient goes to `a` where `a >= b`, else to `b`.
    public func maximum(_ other: Tensor) -> Tensor { extremum(.max, other) }
    /// Elementwise minimum (NaN propagates). The gradient goes to `a` where `a <= b`, else to `b`.
    public func minimum(_ other: Tensor) -> Tensor { extremum(.min, other) }

    private func extremum(_ op: BinaryOp, _ other: Tensor) -> Tensor {
        if let replayed = Autograd.replayed(op.name, inputs: [self, other]) { return replayed }
        let out = binaryKernel(op, self, other)
        let sa = shape, sb = other.shape
        let saving: [(role: String, tensor: Tensor)] = Autograd.needsGraph(self, other) ? [("lhs", self), ("rhs", other)] : []
        Autograd.record(op.name, inputs: [self, other], output: out, saving: saving) { ctx, g in
            let x = ctx.saved[0], y = ctx.saved[1]
            let outShape = g.shape
            let xs = broadcastStrides(x, to: outShape), ys = broadcastStrides(y, to: outShape)
            let gx = Tensor(uninitializedShape: outShape, label: "\(op.name)_backward")
            let gy = Tensor(uninitializedShape: outShape, label: "\(op.name)_backward")
            let gc = g.isContiguous ? g : g.contiguousCopy()
            // Small op: a scalar loop over the broadcast index.
            let strides = ShapeRules.contiguousStrides(outShape)
            let px = x.floatPointer, py = y.floatPointer, pg = gc.floatPointer
            for i in 0..<gx.count {
                var r = i, ox = 0, oy = 0
                for d in 0..<outShape.count {
                    let idx = r / strides[d]
                    r -= idx * strides[d]
                    ox += idx * xs[d]; oy += idx * ys[d]
                }
                let takeX = op == .max ? px[ox] >= py[oy] : px[ox] <= py[oy]
                gx.floatPointer[i] = takeX ? pg[i] : 0
                gy.floatPointer[i] = takeX ? 0 : pg[i]
            }
            return [ctx.needsInputGrad[0] ? gx.summed(toShape: sa) : nil,
                    ctx.needsInputGrad[1] ? gy.summed(toShape: sb) : nil]
        }
        return out
    }

    /// `self += other` without autograd (used for gradient accumulation and optimizer updates).
    /// `other` must broadcast to this tensor's shape; this tensor must be contiguous float32.
    public func addInPlace(_ other: Tensor, alpha: Float = 1) {
        precondition(isContiguous && dtype == .float32, "addInPlace: destination must be contiguous float32, shape \(shape)")
        let src = other.shape == shape && other.isContiguous ? other : other.expanded(to: shape).contiguousCopy()
        let ps = src.floatPointer, pd = floatPointer
        parallelChunks(count, grain: elementwiseGrain) { lo, hi in remat_axpy_f32(alpha, ps, pd, lo, hi) }
    }
}
