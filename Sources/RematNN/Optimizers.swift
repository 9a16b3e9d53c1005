import Foundation

/// Optimizers update parameters from their `grad` in place. Their state tensors live in the
/// ledger's optimizer category.
public protocol Optimizer: AnyObject {
    /// Learning rate used by the next ``step()`` (schedules set it before each step).
    var learningRate: Float { get set }
    /// Applies one update to every parameter that has a gradient.
    func step()
    /// The parameters this optimizer updates.
    var parameters: [Tensor] { get }
    /// A host-side copy of the optimizer's state (moments, momentum buffers, step count), for
    /// tools that run steps and must leave no trace (step capture inside a training loop).
    func snapshotState() -> OptimizerSnapshot
    /// Puts back a state from ``snapshotState()`` (state tensors absent then are freed).
    func restoreState(_ snapshot: OptimizerSnapshot)
    /// Bytes of state the next ``step()`` will allocate (state is made on a parameter's first
    /// update): what a hard memory budget must leave room for.
    var unallocatedStateBytes: Int { get }
    /// Clears the gradients the optimizer's parameters hold, and any it holds itself (a sharded
    /// optimizer's shard of the averaged gradients), so their memory is free during the forward.
    func zeroGrad()
    /// The gradients the next ``step()`` reads, which gradient clipping and loss unscaling scale:
    /// by default every parameter's `grad`; a sharded optimizer's (ZeRO) are its own shard.
    var stepGradients: [Tensor] { get }
    /// Sums a value computed over ``stepGradients`` across every process that holds part of
    /// them, so that a norm is the whole model's: by default the value itself (this process holds
    /// every gradient).
    func totalOverShards(_ local: Double) -> Double
}

/// An optimizer's state copied out of the tensors (plain arrays, outside the memory ledger: it is
/// a backup, not compute memory).
public struct OptimizerSnapshot: Sendable {
    public var stepCount: Int
    /// Per state slot (optimizer-specific order), its values, or nil when the slot was empty.
    public var slots: [[Float]?]
}

extension Optimizer {
    /// Copies out state slots.
    static func snapshot(_ slots: [Tensor?]) -> [[Float]?] { slots.map { $0?.toArray() } }

    /// Restores state slots of parameters `like` (allocating the ones that were empty).
    static func restore(_ values: [[Float]?], into slots: inout [Tensor?], like params: [Tensor], _ what: String) {
        precondition(values.count == slots.count, "optimizer snapshot: \(values.count) state slots for \(slots.count)")
        for i in slots.indices {
            guard let v = values[i] else { slots[i] = nil; continue }
            let p = params[i % params.count]
            if slots[i] == nil { slots[i] = optimizerState(like: p, what) }
            slots[i]!.copyValues(from: Tensor(v, shape: p.shape))
        }
    }
}

extension Optimizer {
    /// 0 unless the optimizer says (an optimizer of the user's own that makes state lazily should).
    public var unallocatedStateBytes: Int { 0 }

    /// Clears every parameter's gradient.
    public func zeroGrad() { for p in parameters { p.grad = nil } }

    /// Every parameter's gradient, in parameter order.
    public var stepGradients: [Tensor] { parameters.compactMap(\.grad) }

    public func totalOverShards(_ local: Double) -> Double { local }
}

/// Allocates an optimizer state tensor of `like`'s shape, zero-filled, in the optimizer category.
func optimizerState(like p: Tensor, _ what: String) -> Tensor {
    Tensor.zeros(p.shape, category: .optimizerState, label: (p.name ?? "param") + "." + what)
}

/// AdamW (Loshchilov & Hutter): Adam with decoupled weight decay, PyTorch's `torch.optim.AdamW`
/// semantics. Weight decay applies to parameters with two or more dimensions (matrices and
/// embeddings), not to biases and norm weights. State: two moments per parameter (8 bytes per
/// parameter element).
public final class AdamW: Optimizer {
    public let parameters: [Tensor]
    public var learningRate: Float
    public var beta1: Float, beta2: Float, eps: Float, weightDecay: Float
    public private(set) var stepCount = 0
    private var firstMoments: [Tensor?]
    private var secondMoments: [Tensor?]

    /// Per parameter, whether weight decay applies (``decays(_:)`` unless given at init).
    public let decaying: [Bool]

    /// `decaying` says per parameter whether weight decay applies (default ``decays(_:)``: a
    /// sharded optimizer's 1-D slices of matrices give their matrices' answer).
    public init(_ parameters: [Tensor], learningRate: Float = 3e-4, betas: (Float, Float) = (0.9, 0.95),
                eps: Float = 1e-8, weightDecay: Float = 0.1, decaying: [Bool]? = nil) {
        precondition(decaying == nil || decaying!.count == parameters.count,
                     "AdamW: \(decaying?.count ?? 0) decay flags for \(parameters.count) parameters")
        self.parameters = parameters
        self.decaying = decaying ?? parameters.map(Self.decays)
        self.learningRate = learningRate
        (beta1, beta2) = betas
        self.eps = eps
        self.weightDecay = weightDecay
        firstMoments = Array(repeating: nil, count: parameters.count)
        secondMoments = Array(repeating: nil, count: parameters.count)
    }

    public func snapshotState() -> OptimizerSnapshot {
        OptimizerSnapshot(stepCount: stepCount, slots: Self.snapshot(firstMoments) + Self.snapshot(secondMoments))
    }

    public func restoreState(_ snapshot: OptimizerSnapshot) {
        let n = parameters.count
        stepCount = snapshot.stepCount
        Self.restore(Array(snapshot.slots[..<n]), into: &firstMoments, like: parameters, "exp_avg")
        Self.restore(Array(snapshot.slots[n...]), into: &secondMoments, like: parameters, "exp_avg_sq")
    }

    /// Two moments of 4 bytes per element for each parameter with a gradient and no moments yet.
    public var unallocatedStateBytes: Int {
        parameters.indices.reduce(0) { $0 + (firstMoments[$1] == nil && parameters[$1].grad != nil ? 8 * parameters[$1].count : 0) }
    }

    /// Whether weight decay applies to `p` (matrices yes; biases and norm weights no).
    public static func decays(_ p: Tensor) -> Bool { p.rank >= 2 }

    public func step() {
        stepCount += 1
        for (i, p) in parameters.enumerated() {
            guard let g = p.grad else { continue }
            if firstMoments[i] == nil {
                firstMoments[i] = optimizerState(like: p, "exp_avg")
                secondMoments[i] = optimizerState(like: p, "exp_avg_sq")
            }
            OptimizerKernels.adamW(parameter: p, gradient: g.contiguousInputForOptimizer(), firstMoment: firstMoments[i]!,
                                   secondMoment: secondMoments[i]!, learningRate: learningRate, beta1: beta1, beta2: beta2,
                                   eps: eps, weightDecay: decaying[i] ? weightDecay : 0, step: stepCount)
        }
    }
}

/// SGD with momentum, dampening, Nesterov and (coupled) weight decay: PyTorch's `torch.optim.SGD`.
/// State: one momentum buffer per parameter when momentum ≠ 0 (4 bytes per parameter element).
public final class SGD: Optimizer {
    public let parameters: [Tensor]
    public var learningRate: Float
    public var momentum: Float, dampening: Float, weightDecay: Float, nesterov: Bool
    private var buffers: [Tensor?]

    public init(_ parameters: [Tensor], learningRate: Float, momentum: Float = 0, dampening: Float = 0,
                weightDecay: Float = 0, nesterov: Bool = false) {
        self.parameters = parameters
        self.learningRate = learningRate
        self.momentum = momentum
        self.dampening = dampening
        self.weightDecay = weightDecay
        self.nesterov = nesterov
        buffers = Array(repeating: nil, count: parameters.count)
    }

    public func snapshotState() -> OptimizerSnapshot { OptimizerSnapshot(stepCount: 0, slots: Self.snapshot(buffers)) }

    /// With momentum: a 4-byte buffer per element for each parameter with a gradient and no buffer yet.
    public var unallocatedStateBytes: Int {
        guard momentum != 0 else { return 0 }
        return parameters.indices.reduce(0) { $0 + (buffers[$1] == nil && parameters[$1].grad != nil ? 4 * parameters[$1].count : 0) }
    }

    public func restoreState(_ snapshot: OptimizerSnapshot) {
        Self.restore(snapshot.slots, into: &buffers, like: parameters, "momentum_buffer")
    }

    public func step() {
        for (i, p) in parameters.enumerated() {
            guard let g = p.grad else { continue }
            let first = momentum != 0 && buffers[i] == nil
            if first { buffers[i] = optimizerState(like: p, "momentum_buffer") }
            OptimizerKernels.sgd(parameter: p, gradient: g.contiguousInputForOptimizer(), momentumBuffer: buffers[i],
                                 learningRate: learningRate, momentum: momentum, dampening: dampening,
                                 weightDecay: weightDecay, nesterov: nesterov, firstStep: first)
        }
    }
}

extension Tensor {
    fileprivate func contiguousInputForOptimizer() -> Tensor { isContiguous ? self : contiguousCopy() }
}

/// Scales all gradients so that their global L2 norm is at most `maxNorm` (PyTorch's
/// `clip_grad_norm_`, with its 1e-6 epsilon). Returns the norm before clipping.
@discardableResult
public func clipGradientNorm(_ parameters: [Tensor], maxNorm: Float) -> Float {
    clipGradientNorm(parameters.compactMap(\.grad), maxNorm: maxNorm) { $0 }
}

/// ``clipGradientNorm(_:maxNorm:)`` of the gradients `optimizer`'s next step reads
/// (``Optimizer/stepGradients``), with the norm taken over every shard of them (a sharded
/// optimizer's norm is the whole model's). Returns the norm before clipping.
@discardableResult
public func clipGradientNorm(of optimizer: any Optimizer, maxNorm: Float) -> Float {
    clipGradientNorm(optimizer.stepGradients, maxNorm: maxNorm, total: optimizer.totalOverShards)
}

private func clipGradientNorm(_ gradients: [Tensor], maxNorm: Float, total: (Double) -> Double) -> Float {
    let norm = Float(total(gradients.reduce(0.0) { $0 + OptimizerKernels.sumOfSquares($1) }).squareRoot())
    let coefficient = maxNorm / (norm + 1e-6)
    if coefficient < 1 {
        for g in gradients { OptimizerKernels.scale(g, by: coefficient) }
    }
    return norm
}

/// Linear warm-up from 0 to `peak` over `warmupSteps`, then cosine decay to `minimum` at `totalSteps`.
public struct WarmupCosineSchedule: Sendable {
    public var peak: Float, minimum: Float, warmupSteps: Int, totalSteps: Int

    public init(peak: Float, minimum: Float = 0, warmupSteps: Int, totalSteps: Int) {
        self.peak = peak
        self.minimum = minimum
        self.warmupSteps = warmupSteps
        self.totalSteps = totalSteps
    }

    /// Learning rate for step `step` (0-based).
    public func learningRate(at step: Int) -> Float {
        if step < warmupSteps { return peak * Float(step + 1) / Float(warmupSteps) }
        if step >= totalSteps { return minimum }
        let progress = Float(step - warmupSteps) / Float(Swift.max(1, totalSteps - warmupSteps))
        return minimum + 0.5 * (peak - minimum) * (1 + Foundation.cos(Float.pi * progress))
    }
}
