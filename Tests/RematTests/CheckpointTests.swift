import Testing
import Remat

@Suite struct CheckpointTests {
    static let config = GPTConfig(contextLength: 16, layers: 4, heads: 2, modelDimension: 32, mlpHidden: 64, batchSize: 2)

    /// Loss and every gradient (as raw bit patterns) of one step of a fresh tiny GPT under `policy`.
    static func step(_ policy: CheckpointPolicy, dropout: Float = 0, preserveRNG: Bool = true) throws -> (UInt32, [String: [UInt32]]) {
        var c = config
        c.dropout = dropout
        let model = GPT(c, seed: 3)
        try model.applyCheckpointing(policy, options: CheckpointOptions(preserveRNGState: preserveRNG))
        var source = ArithmeticText.dataset(seed: 5)
        let batch = source.nextBatch(batchSize: 2, length: 16)
        let loss = model.loss(batch.input, targets: batch.target)
        loss.backward()
        let grads = Dictionary(uniqueKeysWithValues: model.namedParameters.map { ($0.0, $0.1.grad?.toArray().map(\.bitPattern) ?? []) })
        return (loss.item.bitPattern, grads)
    }

    static let policies: [CheckpointPolicy] = [
        .all, .alternate, .everyK(2), .everyK(3), .sqrt, .recursive(levels: 2), .recursive(levels: 3),
        .revolve(slots: 2), .revolve(slots: 3), .storeNothing, .heavyOps(largeParameters: 4096), .auto(minimumParameters: 10_000),
        .saveMatmuls, .selective(.perOp(["attention_probs": .mustSave, "layer_norm": .preferSave])),
    ]

    @Test(arguments: policies)
    func gradientsAreBitwiseEqualToNoCheckpointing(policy: CheckpointPolicy) throws {
        let (refLoss, refGrads) = try Self.step(.none)
        let (loss, grads) = try Self.step(policy)
        #expect(loss == refLoss)
        for (name, g) in refGrads { #expect(grads[name] == g, "\(policy): gradient of \(name) differs") }
    }

    @Test(arguments: policies)
    func withDropoutTheReplayedMasksKeepGradientsBitwiseEqual(policy: CheckpointPolicy) throws {
        let (refLoss, refGrads) = try Self.step(.none, dropout: 0.1)
        let (loss, grads) = try Self.step(policy, dropout: 0.1)
        #expect(loss == refLoss)
        for (name, g) in refGrads { #expect(grads[name] == g, "\(policy) with dropout: gradient of \(name) differs") }
    }

    @Test func withoutRNGReplayDropoutGradientsDiffer() throws {
        let (_, refGrads) = try Self.step(.none, dropout: 0.1)
        let (_, grads) = try Self.step(.all, dropout: 0.1, preserveRNG: false)
        #expect(refGrads.contains { grads[$0.key] != $0.value }, "recompute without replay should draw other masks")
    }

    @Test(arguments: [CheckpointPolicy.none, .all, .everyK(2), .revolve(slots: 2)])
    func ledgerReturnsToBaselineEveryStepFor100Steps(policy: CheckpointPolicy) throws {
        let ledger = MemoryLedger()
        try MemoryLedger.withLedger(ledger) {
            let model = GPT(Self.config, seed: 1)
            try model.applyCheckpointing(policy)
            let trainer = Trainer(model: model, optimizer: Trainer.specAdamW(model), ledger: ledger)
            var source = ArithmeticText.dataset(seed: 2)
            var live: Set<Int> = []
            for _ in 0..<100 {
                trainer.step(source.nextBatch(batchSize: 2, length: 16))
                live.insert(ledger.currentBytes)
                #expect(ledger.currentBytes(in: .activations) == 0)
            }
            #expect(live.count == 1, "\(policy): live bytes after steps vary: \(live.sorted())")
        }
    }

    /// Peak saved activations during the forward fall with checkpointing.
    @Test func checkpointingLowersPeakActivations() throws {
        func peakActivations(_ policy: CheckpointPolicy) throws -> Int {
            let ledger = MemoryLedger()
            return try MemoryLedger.withLedger(ledger) {
                let model = GPT(GPTConfig(contextLength: 32, layers: 6, heads: 2, modelDimension: 32, mlpHidden: 64, batchSize: 2), seed: 1)
                try model.applyCheckpointing(policy)
                var source = ArithmeticText.dataset(seed: 2)
                let batch = source.nextBatch(batchSize: 2, length: 32)
                ledger.resetPeak()
                model.loss(batch.input, targets: batch.target).backward()
                return ledger.peakBytes(in: .activations)
            }
        }
        let none = try peakActivations(.none)
        for policy in [CheckpointPolicy.all, .sqrt, .revolve(slots: 2), .storeNothing] {
            let p = try peakActivations(policy)
            #expect(p < none / 2, "\(policy): peak activations \(p) not below half of \(none)")
        }
    }

    @Test func nestedRegionsGiveTheSameGradients() {
        let rng = RandomGenerator(seed: 4)
        let w1 = Tensor.randn([8, 8], generator: rng, requiresGrad: true)
        let w2 = Tensor.randn([8, 8], generator: rng, requiresGrad: true)
        let x = Tensor.randn([4, 8], generator: rng, requiresGrad: true)
        func f(_ x: Tensor) -> Tensor { tanh(matmul(x, w1)) }
        func g(_ x: Tensor) -> Tensor { gelu(matmul(f(x), w2)) * x }
        func grads(_ body: () -> Tensor) -> [[UInt32]] {
            for t in [w1, w2, x] { t.grad = nil }
            body().summed().backward()
            return [w1, w2, x].map { $0.grad!.toArray().map(\.bitPattern) }
        }
        let plain = grads { g(g(x)) }
        let nested = grads {
            checkpoint(x) { h in
                checkpoint(g(h)) { inner in checkpoint(inner) { g($0) } }
            }
        }
        #expect(plain == nested)
    }

    /// A checkpoint region drops what its ops save, so an op's intermediate input must be freed
    /// when the region's forward ends: a backward closure that captured the input (instead of
    /// saving it through a slot) would keep it alive, out of the region's reach. (Layer and batch
    /// norm once did, through a helper that stored the graph inputs.)
    @Test(arguments: ["layer_norm", "batch_norm", "linear", "matmul", "conv2d", "attention_probs", "causal_softmax",
                      "softmax", "gelu", "relu", "tanh", "exp", "mul", "div", "max_pool", "avg_pool", "cross_entropy", "dropout"])
    func opsDoNotHoldTheirInputsOutsideTheirSlots(op: String) {
        final class Probe: @unchecked Sendable { weak var storage: Storage? }
        let probe = Probe()
        let rng = RandomGenerator(seed: 8)
        let w2 = Tensor.randn([4, 4], generator: rng, requiresGrad: true)
        let cw = Tensor.randn([3, 2, 3, 3], generator: rng, requiresGrad: true)
        let gamma = Tensor.ones([2]), beta = Tensor.zeros([2])
        gamma.requiresGrad = true
        beta.requiresGrad = true
        let targets = Tensor(indices: [1, 0], shape: [2])
        let x = Tensor.randn([2, 2, 4, 4], generator: rng, requiresGrad: true)
        let y = checkpoint(x) { h in
            let t = h * 2   // a fresh intermediate: only the op under test saves it
            if probe.storage == nil { probe.storage = t.storage }
            let out: Tensor
            switch op {
            case "layer_norm": out = layerNorm(t, weight: Tensor.ones([4]), bias: nil)
            case "batch_norm": out = batchNorm2d(t, weight: gamma, bias: beta, runningMean: nil, runningVar: nil, training: true)
            case "linear": out = linear(t, weight: w2, bias: nil)
            case "matmul": out = matmul(t, w2)
            case "conv2d": out = conv2d(t, weight: cw, bias: nil)
            case "attention_probs": out = causalAttentionProbabilities(q: t, k: t, scale: 0.5)
            case "causal_softmax": out = causalSoftmax(t)
            case "softmax": out = softmax(t)
            case "gelu": out = gelu(t)
            case "relu": out = relu(t)
            case "tanh": out = tanh(t)
            case "exp": out = exp(t)
            case "mul": out = t * t
            case "div": out = h / t
            case "max_pool": out = maxPool2d(t, kernel: 2, stride: 2, padding: 0)
            case "avg_pool": out = adaptiveAvgPool2d(t)
            case "cross_entropy": out = crossEntropy(logits: t.reshaped([2, 32]), targets: targets)
            case "dropout": out = dropout(t, probability: 0.5, generator: rng)
            default: preconditionFailure(op)
            }
            return out.summed()
        }
        #expect(probe.storage == nil, "\(op): its input is still alive after the region's forward")
        y.backward()
        #expect(x.grad != nil)
    }

    @Test func regionsRecomputeWithTheForwardNamesAndTraceThem() throws {
        let x = Tensor([1, 2, 3, 4], shape: [2, 2], requiresGrad: true)
        let seen = RegionLog()
        CheckpointRegion.$debugSink.withValue(CheckpointRegion.RegionSink { seen.add($0) }) {
            let y = withNameScope("") {
                withNameScope("block") { checkpoint([x], options: CheckpointOptions(debug: true)) { [tanh(matmul($0[0], $0[0]))] }[0] }
            }
            y.summed().backward()
        }
        let r = try #require(seen.regions.first)
        #expect(r.recomputeCount == 1)
        #expect(r.trace == ["forward block/matmul#0", "forward block/tanh#0", "recompute block/matmul#0", "recompute block/tanh#0"])
        #expect(r.savedInfos.map(\.name) == ["block/matmul#0:a", "block/matmul#0:b", "block/tanh#0:output"])
    }

    @Test func recomputeStopsOnceEverySavedTensorExists() throws {
        let x = Tensor([1, 2, 3, 4], shape: [2, 2], requiresGrad: true)
        let w = Tensor([0.5, -1, 2, 0.25], shape: [2, 2], requiresGrad: true)
        func run(_ region: Bool) -> (seen: RegionLog, grads: [[Float]]) {
            x.grad = nil
            w.grad = nil
            let seen = RegionLog()
            CheckpointRegion.$debugSink.withValue(CheckpointRegion.RegionSink { seen.add($0) }) {
                let y = withNameScope("") {
                    withNameScope("block") {
                        let body: ([Tensor]) -> [Tensor] = { xs in [exp(relu(matmul(xs[0], w)) * 2 + 1)] }
                        return region ? checkpoint([x], options: CheckpointOptions(debug: true), body)[0] : body([x])[0]
                    }
                }
                y.summed().backward()
            }
            return (seen, [x.grad!.toArray(), w.grad!.toArray()])
        }
        let plain = run(false), checkpointed = run(true)
        #expect(plain.grads.map { $0.map(\.bitPattern) } == checkpointed.grads.map { $0.map(\.bitPattern) })
        let r = try #require(checkpointed.seen.regions.first)
        // exp, the last op, saves its output: nothing may be skipped.
        #expect(r.skippedInLastRecompute.isEmpty)
    }

    @Test func recomputeSkipsTheOpsAfterTheLastSave() throws {
        let x = Tensor([1, 2, 3, 4], shape: [2, 2], requiresGrad: true)
        let seen = RegionLog()
        CheckpointRegion.$debugSink.withValue(CheckpointRegion.RegionSink { seen.add($0) }) {
            let y = withNameScope("") {
                // tanh saves its output; the scalar ops after it save nothing: not re-run.
                withNameScope("block") { checkpoint([x], options: CheckpointOptions(debug: true)) { [tanh(matmul($0[0], $0[0])) * 3 + 1] }[0] }
            }
            y.summed().backward()
        }
        let r = try #require(seen.regions.first)
        #expect(r.recomputeCount == 1)
        #expect(r.skippedInLastRecompute.count == 2, "\(r.trace)")
        #expect(r.trace.suffix(2).allSatisfy { $0.hasPrefix("skip ") }, "\(r.trace)")
        #expect(x.grad != nil)
    }

    /// A nested region none of whose ops the outer recompute needs is skipped whole; the ops after
    /// it still record under their forward names (its outputs require grad as in the forward), so
    /// a later op of the same kind is decided as the one it was.
    @Test func nestedRegionsTheRecomputeDoesNotNeedAreSkippedWhole() throws {
        let x = Tensor([0.5, -1, 2, 0.25], shape: [4], requiresGrad: true)
        var innerCalls = 0
        func body(_ h: Tensor, region: Bool) -> Tensor {
            let inner: (Tensor) -> Tensor = { innerCalls += 1; return tanh($0) }
            let b = region ? checkpoint(h, inner) : inner(h)
            let c = b * 2                  // mul_scalar#0, not needed by the recompute
            let d = exp(h) * 3             // mul_scalar#1, on the way to sigmoid's saved output
            return sigmoid(d) + c
        }
        func grads(_ region: Bool) -> (grad: [UInt32], seen: RegionLog) {
            x.grad = nil
            let seen = RegionLog()
            CheckpointRegion.$debugSink.withValue(CheckpointRegion.RegionSink { seen.add($0) }) {
                let y = withNameScope("") {
                    region ? checkpoint(x, options: CheckpointOptions(debug: true)) { body($0, region: true) } : body(x, region: false)
                }
                y.summed().backward()
            }
            return (x.grad!.toArray().map(\.bitPattern), seen)
        }
        let plain = grads(false)
        innerCalls = 0
        let nested = grads(true)
        #expect(nested.grad == plain.grad)
        let outer = try #require(nested.seen.regions.last)
        #expect(outer.trace.contains("skip checkpoint#1"), "\(outer.trace)")
        // The inner region ran in the forward and its own recompute (tanh's output), not in the outer one.
        #expect(innerCalls == 2)
    }

    @Test func determinismCheckFailureNamesTheOpAndBothShapes() async {
        await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            var calls = 0
            let x = Tensor([1, 2, 3, 4, 5, 6], shape: [6], requiresGrad: true)
            let y = checkpoint(x) { h in
                calls += 1
                let n = calls == 1 ? 6 : 4   // the recompute takes another path
                // (The product is not kept, so the recompute runs the narrow: a view of an input
                // that is still alive would be served as the forward made it.)
                return exp((h * 2).narrowed(axis: 0, start: 0, length: n)).summed()
            }
            y.backward()
        }.map { result in
            let text = String(decoding: result.standardErrorContent, as: UTF8.self)
            #expect(text.contains("determinism check failed"))
            #expect(text.contains("exp"))
            #expect(text.contains("[6]") && text.contains("[4]"))
        }
    }

    @Test func policiesParseAndRejectNonsense() throws {
        #expect(try CheckpointPolicy.parse("every-k:2") == .everyK(2))
        #expect(try CheckpointPolicy.parse("revolve:3") == .revolve(slots: 3))
        #expect(try CheckpointPolicy.parse("heavy-ops") == .heavyOps(largeParameters: 1 << 18))
        #expect(throws: CheckpointPolicy.ParseError.self) { try CheckpointPolicy.parse("every-k") }
        #expect(throws: CheckpointPolicy.ParseError.self) { try CheckpointPolicy.parse("revolve:0") }
        #expect(throws: CheckpointPolicy.ParseError.self) { try CheckpointPolicy.parse("bogus") }
    }

    @Test func allPolicyWrapsEveryBlock() throws {
        let model = GPT(Self.config)
        #expect(try model.applyCheckpointing(.all) == ["blocks.0", "blocks.1", "blocks.2", "blocks.3"])
        #expect(try model.applyCheckpointing(.alternate) == ["blocks.0", "blocks.2"])
        #expect(try model.applyCheckpointing(.heavyOps(largeParameters: 1 << 30)) == (0..<4).map { "blocks.\($0).attn" })
    }

    /// save-matmuls keeps exactly the linear-layer products (a parameter operand) and attention's
    /// P·V, and serves them to the recompute; QKᵀ, the softmax and everything else is recomputed.
    /// Kept: the linear outputs and attention's P·V (explicit path) or the fused attention op.
    @Test(arguments: AttentionKernel.allCases)
    func saveMatmulsKeepsLinearOutputsAndAttentionValues(kernel: AttentionKernel) throws {
        let model = GPT(Self.config, seed: 3)
        model.setAttentionKernel(kernel)
        try model.applyCheckpointing(.saveMatmuls)
        let seen = RegionLog()
        var source = ArithmeticText.dataset(seed: 5)
        let batch = source.nextBatch(batchSize: 2, length: 16)
        CheckpointRegion.$debugSink.withValue(CheckpointRegion.RegionSink { seen.add($0) }) {
            model.loss(batch.input, targets: batch.target).backward()
        }
        let regions = seen.regions
        #expect(regions.count == 4)
        let attention = kernel == .fused ? "blocks.0.attn/sdpa#0" : "blocks.0.attn/matmul#0"
        #expect(regions[0].keptOutputs == ["blocks.0.attn.proj/linear#0", "blocks.0.attn.qkv/linear#0", attention,
                                           "blocks.0.mlp.fc/linear#0", "blocks.0.mlp.proj/linear#0"])
        #expect(regions.allSatisfy { $0.recomputeCount == 1 })
    }

    @Test func taggedTensorsAreKeptBySaveOnlyTags() {
        let rng = RandomGenerator(seed: 9)
        let w = Tensor.randn([6, 6], generator: rng, requiresGrad: true)
        let x = Tensor.randn([3, 6], generator: rng, requiresGrad: true)
        func body(_ h: Tensor) -> Tensor { tanh(matmul(tag(gelu(matmul(h, w)), "mid"), w)) }
        let seen = RegionLog()
        let plain: [UInt32] = { x.grad = nil; body(x).summed().backward(); return x.grad!.toArray().map(\.bitPattern) }()
        x.grad = nil
        CheckpointRegion.$debugSink.withValue(CheckpointRegion.RegionSink { seen.add($0) }) {
            checkpoint(x, options: CheckpointOptions(selective: .saveOnly(tags: ["mid"])), body).summed().backward()
        }
        #expect(x.grad!.toArray().map(\.bitPattern) == plain)
        #expect(seen.regions.map(\.keptOutputs) == [["tag:mid#0"]])
    }
}

/// Collects the regions a test's task creates (CheckpointRegion.debugSink is task-local).
final class RegionLog: @unchecked Sendable {
    private(set) var regions: [CheckpointRegion] = []
    func add(_ r: CheckpointRegion) { regions.append(r) }
}
