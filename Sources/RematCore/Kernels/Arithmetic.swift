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
        Autograd.op(.add, inputs: [a, b]) {
            let sa = a.shape, sb = b.shape
            return OpResult(binaryKernel(.add, a, b)) { ctx, g in
                [ctx.needsInputGrad[0] ? g.summed(toShape: sa) : nil,
                 ctx.needsInputGrad[1] ? g.summed(toShape: sb) : nil]
            }
        }
    }

    public static func - (a: Tensor, b: Tensor) -> Tensor {
        Autograd.op(.sub, inputs: [a, b]) {
            let sa = a.shape, sb = b.shape
            return OpResult(binaryKernel(.sub, a, b)) { ctx, g in
                [ctx.needsInputGrad[0] ? g.summed(toShape: sa) : nil,
                 ctx.needsInputGrad[1] ? (-g).summed(toShape: sb) : nil]
            }
        }
    }

    public static func * (a: Tensor, b: Tensor) -> Tensor {
        Autograd.op(.mul, inputs: [a, b]) {
            let sa = a.shape, sb = b.shape
            return OpResult(binaryKernel(.mul, a, b), saving: [("lhs", a), ("rhs", b)]) { ctx, g in
                let x = ctx.saved[0], y = ctx.saved[1]
                return [ctx.needsInputGrad[0] ? binaryKernel(.mul, g, y).summed(toShape: sa) : nil,
                        ctx.needsInputGrad[1] ? binaryKernel(.mul, g, x).summed(toShape: sb) : nil]
            }
        }
    }

    public static func / (a: Tensor, b: Tensor) -> Tensor {
        Autograd.op(.div, inputs: [a, b]) {
            let sa = a.shape, sb = b.shape
            return OpResult(binaryKernel(.div, a, b), saving: [("lhs", a), ("rhs", b)]) { ctx, g in
                let x = ctx.saved[0], y = ctx.saved[1]
                let gx = binaryKernel(.div, g, y)
                var gy: Tensor? = nil
                if ctx.needsInputGrad[1] {
                    // d(x/y)/dy = -x / y² = -(g/y) * x / y
                    gy = (-binaryKernel(.div, binaryKernel(.mul, gx, x), y)).summed(toShape: sb)
                }
                return [ctx.needsInputGrad[0] ? gx.summed(toShape: sa) : nil, gy]
            }
        }
    }

    public static prefix func - (a: Tensor) -> Tensor {
        Autograd.op(.neg, inputs: [a]) {
            OpResult(scalarKernel(.mul, a, -1)) { _, g in [scalarKernel(.mul, g, -1)] }
        }
    }

    public static func + (a: Tensor, s: Float) -> Tensor {
        Autograd.op(.addScalar, inputs: [a]) {
            OpResult(scalarKernel(.add, a, s)) { _, g in [g] }
        }
    }
    public static func + (s: Float, a: Tensor) -> Tensor { a + s }
    public static func - (a: Tensor, s: Float) -> Tensor { a + (-s) }
    public static func - (s: Float, a: Tensor) -> Tensor {
        Autograd.op(.rsubScalar, inputs: [a]) {
            OpResult(scalarKernel(.sub, a, s, scalarFirst: true)) { _, g in [scalarKernel(.mul, g, -1)] }
        }
    }
    public static func * (a: Tensor, s: Float) -> Tensor {
        Autograd.op(.mulScalar, inputs: [a]) {
            OpResult(scalarKernel(.mul, a, s)) { _, g in [scalarKernel(.mul, g, s)] }
        }
    }
    public static func * (s: Float, a: Tensor) -> Tensor { a * s }
    public static func / (a: Tensor, s: Float) -> Tensor { a * (1 / s) }

    /// Elementwise maximum (NaN propagates). The gradient goes to `a` where `a >= b`, else to `b`.
    public func maximum(_ other: Tensor) -> Tensor { extremum(.max, other) }
    /// Elementwise minimum (NaN propagates). The gradient goes to `a` where `a <= b`, else to `b`.
    public func minimum(_ other: Tensor) -> Tensor { extremum(.min, other) }

    private func extremum(_ op: BinaryOp, _ other: Tensor) -> Tensor {
        Autograd.op(op == .max ? .maximum : .minimum, inputs: [self, other]) {
            let sa = shape, sb = other.shape
            return OpResult(binaryKernel(op, self, other), saving: [("lhs", self), ("rhs", other)]) { ctx, g in
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
        }
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
