/// The one recompute engine: a part of a forward whose saved tensors can be dropped at the end of
/// the forward and rebuilt when backward needs them. Plain checkpoints, selective policies,
/// memory plans and chain schedules (nested regions) all run as regions; they differ only in the
/// decision per op (``RegionDecisions``).
///
/// Forward: the body runs on the region's inputs (kept through saved-tensor slots). Every op that
/// records a node is seen before it computes (the region is an ``OpInterceptor``) and gets its
/// treatment; every tensor an op saves is kept in its slot or dropped (the slot gets a handle),
/// by the treatment of its owner — the op that produced its storage first here (an internal tensor
/// such as layer norm's mean is owned by the op that saves it; the region's inputs are always
/// kept). The region records each op's name, inputs, output layout and (weakly) output storage.
///
/// Recompute (when backward first unpacks a dropped tensor): the body runs again with the
/// forward's names, random streams replayed and ``isRecomputing`` set, and each op is decided by
/// its stable name:
/// - `recompute`: it owns a dropped tensor, or it is an ancestor of one whose output is not at
///   hand (``recomputePath(targets:inputs:isAlive:)``, shared with the planner's simulator);
/// - `serve`: an op that runs reads its output, which is at hand (held by a slot, alive, or held
///   for a selective policy): the op returns it without computing;
/// - `skip`: nothing that runs reads it: a placeholder with the forward's layout (no memory, no time).
/// A nested region none of whose ops run is skipped whole (its body is not called). Each dropped
/// tensor is rebuilt when the op that saved it records again: from its owner's recomputed output
/// (by the forward's layout), or, for an internal tensor, as the owner saves it. So a recompute
/// costs exactly the ops on the recompute path, and gradients are bitwise those without the region.
///
/// Ownership: used on the thread that runs the forward and backward of its graph; kept alive by
/// the handles in the graph's slots, so it dies with the graph.
public final class CheckpointRegion: OpInterceptor, @unchecked Sendable {
    /// Stable name: `module.path/checkpoint#k`.
    public let name: String
    public let options: CheckpointOptions
    let decisions: RegionDecisions
    private let body: ([Tensor]) -> [Tensor]
    private let inputSlots: [SavedTensor]
    private let inputRequiresGrad: [Bool]
    private let namingSnapshot: NamingState.Snapshot
    /// The autocast precision the forward ran in: the recompute runs in it too (bitwise the same
    /// rounded values), wherever backward runs.
    private let autocast: AutocastPrecision?
    /// The autocast scope's saved-tensor hooks at the forward: a recompute holds the tensors it
    /// rebuilds for backward through them (2 bytes per element when their values are the
    /// precision's), as the forward's saved tensors were held.
    private let autocastHooks: SavedTensorHooks?
    private let generators = GeneratorStates()
    private var phase = Phase.forward

    private enum Phase { case forward, recompute, done }

    /// What the forward recorded of one op.
    private struct OpRecord {
        let name: String
        /// Names of the ops of this region whose outputs it read.
        let inputs: [String]
        weak var storage: Storage?
        let layout: TensorLayout
    }

    /// A saved tensor the region dropped.
    private struct DroppedSlot {
        let info: SavedTensorInfo
        /// The op that owns its storage (the saver itself for an internal tensor), by name.
        let owner: String
        let layout: TensorLayout
        let checksum: UInt64?
        /// Whether it is (a view of) its owner's output; otherwise rebuilt as the owner saves it.
        let isOwnerOutput: Bool
    }

    /// A region run inside this one's forward: rebuilt or skipped whole by this one's recompute.
    private struct NestedRecord {
        let name: String
        /// The nested region it runs in (an index into `nested`), if any.
        let parent: Int?
        /// Its ops: `ops[firstOp..<endOp]`.
        let firstOp: Int
        var endOp: Int
        var outputs: [TensorLayout] = []
        var outputStorages: [WeakStorage] = []
        var outputsRequireGrad: [Bool] = []
        var namingAtEnd: NamingState.Snapshot? = nil
        var generatorsAtEnd: [(RandomGenerator, RNGState)] = []
    }

    private var ops: [OpRecord] = []
    private var opIndex: [String: Int] = [:]
    private var treatments: [String: OpTreatment] = [:]
    /// Owner op of each storage seen here, by storage id ("" for the region's inputs), and
    /// whether the storage is the owner's output (else an internal tensor it saved).
    private var owners: [Int: (op: String, isOutput: Bool)] = [:]
    /// Storages a `keepOutput` op put out: slots holding them are kept whoever made them.
    private var keptStorages: Set<Int> = []
    private var dropped: [DroppedSlot] = []
    private var nested: [NestedRecord] = []
    private var nestedIndex: [String: Int] = [:]
    /// Nested regions whose forward is running, innermost last.
    private var openNested: [Int] = []
    /// Outputs held for the recompute (selective policies), by op name, until a recompute served
    /// them: through a slot packed by the saved-tensor policy in force (activation compression),
    /// as the slots the region keeps are.
    private var heldOutputs: [String: SavedTensor] = [:]
    /// The saved-tensor policy's hooks in force when the forward ran (none: held as they are).
    private var policyHooks: [SavedTensorHooks] = []
    /// Rebuilt dropped tensors, by slot index, until backward takes them.
    /// (Each a saved-tensor slot: it holds the tensor as an activation, packed by the autocast
    /// scope's hooks when the forward ran under one.)
    private var materialized: [Int: SavedTensor] = [:]
    /// What the current recompute decided, and what it collects.
    private var replay: Replay? = nil
    /// Dynamic mode: what the evictor may drop and backward rebuilds (``DynamicRematerializer``).
    var dynamic: DynamicState? = nil
    /// During the forward: the name of each node recorded here (weakly: a node that died leaves
    /// no name behind for a new node at its address).
    private var nodeNames: [ObjectIdentifier: NodeName] = [:]
    private struct NodeName {
        weak var node: Node?
        let name: String
    }

    /// Every tensor the forward saved through slots, in order, kept or dropped (parameters are
    /// kept as they are and not listed).
    public private(set) var savedInfos: [SavedTensorInfo] = []
    /// Number of times the region was recomputed.
    public private(set) var recomputeCount = 0
    /// Debug trace (with `options.debug`): `forward <op>`, then per recompute `recompute <op>`,
    /// `serve <op>` and `skip <op>` lines (`skip <region>` for a nested region skipped whole).
    public private(set) var trace: [String] = []
    /// Ops the last recompute did not run because nothing that ran read them (placeholders).
    public private(set) var skippedInLastRecompute: [String] = []
    /// Ops the last recompute did not run because their output was at hand for the ops that ran.
    public private(set) var servedInLastRecompute: [String] = []
    /// Names of the ops whose outputs the region held for its recompute (selective policies), sorted.
    public var keptOutputs: [String] { keptOutputNames.sorted() }
    private var keptOutputNames: [String] = []

    /// Receives every region created in this task after its forward (for debugging and tests):
    /// `CheckpointRegion.$debugSink.withValue(RegionSink { region in … }) { … }`.
    @TaskLocal public static var debugSink: RegionSink?

    /// A receiver of regions (a class: task-local values here are objects, not bare closures).
    public final class RegionSink: Sendable {
        let receive: @Sendable (CheckpointRegion) -> Void
        public init(_ receive: @escaping @Sendable (CheckpointRegion) -> Void) { self.receive = receive }
    }

    /// The regions whose forward or recompute is running in this task, innermost last.
    @TaskLocal private static var running: [CheckpointRegion] = []

    init(inputs: [Tensor], options: CheckpointOptions, decisions: RegionDecisions, body: @escaping ([Tensor]) -> [Tensor]) {
        self.options = options
        self.decisions = decisions
        self.body = body
        let name = nextOpName("checkpoint")
        self.name = name
        namingSnapshot = AutogradContext.current.naming?.snapshot() ?? NamingState().snapshot()
        autocast = AutogradContext.current.autocast
        autocastHooks = autocast == nil ? nil : autocastHooksInForce
        inputRequiresGrad = inputs.map(\.requiresGrad)
        inputSlots = inputs.enumerated().map { i, t in Autograd.save(t, name: name, op: "checkpoint", role: "input\(i)") }
    }

    // MARK: Forward

    /// Runs the region: its forward, or, inside an enclosing region's recompute that needs none of
    /// its ops, nothing (the enclosing region gives its outputs).
    func run(_ inputs: [Tensor]) -> [Tensor] {
        if let outer = Self.running.last(where: { $0.phase == .recompute }) {
            outer.rebuild(savedBy: name, output: nil)   // what this region's input slots held for it
            if let outputs = outer.skipNested(name) { return outputs }
        }
        let enclosing = Self.running
        for r in enclosing where r.phase == .forward { r.nestedBegins(name) }
        for t in inputs where owners[t.storage.id] == nil { owners[t.storage.id] = ("", true) }
        let hooks = SavedTensorHooks(pack: { [unowned self] t, info in pack(t, info) }, unpack: unpackKeptOrDeferred)
        policyHooks = [autocastHooksInForce, savedTensorPolicyHooksInForce].compactMap { $0 }
        // Naming continues from where the region started (the snapshot), so the forward and every
        // recompute name their ops alike.
        let outputs = Self.$running.withValue(enclosing + [self]) {
            AutogradContext.with({ ctx in
                if ctx.naming == nil { ctx.naming = NamingState(restoring: namingSnapshot) }
                ctx.savedTensorHooks.append(hooks)
                ctx.opInterceptors.append(self)
                if options.preserveRNGState { ctx.generatorObserver = generators.observer(chainingTo: ctx.generatorObserver) }
                ctx.opObserver = chain({ [unowned self] node, output in recorded(node, output) }, ctx.opObserver)
            }) {
                body(inputs)
            }
        }
        for r in enclosing where r.phase == .forward { r.nestedEnds(name, outputs: outputs) }
        nodeNames = [:]
        phase = .done
        CheckpointRegion.debugSink?.receive(self)
        return outputs
    }

    /// The forward's decision for an op, before it computes.
    public func output(for call: OpCall) -> Tensor? {
        switch phase {
        case .forward:
            treatments[call.name] = decisions.treatment(for: call)
            dynamic?.opStarts(call.name)
            return nil
        case .recompute:
            return replay?.decide(call.name, in: self)
        case .done:
            return nil
        }
    }

    private func treatment(of op: String) -> OpTreatment {
        op.isEmpty ? .keep : (treatments[op] ?? decisions.defaultTreatment)
    }

    private func pack(_ t: Tensor, _ info: SavedTensorInfo) -> SavedPayload {
        if info.isParameter { return .tensor(t) }
        savedInfos.append(info)
        let sid = t.storage.id
        let owner = owners[sid] ?? { owners[sid] = (info.nodeName, info.isOutput); return owners[sid]! }()
        // Dynamic mode keeps every tensor the region's ops made in an evictable slot (the region's
        // inputs, and what was made outside it, as they are); otherwise the owner's treatment decides.
        let drops = dynamic != nil ? !owner.op.isEmpty : (treatment(of: owner.op) == .recompute && !keptStorages.contains(sid))
        guard drops else { return .tensor(t) }
        let k = dropped.count
        dropped.append(DroppedSlot(info: info, owner: owner.op, layout: TensorLayout(t),
                                   checksum: options.determinismCheck == .values ? t.contentChecksum() : nil,
                                   isOwnerOutput: owner.isOutput))
        let region = self   // the handle holds the region strongly
        guard let dynamic else {
            return .deferred(RecomputeHandle(materialize: { region.tensor(at: k) }, discard: { region.discard(k) }))
        }
        dynamic.holds(slot: k, of: t.storage, owner: owner.op)
        return .deferred(RecomputeHandle(materialize: { region.dynamicTensor(at: k) }, discard: { region.dynamic?.slotReleased(k) },
                                         peek: { region.dynamicTensorAtHand(k) }))
    }

    /// Records an op of the forward (this region's own or a nested region's).
    private func recorded(_ node: Node, _ output: Tensor) {
        let sid = output.storage.id
        if owners[sid] == nil { owners[sid] = (node.name, true) }
        // Inputs made outside the region are not ops of it (their names may repeat names here).
        let inputs = node.inputEdges.compactMap { edge -> String? in
            guard case .node(let n)? = edge, let known = nodeNames[ObjectIdentifier(n)], known.node === n else { return nil }
            return known.name
        }
        nodeNames[ObjectIdentifier(node)] = NodeName(node: node, name: node.name)
        dynamic?.opRecorded(node.name, index: ops.count, inputs: inputs.compactMap { opIndex[$0] })
        opIndex[node.name] = ops.count
        ops.append(OpRecord(name: node.name, inputs: inputs, storage: output.storage, layout: TensorLayout(output)))
        if options.debug { trace.append("forward \(node.name)") }
        if treatments[node.name] == .keepOutput, heldOutputs[node.name] == nil {
            keptStorages.insert(sid)
            // Held for the recompute: an activation.
            heldOutputs[node.name] = Autograd.save(output, name: node.name, op: node.op, role: "output", isOutput: true, hooks: policyHooks)
            keptOutputNames.append(node.name)
        }
    }

    private func nestedBegins(_ region: String) {
        nestedIndex[region] = nested.count
        openNested.append(nested.count)
        nested.append(NestedRecord(name: region, parent: openNested.dropLast().last, firstOp: ops.count, endOp: ops.count))
    }

    private func nestedEnds(_ region: String, outputs: [Tensor]) {
        guard let i = nestedIndex[region] else { return }
        openNested.removeAll { $0 == i }
        nested[i].endOp = ops.count
        nested[i].outputs = outputs.map(TensorLayout.init)
        nested[i].outputStorages = outputs.map { WeakStorage($0.storage) }
        nested[i].outputsRequireGrad = outputs.map(\.requiresGrad)
        nested[i].namingAtEnd = AutogradContext.current.naming?.snapshot()
        nested[i].generatorsAtEnd = generators.currentStates()
    }

    // MARK: Recompute

    /// The `index`-th dropped tensor, recomputing the region if it is not at hand.
    private func tensor(at index: Int) -> Tensor {
        if materialized[index] == nil { recompute(slots: Array(dropped.indices)) }
        guard let t = materialized.removeValue(forKey: index) else {
            preconditionFailure("checkpoint \(name): the recompute did not rebuild saved tensor \(dropped[index].info.name)")
        }
        return t.unpack()
    }

    private func discard(_ index: Int) { materialized.removeValue(forKey: index) }

    /// Re-runs the body from the kept inputs and rebuilds the dropped tensors `slots` (every one,
    /// but in dynamic mode).
    private func recompute(slots: [Int]) {
        recomputeCount += 1
        materialized.removeAll()
        let inputs = zip(inputSlots, inputRequiresGrad).map { slot, requiresGrad -> Tensor in
            let t = slot.unpack().detached()
            t.requiresGrad = requiresGrad
            return t
        }
        // Decided after the inputs are unpacked: unpacking one may recompute an enclosing region,
        // which changes what is at hand.
        let replay = Replay(region: self, slots: slots)
        self.replay = replay
        skippedInLastRecompute = []
        servedInLastRecompute = []
        let capture = SavedTensorHooks(
            pack: { [unowned replay] t, info in
                if replay.internalSlots[info.name] != nil { replay.captured[info.name] = t }
                return .deferred(DiscardedRecomputeTensor())
            },
            unpack: { [name] _, info in preconditionFailure("checkpoint \(name): a recompute graph was used for backward (\(info.name))") })
        phase = .recompute
        defer { phase = .done; self.replay = nil }
        // Replay the random streams from where the forward found them (none were captured without
        // preserveRNGState); restore them afterwards.
        _ = generators.replaying {
            Self.$running.withValue([self]) {
                AutogradContext.with({ ctx in
                    ctx.gradEnabled = true
                    ctx.isRecomputing = true
                    ctx.autocast = autocast
                    ctx.naming = NamingState(restoring: namingSnapshot)
                    ctx.savedTensorHooks = [capture]
                    ctx.generatorObserver = nil
                    ctx.opInterceptors = [self]
                    ctx.opObserver = { [unowned self] node, output in rebuild(savedBy: node.name, output: output) }
                }) {
                    body(inputs)
                }
            }
        }
        for k in replay.slots where materialized[k] == nil && !replay.rebuilt.contains(k) {
            preconditionFailure("checkpoint \(name): determinism check failed: the recompute did not save \(dropped[k].info.name) (op \(dropped[k].info.op))")
        }
        // The held outputs were served: the rebuilt tensors that need them hold them now, the
        // others (a projection's output that only a residual add read) are freed. A later
        // recompute (a graph retained for a second backward) serves what is still alive.
        heldOutputs.removeAll()
    }

    /// After op (or nested region) `saver` recorded in the recompute: rebuilds the dropped
    /// tensors it saved.
    private func rebuild(savedBy saver: String, output: Tensor?) {
        guard let replay else { return }
        if let output, replay.pendingOutputViews[saver] != nil { replay.outputs[saver] = output }
        for k in replay.slotsBySaver[saver] ?? [] { materialize(k, replay) }
    }

    private func materialize(_ k: Int, _ replay: Replay) {
        guard materialized[k] == nil, !replay.rebuilt.contains(k) else { return }
        let d = dropped[k]
        if let dynamic, !d.isOwnerOutput, dynamic.storage(ofSlot: k) != nil {
            // An internal tensor several ops saved (BERT's mask bias, saved by every layer): the
            // first saver's recompute rebuilt the storage they share; the later savers, not run,
            // capture nothing.
            replay.rebuilt.insert(k)
            return
        }
        let t: Tensor
        if d.isOwnerOutput {
            guard let out = replay.outputs[d.owner], let i = opIndex[d.owner] else {
                preconditionFailure("checkpoint \(name): the recompute did not run \(d.owner) (needed for \(d.info.name))")
            }
            let now = TensorLayout(out)
            precondition(options.determinismCheck == .off || now == ops[i].layout,
                         "checkpoint \(name): determinism check failed at saved tensor \(d.info.name): op \(d.info.op) (\(d.owner)) put out shape \(ops[i].layout.shape) \(ops[i].layout.dtype) in the forward but shape \(now.shape) \(now.dtype) in the recompute")
            precondition(now.storageBytes == ops[i].layout.storageBytes,
                         "checkpoint \(name): the recompute of \(d.owner) put out \(now.storageBytes) bytes, the forward \(ops[i].layout.storageBytes)")
            t = d.layout.view(of: out.storage)
            replay.pendingOutputViews[d.owner, default: 1] -= 1
            if replay.pendingOutputViews[d.owner] == 0 {
                replay.pendingOutputViews[d.owner] = nil
                replay.outputs[d.owner] = nil
            }
        } else {
            guard let s = replay.captured.removeValue(forKey: d.info.name) else {
                preconditionFailure("checkpoint \(name): determinism check failed: the recompute of \(d.owner) did not save \(d.info.name)")
            }
            precondition(options.determinismCheck == .off || (s.shape == d.info.shape && s.dtype == d.info.dtype),
                         "checkpoint \(name): determinism check failed at saved tensor \(d.info.name): op \(d.info.op) saved shape \(d.info.shape) \(d.info.dtype) in the forward but shape \(s.shape) \(s.dtype) in the recompute")
            t = s
        }
        if let sum = d.checksum {
            precondition(t.contentChecksum() == sum,
                         "checkpoint \(name): determinism check failed at saved tensor \(d.info.name): op \(d.info.op), shape \(d.info.shape): recomputed values differ from the forward's")
        }
        if let dynamic {
            // Held by the dynamic state at once, so the evictor may drop it again while the
            // recompute goes on (all but the tensor backward asked for); the owner's output is
            // at hand again for later recomputes.
            replay.rebuilt.insert(k)
            dynamic.rebuilt(slot: k, storage: t.storage)
            if d.isOwnerOutput, let i = opIndex[d.owner] { ops[i].storage = t.storage }
            return
        }
        // Held for backward: an activation (under autocast, in 2 bytes when its values allow).
        materialized[k] = Autograd.save(t, name: d.info.nodeName, op: d.info.op, role: d.info.role, isOutput: d.info.isOutput,
                                        hooks: autocastHooks.map { [$0] } ?? [])
    }

    // MARK: Dynamic mode

    /// Dynamic mode: the `index`-th saved tensor, from its storage if the evictor left it, else
    /// rebuilt first (with every evicted tensor on its recompute path that backward still needs).
    private func dynamicTensor(at index: Int) -> Tensor {
        guard let dynamic else { preconditionFailure("checkpoint \(name): not a dynamic region") }
        if dynamic.storage(ofSlot: index) == nil {
            let owner = dropped[index].owner
            let run = recomputePath(targets: dynamic.recomputeTargets(for: owner), inputs: { [opIndex, ops] in opIndex[$0].map { ops[$0].inputs } },
                                    isAlive: { opIndex[$0].map { isAtHand($0) } ?? true })
            let slots = dynamic.evictedSlotsNeeded(ownedByAnyOf: run)
            let start = monotonicSeconds()
            dynamic.pin(slot: index)
            dynamic.recomputeBegins()
            defer {
                dynamic.recomputeEnds()
                dynamic.pin(slot: nil)
            }
            recompute(slots: slots)
            dynamic.recomputed(tensors: slots.count, seconds: monotonicSeconds() - start)
        }
        guard let s = dynamic.storage(ofSlot: index) else {
            preconditionFailure("checkpoint \(name): the recompute did not rebuild saved tensor \(dropped[index].info.name)")
        }
        dynamic.accessed(slot: index)
        return dropped[index].layout.view(of: s)
    }

    /// Dynamic mode: the `index`-th saved tensor if its storage is held (nothing is recomputed).
    private func dynamicTensorAtHand(_ index: Int) -> Tensor? {
        dynamic?.storage(ofSlot: index).map { dropped[index].layout.view(of: $0) }
    }

    /// The output at hand for op `i` (held for the recompute, or alive), as the forward laid it out.
    private func atHand(_ i: Int) -> Tensor? {
        if let held = heldOutputs[ops[i].name] { return held.unpack() }
        return ops[i].storage.map { ops[i].layout.view(of: $0) }
    }

    private func isAtHand(_ i: Int) -> Bool { heldOutputs[ops[i].name] != nil || ops[i].storage != nil }

    /// In this region's recompute: the outputs of nested region `region` when none of its ops
    /// run (after rebuilding the dropped tensors it saved), or nil when it must run.
    private func skipNested(_ region: String) -> [Tensor]? {
        guard let replay, let i = nestedIndex[region] else { return nil }
        let n = nested[i]
        guard !replay.targets.contains(region), !ops[n.firstOp..<n.endOp].contains(where: { replay.run.contains($0.name) }),
              !nested.indices.contains(where: { isInside($0, i) && replay.targets.contains(nested[$0].name) }) else {
            return nil
        }
        // What the ops and regions inside it saved (their savers will not record).
        for op in ops[n.firstOp..<n.endOp] { for k in replay.slotsBySaver[op.name] ?? [] { materialize(k, replay) } }
        for j in nested.indices where isInside(j, i) { for k in replay.slotsBySaver[nested[j].name] ?? [] { materialize(k, replay) } }
        if let naming = n.namingAtEnd { AutogradContext.current.naming?.restore(naming) }
        for (g, s) in n.generatorsAtEnd { g.state = s }
        if options.debug { trace.append("skip \(region)") }
        // As the forward's outputs require grad, so that the ops after the region record (and are
        // decided by name) as in the forward.
        return n.outputs.indices.map { k in
            let t = n.outputStorages[k].storage.map { n.outputs[k].view(of: $0) } ?? n.outputs[k].placeholder()
            t.requiresGrad = n.outputsRequireGrad[k]
            return t
        }
    }

    /// Whether nested region `j` ran inside nested region `i`.
    private func isInside(_ j: Int, _ i: Int) -> Bool {
        var p = nested[j].parent
        while let q = p {
            if q == i { return true }
            p = nested[q].parent
        }
        return false
    }

    /// One recompute's decisions and what it collects.
    private final class Replay: @unchecked Sendable {
        /// Owners of dropped tensors.
        let targets: Set<String>
        /// The ops the recompute runs.
        let run: Set<String>
        /// Ops whose outputs the ops that run read.
        let needed: Set<String>
        /// Dropped slots by the op that saved them.
        let slotsBySaver: [String: [Int]]
        /// Dropped internal tensors by slot name, and what the recompute saved of them.
        let internalSlots: [String: Int]
        var captured: [String: Tensor] = [:]
        /// Dynamic mode: the slots rebuilt so far (handed to the dynamic state as they are).
        var rebuilt: Set<Int> = []
        /// Outputs of the targets in this recompute, until the dropped views of them are rebuilt
        /// (their number per target, in `pendingOutputViews`).
        var outputs: [String: Tensor] = [:]
        var pendingOutputViews: [String: Int] = [:]

        /// Dropped slots it rebuilds (by index).
        let slots: [Int]
        /// Dynamic mode: the storages of the outputs it serves, held so the evictor cannot drop
        /// them before they are served.
        let pinned: [Storage]

        init(region r: CheckpointRegion, slots: [Int]) {
            self.slots = slots
            let targets = Set(slots.map { r.dropped[$0].owner })
            self.targets = targets
            let ops = r.ops, opIndex = r.opIndex
            run = recomputePath(targets: targets, inputs: { opIndex[$0].map { ops[$0].inputs } },
                                isAlive: { opIndex[$0].map { r.isAtHand($0) } ?? true })
            let needed = Set(run.flatMap { opIndex[$0].map { ops[$0].inputs } ?? [] })
            self.needed = needed
            pinned = r.dynamic == nil ? [] : needed.compactMap { opIndex[$0].flatMap { ops[$0].storage } }
            slotsBySaver = Dictionary(grouping: slots, by: { r.dropped[$0].info.nodeName })
            internalSlots = Dictionary(uniqueKeysWithValues: slots.filter { !r.dropped[$0].isOwnerOutput }
                .map { (r.dropped[$0].info.name, $0) })
            for k in slots where r.dropped[k].isOwnerOutput { pendingOutputViews[r.dropped[k].owner, default: 0] += 1 }
        }

        /// Run, serve or skip op `op`.
        func decide(_ op: String, in r: CheckpointRegion) -> Tensor? {
            if run.contains(op) {
                if r.options.debug { r.trace.append("recompute \(op)") }
                return nil
            }
            guard let i = r.opIndex[op] else { return nil }   // not in the forward: let it run
            if needed.contains(op), let t = r.atHand(i) {
                if r.options.debug { r.trace.append("serve \(op)") }
                r.servedInLastRecompute.append(op)
                return t
            }
            if r.options.debug { r.trace.append("skip \(op)") }
            r.skippedInLastRecompute.append(op)
            return r.ops[i].layout.placeholder()
        }
    }
}

/// A weak reference to a storage (alive or not).
struct WeakStorage {
    weak var storage: Storage?
    init(_ s: Storage) { storage = s }
}
