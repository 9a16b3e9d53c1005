import Testing
import Remat

@Suite struct TrainingTests {
    /// A small GPT on the built-in arithmetic data: the loss falls clearly within a fixed number of steps.
    @Test func lossFallsOnBuiltInData() throws {
        let config = GPTConfig(contextLength: 32, layers: 2, heads: 2, modelDimension: 64, mlpHidden: 128, batchSize: 8)
        let model = GPT(config, seed: 0)
        var source = ArithmeticText.dataset(seed: 0)
        let trainer = Trainer(model: model, optimizer: Trainer.specAdamW(model, learningRate: 3e-3),
                              schedule: WarmupCosineSchedule(peak: 3e-3, minimum: 3e-4, warmupSteps: 5, totalSteps: 200),
                              ledger: MemoryLedger())
        var losses: [Float] = []
        try trainer.run(steps: 200, batchSize: config.batchSize, source: &source) { losses.append($0.loss) }
        let start = losses.prefix(3).reduce(0, +) / 3, end = losses.suffix(5).reduce(0, +) / 5
        #expect(start > 5.0, "initial loss \(start) should be near ln 256 = 5.55")
        #expect(end < 2.5, "loss after 200 steps \(end) should have fallen below 2.5 from 5.55 (the layout is learned; sums partly)")
    }

    /// Every step returns the ledger to the same baseline: no leaked activations, gradients freed
    /// at the next zero_grad, optimizer state allocated once.
    @Test func ledgerReturnsToBaselineAfterEveryStep() {
        let ledger = MemoryLedger()
        MemoryLedger.withLedger(ledger) {
            let config = GPTConfig(contextLength: 16, layers: 2, heads: 2, modelDimension: 32, mlpHidden: 64, batchSize: 2)
            let model = GPT(config, seed: 0)
            var source = ArithmeticText.dataset(seed: 1)
            let trainer = Trainer(model: model, optimizer: Trainer.specAdamW(model), ledger: ledger)
            var after: [Int] = []
            for _ in 0..<6 {
                trainer.step(source.nextBatch(batchSize: 2, length: 16))
                after.append(ledger.currentBytes)
                #expect(ledger.currentBytes(in: .activations) == 0)
            }
            let p = model.parameterCount * 4
            #expect(ledger.currentBytes(in: .parameters) == p)
            #expect(ledger.currentBytes(in: .optimizerState) == 2 * p)
            #expect(ledger.currentBytes(in: .gradients) == p)
            #expect(Set(after).count == 1, "live bytes after each step differ: \(after)")
        }
    }

    @Test func warmupCosineSchedule() {
        let s = WarmupCosineSchedule(peak: 1, minimum: 0.1, warmupSteps: 4, totalSteps: 14)
        #expect(s.learningRate(at: 0) == 0.25)
        #expect(s.learningRate(at: 3) == 1)
        #expect(abs(s.learningRate(at: 9) - 0.55) < 1e-6)
        #expect(s.learningRate(at: 14) == 0.1)
    }

    @Test func gradientClippingScalesToTheMaximumNorm() {
        let a = Tensor([3, 0], shape: [2], requiresGrad: true)
        let b = Tensor([4], shape: [1], requiresGrad: true)
        a.grad = Tensor([3, 0], shape: [2])
        b.grad = Tensor([4], shape: [1])
        let norm = clipGradientNorm([a, b], maxNorm: 1)
        #expect(norm == 5)
        #expect(abs(a.grad!.toArray()[0] - 0.6) < 1e-6 && abs(b.grad!.toArray()[0] - 0.8) < 1e-6)
    }

    /// What ZeRO-1 relies on: AdamW over 1-D views of runs of parameters (a matrix cut in two
    /// and a bias), told per view whether its parameter decays, steps bitwise as AdamW over the
    /// whole parameters; the views' state is only their elements.
    @Test func adamWOverSlicesOfParametersStepsLikeTheWhole() {
        func make() -> (w: Tensor, b: Tensor) {
            let w = Tensor((0..<128).map { Float($0 % 13) * 0.1 - 0.5 }, shape: [8, 16], requiresGrad: true)
            let b = Tensor((0..<16).map { Float($0) * 0.05 }, shape: [16], requiresGrad: true)
            return (w, b)
        }
        func gradients(_ step: Int) -> (w: Tensor, b: Tensor) {
            (Tensor((0..<128).map { Float(($0 * 7 + step) % 11) * 0.01 - 0.05 }, shape: [8, 16]),
             Tensor((0..<16).map { Float(($0 + step) % 5) * 0.02 }, shape: [16]))
        }
        let whole = make(), sliced = make()
        let full = AdamW([whole.w, whole.b], learningRate: 1e-2)
        func view(_ p: Tensor, _ range: Range<Int>) -> Tensor {
            Tensor(storage: p.storage, shape: [range.count], strides: [1], offset: p.offset + range.lowerBound, dtype: .float32)
        }
        let views = [view(sliced.w, 0..<50), view(sliced.w, 50..<128), view(sliced.b, 0..<16)]
        let parts = AdamW(views, learningRate: 1e-2, decaying: [true, true, false])
        #expect(AdamW(views, learningRate: 1e-2).decaying == [false, false, false], "1-D views alone would not decay")
        for step in 0..<3 {
            let g = gradients(step)
            (whole.w.grad, whole.b.grad) = (g.w, g.b)
            let flat = g.w.toArray()
            views[0].grad = Tensor(Array(flat[0..<50]), shape: [50])
            views[1].grad = Tensor(Array(flat[50...]), shape: [78])
            views[2].grad = g.b
            full.step()
            parts.step()
        }
        #expect(sliced.w.toArray().map(\.bitPattern) == whole.w.toArray().map(\.bitPattern))
        #expect(sliced.b.toArray().map(\.bitPattern) == whole.b.toArray().map(\.bitPattern))
        #expect(parts.snapshotState().slots.compactMap { $0?.count }.reduce(0, +) == 2 * 144)
    }
}
