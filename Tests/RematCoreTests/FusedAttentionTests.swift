import Foundation
import Testing
import RematCore

/// The fused attention (issue 17): values against a float64 reference (causal and not, T not a
/// multiple of the block, S > T), gradients against the explicit path and finite differences,
/// strided q/k/v views, and what it saves.
@Suite struct FusedAttentionTests {
    let check = GradCheck()

    /// softmax(q·kᵀ/√Dh [causal]) · v in Double, and its gradients for the loss Σ y ⊙ w.
    static func reference(_ q: [Float], _ k: [Float], _ v: [Float], _ w: [Float], b: Int, h: Int, t: Int, s: Int, d: Int,
                          causal: Bool) -> (y: [Double], dq: [Double], dk: [Double], dv: [Double]) {
        var y = [Double](repeating: 0, count: b * h * t * d)
        var dq = y, dk = [Double](repeating: 0, count: b * h * s * d), dv = dk
        let scale = 1 / Double(d).squareRoot()
        for bh in 0..<(b * h) {
            for i in 0..<t {
                let visible = causal ? min(s, i + (s - t) + 1) : s
                var p = [Double](repeating: 0, count: visible)
                for j in 0..<visible {
                    var dot = 0.0
                    for c in 0..<d { dot += Double(q[(bh * t + i) * d + c]) * Double(k[(bh * s + j) * d + c]) }
                    p[j] = dot * scale
                }
                let m = p.max() ?? 0
                p = p.map { exp($0 - m) }
                let z = p.reduce(0, +)
                p = p.map { $0 / z }
                // y_i = Σ_j p_j v_j; dv_j += p_j w_i; dp_j = w_i·v_j; ds_j = p_j (dp_j − Σ p dp).
                var dp = [Double](repeating: 0, count: visible)
                for j in 0..<visible {
                    for c in 0..<d {
                        let wi = Double(w[(bh * t + i) * d + c])
                        y[(bh * t + i) * d + c] += p[j] * Double(v[(bh * s + j) * d + c])
                        dv[(bh * s + j) * d + c] += p[j] * wi
                        dp[j] += wi * Double(v[(bh * s + j) * d + c])
                    }
                }
                let dot = zip(p, dp).reduce(0) { $0 + $1.0 * $1.1 }
                for j in 0..<visible {
                    let ds = p[j] * (dp[j] - dot) * scale
                    for c in 0..<d {
                        dq[(bh * t + i) * d + c] += ds * Double(k[(bh * s + j) * d + c])
                        dk[(bh * s + j) * d + c] += ds * Double(q[(bh * t + i) * d + c])
                    }
                }
            }
        }
        return (y, dq, dk, dv)
    }

    static func relativeError(_ a: [Float], _ r: [Double]) -> Double {
        let scale = max(r.map(abs).max() ?? 0, 1e-30)
        return zip(a, r).map { abs(Double($0) - $1) }.max().map { $0 / scale } ?? 0
    }

    @Test(arguments: [(1, 2, 4, 4, 3), (2, 3, 7, 7, 8), (1, 2, 3, 5, 4), (1, 2, 130, 130, 8), (1, 1, 70, 150, 16), (2, 2, 64, 64, 32),
                      (1, 1, 1, 1, 5)], [true, false])
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

    @Test func badShapesStop() async {
        await #expect(processExitsWith: .failure) {
            _ = scaledDotProductAttention(q: Tensor.zeros([1, 1, 5, 4]), k: Tensor.zeros([1, 1, 3, 4]), v: Tensor.zeros([1, 1, 3, 4]), causal: true)
        }
        await #expect(processExitsWith: .failure) {
            _ = scaledDotProductAttention(q: Tensor.zeros([1, 1, 5, 4]), k: Tensor.zeros([1, 1, 5, 4]), v: Tensor.zeros([1, 1, 5, 3]), causal: false)
        }
    }
}
