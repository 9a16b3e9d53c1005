/// Dynamic loss scaling for fp16 training, as PyTorch's `torch.amp.GradScaler` does it: the loss is
/// multiplied by ``scale`` before backward (so the small gradients fp16 rounds to zero are scaled
/// into its range), the parameter gradients are divided by it before clipping and the optimizer
/// step, and a step whose gradients hold an inf or a NaN is skipped (the optimizer does not step;
/// the scale backs off). After ``growthInterval`` steps in a row without one, the scale grows.
///
/// ```swift
/// trainer.autocast = .float16
/// trainer.gradScaler = try GradScaler()
/// ```
public final class GradScaler {
    /// What the scale is multiplied by after ``growthInterval`` finite steps in a row (> 1).
    public let growthFactor: Float
    /// What the scale is multiplied by after a step with inf/NaN gradients (in (0, 1)).
    public let backoffFactor: Float
    /// Finite steps in a row before the scale grows (≥ 1).
    public let growthInterval: Int
    /// The current loss scale (a power of two with the default factors).
    public private(set) var scale: Float
    /// Steps skipped so far because their gradients held an inf or a NaN.
    public private(set) var skippedSteps = 0
    private var finiteStepsInARow = 0

    /// A bad setting, named.
    public struct SettingError: Error, CustomStringConvertible, Equatable {
        public let description: String
    }

    /// PyTorch's defaults: scale 2¹⁶, growth ×2 every 2000 finite steps, back-off ×0.5.
    public init(initialScale: Float = 65536, growthFactor: Float = 2, backoffFactor: Float = 0.5, growthInterval: Int = 2000) throws {
        guard initialScale.isFinite, initialScale > 0 else {
            throw SettingError(description: "GradScaler: initial scale must be finite and positive, got \(initialScale)")
        }
        guard growthFactor.isFinite, growthFactor > 1 else {
            throw SettingError(description: "GradScaler: growth factor must be finite and greater than 1, got \(growthFactor)")
        }
        guard backoffFactor > 0, backoffFactor < 1 else {
            throw SettingError(description: "GradScaler: back-off factor must be between 0 and 1 (exclusive), got \(backoffFactor)")
        }
        guard growthInterval >= 1 else {
            throw SettingError(description: "GradScaler: growth interval must be at least 1 step, got \(growthInterval)")
        }
        scale = initialScale
        self.growthFactor = growthFactor
        self.backoffFactor = backoffFactor
        self.growthInterval = growthInterval
    }

    /// `loss · scale`, the tensor to run backward from.
    public func scaled(_ loss: Tensor) -> Tensor { loss * scale }

    /// Whether every gradient of `parameters` is finite; if so, each is divided by the scale (in
    /// place; otherwise they are left as they are, for the skipped step to clear). Call once per
    /// backward, before clipping.
    public func unscaleGradients(of parameters: [Tensor]) -> Bool {
        unscale(parameters.compactMap(\.grad)) { $0 }
    }

    /// ``unscaleGradients(of:)-([Tensor])`` of the gradients `optimizer`'s next step reads
    /// (``Optimizer/stepGradients``): finite only when they are finite on every shard (a sharded
    /// optimizer's test spans the ranks, so every rank skips or steps together).
    public func unscaleGradients(of optimizer: any Optimizer) -> Bool {
        unscale(optimizer.stepGradients, total: optimizer.totalOverShards)
    }

    private func unscale(_ gradients: [Tensor], total: (Double) -> Double) -> Bool {
        // An inf or a NaN anywhere makes the sum of squares (in Double, which no float32
        // gradient overflows) inf or NaN.
        guard total(gradients.reduce(0.0) { $0 + OptimizerKernels.sumOfSquares($1) }).isFinite else { return false }
        let inverse = 1 / scale
        for g in gradients { OptimizerKernels.scale(g, by: inverse) }
        return true
    }

    /// Records the outcome of a step: a skipped one (non-finite gradients) backs the scale off,
    /// ``growthInterval`` finite ones in a row grow it.
    public func update(finite: Bool) {
        if !finite {
            skippedSteps += 1
            finiteStepsInARow = 0
            scale *= backoffFactor
            return
        }
        finiteStepsInARow += 1
        if finiteStepsInARow == growthInterval {
            finiteStepsInARow = 0
            let grown = scale * growthFactor
            if grown.isFinite { scale = grown }
        }
    }
}
