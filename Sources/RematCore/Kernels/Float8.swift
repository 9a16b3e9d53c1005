import CRematKernels
import Synchronization

/// FP8 training arithmetic: OCP E4M3FN for the forward operands, E5M2 for output gradients, one
/// power-of-two scale per tensor chosen from its amax: `q = enc(x·2ᵏ)`, k the largest integer
/// with amax·2ᵏ ≤ the format's largest finite value (448, 57344), amax the largest finite |x|
/// (k = 0 without one). Decoding multiplies by 2⁻ᵏ exactly, so the only rounding is FP8's
/// (round to nearest even, saturating; NaN stays NaN). This CPU has no FP8 arithmetic: GEMMs run
/// in float32 on dequantized row tiles, so FP8 here saves memory and shows the numerics; it does
/// not make a step faster.
public enum Float8 {
    /// The largest finite value of an FP8 format.
    static func largest(_ format: DType) -> Float {
        precondition(format == .float8E4M3FN || format == .float8E5M2, "Float8: \(format) is not an FP8 format")
        return format == .float8E4M3FN ? 448 : 57344
    }

    /// The scale exponent for `x` (contiguous float32) in `format`, from its amax.
    static func exponent(_ x: Tensor, _ format: DType) -> Int8 {
        let n = x.count
        guard n > 0 else { return 0 }
        let amax = Mutex<Float>(0)
        withExtendedLifetime(x) {
            let p = UnsafePointer(x.floatPointer)
            parallelChunks(n, grain: elementwiseGrain) { lo, hi in
                let m = remat_absmax_finite_f32(p, lo, hi)
                amax.withLock { $0 = Swift.max($0, m) }
            }
        }
        return remat_fp8_exponent(amax.withLock { $0 }, largest(format))
    }

    /// `x` (contiguous float32) cast to `format` with scale 2^`exponent`: a new contiguous tensor.
    static func cast(_ x: Tensor, to format: DType, exponent k: Int8, label: String) -> Tensor {
        let q = Tensor(uninitializedShape: x.shape, dtype: format, label: label)
        let n = x.count
        guard n > 0 else { return q }
        let e4m3 = format == .float8E4M3FN
        withExtendedLifetime((x, q)) {
            let src = UnsafePointer(x.floatPointer)
            let dst = q.rawPointer.assumingMemoryBound(to: UInt8.self)
            parallelChunks(n, grain: elementwiseGrain) { lo, hi in
                _ = e4m3 ? remat_f32_to_e4m3fn_pow2(src, dst, lo, hi, Int32(k)) : remat_f32_to_e5m2_pow2(src, dst, lo, hi, Int32(k))
            }
        }
        return q
    }

    /// Elements `[begin, begin + count)` of FP8 tensor `q` (cast with `exponent`), decoded into `dst`.
    static func decode(_ q: Tensor, exponent k: Int8, from begin: Int, count: Int, into dst: UnsafeMutablePointer<Float>) {
        let e4m3 = q.dtype == .float8E4M3FN
        withExtendedLifetime(q) {
            let src = UnsafePointer(q.rawPointer.assumingMemoryBound(to: UInt8.self)) + begin
            parallelChunks(count, grain: elementwiseGrain) { lo, hi in
                if e4m3 { remat_e4m3fn_to_f32_pow2(src, dst, lo, hi, Int32(k)) } else { remat_e5m2_to_f32_pow2(src, dst, lo, hi, Int32(k)) }
            }
        }
    }

    /// `q` decoded into a new float32 tensor (tests and references).
    public static func decoded(_ q: Tensor, exponent k: Int8) -> Tensor {
        let out = Tensor(uninitializedShape: q.shape, label: "float8_decoded")
        decode(q, exponent: k, from: 0, count: q.count, into: out.floatPointer)
        return out
    }

    /// `x` cast to `format` with the scale its amax gives: the FP8 tensor and its exponent.
    public static func quantized(_ x: Tensor, to format: DType) -> (data: Tensor, exponent: Int8) {
        let c = x.contiguousInput()
        let k = exponent(c, format)
        return (cast(c, to: format, exponent: k, label: "float8_cast"), k)
    }
}

/// What an FP8 linear's forward decided, by the op's stable name: the exponents of its input and
/// weight casts. A recompute of the op (a checkpoint region re-running it) casts with them instead
/// of measuring the amaxes again, so it is bitwise the forward (pytorch/ao#893's expectation).
/// Held by the layer; written by each forward, read by recomputes.
///
/// Names repeat every step, so a record serves the latest forward: two forwards of one model
/// whose graphs are alive at once (forward, forward, backward, backward) would recompute the first
/// with the second's scales.
public final class Float8ScaleRecord: Sendable {
    private let entries = Mutex<[String: (input: Int8, weight: Int8)]>([:])
    private let amaxes = Atomic<Int>(0)

    public init() {}

    /// How many amaxes the ops using this record measured (forward input and weight, backward
    /// output gradient): a recompute adds none.
    public var amaxComputations: Int { amaxes.load(ordering: .relaxed) }

    func recorded(_ op: String) -> (input: Int8, weight: Int8)? { entries.withLock { $0[op] } }
    func record(_ op: String, input: Int8, weight: Int8) { entries.withLock { $0[op] = (input, weight) } }

    /// The exponent for `x` in `format` from its amax, counted.
    func measure(_ x: Tensor, _ format: DType) -> Int8 {
        amaxes.add(1, ordering: .relaxed)
        return Float8.exponent(x, format)
    }
}

/// How an FP8 linear saves for backward.
public struct Float8LinearOptions: Sendable, Hashable {
    /// Save the float32 input (and weight) as TorchAO's `Float8Linear` does and cast them again in
    /// backward (with the forward's scales), instead of the 1-byte FP8 input: only to reproduce
    /// the FP8-with-checkpointing memory table of seed 000.
    public var saveHighPrecision: Bool

    public init(saveHighPrecision: Bool = false) { self.saveHighPrecision = saveHighPrecision }
}

/// `x·Wᵀ + b` in FP8: `x` and `weight` cast to E4M3FN (per-tensor scales from their amaxes),
/// multiplied in float32 on dequantized row tiles, plus the float32 bias. Backward casts the
/// output gradient to E5M2 and computes the input and weight gradients from the FP8 operands; the
/// bias gradient is the float32 sum of the output gradient.
///
/// Saves: the FP8 input (`input_fp8`, 1 byte per element) and the weight (a parameter: no bytes),
/// whose cast backward makes again with the recorded scale; with
/// ``Float8LinearOptions/saveHighPrecision``, the float32 input instead. The scales come from
/// `scales` in a recompute (no amax is measured again).
public func float8Linear(_ x: Tensor, weight: Tensor, bias: Tensor?, scales: Float8ScaleRecord,
                         options: Float8LinearOptions = .init()) -> Tensor {
    requireLinearOperands("float8_linear", x, weight, bias)
    return Autograd.op(.float8Linear, inputs: [x, weight] + [bias].compactMap { $0 }) {
        let name = Autograd.peekOpName(OpKind.float8Linear.rawValue, AutogradContext.current)
        let xc = x.contiguousInput(), wc = weight.contiguousInput()
        let recorded = isRecomputing ? scales.recorded(name) : nil
        let kx = recorded?.input ?? scales.measure(xc, .float8E4M3FN)
        let kw = recorded?.weight ?? scales.measure(wc, .float8E4M3FN)
        if recorded == nil { scales.record(name, input: kx, weight: kw) }
        let xq = Float8.cast(xc, to: .float8E4M3FN, exponent: kx, label: "float8_input")
        let out = float8LinearForward(xq, kx, weight: wc, kw, bias: bias)
        let xShape = x.shape, outFeatures = weight.shape[0], hasBias = bias != nil, hp = options.saveHighPrecision
        let saving: [(role: String, tensor: Tensor)] = hp ? [("input", x), ("weight", weight)] : [("input_fp8", xq), ("weight", weight)]
        return OpResult(out, saving: saving) { ctx, g in
            let xq = hp ? Float8.cast(ctx.saved[0].contiguousInput(), to: .float8E4M3FN, exponent: kx, label: "float8_input") : ctx.saved[0]
            let (dx, dw) = float8LinearBackward(g.contiguousInput(), xq: xq, kx, weight: ctx.saved[1].contiguousInput(), kw,
                                                needs: (ctx.needsInputGrad[0], ctx.needsInputGrad[1]), scales: scales)
            var grads: [Tensor?] = [dx.map { $0.reshapedForKernel(xShape) }, dw]
            if hasBias { grads.append(ctx.needsInputGrad[2] ? g.summed(toShape: [outFeatures]) : nil) }
            return grads
        }
    }
}

/// Rows of an operand decoded at once: tiles of about 512 KiB of float32 (at least 32 rows).
private func tileRows(_ rows: Int, width: Int) -> Int { Swift.max(1, Swift.min(rows, Swift.max(32, (1 << 17) / Swift.max(width, 1)))) }

extension Float8 {
    /// `count` float32 values at `src` rounded through `format` with scale 2^`k` (cast, then
    /// decoded) into `dst`, a chunk at a time through a small buffer: the FP8 values as float32
    /// without an FP8 copy of the whole tensor.
    static func roundTrip(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, count: Int, format: DType, exponent k: Int8) {
        let e4m3 = format == .float8E4M3FN
        let chunk = 1 << 16
        let buffer = Tensor(uninitializedShape: [Swift.min(chunk, Swift.max(count, 1))], dtype: format, label: "float8_chunk")
        withExtendedLifetime(buffer) {
            let q = buffer.rawPointer.assumingMemoryBound(to: UInt8.self)
            for c0 in stride(from: 0, to: count, by: chunk) {
                let n = Swift.min(chunk, count - c0)
                if e4m3 {
                    _ = remat_f32_to_e4m3fn_pow2(src + c0, q, 0, n, Int32(k))
                    remat_e4m3fn_to_f32_pow2(q, dst + c0, 0, n, Int32(k))
                } else {
                    _ = remat_f32_to_e5m2_pow2(src + c0, q, 0, n, Int32(k))
                    remat_e5m2_to_f32_pow2(q, dst + c0, 0, n, Int32(k))
                }
            }
        }
    }

    /// `w` (contiguous float32) as the float32 values of its cast with `exponent` (a temporary of
    /// its size).
    static func roundTripped(_ w: Tensor, exponent k: Int8) -> Tensor {
        let out = Tensor(uninitializedShape: w.shape, label: "float8_weight")
        withExtendedLifetime(w) { roundTrip(UnsafePointer(w.floatPointer), out.floatPointer, count: w.count, format: .float8E4M3FN, exponent: k) }
        return out
    }
}

/// `deq(xq)·deq(wq)ᵀ + b`: the weight's FP8 values decoded whole (a temporary of its size), `xq`
/// decoded a tile of rows at a time.
private func float8LinearForward(_ xq: Tensor, _ kx: Int8, weight: Tensor, _ kw: Int8, bias: Tensor?) -> Tensor {
    let features = weight.shape[1], outFeatures = weight.shape[0]
    let rows = xq.count / Swift.max(features, 1)
    let out = Tensor(uninitializedShape: Array(xq.shape.dropLast()) + [outFeatures], label: "float8_linear")
    guard out.count > 0 else { return out }
    let po = out.floatPointer
    if let bias {
        let b = bias.contiguousInput()
        withExtendedLifetime(b) {
            let pb = UnsafePointer(b.floatPointer)
            for r in 0..<rows { (po + r * outFeatures).update(from: pb, count: outFeatures) }
        }
    } else if features == 0 {
        po.initialize(repeating: 0, count: out.count)
    }
    guard features > 0 else { return out }
    let wd = Float8.roundTripped(weight, exponent: kw)
    let tile = tileRows(rows, width: features)
    let xd = Tensor(uninitializedShape: [tile, features], label: "float8_tile")
    withExtendedLifetime((wd, xd)) {
        for r0 in stride(from: 0, to: rows, by: tile) {
            let m = Swift.min(tile, rows - r0)
            Float8.decode(xq, exponent: kx, from: r0 * features, count: m * features, into: xd.floatPointer)
            sgemm(transA: false, transB: true, m: m, n: outFeatures, k: features, a: xd.floatPointer, lda: features,
                  b: wd.floatPointer, ldb: features, beta: bias == nil ? 0 : 1, c: po + r0 * outFeatures, ldc: outFeatures)
        }
    }
    return out
}

/// The input and weight gradients of an FP8 linear from output gradient `g` (float32; its E5M2
/// values with the scale its amax gives): `deq(gq)·deq(wq)` and `deq(gq)ᵀ·deq(xq)`, a tile of rows
/// of `g` rounded through E5M2 and of `xq` decoded at a time (the weight gradient accumulates over
/// tiles); the weight's FP8 values decoded whole when the input gradient is needed.
private func float8LinearBackward(_ g: Tensor, xq: Tensor, _ kx: Int8, weight: Tensor, _ kw: Int8,
                                  needs: (input: Bool, weight: Bool), scales: Float8ScaleRecord) -> (Tensor?, Tensor?) {
    let features = weight.shape[1], outFeatures = weight.shape[0]
    let rows = g.count / Swift.max(outFeatures, 1)
    let dx = needs.input ? Tensor(uninitializedShape: [rows, features], label: "float8_linear_grad") : nil
    let dw = needs.weight ? Tensor(uninitializedShape: [outFeatures, features], label: "float8_linear_grad") : nil
    guard needs.input || needs.weight else { return (nil, nil) }
    if rows == 0 || outFeatures == 0 || features == 0 {
        for t in [dx, dw].compactMap({ $0 }) where t.count > 0 { t.floatPointer.initialize(repeating: 0, count: t.count) }
        return (dx, dw)
    }
    let kg = scales.measure(g, .float8E5M2)
    let wd = needs.input ? Float8.roundTripped(weight, exponent: kw) : nil
    let tile = tileRows(rows, width: Swift.max(features, outFeatures))
    let gd = Tensor(uninitializedShape: [tile, outFeatures], label: "float8_tile")
    let xd = needs.weight ? Tensor(uninitializedShape: [tile, features], label: "float8_tile") : nil
    withExtendedLifetime((g, wd, gd, xd)) {
        let pg = UnsafePointer(g.floatPointer)
        for r0 in stride(from: 0, to: rows, by: tile) {
            let m = Swift.min(tile, rows - r0)
            Float8.roundTrip(pg + r0 * outFeatures, gd.floatPointer, count: m * outFeatures, format: .float8E5M2, exponent: kg)
            if let dx, let wd {
                sgemm(transA: false, transB: false, m: m, n: features, k: outFeatures, a: gd.floatPointer, lda: outFeatures,
                      b: wd.floatPointer, ldb: features, c: dx.floatPointer + r0 * features, ldc: features)
            }
            if let dw, let xd {
                Float8.decode(xq, exponent: kx, from: r0 * features, count: m * features, into: xd.floatPointer)
                sgemm(transA: true, transB: false, m: outFeatures, n: features, k: m, a: gd.floatPointer, lda: outFeatures,
                      b: xd.floatPointer, ldb: features, beta: r0 == 0 ? 0 : 1, c: dw.floatPointer, ldc: features)
            }
        }
    }
    return (dx, dw)
}
