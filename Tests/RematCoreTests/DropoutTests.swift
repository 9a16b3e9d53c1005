import Testing
import RematCore

/// Dropout: mask replay from the RNG state, the keep rule, scaling, the regenerated backward mask,
/// stream consumption and zero saved bytes.
@Suite struct DropoutTests {
    let check = GradCheck()

    private func bits(_ t: Tensor) -> [UInt32] { t.toArray().map(\.bitPattern) }

    @Test func replayFromCapturedStateIsBitwise() {
        let x = randomTensor([37, 129], seed: 21, requiresGrad: false)
        let g = RandomGenerator(seed: 99)
        _ = g.nextUInt64()
        let s = g.state
        let y1 = dropout(x, probability: 0.3, generator: g)
        // Consumption follows fillUniform: ⌈n/4⌉ blocks.
        #expect(g.state == RNGState(seed: 99, offset: s.offset + UInt64((x.count + 3) / 4)))
        let after = g.state
        g.state = s
        let y2 = dropout(x, probability: 0.3, generator: g)
        #expect(bits(y1) == bits(y2))
        #expect(g.state == after)
        // A different position in the stream gives a different mask.
        let y3 = dropout(x, probability: 0.3, generator: g)
        #expect(bits(y1) != bits(y3))
    }

    /// Element i kept iff uniform_i >= p, with uniform_i from fillUniform at the captured state.
    /// 300 003 elements: the parallel chunks start at offsets that are not multiples of 4.
    @Test(arguments: [Float(0.1), 0.5, 0.9])
    func maskRuleAndExactScaling(p: Float) {
        let n = 300_003
        let x = randomTensor([n], seed: 22, low: 0.5, high: 1.5, requiresGrad: false)
        let g = RandomGenerator(seed: 7)
        let s = g.state
        let y = dropout(x, probability: p, generator: g).toArray()
        var u = [Float](repeating: 0, count: n)
        u.withUnsafeMutableBufferPointer { RandomGenerator(state: s).fillUniform($0) }
        let xa = x.toArray()
        let scale: Float = 1 / (1 - p)
        var mismatches = 0
        var kept = 0
        for i in 0..<n {
            let want: Float = u[i] >= p ? xa[i] * scale : 0
            if y[i].bitPattern != want.bitPattern { mismatches += 1 }
            if u[i] >= p { kept += 1 }
        }
        #expect(mismatches == 0)
        let fraction = Double(kept) / Double(n)
        #expect(abs(fraction - Double(1 - p)) < 0.01)
    }

    @Test func keepFractionOnHundredThousand() {
        let x = Tensor.ones([100_000])
        for p: Float in [0.2, 0.5, 0.75] {
            let y = dropout(x, probability: p, generator: RandomGenerator(seed: 5)).toArray()
            let kept = y.filter { $0 != 0 }
            // σ = √(p(1−p)/n) ≤ 0.0016: allow ~6σ.
            #expect(abs(Double(kept.count) / 1e5 - Double(1 - p)) < 0.01, "p = \(p)")
            #expect(kept.allSatisfy { $0 == 1 / (1 - p) }, "p = \(p): kept values are exactly 1/(1-p)")
        }
    }

    @Test func backwardRegeneratesTheForwardMask() {
        let p: Float = 0.4
        let x = randomTensor([64, 33], seed: 23, low: 0.5, high: 1.5)   // no zeros in x
        let g = RandomGenerator(seed: 1234)
        let y = dropout(x, probability: p, generator: g)
        // Use the caller's generator in between: the backward must not care.
        _ = Tensor.randn([1000], generator: g)
        g.state = RNGState(seed: 1, offset: 77)
        y.backward(gradient: Tensor.ones(y.shape))
        let ya = y.toArray(), gx = x.grad!.toArray()
        let scale: Float = 1 / (1 - p)
        #expect(ya.contains(0) && ya.contains { $0 != 0 })
        for i in 0..<ya.count {
            #expect(gx[i] == (ya[i] == 0 ? 0 : scale), "element \(i)")
        }
    }

    @Test func savesNothing() {
        let ledger = MemoryLedger()
        MemoryLedger.withLedger(ledger) {
            let x = randomTensor([128, 64], seed: 24)
            let h = x * 3                                         // saves nothing
            let y = dropout(h, probability: 0.5, generator: RandomGenerator(seed: 3))
            #expect(y.gradFn != nil)
            #expect(y.gradFn?.savedTensors.isEmpty == true)
            #expect(ledger.currentBytes(in: .activations) == 0)
            y.summed().backward()
            #expect(x.grad != nil)
        }
    }

    @Test func identityAndZeroCases() {
        let x = randomTensor([3, 5], seed: 25)
        let g = RandomGenerator(seed: 8)
        let s = g.state
        #expect(dropout(x, probability: 0, generator: g) === x)
        #expect(dropout(x, probability: 0.5, generator: g, training: false) === x)
        #expect(g.state == s)   // nothing consumed
        let y = dropout(x, probability: 1, generator: g)
        #expect(y.toArray().allSatisfy { $0 == 0 })
        #expect(g.state.offset == s.offset + 4)   // ⌈15/4⌉ blocks consumed even for p = 1
        y.backward(gradient: Tensor.ones(y.shape))
        #expect(x.grad!.toArray().allSatisfy { $0 == 0 })
    }

    @Test func gradientWithFixedState() {
        let state = RNGState(seed: 42, offset: 5)
        check.check("dropout", [randomTensor([4, 6], seed: 26)]) {
            dropout($0[0], probability: 0.3, generator: RandomGenerator(state: state))
        }
        check.check("dropout of transposed", [randomTensor([6, 4], seed: 27)]) {
            dropout($0[0].transposed(), probability: 0.6, generator: RandomGenerator(state: state))
        }
    }

    @Test func badProbabilityStops() async {
        await #expect(processExitsWith: .failure) {
            _ = dropout(Tensor.ones([2]), probability: 1.5, generator: RandomGenerator(seed: 1))
        }
    }
}
