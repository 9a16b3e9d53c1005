/// Basic layers. Initialisation follows the workload spec (normal(0, 0.02) weights, zero biases,
/// ones for norm weights) unless a layer says otherwise.

/// `y = x·Wᵀ + b` over the last axis. `weight` is `[out, in]` as in PyTorch.
/// One op, ``linear(_:weight:bias:)`` (bias fused into the GEMM, like PyTorch's `addmm`).
/// Saves: the input `x` (the weight is a parameter: no extra bytes).
public final class Linear: Module, UnaryLayer {
    public let weight: Tensor
    public let bias: Tensor?
    /// FP8 training for this layer (nil: float32): ``float8Linear(_:weight:bias:scales:options:)``
    /// with the layer's record of the scales its forwards chose. Set by
    /// ``Module/convertLinearsToFloat8(options:where:)`` or by hand.
    public var float8: Float8LinearOptions?
    /// The scales this layer's FP8 forwards chose, by op name, for their recomputes.
    public let float8Scales = Float8ScaleRecord()

    public init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true, std: Float = 0.02,
                generator: RandomGenerator) {
        weight = Tensor.randn([outFeatures, inFeatures], std: std, generator: generator, requiresGrad: true)
        self.bias = bias ? { let b = Tensor.zeros([outFeatures]); b.requiresGrad = true; return b }() : nil
    }

    public var inFeatures: Int { weight.shape[1] }
    public var outFeatures: Int { weight.shape[0] }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        if let options = float8 {
            return scoped(x) { [weight, bias, float8Scales] x in
                float8Linear(x, weight: weight, bias: bias, scales: float8Scales, options: options)
            }
        }
        return scoped(x) { [weight, bias] x in linear(x, weight: weight, bias: bias) }
    }
}

extension Module {
    /// Makes every ``Linear`` of this model whose path (`blocks.0.mlp.fc1`) and layer `filter`
    /// accepts an FP8 layer (TorchAO's `convert_to_float8_training`): E4M3FN operands, E5M2 output
    /// gradients, per-tensor scales; the parameters stay float32. Returns the paths converted.
    @discardableResult
    public func convertLinearsToFloat8(options: Float8LinearOptions = .init(),
                                       where filter: (String, Linear) -> Bool = { _, _ in true }) -> [String] {
        setFloat8Linears(options, where: filter)
    }

    /// Sets ``Linear/float8`` of every ``Linear`` `filter` accepts (nil: back to float32); returns
    /// their paths.
    @discardableResult
    public func setFloat8Linears(_ options: Float8LinearOptions?, where filter: (String, Linear) -> Bool = { _, _ in true }) -> [String] {
        var paths: [String] = []
        for (path, m) in namedModules {
            guard let linear = m as? Linear, filter(path, linear) else { continue }
            linear.float8 = options
            paths.append(path)
        }
        return paths
    }
}

extension Module {
    /// Sets the attention computation of every ``AttentionLayer`` in this model (GPT's
    /// ``CausalSelfAttention``, BERT's ``BertSelfAttention``); returns their paths.
    @discardableResult
    public func setAttentionKernel(_ kernel: AttentionKernel) -> [String] {
        namedModules.compactMap { path, m in
            guard let attention = m as? AttentionLayer else { return nil }
            attention.kernel = kernel
            return path
        }
    }
}

/// Lookup of rows of `weight` `[count, dimension]` by integer indices.
/// Saves: the indices.
public final class Embedding: Module {
    public let weight: Tensor

    public init(_ count: Int, _ dimension: Int, std: Float = 0.02, generator: RandomGenerator) {
        weight = Tensor.randn([count, dimension], std: std, generator: generator, requiresGrad: true)
    }

    public func callAsFunction(_ indices: Tensor) -> Tensor {
        scoped(indices) { [weight] indices in embedding(indices, weight: weight) }
    }
}

/// Layer normalisation over the last axis with learnable weight (ones) and bias (zeros).
/// Saves: the input, per-row mean and rstd.
public final class LayerNorm: Module, UnaryLayer {
    public let weight: Tensor
    public let bias: Tensor
    public let eps: Float

    public init(_ dimension: Int, eps: Float = 1e-5) {
        weight = Tensor.ones([dimension]); weight.requiresGrad = true
        bias = Tensor.zeros([dimension]); bias.requiresGrad = true
        self.eps = eps
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        scoped(x) { [weight, bias, eps] x in layerNorm(x, weight: weight, bias: bias, eps: eps) }
    }
}

/// Inverted dropout, active in training mode only. Saves nothing (the mask is replayed from the
/// generator's state in backward).
public final class Dropout: Module, UnaryLayer {
    public let probability: Float
    public let generator: RandomGenerator

    public init(_ probability: Float, generator: RandomGenerator) {
        self.probability = probability
        self.generator = generator
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        guard probability > 0, isTraining else { return x }
        return scoped(x) { [probability, generator] x in dropout(x, probability: probability, generator: generator, training: true) }
    }
}

/// A stack of layers applied in order, numbered from 0 (PyTorch `nn.Sequential` naming).
/// A named part of a forward that is not one module — a stem made of several layers — so that the
/// planner can drop and recompute what it saves: `stem(x) { x in … }` runs the closure as this
/// module's call (ops named under its path, call wrappers apply). It owns no parameters; the
/// layers the closure uses keep their own names. ``Module/planningRegions`` lists it beside the
/// blocks.
public final class ForwardRegion: Module {
    public override init() { super.init() }

    public func callAsFunction(_ x: Tensor, _ body: @escaping (Tensor) -> Tensor) -> Tensor { scoped(x, body) }
}

public final class Sequential: Module, UnaryLayer {
    public let layers: [Module]
    private let apply: [(Tensor) -> Tensor]

    public init(_ layers: [(module: Module, call: (Tensor) -> Tensor)]) {
        self.layers = layers.map(\.module)
        self.apply = layers.map(\.call)
    }

    public override class var keyOverrides: [String: String] { ["layers": ""] }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        scoped(x) { [apply] x in apply.reduce(x) { h, f in f(h) } }
    }
}
