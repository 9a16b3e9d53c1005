import Testing
import Remat

/// BERT (the minilm architecture, small) under checkpointing policies and a memory plan: its
/// layers take two inputs (hidden states and the attention mask's bias), so they run as regions
/// only through the one module entry point.
@Suite struct BertCheckpointTests {
    static let config = BertConfig(vocab_size: 120, hidden_size: 32, num_hidden_layers: 4, num_attention_heads: 4,
                                   intermediate_size: 64, max_position_embeddings: 32)

    /// Token ids with padding at the end of the second sequence (the mask matters), and labels.
    static func batch() -> TrainingBatch {
        let g = RandomGenerator(seed: 11)
        var ids = (0..<(2 * 16)).map { _ in 5 + Int(g.nextUInt64() % 100) }
        for j in 12..<16 { ids[16 + j] = 0 }
        return TrainingBatch(input: Tensor(indices: ids, shape: [2, 16]), target: Tensor(indices: [1, 0], shape: [2]))
    }

    /// Gradients (bit patterns, by name) and the peak of saved activations of one step under `policy`.
    static func step(_ policy: CheckpointPolicy, attention: AttentionKernel = .default) throws -> (grads: [String: [UInt32]], peakActivations: Int) {
        let ledger = MemoryLedger()
        return try MemoryLedger.withLedger(ledger) {
            let model = BertClassifier(config, labels: 2, seed: 4)
            #expect(model.setAttentionKernel(attention).count == 4)
            try model.applyCheckpointing(policy)
            let b = batch()
            ledger.resetPeak()
            model.loss(b.input, targets: b.target).backward()
            let grads = Dictionary(uniqueKeysWithValues: model.namedParameters.map { ($0.0, $0.1.grad?.toArray().map(\.bitPattern) ?? []) })
            return (grads, ledger.peakBytes(in: .activations))
        }
    }

    @Test(arguments: [CheckpointPolicy.all, .alternate, .saveMatmuls, .heavyOps(largeParameters: 1 << 30),
                      .modules(["bert.encoder.layer.1", "bert.encoder.layer.2.attention.self"])], AttentionKernel.allCases)
    func gradientsAreBitwiseEqualAndActivationsFall(policy: CheckpointPolicy, attention: AttentionKernel) throws {
        let plain = try Self.step(.none, attention: attention)
        let checkpointed = try Self.step(policy, attention: attention)
        #expect(checkpointed.grads.count == plain.grads.count)
        for (name, g) in plain.grads { #expect(checkpointed.grads[name] == g, "\(policy): gradient of \(name) differs") }
        #expect(checkpointed.peakActivations < plain.peakActivations, "\(policy): \(checkpointed.peakActivations) vs \(plain.peakActivations)")
    }

    /// The fused attention with the padding mask as its bias: the same gradients as the explicit
    /// scores + mask + softmax to float32 rounding, and less saved (no T×T probabilities). (The
    /// key biases' gradients are 0 in exact arithmetic, a softmax being shift-invariant: both
    /// paths give rounding noise there, hence the absolute floor.)
    @Test func fusedAttentionMatchesExplicit() throws {
        let explicit = try Self.step(.none, attention: .explicit), fused = try Self.step(.none, attention: .fused)
        for (name, g) in explicit.grads {
            let e = g.map(Float.init(bitPattern:)), f = try #require(fused.grads[name]).map(Float.init(bitPattern:))
            let scale = max(e.map(abs).max() ?? 0, 1e-6)
            let err = zip(e, f).map { abs($0 - $1) }.max() ?? 0
            #expect(err <= 1e-4 * scale, "\(name): \(err) of \(scale)")
        }
        #expect(fused.peakActivations < explicit.peakActivations, "\(fused.peakActivations) vs \(explicit.peakActivations)")
    }

    @Test func policiesCheckpointTheLayersAndSelfAttention() throws {
        let model = BertClassifier(Self.config, labels: 2)
        #expect(try model.applyCheckpointing(.all) == (0..<4).map { "bert.encoder.layer.\($0)" })
        #expect(try model.applyCheckpointing(.heavyOps(largeParameters: 1 << 30)) == (0..<4).map { "bert.encoder.layer.\($0).attention.self" })
        #expect(model.planningRegions.map(\.0) == (0..<4).map { "bert.encoder.layer.\($0)" })
    }

    @Test("bert: under budget, prediction within 1%, gradients bitwise equal")
    func budgets() throws {
        let n = try PlanningTests.checkBudgets({ seed, ledger in
            let model = BertClassifier(Self.config, labels: 2, seed: seed)
            return Trainer(model: model, optimizer: AdamW(model.parameters, learningRate: 1e-3), gradientClip: nil, ledger: ledger)
        }, batch: Self.batch(), fractions: [0.6, 0])
        #expect(n == 2)
    }
}

/// Policies that name what a model cannot checkpoint fail with a typed error before anything runs.
@Suite struct CheckpointPolicyErrorTests {
    /// A module whose forward counts its calls: a recompute would count twice.
    final class Counter: Module, UnaryLayer {
        let linear: Linear
        var calls = 0
        override init() { linear = Linear(4, 4, generator: RandomGenerator(seed: 1)) }
        override var supportsRecompute: Bool { false }
        func callAsFunction(_ x: Tensor) -> Tensor {
            scoped(x) { [self] x in calls += 1; return linear(x) }
        }
    }

    final class Model: Module {
        let counter = Counter()
        let head: Linear
        override init() {
            head = Linear(4, 2, generator: RandomGenerator(seed: 2))
            super.init()
            finalize()
        }
    }

    @Test func unknownModuleIsNamed() {
        let model = GPT(CheckpointTests.config)
        #expect(throws: CheckpointPolicyError.unknownModule(path: "blocks.9", model: "GPT")) {
            try model.applyCheckpointing(.modules(["blocks.0", "blocks.9"]))
        }
        #expect(model.execution == nil, "a rejected policy must not be half applied")
    }

    @Test func moduleThatCannotRecomputeIsRejected() {
        let model = Model()
        #expect(throws: CheckpointPolicyError.notRecomputable(path: "counter", type: "Counter")) {
            try model.applyCheckpointing(.modules(["counter"]))
        }
        #expect(throws: CheckpointPolicyError.notRecomputable(path: "counter", type: "Counter")) {
            try model.applyCheckpointing { path, _ in path == "counter" }
        }
        #expect(throws: CheckpointPolicyError.notRecomputable(path: "counter", type: "Counter")) {
            try model.applyCheckpointing(.auto(minimumParameters: 1))
        }
    }

    @Test func blockPoliciesNeedDeclaredBlocks() throws {
        let model = Model()
        #expect(throws: CheckpointPolicyError.noBlocks(policy: "all", model: "Model")) { try model.applyCheckpointing(.all) }
        #expect(throws: CheckpointPolicyError.noBlockChain(policy: "revolve:2", model: "Model")) {
            try model.applyCheckpointing(.revolve(slots: 2))
        }
        #expect(throws: CheckpointPolicy.ParseError.self) { try CheckpointPolicy.parse("modules:") }
        #expect(throws: CheckpointPolicy.ParseError.self) { try CheckpointPolicy.parse("modules:a,,b") }
        #expect(try CheckpointPolicy.parse("modules:a,b.c") == .modules(["a", "b.c"]))
    }
}
