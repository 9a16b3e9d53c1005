import Synchronization

/// Errors of capture, planning and plan application; each names what is wrong.
public enum PlanningError: Error, CustomStringConvertible, Equatable {
    case noBlocks(model: String)
    case nondeterministicStep(detail: String)
    case budgetBelowMinimum(budget: Int, minimum: Int, breakdown: String)
    case unknownNames(plan: String, names: [String])
    case stalePlan(expected: String, found: String)
    case badBudget(String)
    case badStats(file: String, reason: String)
    case unknownSolver(String)
    case planExceedsBudget(predicted: Int, budget: Int)

    public var description: String {
        switch self {
        case .noBlocks(let m):
            return "model \(m) has no block modules (`blocks.N`, `layerK.N`) to plan over"
        case .nondeterministicStep(let d):
            return "step capture: the forward differs between two runs (\(d)); planning needs a deterministic step"
        case .budgetBelowMinimum(let b, let m, let breakdown):
            return "memory budget \(formatBytes(b)) is below the minimum feasible \(formatBytes(m)) (\(breakdown))"
        case .unknownNames(let p, let names):
            return "plan \(p) names ops this step does not have: \(names.prefix(5).joined(separator: ", "))\(names.count > 5 ? ", …" : "")"
        case .stalePlan(let e, let f):
            return "stale plan: it was made for \(e) but the step is \(f); re-plan for this shape"
        case .badBudget(let s):
            return "bad memory budget '\(s)': use bytes with a unit (300MiB, 1.5GiB, 500MB) or a fraction of the unconstrained peak (0.5)"
        case .badStats(let f, let r):
            return "stats file \(f): \(r)"
        case .planExceedsBudget(let p, let b):
            return "the plan does not fit this step: predicted peak \(formatBytes(p)) over its budget \(formatBytes(b)); re-plan"
        case .unknownSolver(let s):
            return "unknown solver '\(s)'; use auto, greedy, knapsack, local, exhaustive"
        }
    }
}

/// Bytes as MiB with one decimal ("312.5 MiB").
public func formatBytes(_ b: Int) -> String {
    let mib = Double(b) / 1_048_576
    return mib >= 100 ? String(format: "%.0f MiB", mib) : String(format: "%.1f MiB", mib)
}

/// Records one training step of a trainer as a ``StepGraph`` (profile + capture).
///
/// Runs real steps on `batch`: one warm-up (optimizer state exists afterwards, as in steady state),
/// `timingRuns` timed steps (per-op forward and backward times, medians), one step with the
/// ledger's timeline on (the unplanned event sequence), and one forward with every candidate
/// dropped (where each tensor dies when no slot holds it). The model's parameters are trained by
/// these steps, as in any profiling warm-up.
public enum StepCapture {
    public static func capture(_ trainer: Trainer, batch: TrainingBatch, timingRuns: Int = 3) throws -> StepGraph {
        let model = trainer.model
        let blocks = model.planningRegions
        guard !blocks.isEmpty else { throw PlanningError.noBlocks(model: model.typeName) }
        let saved = model.namedModules.map { ($0.1, $0.1.callWrapper) }
        defer { for (m, w) in saved { m.callWrapper = w } }
        if let chain = model as? any BlockChainModel { chain.blockSchedule = nil }
        for (_, m) in model.namedModules { m.callWrapper = nil }
        let ledger = trainer.ledger
        let regionOf = Dictionary(uniqueKeysWithValues: blocks.enumerated().map { (ObjectIdentifier($0.element.1), $0.offset) })
        let state = CaptureState()

        func installWrappers(planned: Set<String>?) {
            for (path, m) in blocks {
                let r = regionOf[ObjectIdentifier(m)]!
                m.callWrapper = { _, x, body in
                    guard isGradEnabled else { return body(x) }
                    state.region = r
                    ledger.mark("R+\(r)")
                    defer { ledger.mark("R-\(r)"); state.region = nil }
                    if let planned { return plannedRegion(planned, x, body) }
                    return body(x)
                }
            }
        }

        // Warm-up.
        installWrappers(planned: nil)
        _ = trainer.step(batch)

        // Timing runs: per-op forward and backward times.
        var forwardTimes: [String: [Double]] = [:]
        var backwardTimes: [String: [Double]] = [:]
        var stepTimes: [Double] = []
        for _ in 0..<Swift.max(1, timingRuns) {
            let clock = TimingState()
            let start = monotonicSeconds()
            MemoryLedger.withLedger(ledger) {
                trainer.beginStep()
                AutogradContext.with({ ctx in
                    ctx.opObserver = { node, _ in clock.forward(node.name) }
                    ctx.backwardObserver = { node in clock.backward(node.name) }
                }) {
                    clock.last = monotonicSeconds()
                    let loss = trainer.forward(batch)
                    clock.backwardStart()
                    loss.backward()
                    clock.finish()
                }
                trainer.update()
            }
            stepTimes.append(monotonicSeconds() - start)
            for (n, t) in clock.forwardTimes { forwardTimes[n, default: []].append(t) }
            for (n, t) in clock.backwardTimes { backwardTimes[n, default: []].append(t) }
        }

        // The unplanned step with the timeline on.
        var ops: [StepGraph.Op] = []
        var opIndex: [String: Int] = [:]
        var slots: [(name: String, saver: String, storage: Int, role: String)] = []
        var ownerOfStorage: [Int: Int] = [:]
        var outputStorage: [Int: Int] = [:]
        var consumersOfStorage: [Int: [Int]] = [:]
        let recorder = Recorder()
        let baseline: Int
        var baselineByCategory: [MemoryCategory: Int] = [:]
        let kept: [MemoryEvent]
        let measuredPeak: Int
        do {
            var events: [MemoryEvent] = []
            var base = 0
            MemoryLedger.withLedger(ledger) {
                trainer.beginStep()
                base = ledger.currentBytes
                baselineByCategory = ledger.breakdown
                ledger.startTimeline()
                AutogradContext.with({ ctx in
                    ctx.opObserver = { node, output in recorder.record(node, output, state.region) }
                    ctx.backwardObserver = { node in ledger.mark("B" + node.name) }
                }) {
                    let loss = trainer.forward(batch)
                    ledger.mark("FWD")
                    loss.backward()
                }
                ledger.mark("BWD")
                trainer.update()
                events = ledger.stopTimeline()
            }
            baseline = base
            kept = events
            measuredPeak = ledger.peakBytes
            for r in recorder.records {
                let i = ops.count
                opIndex[r.name] = i
                ops.append(StepGraph.Op(name: r.name, kind: r.kind, rank: i, region: r.region, inputs: r.inputs,
                                        seconds: median(forwardTimes[r.name] ?? [0]), outputTensor: nil))
                for s in r.slots {
                    if ownerOfStorage[s.storage] == nil { ownerOfStorage[s.storage] = i }
                    slots.append((s.name, r.name, s.storage, s.role))
                }
                if ownerOfStorage[r.outputStorage] == nil { ownerOfStorage[r.outputStorage] = i }
                outputStorage[i] = r.outputStorage
                for p in r.inputs {
                    if let pi = opIndex[p], let ps = outputStorage[pi] { consumersOfStorage[ps, default: []].append(i) }
                }
            }
        }

        // Tensors: every storage the step allocates or frees, indexed in order of first appearance.
        var tensors: [StepGraph.TensorInfo] = []
        var tensorOf: [Int: Int] = [:]
        var keptSequence: [StepGraph.Event] = []
        var phase = StepGraph.Phase.forward
        var backwardStartIndex = 0
        var forwardAllocations: [Int] = []   // tensor indices in forward allocation order
        let roleOf = Dictionary(slots.map { ($0.storage, $0.role) }, uniquingKeysWith: { a, _ in a })
        for e in kept {
            switch e.kind {
            case .mark:
                if e.name == "FWD" { phase = .backward; backwardStartIndex = keptSequence.count; continue }
                if e.name == "BWD" { phase = .optimizer; continue }
                if let ev = parseMark(e.name, opIndex: opIndex) { keptSequence.append(ev) }
            case .allocate:
                let i = tensors.count
                tensorOf[e.storageID] = i
                var name = e.name + "#\(i)"
                var owner: Int? = nil
                if phase == .forward, let o = ownerOfStorage[e.storageID] {
                    owner = o
                    name = ops[o].name + ":" + (outputStorage[o] == e.storageID ? "output" : (roleOf[e.storageID] ?? "internal"))
                }
                tensors.append(StepGraph.TensorInfo(id: i, name: name, owner: owner, bytes: e.bytes, category: e.category,
                                                    phase: phase, savedBy: [], consumers: consumersOfStorage[e.storageID] ?? []))
                if phase == .forward { forwardAllocations.append(i) }
                keptSequence.append(.allocate(i))
            case .free:
                if tensorOf[e.storageID] == nil {
                    let i = tensors.count
                    tensorOf[e.storageID] = i
                    var t = StepGraph.TensorInfo(id: i, name: e.name + "#\(i)", owner: nil, bytes: e.bytes, category: e.category,
                                                 phase: phase, savedBy: [], consumers: [])
                    t.preexisting = true
                    tensors.append(t)
                }
                keptSequence.append(.free(tensorOf[e.storageID]!))
            case .move:
                if let i = tensorOf[e.storageID], e.category == .gradients || e.category == .optimizerState || e.category == .parameters {
                    tensors[i].category = e.category
                }
            }
        }
        for (o, s) in outputStorage { if let t = tensorOf[s] { ops[o].outputTensor = t } }
        var graphSlots: [StepGraph.Slot] = []
        for s in slots {
            guard let t = tensorOf[s.storage] else { continue }   // data or parameters from before the step
            tensors[t].savedBy.append(s.name)
            graphSlots.append(StepGraph.Slot(name: s.name, saver: s.saver, tensor: t))
        }
        // Liveness from the unplanned sequence.
        var backwardRank = 0
        var currentBackward: Int? = nil
        let slotsBySaver = Dictionary(grouping: graphSlots, by: \.saver)
        for ev in keptSequence {
            if case .backwardOp(let name) = ev {
                currentBackward = backwardRank
                backwardRank += 1
                for s in slotsBySaver[name] ?? [] {
                    if tensors[s.tensor].firstBackwardUse == nil { tensors[s.tensor].firstBackwardUse = currentBackward }
                    tensors[s.tensor].lastBackwardUse = currentBackward
                }
            }
        }

        var graph = StepGraph(model: model.typeName, inputShape: batch.input.shape, regions: blocks.map(\.0), ops: ops,
                              tensors: tensors, baselineBytes: baseline, baselineByCategory: baselineByCategory,
                              measuredPeakBytes: measuredPeak, stepSeconds: median(stepTimes),
                              backwardSeconds: backwardTimes.mapValues { median($0) }, keptSequence: keptSequence,
                              backwardStartIndex: backwardStartIndex,
                              droppedForward: [], slots: graphSlots)

        // The forward with every candidate dropped.
        let candidateNames = Set(graph.candidates.map(\.name))
        installWrappers(planned: candidateNames)
        var dropped: [MemoryEvent] = []
        MemoryLedger.withLedger(ledger) {
            trainer.beginStep()
            ledger.startTimeline()
            AutogradContext.with({ ctx in
                ctx.opObserver = { node, _ in ledger.mark("F" + node.name) }
            }) {
                let loss = trainer.forward(batch)
                dropped = ledger.stopTimeline()
                withExtendedLifetime(loss) {}
            }
        }
        var droppedForward: [StepGraph.Event] = []
        var ordinal = 0
        var droppedTensor: [Int: Int] = [:]
        for e in dropped {
            switch e.kind {
            case .mark:
                if let ev = parseMark(e.name, opIndex: opIndex) { droppedForward.append(ev) }
            case .allocate:
                guard ordinal < forwardAllocations.count, tensors[forwardAllocations[ordinal]].bytes == e.bytes else {
                    throw PlanningError.nondeterministicStep(detail: "allocation #\(ordinal) of the forward (\(e.name), \(e.bytes) bytes) does not match")
                }
                droppedTensor[e.storageID] = forwardAllocations[ordinal]
                droppedForward.append(.allocate(forwardAllocations[ordinal]))
                ordinal += 1
            case .free:
                if let t = droppedTensor[e.storageID] ?? tensorOf[e.storageID] { droppedForward.append(.free(t)) }
            case .move:
                break
            }
        }
        guard ordinal == forwardAllocations.count else {
            throw PlanningError.nondeterministicStep(detail: "the forward allocated \(forwardAllocations.count) tensors, then \(ordinal)")
        }
        // Where each tensor dies in the forward when no slot holds it.
        var rank = -1
        for ev in droppedForward {
            switch ev {
            case .forwardOp(let i): rank = i
            case .free(let t): graph.tensors[t].lastForwardUse = rank
            default: break
            }
        }
        graph.droppedForward = droppedForward
        return graph
    }

    private static func parseMark(_ m: String, opIndex: [String: Int]) -> StepGraph.Event? {
        if m.hasPrefix("R+") { return Int(m.dropFirst(2)).map { .regionStart($0) } }
        if m.hasPrefix("R-") { return Int(m.dropFirst(2)).map { .regionEnd($0) } }
        if m.hasPrefix("B") { return .backwardOp(String(m.dropFirst())) }
        if m.hasPrefix("F") { return opIndex[String(m.dropFirst())].map { .forwardOp($0) } }
        return nil
    }

    /// Per-op forward and backward timing (single-threaded use by the step).
    private final class TimingState: @unchecked Sendable {
        var last = 0.0
        var forwardTimes: [(String, Double)] = []
        var backwardTimes: [(String, Double)] = []
        var currentBackward: String? = nil
        func forward(_ name: String) {
            let now = monotonicSeconds()
            forwardTimes.append((name, now - last))
            last = now
        }
        func backwardStart() { last = monotonicSeconds() }
        func backward(_ name: String) {
            let now = monotonicSeconds()
            if let c = currentBackward { backwardTimes.append((c, now - last)) }
            currentBackward = name
            last = now
        }
        func finish() { backward("") }
    }

    private final class CaptureState: @unchecked Sendable {
        var region: Int? = nil
    }

    /// What the timeline run records of each forward op.
    private final class Recorder: @unchecked Sendable {
        struct Record {
            var name: String
            var kind: String
            var region: Int?
            var inputs: [String]
            var outputStorage: Int
            var slots: [(name: String, storage: Int, role: String)]
        }
        var records: [Record] = []
        func record(_ node: Node, _ output: Tensor, _ region: Int?) {
            let inputs: [String] = node.inputEdges.compactMap { edge in
                if case .node(let n)? = edge { return n.name }
                return nil
            }
            var slots: [(String, Int, String)] = []
            for s in node.savedTensors where !s.info.isParameter {
                if case .tensor(let t)? = s.payload { slots.append((s.info.name, t.storage.id, s.info.role)) }
            }
            records.append(Record(name: node.name, kind: node.op, region: region, inputs: inputs,
                                  outputStorage: output.storage.id, slots: slots))
            output.storage.ledger.mark("F" + node.name)
        }
    }
}
