/// The decoder-only transformer of the workload spec (`gpt-mini`, `gpt-mini-long`, `gpt-small`).
public struct GPTConfig: Sendable, Hashable, Codable {
    public var vocabularySize: Int
    public var contextLength: Int
    public var layers: Int
    public var heads: Int
    public var modelDimension: Int
    public var mlpHidden: Int
    /// Dropout after the embeddings, the attention projection and the MLP (nanoGPT's `dropout`).
    public var dropout: Float
    /// Dropout on the attention probabilities (nanoGPT's `attn_dropout`; 0 by default). The fused
    /// attention draws it inside the op, from the same stream positions as the explicit path.
    public var attentionDropout: Float
    public var layerNormEps: Float
    /// The spec's batch size for this workload.
    public var batchSize: Int

    public init(vocabularySize: Int = 256, contextLength: Int, layers: Int, heads: Int, modelDimension: Int,
                mlpHidden: Int, dropout: Float = 0, attentionDropout: Float = 0, layerNormEps: Float = 1e-5, batchSize: Int) {
        self.vocabularySize = vocabularySize
        self.contextLength = contextLength
        self.layers = layers
        self.heads = heads
        self.modelDimension = modelDimension
        self.mlpHidden = mlpHidden
        self.dropout = dropout
        self.attentionDropout = attentionDropout
        self.layerNormEps = layerNormEps
        self.batchSize = batchSize
    }

    public var headSize: Int { modelDimension / heads }

    /// 6 layers, 8 heads, d_model 256, MLP 1024, T 256, batch 8.
    public static let gptMini = GPTConfig(contextLength: 256, layers: 6, heads: 8, modelDimension: 256, mlpHidden: 1024, batchSize: 8)
    /// gpt-mini with T 1024 and batch 2 (attention memory dominates).
    public static let gptMiniLong = GPTConfig(contextLength: 1024, layers: 6, heads: 8, modelDimension: 256, mlpHidden: 1024, batchSize: 2)
    /// 12 layers, 8 heads, d_model 512, MLP 2048, T 512, batch 4.
    public static let gptSmall = GPTConfig(contextLength: 512, layers: 12, heads: 8, modelDimension: 512, mlpHidden: 2048, batchSize: 4)

    /// The presets by their workload names.
    public static let presets: [String: GPTConfig] = ["gpt-mini": .gptMini, "gpt-mini-long": .gptMiniLong, "gpt-small": .gptSmall]
}

/// `fc → GELU (tanh approximation) → proj`.
public final class MLP: Module, UnaryLayer {
    public let fc: Linear
    public let proj: Linear

    public init(_ dimension: Int, hidden: Int, generator: RandomGenerator) {
        fc = Linear(dimension, hidden, generator: generator)
        proj = Linear(hidden, dimension, generator: generator)
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        scoped(x) { [fc, proj] x in proj(gelu(fc(x), approximation: .tanh)) }
    }
}

/// How an attention layer computes `softmax(QKᵀ/√hs + mask)·V`.
public enum AttentionKernel: String, Sendable, Hashable, CaseIterable {
    /// ``causalSelfAttention(q:k:v:)``: the `T×T` probabilities materialised and saved
    /// (`4·B·H·T²` bytes); the probabilities op is a saved tensor policies and plans can drop.
    case explicit
    /// ``scaledDotProductAttention(q:k:v:causal:)``: FlashAttention-2's online softmax; saves the
    /// output and each row's log-sum-exp instead of the probabilities.
    case fused

    /// What a new attention layer uses: `.fused`, measured not slower than `.explicit` on every
    /// transformer workload (results/fused-attention-steps.md) and saving the probabilities.
    public static let `default`: AttentionKernel = .fused
}

/// A layer whose attention computation can be chosen (``Module/setAttentionKernel(_:)``).
public protocol AttentionLayer: AnyObject {
    var kernel: AttentionKernel { get set }
}

/// Multi-head causal self-attention with a fused `qkv` projection: `softmax(QKᵀ/√hs + mask)·V`,
/// then `proj`. Q, K and V are strided views of the qkv output (no copies); ``kernel`` says
/// whether the `T×T` probabilities are materialised (`.explicit`: saved once, `4·B·H·T²` bytes)
/// or not (`.fused`, the default).
public final class CausalSelfAttention: Module, UnaryLayer, AttentionLayer {
    public let qkv: Linear
    public let proj: Linear
    public let heads: Int
    public let residualDropout: Dropout
    /// Dropout on the probabilities (`attentionDropout`); the fused kernel applies it inside the op.
    public let attentionDropout: Dropout
    /// The attention computation (``AttentionKernel``); set model-wide with
    /// ``Module/setAttentionKernel(_:)``.
    public var kernel: AttentionKernel = .default

    public init(_ dimension: Int, heads: Int, dropout: Float, attentionDropout: Float = 0, generator: RandomGenerator) {
        precondition(dimension % heads == 0, "CausalSelfAttention: d_model \(dimension) is not a multiple of heads \(heads)")
        qkv = Linear(dimension, 3 * dimension, generator: generator)
        proj = Linear(dimension, dimension, generator: generator)
        self.heads = heads
        residualDropout = Dropout(dropout, generator: generator)
        self.attentionDropout = Dropout(attentionDropout, generator: generator)
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        let dropP = isTraining ? attentionDropout.probability : 0
        return scoped(x) { [qkv, proj, heads, residualDropout, attentionDropout, kernel] x in
            let (b, t, c) = (x.shape[0], x.shape[1], x.shape[2])
            let hs = c / heads
            // [B, T, 3C] → [3, B, H, T, hs] as a view; q, k, v are strided views into it.
            let parts = qkv(x).reshaped([b, t, 3, heads, hs]).permuted([2, 0, 3, 1, 4])
            let q = parts.narrowed(axis: 0, start: 0, length: 1).squeezed(0)
            let k = parts.narrowed(axis: 0, start: 1, length: 1).squeezed(0)
            let v = parts.narrowed(axis: 0, start: 2, length: 1).squeezed(0)
            let y: Tensor   // [B, H, T, hs]
            if kernel == .fused {
                y = scaledDotProductAttention(q: q, k: k, v: v, causal: true, dropout: dropP, generator: attentionDropout.generator)
            } else if dropP > 0 {
                let probabilities = causalAttentionProbabilities(q: q, k: k, scale: 1 / Float(Double(hs).squareRoot()))
                y = matmul(attentionDropout(probabilities), v)
            } else {
                y = causalSelfAttention(q: q, k: k, v: v)
            }
            let merged = y.permuted([0, 2, 1, 3]).reshaped([b, t, c])
            return residualDropout(proj(merged))
        }
    }
}

/// Pre-LayerNorm transformer block: `x + attn(ln1(x))`, then `x + mlp(ln2(x))`.
public final class TransformerBlock: Module, UnaryLayer {
    public let ln1: LayerNorm
    public let attn: CausalSelfAttention
    public let ln2: LayerNorm
    public let mlp: MLP
    public let mlpDropout: Dropout

    public init(_ config: GPTConfig, generator: RandomGenerator) {
        ln1 = LayerNorm(config.modelDimension, eps: config.layerNormEps)
        attn = CausalSelfAttention(config.modelDimension, heads: config.heads, dropout: config.dropout,
                                   attentionDropout: config.attentionDropout, generator: generator)
        ln2 = LayerNorm(config.modelDimension, eps: config.layerNormEps)
        mlp = MLP(config.modelDimension, hidden: config.mlpHidden, generator: generator)
        mlpDropout = Dropout(config.dropout, generator: generator)
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        scoped(x) { [ln1, attn, ln2, mlp, mlpDropout] x in
            let h = x + attn(ln1(x))
            return h + mlpDropout(mlp(ln2(h)))
        }
    }
}

/// GPT: token + learned position embeddings, blocks, final LayerNorm, and a head tied to the token
/// embedding (`logits = x·tok_embᵀ`, no separate tensor). Parameter names are the spec's.
public final class GPT: Module, BlockChainModel, LanguageModel {
    public let config: GPTConfig
    public let tokEmb: Embedding
    public let posEmb: Embedding
    public let embeddingDropout: Dropout
    public let blocks: [TransformerBlock]
    public let lnF: LayerNorm

    /// Builds the model with weights drawn from `seed` (spec init).
    public init(_ config: GPTConfig, seed: UInt64 = 0) {
        let generator = RandomGenerator(seed: seed)
        self.config = config
        tokEmb = Embedding(config.vocabularySize, config.modelDimension, generator: generator)
        posEmb = Embedding(config.contextLength, config.modelDimension, generator: generator)
        embeddingDropout = Dropout(config.dropout, generator: generator)
        blocks = (0..<config.layers).map { _ in TransformerBlock(config, generator: generator) }
        lnF = LayerNorm(config.modelDimension, eps: config.layerNormEps)
        super.init()
        finalize()
    }

    /// Logits `[B, T, vocab]` for token ids `[B, T]` (int32 or int64).
    public func callAsFunction(_ tokens: Tensor) -> Tensor {
        precondition(tokens.rank == 2, "GPT: tokens must be [batch, time], got \(tokens.shape)")
        let t = tokens.shape[1]
        precondition(t <= config.contextLength, "GPT: sequence length \(t) exceeds the context length \(config.contextLength)")
        return scoped(tokens) { [self] tokens in
            let positions = posEmb.scoped { [posEmb] in posEmb.weight.narrowed(axis: 0, start: 0, length: t) }
            var x = embeddingDropout(tokEmb(tokens) + positions)
            x = runBlockChain(x)
            x = lnF(x)
            return withNameScope("lm_head") { matmul(x, tokEmb.weight.transposed()) }
        }
    }

    public var contextLength: Int { config.contextLength }

    /// Mean next-token cross-entropy of `tokens` against `targets` (both `[B, T]`).
    public func loss(_ tokens: Tensor, targets: Tensor) -> Tensor {
        modelScope {
            let logits = self(tokens)
            return withNameScope("loss") { crossEntropy(logits: logits, targets: targets) }
        }
    }
}
