/// What a plan does with the saved tensors of one candidate op.
public enum SavedTensorAction: Sendable, Hashable, CustomStringConvertible {
    /// Its slots hold the tensors.
    case keep
    /// Dropped at the end of the forward, rebuilt by a recompute of its block.
    case recompute
    /// Its slots hold the tensors packed by the codec (``Codec``) from when they are saved until
    /// backward unpacks them.
    case compress(Codec)

    public var description: String {
        switch self {
        case .keep: return "keep"
        case .recompute: return "recompute"
        case .compress(let c): return "compress(\(c))"
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
    /// Per candidate: what each codec that saves bytes on it packs (``Packing``), with the bytes
    /// that frees between the forward and the backward and the codec's seconds.
    private let packings: [[CodecOption]]
    struct CodecOption {
        var codec: Codec
        var packs: [Packing]
        var bytes: Int
        var seconds: Double
    }
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
        packings = Self.packings(graph, candidates, opIndex: opIndex)
        let categoryIndex = Dictionary(uniqueKeysWithValues: MemoryCategory.allCases.enumerated().map { ($0.element, $0.offset) })
        self.categoryIndex = categoryIndex
        tensorCategory = graph.tensors.map { categoryIndex[$0.category]! }
    }

    /// What each codec packs of each candidate, as ``CompressionSession`` packs: slots in forward
    /// order; one packed form per tensor and view (offset and shape), and a view saved after a slot that covers
    /// the whole tensor shares that slot's form. Codecs that save no bytes on a candidate, and
    /// every codec when the graph has no measured costs, are left out.
    private static func packings(_ graph: StepGraph, _ candidates: [StepGraph.Candidate], opIndex: [String: Int]) -> [[CodecOption]] {
        guard let costs = graph.actionCosts else { return candidates.map { _ in [] } }
        let kinds = graph.ops.map(\.kind)
        var backwardRank: [Int: Int] = [:]   // op index → first backward position
        for (k, n) in graph.backwardOrder.enumerated() { if let o = opIndex[n], backwardRank[o] == nil { backwardRank[o] = k } }
        var slotsOfTensor: [Int: [StepGraph.Slot]] = [:]
        for s in graph.slots { slotsOfTensor[s.tensor, default: []].append(s) }
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
        let tensors = graph.tensors
        // Packed forms: by the forward op that makes them, the backward op that first decodes
        // them, and the tensor whose free frees them.
        var packsBySaver: [Int: [Int]] = [:], packsByBackwardOp: [Int: [Int]] = [:], packsOfTensor: [Int: [Int]] = [:]
        var allPacks: [Packing] = []
        var packedRaw = [Bool](repeating: false, count: tensors.count)   // freed after the forward: every slot packs it
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
        var recomputeTensor = [Bool](repeating: false, count: tensors.count)
        var planOps = Set<Int>()
        var regionHasPlan = [Bool](repeating: false, count: graph.regions.count)
        for c in plan {
            let cand = candidates[c]
            planOps.insert(cand.op)
            regionHasPlan[cand.region] = true
            for t in cand.tensors { recomputeTensor[t] = true }
        }
        var alive = [Bool](repeating: false, count: tensors.count)
        for (i, t) in tensors.enumerated() where t.preexisting { alive[i] = true }
        var live = graph.baselineBytes
        var peak = live
        // Live bytes by category, indexed (a dictionary here would hash on every event).
        var cat = categories.map { graph.baselineByCategory[$0] ?? 0 }
        var peakCat = cat
        let activations = categoryIndex[.activations]!
        // Where we are (forward event index; backward op; block recomputing), and where the peak was.
        var position = (forwardEvent: 0, backwardOp: -1, recomputing: -1)
        var peakPosition = position
        func notePeak() {
            guard live > peak else { return }
            peak = live; peakCat = cat; peakPosition = position
            recorder?.alive = alive
        }
        func allocate(_ t: Int) {
            guard !alive[t] else { return }
            alive[t] = true
            live += tensors[t].bytes
            cat[tensorCategory[t]] += tensors[t].bytes
            notePeak()
        }
        // Packed forms and their decoded copies (activations while alive), and bytes a recompute
        // makes again of a tensor still alive.
        var packAlive = [Bool](repeating: false, count: allPacks.count)
        var decoded = [Bool](repeating: false, count: allPacks.count)
        func addBytes(_ bytes: Int) {
            live += bytes
            cat[activations] += bytes
            notePeak()
        }
        func removeBytes(_ bytes: Int) {
            live -= bytes
            cat[activations] -= bytes
        }
        func free(_ t: Int) {
            guard alive[t] else { return }
            alive[t] = false
            live -= tensors[t].bytes
            cat[tensorCategory[t]] -= tensors[t].bytes
        }
        // Forward.
        for (k, ev) in graph.droppedForward.enumerated() {
            position.forwardEvent = k
            switch ev {
            case .allocate(let t): allocate(t)
            case .free(let t):
                // A candidate the plan keeps stays in its slot (unless every slot holds it packed).
                if !tensors[t].savedBy.isEmpty && !recomputeTensor[t] && !packedRaw[t] { continue }
                free(t)
            case .forwardOp(let i):
                for k in packsBySaver[i] ?? [] { packAlive[k] = true; addBytes(allPacks[k].packedBytes) }
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
        for (ev, op) in backwardEvents {
            switch ev {
            case .backwardOp:
                position.backwardOp = op
                // Unpacked when the op's backward starts (by its rank among the backward nodes).
                backwardRank += 1
                for k in packsByBackwardOp[backwardRank] ?? [] where !decoded[k] { decoded[k] = true; addBytes(allPacks[k].rawBytes) }
                if op >= 0, holds[op], let r = graph.ops[op].region, regionHasPlan[r], !triggered[r] {
                    triggered[r] = true
                    position.recomputing = r
                    let (s, n) = recompute(region: r, planOps: planOps, recomputeTensor: recomputeTensor,
                                           aliveNow: alive, allocate: allocate, free: free,
                                           bytes: { $0 > 0 ? addBytes($0) : removeBytes(-$0) })
                    position.recomputing = -1
                    recomputeSeconds += s
                    recomputedOps += n
                }
            case .allocate(let t): allocate(t)
            case .free(let t):
                // The unplanned step frees the tensor here: its packed forms and decoded copies go.
                for k in packsOfTensor[t] ?? [] where packAlive[k] || decoded[k] {
                    removeBytes((packAlive[k] ? allPacks[k].packedBytes : 0) + (decoded[k] ? allPacks[k].rawBytes : 0))
                    packAlive[k] = false
                    decoded[k] = false
                }
                free(t)
            default: break
            }
        }
        var byCategory: [MemoryCategory: Int] = [:]
        for (k, v) in peakCat.enumerated() where v != 0 { byCategory[categories[k]] = v }
        return Prediction(peakBytes: peak, peakByCategory: byCategory,
                          stepSeconds: graph.stepSeconds + recomputeSeconds + codecSeconds,
                          recomputeSeconds: recomputeSeconds, recomputedOps: recomputedOps,
                          peakLocation: describe(peakPosition), codecSeconds: codecSeconds)
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

    private func recompute(region r: Int, planOps: Set<Int>, recomputeTensor: [Bool], aliveNow: [Bool],
                           allocate: (Int) -> Void, free: (Int) -> Void, bytes: (Int) -> Void) -> (Double, Int) {
        let targets = Set(regionOps[r].filter { planOps.contains($0) })
        let runIndices = recomputeOps(region: r, targets: targets, isAlive: { aliveNow[$0] })
        var made = Set<Int>()
        // An op that runs makes all its tensors anew: one the plan keeps (an internal tensor of an
        // op on the recompute path) is alive already, and the recompute's copy is extra bytes
        // until it dies.
        var copies = Set<Int>()
        for (ev, op) in regionWindows[r] {
            switch ev {
            case .allocate(let t):
                guard let op, runIndices.contains(op) else { continue }
                if aliveNow[t] {
                    if copies.insert(t).inserted { bytes(graph.tensors[t].bytes) }
                    continue
                }
                allocate(t)
                made.insert(t)
            case .free(let t):
                if copies.remove(t) != nil { bytes(-graph.tensors[t].bytes) }
                if made.contains(t) && !recomputeTensor[t] { free(t) }
            default: break
            }
        }
        for t in copies { bytes(-graph.tensors[t].bytes) }
        for t in made where !recomputeTensor[t] { free(t) }   // dropped when the recompute ends
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

    private func seconds(of ops: Set<Int>) -> Double { ops.reduce(0.0) { $0 + graph.ops[$1].seconds } }

    /// The ops (indices, in forward order) recomputing candidate `c` alone runs: its op and every
    /// op it needs whose output no slot keeps.
    public func recomputePath(of c: Int) -> [Int] {
        let cand = candidates[c]
        return recomputeOps(region: cand.region, targets: [cand.op], isAlive: { !self.graph.tensors[$0].savedBy.isEmpty }).sorted()
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
            seconds(of: recomputeOps(region: cand.region, targets: targets, isAlive: { !self.graph.tensors[$0].savedBy.isEmpty }))
        }
        return cost(planOps.union([cand.op])) - (planOps.isEmpty ? 0 : cost(planOps))
    }
}
