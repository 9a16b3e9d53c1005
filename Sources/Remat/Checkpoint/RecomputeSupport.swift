// What checkpoint regions and planned regions share for their recomputes.

/// The random generators a region's forward drew from, each with its state at the first draw: a
/// recompute replays the same streams (dropout masks bitwise) and leaves the generators where it
/// found them.
///
/// Ownership: used on the thread that runs the region's forward and backward.
final class GeneratorStates: @unchecked Sendable {
    private var captured: [(RandomGenerator, RNGState)] = []

    /// A generator observer that records each generator's state the first time it is drawn from.
    func observer(chainingTo outer: (@Sendable (RandomGenerator) -> Void)?) -> @Sendable (RandomGenerator) -> Void {
        { [unowned self] g in
            if !captured.contains(where: { $0.0 === g }) { captured.append((g, g.state)) }
            outer?(g)
        }
    }

    /// Runs `body` with every captured generator at its forward state, then restores the states it found.
    func replaying<R>(_ body: () throws -> R) rethrows -> R {
        let current = captured.map { $0.0.state }
        for (g, s) in captured { g.state = s }
        defer { for (i, (g, _)) in captured.enumerated() { g.state = current[i] } }
        return try body()
    }
}

/// What a recompute graph's slots hold: nothing (the recomputed tensor went to the region).
final class DiscardedRecomputeTensor: DeferredTensor {
    func materialize() -> Tensor { preconditionFailure("checkpoint: recompute graph tensors are not kept") }
}

/// The unpack of a region's forward hooks: a kept tensor as it is, a dropped one from its handle.
func unpackKeptOrDeferred(_ payload: SavedPayload, _ info: SavedTensorInfo) -> Tensor {
    switch payload {
    case .tensor(let t): return t
    case .deferred(let d): return d.materialize()
    }
}
