/// One training step captured as a graph (``StepCapture``): the forward ops with their stable
/// names, the tensors (storages) the step allocates with their owner and liveness, and the two
/// memory event sequences the simulator composes. Profiler, planner, executor and reports all name
/// an op `module.path/op#ordinal` and an activation by its owner op, so a plan always finds what it
/// refers to.
public struct StepGraph: Sendable, Equatable {
    public enum Phase: String, Sendable, Codable { case forward, backward, optimizer }

    /// A forward op.
    public struct Op: Sendable, Hashable {
        public var name: String
        public var kind: String
        /// Execution rank in the forward (0-based).
        public var rank: Int
        /// Index of the block (region) it ran in, nil outside every block.
        public var region: Int?
        /// Names of the ops whose outputs it takes (graph inputs that require grad).
        public var inputs: [String]
        /// Median forward time, seconds.
        public var seconds: Double
        /// The tensor its output lives in, when the step allocated it (nil: a view of a parameter
        /// or of data from before the step, always alive).
        public var outputTensor: Int?
    }

    /// A storage the step allocates.
    public struct TensorInfo: Sendable, Hashable {
        public var id: Int
        /// `owner-op-name:role` (`output` for the owner's output).
        public var name: String
        /// Index in ``StepGraph/ops`` of the op that allocated it (nil: backward or optimizer).
        public var owner: Int?
        public var bytes: Int
        public var category: MemoryCategory
        public var phase: Phase
        /// Names of the saved-tensor slots that hold it for backward (empty: not saved).
        public var savedBy: [String]
        /// Forward ranks of the ops consuming it (by graph edge).
        public var consumers: [Int]
        /// Forward rank at which it is freed when no slot holds it (nil: survives the forward).
        public var lastForwardUse: Int?
        /// Backward ranks (in backward order) of its first and last use through a slot.
        public var firstBackwardUse: Int?
        public var lastBackwardUse: Int?
        /// Allocated before the step (freed during it).
        public var preexisting: Bool = false
    }

    /// One memory event of a captured sequence.
    public enum Event: Sendable, Hashable {
        case allocate(Int)   // tensor index
        case free(Int)
        case forwardOp(Int)  // after op i recorded
        case backwardOp(String)  // before the backward of the op with this name
        case regionStart(Int)
        case regionEnd(Int)
    }

    public var model: String
    /// Input shape of the captured step (plans are per shape).
    public var inputShape: [Int]
    /// Block paths, in order (the regions a plan may recompute in).
    public var regions: [String]
    public var ops: [Op]
    public var tensors: [TensorInfo]
    /// Live bytes when the forward starts (parameters, optimizer state, ...).
    public var baselineBytes: Int
    /// Live bytes by category at the forward start.
    public var baselineByCategory: [MemoryCategory: Int]
    /// Measured peak of the unplanned step (ledger).
    public var measuredPeakBytes: Int
    /// Median step time without a plan, seconds.
    public var stepSeconds: Double
    /// Median backward time of each op, seconds, by op name.
    public var backwardSeconds: [String: Double]
    /// The unplanned step: forward, backward and optimizer events.
    public var keptSequence: [Event]
    /// Index in ``keptSequence`` where the backward phase starts (after the forward returned).
    public var backwardStartIndex: Int
    /// The forward with every candidate dropped: where each tensor dies when no slot holds it.
    public var droppedForward: [Event]
    /// For each saved-tensor slot: its name, the op that saved it, the tensor it holds.
    public var slots: [Slot]

    public struct Slot: Sendable, Hashable {
        public var name: String
        public var saver: String
        public var tensor: Int
    }

    /// Ops that can be planned: in a block, owning tensors that only slots of their own block save.
    public var candidates: [Candidate] {
        var byOwner: [Int: [Int]] = [:]
        for (i, t) in tensors.enumerated() where t.owner != nil && !t.savedBy.isEmpty {
            byOwner[t.owner!, default: []].append(i)
        }
        let opByName = Dictionary(uniqueKeysWithValues: ops.enumerated().map { ($0.element.name, $0.offset) })
        let saverOf = Dictionary(slots.map { ($0.name, $0.saver) }, uniquingKeysWith: { a, _ in a })
        var result: [Candidate] = []
        for (o, ts) in byOwner.sorted(by: { $0.key < $1.key }) {
            guard let r = ops[o].region else { continue }
            let ownRegion = ts.allSatisfy { t in
                tensors[t].savedBy.allSatisfy { slot in
                    guard let saver = saverOf[slot], let si = opByName[saver] else { return false }
                    return ops[si].region == r
                }
            }
            guard ownRegion else { continue }
            result.append(Candidate(op: o, name: ops[o].name, region: r, tensors: ts,
                                    bytes: ts.reduce(0) { $0 + tensors[$1].bytes }))
        }
        return result
    }

    /// A plannable op: KEEP or RECOMPUTE decides for all its saved tensors at once.
    public struct Candidate: Sendable, Hashable {
        public var op: Int
        public var name: String
        public var region: Int
        public var tensors: [Int]
        public var bytes: Int
    }
}
