import Testing
import Remat

/// Activation compression applied to whole models: lossless codecs give bitwise the gradients of
/// keeping, lossy ones leave the forward untouched and move gradients within their bounds, the
/// ledger counts packed bytes and returns to its baseline, and compression composes with
/// checkpoint regions (only what a region keeps is packed).
@Suite struct ActivationCompressionTests {
    static let gptConfig = GPTConfig(contextLength: 16, layers: 4, heads: 2, modelDimension: 32, mlpHidden: 64, batchSize: 2)
    static let resnetConfig = ResNetConfig(stages: [2, 2], width: 4, classes: 5, imageSize: 16)
    static let bertConfig = BertConfig(vocab_size: 120, hidden_size: 32, num_hidden_layers: 3, num_attention_heads: 4,
                                       intermediate_size: 64, max_position_embeddings: 32)

    struct Step {
        var loss: UInt32
        var grads: [String: [Float]]
        /// Activation bytes at the end of the forward, the activation peak, and how many saved
        /// tensors were packed.
        var keptAtForwardEnd: Int
        var peakActivations: Int
        var packed: Int
    }

    /// One forward + backward of a fresh tiny model (`model`: gpt, resnet, bert) under `policy`
    /// and `compression`, in its own ledger.
    static func step(_ model: String, _ policy: CheckpointPolicy, _ compression: ActivationCompression?,
                     offload: ActivationOffload? = nil) throws -> Step {
        let ledger = MemoryLedger()
        return try MemoryLedger.withLedger(ledger) {
            let m: any TrainableModel
            let input: Tensor, target: Tensor
            switch model {
            case "gpt":
                // The explicit attention: the causal codecs pack its saved probabilities.
                let gpt = GPT(gptConfig, seed: 3)
                gpt.setAttentionKernel(.explicit)
                m = gpt
                var source = ArithmeticText.dataset(seed: 5)
                let b = source.nextBatch(batchSize: 2, length: 16)
                (input, target) = (b.input, b.target)
            case "resnet":
                m = ResNet(resnetConfig, seed: 7)
                input = Tensor.randn([3, 3, 16, 16], generator: RandomGenerator(seed: 8))
                target = Tensor(indices: [0, 3, 4], shape: [3])
            default:
                m = BertClassifier(bertConfig, labels: 2, seed: 4)
                let g = RandomGenerator(seed: 11)
                var ids = (0..<32).map { _ in 5 + Int(g.nextUInt64() % 100) }
                for j in 12..<16 { ids[16 + j] = 0 }
                input = Tensor(indices: ids, shape: [2, 16])
                target = Tensor(indices: [1, 0], shape: [2])
            }
            try m.applyCheckpointing(policy)
            m.applyActivationCompression(compression)
            m.applyActivationOffload(offload)
            let counter = PackCounter()
            ledger.resetPeak()
            let loss = AutogradContext.with({ ctx in
                ctx.opObserver = { node, _ in
                    for s in node.savedTensors { if case .packed? = s.payload { counter.count += 1 } }
                }
            }) { m.loss(input, targets: target) }
            let kept = ledger.currentBytes(in: .activations)
            loss.backward()
            try m.savedTensorPolicy?.checkAfterBackward()
            #expect(ledger.currentBytes(in: .offloaded) == 0)
            #expect(ledger.currentBytes(in: .activations) == 0, "\(model) \(policy) \(compression?.description ?? "-"): activations left after backward")
            let grads = Dictionary(uniqueKeysWithValues: m.namedParameters.map { ($0.0, $0.1.grad?.toArray() ?? []) })
            return Step(loss: loss.item.bitPattern, grads: grads, keptAtForwardEnd: kept,
                        peakActivations: ledger.peakBytes(in: .activations), packed: counter.count)
        }
    }

    static func bits(_ g: [String: [Float]]) -> [String: [UInt32]] { g.mapValues { $0.map(\.bitPattern) } }

    @Test(arguments: ["gpt", "resnet", "bert"], [CheckpointPolicy.none, .all, .saveMatmuls])
    func losslessCodecsGiveBitwiseEqualGradients(model: String, policy: CheckpointPolicy) throws {
        let reference = try Self.step(model, .none, nil)
        let rules = ActivationCompression([.init(.reluMask), .init(.causal), .init(.none, where: .ops(["layer_norm"])), .init(.bits)])
        let compressed = try Self.step(model, policy, rules)
        #expect(compressed.loss == reference.loss)
        #expect(Self.bits(compressed.grads) == Self.bits(reference.grads), "\(model) \(policy): gradients differ")
        // ResNet has ReLUs, GPT causal attention probabilities (kept unless its regions recompute
        // them); BERT's attention is not causal, and no model saves a 0/1 tensor (dropout replays
        // its mask).
        let packs = model == "resnet" || (model == "gpt" && policy == .none)
        #expect((compressed.packed > 0) == packs, "\(model) \(policy): \(compressed.packed) packed")
    }

    /// ReLU masks on ResNet: its ReLU outputs are also the next convolution's input, so the mask
    /// alone frees only the outputs nothing else saves; with bf16 on the convolutions' inputs too,
    /// the saved activations fall well below half.
    @Test func reluMasksShrinkResNetActivationsWithBF16OnTheRest() throws {
        let plain = try Self.step("resnet", .none, nil)
        let masks = try Self.step("resnet", .none, ActivationCompression(.reluMask))
        let both = try Self.step("resnet", .none, ActivationCompression([.init(.reluMask), .init(.bf16)]))
        #expect(masks.keptAtForwardEnd < plain.keptAtForwardEnd)
        #expect(Double(both.keptAtForwardEnd) < 0.55 * Double(plain.keptAtForwardEnd), "\(both.keptAtForwardEnd) of \(plain.keptAtForwardEnd)")
    }

    /// bf16 and fp8 change only what backward reads: the loss is bitwise the same, gradients
    /// move by little (relative L2 distance per parameter below the codec's precision × depth).
    @Test(arguments: [(Codec.bf16, 0.03), (.fp8E4M3(.perGroup(64)), 0.25), (.int8, 0.1)])
    func lossyCodecsKeepTheForwardAndMoveGradientsALittle(codec: Codec, tolerance: Double) throws {
        let reference = try Self.step("gpt", .none, nil)
        let compressed = try Self.step("gpt", .none, ActivationCompression(codec))
        #expect(compressed.loss == reference.loss)
        #expect(Self.bits(compressed.grads) != Self.bits(reference.grads), "\(codec) changed nothing")
        for (name, g) in reference.grads {
            let c = compressed.grads[name]!
            let diff = zip(g, c).reduce(0.0) { $0 + Double($1.0 - $1.1) * Double($1.0 - $1.1) }.squareRoot()
            let norm = g.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
            #expect(diff <= tolerance * max(norm, 1e-12), "\(codec): \(name) moved by \(diff / max(norm, 1e-12))")
        }
    }

    /// Inside checkpoint regions only what the region keeps is packed: under `all` the kept bytes
    /// are the block inputs and what lies outside blocks, each packed once (tensors sharing a
    /// storage share its packed form); under bf16 they halve (the int32 targets stay).
    @Test func regionsPackWhatTheyKeepOnceEach() throws {
        for policy in [CheckpointPolicy.none, .all, .saveMatmuls] {
            let raw = try Self.step("gpt", policy, nil)
            let bf16 = try Self.step("gpt", policy, ActivationCompression(.bf16))
            let ratio = Double(bf16.keptAtForwardEnd) / Double(raw.keptAtForwardEnd)
            #expect(ratio > 0.5 && ratio < 0.51, "\(policy): kept \(bf16.keptAtForwardEnd) of \(raw.keptAtForwardEnd)")
            #expect(bf16.peakActivations < raw.peakActivations)
        }
    }

    @Test func explainSaysWhatWasPackedAndWhatWasIgnored() throws {
        let workload = try ModelZoo.workload("gpt-mini")
        let e = try CheckpointExplainer.explain(workload, policy: .saveMatmuls, compression: ActivationCompression(.fp8E4M3(.perTensor)), batchSize: 2)
        let packed = e.saved.filter { $0.codec != nil }
        let ignored = e.saved.filter { $0.ignoredCodec != nil }
        #expect(!packed.isEmpty && !ignored.isEmpty)
        // A view of a packed storage (q and k of the kept qkv output) shows the storage's packed bytes.
        #expect(packed.allSatisfy { $0.kept && $0.packedBytes! >= Codec.fp8E4M3(.perTensor).packedByteCount(shape: $0.info.shape) })
        #expect(ignored.allSatisfy { !$0.kept })
        #expect(e.measuredPeakActivations < e.measuredPeakActivationsWithoutPolicy / 3)
    }

    @Test func ledgerReturnsToBaselineEveryStep() throws {
        for (policy, compression) in [(CheckpointPolicy.none, ActivationCompression(.bf16)),
                                      (.saveMatmuls, ActivationCompression(.fp8E4M3(.perGroup(32)))),
                                      (.all, ActivationCompression([.init(.int8, where: .ops(["linear"])), .init(.fp16)]))] {
            let ledger = MemoryLedger()
            try MemoryLedger.withLedger(ledger) {
                let model = GPT(Self.gptConfig, seed: 1)
                try model.applyCheckpointing(policy)
                model.applyActivationCompression(compression)
                let trainer = Trainer(model: model, optimizer: Trainer.specAdamW(model), ledger: ledger)
                var source = ArithmeticText.dataset(seed: 2)
                var live: Set<Int> = []
                for _ in 0..<20 {
                    trainer.step(source.nextBatch(batchSize: 2, length: 16))
                    live.insert(ledger.currentBytes)
                    #expect(ledger.currentBytes(in: .activations) == 0)
                }
                #expect(live.count == 1, "\(policy) + \(compression): live bytes after steps vary: \(live.sorted())")
            }
        }
    }

    @Test func rulesChooseInOrderAndSelectorsParse() throws {
        let c = try ActivationCompression.parse(["relu-mask", "none:op=softmax", "fp8-e4m3/g32:module=blocks.1", "bf16:role=input,output"])
        #expect(c.description == "relu-mask none:op=softmax fp8-e4m3/g32:module=blocks.1 bf16:role=input,output")
        func info(_ name: String, op: String, role: String, output: Bool = false) -> SavedTensorInfo {
            SavedTensorInfo(name: name + ":" + role, nodeName: name, op: op, role: role, shape: [4], dtype: .float32,
                            byteCount: 16, isParameter: false, isOutput: output)
        }
        #expect(c.codec(for: info("blocks.0.mlp/relu#0", op: "relu", role: "output", output: true)) == .reluMask)
        #expect(c.codec(for: info("blocks.1/softmax#0", op: "softmax", role: "output", output: true)) == .none)
        #expect(c.codec(for: info("blocks.1.attn/matmul#0", op: "matmul", role: "a")) == .fp8E4M3(.perGroup(32)))
        #expect(c.codec(for: info("blocks.10/matmul#0", op: "matmul", role: "a")) == .none)   // not inside blocks.1
        #expect(c.codec(for: info("blocks.10/linear#0", op: "linear", role: "input")) == .bf16)
        #expect(!c.isLossless && ActivationCompression(.reluMask).isLossless)
        for bad in ["bf16:op=", "bf16:where=x", "bf16:op=a,,b", "fp8:all", "int8/g4", "fp8-e4m3/g0"] {
            #expect(throws: CodecError.self, "\(bad)") { try ActivationCompression.parse([bad]) }
        }
        #expect(try StepVariant.parse("all+bf16+relu-mask").description == "all+bf16+relu-mask")
    }

    /// A tag selects the tensors an op tagged, wherever they are saved: `mul` saves the tagged
    /// GELU output (packed) and `x` (not tagged, kept); GELU saves `x` too.
    @Test func tagsSelectTaggedTensors() {
        let x = Tensor.randn([8, 8], generator: RandomGenerator(seed: 2), requiresGrad: true)
        let session = SavedActivationTreatment(compression: ActivationCompression(.bf16, where: .tags(["mid"]))).beginForward()
        let box = NameBox()
        let observer: @Sendable (Node, Tensor) -> Void = { node, output in
            session.opObserver?(node, output)
            for s in node.savedTensors { if case .packed? = s.payload { box.names.append(s.info.name) } }
        }
        withSavedTensorHooks(session.hooks) {
            AutogradContext.with({ $0.opObserver = observer }) { (tag(gelu(x), "mid") * x).summed().backward() }
        }
        #expect(box.names == ["mul#0:lhs"] || (box.names.count == 1 && box.names[0].hasSuffix(":lhs")), "\(box.names)")
    }
}

private final class PackCounter: @unchecked Sendable { var count = 0 }
private final class NameBox: @unchecked Sendable { var names: [String] = [] }
