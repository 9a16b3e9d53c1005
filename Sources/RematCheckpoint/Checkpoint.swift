/// How a checkpoint region checks that its recompute reproduces the forward pass.
public enum DeterminismCheck: Sendable, Hashable {
    /// No check.
    case off
    /// Every recomputed saved tensor has the shape and dtype it had in the forward pass (default).
    case metadata
    /// Also the same bytes (a 64-bit checksum per saved tensor; for debug runs: costs a pass over
    /// every saved tensor in the forward).
    case values
}

/// Options of ``checkpoint(_:options:_:)``, with the defaults PyTorch users expect.
public struct CheckpointOptions: Sendable, Hashable {
    /// Restore the state of every random generator the region drew from before recomputing, so
    /// dropout masks are replayed bitwise (PyTorch's `preserve_rng_state=True`).
    public var preserveRNGState: Bool
    public var determinismCheck: DeterminismCheck
    /// Record the ops run in the forward pass and in each recompute (``CheckpointRegion/trace``).
    public var debug: Bool
    /// Op outputs the region keeps instead of recomputing (nil: keep none, recompute everything).
    /// A kept op is never recomputed.
    public var selective: SelectivePolicy?

    public init(preserveRNGState: Bool = true, determinismCheck: DeterminismCheck = .metadata, debug: Bool = false,
                selective: SelectivePolicy? = nil) {
        self.preserveRNGState = preserveRNGState
        self.determinismCheck = determinismCheck
        self.debug = debug
        self.selective = selective
    }
}

/// Runs `body` as a checkpoint region: the tensors its ops save for backward are dropped at the
/// end of the forward and recomputed from the region's inputs when backward first needs one
/// (non-reentrant semantics: any number of inputs and outputs, non-tensor arguments and parameters
/// captured by the closure, partial backward, nesting).
///
/// Kept: the region's inputs (saved through slots, so the ledger counts them) and parameters (they
/// are alive anyway); with `options.selective`, what the policy saves. Dropped: everything else the
/// region's ops save, activations and index tensors. The recompute (``CheckpointRegion``) re-runs
/// `body` once per backward that needs the region and runs only the ops on the way to the dropped
/// tensors (the others give what is at hand, or a placeholder with their forward layout — no
/// memory, no time), with the names the ops had in the forward (profiles and plans refer to the
/// same tensors), the random streams replayed, and stateful layers told not to update their state
/// again (``isRecomputing``). Gradients are bitwise equal to running without the region.
///
/// Note: `body` must be deterministic given its inputs and the replayed random streams; the
/// determinism check (default `.metadata`) stops with a message naming the op and both shapes if a
/// recomputed tensor differs from the forward's.
@discardableResult
public func checkpoint(_ inputs: [Tensor], options: CheckpointOptions = .init(),
                       _ body: @escaping ([Tensor]) -> [Tensor]) -> [Tensor] {
    guard isGradEnabled else { return body(inputs) }
    return CheckpointRegion(inputs: inputs, options: options, decisions: options.selective.map { .selective($0) } ?? .recomputeAll,
                            body: body).run(inputs)
}

/// Single-input, single-output form of ``checkpoint(_:options:_:)``.
public func checkpoint(_ input: Tensor, options: CheckpointOptions = .init(), _ body: @escaping (Tensor) -> Tensor) -> Tensor {
    checkpoint([input], options: options) { [body($0[0])] }[0]
}

extension Tensor {
    /// FNV-1a 64-bit checksum of the elements' bytes in row-major order (for determinism checks).
    public func contentChecksum() -> UInt64 {
        let c = isContiguous ? self : contiguousCopy()
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        let p = c.rawPointer.assumingMemoryBound(to: UInt8.self)
        for i in 0..<c.byteCount {
            h ^= UInt64(p[i])
            h = h &* 0x0000_0100_0000_01B3
        }
        return h
    }
}
