import Remat
import Testing

/// Values that break careless codecs: zeros of both signs, float32 subnormals, the extremes, the
/// FP8 and float16 rounding boundaries, NaN, ±inf, and random values over every binade.
private func adversarialValues(seed: UInt64, random: Int) -> [Float] {
    var v: [Float] = [0, -0.0, 1, -1, .leastNonzeroMagnitude, -.leastNonzeroMagnitude, .leastNormalMagnitude,
                      0x1p-130, -0x1.8p-140, .greatestFiniteMagnitude, -.greatestFiniteMagnitude, 0x1.FFp127,
                      447.9, 448, 464, 465, -480, 57344, 61440, 65504, 65519, 65520, -65536, 1e-8, 3e-5,
                      0x1p-6, 0x1p-9, 0x1p-10, 0x1.8p-10, 0x1p-14, 0x1p-24, 0x1p-25]
    let g = RandomGenerator(seed: seed)
    let normals = Tensor.randn([random], generator: g).toArray()
    let exps = Tensor.randn([random], generator: g).toArray()
    for i in 0..<random {   // random significands times 2^e, e spread over most of float32's range
        let e = Int((exps[i] * 40).rounded()).clamped(-120, 120)
        v.append(normals[i] * Float(sign: .plus, exponent: e, significand: 1))
    }
    return v
}

private func withNonFinite(_ v: [Float]) -> [Float] { v + [.nan, -.nan, .infinity, -.infinity] }

private extension Int {
    func clamped(_ lo: Int, _ hi: Int) -> Int { Swift.min(Swift.max(self, lo), hi) }
}

private func pack(_ codec: Codec, _ values: [Float], shape: [Int]? = nil) -> (PackedTensor, [Float]) {
    let t = Tensor(values, shape: shape ?? [values.count])
    let p = codec.pack(t)!
    return (p, p.unpack().toArray())
}

private func exponents(_ p: PackedTensor) -> [Int] {
    let e = p.parts[1]
    let ptr = e.rawPointer.assumingMemoryBound(to: Int8.self)
    return (0..<e.count).map { Int(ptr[$0]) }
}

private func pow2(_ k: Int) -> Double { Double(sign: .plus, exponent: k, significand: 1) }

@Suite struct CodecTests {
    @Test func spellingsRoundTripAndBadOnesSayWhy() throws {
        for c in Codec.all + [.fp8E4M3(.perGroup(32)), .fp8E5M2(.perGroup(7))] {
            #expect(try Codec.parse(c.description) == c)
        }
        #expect(throws: CodecError.unknown("fp4")) { try Codec.parse("fp4") }
        #expect(throws: CodecError.self) { try Codec.parse("fp8-e4m3/g0") }
        #expect(throws: CodecError.self) { try Codec.parse("fp8-e4m3/128") }
        #expect(throws: CodecError.self) { try Codec.parse("bf16/g128") }
        #expect(throws: CodecError.self) { try Codec.parse("fp8-e4m3/g99999999999") }
        #expect(Codec.all.filter(\.isLossless) == [.none, .reluMask, .bits, .causal])
    }

    @Test func packedBytesArePredictedExactly() {
        let g = RandomGenerator(seed: 3)
        for shape in [[0], [], [1], [7], [3, 5], [2, 3, 129], [4, 1000]] {
            let t = Tensor.randn(shape, generator: g)
            let mask = Tensor(t.toArray().map { $0 > 0 ? 1 : 0 }, shape: shape)
            for c in Codec.all + [.fp8E4M3(.perGroup(5))] where c != .causal && c != .causalBF16 {   // square only: below
                guard let p = c.pack(c == .bits ? mask : t) else { Issue.record("\(c) did not pack \(shape)"); continue }
                #expect(p.byteCount == c.packedByteCount(shape: shape), "\(c) \(shape)")
                #expect(p.unpack().shape == shape)
            }
        }
        #expect(Codec.fp8E4M3(.perGroup(128)).packedByteCount(shape: [8, 256]) == 2048 + 16)
        #expect(Codec.int8.packedByteCount(shape: [8, 256]) == 2048 + 32)
        #expect(Codec.reluMask.packedByteCount(shape: [9]) == 2)
    }

    @Test func bf16MeetsItsBound() {
        let v = withNonFinite(adversarialValues(seed: 1, random: 4000))
        let (p, back) = pack(.bf16, v)
        var overflows = 0
        for (x, y) in zip(v, back) {
            if x.isNaN { #expect(y.isNaN); continue }
            if x.isInfinite { #expect(y == x); continue }
            if x.magnitude >= 0x1.FFp127 { #expect(y.isInfinite && y.sign == x.sign); overflows += 1; continue }
            let err = Double(y) - Double(x)
            let bound = x.magnitude >= .leastNormalMagnitude ? 0x1p-8 * Double(x.magnitude) : 0x1p-134
            #expect(err.magnitude <= bound, "bf16 \(x) -> \(y)")
        }
        #expect(p.saturated == overflows && overflows >= 3)
    }

    @Test func fp16MeetsItsBound() {
        let v = withNonFinite(adversarialValues(seed: 2, random: 4000))
        let (p, back) = pack(.fp16, v)
        var overflows = 0
        for (x, y) in zip(v, back) {
            if x.isNaN { #expect(y.isNaN); continue }
            if x.isInfinite { #expect(y == x); continue }
            if x.magnitude >= 65520 { #expect(y.isInfinite && y.sign == x.sign); overflows += 1; continue }
            let err = Double(y) - Double(x)
            let bound = x.magnitude >= 0x1p-14 ? 0x1p-11 * Double(x.magnitude) : 0x1p-25
            #expect(err.magnitude <= bound, "fp16 \(x) -> \(y)")
        }
        #expect(p.saturated == overflows && overflows > 100)
    }

    /// FP8: the stored power-of-two exponent is the largest that keeps the group's finite amax
    /// within the format, and every finite element is within max(rel·|x|, abs·2⁻ᵏ).
    @Test(arguments: [(Codec.fp8E4M3(.perTensor), 448.0, 0x1p-4, 0x1p-10),
                      (Codec.fp8E4M3(.perGroup(16)), 448.0, 0x1p-4, 0x1p-10),
                      (Codec.fp8E5M2(.perTensor), 57344.0, 0x1p-3, 0x1p-17),
                      (Codec.fp8E5M2(.perGroup(33)), 57344.0, 0x1p-3, 0x1p-17)])
    func fp8MeetsItsBound(codec: Codec, fmax: Double, rel: Double, abs: Double) {
        // Groups of very different magnitude, each with a subnormal or a non-finite value inside.
        var v: [Float] = []
        let g = RandomGenerator(seed: 9)
        for (i, scale) in [Float(1e-30), 1e-3, 1, 300, 1e6, 1e30, 0x1p-140].enumerated() {
            let r = Tensor.randn([40], generator: g).toArray().map { $0 * scale }
            v += r + [[Float.nan, .infinity, -.infinity, 0x1p-145, -0.0, 0][i % 6]]
        }
        let (p, back) = pack(codec, v)
        let group: Int = if case .fp8E4M3(.perGroup(let s)) = codec { s } else if case .fp8E5M2(.perGroup(let s)) = codec { s } else { v.count }
        let ks = exponents(p)
        #expect(ks.count == (v.count + group - 1) / group)
        var infinities = 0
        for (gi, k) in ks.enumerated() {
            let members = Array(v[(gi * group)..<min(v.count, (gi + 1) * group)])
            let amax = Double(members.filter(\.isFinite).map(\.magnitude).max() ?? 0)
            if amax > 0 {
                #expect(amax * pow2(k) <= fmax, "group \(gi): amax \(amax) k \(k)")
                #expect(k == 127 || amax * pow2(k + 1) > fmax, "group \(gi): k \(k) is not the largest")
            } else {
                #expect(k == 0)
            }
            for (j, x) in members.enumerated() {
                let y = back[gi * group + j]
                if x.isNaN { #expect(y.isNaN); continue }
                if x.isInfinite {
                    #expect(Double(y) == fmax * pow2(-k) * (x < 0 ? -1 : 1), "inf -> \(y)")
                    infinities += 1
                    continue
                }
                let err = (Double(y) - Double(x)).magnitude
                // The decode multiplies by 2^-k exactly unless the result is a float32 subnormal
                // (one more rounding, at most half of 2^-149).
                let bound = max(rel * Double(x.magnitude), abs * pow2(-k)) + 0x1p-150
                #expect(err <= bound, "\(codec) group \(gi) k \(k): \(x) -> \(y), error \(err) > \(bound)")
            }
        }
        #expect(p.saturated == infinities && infinities >= 2)
    }

    /// Per-group scaling keeps small values that one scale per tensor flushes to zero.
    @Test func perGroupScalingKeepsSmallGroups() {
        let g = RandomGenerator(seed: 4)
        let big = Tensor.randn([128], generator: g).toArray().map { $0 * 1000 }
        let small = Tensor.randn([128], generator: g).toArray().map { $0 * 1e-4 }
        let v = big + small
        let perTensor = pack(.fp8E4M3(.perTensor), v).1
        let perGroup = pack(.fp8E4M3(.perGroup(128)), v).1
        func relError(_ back: [Float]) -> Double {
            zip(small, back[128...]).map { (Double($1) - Double($0)).magnitude / Double($0.magnitude) }.max()!
        }
        #expect(relError(perGroup) <= 0x1p-4 + 1e-12)
        #expect(relError(perTensor) > 0.5)
    }

    @Test func int8MeetsItsBoundPerRow() {
        let rows = 6, cols = 300
        var v = adversarialValues(seed: 5, random: rows * cols - 36)
        v = Array(v.prefix(rows * cols - 4)) + [.nan, .infinity, -.infinity, .nan]
        // One row of tiny values next to rows of huge ones: each row has its own scale.
        for j in 0..<cols { v[j] = Float(j % 7) * 1e-20 }
        let (p, back) = pack(.int8, v, shape: [2, 3, cols])
        let scales = p.parts[1].toArray()
        #expect(scales.count == rows)
        var nonFinite = 0
        for r in 0..<rows {
            let row = Array(v[(r * cols)..<((r + 1) * cols)])
            let amax = Double(row.filter(\.isFinite).map(\.magnitude).max()!)
            #expect(Double(scales[r]) == Double(Float(amax) / 127))
            for (j, x) in row.enumerated() {
                let y = back[r * cols + j]
                if x.isNaN { #expect(y == 0); nonFinite += 1; continue }
                if x.isInfinite { #expect(y == 127 * scales[r] * (x < 0 ? -1 : 1)); nonFinite += 1; continue }
                let err = (Double(y) - Double(x)).magnitude
                #expect(err <= amax * (1.0 / 254 + 0x1p-20), "row \(r): \(x) -> \(y)")
            }
        }
        #expect(p.saturated == nonFinite && nonFinite == 4)
    }

    @Test func bitsPackOnlyMasks() {
        let mask: [Float] = (0..<1001).map { $0 % 3 == 0 ? 1 : 0 }
        let (p, back) = pack(.bits, mask)
        #expect(back.map(\.bitPattern) == mask.map(\.bitPattern))
        #expect(p.byteCount == 126)
        #expect(Codec.bits.pack(Tensor([0, 1, 2], shape: [3])) == nil)
        #expect(Codec.bits.pack(Tensor([0, 1, -0.0], shape: [3])) == nil)
        #expect(Codec.bits.pack(Tensor([1, .nan], shape: [2])) == nil)
    }

    /// Causal matrices keep their lower triangles: bitwise with `causal`, within bf16's bound with
    /// `causal-bf16`, zeros above the diagonal exactly; a nonzero above a diagonal (−0.0 too) or a
    /// non-square tensor is left as it is.
    @Test func causalPacksLowerTrianglesOnly() {
        for (n, t) in [(1, 1), (3, 5), (2, 64), (1, 300)] {
            var v = adversarialValues(seed: UInt64(t), random: n * t * t)
            v = Array(v.prefix(n * t * t))
            for i in v.indices where i % t > (i / t) % t { v[i] = 0 }
            let x = Tensor(v, shape: [n, t, t])
            let exact = Codec.causal.pack(x)!
            #expect(exact.byteCount == 4 * n * t * (t + 1) / 2 && exact.byteCount == Codec.causal.packedByteCount(shape: [n, t, t]))
            #expect(exact.unpack().toArray().map(\.bitPattern) == v.map(\.bitPattern), "causal \(n)×\(t)²")
            let rounded = Codec.causalBF16.pack(x)!
            #expect(rounded.byteCount == 2 * n * t * (t + 1) / 2)
            let back = rounded.unpack().toArray()
            let viaBF16 = Codec.bf16.pack(x)!.unpack().toArray()
            #expect(back.map(\.bitPattern) == viaBF16.map(\.bitPattern), "causal-bf16 rounds as bf16")
        }
        var v = [Float](repeating: 1, count: 16)
        for i in v.indices where i % 4 > i / 4 { v[i] = 0 }
        v[1] = -0.0
        #expect(Codec.causal.pack(Tensor(v, shape: [4, 4])) == nil)
        #expect(Codec.causal.pack(Tensor.zeros([3, 4])) == nil)
        #expect(!Codec.causal.applies(to: SavedTensorInfo(name: "a:b", nodeName: "a", op: "matmul", role: "b", shape: [3, 4], dtype: .float32,
                                                          byteCount: 48, isParameter: false, isOutput: false)))
    }

    @Test func reluMaskKeepsWhatBackwardReads() {
        let v: [Float] = withNonFinite(adversarialValues(seed: 6, random: 2000))
        let (p, back) = pack(.reluMask, v)
        #expect(p.byteCount == (v.count + 7) / 8)
        for (x, y) in zip(v, back) { #expect(y == (x <= 0 ? 0 : 1), "\(x) -> \(y)") }
    }

    /// Tensors large enough to be split over threads give, element by element, the scalar
    /// conversions of DTypeConversion.
    @Test func largeTensorsMatchTheScalarConversions() {
        let n = 300_007
        let x = Tensor.randn([n], generator: RandomGenerator(seed: 8)) * 3
        let v = x.toArray()
        let bf = Codec.bf16.pack(x)!.unpack().toArray()
        #expect(bf.map(\.bitPattern) == v.map { DTypeConversion.float(bfloat16Bits: DTypeConversion.bfloat16Bits($0)).bitPattern })
        let mask = Codec.reluMask.pack(x)!.unpack().toArray()
        #expect(mask == v.map { $0 <= 0 ? 0 : 1 })
        let p8 = Codec.fp8E4M3(.perGroup(128)).pack(x)!
        let ks = exponents(p8)
        let back = p8.unpack().toArray()
        let expected = v.indices.map { i -> Float in
            let s = Float(sign: .plus, exponent: ks[i / 128], significand: 1)
            return DTypeConversion.float(float8E4M3FNBits: DTypeConversion.float8E4M3FNBits(v[i] * s)) / s
        }
        #expect(back.map(\.bitPattern) == expected.map(\.bitPattern))
    }

    /// Non-contiguous inputs pack their logical elements.
    @Test func stridedInputsPackTheirElements() {
        let t = Tensor.randn([16, 24], generator: RandomGenerator(seed: 7)).transposed(0, 1)
        for c in [Codec.none, .bf16, .fp8E4M3(.perGroup(8)), .int8, .reluMask] {
            let direct = c.pack(t)!.unpack().toArray()
            let viaCopy = c.pack(t.contiguousCopy())!.unpack().toArray()
            #expect(direct.map(\.bitPattern) == viaCopy.map(\.bitPattern), "\(c)")
        }
    }
}

/// A packed slot payload for tests: decodes when backward asks.
private final class PackedPayload: DeferredTensor {
    let packed: PackedTensor
    init(_ packed: PackedTensor) { self.packed = packed }
    func materialize() -> Tensor { packed.unpack() }
}

private func packing(_ codec: Codec) -> SavedTensorHooks {
    SavedTensorHooks(pack: { t, info in
        guard codec.applies(to: info), let p = codec.pack(t) else { return .tensor(t) }
        return .deferred(PackedPayload(p))
    }, unpack: { payload, _ in
        switch payload {
        case .tensor(let t): return t
        case .packed(let p): return p.unpack(label: "unpacked")
        case .deferred(let d): return d.materialize()
        }
    })
}

@Suite struct CodecGradientTests {
    /// ReLU's output packed to one bit per element gives the same gradients, bitwise, NaN and ±0
    /// included; the mask applies to ReLU's own output only.
    @Test func reluMaskGradientsAreBitwiseEqual() {
        var values = Tensor.randn([64, 33], generator: RandomGenerator(seed: 11)).toArray()
        values[0] = .nan; values[1] = -0.0; values[2] = 0; values[3] = .leastNonzeroMagnitude; values[4] = -.infinity
        func grads(_ hooks: SavedTensorHooks?) -> [UInt32] {
            let x = Tensor(values, shape: [64, 33], requiresGrad: true)
            let w = Tensor.randn([64, 33], generator: RandomGenerator(seed: 12))
            let body = { ((relu(x) * w).summed()).backward() }
            if let hooks { withSavedTensorHooks(hooks, body) } else { body() }
            return x.grad!.toArray().map(\.bitPattern)
        }
        #expect(grads(packing(.reluMask)) == grads(nil))
        var applied: [String] = []
        let spy = SavedTensorHooks(pack: { t, info in
            if Codec.reluMask.applies(to: info) { applied.append(info.name) }
            return .tensor(t)
        }, unpack: { p, _ in if case .tensor(let t) = p { return t }; fatalError() })
        withSavedTensorHooks(spy) {
            let x = Tensor.randn([4, 4], generator: RandomGenerator(seed: 1)).makeParameter(name: "x")
            (gelu(relu(x) * x).summed()).backward()
        }
        #expect(applied.count == 1 && applied[0].hasSuffix(":output"), "\(applied)")
    }

    /// A lossy codec's gradient error follows from its bound: for y = x·w summed, dL/dw = x̂.
    @Test func bf16GradientIsTheDecodedInput() {
        let x = Tensor.randn([32, 32], generator: RandomGenerator(seed: 13))
        let w = Tensor.randn([32, 32], generator: RandomGenerator(seed: 14)).makeParameter(name: "w")
        withSavedTensorHooks(packing(.bf16)) { (x * w).summed().backward() }
        let expected = Codec.bf16.pack(x)!.unpack().toArray()
        #expect(w.grad!.toArray().map(\.bitPattern) == expected.map(\.bitPattern))
    }
}
