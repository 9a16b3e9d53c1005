import Foundation
import Testing
import RematCore

/// Causal masking and causal self-attention: values against a Double reference, gradients,
/// the causal property and the saved bytes.
@Suite struct AttentionTests {
    let check = GradCheck()

    @Test func causalMaskValues() {
        let x = Tensor((0..<12).map(Float.init), shape: [1, 3, 4])   // T = 3, S = 4: query i sees j <= i + 1
        let y = causalMask(x).toArray()
        let inf = -Float.infinity
        #expect(y == [0, 1, inf, inf, 4, 5, 6, inf, 8, 9, 10, 11])
        let sq = causalMask(Tensor((0..<4).map(Float.init), shape: [2, 2]))   // T = S = 2
        #expect(sq.toArray() == [0, inf, 2, 3])
    }

    @Test func causalMaskGradient() {
        // The -inf outputs are clamped by maximum(-10) so the checker's weighted sum stays finite;
        // masked positions then get gradient 0 from both ops.
        let floor = Tensor(scalar: -10)
        check.check("causal_mask", [randomTensor([2, 3, 5], seed: 41)]) { causalMask($0[0]).maximum(floor) }
        check.check("causal_mask with the fused scale", [randomTensor([2, 3, 5], seed: 43)]) {
            causalMask($0[0], scale: 0.25).maximum(floor)
        }
        check.check("causal_mask of transposed", [randomTensor([2, 4, 4], seed: 42)]) {
            causalMask($0[0].transposed()).maximum(floor)
        }
        // Backward of a ones seed: exactly the visibility pattern, and nothing saved.
        let x = randomTensor([2, 3], seed: 43)
        let y = causalMask(x)
        #expect(y.gradFn?.savedTensors.isEmpty == true)
        y.backward(gradient: Tensor.ones([2, 3]))
        #expect(x.grad?.toArray() == [1, 1, 0, 1, 1, 1])
    }

    @Test func causalSoftmaxMatchesMaskThenSoftmax() {
        for (shape, scale) in [([2, 3, 5], Float(0.25)), ([1, 4, 4], 1), ([3, 70, 70], 0.125), ([1, 1, 1], 1)] as [([Int], Float)] {
            let x = randomTensor(shape, seed: 44, low: -3, high: 3, requiresGrad: false)
            let fused = causalSoftmax(x, scale: scale).toArray()
            let composed = softmax(causalMask(x, scale: scale)).toArray()
            for (u, v) in zip(fused, composed) {
                #expect(abs(u - v) <= 1e-6, "causal_softmax \(shape): \(u) vs \(v)")
                #expect((v == 0) == (u == 0))   // masked positions exactly 0, visible ones positive
            }
        }
    }

    @Test func causalSoftmaxGradient() {
        check.check("causal_softmax", [randomTensor([2, 3, 5], seed: 45, low: -2, high: 2)]) { causalSoftmax($0[0], scale: 0.5) }
        check.check("causal_softmax square", [randomTensor([2, 4, 4], seed: 46, low: -2, high: 2)]) { causalSoftmax($0[0]) }
        check.check("causal_softmax of transposed", [randomTensor([2, 4, 4], seed: 47, low: -2, high: 2)]) {
            causalSoftmax($0[0].transposed(), scale: 2)
        }
        let x = randomTensor([2, 3, 3], seed: 48)
        let y = causalSoftmax(x)
        #expect(y.gradFn?.savedTensors.map(\.info.role) == ["output"])
    }

    /// The blocked product (several row blocks, S > T, strided q/k) against the composed ops.
    @Test(arguments: [(150, 150), (100, 130), (64, 64), (1, 3)])
    func attentionProbabilitiesMatchComposedOps(t: Int, s: Int) {
        let d = 8
        let qStore = randomTensor([2, t, 2, d], seed: 54, low: -2, high: 2, requiresGrad: false)   // [B, T, H, Dh]
        let q = qStore.permuted([0, 2, 1, 3])                                                  // strided [B, H, T, Dh]
        let k = randomTensor([2, 2, s, d], seed: 55, low: -2, high: 2, requiresGrad: false)
        let fused = causalAttentionProbabilities(q: q, k: k, scale: 0.3).toArray()
        let composed = causalSoftmax(matmul(q, k.transposed()), scale: 0.3).toArray()
        #expect(fused.count == 2 * 2 * t * s)
        let worst = zip(fused, composed).map { abs($0 - $1) }.max() ?? 0
        #expect(worst <= 1e-6, "max |error| \(worst)")
        #expect(zip(fused, composed).allSatisfy { ($0 == 0) == ($1 == 0) })
    }

    @Test func attentionProbabilitiesGradientAcrossRowBlocks() {
        let q = randomTensor([1, 1, 70, 2], seed: 56)
        let k = randomTensor([1, 1, 75, 2], seed: 57)
        check.check("attention_probs", [q, k]) { causalAttentionProbabilities(q: $0[0], k: $0[1], scale: 0.7) }
        let p = causalAttentionProbabilities(q: q, k: k, scale: 1)
        #expect(p.gradFn?.savedTensors.map(\.info.role) == ["q", "k", "output"])
    }

    /// Plain Double reference of softmax(mask(q kᵀ / √Dh)) v.
    private func reference(_ q: [Float], _ k: [Float], _ v: [Float], b: Int, h: Int, t: Int, s: Int, d: Int) -> [Double] {
        var out = [Double](repeating: 0, count: b * h * t * d)
        for bh in 0..<(b * h) {
            for i in 0..<t {
                var scores = [Double](repeating: -.infinity, count: s)
                for j in 0..<s where j <= i + (s - t) {
                    var dot = 0.0
                    for c in 0..<d { dot += Double(q[(bh * t + i) * d + c]) * Double(k[(bh * s + j) * d + c]) }
                    scores[j] = dot / Double(d).squareRoot()
                }
                let m = scores.max()!
                let e = scores.map { $0 == -.infinity ? 0 : exp($0 - m) }
                let z = e.reduce(0, +)
                for c in 0..<d {
                    var acc = 0.0
                    for j in 0..<s { acc += e[j] / z * Double(v[(bh * s + j) * d + c]) }
                    out[(bh * t + i) * d + c] = acc
                }
            }
        }
        return out
    }

    @Test(arguments: [(1, 2, 4, 4, 3), (2, 3, 7, 7, 8), (1, 2, 3, 5, 4), (2, 2, 40, 40, 16), (1, 2, 130, 130, 8), (1, 1, 70, 90, 4)])
    func matchesDoubleReference(b: Int, h: Int, t: Int, s: Int, d: Int) {
        let q = randomTensor([b, h, t, d], seed: 44, low: -2, high: 2, requiresGrad: false)
        let k = randomTensor([b, h, s, d], seed: 45, low: -2, high: 2, requiresGrad: false)
        let v = randomTensor([b, h, s, d], seed: 46, requiresGrad: false)
        let y = causalSelfAttention(q: q, k: k, v: v)
        #expect(y.shape == [b, h, t, d])
        let ref = reference(q.toArray(), k.toArray(), v.toArray(), b: b, h: h, t: t, s: s, d: d)
        let got = y.toArray()
        let worst = zip(got, ref).map { abs(Double($0) - $1) }.max()!
        #expect(worst < 1e-5, "max |error| \(worst)")
    }

    @Test func gradient() {
        let q = randomTensor([1, 2, 4, 3], seed: 47)
        let k = randomTensor([1, 2, 4, 3], seed: 48)
        let v = randomTensor([1, 2, 4, 3], seed: 49)
        check.check("causal_self_attention", [q, k, v]) { causalSelfAttention(q: $0[0], k: $0[1], v: $0[2]) }
    }

    /// Heads split from one fused [B, T, 3·H·Dh] projection: strided, non-contiguous q, k, v.
    @Test func gradientFromFusedProjection() {
        let qkv = randomTensor([1, 4, 3 * 2 * 3], seed: 50)   // B=1, T=4, H=2, Dh=3
        check.check("causal_self_attention of qkv views", [qkv]) { xs in
            let heads = xs[0].reshaped([1, 4, 3, 2, 3]).permuted([2, 0, 3, 1, 4])   // [3, B, H, T, Dh]
            let parts = chunk(heads, 3, axis: 0).map { $0.squeezed(0) }
            return causalSelfAttention(q: parts[0], k: parts[1], v: parts[2])
        }
    }

    @Test func laterKeysAndValuesDoNotChangeEarlierOutputs() {
        let (b, h, t, d) = (2, 2, 6, 4)
        let q = randomTensor([b, h, t, d], seed: 51, requiresGrad: false)
        let k = randomTensor([b, h, t, d], seed: 52, requiresGrad: false)
        let v = randomTensor([b, h, t, d], seed: 53, requiresGrad: false)
        let base = causalSelfAttention(q: q, k: k, v: v).toArray()
        let cut = 3   // positions >= cut get new keys and values
        let k2 = k.contiguousCopy(), v2 = v.contiguousCopy()
        let k2p = k2.floatPointer, v2p = v2.floatPointer
        for bh in 0..<(b * h) { for j in cut..<t { for c in 0..<d {
            k2p[(bh * t + j) * d + c] = 100 + Float(j * c)
            v2p[(bh * t + j) * d + c] = -50 - Float(j)
        } } }
        let changed = causalSelfAttention(q: q, k: k2, v: v2).toArray()
        var earlierSame = true, laterDiffer = false
        for bh in 0..<(b * h) { for i in 0..<t { for c in 0..<d {
            let n = (bh * t + i) * d + c
            if i < cut { earlierSame = earlierSame && base[n].bitPattern == changed[n].bitPattern }
            else if base[n] != changed[n] { laterDiffer = true }
        } } }
        #expect(earlierSame)
        #expect(laterDiffer)
    }

    /// Saved bytes: q, k, v and the T×S probabilities once (softmax output = second matmul's a).
    @Test func savedBytesMatchTheDoc() {
        let ledger = MemoryLedger()
        MemoryLedger.withLedger(ledger) {
            let (b, h, t, d) = (2, 3, 8, 5)
            let q = randomTensor([b, h, t, d], seed: 54)
            let k = randomTensor([b, h, t, d], seed: 55)
            let v = randomTensor([b, h, t, d], seed: 56)
            let y = causalSelfAttention(q: q, k: k, v: v)
            #expect(ledger.currentBytes(in: .activations) == 4 * b * h * (3 * t * d + t * t))
            y.summed().backward()
            #expect(ledger.currentBytes(in: .activations) == 0)
        }
    }

    @Test func badShapesStop() async {
        await #expect(processExitsWith: .failure) {
            _ = causalMask(Tensor.zeros([3, 2]))   // S < T
        }
        await #expect(processExitsWith: .failure) {
            _ = causalSelfAttention(q: Tensor.zeros([1, 1, 2, 3]), k: Tensor.zeros([1, 1, 2, 4]), v: Tensor.zeros([1, 1, 2, 4]))
        }
    }
}
