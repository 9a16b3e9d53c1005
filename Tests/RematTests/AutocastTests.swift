import Foundation
import Testing
import Remat

/// Mixed precision (issue 16): the rounding against the element conversions, each autocast
/// product against the float32 op on rounded operands and against float64, the 2-byte saved
/// activations in the ledger, and bitwise gradients under checkpointing and a plan.
@Suite struct AutocastTests {
    static func rounded(_ v: [Float], _ p: AutocastPrecision) -> [Float] {
        p == .bfloat16 ? v.map { DTypeConversion.float(bfloat16Bits: DTypeConversion.bfloat16Bits($0)) }
                       : v.map { DTypeConversion.float(float16Bits: DTypeConversion.float16Bits($0)) }
    }

    static func roundedTensor(_ t: Tensor, _ p: AutocastPrecision) -> Tensor {
        Tensor(rounded(t.toArray(), p), shape: t.shape)
    }

    static func bits(_ t: Tensor) -> [UInt32] { t.toArray().map(\.bitPattern) }

    /// Whether `precision`'s linear and matmul products run the library's bf16 GEMM here (an
    /// OpenBLAS with cblas_sbgemm on a CPU with AVX512_BF16): its accumulation order differs from
    /// the float32 GEMM's, so results agree to a unit in the last bf16 place rather than bitwise.
    static func usesSbgemm(_ precision: AutocastPrecision) -> Bool {
        precision == .bfloat16 && Runtime.bfloat16Gemm == .sbgemm
    }

    /// `a` equals `b` bitwise (float32 GEMM path), or, on the bf16 GEMM, each element is `b`'s or a
    /// neighbouring bf16 value (same sign), and most are equal.
    static func expectProducts(_ a: [UInt32], _ b: [UInt32], _ precision: AutocastPrecision, _ what: String,
                               sourceLocation: SourceLocation = #_sourceLocation) {
        guard usesSbgemm(precision) else {
            #expect(a == b, "\(what)", sourceLocation: sourceLocation)
            return
        }
        #expect(a.count == b.count, sourceLocation: sourceLocation)
        var equal = 0
        for (x, y) in zip(a, b) {
            if x == y { equal += 1; continue }
            let close = x >> 31 == y >> 31 && (Int(x >> 16) - Int(y >> 16)).magnitude <= 1
                || Float(bitPattern: x).magnitude < 1e-30 && Float(bitPattern: y).magnitude < 1e-30
            #expect(close, "\(what): \(Float(bitPattern: x)) vs \(Float(bitPattern: y))", sourceLocation: sourceLocation)
        }
        #expect(equal * 10 >= a.count * 9, "\(what): only \(equal) of \(a.count) equal", sourceLocation: sourceLocation)
    }

    /// `represents` is true exactly when every element survives the 2-byte conversion, on
    /// contiguous tensors and on views (whose whole storage it reads), NaN, infinities and
    /// subnormals included.
    @Test(arguments: AutocastPrecision.allCases)
    func representsIsTheRoundTripOfEveryElement(precision: AutocastPrecision) throws {
        let g = RandomGenerator(seed: 4)
        var v = Self.rounded(Tensor.randn([5000], generator: g).toArray(), precision)
        v[1] = .infinity; v[2] = -.infinity; v[3] = .nan; v[4] = -0.0
        v[5] = precision == .bfloat16 ? Float(bitPattern: 0x0001_0000) : Float(sign: .plus, exponent: -24, significand: 1)
        #expect(precision.represents(Tensor(v, shape: [50, 100])))
        #expect(precision.represents(Tensor(v, shape: [50, 100]).transposed()))
        for i in [0, 2777, 4999] {
            var w = v
            w[i] = Float(bitPattern: w[i].bitPattern ^ 1)   // one low mantissa bit set: not 2-byte
            #expect(!precision.represents(Tensor(w, shape: [50, 100])), "element \(i)")
        }
        if precision == .float16 {
            var w = v
            w[7] = 65536   // beyond fp16's largest finite value (65504)
            #expect(!precision.represents(Tensor(w, shape: [5000])))
        }
    }

    /// An autocast linear is bitwise the float32 linear on the rounded input, weight and bias,
    /// rounded; its values are within half an ulp of the precision of the float64 product; its
    /// gradients are the float32 products of the rounded output gradient with the rounded
    /// operands, rounded (the gradients of low-precision operands are low-precision, as in
    /// PyTorch); the master weight stays float32.
    /// (The second shape is large enough for the GEMM's rows to be split over the threads.)
    @Test(arguments: AutocastPrecision.allCases, [(rows: 37, inF: 45, outF: 29), (rows: 1200, inF: 160, outF: 200)])
    func linearIsTheRoundedProductOfRoundedOperands(precision: AutocastPrecision, shape: (rows: Int, inF: Int, outF: Int)) throws {
        let (rows, inF, outF) = shape
        let g = RandomGenerator(seed: 9)
        let x = Tensor.randn([rows, inF], generator: g, requiresGrad: true)
        let w = Tensor.randn([outF, inF], std: 0.3, generator: g, requiresGrad: true)
        let b = Tensor.randn([outF], generator: g, requiresGrad: true)
        let gOut = Tensor.randn([rows, outF], generator: g)
        let y = withAutocast(precision) { linear(x, weight: w, bias: b) }
        (y * gOut).summed().backward()
        let xr = Self.roundedTensor(x, precision), wr = Self.roundedTensor(w, precision), br = Self.roundedTensor(b, precision)
        Self.expectProducts(Self.bits(y), Self.rounded(linear(xr, weight: wr, bias: br).toArray(), precision).map(\.bitPattern), precision, "output")
        #expect(precision.represents(y))
        let xs = xr.toArray(), ws = wr.toArray(), bs = br.toArray(), ys = y.toArray()
        let ulp = precision == .bfloat16 ? 0x1p-8 : 0x1p-11
        for i in 0..<rows {
            for o in 0..<outF {
                var s = Double(bs[o])
                for f in 0..<inF { s += Double(xs[i * inF + f]) * Double(ws[o * inF + f]) }
                #expect(abs(Double(ys[i * outF + o]) - s) <= ulp * abs(s) + 1e-5, "(\(i), \(o)): \(ys[i * outF + o]) vs \(s)")
            }
        }
        let gr = Self.roundedTensor(gOut, precision)
        func roundedBits(_ t: Tensor) -> [UInt32] { Self.rounded(t.toArray(), precision).map(\.bitPattern) }
        Self.expectProducts(Self.bits(try #require(x.grad)), roundedBits(matmul(gr, wr)), precision, "input gradient")
        Self.expectProducts(Self.bits(try #require(w.grad)), roundedBits(matmul(gr.transposed(), xr)), precision, "weight gradient")
        #expect(Self.bits(try #require(b.grad)) == roundedBits(gr.summed(alongAxes: [0])))
        #expect(!precision.represents(w))
    }

    /// matmul, conv2d, the attention probabilities and the fused attention under autocast: bitwise the float32 op on
    /// rounded operands, rounded (matmul within a bf16 ulp on the bf16 GEMM); the saved operands
    /// hold 2-byte values.
    @Test func productsAreTheFloat32OpsOnRoundedOperands() throws {
        let p = AutocastPrecision.bfloat16
        let g = RandomGenerator(seed: 21)
        let a = Tensor.randn([2, 7, 11], generator: g), b = Tensor.randn([11, 5], generator: g)
        let c = withAutocast(p) { matmul(a, b) }
        Self.expectProducts(Self.bits(c), Self.rounded(matmul(Self.roundedTensor(a, p), Self.roundedTensor(b, p)).toArray(), p).map(\.bitPattern), p, "matmul")
        // Batched with broadcast (attention's P·V shape): each entry's GEMM.
        let pa = Tensor.randn([2, 3, 9, 16], generator: g), pv = Tensor.randn([2, 3, 16, 8], generator: g)
        let pc = withAutocast(p) { matmul(pa, pv) }
        Self.expectProducts(Self.bits(pc), Self.rounded(matmul(Self.roundedTensor(pa, p), Self.roundedTensor(pv, p)).toArray(), p).map(\.bitPattern), p, "batched matmul")

        let x = Tensor.randn([2, 3, 9, 9], generator: g), w = Tensor.randn([4, 3, 3, 3], generator: g), bias = Tensor.randn([4], generator: g)
        let y = withAutocast(p) { conv2d(x, weight: w, bias: bias, stride: (2, 2), padding: (1, 1)) }
        let yRef = conv2d(Self.roundedTensor(x, p), weight: Self.roundedTensor(w, p), bias: Self.roundedTensor(bias, p), stride: (2, 2), padding: (1, 1))
        #expect(Self.bits(y) == Self.rounded(yRef.toArray(), p).map(\.bitPattern))

        let q = Tensor.randn([1, 2, 6, 8], generator: g, requiresGrad: true), k = Tensor.randn([1, 2, 6, 8], generator: g, requiresGrad: true)
        let probs = withAutocast(p) { causalAttentionProbabilities(q: q, k: k, scale: 0.35) }
        let pRef = causalAttentionProbabilities(q: Self.roundedTensor(q, p), k: Self.roundedTensor(k, p), scale: 0.35)
        #expect(Self.bits(probs) == Self.rounded(pRef.toArray(), p).map(\.bitPattern))
        for s in try #require(probs.gradFn).savedTensors {
            #expect(p.represents(s.unpack()), "\(s.info.role) holds values that are not bf16")
        }

        // The fused attention: float32 inside on rounded q, k, v, the output rounded; the rows'
        // log-sum-exp stays float32.
        let v = Tensor.randn([1, 2, 6, 8], generator: g, requiresGrad: true)
        let att = withAutocast(p) { scaledDotProductAttention(q: q, k: k, v: v, causal: true) }
        let attRef = scaledDotProductAttention(q: Self.roundedTensor(q, p), k: Self.roundedTensor(k, p), v: Self.roundedTensor(v, p), causal: true)
        #expect(Self.bits(att) == Self.rounded(attRef.toArray(), p).map(\.bitPattern))
        for s in try #require(att.gradFn).savedTensors where s.info.role != "lse" {
            #expect(p.represents(s.unpack()), "sdpa \(s.info.role) holds values that are not bf16")
        }
        att.summed().backward()
        for x in [q, k, v] { #expect(p.represents(try #require(x.grad)), "sdpa gradients are bf16") }
    }

    /// Outside a scope nothing rounds; a nested float32 op inside one (a norm, the softmax,
    /// an add) computes as its float32 self.
    @Test func onlyTheProductsRound() throws {
        let g = RandomGenerator(seed: 5)
        let x = Tensor.randn([4, 16], generator: g), w = Tensor.randn([8, 16], generator: g)
        #expect(!AutocastPrecision.bfloat16.represents(linear(x, weight: w, bias: nil)))
        let s = withAutocast(.bfloat16) { softmax(x * x + x) }
        #expect(Self.bits(s) == Self.bits(softmax(x * x + x)))
    }

    static let config = GPTConfig(contextLength: 16, layers: 3, heads: 2, modelDimension: 32, mlpHidden: 64, batchSize: 2)

    struct Step {
        var loss: UInt32
        var grads: [String: [UInt32]]
        var peakActivations: Int
    }

    /// One forward + backward of a fresh tiny GPT under `policy` (or a plan) and `autocast`, in
    /// its own ledger (activations must return to zero).
    static func step(_ policy: CheckpointPolicy, _ autocast: AutocastPrecision?, plan: MemoryPlan? = nil) throws -> Step {
        let ledger = MemoryLedger()
        return try MemoryLedger.withLedger(ledger) {
            let model = GPT(config, seed: 3)
            if let plan { try model.applyPlan(plan) } else { try model.applyCheckpointing(policy) }
            var source = ArithmeticText.dataset(seed: 5)
            let batch = source.nextBatch(batchSize: 2, length: 16)
            ledger.resetPeak()
            let loss = autocast.map { p in withAutocast(p) { model.loss(batch.input, targets: batch.target) } }
                ?? model.loss(batch.input, targets: batch.target)
            loss.backward()
            #expect(ledger.currentBytes(in: .activations) == 0, "\(policy) \(autocast?.description ?? "float32"): activations left after backward")
            let grads = Dictionary(uniqueKeysWithValues: model.namedParameters.map { ($0.0, $0.1.grad?.toArray().map(\.bitPattern) ?? []) })
            return Step(loss: loss.item.bitPattern, grads: grads, peakActivations: ledger.peakBytes(in: .activations))
        }
    }

    /// Checkpointing under autocast is bitwise autocast without it (the recompute rounds as the
    /// forward did, wherever backward runs), and the ledger returns to its baseline.
    @Test(arguments: [CheckpointPolicy.all, .saveMatmuls, .revolve(slots: 2)])
    func checkpointedAutocastIsBitwise(policy: CheckpointPolicy) throws {
        let reference = try Self.step(.none, .bfloat16)
        let s = try Self.step(policy, .bfloat16)
        #expect(s.loss == reference.loss)
        for (name, g) in reference.grads { #expect(s.grads[name] == g, "\(policy): gradient of \(name) differs") }
    }

    /// bf16 autocast stores the saved activations whose values are bf16 in 2 bytes: the tiny GPT's
    /// activation peak falls to at most 0.6 of float32's (0.545 on gpt-mini: results/fp8-table.md),
    /// and under `all` (the recompute's rebuilt tensors) below 0.8 of `all`'s; the loss moves by
    /// bf16 rounding only.
    @Test func savedActivationsTakeTwoBytes() throws {
        let f32 = try Self.step(.none, nil), bf16 = try Self.step(.none, .bfloat16)
        let ratio = Double(bf16.peakActivations) / Double(f32.peakActivations)
        #expect(ratio < 0.6 && ratio > 0.4, "activation peak \(bf16.peakActivations) vs \(f32.peakActivations)")
        // Checkpointed, the recompute holds what it rebuilds in 2 bytes too.
        let all32 = try Self.step(.all, nil), all16 = try Self.step(.all, .bfloat16)
        #expect(Double(all16.peakActivations) < 0.8 * Double(all32.peakActivations), "all: \(all16.peakActivations) vs \(all32.peakActivations)")
        let l32 = Float(bitPattern: f32.loss), l16 = Float(bitPattern: bf16.loss)
        #expect(l16 != l32 && abs(l16 - l32) < 0.02 * l32, "loss \(l16) vs float32's \(l32)")
    }

    /// A budget plan captured under autocast applies bitwise.
    @Test func plannedAutocastIsBitwise() throws {
        let model = GPT(Self.config, seed: 3)
        let trainer = Trainer(model: model, optimizer: Trainer.specAdamW(model), gradientClip: nil, ledger: MemoryLedger())
        trainer.autocast = .bfloat16
        var source = ArithmeticText.dataset(seed: 5)
        let graph = try StepCapture.capture(trainer, batch: source.nextBatch(batchSize: 2, length: 16), timingRuns: 1)
        let sim = PlanSimulator(graph)
        let plan = Planner.plan(sim, actions: PlanActions(recompute: Set(sim.candidates.indices)))
        #expect(!plan.recompute.isEmpty)
        let reference = try Self.step(.none, .bfloat16)
        let s = try Self.step(.none, .bfloat16, plan: plan)
        #expect(s.loss == reference.loss)
        for (name, g) in reference.grads { #expect(s.grads[name] == g, "plan: gradient of \(name) differs") }
    }

    /// The trainer's autocast: a step under it runs the forward in bf16 (a different loss from
    /// float32's at the same weights) and leaves the master weights float32.
    @Test func trainerStepsUnderAutocast() throws {
        func run(_ p: AutocastPrecision?) throws -> (Float, Bool) {
            let model = GPT(Self.config, seed: 3)
            let trainer = Trainer(model: model, optimizer: Trainer.specAdamW(model), gradientClip: nil, ledger: MemoryLedger())
            trainer.autocast = p
            var source = ArithmeticText.dataset(seed: 5)
            let r = try trainer.checkedStep(source.nextBatch(batchSize: 2, length: 16))
            let allBF16 = model.namedParameters.allSatisfy { AutocastPrecision.bfloat16.represents($0.1) }
            return (r.loss, allBF16)
        }
        let (l32, _) = try run(nil), (l16, weightsBF16) = try run(.bfloat16)
        #expect(l32 != l16 && abs(l32 - l16) < 0.02 * l32)
        #expect(!weightsBF16, "master weights stay float32 after the update")
    }

    /// The scaler's schedule: growth after `growthInterval` finite steps in a row, back-off and a
    /// counted skip after a non-finite one; unscaling divides exactly and finds an inf or a NaN.
    @Test func gradScalerGrowsBacksOffAndFindsNonFiniteGradients() throws {
        let s = try GradScaler(initialScale: 1024, growthFactor: 2, backoffFactor: 0.5, growthInterval: 2)
        s.update(finite: true)
        #expect(s.scale == 1024)
        s.update(finite: true)
        #expect(s.scale == 2048)
        s.update(finite: true)
        s.update(finite: false)
        #expect(s.scale == 1024 && s.skippedSteps == 1)
        s.update(finite: true)
        #expect(s.scale == 1024, "the run of finite steps restarts after a skip")
        let p = Tensor([1, 2, 3], shape: [3], requiresGrad: true)
        (p * Float(1024)).summed().backward()
        #expect(s.unscaleGradients(of: [p]))
        #expect(try #require(p.grad).toArray() == [1, 1, 1])
        for bad in [Float.infinity, .nan] {
            let q = Tensor([1, 2], shape: [2], requiresGrad: true)
            (q * bad).summed().backward()
            #expect(!s.unscaleGradients(of: [p, q]), "\(bad)")
        }
        for (scale, growth, backoff, interval) in [(Float(0), Float(2), Float(0.5), 1), (.infinity, 2, 0.5, 1), (1, 1, 0.5, 1),
                                                   (1, 2, 1, 1), (1, 2, 0, 1), (1, 2, 0.5, 0)] {
            #expect(throws: GradScaler.SettingError.self) {
                try GradScaler(initialScale: scale, growthFactor: growth, backoffFactor: backoff, growthInterval: interval)
            }
        }
    }

    /// fp16 autocast with loss scaling: a scale so large that the fp16 gradients overflow skips
    /// the steps (parameters and optimizer untouched, bitwise) and backs off until the gradients
    /// fit; then the steps train, and the skipped ones are counted.
    @Test func fp16LossScalingSkipsOverflowingStepsAndTrains() throws {
        let model = GPT(Self.config, seed: 3)
        let trainer = Trainer(model: model, optimizer: Trainer.specAdamW(model, learningRate: 1e-3), gradientClip: 1, ledger: MemoryLedger())
        trainer.autocast = .float16
        let scaler = try GradScaler(initialScale: 0x1p40)
        trainer.gradScaler = scaler
        var source = ArithmeticText.dataset(seed: 5)
        let before = model.namedParameters.map { $0.1.toArray().map(\.bitPattern) }
        let first = try trainer.checkedStep(source.nextBatch(batchSize: 2, length: 16))
        #expect(first.skipped && first.lossScale == 0x1p40 && scaler.scale == 0x1p39)
        #expect(model.namedParameters.map { $0.1.toArray().map(\.bitPattern) } == before, "a skipped step leaves the weights")
        var reports = [first]
        for _ in 0..<40 { reports.append(try trainer.checkedStep(source.nextBatch(batchSize: 2, length: 16))) }
        let skipped = reports.filter(\.skipped).count
        #expect(skipped == scaler.skippedSteps && skipped >= 20 && skipped < 40, "\(skipped) skipped")
        #expect(!reports.last!.skipped && reports.allSatisfy { $0.loss.isFinite })
        #expect(model.namedParameters.map { $0.1.toArray().map(\.bitPattern) } != before)
    }
}
