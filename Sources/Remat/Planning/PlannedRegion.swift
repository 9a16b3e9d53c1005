/// The executor side of a memory plan: one block of the model run as a planned region.
///
/// In the forward, a saved tensor whose owner (the op that allocated it) the plan marks RECOMPUTE
/// is not kept: its slot gets a handle instead. When backward first needs one of those, the region
/// re-runs its body once from its kept input with the names, random streams and layouts of the
/// forward, and every op decides by its stable name (``ReplayControl``):
/// - `run`: the op is a RECOMPUTE owner, or an ancestor of one whose output is no longer alive;
/// - `serve`: its output is still alive (kept for backward, or a parameter view): returned as is;
/// - `skip`: nothing needed reads it: a placeholder with the forward's layout (no memory, no time).
/// So a recompute costs exactly the ops on the recompute path, as the simulator assumes.
///
/// Ownership: one per block call; lives as long as the handles in the graph's slots.
final class PlannedRegion: @unchecked Sendable {
    /// What the region's forward recorded about one op (by stable name).
    struct OpRecord {
        let name: String
        let inputNames: [String]
        weak var storage: Storage?
        let layout: TensorLayout
    }

    /// A slot whose tensor the plan recomputes.
    struct DeferredSlot {
        let slotName: String
        let owner: String
        let storageID: Int
        let layout: TensorLayout
        /// Whether the slot holds (a view of) the owner's output; otherwise an internal tensor the
        /// owner saved for itself (layer norm's mean, ...), captured when the owner records again.
        let isOwnerOutput: Bool
    }

    let name: String
    let recompute: Set<String>
    private let body: (Tensor) -> Tensor
    private let namingSnapshot: NamingState.Snapshot
    private var inputSlot: SavedTensor?
    private let inputRequiresGrad: Bool
    private let generators = GeneratorStates()
    private var ops: [OpRecord] = []
    private var opIndex: [String: Int] = [:]
    private var owner: [Int: String] = [:]
    private var outputStorageOf: [String: Int] = [:]
    private var deferred: [DeferredSlot] = []
    private var materialized: [String: Tensor] = [:]

    init(name: String, recompute: Set<String>, input: Tensor, body: @escaping (Tensor) -> Tensor) {
        self.name = name
        self.recompute = recompute
        self.body = body
        namingSnapshot = AutogradContext.current.naming?.snapshot() ?? NamingState().snapshot()
        inputRequiresGrad = input.requiresGrad
        inputSlot = Autograd.save(input, name: name + "/region", op: "region", role: "input")
    }

    deinit {
        for (_, t) in materialized { t.storage.releaseForBackward() }
    }

    /// The owner of a storage seen in this region: the op that first produced it here, or, for a
    /// storage first seen when saved, the op saving it (it allocated it: an internal tensor).
    static func owner(of storageID: Int, in owners: inout [Int: String], saver: String) -> String {
        if let o = owners[storageID] { return o }
        owners[storageID] = saver
        return saver
    }

    func runForward(_ input: Tensor) -> Tensor {
        owner[input.storage.id] = "<input>"
        let hooks = SavedTensorHooks(
            pack: { [unowned self] t, info in
                if info.isParameter { return .tensor(t) }
                let o = PlannedRegion.owner(of: t.storage.id, in: &owner, saver: info.nodeName)
                guard recompute.contains(o) else { return .tensor(t) }
                deferred.append(DeferredSlot(slotName: info.name, owner: o, storageID: t.storage.id,
                                             layout: TensorLayout(t), isOwnerOutput: false))
                let region = self, slot = info.name   // the handle holds the region strongly
                return .deferred(RecomputeHandle(materialize: { region.tensor(slot: slot) }, discard: { region.discard(slot: slot) }))
            },
            unpack: unpackKeptOrDeferred)
        let observer: @Sendable (Node, Tensor) -> Void = { [unowned self] node, output in
            let sid = output.storage.id
            _ = PlannedRegion.owner(of: sid, in: &owner, saver: node.name)
            outputStorageOf[node.name] = sid
            let inputs: [String] = node.inputEdges.compactMap { edge in
                if case .node(let n)? = edge { return n.name }
                return nil
            }
            opIndex[node.name] = ops.count
            ops.append(OpRecord(name: node.name, inputNames: inputs, storage: output.storage, layout: TensorLayout(output)))
        }
        let out = AutogradContext.with({ ctx in
            ctx.savedTensorHooks.append(hooks)
            ctx.generatorObserver = generators.observer(chainingTo: ctx.generatorObserver)
            ctx.opObserver = chain(observer, ctx.opObserver)
        }) {
            body(input)
        }
        // A slot holds the owner's output when its storage is that output's storage.
        deferred = deferred.map { d in
            DeferredSlot(slotName: d.slotName, owner: d.owner, storageID: d.storageID, layout: d.layout,
                         isOwnerOutput: outputStorageOf[d.owner] == d.storageID)
        }
        return out
    }

    /// The ops a recompute must run: the owners of deferred slots and, through their inputs, every
    /// ancestor in this region whose output is not alive (`isAlive`). Shared with the simulator.
    static func recomputePath<Op: Hashable>(targets: Set<Op>, inputs: (Op) -> [Op]?, isAlive: (Op) -> Bool) -> Set<Op> {
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

    fileprivate func tensor(slot: String) -> Tensor {
        if materialized[slot] == nil { recomputeOnce() }
        guard let t = materialized.removeValue(forKey: slot) else {
            preconditionFailure("planned region \(name): recompute did not produce saved tensor \(slot) (asked twice without retaining the graph?)")
        }
        t.storage.releaseForBackward()
        return t
    }

    fileprivate func discard(slot: String) { materialized.removeValue(forKey: slot)?.storage.releaseForBackward() }

    private func recomputeOnce() {
        let targets = Set(deferred.map(\.owner))
        let run = PlannedRegion.recomputePath(
            targets: targets,
            inputs: { [opIndex, ops] n in opIndex[n].map { ops[$0].inputNames } },
            isAlive: { [opIndex, ops] n in opIndex[n].map { ops[$0].storage != nil } ?? true })
        let replay = ReplayControl { [unowned self] name in
            if run.contains(name) { return .run }
            guard let i = opIndex[name] else { return .run }
            let op = ops[i]
            if let s = op.storage { return .serve(op.layout.view(of: s)) }
            return .skip(op.layout.placeholder())
        }
        guard let input = inputSlot?.unpack().detached() else {
            preconditionFailure("planned region \(name): its input was released before the recompute")
        }
        input.requiresGrad = inputRequiresGrad
        let box = RecomputeBox()
        let internalSlots = Set(deferred.filter { !$0.isOwnerOutput }.map(\.slotName))
        let capture = SavedTensorHooks(
            pack: { t, info in
                if internalSlots.contains(info.name) { box.internals[info.name] = t }
                return .deferred(DiscardedRecomputeTensor())
            },
            unpack: { [name] _, info in preconditionFailure("planned region \(name): a recompute graph was used for backward (\(info.name))") })
        let observer: @Sendable (Node, Tensor) -> Void = { node, output in
            if targets.contains(node.name) { box.outputs[node.name] = output }
        }
        _ = generators.replaying { AutogradContext.with({ ctx in
            ctx.gradEnabled = true
            ctx.isRecomputing = true
            ctx.naming = NamingState(restoring: namingSnapshot)
            ctx.savedTensorHooks = [capture]
            ctx.generatorObserver = nil
            ctx.opObserver = observer
            ctx.outputCache = nil
            ctx.replay = replay
        }) {
            body(input)
        } }
        for d in deferred {
            let t: Tensor
            if d.isOwnerOutput {
                guard let out = box.outputs[d.owner] else {
                    preconditionFailure("planned region \(name): the recompute did not run \(d.owner) (needed for \(d.slotName))")
                }
                t = d.layout.view(of: out.storage)
            } else {
                guard let s = box.internals[d.slotName] else {
                    preconditionFailure("planned region \(name): the recompute did not save \(d.slotName)")
                }
                t = s
            }
            precondition(t.shape == d.layout.shape && t.dtype == d.layout.dtype,
                         "planned region \(name): determinism check failed for \(d.slotName): forward saved \(d.layout.shape) \(d.layout.dtype), recompute gave \(t.shape) \(t.dtype)")
            t.storage.retainForBackward()
            materialized[d.slotName] = t
        }
        // The recompute graph's slots hold the capture hook, which holds the box: break the cycle.
        box.outputs.removeAll()
        box.internals.removeAll()
    }

    /// What one recompute collects (a class: the hooks are `@Sendable` closures).
    private final class RecomputeBox: @unchecked Sendable {
        var outputs: [String: Tensor] = [:]
        var internals: [String: Tensor] = [:]
    }
}
