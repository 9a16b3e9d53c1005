// Dynamic rematerialization (Kirisame et al., "Dynamic Tensor Rematerialization", ICLR 2021):
// a hard limit on the ledger's total, saved tensors evicted at run time by DTR's heuristic, and
// evicted tensors rebuilt on demand by the one recompute engine (a dynamic CheckpointRegion).

/// Keeps a step's memory under a hard limit by evicting saved tensors at run time and
/// recomputing them when backward needs them (DTR).
///
/// The forward runs as one region of the recompute engine in dynamic mode
/// (``forward(_:)``): every tensor its ops save stays in its slot. Whenever an allocation would
/// take the ledger's total over ``budgetBytes`` (``run(_:)`` sets the limit on the current
/// ledger), the evictor frees saved tensors, lowest score first, until the allocation fits.
/// The score is DTR's h = cost / (bytes × staleness), with cost the forward time of the op that
/// made the tensor plus that of the evicted ops around it — the paper's equivalence-class
/// refinement h_DTR^eq: evicted neighbours are merged into classes (union-find) whose costs
/// add up, and classes are not split again when a member is rebuilt, as in the paper. Staleness
/// is the time since the tensor was made or last read.
///
/// A tensor is evicted only when its slot's hold is the last reference to its storage: what an
/// op is computing or reading, what backward has unpacked, what the user's code still holds and
/// what a recompute is about to serve are pinned that way. Parameters, gradients, optimizer state
/// and temporaries are never evicted (they are not saved tensors of the forward). When backward
/// unpacks an evicted tensor, the region re-runs its forward with the forward's names and random
/// streams and runs only the ops on the recompute path (the evicted tensor's op and every
/// ancestor whose output is not at hand), rebuilding each evicted tensor of those ops that
/// backward still needs; so gradients are bitwise equal to keeping everything.
///
/// What cannot be freed still goes over the limit; the ledger counts it
/// (``MemoryLedger/overLimitAllocations``) and ``Trainer``'s dynamic step refuses the step
/// before the optimizer steps.
///
/// Dynamic regions hold what the op saved as it is: saved-tensor policies (codecs, offload)
/// and autocast's 2-byte packing do not apply inside one.
///
/// Ownership: used on the thread that runs the step; the ledger calls the evictor only there.
public final class DynamicRematerializer {
    /// The hard limit on the ledger's compute total during ``run(_:)``.
    public let budgetBytes: Int

    /// What the evictor did (cumulative; ``resetStatistics()`` starts afresh).
    public struct Statistics: Sendable, Hashable, Codable {
        /// Saved tensors (storages) evicted, and their bytes.
        public var evictions = 0
        public var evictedBytes = 0
        /// Recomputes run for backward, and the saved tensors they rebuilt.
        public var rematerializations = 0
        public var rebuiltTensors = 0
        /// Seconds spent in those recomputes.
        public var recomputeSeconds = 0.0
        /// Times the evictor ran out of candidates before the allocation fitted.
        public var shortfalls = 0
        /// Allocations that went over the budget (the ledger's count; a trainer's step refuses to
        /// update after one in forward or backward, so only the optimizer step's can remain).
        public var overLimitAllocations = 0
        public init() {}
    }
    public private(set) var statistics = Statistics()

    /// The allocation that missed the budget by the most since ``resetStatistics()``: what the
    /// evictor could not free, and what the memory was then.
    public struct Shortfall: Sendable, Hashable, Codable {
        /// Bytes the allocation still lacked after every candidate was tried.
        public var missingBytes: Int
        /// The ledger's live bytes by category then.
        public var breakdown: [String: Int]
        /// Saved activations live then: every one the evictor could drop was dropped, so these
        /// were pinned (an op or backward reading them, the caller holding them, a region's
        /// input, or a tensor made outside the dynamic region).
        public var pinnedActivationBytes: Int
    }
    public private(set) var worstShortfall: Shortfall? = nil

    /// What the evictor does to the ledger's timeline, for a profiler that must tell the step's
    /// own allocations from the evictor's (``StepCapture`` under a budget): the frees between
    /// `evictionBegins` and `evictionEnds` are evictions, the allocations and frees between
    /// `recomputeBegins` and `recomputeEnds` are a rematerialization's, and `rebuilt` says which
    /// storage a rebuilt tensor lives in now (storage ids). Intervals do not nest but an eviction
    /// may run inside a recompute.
    package enum TimelineEvent: Sendable {
        case evictionBegins, evictionEnds, recomputeBegins, recomputeEnds
        case rebuilt(originalStorage: Int, storage: Int)
    }
    /// Told of every ``TimelineEvent`` as it happens (on the step's thread).
    package var timelineObserver: ((TimelineEvent) -> Void)? = nil

    private struct WeakRegion {
        weak var region: CheckpointRegion?
    }
    private var regions: [WeakRegion] = []

    /// Ops whose saved tensors the forward drops as soon as nothing but their slot holds them,
    /// rebuilt when backward needs them as evicted ones are: a memory plan's recompute decisions
    /// (stable op names, ``MemoryBudgetPlanner``'s hybrid mode), run by this engine so the rest
    /// stays evictable under the limit. Not counted as evictions.
    ///
    /// In groups (a plan's blocks): the recompute that backward's first need of a group's tensor
    /// runs rebuilds every tensor of the group still needed, as a planned block's one replay does
    /// (the plan's simulation assumes it), instead of one recompute per tensor.
    public var plannedDrops: [[String]] = []

    public init(budgetBytes: Int) {
        precondition(budgetBytes > 0, "DynamicRematerializer: the budget must be positive, not \(budgetBytes) bytes")
        self.budgetBytes = budgetBytes
    }

    public func resetStatistics() {
        statistics = Statistics()
        worstShortfall = nil
    }

    /// Runs `body` (a forward made with ``forward(_:)``, its backward, the optimizer step) with
    /// the current ledger limited to ``budgetBytes``.
    public func run<R>(_ body: () throws -> R) rethrows -> R {
        let ledger = MemoryLedger.current
        return try ledger.withLimit(budgetBytes, relieve: { [unowned self] excess in relieve(excess) }) {
            defer { statistics.overLimitAllocations = ledger.overLimitAllocations }
            return try body()
        }
    }

    /// Runs `body` (a forward returning the loss) as a dynamic region: its saved tensors may be
    /// evicted under pressure and are rebuilt when backward needs them. `body` must be
    /// deterministic given the replayed random streams (as for ``checkpoint(_:options:_:)``).
    public func forward(options: CheckpointOptions = .init(), _ body: @escaping () -> Tensor) -> Tensor {
        guard isGradEnabled else { return body() }
        let region = CheckpointRegion(inputs: [], options: options, decisions: .dynamic, body: { _ in [body()] })
        region.dynamic = DynamicState(evictor: self, dropGroups: plannedDrops)
        regions.removeAll { $0.region == nil }
        regions.append(WeakRegion(region: region))
        let loss = region.run([])[0]
        region.dynamic?.dropPlanned()   // what the forward held to its end
        return loss
    }

    /// Frees at least `excess` bytes if it can: evicts candidates in increasing score order.
    private func relieve(_ excess: Int) {
        timelineObserver?(.evictionBegins)
        defer { timelineObserver?(.evictionEnds) }
        for r in regions { r.region?.dynamic?.dropPlanned() }   // the plan's drops first
        let now = monotonicSeconds()
        var candidates: [(score: Double, state: DynamicState, entry: Int)] = []
        for r in regions {
            guard let state = r.region?.dynamic else { continue }
            for (entry, score) in state.candidates(now: now) { candidates.append((score, state, entry)) }
        }
        candidates.sort { $0.score < $1.score }
        var freed = 0
        for c in candidates where freed < excess {
            let bytes = c.state.evict(c.entry)
            guard bytes > 0 else { continue }
            freed += bytes
            statistics.evictions += 1
            statistics.evictedBytes += bytes
        }
        if freed < excess {
            statistics.shortfalls += 1
            let missing = excess - freed
            if missing > (worstShortfall?.missingBytes ?? 0) {
                let breakdown = MemoryLedger.current.breakdown
                worstShortfall = Shortfall(missingBytes: missing, breakdown: Dictionary(uniqueKeysWithValues: breakdown.map { ($0.key.description, $0.value) }),
                                           pinnedActivationBytes: (breakdown[.activations] ?? 0))
            }
        }
    }

    fileprivate func observe(_ event: TimelineEvent) { timelineObserver?(event) }

    fileprivate func recomputed(tensors: Int, seconds: Double) {
        statistics.rematerializations += 1
        statistics.rebuiltTensors += tensors
        statistics.recomputeSeconds += seconds
    }
}

/// A dynamic region's evictable storages and the op graph DTR's score walks.
///
/// Ownership: the region's; used on the thread that runs its graph.
final class DynamicState {
    /// One storage the region's slots hold (several slots may hold views of it).
    private final class Entry {
        let owner: String
        let bytes: Int
        /// The storage the forward made (rebuilds live in others).
        let originalStorage: Int
        var hold: ReleasableHold?
        var pendingSlots = 0
        var lastAccess: Double
        init(owner: String, storage: Storage, now: Double) {
            self.owner = owner
            bytes = storage.byteCount
            originalStorage = storage.id
            hold = ReleasableHold(storage)
            lastAccess = now
        }
    }

    /// Held strongly (it holds the regions weakly): a graph may outlive the caller's reference.
    private let evictor: DynamicRematerializer
    private var entries: [Entry] = []
    private var entryOfStorage: [Int: Int] = [:]
    private var slotEntry: [Int] = []
    private var slotPending: [Bool] = []

    // The op graph in forward order (the region's op indices), with each op's forward time.
    private var opIndex: [String: Int] = [:]
    private var cost: [Double] = []
    private var neighbours: [[Int]] = []
    private var openOp: (name: String, start: Double)? = nil
    // Evicted ops and their equivalence classes (union-find; h_DTR^eq).
    private var evicted: [Bool] = []
    private var classParent: [Int] = []
    private var classCost: [Double] = []

    /// Ops whose tensors are dropped as soon as only their slot holds them (a plan's), and the
    /// entries of theirs not dropped yet.
    private let dropGroups: [Set<String>]
    /// The group of each op in ``dropGroups``.
    private let dropGroupOf: [String: Int]
    private var pendingDrops: [Int] = []

    init(evictor: DynamicRematerializer, dropGroups: [[String]] = []) {
        self.evictor = evictor
        self.dropGroups = dropGroups.map(Set.init)
        var groupOf: [String: Int] = [:]
        for (g, ops) in dropGroups.enumerated() { for op in ops { groupOf[op] = g } }
        dropGroupOf = groupOf
    }

    /// The ops a recompute for `owner`'s tensor rebuilds: `owner`, and the ops of its planned
    /// group with a tensor backward still needs that is not held.
    func recomputeTargets(for owner: String) -> Set<String> {
        guard let g = dropGroupOf[owner] else { return [owner] }
        var targets: Set<String> = [owner]
        for (k, e) in slotEntry.enumerated() where slotPending[k] && entries[e].hold == nil && dropGroups[g].contains(entries[e].owner) {
            targets.insert(entries[e].owner)
        }
        return targets
    }

    /// Drops each planned entry that nothing but its slot holds now.
    func dropPlanned() {
        guard !pendingDrops.isEmpty else { return }
        pendingDrops.removeAll { e in entries[e].hold == nil || evict(e) > 0 }
    }

    // MARK: Forward

    func opStarts(_ name: String) { openOp = (name, monotonicSeconds()) }

    func opRecorded(_ name: String, index: Int, inputs: [Int]) {
        precondition(index == cost.count, "dynamic region: op \(name) recorded out of order")
        let seconds = openOp.map { $0.name == name ? monotonicSeconds() - $0.start : 0 } ?? 0
        openOp = nil
        opIndex[name] = index
        cost.append(seconds)
        neighbours.append(inputs)
        for p in inputs { neighbours[p].append(index) }
        evicted.append(false)
        classParent.append(index)
        classCost.append(0)
        dropPlanned()
    }

    /// Slot `slot` holds (a view of) `storage`, made by op `owner`.
    func holds(slot: Int, of storage: Storage, owner: String) {
        precondition(slot == slotEntry.count, "dynamic region: slot \(slot) registered out of order")
        let e: Int
        if let known = entryOfStorage[storage.id], entries[known].hold?.storage === storage {
            e = known
        } else {
            e = entries.count
            entries.append(Entry(owner: owner, storage: storage, now: monotonicSeconds()))
            entryOfStorage[storage.id] = e
            if dropGroupOf[owner] != nil { pendingDrops.append(e) }
        }
        entries[e].pendingSlots += 1
        slotEntry.append(e)
        slotPending.append(true)
    }

    // MARK: Backward

    func storage(ofSlot slot: Int) -> Storage? { entries[slotEntry[slot]].hold?.storage }

    func accessed(slot: Int) { entries[slotEntry[slot]].lastAccess = monotonicSeconds() }

    /// Backward took slot `slot` (or its graph died): its storage goes when no slot needs it.
    func slotReleased(_ slot: Int) {
        guard slotPending[slot] else { return }
        slotPending[slot] = false
        let entry = entries[slotEntry[slot]]
        entry.pendingSlots -= 1
        if entry.pendingSlots == 0 {
            entry.hold?.release()
            entry.hold = nil
        }
    }

    /// The evicted slots backward still needs whose storages ops in `ops` make.
    func evictedSlotsNeeded(ownedByAnyOf ops: Set<String>) -> [Int] {
        slotEntry.indices.filter { k in
            let entry = entries[slotEntry[k]]
            return slotPending[k] && entry.hold == nil && ops.contains(entry.owner)
        }
    }

    /// A recompute rebuilt slot `slot` over `storage`: held again (evictable again).
    func rebuilt(slot: Int, storage: Storage) {
        let entry = entries[slotEntry[slot]]
        if entry.hold == nil {
            entry.hold = ReleasableHold(storage)
            evictor.observe(.rebuilt(originalStorage: entry.originalStorage, storage: storage.id))
        }
        entry.lastAccess = monotonicSeconds()
        if let i = opIndex[entry.owner] { evicted[i] = false }
    }

    func recomputeBegins() { evictor.observe(.recomputeBegins) }
    func recomputeEnds() { evictor.observe(.recomputeEnds) }

    func recomputed(tensors: Int, seconds: Double) { evictor.recomputed(tensors: tensors, seconds: seconds) }

    /// The entry of the slot backward is waiting for: never evicted while its recompute runs.
    private var pinnedEntry: Int? = nil
    func pin(slot: Int?) { pinnedEntry = slot.map { slotEntry[$0] } }

    // MARK: Eviction

    /// Every entry that could be evicted now (held, needed by backward, made by an op of the
    /// region), with its score h_DTR^eq.
    func candidates(now: Double) -> [(entry: Int, score: Double)] {
        var out: [(entry: Int, score: Double)] = []
        for (e, entry) in entries.enumerated() where entry.pendingSlots > 0 && entry.hold != nil && e != pinnedEntry {
            guard let i = opIndex[entry.owner] else { continue }
            var c = cost[i]
            var roots: [Int] = []
            for n in neighbours[i] where evicted[n] {
                let r = root(n)
                if !roots.contains(r) {
                    roots.append(r)
                    c += classCost[r]
                }
            }
            let staleness = max(now - entry.lastAccess, 1e-6)
            out.append((e, max(c, 1e-9) / (Double(entry.bytes) * staleness)))
        }
        return out
    }

    /// Evicts entry `e` if nothing but its hold keeps the storage; returns the bytes freed (0: pinned).
    func evict(_ e: Int) -> Int {
        let entry = entries[e]
        guard let hold = entry.hold, hold.releaseIfUnique() else { return 0 }
        entry.hold = nil
        if let i = opIndex[entry.owner], !evicted[i] {
            evicted[i] = true
            classCost[root(i)] += cost[i]
            for n in neighbours[i] where evicted[n] { union(i, n) }
        }
        return entry.bytes
    }

    private func root(_ i: Int) -> Int {
        var r = i
        while classParent[r] != r { r = classParent[r] }
        var j = i
        while classParent[j] != r {
            let next = classParent[j]
            classParent[j] = r
            j = next
        }
        return r
    }

    private func union(_ a: Int, _ b: Int) {
        let ra = root(a), rb = root(b)
        guard ra != rb else { return }
        classParent[rb] = ra
        classCost[ra] += classCost[rb]
    }
}
