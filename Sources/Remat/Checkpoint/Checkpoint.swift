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
/// are alive anyway). Dropped: everything else the region's ops save, activations and index tensors.
/// Recompute re-runs `body` once per backward that needs the region and stops as soon as every
/// saved tensor exists again (early stop: the ops after the last one that saves something give a
/// placeholder with their forward layout — no memory, no time), with the names the ops had in
/// the forward (profiles and plans refer to the same tensors), the random streams replayed, and
/// stateful layers told not to update their state again (``isRecomputing``). Gradients are bitwise
/// equal to running without the region.
///
/// Note: `body` must be deterministic given its inputs and the replayed random streams; the
/// determinism check (default `.metadata`) stops with a message naming the op and both shapes if a
/// recomputed tensor differs from the forward's.
@discardableResult
public func checkpoint(_ inputs: [Tensor], options: CheckpointOptions = .init(),
                       _ body: @escaping ([Tensor]) -> [Tensor]) -> [Tensor] {
    guard isGradEnabled else { return body(inputs) }
    let region = CheckpointRegion(inputs: inputs, options: options, body: body)
    return region.runForward(inputs)
}

/// Single-input, single-output form of ``checkpoint(_:options:_:)``.
public func checkpoint(_ input: Tensor, options: CheckpointOptions = .init(), _ body: @escaping (Tensor) -> Tensor) -> Tensor {
    checkpoint([input], options: options) { [body($0[0])] }[0]
}

/// One checkpoint region: its inputs, what its forward saved (metadata only), and, after a
/// recompute, the recomputed tensors until backward takes them.
///
/// Ownership: used on the thread that runs the forward and backward of its graph; kept alive by
/// the deferred handles in the graph's saved slots, so it dies with the graph.
public final class CheckpointRegion: @unchecked Sendable {
    /// Stable name: `module.path/checkpoint#k`.
    public let name: String
    public let options: CheckpointOptions
    private let body: ([Tensor]) -> [Tensor]
    private var inputSlots: [SavedTensor] = []
    private var inputRequiresGrad: [Bool] = []
    private var namingSnapshot: NamingState.Snapshot
    private let generators = GeneratorStates()
    /// What the forward saved, in order (parameters are kept as they are and not listed).
    public private(set) var savedInfos: [SavedTensorInfo] = []
    private var checksums: [UInt64] = []
    private var recomputed: [Int: Tensor] = [:]
    /// Number of times the region was recomputed.
    public private(set) var recomputeCount = 0
    /// Debug trace (with `options.debug`): `forward <node name>`, `recompute <node name>` and
    /// `skip <node name>` (after the early stop) lines.
    public private(set) var trace: [String] = []
    /// Ops the last recompute did not run because every saved tensor existed already (early stop).
    public private(set) var skippedInLastRecompute: [String] = []
    /// The layout of every op output the forward recorded, by node name (for early-stop placeholders).
    private var outputLayouts: [String: TensorLayout] = [:]
    /// Op outputs kept by the selective policy, by node name, until the first recompute serves them
    /// (then the recomputed tensors that need them hold them; like PyTorch's SAC cache).
    private let kept = OutputCache()
    private var keptNames: Set<String> = []
    /// Names of the op outputs the selective policy kept in the forward.
    public var keptOutputs: [String] { keptNames.sorted() }

    /// Receives every region created in this task after its forward (for debugging and tests):
    /// `CheckpointRegion.$debugSink.withValue(RegionSink { region in … }) { … }`.
    @TaskLocal public static var debugSink: RegionSink?

    /// A receiver of regions (a class: task-local values here are objects, not bare closures).
    public final class RegionSink: Sendable {
        let receive: @Sendable (CheckpointRegion) -> Void
        public init(_ receive: @escaping @Sendable (CheckpointRegion) -> Void) { self.receive = receive }
    }

    init(inputs: [Tensor], options: CheckpointOptions, body: @escaping ([Tensor]) -> [Tensor]) {
        self.options = options
        self.body = body
        name = nextOpName("checkpoint")
        namingSnapshot = AutogradContext.current.naming?.snapshot() ?? NamingState().snapshot()
        inputRequiresGrad = inputs.map(\.requiresGrad)
        inputSlots = inputs.enumerated().map { i, t in Autograd.save(t, name: name, op: "checkpoint", role: "input\(i)") }
    }

    /// The forward pass: `body` on the given inputs (with their graph), its saves dropped.
    func runForward(_ inputs: [Tensor]) -> [Tensor] {
        let hooks = SavedTensorHooks(
            pack: { [unowned self] t, info in
                if info.isParameter { return .tensor(t) }
                let k = savedInfos.count
                savedInfos.append(info)
                if options.determinismCheck == .values { checksums.append(t.contentChecksum()) }
                let region = self   // the handle holds the region strongly
                return .deferred(RecomputeHandle(materialize: { region.tensor(at: k) }, discard: { region.discard(k) }))
            },
            unpack: unpackKeptOrDeferred)
        // Naming continues from where the region started (the snapshot), so the forward and every
        // recompute name their ops alike.
        let outputs = AutogradContext.with({ ctx in
            if ctx.naming == nil { ctx.naming = NamingState(restoring: namingSnapshot) }
            ctx.savedTensorHooks.append(hooks)
            if options.preserveRNGState { ctx.generatorObserver = generators.observer(chainingTo: ctx.generatorObserver) }
            ctx.opObserver = chain({ [unowned self] node, output in outputLayouts[node.name] = TensorLayout(output) }, ctx.opObserver)
            if options.debug { ctx.opObserver = traceObserver("forward", chainingTo: ctx.opObserver) }
            if let selective = options.selective { ctx.opObserver = keepObserver(selective, chainingTo: ctx.opObserver) }
        }) {
            body(inputs)
        }
        CheckpointRegion.debugSink?.receive(self)
        return outputs
    }

    private func keepObserver(_ policy: SelectivePolicy, chainingTo outer: (@Sendable (Node, Tensor) -> Void)?) -> @Sendable (Node, Tensor) -> Void {
        { [unowned self] node, output in
            if policy.decide(node).saves && kept.outputs[node.name] == nil {
                output.storage.retainForBackward()   // kept for backward: counted as an activation
                kept.outputs[node.name] = output.detached()
                keptNames.insert(node.name)
            }
            outer?(node, output)
        }
    }

    private func traceObserver(_ phase: String, chainingTo outer: (@Sendable (Node, Tensor) -> Void)?) -> @Sendable (Node, Tensor) -> Void {
        { [unowned self] node, output in
            let skipped = phase == "recompute" && skippedInLastRecompute.last == node.name
            trace.append("\(skipped ? "skip" : phase) \(node.name)")
            outer?(node, output)
        }
    }

    /// The `index`-th saved tensor, recomputing the region if it is not at hand.
    fileprivate func tensor(at index: Int) -> Tensor {
        if recomputed[index] == nil { recompute() }
        guard let t = recomputed.removeValue(forKey: index) else {
            preconditionFailure("checkpoint \(name): recompute did not produce saved tensor #\(index) (\(savedInfos[index].name))")
        }
        t.storage.releaseForBackward()
        return t
    }

    fileprivate func discard(_ index: Int) { recomputed.removeValue(forKey: index)?.storage.releaseForBackward() }

    deinit {
        for (_, t) in recomputed { t.storage.releaseForBackward() }
        for (_, t) in kept.outputs { t.storage.releaseForBackward() }
    }

    /// Re-runs the body from the saved inputs and keeps the tensors its ops save, in order.
    private func recompute() {
        recomputeCount += 1
        for (_, t) in recomputed { t.storage.releaseForBackward() }
        recomputed.removeAll()
        let inputs = zip(inputSlots, inputRequiresGrad).map { slot, requiresGrad -> Tensor in
            let t = slot.unpack().detached()
            t.requiresGrad = requiresGrad
            return t
        }
        var counter = 0
        let total = savedInfos.count
        skippedInLastRecompute = []
        // Early stop: once every saved tensor is captured, the remaining ops are not run.
        let replay = ReplayControl { [unowned self] name in
            guard counter >= total, let layout = outputLayouts[name] else { return .run }
            skippedInLastRecompute.append(name)
            return .skip(layout.placeholder())
        }
        let capture = SavedTensorHooks(
            pack: { [unowned self] t, info in
                if info.isParameter { return .tensor(t) }
                let k = counter
                counter += 1
                precondition(k < savedInfos.count,
                             "checkpoint \(name): determinism check failed: the recompute saved more tensors than the forward (\(savedInfos.count)); extra: \(info.name) shape \(info.shape)")
                check(savedInfos[k], against: info, tensor: t, index: k)
                t.storage.retainForBackward()   // held for backward: counted as an activation
                recomputed[k] = t
                return .deferred(DiscardedRecomputeTensor())
            },
            unpack: { _, info in preconditionFailure("checkpoint: a recompute graph was used for backward (\(info.name))") })
        let saveTrace = options.debug
        // Replay the random streams from where the forward found them (none were captured without
        // preserveRNGState); restore them afterwards.
        _ = generators.replaying { AutogradContext.with({ ctx in
            ctx.gradEnabled = true
            ctx.isRecomputing = true
            ctx.naming = NamingState(restoring: namingSnapshot)
            ctx.savedTensorHooks = [capture]
            ctx.generatorObserver = nil
            ctx.opObserver = saveTrace ? traceObserver("recompute", chainingTo: nil) : nil
            ctx.outputCache = kept.outputs.isEmpty ? nil : kept
            ctx.replay = replay
        }) {
            body(inputs)
        } }
        precondition(counter == savedInfos.count,
                     "checkpoint \(name): determinism check failed: the forward saved \(savedInfos.count) tensors but the recompute saved \(counter)")
        // The kept outputs were served: the recomputed tensors that need them hold them now, the
        // others (a projection's output that only a residual add read) are freed. A later recompute
        // (a graph retained for a second backward) computes them again.
        for (_, t) in kept.outputs { t.storage.releaseForBackward() }
        kept.outputs.removeAll()
    }

    private func check(_ original: SavedTensorInfo, against now: SavedTensorInfo, tensor: Tensor, index: Int) {
        guard options.determinismCheck != .off else { return }
        precondition(original.shape == now.shape && original.dtype == now.dtype,
                     "checkpoint \(name): determinism check failed at saved tensor #\(index): op \(original.op) (\(original.name)) saved shape \(original.shape) \(original.dtype) in the forward but shape \(now.shape) \(now.dtype) (\(now.name)) in the recompute")
        if options.determinismCheck == .values {
            precondition(tensor.contentChecksum() == checksums[index],
                         "checkpoint \(name): determinism check failed at saved tensor #\(index): op \(original.op) (\(original.name)), shape \(original.shape): recomputed values differ from the forward's")
        }
    }
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
