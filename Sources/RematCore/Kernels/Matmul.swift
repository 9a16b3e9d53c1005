import CRematBLAS
import CRematKernels
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Matrix products through the GEMM library (never a hand-written GEMM).
///
/// `matmul(a, b)`: `[M, K] · [K, N]`, or batched `[..., M, K] · [..., K, N]` with the batch axes
/// broadcast (a 2-D `b` is shared by every batch, which becomes one large GEMM). Transposed views
/// are passed to GEMM as transposed operands, without a copy.
/// Saves: both operands (`a`: `4·numel(a)` bytes, `b`: `4·numel(b)` bytes; a parameter operand is
/// the parameter itself, so it adds no bytes).
/// Backward: `da = dc · bᵀ`, `db = aᵀ · dc`, summed over broadcast batch axes.
/// Under autocast (``AutocastPrecision``) both operands and the output are rounded to the
/// precision; the rounded operands are what is saved (a parameter operand is saved as itself and
/// rounded again in backward); backward rounds the output gradient and the gradients it returns.
public func matmul(_ a: Tensor, _ b: Tensor) -> Tensor {
    let precision = Autocast.current
    return Autograd.op(.matmul, inputs: [a, b]) {
        let sa = a.shape, sb = b.shape
        let ra = Autocast.operand(a, precision, label: "matmul_a_autocast")
        let rb = Autocast.operand(b, precision, label: "matmul_b_autocast")
        let values = GEMMValues(precision)
        let out = matmulKernel(ra, rb, values: values)
        if let precision { Autocast.roundInPlace(out, precision) }
        // A parameter operand is saved as itself (no bytes) and rounded again for backward.
        return OpResult(out, saving: [("a", Autocast.saved(a, ra)), ("b", Autocast.saved(b, rb))]) { ctx, g in
            let g = Autocast.operand(g, precision, label: "matmul_grad_autocast")
            let x = Autocast.restored(ctx.saved[0], precision, label: "matmul_a_autocast")
            let y = Autocast.restored(ctx.saved[1], precision, label: "matmul_b_autocast")
            var ga: Tensor? = nil, gb: Tensor? = nil
            if ctx.needsInputGrad[0] {
                ga = matmulKernel(g, y.transposed(), values: values).summed(toShape: sa)
            }
            if ctx.needsInputGrad[1] {
                if x.rank > 2 && y.rank == 2 {
                    // Shared weight: fold the batch axes into the GEMM's K dimension.
                    let x2 = x.reshapedForKernel([-1, x.shape[x.rank - 1]])
                    let g2 = g.reshapedForKernel([-1, g.shape[g.rank - 1]])
                    gb = matmulKernel(x2.transposed(), g2, values: values)
                } else {
                    gb = matmulKernel(x.transposed(), g, values: values).summed(toShape: sb)
                }
            }
            return Autocast.gradients([ga, gb], precision)
        }
    }
}

/// A linear layer's product: `y = x·Wᵀ + b` over the last axis of `x` (`[..., in]`), `weight`
/// `[out, in]` as in PyTorch, `bias` `[out]` or nil. One GEMM over all rows of `x`, the bias
/// written first and accumulated by the GEMM (`beta = 1`, PyTorch's `addmm`): no separate bias-add
/// tensor, so the output a selective policy keeps is the one later ops save.
/// Saves: `x` (`4·numel(x)` bytes) and the weight (a parameter: no extra bytes).
/// Backward: `dx = dy·W`, `dW = dyᵀ·x` over all rows, `db = Σ_rows dy`.
/// Under autocast (``AutocastPrecision``) `x`, `W` and the bias are rounded to the precision, the
/// output too; the rounded `x` is what is saved (its values are the precision's), the weight
/// parameter as itself (rounded again in backward); backward rounds the output gradient and the
/// gradients it returns.
public func linear(_ x: Tensor, weight: Tensor, bias: Tensor?) -> Tensor {
    requireLinearOperands("linear", x, weight, bias)
    let precision = Autocast.current
    return Autograd.op(.linear, inputs: [x, weight] + [bias].compactMap { $0 }) {
        let xShape = x.shape, hasBias = bias != nil
        let x = Autocast.operand(x, precision, label: "linear_input_autocast")
        let rw = Autocast.operand(weight, precision, label: "linear_weight_autocast")
        let rb = bias.map { Autocast.operand($0, precision, label: "linear_bias_autocast") }
        let values = GEMMValues(precision)
        let out = linearKernel(x, weight: rw, bias: rb, values: values)
        if let precision { Autocast.roundInPlace(out, precision) }
        return OpResult(out, saving: [("input", x), ("weight", Autocast.saved(weight, rw))]) { ctx, g in
            let g = Autocast.operand(g, precision, label: "linear_grad_autocast")
            let xs = ctx.saved[0], w = Autocast.restored(ctx.saved[1], precision, label: "linear_weight_autocast")
            let features = w.shape[1], outFeatures = w.shape[0]
            let g2 = g.reshapedForKernel([-1, outFeatures])
            var grads: [Tensor?] = [nil, nil]
            if ctx.needsInputGrad[0] {
                grads[0] = matmulKernel(g2, w, values: values).reshapedForKernel(xShape)
            }
            if ctx.needsInputGrad[1] {
                grads[1] = matmulKernel(g2.transposed(), xs.reshapedForKernel([-1, features]), values: values)
            }
            if hasBias { grads.append(ctx.needsInputGrad[2] ? g.summed(toShape: [outFeatures]) : nil) }
            return Autocast.gradients(grads, precision)
        }
    }
}

/// The operands of `op` (``linear(_:weight:bias:)``, ``float8Linear(_:weight:bias:scales:options:)``):
/// float32, weight `[out, in]`, input ending in `in` features, bias `[out]`.
func requireLinearOperands(_ op: String, _ x: Tensor, _ weight: Tensor, _ bias: Tensor?) {
    precondition(x.dtype == .float32 && weight.dtype == .float32, "\(op): needs float32, got input \(x.dtype) and weight \(weight.dtype)")
    precondition(weight.rank == 2, "\(op): weight must be [out, in], got shape \(weight.shape)")
    precondition(x.rank >= 1 && x.shape[x.rank - 1] == weight.shape[1],
                 "\(op): input shape \(x.shape) does not end in the weight's \(weight.shape[1]) input features (weight \(weight.shape))")
    if let bias {
        precondition(bias.shape == [weight.shape[0]] && bias.dtype == .float32,
                     "\(op): bias shape \(bias.shape) \(bias.dtype) must be [\(weight.shape[0])] float32")
    }
}

/// Forward kernel of ``linear(_:weight:bias:)`` (no autograd); `values`: what the operands hold.
func linearKernel(_ x: Tensor, weight: Tensor, bias: Tensor?, values: GEMMValues = .float32) -> Tensor {
    let features = weight.shape[1], outFeatures = weight.shape[0]
    let x2 = x.contiguousInput()
    let rows = x.count / Swift.max(features, 1)
    let outShape = Array(x.shape.dropLast()) + [outFeatures]
    let out = Tensor(uninitializedShape: outShape, label: "linear")
    if out.count == 0 { return out }
    let w = weight.contiguousInput()
    let po = out.floatPointer
    var beta: Float = 0
    if let bias {
        let b = bias.contiguousInput()
        withExtendedLifetime(b) {
            let pb = UnsafePointer(b.floatPointer)
            parallelChunks(rows, grain: Swift.max(1, elementwiseGrain / Swift.max(outFeatures, 1))) { lo, hi in
                for r in lo..<hi { (po + r * outFeatures).update(from: pb, count: outFeatures) }
            }
        }
        beta = 1
    } else if features == 0 {
        po.initialize(repeating: 0, count: out.count)
        return out
    }
    if features > 0 {
        withExtendedLifetime((x2, w)) {
            sgemm(transA: false, transB: true, m: rows, n: outFeatures, k: features, a: x2.floatPointer, lda: features,
                  b: w.floatPointer, ldb: features, beta: beta, c: po, ldc: outFeatures, values: values)
        }
    }
    return out
}

extension Tensor {
    /// Reshape for kernel use (no autograd; copies only if not contiguous).
    func reshapedForKernel(_ newShape: [Int]) -> Tensor {
        noGrad { reshaped(newShape) }
    }
}

/// How a matrix (the last two axes of a tensor) is handed to GEMM.
private struct GEMMOperand {
    let tensor: Tensor
    let transposed: Bool
    let leadingDimension: Int

    init(_ t: Tensor) {
        let r = t.rank
        let rows = t.shape[r - 2], cols = t.shape[r - 1]
        let sr = t.strides[r - 2], sc = t.strides[r - 1]
        if (sc == 1 || cols == 1) && sr >= max(cols, 1) {
            tensor = t; transposed = false; leadingDimension = max(sr, 1)
        } else if (sr == 1 || rows == 1) && sc >= max(rows, 1) {
            tensor = t; transposed = true; leadingDimension = max(sc, 1)
        } else {
            let c = t.contiguousCopy(label: "matmul_operand")
            tensor = c; transposed = false; leadingDimension = max(cols, 1)
        }
    }
}

/// Forward kernel (no autograd); `values`: what the operands hold (``GEMMValues``).
func matmulKernel(_ a: Tensor, _ b: Tensor, values: GEMMValues = .float32) -> Tensor {
    precondition(a.dtype == .float32 && b.dtype == .float32, "matmul: needs float32, got \(a.dtype) and \(b.dtype)")
    precondition(a.rank >= 2 && b.rank >= 2, "matmul: needs operands of rank >= 2, got \(a.shape) and \(b.shape)")
    let m = a.shape[a.rank - 2], k = a.shape[a.rank - 1], n = b.shape[b.rank - 1]
    precondition(b.shape[b.rank - 2] == k, "matmul: inner dimensions differ: \(a.shape) · \(b.shape)")

    // A batched `a` with a shared 2-D `b`: one GEMM over all rows when `a`'s batch is contiguous.
    if b.rank == 2 && a.rank > 2 {
        let a2 = a.isContiguous ? a.reshapedForKernel([-1, k]) : a.contiguousCopy().reshapedForKernel([-1, k])
        let out2 = matmulKernel(a2, b, values: values)
        return Tensor(storage: out2.storage, shape: Array(a.shape.dropLast()) + [n],
                      strides: ShapeRules.contiguousStrides(Array(a.shape.dropLast()) + [n]), dtype: .float32)
    }

    let batchA = Array(a.shape.dropLast(2)), batchB = Array(b.shape.dropLast(2))
    let batch = ShapeRules.broadcast(batchA, batchB, op: "matmul")
    let outShape = batch + [m, n]
    let out = Tensor(uninitializedShape: outShape, label: "matmul")
    if out.count == 0 { return out }
    if k == 0 {
        out.floatPointer.initialize(repeating: 0, count: out.count)
        return out
    }
    let opA = GEMMOperand(a), opB = GEMMOperand(b)
    let aBatchStrides = broadcastStrides(opA.tensor, to: batch + [m, k]).dropLast(2)
    let bBatchStrides = broadcastStrides(opB.tensor, to: batch + [k, n]).dropLast(2)
    let batchCount = batch.reduce(1, *)
    let batchStrides = ShapeRules.contiguousStrides(batch)
    let pa = opA.tensor.floatPointer, pb = opB.tensor.floatPointer, pc = out.floatPointer
    let (ta, tb) = (Int32(opA.transposed ? 1 : 0), Int32(opB.transposed ? 1 : 0))
    let (lda, ldb) = (Int32(opA.leadingDimension), Int32(opB.leadingDimension))
    let aStrides = Array(aBatchStrides), bStrides = Array(bBatchStrides)
    // bf16 values with the bf16 GEMM: both operands converted once (their bit patterns' upper
    // halves), every batch entry's GEMM on the converted copies.
    let bf16 = values == .bfloat16 && Runtime.bfloat16Gemm == .sbgemm
    let ha = bf16 ? bfloat16Copy(UnsafePointer(pa), count: reachableElements(opA.tensor)) : nil
    let hb = bf16 ? bfloat16Copy(UnsafePointer(pb), count: reachableElements(opB.tensor)) : nil
    func gemm(_ i: Int, threads: Int32) {
        var r = i, offA = 0, offB = 0
        for d in 0..<batch.count {
            let idx = r / batchStrides[d]
            r -= idx * batchStrides[d]
            offA += idx * aStrides[d]
            offB += idx * bStrides[d]
        }
        if let ha, let hb {
            let qa = UnsafePointer(ha.rawPointer.assumingMemoryBound(to: UInt16.self)) + offA
            let qb = UnsafePointer(hb.rawPointer.assumingMemoryBound(to: UInt16.self)) + offB
            if threads > 0 {
                remat_sbgemm_raw(threads, ta, tb, Int32(m), Int32(n), Int32(k), 1, qa, lda, qb, ldb, 0, pc + i * m * n, Int32(n))
            } else {
                sbgemmRows(transA: opA.transposed, transB: opB.transposed, m: m, n: n, k: k, a: qa, lda: Int(lda),
                           b: qb, ldb: Int(ldb), beta: 0, c: pc + i * m * n, ldc: n)
            }
        } else if threads > 0 {
            remat_sgemm_raw(threads, ta, tb, Int32(m), Int32(n), Int32(k), 1, pa + offA, lda, pb + offB, ldb, 0, pc + i * m * n, Int32(n))
        } else {
            sgemm(transA: opA.transposed, transB: opB.transposed, m: m, n: n, k: k, a: pa + offA, lda: Int(lda),
                  b: pb + offB, ldb: Int(ldb), c: pc + i * m * n, ldc: n)
        }
    }
    // Many small GEMMs (attention heads): one single-threaded GEMM per batch entry, batch entries
    // split over the engine's threads. Large GEMMs: one after another, each using the threads itself.
    let smallGEMM = 2 * m * n * k < (1 << 25)
    if smallGEMM && batchCount > 1 && Runtime.threads > 1 {
        parallelChunks(batchCount, grain: 1) { lo, hi in
            for i in lo..<hi { gemm(i, threads: 1) }
        }
    } else {
        for i in 0..<batchCount { gemm(i, threads: 0) }
    }
    withExtendedLifetime((ha, hb)) {}
    return out
}

/// What a GEMM's operands hold: any float32 values, or bf16 values in float32 storage (autocast's
/// bf16 products), which the bf16 GEMM takes exactly when ``Runtime/bfloat16Gemm`` is `.sbgemm`.
enum GEMMValues: Sendable {
    case float32, bfloat16
    init(_ precision: AutocastPrecision?) { self = precision == .bfloat16 ? .bfloat16 : .float32 }
}

/// The elements a strided tensor's layout reaches from its first element (non-negative strides).
private func reachableElements(_ t: Tensor) -> Int {
    guard t.count > 0 else { return 0 }
    return zip(t.shape, t.strides).reduce(1) { $0 + ($1.0 - 1) * $1.1 }
}

/// `count` float32 values whose values are bf16, as bf16 bit patterns (a temporary).
private func bfloat16Copy(_ p: UnsafePointer<Float>, count: Int) -> Tensor {
    let t = Tensor(uninitializedShape: [count], dtype: .bfloat16, label: "gemm_bf16_operand")
    let q = t.rawPointer.assumingMemoryBound(to: UInt16.self)
    parallelChunks(count, grain: elementwiseGrain) { lo, hi in remat_f32_to_bf16(p + lo, q + lo, hi - lo) }
    return t
}

/// ``sgemm(transA:transB:m:n:k:a:lda:b:ldb:beta:c:ldc:values:)`` on bf16 operands (the library's
/// bf16 GEMM), with the same threading (``splitOverRows(m:n:k:whole:rows:)``).
private func sbgemmRows(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, a: UnsafePointer<UInt16>, lda: Int,
                        b: UnsafePointer<UInt16>, ldb: Int, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
    splitOverRows(m: m, n: n, k: k, whole: {
        remat_sbgemm_raw(Runtime.gemmThreading == .library ? 0 : 1, transA ? 1 : 0, transB ? 1 : 0, Int32(m), Int32(n), Int32(k), 1,
                         a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }, rows: { r0, r1 in
        remat_sbgemm_raw(1, transA ? 1 : 0, transB ? 1 : 0, Int32(r1 - r0), Int32(n), Int32(k), 1, transA ? a + r0 : a + r0 * lda,
                         Int32(lda), b, Int32(ldb), beta, c + r0 * ldc, Int32(ldc))
    })
}

/// The engine's GEMM threading: `whole()` once (library threading, one thread, or a GEMM below
/// 32 MFLOP or 32 rows), else `rows(r0, r1)` for blocks of 16 output rows (the kernels' row tile)
/// spread over the engine's threads, each a single-threaded GEMM. Row r of op(A) is row r of A
/// (`lda` stride) or column r of Aᵀ (unit stride).
private func splitOverRows(m: Int, n: Int, k: Int, whole: () -> Void, rows: (Int, Int) -> Void) {
    if Runtime.gemmThreading == .library || Runtime.threads == 1 || 2 * m * n * k < (1 << 25) || m < 2 * 16 {
        whole()
        return
    }
    parallelChunks((m + 15) / 16, grain: 1) { lo, hi in rows(lo * 16, Swift.min(m, hi * 16)) }
}

/// How large GEMMs use the engine's threads.
public enum GEMMThreading: String, Sendable {
    /// OpenBLAS runs its own worker threads (they spin between calls).
    case library
    /// OpenBLAS runs single-threaded; the engine splits a GEMM's output rows over its own threads,
    /// so one thread pool serves GEMMs and every other kernel.
    case engine
}

extension Runtime {
    /// The GEMM threading mode (default `.engine`; env `REMAT_GEMM_THREADING=library|engine`).
    public static var gemmThreading: GEMMThreading {
        get { gemmThreadingStorage.withLock { $0 } }
        set { gemmThreadingStorage.withLock { $0 = newValue } }
    }
}

private let gemmThreadingStorage = Mutex<GEMMThreading>(
    getenv("REMAT_GEMM_THREADING").flatMap { GEMMThreading(rawValue: String(cString: $0)) } ?? .engine)

/// Row-major `C[m, n] = op(A)·op(B) + beta·C` with the engine's threading policy (no autograd).
/// `values == .bfloat16` with ``Runtime/bfloat16Gemm`` `.sbgemm`: the operands are converted to bf16
/// (exactly: their values are bf16) and the library's bf16 GEMM runs.
func sgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int,
           b: UnsafePointer<Float>, ldb: Int, beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int,
           values: GEMMValues = .float32) {
    if values == .bfloat16, Runtime.bfloat16Gemm == .sbgemm, m > 0, n > 0, k > 0 {
        // The stored extents: op(A) is m×k (A stored m×k, or k×m transposed), op(B) k×n.
        let ha = bfloat16Copy(a, count: transA ? (k - 1) * lda + m : (m - 1) * lda + k)
        let hb = bfloat16Copy(b, count: transB ? (n - 1) * ldb + k : (k - 1) * ldb + n)
        withExtendedLifetime((ha, hb)) {
            sbgemmRows(transA: transA, transB: transB, m: m, n: n, k: k, a: ha.rawPointer.assumingMemoryBound(to: UInt16.self), lda: lda,
                       b: hb.rawPointer.assumingMemoryBound(to: UInt16.self), ldb: ldb, beta: beta, c: c, ldc: ldc)
        }
        return
    }
    splitOverRows(m: m, n: n, k: k, whole: {
        remat_sgemm(transA ? 1 : 0, transB ? 1 : 0, Int32(m), Int32(n), Int32(k), 1, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }, rows: { r0, r1 in
        remat_sgemm_raw(1, transA ? 1 : 0, transB ? 1 : 0, Int32(r1 - r0), Int32(n), Int32(k), 1, transA ? a + r0 : a + r0 * lda,
                        Int32(lda), b, Int32(ldb), beta, c + r0 * ldc, Int32(ldc))
    })
}
