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
    /// What compressing (and offloading) costs on the machine that captured the step (nil: not
    /// measured, as in a profile written before they were: only keep and recompute are planned).
    public var actionCosts: ActionCosts? = nil

    public struct Slot: Sendable, Hashable {
        public var name: String
        public var saver: String
        public var tensor: Int
        /// The slot's role in its op (`input`, `output`, `lhs`, …), the shape of the tensor it saves
        /// (a view may cover part of the storage) and whether that is the saver's own output: what
        /// a codec needs to know whether it applies and how many bytes it packs into (empty for a
        /// profile written before they were recorded: no codec is offered for it).
        public var role: String
        public var shape: [Int]
        public var isOutput: Bool
        public var dtype: DType
        /// The codecs that depend on the values (``Codec/bits``, ``Codec/causal``,
        /// ``Codec/causalBF16``) which the captured values allow (``Codec/packs(_:)``).
        public var valueCodecs: Set<Codec> = []
        /// Where the saved view starts in its storage, in elements (views of one storage at other
        /// offsets are packed apart).
        public var offset: Int = 0

        public init(name: String, saver: String, tensor: Int, role: String = "", shape: [Int] = [], isOutput: Bool = false,
                    dtype: DType = .float32) {
            self.name = name
            self.saver = saver
            self.tensor = tensor
            self.role = role
            self.shape = shape
            self.isOutput = isOutput
            self.dtype = dtype
        }
    }

    /// The facts a codec checks (``Codec/applies(to:)``) for slot `s`, whose saver is an op of
    /// kind `saverKind`.
    func info(of s: Slot, saverKind: String) -> SavedTensorInfo {
        let n = s.shape.reduce(1, *)
        return SavedTensorInfo(name: s.name, nodeName: s.saver, op: saverKind, role: s.role, shape: s.shape, dtype: s.dtype,
                               byteCount: n * s.dtype.byteSize, isParameter: false, isOutput: s.isOutput)
    }

    /// Whether `codec` packs what slot `s` saves (its saver an op of kind `saverKind`): it
    /// applies to the slot, and for the codecs that depend on the values, the captured values
    /// allowed it. False when the slot's facts were not recorded (an older profile).
    public func codec(_ codec: Codec, packs s: Slot, saverKind: String) -> Bool {
        guard !s.role.isEmpty, codec != .none, codec.applies(to: info(of: s, saverKind: saverKind)) else { return false }
        switch codec {
        case .bits, .causal, .causalBF16: return s.valueCodecs.contains(codec)
        default: return true
        }
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
