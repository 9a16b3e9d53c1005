import Foundation
import Testing
import RematCore

/// The fused attention (issue 17): values against a float64 reference (causal and not, T not a
/// multiple of the block, S > T), gradients against the explicit path and finite differences,
/// strided q/k/v views, and what it saves.
@Suite struct FusedAttentionTests {
    let check = GradCheck()

    /// dropout(softmax(q·kᵀ/√Dh + bias [causal])) · v in Double, and its gradients for the loss
    /// Σ y ⊙ w. `bias` and `keep` (the dropout multiplier of each probability: 0 or 1/(1 − p)) are
    /// `[B·H, T, S]`, already broadcast; nil for none. A row with every key hidden gives 0.
    static func reference(_ q: [Float], _ k: [Float], _ v: [Float], _ w: [Float], b: Int, h: Int, t: Int, s: Int, d: Int,
                          causal: Bool, bias: [Double]? = nil, keep: [Double]? = nil)
        -> (y: [Double], dq: [Double], dk: [Double], dv: [Double], dbias: [Double]) {
        var y = [Double](repeating: 0, count: b * h * t * d)
        var dq = y, dk = [Double](repeating: 0, count: b * h * s * d), dv = dk
        var dbias = [Double](repeating: 0, count: b * h * t * s)
        let scale = 1 / Double(d).squareRoot()
        for bh in 0..<(b * h) {
            for i in 0..<t {
                let visible = causal ? min(s, i + (s - t) + 1) : s
                let row = (bh * t + i) * s
                var p = [Double](repeating: 0, count: visible)
                for j in 0..<visible {
                    var dot = 0.0
                    for c in 0..<d { dot += Double(q[(bh * t + i) * d + c]) * Double(k[(bh * s + j) * d + c]) }
                    p[j] = dot * scale + (bias?[row + j] ?? 0)
                }
                let m = p.max() ?? 0
                guard m > -.infinity else { continue }
                p = p.map { exp($0 - m) }
                let z = p.reduce(0, +)
                p = p.map { $0 / z }
                let mult = (0..<visible).map { keep?[row + $0] ?? 1 }
                // y_i = Σ_j p_j m_j v_j; dv_j += p_j m_j w_i; dp_j = m_j w_i·v_j; ds_j = p_j (dp_j − Σ p dp).
                var dp = [Double](repeating: 0, count: visible)
                for j in 0..<visible {
                    for c in 0..<d {
                        let wi = Double(w[(bh * t + i) * d + c])
                        y[(bh * t + i) * d + c] += p[j] * mult[j] * Double(v[(bh * s + j) * d + c])
                        dv[(bh * s + j) * d + c] += p[j] * mult[j] * wi
                        dp[j] += mult[j] * wi * Double(v[(bh * s + j) * d + c])
                    }
                }
                let dot = zip(p, dp).reduce(0) { $0 + $1.0 * $1.1 }
                for j in 0..<visible {
                    let ds = p[j] * (dp[j] - dot)
                    dbias[row + j] = ds
                    for c in 0..<d {
                        dq[(bh * t + i) * d + c] += ds * scale * Double(k[(bh * s + j) * d + c])
                        dk[(bh * s + j) * d + c] += ds * scale * Double(q[(bh * t + i) * d + c])
                    }
                }
            }
        }
        return (y, dq, dk, dv, dbias)
    }

    /// `mask` (shape `shape`, right-aligned broadcast) expanded to `[B·H, T, S]`.
    static func broadcast(_ mask: [Float], shape: [Int], b: Int, h: Int, t: Int, s: Int) -> [Double] {
        let padded = Array(repeating: 1, count: 4 - shape.count) + shape
        var out = [Double](repeating: 0, count: b * h * t * s)
        for bi in 0..<b { for hi in 0..<h { for i in 0..<t { for j in 0..<s {
            let src = (((padded[0] == 1 ? 0 : bi) * padded[1] + (padded[1] == 1 ? 0 : hi)) * padded[2] + (padded[2] == 1 ? 0 : i)) * padded[3] + j
            out[((bi * h + hi) * t + i) * s + j] = Double(mask[src])
        } } } }
        return out
    }

    /// The gradient of a broadcast mask: `full` `[B·H, T, S]` summed onto `shape`.
    static func reduce(_ full: [Double], shape: [Int], b: Int, h: Int, t: Int, s: Int) -> [Double] {
        let padded = Array(repeating: 1, count: 4 - shape.count) + shape
        var out = [Double](repeating: 0, count: shape.reduce(1, *))
        for bi in 0..<b { for hi in 0..<h { for i in 0..<t { for j in 0..<s {
            let dst = (((padded[0] == 1 ? 0 : bi) * padded[1] + (padded[1] == 1 ? 0 : hi)) * padded[2] + (padded[2] == 1 ? 0 : i)) * padded[3] + j
            out[dst] += full[((bi * h + hi) * t + i) * s + j]
        } } } }
        return out
    }

    /// The dropout multipliers the stream at `state` gives `count` probabilities (the rule of `dropout`).
    static func keepMultipliers(_ state: RNGState, count: Int, p: Float) -> [Double] {
        var u = [Float](repeating: 0, count: count)
        u.withUnsafeMutableBufferPointer { RandomGenerator(state: state).fillUniform($0) }
        let scale = Double(1 / (1 - p))
        return u.map { $0 >= p ? scale : 0 }
    }

    static func relativeError(_ a: [Float], _ r: [Double]) -> Double {
        let scale = max(r.map(abs).max() ?? 0, 1e-30)
        return zip(a, r).map { abs(Double($0) - $1) }.max().map { $0 / scale } ?? 0
    }

    /// (Forward key blocks are 256 wide: S > 256 takes the online softmax across blocks.)
    @Test(arguments: [(1, 2, 4, 4, 3), (2, 3, 7, 7, 8), (1, 2, 3, 5, 4), (1, 2, 130, 130, 8), (1, 1, 70, 150, 16), (2, 2, 64, 64, 32),
                      (1, 1, 1, 1, 5), (1, 1, 300, 530, 8), (1, 2, 520, 520, 4)], [true, false])
    func valuesAndGradientsMatchTheFloat64Reference(shape: (Int, Int, Int, Int, Int), causal: Bool) throws {
        let (b, h, t, s, d) = shape
        let q = randomTensor([b, h, t, d], seed: 61, low: -2, high: 2)
        let k = randomTensor([b, h, s, d], seed: 62, low: -2, high: 2)
        let v = randomTensor([b, h, s, d], seed: 63)
        let w = randomTensor([b, h, t, d], seed: 64, requiresGrad: false)
        let y = scaledDotProductAttention(q: q, k: k, v: v, causal: causal)
        #expect(y.shape == [b, h, t, d])
        (y * w).summed().backward()
        let r = Self.reference(q.toArray(), k.toArray(), v.toArray(), w.toArray(), b: b, h: h, t: t, s: s, d: d, causal: causal)
        #expect(Self.relativeError(y.toArray(), r.y) < 1e-5, "output")
        #expect(Self.relativeError(try #require(q.grad).toArray(), r.dq) < 1e-4, "dq")
        #expect(Self.relativeError(try #require(k.grad).toArray(), r.dk) < 1e-4, "dk")
        #expect(Self.relativeError(try #require(v.grad).toArray(), r.dv) < 1e-4, "dv")
    }

    /// The causal fused op against the explicit path (one softmax per whole row) on GPT's
    /// shapes: outputs and gradients agree to float32 rounding.
    @Test func causalMatchesTheExplicitPath() throws {
        let (b, h, t, d) = (2, 4, 200, 32)
        func run(_ fused: Bool) -> [[Float]] {
            let q = randomTensor([b, h, t, d], seed: 71, low: -2, high: 2)
            let k = randomTensor([b, h, t, d], seed: 72, low: -2, high: 2)
            let v = randomTensor([b, h, t, d], seed: 73)
            let w = randomTensor([b, h, t, d], seed: 74, requiresGrad: false)
            let y = fused ? scaledDotProductAttention(q: q, k: k, v: v, causal: true) : causalSelfAttention(q: q, k: k, v: v)
            (y * w).summed().backward()
            return [y.toArray(), q.grad!.toArray(), k.grad!.toArray(), v.grad!.toArray()]
        }
        let f = run(true), e = run(false)
        for (name, (a, r)) in zip(["output", "dq", "dk", "dv"], zip(f, e)) {
            #expect(Self.relativeError(a, r.map(Double.init)) < 2e-5, "\(name)")
        }
    }

    @Test(arguments: [true, false])
    func gradient(causal: Bool) {
        let q = randomTensor([1, 2, 5, 3], seed: 81)
        let k = randomTensor([1, 2, 6, 3], seed: 82)
        let v = randomTensor([1, 2, 6, 3], seed: 83)
        check.check("sdpa causal \(causal)", [q, k, v]) { scaledDotProductAttention(q: $0[0], k: $0[1], v: $0[2], causal: causal) }
    }

    /// Heads split from one fused [B, T, 3·H·Dh] projection: strided q, k, v views.
    @Test func gradientFromFusedProjection() {
        let qkv = randomTensor([1, 4, 3 * 2 * 3], seed: 84)
        check.check("sdpa of qkv views", [qkv]) { xs in
            let heads = xs[0].reshaped([1, 4, 3, 2, 3]).permuted([2, 0, 3, 1, 4])
            let parts = chunk(heads, 3, axis: 0).map { $0.squeezed(0) }
            return scaledDotProductAttention(q: parts[0], k: parts[1], v: parts[2], causal: true)
        }
    }

    /// Saved: q, k, v, the output and the rows' log-sum-exp — no T×S matrix; the ledger returns
    /// to zero after backward. Runs are bitwise repeatable.
    @Test func savesNoProbabilities() {
        let ledger = MemoryLedger()
        MemoryLedger.withLedger(ledger) {
            let (b, h, t, d) = (2, 3, 100, 8)
            let q = randomTensor([b, h, t, d], seed: 91)
            let k = randomTensor([b, h, t, d], seed: 92)
            let v = randomTensor([b, h, t, d], seed: 93)
            let y = scaledDotProductAttention(q: q, k: k, v: v, causal: true)
            #expect(ledger.currentBytes(in: .activations) == 4 * b * h * (4 * t * d + t))
            let names = y.gradFn!.savedTensors.map(\.info.role)
            #expect(names == ["q", "k", "v", "output", "lse"])
            let again = scaledDotProductAttention(q: q, k: k, v: v, causal: true)
            #expect(y.toArray().map(\.bitPattern) == again.toArray().map(\.bitPattern))
            (y.summed() + again.summed()).backward()
            #expect(ledger.currentBytes(in: .activations) == 0)
        }
    }

    /// Additive masks of every broadcast form (key padding with −inf, a shared [T, S] bias, a
    /// per-head bias), with and without causal, T not a multiple of the block, S > T: values,
    /// gradients and the mask's own gradient against the float64 reference.
    @Test(arguments: [([2, 1, 1, 70], (2, 2, 67, 70, 8), false), ([67, 70], (1, 2, 67, 70, 8), true),
                      ([1, 3, 130, 130], (2, 3, 130, 130, 4), false), ([2, 1, 1, 9], (2, 1, 5, 9, 3), true),
                      ([2, 1, 1, 600], (2, 1, 70, 600, 4), false)])
    func masksMatchTheFloat64Reference(maskShape: [Int], shape: (Int, Int, Int, Int, Int), causal: Bool) throws {
        let (b, h, t, s, d) = shape
        let q = randomTensor([b, h, t, d], seed: 161, low: -2, high: 2)
        let k = randomTensor([b, h, s, d], seed: 162, low: -2, high: 2)
        let v = randomTensor([b, h, s, d], seed: 163)
        let w = randomTensor([b, h, t, d], seed: 164, requiresGrad: false)
        var values = randomTensor(maskShape, seed: 165, low: -3, high: 3, requiresGrad: false).toArray()
        if maskShape.count == 4 && maskShape[2] == 1 {   // key padding: the last 3 keys of batch 1 hidden
            for j in (s - 3)..<s { values[(maskShape[0] - 1) * s + j] = -.infinity }
        }
        let mask = Tensor(values, shape: maskShape, requiresGrad: true)
        let y = scaledDotProductAttention(q: q, k: k, v: v, causal: causal, mask: mask)
        (y * w).summed().backward()
        let r = Self.reference(q.toArray(), k.toArray(), v.toArray(), w.toArray(), b: b, h: h, t: t, s: s, d: d, causal: causal,
                               bias: Self.broadcast(values, shape: maskShape, b: b, h: h, t: t, s: s))
        #expect(Self.relativeError(y.toArray(), r.y) < 1e-5, "output")
        #expect(Self.relativeError(try #require(q.grad).toArray(), r.dq) < 1e-4, "dq")
        #expect(Self.relativeError(try #require(k.grad).toArray(), r.dk) < 1e-4, "dk")
        #expect(Self.relativeError(try #require(v.grad).toArray(), r.dv) < 1e-4, "dv")
        let dmask = Self.reduce(r.dbias, shape: maskShape, b: b, h: h, t: t, s: s)
        #expect(Self.relativeError(try #require(mask.grad).toArray(), dmask) < 1e-4, "dmask")
        #expect(mask.grad!.shape == maskShape)
    }

    /// A row whose keys are all hidden (a fully padded sequence) has output 0 and gradient 0,
    /// not NaN; the other rows are unaffected.
    @Test func fullyHiddenRowsGiveZero() throws {
        let (b, h, t, d) = (2, 2, 5, 4)
        let q = randomTensor([b, h, t, d], seed: 171), k = randomTensor([b, h, t, d], seed: 172), v = randomTensor([b, h, t, d], seed: 173)
        var values = [Float](repeating: 0, count: b * t)
        for j in 0..<t { values[t + j] = -.infinity }   // batch 1: every key hidden
        let mask = Tensor(values, shape: [b, 1, 1, t])
        let y = scaledDotProductAttention(q: q, k: k, v: v, causal: false, mask: mask)
        y.summed().backward()
        let out = y.toArray()
        #expect(out[(b * h * t * d / 2)...].allSatisfy { $0 == 0 })
        #expect(out.allSatisfy(\.isFinite) && q.grad!.toArray().allSatisfy(\.isFinite) && k.grad!.toArray().allSatisfy(\.isFinite))
        #expect(v.grad!.toArray()[(b * h * t * d / 2)...].allSatisfy { $0 == 0 })
    }

    /// Dropout inside the op: the mask is the one `dropout` draws on the explicit probabilities at
    /// the same generator state (values and gradients against the float64 reference with those
    /// multipliers, and against the explicit softmax → dropout → matmul path), the generator
    /// advances by the same ⌈B·H·T·S/4⌉ blocks, and backward redraws the mask (nothing saved
    /// beyond the dropout-free op's).
    @Test(arguments: [((1, 2, 70, 70, 8), true), ((2, 2, 5, 9, 4), false), ((1, 1, 130, 130, 16), true), ((1, 1, 70, 530, 4), false)])
    func dropoutReplaysThePhiloxMask(shape: (Int, Int, Int, Int, Int), causal: Bool) throws {
        let (b, h, t, s, d) = shape
        let p: Float = 0.3
        let q = randomTensor([b, h, t, d], seed: 181, low: -2, high: 2)
        let k = randomTensor([b, h, s, d], seed: 182, low: -2, high: 2)
        let v = randomTensor([b, h, s, d], seed: 183)
        let w = randomTensor([b, h, t, d], seed: 184, requiresGrad: false)
        let generator = RandomGenerator(seed: 99)
        generator.state.offset = 5   // a draw that does not start at block 0
        let start = generator.state
        let ledger = MemoryLedger()
        let y = MemoryLedger.withLedger(ledger) {
            let y = scaledDotProductAttention(q: q, k: k, v: v, causal: causal, dropout: p, generator: generator)
            #expect(y.gradFn!.savedTensors.map(\.info.role) == ["q", "k", "v", "output", "lse"])
            return y
        }
        #expect(generator.state.offset == start.offset + UInt64((b * h * t * s + 3) / 4))
        (y * w).summed().backward()
        let keep = Self.keepMultipliers(start, count: b * h * t * s, p: p)
        let r = Self.reference(q.toArray(), k.toArray(), v.toArray(), w.toArray(), b: b, h: h, t: t, s: s, d: d, causal: causal, keep: keep)
        #expect(Self.relativeError(y.toArray(), r.y) < 1e-5, "output")
        #expect(Self.relativeError(try #require(q.grad).toArray(), r.dq) < 1e-4, "dq")
        #expect(Self.relativeError(try #require(k.grad).toArray(), r.dk) < 1e-4, "dk")
        #expect(Self.relativeError(try #require(v.grad).toArray(), r.dv) < 1e-4, "dv")

        // The explicit path at the same state: softmax of the masked scores, dropout, P·V.
        let (qe, ke, ve) = (Tensor(q.toArray(), shape: q.shape, requiresGrad: true), Tensor(k.toArray(), shape: k.shape, requiresGrad: true),
                            Tensor(v.toArray(), shape: v.shape, requiresGrad: true))
        var scores = matmul(qe, ke.transposed()) * (1 / Float(d).squareRoot())
        if causal {
            let hidden = (0..<(t * s)).map { ($0 % s) > ($0 / s) + (s - t) ? -Float.infinity : 0 }
            scores = scores + Tensor(hidden, shape: [t, s])
        }
        let ye = matmul(dropout(softmax(scores), probability: p, generator: RandomGenerator(state: start)), ve)
        (ye * w).summed().backward()
        #expect(Self.relativeError(y.toArray(), ye.toArray().map(Double.init)) < 2e-5, "explicit output")
        #expect(Self.relativeError(q.grad!.toArray(), qe.grad!.toArray().map(Double.init)) < 1e-4, "explicit dq")
        #expect(Self.relativeError(v.grad!.toArray(), ve.grad!.toArray().map(Double.init)) < 1e-4, "explicit dv")
    }

    @Test(arguments: [true, false])
    func gradientWithMaskAndDropout(causal: Bool) {
        let q = randomTensor([2, 2, 5, 3], seed: 191)
        let k = randomTensor([2, 2, 6, 3], seed: 192)
        let v = randomTensor([2, 2, 6, 3], seed: 193)
        let mask = randomTensor([2, 1, 1, 6], seed: 194)
        check.check("sdpa mask causal \(causal)", [q, k, v, mask]) {
            scaledDotProductAttention(q: $0[0], k: $0[1], v: $0[2], causal: causal, mask: $0[3])
        }
        let bias = randomTensor([5, 6], seed: 195)
        check.check("sdpa mask+dropout causal \(causal)", [q, k, v, bias]) {
            scaledDotProductAttention(q: $0[0], k: $0[1], v: $0[2], causal: causal, mask: $0[3], dropout: 0.25,
                                      generator: RandomGenerator(seed: 7))
        }
    }

    @Test func badShapesStop() async {
        await #expect(processExitsWith: .failure) {
            _ = scaledDotProductAttention(q: Tensor.zeros([1, 1, 5, 4]), k: Tensor.zeros([1, 1, 3, 4]), v: Tensor.zeros([1, 1, 3, 4]), causal: true)
        }
        await #expect(processExitsWith: .failure) {
            _ = scaledDotProductAttention(q: Tensor.zeros([1, 1, 5, 4]), k: Tensor.zeros([1, 1, 5, 4]), v: Tensor.zeros([1, 1, 5, 3]), causal: false)
        }
        await #expect(processExitsWith: .failure) {   // a mask whose last dimension is not S
            _ = scaledDotProductAttention(q: Tensor.zeros([1, 1, 5, 4]), k: Tensor.zeros([1, 1, 5, 4]), v: Tensor.zeros([1, 1, 5, 4]), causal: false,
                                          mask: Tensor.zeros([1, 1, 5, 1]))
        }
        await #expect(processExitsWith: .failure) {   // dropout without a generator
            _ = scaledDotProductAttention(q: Tensor.zeros([1, 1, 5, 4]), k: Tensor.zeros([1, 1, 5, 4]), v: Tensor.zeros([1, 1, 5, 4]), causal: false,
                                          dropout: 0.1)
        }
    }
}
