import Foundation
import Testing
import Remat

/// FP8 training (issue 16): the scaled casts against the element conversions, the FP8 linear's
/// values and gradients against a float64 reference on the same FP8 operands and against finite
/// differences of the float32 linear, and checkpointing: bitwise gradients, no amax measured again.
@Suite struct Float8Tests {
    /// The exponent the per-tensor scale takes: the largest k with amax·2ᵏ ≤ fmax (0 without a
    /// finite non-zero value), clamped to [-126, 127].
    static func referenceExponent(_ v: [Float], fmax: Double) -> Int {
        let amax = v.filter(\.isFinite).map { Double(abs($0)) }.max() ?? 0
        guard amax > 0 else { return 0 }
        var k = Int((log2(fmax / amax)).rounded(.down)) + 1
        while amax * pow(2, Double(k)) > fmax { k -= 1 }
        return min(127, max(-126, k))
    }

    /// `v` cast element by element with scale 2ᵏ and decoded: what the FP8 operand stands for.
    static func referenceDecoded(_ v: [Float], e4m3: Bool) -> (values: [Double], exponent: Int) {
        let k = referenceExponent(v, fmax: e4m3 ? 448 : 57344)
        let s = Float(sign: .plus, exponent: k, significand: 1)
        let values = v.map { x -> Double in
            let y = x * s
            let d = e4m3 ? DTypeConversion.float(float8E4M3FNBits: DTypeConversion.float8E4M3FNBits(y))
                         : DTypeConversion.float(float8E5M2Bits: DTypeConversion.float8E5M2Bits(y))
            return Double(d) / Double(s)
        }
        return (values, k)
    }

    /// Scaled casts are the element conversions of `x·2ᵏ` (round to nearest even, saturating at the
    /// format's largest value, NaN kept), with k from the finite amax; decoding divides by 2ᵏ.
    @Test(arguments: [DType.float8E4M3FN, .float8E5M2])
    func scaledCastsAreTheElementConversionsOfTheScaledValues(format: DType) throws {
        let g = RandomGenerator(seed: 8)
        for magnitude: Float in [1e-6, 3e-3, 1, 700, 2e6] {
            var v = Tensor.randn([4099], generator: g).toArray().map { $0 * magnitude }
            v[3] = .infinity; v[17] = -.infinity; v[40] = .nan; v[41] = 0; v[42] = -0.0
            v[100] = magnitude * 1e-9   // far below the scaled subnormals: rounds to zero
            let (q, k) = Float8.quantized(Tensor(v, shape: [v.count]), to: format)
            #expect(q.dtype == format && q.byteCount == v.count)
            let ref = Self.referenceDecoded(v, e4m3: format == .float8E4M3FN)
            #expect(Int(k) == ref.exponent, "magnitude \(magnitude): exponent \(k), expected \(ref.exponent)")
            let decoded = Float8.decoded(q, exponent: k).toArray()
            for i in v.indices {
                if v[i].isNaN { #expect(decoded[i].isNaN); continue }
                #expect(Double(decoded[i]).bitPattern == ref.values[i].bitPattern || Double(decoded[i]) == ref.values[i],
                        "magnitude \(magnitude), element \(i) = \(v[i]): \(decoded[i]) vs \(ref.values[i])")
            }
            // Saturation: infinities become the largest value, in scaled units.
            let fmax = format == .float8E4M3FN ? 448.0 : 57344.0
            #expect(Double(decoded[3]) == fmax / pow(2, Double(k)) && Double(decoded[17]) == -fmax / pow(2, Double(k)))
        }
    }

    struct Reference {
        var output: [Double], dx: [Double], dw: [Double], db: [Double]
    }

    /// Output and gradients of `x·Wᵀ + b` on the FP8 operands (x, W in E4M3FN; the output gradient
    /// `gOut` in E5M2), in float64.
    static func reference(x: [Float], w: [Float], b: [Float], gOut: [Float], rows: Int, inF: Int, outF: Int) -> Reference {
        let xd = referenceDecoded(x, e4m3: true).values, wd = referenceDecoded(w, e4m3: true).values
        let gd = referenceDecoded(gOut, e4m3: false).values
        var r = Reference(output: [Double](repeating: 0, count: rows * outF), dx: [Double](repeating: 0, count: rows * inF),
                          dw: [Double](repeating: 0, count: outF * inF), db: [Double](repeating: 0, count: outF))
        for i in 0..<rows {
            for o in 0..<outF {
                var s = Double(b[o])
                for f in 0..<inF { s += xd[i * inF + f] * wd[o * inF + f] }
                r.output[i * outF + o] = s
                r.db[o] += Double(gOut[i * outF + o])
                for f in 0..<inF {
                    r.dx[i * inF + f] += gd[i * outF + o] * wd[o * inF + f]
                    r.dw[o * inF + f] += gd[i * outF + o] * xd[i * inF + f]
                }
            }
        }
        return r
    }

    static func maxRelativeError(_ a: [Float], _ ref: [Double]) -> Double {
        let scale = ref.map(abs).max() ?? 0
        return zip(a, ref).map { abs(Double($0) - $1) }.max().map { $0 / Swift.max(scale, 1e-300) } ?? 0
    }

    /// Values and gradients on rows not a multiple of the tile, a 3-d input and a bias, against
    /// the float64 products of the same FP8 operands.
    @Test(arguments: [(rows: 3, inF: 7, outF: 6), (rows: 1500, inF: 40, outF: 900)])
    func valuesAndGradientsAreTheProductsOfTheFP8Operands(shape: (rows: Int, inF: Int, outF: Int)) throws {
        let (rows, inF, outF) = shape
        let g = RandomGenerator(seed: 11)
        let x = Tensor.randn([rows, 1, inF], generator: g, requiresGrad: true)
        let w = Tensor.randn([outF, inF], std: 0.3, generator: g, requiresGrad: true)
        let b = Tensor.randn([outF], generator: g, requiresGrad: true)
        let gOut = Tensor.randn([rows, 1, outF], std: 1e-3, generator: g)
        let scales = Float8ScaleRecord()
        let y = float8Linear(x, weight: w, bias: b, scales: scales)
        (y * gOut).summed().backward()
        let ref = Self.reference(x: x.toArray(), w: w.toArray(), b: b.toArray(), gOut: gOut.toArray(), rows: rows, inF: inF, outF: outF)
        #expect(y.shape == [rows, 1, outF])
        // Float32 accumulation of float64-exact products: within 1e-4 of the largest value.
        #expect(Self.maxRelativeError(y.toArray(), ref.output) < 1e-4)
        #expect(Self.maxRelativeError(try #require(x.grad).toArray(), ref.dx) < 1e-4)
        #expect(Self.maxRelativeError(try #require(w.grad).toArray(), ref.dw) < 1e-4)
        #expect(Self.maxRelativeError(try #require(b.grad).toArray(), ref.db) < 1e-4)
        #expect(try #require(x.grad).shape == [rows, 1, inF])
        #expect(scales.amaxComputations == 3, "input, weight, output gradient")
    }

    /// The gradients approximate those of the float32 linear at the same point, by central
    /// differences in float64 of its loss: within FP8's error (E4M3FN operands, E5M2 gradient:
    /// a normwise relative error of a few percent; 0.15 allowed).
    @Test func gradientsApproximateFiniteDifferencesOfTheLinear() throws {
        let rows = 6, inF = 5, outF = 4
        let g = RandomGenerator(seed: 13)
        let x = Tensor.randn([rows, inF], generator: g, requiresGrad: true)
        let w = Tensor.randn([outF, inF], generator: g, requiresGrad: true)
        let gOut = Tensor.randn([rows, outF], generator: g)
        (float8Linear(x, weight: w, bias: nil, scales: Float8ScaleRecord()) * gOut).summed().backward()
        let xs = x.toArray().map(Double.init), ws = w.toArray().map(Double.init), gs = gOut.toArray().map(Double.init)
        func loss(_ xs: [Double], _ ws: [Double]) -> Double {
            var s = 0.0
            for i in 0..<rows { for o in 0..<outF { for f in 0..<inF { s += gs[i * outF + o] * xs[i * inF + f] * ws[o * inF + f] } } }
            return s
        }
        func fd(_ v: [Double], _ f: ([Double]) -> Double) -> [Double] {
            v.indices.map { i in
                var p = v, m = v
                p[i] += 1e-4; m[i] -= 1e-4
                return (f(p) - f(m)) / 2e-4
            }
        }
        func normwise(_ a: [Float], _ r: [Double]) -> Double {
            sqrt(zip(a, r).reduce(0) { $0 + pow(Double($1.0) - $1.1, 2) }) / sqrt(r.reduce(0) { $0 + $1 * $1 })
        }
        let dx = fd(xs) { loss($0, ws) }, dw = fd(ws) { loss(xs, $0) }
        let ex = normwise(try #require(x.grad).toArray(), dx), ew = normwise(try #require(w.grad).toArray(), dw)
        #expect(ex < 0.15 && ew < 0.15, "normwise errors: input \(ex), weight \(ew)")
        #expect(ex > 0 && ew > 0, "FP8 rounding shows")
    }

    /// What an FP8 layer saves: the 1-byte input (and the parameter); with `saveHighPrecision`,
    /// the float32 input as TorchAO does. The gradients are the same either way.
    @Test func savesTheFP8InputUnlessAskedForTheHighPrecisionOne() throws {
        func run(_ options: Float8LinearOptions) -> (saved: [String: Int], grads: [[UInt32]]) {
            let g = RandomGenerator(seed: 2)
            let x = Tensor.randn([8, 16], generator: g, requiresGrad: true)
            let w = Tensor.randn([12, 16], generator: g, requiresGrad: true)
            let y = float8Linear(x, weight: w, bias: nil, scales: Float8ScaleRecord(), options: options)
            let node = y.gradFn!
            let saved = Dictionary(uniqueKeysWithValues: node.savedTensors.map { ($0.info.role, $0.info.byteCount) })
            y.summed().backward()
            return (saved, [x, w].map { $0.grad!.toArray().map(\.bitPattern) })
        }
        let fp8 = run(.init()), hp = run(.init(saveHighPrecision: true))
        #expect(fp8.saved == ["input_fp8": 8 * 16, "weight": 12 * 16 * 4])
        #expect(hp.saved == ["input": 8 * 16 * 4, "weight": 12 * 16 * 4])
        #expect(fp8.grads == hp.grads)
    }

    static let config = GPTConfig(contextLength: 16, layers: 3, heads: 2, modelDimension: 32, mlpHidden: 64, batchSize: 2)

    /// One step of a fresh FP8 tiny GPT under `policy` (or a plan): loss, gradients (bit patterns)
    /// and the amaxes its FP8 layers measured.
    static func fp8Step(_ policy: CheckpointPolicy, plan: MemoryPlan? = nil) throws -> (UInt32, [String: [UInt32]], Int) {
        let model = GPT(config, seed: 3)
        let converted = model.convertLinearsToFloat8()
        #expect(converted.count == 4 * config.layers)
        if let plan { try model.applyPlan(plan) } else { try model.applyCheckpointing(policy) }
        var source = ArithmeticText.dataset(seed: 5)
        let batch = source.nextBatch(batchSize: 2, length: 16)
        let loss = model.loss(batch.input, targets: batch.target)
        loss.backward()
        let grads = Dictionary(uniqueKeysWithValues: model.namedParameters.map { ($0.0, $0.1.grad?.toArray().map(\.bitPattern) ?? []) })
        let amaxes = model.namedModules.compactMap { ($0.1 as? Linear)?.float8Scales.amaxComputations }.reduce(0, +)
        return (loss.item.bitPattern, grads, amaxes)
    }

    /// Checkpointing an FP8 model gives bitwise its gradients without checkpointing, and its
    /// recomputes measure no amax (the forward's scales serve them).
    @Test(arguments: [CheckpointPolicy.all, .saveMatmuls, .revolve(slots: 2)])
    func checkpointedFP8IsBitwiseAndMeasuresNoAmaxAgain(policy: CheckpointPolicy) throws {
        let (refLoss, refGrads, refAmaxes) = try Self.fp8Step(.none)
        #expect(refAmaxes == 3 * 4 * Self.config.layers)
        let (loss, grads, amaxes) = try Self.fp8Step(policy)
        #expect(loss == refLoss)
        for (name, g) in refGrads { #expect(grads[name] == g, "\(policy): gradient of \(name) differs") }
        #expect(amaxes == refAmaxes, "\(policy): \(amaxes) amaxes, \(refAmaxes) without checkpointing")
    }

    /// A budget plan sees the FP8 inputs at 1 byte per element, and the planned step is bitwise
    /// the unplanned one.
    @Test func plannedFP8IsBitwiseAndSeesOneByteInputs() throws {
        let model = GPT(Self.config, seed: 3)
        model.convertLinearsToFloat8()
        let trainer = Trainer(model: model, optimizer: Trainer.specAdamW(model), gradientClip: nil, ledger: MemoryLedger())
        var source = ArithmeticText.dataset(seed: 5)
        let graph = try StepCapture.capture(trainer, batch: source.nextBatch(batchSize: 2, length: 16), timingRuns: 1)
        let fp8Slots = graph.slots.filter { $0.name.hasSuffix("float8_linear#0:input_fp8") }
        #expect(fp8Slots.count == 4 * Self.config.layers)
        for s in fp8Slots {
            #expect(s.dtype == .float8E4M3FN && graph.tensors[s.tensor].bytes == s.shape.reduce(1, *), "\(s.name)")
        }
        let sim = PlanSimulator(graph)
        let plan = Planner.plan(sim, actions: PlanActions(recompute: Set(sim.candidates.indices)))
        let (refLoss, refGrads, _) = try Self.fp8Step(.none)
        let (loss, grads, _) = try Self.fp8Step(.none, plan: plan)
        #expect(loss == refLoss)
        for (name, g) in refGrads { #expect(grads[name] == g, "plan: gradient of \(name) differs") }
    }
}
