// What the recompute engine (CheckpointRegion) and the planner's simulator share: the recompute
// path, replayed random streams, the handle of a dropped saved tensor, tensor layouts, observer chaining.

/// The ops a recompute runs: the `targets` (owners of dropped tensors) and, through their inputs,
/// every ancestor in the region whose output is not at hand (`isAlive`); `inputs(op)` is nil for
/// what is not an op of the region. The executor (``CheckpointRegion``) and the planner's
/// simulator both call this, so prediction and execution cannot drift.
package func recomputePath<Op: Hashable>(targets: Set<Op>, inputs: (Op) -> [Op]?, isAlive: (Op) -> Bool) -> Set<Op> {
    var run = targets
    var stack = Array(targets)
    while let n = stack.popLast() {
        for p in inputs(n) ?? [] where !run.contains(p) {
            guard inputs(p) != nil, !isAlive(p) else { continue }   // outside the region, or alive
            run.insert(p)
            stack.append(p)
        }
    }
    return run
}

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

    /// Each captured generator with its state now.
    func currentStates() -> [(RandomGenerator, RNGState)] { captured.map { ($0.0, $0.0.state) } }

    /// Runs `body` with every captured generator at its forward state, then restores the states it found.
    func replaying<R>(_ body: () throws -> R) rethrows -> R {
        let current = captured.map { $0.0.state }
        for (g, s) in captured { g.state = s }
        defer { for (i, (g, _)) in captured.enumerated() { g.state = current[i] } }
        return try body()
    }
}

/// A dropped saved tensor of a region: produced by the region when backward asks for it. Holds
/// its region (through the closures), so the region lives as long as the graph's slots.
final class RecomputeHandle: DeferredTensor {
    private let produce: () -> Tensor
    private let release: () -> Void
    private let look: () -> Tensor?
    init(materialize: @escaping () -> Tensor, discard: @escaping () -> Void, peek: @escaping () -> Tensor? = { nil }) {
        produce = materialize
        release = discard
        look = peek
    }
    func materialize() -> Tensor { produce() }
    func discard() { release() }
    func peek() -> Tensor? { look() }
}

/// What a recompute graph's slots hold: nothing (the recomputed tensor went to the region).
final class DiscardedRecomputeTensor: DeferredTensor {
    func materialize() -> Tensor { preconditionFailure("checkpoint: recompute graph tensors are not kept") }
}

/// The unpack of a region's forward hooks: a kept tensor as it is, a dropped one from its handle.
func unpackKeptOrDeferred(_ payload: SavedPayload, _ info: SavedTensorInfo) -> Tensor {
    switch payload {
    case .tensor(let t): return t
    case .packed(let p): return p.unpack(label: info.name)
    case .deferred(let d): return d.materialize()
    }
}

/// Shape, strides, offset and dtype of a tensor over its storage: enough to rebuild the same view
/// over another storage of the same size (a recomputed output, a placeholder).
struct TensorLayout: Sendable, Hashable {
    let shape: [Int]
    let strides: [Int]
    let offset: Int
    let dtype: DType
    let storageBytes: Int

    init(_ t: Tensor) {
        shape = t.shape
        strides = t.strides
        offset = t.offset
        dtype = t.dtype
        storageBytes = t.storage.byteCount
    }

    func view(of storage: Storage) -> Tensor {
        Tensor(storage: storage, shape: shape, strides: strides, offset: offset, dtype: dtype)
    }

    func placeholder() -> Tensor {
        Tensor.placeholder(shape: shape, strides: strides, offset: offset, dtype: dtype, storageBytes: storageBytes)
    }
}

/// Chains two op observers (inner first).
func chain(_ inner: @escaping @Sendable (Node, Tensor) -> Void, _ outer: (@Sendable (Node, Tensor) -> Void)?) -> @Sendable (Node, Tensor) -> Void {
    guard let outer else { return inner }
    return { n, t in
        inner(n, t)
        outer(n, t)
    }
}
