import Foundation
/// The reference workloads by name (../shared/spec/workloads.md): a freshly initialised model,
/// its spec optimizer, synthetic batches of the right shapes, and the spec batch size.
public struct Workload {
    public let name: String
    public let model: any TrainableModel
    public let specBatchSize: Int
    /// The spec optimizer for `model` (AdamW for the GPTs, SGD momentum 0.9 lr 0.1 for ResNet).
    public let makeOptimizer: () -> any Optimizer
    /// A synthetic batch maker for (batch size, seed): built-in arithmetic text for language
    /// models, `N(0, 1)` images with random classes for image models.
    public let batches: (Int, UInt64) -> () -> TrainingBatch
    /// What a batch file for `remat step` must hold.
    public let batchKind: BatchKind

    public enum BatchKind: Sendable {
        /// `input` and `target` I32/I64 `[B, T]` token ids in `0..<vocabulary` (next-token targets).
        case tokens(contextLength: Int, vocabulary: Int)
        /// `input` F32 `[B, C, S, S]`, `target` I32/I64 `[B]` classes in `0..<classes`.
        case images(channels: Int, size: Int, classes: Int)
        /// `input` I32/I64 `[B, T]` token ids in `0..<vocabulary` (0 pads), `target` I32/I64 `[B]` labels in `0..<labels`.
        case labelledSequences(maxLength: Int, vocabulary: Int, labels: Int)
    }
}

public enum ModelZoo {
    public enum Error: Swift.Error, CustomStringConvertible, Equatable {
        case unknownModel(String, known: [String])
        public var description: String {
            switch self {
            case .unknownModel(let name, let known):
                return "unknown model '\(name)'; known models: \(known.joined(separator: ", "))"
            }
        }
    }

    /// Names of the language models (`gpt-mini`, `gpt-mini-long`, `gpt-small`).
    public static var languageModelNames: [String] { GPTConfig.presets.keys.sorted() }
    /// Every workload name.
    public static var names: [String] { languageModelNames + ["minilm"] + ResNetConfig.presets.keys.sorted() }

    /// The GPT configuration named `name`.
    public static func gptConfig(_ name: String) throws -> GPTConfig {
        guard let c = GPTConfig.presets[name] else { throw Error.unknownModel(name, known: languageModelNames) }
        return c
    }

    /// A freshly initialised language model named `name` (spec init, `seed`).
    public static func languageModel(_ name: String, seed: UInt64 = 0) throws -> any LanguageModel {
        GPT(try gptConfig(name), seed: seed)
    }

    /// The spec batch size of each ResNet workload: resnet50-64 trains at 64; resnet50 (224×224) at
    /// 16, the middle of seed 001's table.
    static let resNetSpecBatchSizes = ["resnet50-64": 64, "resnet50": 16]

    /// The spec batch size of the workload `name`.
    public static func specBatchSize(_ name: String) throws -> Int { try workload(name).specBatchSize }

    /// The workload `name` with a fresh model from `seed`.
    public static func workload(_ name: String, seed: UInt64 = 0) throws -> Workload {
        if let c = GPTConfig.presets[name] {
            let model = GPT(c, seed: seed)
            return Workload(
                name: name, model: model, specBatchSize: c.batchSize, makeOptimizer: { Trainer.specAdamW(model) },
                batches: { b, s in
                    var source = ByteSequenceDataset(bytes: ArithmeticText.generate(bytes: 1 << 18, seed: s), seed: s)
                    return { source.nextBatch(batchSize: b, length: c.contextLength) }
                },
                batchKind: .tokens(contextLength: c.contextLength, vocabulary: c.vocabularySize))
        }
        if let c = ResNetConfig.presets[name], let batchSize = resNetSpecBatchSizes[name] {
            let model = ResNet(c, seed: seed)
            return Workload(
                name: name, model: model, specBatchSize: batchSize,
                makeOptimizer: { SGD(model.parameters, learningRate: 0.1, momentum: 0.9) },
                batches: { b, s in
                    let g = RandomGenerator(seed: s)
                    return {
                        TrainingBatch(input: Tensor.randn([b, c.inChannels, c.imageSize, c.imageSize], generator: g),
                                      target: Tensor(indices: (0..<b).map { _ in Int(g.nextUInt64() % UInt64(c.classes)) }, shape: [b], dtype: .int64))
                    }
                },
                batchKind: .images(channels: c.inChannels, size: c.imageSize, classes: c.classes))
        }
        if name == "minilm" { return miniLM(seed: seed) }
        throw Error.unknownModel(name, known: names)
    }

    /// `minilm`: all-MiniLM-L6-v2's encoder (random init, ``BertClassifier`` with 2 labels)
    /// fine-tuned on sequence classification, batch 16, length 128: token ids `[CLS] w… [SEP]`
    /// drawn from the vocabulary's word pieces, labels uniform. AdamW lr 2e-5, weight decay 0.01.
    static func miniLM(seed: UInt64) -> Workload {
        let config = BertConfig.miniLM, labels = 2, length = 128
        let model = BertClassifier(config, labels: labels, seed: seed)
        return Workload(
            name: "minilm", model: model, specBatchSize: 16,
            makeOptimizer: { AdamW(model.parameters, learningRate: 2e-5, betas: (0.9, 0.999), eps: 1e-8, weightDecay: 0.01) },
            batches: { b, s in
                let g = RandomGenerator(seed: s)
                let pieces = UInt64(config.vocab_size - 1000)
                return {
                    var ids: [Int] = []
                    for _ in 0..<b {
                        ids.append(101)   // [CLS]
                        for _ in 0..<(length - 2) { ids.append(1000 + Int(g.nextUInt64() % pieces)) }
                        ids.append(102)   // [SEP]
                    }
                    return TrainingBatch(input: Tensor(indices: ids, shape: [b, length]),
                                         target: Tensor(indices: (0..<b).map { _ in Int(g.nextUInt64() % UInt64(labels)) }, shape: [b], dtype: .int64))
                }
            },
            batchKind: .labelledSequences(maxLength: length, vocabulary: config.vocab_size, labels: labels))
    }
}

extension ModelZoo {
    /// A step that would not fit this machine's memory.
    public enum MemoryError: Swift.Error, CustomStringConvertible, Equatable {
        case stepTooLarge(workload: String, batch: Int, neededBytes: Int, availableBytes: Int)
        public var description: String {
            switch self {
            case .stepTooLarge(let w, let b, let need, let available):
                return "a training step of \(w) at batch \(b) needs about \(formatBytes(need)) (measured at batch 1 and 2, extrapolated), "
                    + "but this machine has \(formatBytes(available)) available; use a smaller batch"
            }
        }
    }

    /// Checks, before any work, that an unconstrained training step of workload `name` at
    /// `batchSize` fits the memory this machine has available (Linux: `MemAvailable`). Up to the
    /// spec batch size nothing is run; above it, one step of a fresh copy of the workload at batch 1
    /// and at batch 2 (in a ledger of their own) measure the peak's fixed part and its growth per
    /// sample, and the need at `batchSize` is their linear extrapolation.
    public static func checkMemory(workload name: String, batchSize: Int) throws {
        let spec = try specBatchSize(name)
        guard batchSize > spec, let available = availableMemoryBytes() else { return }
        /// The step's peak, and the peak of what grows with the batch (saved activations plus
        /// temporaries), in a fresh copy's first step.
        func peak(_ b: Int) throws -> (total: Int, perBatch: Int) {
            let w = try workload(name)
            let ledger = MemoryLedger(label: "estimate", cacheLimit: 0)
            let trainer = Trainer(model: w.model, optimizer: w.makeOptimizer(), gradientClip: nil, ledger: ledger)
            let total = trainer.step(w.batches(b, 1)()).peakBytes
            return (total, ledger.peakBytes(in: .activations) + ledger.peakBytes(in: .temporaries))
        }
        // The growth per sample: of the peak, or of its batch-dependent part where the peak at
        // batch 1 and 2 is the optimizer's (small activations: the total does not grow yet).
        let p1 = try peak(1), p2 = try peak(2)
        let perSample = Swift.max(0, p2.total - p1.total, p2.perBatch - p1.perBatch)
        let (growth, overflow) = (batchSize - 1).multipliedReportingOverflow(by: perSample)
        let need = overflow ? Int.max : p1.total + Swift.min(growth, Int.max - p1.total)
        if need > available {
            throw MemoryError.stepTooLarge(workload: name, batch: batchSize, neededBytes: need, availableBytes: available)
        }
    }

    /// Bytes of memory available to a new allocation now (`MemAvailable` in /proc/meminfo); nil
    /// where that is not known.
    public static func availableMemoryBytes() -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("MemAvailable:") {
            let fields = line.split(separator: " ")
            if fields.count >= 2, let kb = Int(fields[1]) { return kb * 1024 }
        }
        return nil
    }
}
