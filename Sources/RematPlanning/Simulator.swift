import Synchronization

/// What a plan does with the saved tensors of one candidate op.
public enum SavedTensorAction: Sendable, Hashable, CustomStringConvertible {
    /// Its slots hold the tensors.
    case keep
    /// Dropped at the end of the forward, rebuilt by a recompute of its block.
    case recompute
    /// Its slots hold the tensors packed by the codec (``Codec``) from when they are saved until
    /// backward unpacks them.
    case compress(Codec)
    /// Its tensors (those of at least ``ActionCosts/SpillRate/minimum_bytes``) go to the spill
    /// store's files from when they are saved until backward reads them back.
    case offload

    public var description: String {
        switch self {
        case .keep: return "keep"
        case .recompute: return "recompute"
        case .compress(let c): return "compress(\(c))"
        case .offload: return "offload"
        }
    }

    /// Whether backward reads bitwise what keeping would give it.
    public var isLossless: Bool {
        if case .compress(let c) = self { return c.isLossless }
        return true
    }
}

/// One action per candidate (indices into ``PlanSimulator/candidates``); a candidate not listed
/// is kept.
public struct PlanActions: Sendable, Hashable {
    public private(set) var byCandidate: [Int: SavedTensorAction]

    public init(_ actions: [Int: SavedTensorAction] = [:]) { byCandidate = actions.filter { $0.value != .keep } }
    /// Recompute the candidates in `set`, keep the rest.
    public init(recompute set: Set<Int>) { byCandidate = Dictionary(uniqueKeysWithValues: set.map { ($0, .recompute) }) }

    public subscript(c: Int) -> SavedTensorAction {
        get { byCandidate[c] ?? .keep }
        set { byCandidate[c] = newValue == .keep ? nil : newValue }
    }

    /// The candidates recomputed.
    public var recompute: Set<Int> { Set(byCandidate.compactMap { $0.value == .recompute ? $0.key : nil }) }
    /// The candidates offloaded.
    public var offload: Set<Int> { Set(byCandidate.compactMap { $0.value == .offload ? $0.key : nil }) }
    /// Candidates with an action other than keep.
    public var count: Int { byCandidate.count }
}

/// Predicts the peak memory and the time of a training step under a plan (a set of RECOMPUTE ops).
///
/// It composes the two captured sequences with the executor's own rules (``CheckpointRegion``
/// under a plan):
/// - forward: the dropped-forward sequence, where a tensor the plan keeps is not freed (a slot
///   holds it), and a tensor the plan recomputes dies where nothing else references it;
/// - backward and optimizer: the unplanned sequence; just before the backward of the first op that
///   needs a dropped tensor of block `r`, block `r` recomputes: the ops on the recompute path
///   (``recomputePath(targets:inputs:isAlive:)``, with liveness from the simulated
///   state) allocate and free as in the forward, the recomputed tensors stay until their last
///   backward use, everything else the recompute made is freed at its end.
/// So the prediction follows the ledger event by event; tests hold it to 1% of the measured peak.
public final class PlanSimulator: @unchecked Sendable {
    public let graph: StepGraph
    public let candidates: [StepGraph.Candidate]
    private let candidateIndexOfOp: [Int: Int]
    private let opIndex: [String: Int]
    private let regionOps: [[Int]]
    /// For each region: its window of the dropped forward, each event with the op it belongs to.
    private let regionWindows: [[(event: StepGraph.Event, op: Int?)]]
    private let backwardStart: Int
    /// Per op: the indices of its inputs inside its own region (nil: outside every region).
    private let regionInputs: [[Int]?]
    /// Per tensor: the indices of the ops whose slots hold it.
    private let saverOps: [[Int]]
    /// The backward part of the unplanned sequence, backward nodes resolved to op indices
    /// (-1: a node with no forward op of that name).
    private let backwardEvents: [(event: StepGraph.Event, op: Int)]
    /// For each of them, a backward op's time on the simulated clock (0 for other events).
    private let backwardEventSeconds: [Double]
    /// Per candidate: what each codec that saves bytes on it packs (``Packing``), with the bytes
    /// that frees between the forward and the backward and the codec's seconds.
    private let packings: [[CodecOption]]
    struct CodecOption {
        var codec: Codec
        var packs: [Packing]
        var bytes: Int
        var seconds: Double
    }
    /// Per candidate: the tensors offloading it spills (``SpillItem``; empty when it cannot be
    /// offloaded or the graph has no spill rates).
    private let spillItems: [[SpillItem]]
    /// What the saved tensors of one offloaded candidate put on the spill store: one file per
    /// tensor, written from when its first slot saves it (`saver`, a forward op), read back for
    /// the first backward op that unpacks it (`firstBackwardOp`, its rank in the backward).
    struct SpillItem: Sendable, Hashable {
        var tensor: Int
        var saver: Int
        var firstBackwardOp: Int
        var bytes: Int
    }
    /// Simulated seconds per captured second: the step time over the sum of the ops' forward and
    /// backward times (what runs between ops is spread over them).
    private let clockScale: Double
    /// Per tensor: its bytes and whether a slot saves it; per op: its region (-1: none) and
    /// forward seconds (flat copies of the graph's, read on every event).
    private let tensorBytes: [Int]
    private let tensorSaved: [Bool]
    /// Per tensor: alive when the step starts.
    private let preexisting: [Bool]
    private let opRegion: [Int]
    private let opSeconds: [Double]
    /// The least-peak plan for each set of choices searched so far (``Planner``'s floor).
    private let leastPeakCache = Mutex<[[[SavedTensorAction]]: PlanActions]>([:])
    private let categories = MemoryCategory.allCases
    private let categoryIndex: [MemoryCategory: Int]
    private let tensorCategory: [Int]

    /// One packed form a codec makes of a candidate's tensor: allocated when its first slot saves
    /// (`saver`, a forward op), decoded into `rawBytes` of new storage when backward first needs
    /// it (`firstBackwardOp`), both freed when the unplanned step frees the tensor. `freesRaw`: every
    /// slot holding the tensor is packed, so the tensor itself dies after its last forward use.
    struct Packing: Sendable, Hashable {
        var tensor: Int
        var saver: Int
        var firstBackwardOp: Int
        var packedBytes: Int
        var rawBytes: Int
        var freesRaw: Bool
        var encodeSeconds: Double
        var decodeSeconds: Double
    }

    public struct Prediction: Sendable, Hashable {
        public var peakBytes: Int
        /// Peak by category: parameters, gradients, optimizer state exactly; the rest as activations.
        public var peakByCategory: [MemoryCategory: Int]
        public var stepSeconds: Double
        public var recomputeSeconds: Double
        /// Ops run by recomputes, per region.
        public var recomputedOps: Int
        /// Where the peak happens: `forward of OP`, `backward of OP`, or `recompute of BLOCK (for the backward of OP)`.
        public var peakLocation: String
        /// Seconds the codecs take (encode in the forward, decode in the backward).
        public var codecSeconds: Double = 0
        /// Offload: seconds the step waits for the spill store (a save for the write before it,
        /// backward for reads), and seconds its I/O thread works beside compute (of which
        /// ``ActionCosts/SpillRate/interference`` is charged to the step).
        public var offloadStallSeconds: Double = 0
        public var offloadIOSeconds: Double = 0
        /// What the offloads add to ``stepSeconds``: the stalls and the interference share of the
        /// I/O done beside compute.
        public var offloadSeconds: Double = 0
    }

    public init(_ graph: StepGraph) {
        self.graph = graph
        candidates = graph.candidates
        candidateIndexOfOp = Dictionary(uniqueKeysWithValues: candidates.enumerated().map { ($0.element.op, $0.offset) })
        opIndex = Dictionary(uniqueKeysWithValues: graph.ops.enumerated().map { ($0.element.name, $0.offset) })
        var regionOps = [[Int]](repeating: [], count: graph.regions.count)
        for (i, op) in graph.ops.enumerated() { if let r = op.region { regionOps[r].append(i) } }
        self.regionOps = regionOps
        // Region windows, each allocation attributed to the next op recorded (an op allocates
        // before it records itself).
        var windows = [[(event: StepGraph.Event, op: Int?)]](repeating: [], count: graph.regions.count)
        var current: Int? = nil
        var pending: [StepGraph.Event] = []
        func flush(_ op: Int?) {
            if let r = current { for e in pending { windows[r].append((e, op)) } }
            pending.removeAll()
        }
        for ev in graph.droppedForward {
            switch ev {
            case .regionStart(let r): current = r
            case .regionEnd: flush(nil); current = nil
            case .forwardOp(let i): flush(i)
            case .allocate, .free: pending.append(ev)
            case .backwardOp: break
            }
        }
        regionWindows = windows
        backwardStart = graph.backwardStartIndex
        let opIndex = self.opIndex
        regionInputs = graph.ops.map { op in
            guard let r = op.region else { return nil }
            return op.inputs.compactMap { n in opIndex[n].flatMap { graph.ops[$0].region == r ? $0 : nil } }
        }
        var saverOps = [[Int]](repeating: [], count: graph.tensors.count)
        for s in graph.slots { if let o = opIndex[s.saver] { saverOps[s.tensor].append(o) } }
        self.saverOps = saverOps
        backwardEvents = graph.keptSequence[graph.backwardStartIndex...].map { ev in
            if case .backwardOp(let n) = ev { return (ev, opIndex[n] ?? -1) }
            return (ev, -1)
        }
        // What packing and spilling a candidate's tensors depends on: the slots holding each
        // tensor, and each op's first position in the backward.
        var backwardRank: [Int: Int] = [:]
        for (k, n) in graph.backwardOrder.enumerated() { if let o = opIndex[n], backwardRank[o] == nil { backwardRank[o] = k } }
        var slotsOfTensor: [Int: [StepGraph.Slot]] = [:]
        for s in graph.slots { slotsOfTensor[s.tensor, default: []].append(s) }
        packings = Self.packings(graph, candidates, opIndex: opIndex, backwardRank: backwardRank, slotsOfTensor: slotsOfTensor)
        spillItems = Self.spillItems(graph, candidates, opIndex: opIndex, backwardRank: backwardRank, slotsOfTensor: slotsOfTensor)
        tensorBytes = graph.tensors.map(\.bytes)
        tensorSaved = graph.tensors.map { !$0.savedBy.isEmpty }
        preexisting = graph.tensors.map(\.preexisting)
        opRegion = graph.ops.map { $0.region ?? -1 }
        opSeconds = graph.ops.map(\.seconds)
        let captured = graph.ops.reduce(0.0) { $0 + $1.seconds } + graph.backwardSeconds.values.reduce(0.0, +)
        let scale = captured > 0 && graph.stepSeconds > 0 ? graph.stepSeconds / captured : 1
        clockScale = scale
        backwardEventSeconds = backwardEvents.map { e in
            if case .backwardOp(let n) = e.event { return (graph.backwardSeconds[n] ?? 0) * scale }
            return 0
        }
        let categoryIndex = Dictionary(uniqueKeysWithValues: MemoryCategory.allCases.enumerated().map { ($0.element, $0.offset) })
        self.categoryIndex = categoryIndex
        tensorCategory = graph.tensors.map { categoryIndex[$0.category]! }
    }

    /// What each codec packs of each candidate, as ``CompressionSession`` packs: slots in forward
    /// order; one packed form per tensor and view (offset and shape), and a view saved after a slot that covers
    /// the whole tensor shares that slot's form. Codecs that save no bytes on a candidate, and
    /// every codec when the graph has no measured costs, are left out.
    private static func packings(_ graph: StepGraph, _ candidates: [StepGraph.Candidate], opIndex: [String: Int],
                                 backwardRank: [Int: Int], slotsOfTensor: [Int: [StepGraph.Slot]]) -> [[CodecOption]] {
        guard let costs = graph.actionCosts else { return candidates.map { _ in [] } }
        let kinds = graph.ops.map(\.kind)
        let codecs = Codec.all.filter { $0 != .none }
        return candidates.map { cand in
            var options: [CodecOption] = []
            for codec in codecs {
                var packs: [Packing] = []
                var ok = true
                for t in cand.tensors {
                    let slots = (slotsOfTensor[t] ?? []).sorted { (opIndex[$0.saver] ?? 0, $0.name) < (opIndex[$1.saver] ?? 0, $1.name) }
                    let packed = slots.filter { graph.codec(codec, packs: $0, saverKind: opIndex[$0.saver].map { kinds[$0] } ?? "") }
                    guard !packed.isEmpty else { continue }
                    let freesRaw = packed.count == slots.count
                    var byLayout: [[Int]: Int] = [:]   // offset and shape → index in packs
                    var whole: Int? = nil
                    let bytes = graph.tensors[t].bytes
                    for sl in packed {
                        guard let saver = opIndex[sl.saver], let firstBack = backwardRank[saver] else { ok = false; break }
                        let n = sl.shape.reduce(1, *)
                        if let w = whole ?? byLayout[[sl.offset] + sl.shape] {
                            packs[w].firstBackwardOp = Swift.min(packs[w].firstBackwardOp, firstBack)
                            continue
                        }
                        guard let (enc, dec) = costs.seconds(codec, bytes: 4 * n) else { ok = false; break }
                        packs.append(Packing(tensor: t, saver: saver, firstBackwardOp: firstBack,
                                             packedBytes: codec.packedByteCount(shape: sl.shape), rawBytes: 4 * n,
                                             freesRaw: freesRaw, encodeSeconds: enc, decodeSeconds: dec))
                        byLayout[[sl.offset] + sl.shape] = packs.count - 1
                        if 4 * n == bytes && sl.offset == 0 { whole = packs.count - 1 }
                    }
                    if !ok { break }
                }
                guard ok, !packs.isEmpty else { continue }
                // Bytes no longer held between the forward and the backward.
                var saved = 0
                for t in Set(packs.map(\.tensor)) where packs.first(where: { $0.tensor == t })!.freesRaw { saved += graph.tensors[t].bytes }
                saved -= packs.reduce(0) { $0 + $1.packedBytes }
                if saved > 0 {
                    options.append(CodecOption(codec: codec, packs: packs, bytes: saved,
                                               seconds: packs.reduce(0.0) { $0 + $1.encodeSeconds + $1.decodeSeconds }))
                }
            }
            return options
        }
    }

    /// What offloading each candidate spills, as ``ActivationOffload`` does: each tensor of at
    /// least the store's minimum whose slots all save it whole (one file shared by every slot;
    /// a tensor saved as views of other shapes or offsets is kept), written from its first saver
    /// and read for its first backward use.
    private static func spillItems(_ graph: StepGraph, _ candidates: [StepGraph.Candidate], opIndex: [String: Int],
                                   backwardRank: [Int: Int], slotsOfTensor: [Int: [StepGraph.Slot]]) -> [[SpillItem]] {
        guard let spill = graph.actionCosts?.spill else { return candidates.map { _ in [] } }
        return candidates.map { cand in
            cand.tensors.compactMap { t -> SpillItem? in
                let bytes = graph.tensors[t].bytes
                guard bytes >= spill.minimum_bytes, let slots = slotsOfTensor[t], let first = slots.first else { return nil }
                let whole = slots.allSatisfy { s in
                    !s.role.isEmpty && s.offset == 0 && s.shape == first.shape && s.dtype == first.dtype
                        && s.shape.reduce(1, *) * s.dtype.byteSize == bytes
                }
                let savers = slots.compactMap { opIndex[$0.saver] }
                guard whole, savers.count == slots.count, let saver = savers.min(),
                      let back = savers.compactMap({ backwardRank[$0] }).min() else { return nil }
                return SpillItem(tensor: t, saver: saver, firstBackwardOp: back, bytes: bytes)
            }
        }
    }

    /// Whether candidate `c` can be offloaded (spill rates measured, a tensor large enough saved whole).
    public func canOffload(_ c: Int) -> Bool { !spillItems[c].isEmpty }

    /// Bytes offloading candidate `c` takes out of memory between the forward and the backward,
    /// and an estimate of its seconds (the step's share of the I/O time, and a file's latency
    /// each way); the simulation of a plan gives the real stalls.
    public func offloadEffect(_ c: Int) -> (bytes: Int, seconds: Double) {
        guard let spill = graph.actionCosts?.spill, !spillItems[c].isEmpty else { return (0, 0) }
        let bytes = spillItems[c].reduce(0) { $0 + $1.bytes }
        let io = spillItems[c].reduce(0.0) { $0 + spill.writeSeconds($1.bytes) + spill.readSeconds($1.bytes) }
        return (bytes, spill.interference * io + 2 * spill.latency_seconds)
    }

    /// The slots (stable names) offloading candidate `c` spills.
    public func offloadedSlots(_ c: Int) -> [String] {
        let tensors = Set(spillItems[c].map(\.tensor))
        return graph.slots.filter { tensors.contains($0.tensor) }.map(\.name)
    }

    /// The least-peak actions for `choices`: `search()` the first time, remembered after.
    func leastPeakActions(_ choices: [[SavedTensorAction]], search: () -> PlanActions) -> PlanActions {
        if let a = leastPeakCache.withLock({ $0[choices] }) { return a }
        let a = search()
        leastPeakCache.withLock { $0[choices] = a }
        return a
    }

    /// The peak predicted for a mix the simulator refuses (1 EiB: above every budget).
    public static let refusedPeak = MemoryBudget.maximumBytes

    /// The codecs that save bytes on candidate `c` (measured costs, applicable to its slots).
    public func codecs(for c: Int) -> [Codec] { packings[c].map(\.codec) }

    /// Bytes compressing candidate `c` with `codec` frees between the forward and the backward
    /// (its tensors less their packed forms; 0 when the codec does not apply), and the codec's
    /// seconds (encode and decode).
    public func compressionEffect(_ c: Int, _ codec: Codec) -> (bytes: Int, seconds: Double) {
        guard let o = packings[c].first(where: { $0.codec == codec }) else { return (0, 0) }
        return (o.bytes, o.seconds)
    }

    /// Plan as op names → candidate set (unknown names are an error).
    public func recomputeSet(_ names: Set<String>) throws -> Set<Int> {
        var set = Set<Int>()
        var unknown: [String] = []
        let byName = Dictionary(uniqueKeysWithValues: candidates.enumerated().map { ($0.element.name, $0.offset) })
        for n in names.sorted() {
            if let c = byName[n] { set.insert(c) } else { unknown.append(n) }
        }
        if !unknown.isEmpty { throw PlanningError.unknownNames(plan: "for \(graph.model) \(graph.inputShape)", names: unknown) }
        return set
    }

    /// A plan's actions on this graph; unknown op names, and compressions whose codec does not
    /// pack the slots named, are an error.
    public func actions(of plan: MemoryPlan) throws -> PlanActions {
        var actions = PlanActions(recompute: try recomputeSet(Set(plan.recompute)))
        let byName = Dictionary(uniqueKeysWithValues: candidates.enumerated().map { ($0.element.name, $0.offset) })
        var unknown: [String] = []
        for p in plan.compress {
            guard let c = byName[p.op] else { unknown.append(p.op); continue }
            guard let codec = try? Codec.parse(p.codec), codecs(for: c).contains(codec) else {
                throw PlanningError.stalePlan(expected: "\(p.codec) applicable to \(p.op)'s saved tensors", found: "it does not pack them here")
            }
            guard actions[c] == .keep else {
                throw PlanningError.stalePlan(expected: "one action per op", found: "\(p.op) both recomputed and compressed")
            }
            actions[c] = .compress(codec)
        }
        for p in plan.offload {
            guard let c = byName[p.op] else { unknown.append(p.op); continue }
            guard canOffload(c), Set(offloadedSlots(c)) == Set(p.slots) else {
                throw PlanningError.stalePlan(expected: "\(p.op)'s saved tensors offloadable as \(p.slots.sorted().joined(separator: ", "))",
                                              found: canOffload(c) ? "slots \(offloadedSlots(c).sorted().joined(separator: ", "))" : "they cannot be offloaded here")
            }
            guard actions[c] == .keep else {
                throw PlanningError.stalePlan(expected: "one action per op", found: "\(p.op) offloaded and \(actions[c])")
            }
            actions[c] = .offload
        }
        if !unknown.isEmpty { throw PlanningError.unknownNames(plan: "for \(graph.model) \(graph.inputShape)", names: unknown) }
        return actions
    }

    /// The slots (stable names) `codec` packs of candidate `c`'s tensors.
    public func packedSlots(_ c: Int, _ codec: Codec) -> [String] {
        let tensors = Set(candidates[c].tensors)
        return graph.slots.filter { tensors.contains($0.tensor) && graph.codec(codec, packs: $0, saverKind: opIndex[$0.saver].map { graph.ops[$0].kind } ?? "") }.map(\.name)
    }

    /// The prediction for recomputing the candidates in `plan` (indices into ``candidates``).
    public func simulate(_ plan: Set<Int>) -> Prediction { simulate(PlanActions(recompute: plan), recordingPeak: nil) }

    /// The prediction for `actions`.
    public func simulate(_ actions: PlanActions) -> Prediction { simulate(actions, recordingPeak: nil) }

    /// The tensors the step allocated that are alive at the predicted peak under `plan` (largest
    /// first), besides what was alive before the step: what a budget would have to drop.
    public func tensorsAtPeak(_ plan: Set<Int>) -> [StepGraph.TensorInfo] { tensorsAtPeak(PlanActions(recompute: plan)) }

    /// The tensors the step allocated that are alive (unpacked) at the predicted peak under `actions`.
    public func tensorsAtPeak(_ actions: PlanActions) -> [StepGraph.TensorInfo] {
        let box = PeakRecorder()
        _ = simulate(actions, recordingPeak: box)
        return box.alive.enumerated().filter { $0.element && !graph.tensors[$0.offset].preexisting }
            .map { graph.tensors[$0.offset] }.sorted { ($0.bytes, $1.id) > ($1.bytes, $0.id) }
    }

    private final class PeakRecorder { var alive: [Bool] = [] }

    private func simulate(_ actions: PlanActions, recordingPeak recorder: PeakRecorder?) -> Prediction {
        let plan = actions.recompute
        let tensorCount = tensorBytes.count
        // Packed forms: by the forward op that makes them, the backward op that first decodes
        // them, and the tensor whose free frees them.
        var packsBySaver: [Int: [Int]] = [:], packsByBackwardOp: [Int: [Int]] = [:], packsOfTensor: [Int: [Int]] = [:]
        var allPacks: [Packing] = []
        var packedRaw = [Bool](repeating: false, count: tensorCount)   // freed after the forward: every slot packs it
        var codecSeconds = 0.0
        for (c, action) in actions.byCandidate {
            guard case .compress(let codec) = action, let packs = packings[c].first(where: { $0.codec == codec })?.packs else { continue }
            for p in packs {
                let k = allPacks.count
                allPacks.append(p)
                packsBySaver[p.saver, default: []].append(k)
                packsByBackwardOp[p.firstBackwardOp, default: []].append(k)
                packsOfTensor[p.tensor, default: []].append(k)
                if p.freesRaw { packedRaw[p.tensor] = true }
                codecSeconds += p.encodeSeconds + p.decodeSeconds
            }
        }
        // Offloaded tensors: one file each, in the order backward first asks for them (the
        // store's read-ahead follows the previous step's order: this one's).
        var items: [SpillItem] = []
        for (c, action) in actions.byCandidate where action == .offload { items += spillItems[c] }
        let offloading = !items.isEmpty
        items.sort { ($0.firstBackwardOp, $0.tensor) < ($1.firstBackwardOp, $1.tensor) }
        var itemOfTensor = [Int](repeating: -1, count: offloading ? tensorCount : 0)
        var itemsBySaver: [Int: [Int]] = [:], itemsByBackwardOp: [Int: [Int]] = [:]
        for (k, it) in items.enumerated() {
            itemOfTensor[it.tensor] = k
            itemsBySaver[it.saver, default: []].append(k)
            itemsByBackwardOp[it.firstBackwardOp, default: []].append(k)
        }
        var recomputeTensor = [Bool](repeating: false, count: tensorCount)
        var planOps = Set<Int>()
        var regionHasPlan = [Bool](repeating: false, count: graph.regions.count)
        for c in plan {
            let cand = candidates[c]
            planOps.insert(cand.op)
            regionHasPlan[cand.region] = true
            for t in cand.tensors { recomputeTensor[t] = true }
        }
        // A recompute never re-runs an offloaded op: the executor frees what it makes around an
        // offloaded input in an order the captured window does not record, so such a mix is not
        // predictable to the byte and is refused (a peak no budget admits).
        if offloading {
            var offloadedTensor = [Bool](repeating: false, count: tensorCount)
            for it in items { offloadedTensor[it.tensor] = true }
            let offloadedOps = Set(actions.offload.map { candidates[$0].op })
            for r in regionHasPlan.indices where regionHasPlan[r] && actions.offload.contains(where: { candidates[$0].region == r }) {
                let path = recomputeOps(region: r, targets: Set(regionOps[r].filter { planOps.contains($0) }),
                                        isAlive: { self.tensorSaved[$0] && !recomputeTensor[$0] && !offloadedTensor[$0] })
                if !path.isDisjoint(with: offloadedOps) {
                    return Prediction(peakBytes: Self.refusedPeak, peakByCategory: [:], stepSeconds: .infinity, recomputeSeconds: 0,
                                      recomputedOps: 0, peakLocation: "a recompute of \(graph.regions[r]) would re-run an offloaded op")
                }
            }
        }
        // Live bytes in total and by category (indexed: a dictionary here would hash on every
        // event), where we are, and the peak.
        var m = MemoryState(alive: preexisting, live: graph.baselineBytes, cat: categories.map { graph.baselineByCategory[$0] ?? 0 },
                            tensorBytes: tensorBytes, tensorCategory: tensorCategory, activations: categoryIndex[.activations]!,
                            recording: recorder != nil)
        // Packed forms and their decoded copies (activations while alive).
        var packAlive = [Bool](repeating: false, count: allPacks.count)
        var decoded = [Bool](repeating: false, count: allPacks.count)
        // The spill store's I/O thread on the simulated clock (only when the plan offloads).
        var io = SpillClock(items: items, rate: graph.actionCosts?.spill)
        // Forward.
        for (k, ev) in graph.droppedForward.enumerated() {
            m.position.forwardEvent = k
            switch ev {
            case .allocate(let t): m.allocate(t)
            case .free(let t):
                if offloading, itemOfTensor[t] >= 0 {
                    // The forward lets go: the tensor leaves memory once its file is written.
                    io.forwardReleased(itemOfTensor[t])
                    Self.drain(&io, &m, items)
                    continue
                }
                // A candidate the plan keeps stays in its slot (unless every slot holds it packed).
                if tensorSaved[t] && !recomputeTensor[t] && !packedRaw[t] { continue }
                m.free(t)
            case .forwardOp(let i):
                if !allPacks.isEmpty { for k in packsBySaver[i] ?? [] { packAlive[k] = true; m.addBytes(allPacks[k].packedBytes) } }
                if offloading {
                    io.advance(by: opSeconds[i] * clockScale + (packsBySaver[i] ?? []).reduce(0.0) { $0 + allPacks[$1].encodeSeconds })
                    Self.drain(&io, &m, items)
                    for k in itemsBySaver[i] ?? [] { io.write(k); Self.drain(&io, &m, items) }
                }
            default: break
            }
        }
        // Triggers: the first backward op holding a dropped tensor of each region.
        var triggered = [Bool](repeating: false, count: graph.regions.count)
        var holds = [Bool](repeating: false, count: graph.ops.count)
        for c in plan {
            for t in candidates[c].tensors { for o in saverOps[t] { holds[o] = true } }
        }
        var recomputeSeconds = 0.0
        var recomputedOps = 0
        var backwardRank = -1
        var scratch = RecomputeScratch(ops: plan.isEmpty ? 0 : opRegion.count, tensors: plan.isEmpty ? 0 : tensorCount)
        var opSeconds = 0.0   // the running backward op's time, on the simulated clock
        for (eventIndex, (ev, op)) in backwardEvents.enumerated() {
            switch ev {
            case .backwardOp:
                m.position.backwardOp = op
                if offloading { io.advance(by: opSeconds); Self.drain(&io, &m, items) }
                if offloading { opSeconds = backwardEventSeconds[eventIndex] }
                // Unpacked when the op's backward starts (by its rank among the backward nodes).
                backwardRank += 1
                for k in allPacks.isEmpty ? [] : packsByBackwardOp[backwardRank] ?? [] where !decoded[k] {
                    decoded[k] = true
                    m.addBytes(allPacks[k].rawBytes)
                    opSeconds += allPacks[k].decodeSeconds
                }
                if op >= 0, holds[op], case let r = opRegion[op], r >= 0, regionHasPlan[r], !triggered[r] {
                    triggered[r] = true
                    m.position.recomputing = r
                    let (s, n) = recompute(region: r, planOps: planOps, recomputeTensor: recomputeTensor,
                                           aliveNow: m.alive, scratch: &scratch, memory: &m)
                    m.position.recomputing = -1
                    recomputeSeconds += s
                    recomputedOps += n
                    opSeconds += s
                }
                if offloading { for k in itemsByBackwardOp[backwardRank] ?? [] { io.load(k); Self.drain(&io, &m, items) } }
            case .allocate(let t): m.allocate(t)
            case .free(let t):
                if offloading, itemOfTensor[t] >= 0 { io.released(itemOfTensor[t]) }
                // The unplanned step frees the tensor here: its packed forms and decoded copies go.
                for k in allPacks.isEmpty ? [] : packsOfTensor[t] ?? [] where packAlive[k] || decoded[k] {
                    m.removeBytes((packAlive[k] ? allPacks[k].packedBytes : 0) + (decoded[k] ? allPacks[k].rawBytes : 0))
                    packAlive[k] = false
                    decoded[k] = false
                }
                m.free(t)
            default: break
            }
        }
        var byCategory: [MemoryCategory: Int] = [:]
        recorder?.alive = m.peakAlive ?? []
        for (k, v) in m.peakCat.enumerated() where v != 0 { byCategory[categories[k]] = v }
        let offloadSeconds = io.stallSeconds + (graph.actionCosts?.spill?.interference ?? 0) * io.overlappedSeconds
        return Prediction(peakBytes: m.peak, peakByCategory: byCategory,
                          stepSeconds: graph.stepSeconds + recomputeSeconds + codecSeconds + offloadSeconds,
                          recomputeSeconds: recomputeSeconds, recomputedOps: recomputedOps,
                          peakLocation: describe(m.peakPosition), codecSeconds: codecSeconds,
                          offloadStallSeconds: io.stallSeconds, offloadIOSeconds: io.overlappedSeconds, offloadSeconds: offloadSeconds)
    }

    private func describe(_ p: (forwardEvent: Int, backwardOp: Int, recomputing: Int)) -> String {
        let ops = graph.ops
        if p.backwardOp >= 0 {
            let name = ops[p.backwardOp].name
            return p.recomputing >= 0 ? "recompute of \(graph.regions[p.recomputing]) (for the backward of \(name))" : "backward of \(name)"
        }
        // An op allocates before it records itself: the peak belongs to the next op recorded.
        for ev in graph.droppedForward[p.forwardEvent...] { if case .forwardOp(let i) = ev { return "forward of \(ops[i].name)" } }
        return "end of the forward"
    }

    /// The simulated memory: tensors alive, live bytes in total and by category, where the step is
    /// (forward event; backward op; block recomputing) and the peak with where it was.
    struct MemoryState {
        var alive: [Bool]
        var live: Int
        var peak: Int
        var cat: [Int]
        var peakCat: [Int]
        var position = (forwardEvent: 0, backwardOp: -1, recomputing: -1)
        var peakPosition = (forwardEvent: 0, backwardOp: -1, recomputing: -1)
        /// The tensors alive at the peak, when recording.
        var peakAlive: [Bool]? = nil
        let tensorBytes: [Int]
        let tensorCategory: [Int]
        let activations: Int
        let recording: Bool

        init(alive: [Bool], live: Int, cat: [Int], tensorBytes: [Int], tensorCategory: [Int], activations: Int, recording: Bool) {
            self.alive = alive
            self.live = live
            peak = live
            self.cat = cat
            peakCat = cat
            self.tensorBytes = tensorBytes
            self.tensorCategory = tensorCategory
            self.activations = activations
            self.recording = recording
            if recording { peakAlive = alive }
        }

        mutating func notePeak() {
            guard live > peak else { return }
            peak = live; peakCat = cat; peakPosition = position
            if recording { peakAlive = alive }
        }
        mutating func allocate(_ t: Int) {
            guard !alive[t] else { return }
            alive[t] = true
            live += tensorBytes[t]
            cat[tensorCategory[t]] += tensorBytes[t]
            notePeak()
        }
        mutating func free(_ t: Int) {
            guard alive[t] else { return }
            alive[t] = false
            live -= tensorBytes[t]
            cat[tensorCategory[t]] -= tensorBytes[t]
        }
        /// Bytes that are no tensor of the graph (packed forms, decoded copies, a recompute's
        /// copy of a tensor still alive): activations.
        mutating func addBytes(_ bytes: Int) {
            live += bytes
            cat[activations] += bytes
            notePeak()
        }
        mutating func removeBytes(_ bytes: Int) {
            live -= bytes
            cat[activations] -= bytes
        }
    }

    /// What the I/O thread did to memory, in order: tensors gone to their files, read buffers.
    private static func drain(_ io: inout SpillClock, _ m: inout MemoryState, _ items: [SpillItem]) {
        for e in io.effects { if e.frees { m.free(items[e.item].tensor) } else { m.allocate(items[e.item].tensor) } }
        io.effects.removeAll(keepingCapacity: true)
    }

    /// Marks a recompute reuses within one simulation (cleared after each use): ops on the path,
    /// tensors it made, tensors it copied.
    struct RecomputeScratch {
        var runs: [Bool]
        var made: [Bool]
        var madeList: [Int] = []
        var copied: [Bool]
        var copiedList: [Int] = []
        init(ops: Int, tensors: Int) {
            runs = [Bool](repeating: false, count: ops)
            made = [Bool](repeating: false, count: tensors)
            copied = made
        }
    }

    private func recompute(region r: Int, planOps: Set<Int>, recomputeTensor: [Bool], aliveNow: [Bool], scratch: inout RecomputeScratch,
                           memory m: inout MemoryState) -> (Double, Int) {
        let targets = Set(regionOps[r].filter { planOps.contains($0) })
        let runIndices = recomputeOps(region: r, targets: targets, isAlive: { aliveNow[$0] })
        for o in runIndices { scratch.runs[o] = true }
        // An op that runs makes all its tensors anew: one the plan keeps (an internal tensor of an
        // op on the recompute path) is alive already, and the recompute's copy is extra bytes
        // until it dies.
        for (ev, op) in regionWindows[r] {
            switch ev {
            case .allocate(let t):
                guard let op, scratch.runs[op] else { continue }
                if aliveNow[t] {
                    if !scratch.copied[t] {
                        scratch.copied[t] = true
                        scratch.copiedList.append(t)
                        m.addBytes(tensorBytes[t])
                    }
                    continue
                }
                m.allocate(t)
                if !scratch.made[t] { scratch.made[t] = true; scratch.madeList.append(t) }
            case .free(let t):
                if scratch.copied[t] {
                    scratch.copied[t] = false
                    m.removeBytes(tensorBytes[t])
                }
                if scratch.made[t] && !recomputeTensor[t] { m.free(t) }
            default: break
            }
        }
        for t in scratch.copiedList where scratch.copied[t] { scratch.copied[t] = false; m.removeBytes(tensorBytes[t]) }
        for t in scratch.madeList {
            scratch.made[t] = false
            if !recomputeTensor[t] { m.free(t) }   // dropped when the recompute ends
        }
        scratch.copiedList.removeAll(keepingCapacity: true)
        scratch.madeList.removeAll(keepingCapacity: true)
        for o in runIndices { scratch.runs[o] = false }
        return (seconds(of: runIndices), runIndices.count)
    }
    /// The ops (indices) a recompute of `targets` in region `r` runs; `isAlive(t)` tells whether
    /// tensor `t` is at hand (outputs the step did not allocate always are).
    private func recomputeOps(region r: Int, targets: Set<Int>, isAlive: (Int) -> Bool) -> Set<Int> {
        let ops = graph.ops
        return RematCheckpoint.recomputePath(
            targets: targets,
            inputs: { i in self.regionInputs[i] },
            isAlive: { i in
                guard let t = ops[i].outputTensor else { return true }
                return isAlive(t)
            })
    }

    private func seconds(of ops: Set<Int>) -> Double { ops.reduce(0.0) { $0 + opSeconds[$1] } }

    /// The ops (indices, in forward order) recomputing candidate `c` alone runs: its op and every
    /// op it needs whose output no slot keeps.
    public func recomputePath(of c: Int) -> [Int] {
        let cand = candidates[c]
        return recomputeOps(region: cand.region, targets: [cand.op], isAlive: { self.tensorSaved[$0] }).sorted()
    }

    /// Own recompute cost of each candidate alone (its op and the ops it needs that nothing keeps).
    public func standaloneCost(_ c: Int) -> Double { marginalCost(c, given: []) }

    /// Recompute cost of adding candidate `c` to `plan`, with the path as the executor would take it
    /// (ancestors already recomputed are not paid twice; a dropped ancestor is paid). Before the
    /// backward, a tensor is at hand when a slot keeps it.
    public func marginalCost(_ c: Int, given plan: Set<Int>) -> Double {
        let cand = candidates[c]
        let planOps = Set(plan.filter { candidates[$0].region == cand.region }.map { candidates[$0].op })
        func cost(_ targets: Set<Int>) -> Double {
            seconds(of: recomputeOps(region: cand.region, targets: targets, isAlive: { self.tensorSaved[$0] }))
        }
        return cost(planOps.union([cand.op])) - (planOps.isEmpty ? 0 : cost(planOps))
    }
}

/// A predictable spill store (``SpillStore/predictable``, what plans run with) on the simulator's
/// clock. Memory follows the store's save points exactly: a save first waits for every write
/// still running, then lets go of the tensors written (each leaves memory there, or when the
/// forward lets go of it if later) and queues its own write; backward's asks do the same after
/// taking the tensor asked for from memory if it is still there; a read's buffer is allocated when
/// the read is queued — first in line when backward asks for a file not read yet, and after each
/// ask the next ``ActionCosts/SpillRate/read_ahead`` files in backward's order while the
/// read-ahead bytes are under ``ActionCosts/SpillRate/max_bytes_in_flight``.
/// Time: the I/O thread does ``ActionCosts/SpillRate/overlap`` I/O seconds per second of compute
/// beside it (it runs below the compute threads) and full speed while the step waits for it; the
/// waits are `stallSeconds`, the I/O done beside compute `overlappedSeconds`.
struct SpillClock {
    enum State { case pending, queuedWrite, writing, onDisk, queuedRead, reading, loaded, released }
    let items: [PlanSimulator.SpillItem]
    let rate: ActionCosts.SpillRate?
    /// What happened to memory since the simulator last looked, in order: item `item`'s tensor
    /// left memory (`frees`) or a read buffer for it was allocated.
    var effects: [(frees: Bool, item: Int)] = []
    var state: [State]
    var forwardDone: [Bool]
    /// Written, and still held by the store until the next save point.
    var retained: [Bool]
    /// The store let go of it (its tensor leaves memory once the forward has too).
    var storeReleased: [Bool]
    var inReadAhead: [Bool]
    var queue: [Int] = []
    var current: Int? = nil
    var currentIsWrite = false
    /// I/O seconds left of the current job.
    var remaining = 0.0
    var backlog = 0
    var readAheadBytes = 0
    var stallSeconds = 0.0
    var overlappedSeconds = 0.0

    init(items: [PlanSimulator.SpillItem], rate: ActionCosts.SpillRate?) {
        self.items = items
        self.rate = rate
        state = [State](repeating: .pending, count: items.count)
        forwardDone = [Bool](repeating: false, count: items.count)
        retained = forwardDone
        storeReleased = forwardDone
        inReadAhead = forwardDone
    }

    /// Compute runs `seconds`; the I/O thread gets its share of them.
    mutating func advance(by seconds: Double) {
        var budget = seconds * (rate?.overlap ?? 0)
        while current != nil, budget > 0 {
            let used = Swift.min(budget, remaining)
            budget -= used
            overlappedSeconds += used
            remaining -= used
            if remaining <= 0 { finishCurrent() }
        }
    }

    /// The step waits until `done()` holds or the I/O thread is idle; meanwhile it runs at full speed.
    private mutating func wait(until done: (SpillClock) -> Bool) {
        while !done(self), current != nil {
            stallSeconds += remaining
            remaining = 0
            finishCurrent()
        }
    }

    private mutating func finishCurrent() {
        guard let k = current else { return }
        current = nil
        switch state[k] {
        case .writing:
            state[k] = .onDisk
            retained[k] = true
        case .reading:
            state[k] = .loaded
        default: break   // taken from memory while its write ran
        }
        if currentIsWrite { backlog -= items[k].bytes }
        startNext()
    }

    private mutating func startNext() {
        while current == nil, !queue.isEmpty {
            let k = queue.removeFirst()
            guard let rate else { continue }
            switch state[k] {
            case .queuedWrite:
                state[k] = .writing
                currentIsWrite = true
                remaining = rate.writeSeconds(items[k].bytes)
            case .queuedRead:
                state[k] = .reading
                currentIsWrite = false
                remaining = rate.readSeconds(items[k].bytes)
            default: continue
            }
            current = k
        }
    }

    private mutating func enqueue(_ k: Int, first: Bool = false) {
        if first { queue.insert(k, at: 0) } else { queue.append(k) }
        if current == nil { startNext() }
    }

    /// Every write finishes; the store lets go of what was written.
    private mutating func savePoint() {
        wait { $0.backlog == 0 }
        for k in items.indices where retained[k] {
            retained[k] = false
            storeReleased[k] = true
            if forwardDone[k] { effects.append((true, k)) }
        }
    }

    /// Item k's saver has saved it: a save point, then its write joins the queue.
    mutating func write(_ k: Int) {
        savePoint()
        backlog += items[k].bytes
        state[k] = .queuedWrite
        enqueue(k)
    }

    /// The forward has let go of item k's tensor: gone from memory now if the store let go too.
    mutating func forwardReleased(_ k: Int) {
        forwardDone[k] = true
        if storeReleased[k] { effects.append((true, k)) }
    }

    private mutating func queueRead(_ k: Int, first: Bool) {
        state[k] = .queuedRead
        inReadAhead[k] = true
        readAheadBytes += items[k].bytes
        effects.append((false, k))
        enqueue(k, first: first)
    }

    /// Backward asks for item k (its first unpack); then the next files in order are read ahead.
    mutating func load(_ k: Int) {
        var taken = false
        switch state[k] {
        case .queuedWrite:
            backlog -= items[k].bytes   // dropped from the queue
            taken = true
        case .writing:
            taken = true                // the write finishes, to no use
        case .onDisk where retained[k]:
            retained[k] = false
            taken = true
        default: break
        }
        if taken { state[k] = .released }
        savePoint()
        if !taken {
            switch state[k] {
            case .onDisk:
                queueRead(k, first: true)
                wait { $0.state[k] == .loaded }
            case .queuedRead, .reading:
                wait { $0.state[k] == .loaded }
            default: break
            }
            state[k] = .released
        }
        if inReadAhead[k] {
            inReadAhead[k] = false
            readAheadBytes -= items[k].bytes
        }
        var queued = 0
        var j = k + 1
        while j < items.count, queued < (rate?.read_ahead ?? 0), readAheadBytes < (rate?.max_bytes_in_flight ?? 0) {
            if state[j] == .onDisk && !retained[j] {
                queueRead(j, first: false)
                queued += 1
            }
            j += 1
        }
    }

    /// The step frees item k's tensor (after its last backward use).
    mutating func released(_ k: Int) {
        if state[k] == .queuedWrite { backlog -= items[k].bytes }
        if inReadAhead[k] {
            inReadAhead[k] = false
            readAheadBytes -= items[k].bytes
        }
        state[k] = .released
    }
}
