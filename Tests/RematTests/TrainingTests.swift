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
}
