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

    /// The prediction for recomputing the candidates in `plan` (indices into ``candidates``).
    public func simulate(_ plan: Set<Int>) -> Prediction { simulate(plan, recordingPeak: nil) }

    /// The tensors the step allocated that are alive at the predicted peak under `plan` (largest
    /// first), besides what was alive before the step: what a budget would have to drop.
    public func tensorsAtPeak(_ plan: Set<Int>) -> [StepGraph.TensorInfo] {
        let box = PeakRecorder()
        _ = simulate(plan, recordingPeak: box)
        return box.alive.enumerated().filter { $0.element && !graph.tensors[$0.offset].preexisting }
            .map { graph.tensors[$0.offset] }.sorted { ($0.bytes, $1.id) > ($1.bytes, $0.id) }
    }

    private final class PeakRecorder { var alive: [Bool] = [] }

    private func simulate(_ plan: Set<Int>, recordingPeak recorder: PeakRecorder?) -> Prediction {
        let tensors = graph.tensors
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
        var cat = graph.baselineByCategory
        var peakCat = cat
        // Where we are (forward event index; backward op; block recomputing), and where the peak was.
        var position = (forwardEvent: 0, backwardOp: -1, recomputing: -1)
        var peakPosition = position
        func allocate(_ t: Int) {
            guard !alive[t] else { return }
            alive[t] = true
            live += tensors[t].bytes
            cat[tensors[t].category, default: 0] += tensors[t].bytes
            if live > peak {
                peak = live; peakCat = cat; peakPosition = position
                recorder?.alive = alive
            }
        }
        func free(_ t: Int) {
            guard alive[t] else { return }
            alive[t] = false
            live -= tensors[t].bytes
            cat[tensors[t].category, default: 0] -= tensors[t].bytes
        }
        // Forward.
        for (k, ev) in graph.droppedForward.enumerated() {
            position.forwardEvent = k
            switch ev {
            case .allocate(let t): allocate(t)
            case .free(let t):
                // A candidate the plan keeps stays in its slot.
                if !tensors[t].savedBy.isEmpty && !recomputeTensor[t] { continue }
                free(t)
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
        for (ev, op) in backwardEvents {
            switch ev {
            case .backwardOp:
                position.backwardOp = op
                if op >= 0, holds[op], let r = graph.ops[op].region, regionHasPlan[r], !triggered[r] {
                    triggered[r] = true
                    position.recomputing = r
                    let (s, n) = recompute(region: r, planOps: planOps, recomputeTensor: recomputeTensor,
                                           aliveNow: alive, allocate: allocate, free: free)
                    position.recomputing = -1
                    recomputeSeconds += s
                    recomputedOps += n
                }
            case .allocate(let t): allocate(t)
            case .free(let t): free(t)
            default: break
            }
        }
        return Prediction(peakBytes: peak, peakByCategory: peakCat.filter { $0.value != 0 },
                          stepSeconds: graph.stepSeconds + recomputeSeconds,
                          recomputeSeconds: recomputeSeconds, recomputedOps: recomputedOps,
                          peakLocation: describe(peakPosition))
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
                           allocate: (Int) -> Void, free: (Int) -> Void) -> (Double, Int) {
        let targets = Set(regionOps[r].filter { planOps.contains($0) })
        let runIndices = recomputeOps(region: r, targets: targets, isAlive: { aliveNow[$0] })
        var made = Set<Int>()
        for (ev, op) in regionWindows[r] {
            switch ev {
            case .allocate(let t):
                guard let op, runIndices.contains(op) else { continue }
                allocate(t)
                made.insert(t)
            case .free(let t):
                if made.contains(t) && !recomputeTensor[t] { free(t) }
            default: break
            }
        }
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
