/// One training step as step capture drives it, phase by phase (a training loop provides it:
/// ``Trainer/stepRunner(_:)``). Planning knows nothing else of the loop.
public struct StepRunner {
    public let model: Module
    public let ledger: MemoryLedger
    /// The shape of the batch's input (plans are per shape).
    public let inputShape: [Int]
    /// Sets the learning rate, frees the previous gradients and resets the ledger's peak.
    public let begin: () -> Void
    /// Forward and loss (the graph is recorded for backward).
    public let forward: () -> Tensor
    /// Gradient clipping and the optimizer step.
    public let update: () -> Void
    /// One whole step as the loop runs it (the warm-up).
    public let step: () -> Void
    /// When set, every step of the capture runs under this hard limit (dynamic
    /// rematerialization), so profiling a shape stays under the budget: the passes run their
    /// phases themselves (the warm-up too), the forward in the evictor's dynamic region, and the
    /// timeline is recorded as the step would have run unconstrained (the evictor's frees and
    /// its recomputes' traffic left out, a rebuilt tensor counted as the one the forward made).
    public let dynamic: DynamicRematerializer?

    public init(model: Module, ledger: MemoryLedger, inputShape: [Int], begin: @escaping () -> Void,
                forward: @escaping () -> Tensor, update: @escaping () -> Void, step: @escaping () -> Void,
                dynamic: DynamicRematerializer? = nil) {
        self.model = model
        self.ledger = ledger
        self.inputShape = inputShape
        self.begin = begin
        self.forward = forward
        self.update = update
        self.step = step
        self.dynamic = dynamic
    }

    /// Runs `body` (one pass's steps, on this runner's ledger) under the dynamic limit if there is
    /// one; throws when an allocation still went over it.
    func limited(_ pass: String, _ body: () -> Void) throws {
        guard let dynamic else { return body() }
        let over = dynamic.run { () -> (Int, Int) in
            body()
            return (ledger.overLimitAllocations, ledger.largestExcessBytes)
        }
        guard over.0 == 0 else {
            throw PlanningError.captureOverBudget(budget: dynamic.budgetBytes, pass: pass, allocationsOver: over.0, largestExcess: over.1)
        }
    }

    /// The forward, in the evictor's dynamic region when there is a limit.
    func limitedForward() -> Tensor {
        guard let dynamic else { return forward() }
        return dynamic.forward(forward)
    }

    /// The warm-up: the loop's own step, or under a limit the phases in the evictor's region.
    func warmUp() throws {
        guard dynamic != nil else { return step() }
        try MemoryLedger.withLedger(ledger) {
            try limited("warm-up step") {
                begin()
                limitedForward().backward()
                update()
            }
        }
    }

    /// Tells `observer` of the evictor's timeline events while `body` runs.
    func observingEvictor<R>(_ observer: @escaping (DynamicRematerializer.TimelineEvent) -> Void, _ body: () throws -> R) rethrows -> R {
        guard let dynamic else { return try body() }
        let outer = dynamic.timelineObserver
        dynamic.timelineObserver = observer
        defer { dynamic.timelineObserver = outer }
        return try body()
    }
}

/// Records one training step as a ``StepGraph`` (profile + capture).
///
/// Runs real steps: one warm-up (optimizer state exists afterwards, as in steady state),
/// `timingRuns` timed steps (``TimingPass``: per-op forward and backward times, medians), one
/// step with the ledger's timeline on (``TimelinePass``: the unplanned event sequence), and one
/// forward with every candidate dropped (``DroppedForwardPass``: where each tensor dies when no
/// slot holds it). Each pass records typed events (``CaptureLog``) through the op and backward
/// observers and its own module execution (which marks the planning regions), between the
/// ledger's. The model runs unplanned and untreated, whatever its own execution and saved-tensor
/// policy (the passes run it under theirs, without compression or offload);
/// its parameters are trained by these steps, as in any profiling warm-up.
///
/// With a dynamic limit on the runner (``StepRunner/dynamic``) every pass runs under it and the
/// graph is the one the step has unconstrained: equal, event for event, to an unlimited
/// capture's, with per-op times that leave out the evictor and its recomputes; its measured peak
/// is then the simulated unconstrained peak (the ledger's stayed under the limit). A pass that
/// still went over the limit throws ``PlanningError/captureOverBudget(budget:pass:allocationsOver:largestExcess:)``.
public enum StepCapture {
    public static func capture(_ runner: StepRunner, timingRuns: Int = 3) throws -> StepGraph {
        let model = runner.model
        let regions = model.planningRegions
        guard !regions.isEmpty else { throw PlanningError.noBlocks(model: model.typeName) }
        let regionIndex = Dictionary(uniqueKeysWithValues: regions.enumerated().map { ($0.element.0, $0.offset) })
        // Untreated as well as unplanned: what the step saves, as it is (a plan's own compression,
        // or the user's, would hide the tensors it packs).
        let treatment = model.savedTensorPolicy
        model.savedTensorPolicy = nil
        defer { model.savedTensorPolicy = treatment }

        // Warm-up, noting which value-dependent codecs each saved tensor allows.
        let valueCodecs = ValueCodecs()
        try withModuleExecution(CaptureExecution(regions: regionIndex, log: nil, planned: nil)) {
            try AutogradContext.with({ $0.opObserver = { node, _ in valueCodecs.observe(node) } }) { try runner.warmUp() }
        }
        let timing = try TimingPass.run(runner, runs: Swift.max(1, timingRuns), regions: regionIndex)
        var (graph, tensorOfStorage) = try TimelinePass.run(runner, regions: regionIndex, timing: timing)
        graph.regions = regions.map(\.0)
        try DroppedForwardPass.run(runner, regions: regionIndex, tensorOfStorage: tensorOfStorage, into: &graph)
        for i in graph.slots.indices { graph.slots[i].valueCodecs = valueCodecs.bySlot[graph.slots[i].name] ?? [] }
        graph.actionCosts = ActionCosts.measuredOnce()
        if runner.dynamic != nil { graph.measuredPeakBytes = PlanSimulator(graph).simulate([]).peakBytes }
        return graph
    }
}

/// Which of the codecs that depend on the values (bits, causal) each saved tensor of a step
/// allows, by slot name.
final class ValueCodecs: @unchecked Sendable {
    var bySlot: [String: Set<Codec>] = [:]
    func observe(_ node: Node) {
        for s in node.savedTensors where !s.info.isParameter && s.info.dtype == .float32 {
            guard let t = s.heldTensor else { continue }
            var allowed = Set<Codec>()
            if Codec.bits.packs(t) { allowed.insert(.bits) }
            if Codec.causal.applies(to: s.info), Codec.causal.packs(t) { allowed.formUnion([.causal, .causalBF16]) }
            if !allowed.isEmpty { bySlot[s.info.name] = allowed }
        }
    }
}

/// The typed events of one capture pass, placed among the ledger's timeline events (by the
/// timeline's length when each is noted).
final class CaptureLog: @unchecked Sendable {
    /// A forward op as it recorded: name, kind, the ops it read, its output's storage and the
    /// storages its slots hold (taken when it records: nothing of the graph is kept).
    struct ForwardOp {
        var name: String
        var kind: String
        var inputs: [String]
        var outputStorage: Int
        var slots: [(name: String, storage: Int, role: String, shape: [Int], isOutput: Bool, dtype: DType, offset: Int)]

        init(_ node: Node, _ output: Tensor) {
            name = node.name
            kind = node.op
            inputs = node.inputEdges.compactMap { edge in
                if case .node(let n)? = edge { return n.name }
                return nil
            }
            outputStorage = output.storage.id
            slots = node.savedTensors.compactMap { s in
                guard !s.info.isParameter, let t = s.heldTensor else { return nil }
                return (s.info.name, t.storage.id, s.info.role, s.info.shape, s.info.isOutput, s.info.dtype, t.offset)
            }
        }
    }

    enum Marker {
        case forwardOp(ForwardOp)
        case backwardOp(String)
        case regionStart(Int)
        case regionEnd(Int)
        case forwardEnd
        case backwardEnd
        /// The evictor's (a capture under a dynamic limit).
        case evictor(DynamicRematerializer.TimelineEvent)
    }

    enum Entry {
        case memory(MemoryEvent)
        case marker(Marker)
    }

    let ledger: MemoryLedger
    private var markers: [(position: Int, marker: Marker)] = []
    init(_ ledger: MemoryLedger) { self.ledger = ledger }

    func note(_ m: Marker) { markers.append((ledger.timelineCount, m)) }

    /// The ledger's events (`events`, as `stopTimeline` gave them) and the markers, in the order they happened.
    func merged(_ events: [MemoryEvent]) -> [Entry] {
        var result: [Entry] = []
        result.reserveCapacity(events.count + markers.count)
        var m = 0
        for (i, e) in events.enumerated() {
            while m < markers.count && markers[m].position <= i { result.append(.marker(markers[m].marker)); m += 1 }
            result.append(.memory(e))
        }
        while m < markers.count { result.append(.marker(markers[m].marker)); m += 1 }
        markers = []
        return result
    }
}

/// The module execution of a capture pass: marks where each planning region starts and ends
/// (forward only), and runs the regions under a plan that recomputes `planned` when given.
struct CaptureExecution: ModuleExecution, @unchecked Sendable {
    let regions: [String: Int]
    let log: CaptureLog?
    let planned: ExecutionStrategy?

    init(regions: [String: Int], log: CaptureLog?, planned: Set<String>?) {
        self.regions = regions
        self.log = log
        self.planned = planned.map { set in ExecutionStrategy(regions: regions.mapValues { _ in .planned(recompute: set) }) }
    }

    func run(_ module: Module, _ inputs: [Tensor], _ body: @escaping ([Tensor]) -> [Tensor]) -> [Tensor] {
        guard isGradEnabled, let r = regions[module.path] else { return body(inputs) }
        log?.note(.regionStart(r))
        defer { log?.note(.regionEnd(r)) }
        return planned?.run(module, inputs, body) ?? body(inputs)
    }
}

/// Timed steps: each op's forward time (since the op before it recorded) and backward time
/// (until the next node's backward starts), medians over the runs, and the step times.
enum TimingPass {
    struct Result {
        var forward: [String: Double]
        var backward: [String: Double]
        var step: Double
    }

    static func run(_ runner: StepRunner, runs: Int, regions: [String: Int]) throws -> Result {
        var forwardTimes: [String: [Double]] = [:]
        var backwardTimes: [String: [Double]] = [:]
        var stepTimes: [Double] = []
        for _ in 0..<runs {
            let clock = Clock()
            let start = monotonicSeconds()
            try withModuleExecution(CaptureExecution(regions: regions, log: nil, planned: nil)) {
                try MemoryLedger.withLedger(runner.ledger) {
                    try runner.observingEvictor({ clock.evictor($0) }) {
                        try runner.limited("timed step") {
                            runner.begin()
                            AutogradContext.with({ ctx in
                                ctx.opObserver = { node, _ in clock.forward(node.name) }
                                ctx.backwardObserver = { node in clock.backward(node.name) }
                            }) {
                                clock.last = monotonicSeconds()
                                let loss = runner.limitedForward()
                                clock.last = monotonicSeconds()
                                loss.backward()
                                clock.backward("")
                            }
                            runner.update()
                        }
                    }
                }
            }
            stepTimes.append(monotonicSeconds() - start - clock.pausedSeconds)
            for (n, t) in clock.forwardTimes { forwardTimes[n, default: []].append(t) }
            for (n, t) in clock.backwardTimes { backwardTimes[n, default: []].append(t) }
        }
        return Result(forward: forwardTimes.mapValues { median($0) }, backward: backwardTimes.mapValues { median($0) },
                      step: median(stepTimes))
    }

    /// Per-op timing (single-threaded use by the step). The evictor's work and its recomputes
    /// are left out of the op they happen in (the clock pauses).
    private final class Clock: @unchecked Sendable {
        var last = 0.0
        var forwardTimes: [(String, Double)] = []
        var backwardTimes: [(String, Double)] = []
        private var currentBackward: String? = nil
        private(set) var pausedSeconds = 0.0
        private var pauseDepth = 0
        private var pausedAt = 0.0
        func evictor(_ event: DynamicRematerializer.TimelineEvent) {
            switch event {
            case .evictionBegins, .recomputeBegins:
                if pauseDepth == 0 { pausedAt = monotonicSeconds() }
                pauseDepth += 1
            case .evictionEnds, .recomputeEnds:
                pauseDepth -= 1
                if pauseDepth == 0 {
                    let paused = monotonicSeconds() - pausedAt
                    pausedSeconds += paused
                    last += paused
                }
            case .rebuilt:
                break
            }
        }
        func forward(_ name: String) {
            let now = monotonicSeconds()
            forwardTimes.append((name, now - last))
            last = now
        }
        func backward(_ name: String) {
            let now = monotonicSeconds()
            if let c = currentBackward { backwardTimes.append((c, now - last)) }
            currentBackward = name
            last = now
        }
    }
}

/// The unplanned step with the ledger's timeline on: the forward ops (names, kinds, regions,
/// inputs, what they save), every storage the step allocates (owner, bytes, category, phase,
/// consumers, liveness) and the event sequence the simulator replays.
enum TimelinePass {
    /// The graph, and the tensor of each storage the step allocated or freed (by storage id).
    static func run(_ runner: StepRunner, regions: [String: Int], timing: TimingPass.Result) throws -> (StepGraph, [Int: Int]) {
        let ledger = runner.ledger
        let log = CaptureLog(ledger)
        var base = 0
        var baselineByCategory: [MemoryCategory: Int] = [:]
        var events: [MemoryEvent] = []
        try withModuleExecution(CaptureExecution(regions: regions, log: log, planned: nil)) {
            try MemoryLedger.withLedger(ledger) {
                try runner.observingEvictor({ log.note(.evictor($0)) }) {
                    try runner.limited("timeline step") {
                        runner.begin()
                        base = ledger.currentBytes
                        baselineByCategory = ledger.breakdown
                        ledger.startTimeline()
                        AutogradContext.with({ ctx in
                            ctx.opObserver = { node, output in log.note(.forwardOp(.init(node, output))) }
                            ctx.backwardObserver = { node in log.note(.backwardOp(node.name)) }
                        }) {
                            let loss = runner.limitedForward()
                            log.note(.forwardEnd)
                            loss.backward()
                        }
                        log.note(.backwardEnd)
                        runner.update()
                        events = ledger.stopTimeline()
                    }
                }
            }
        }
        let entries = Self.unconstrained(log.merged(events))

        // The forward ops, in order, with the region they ran in.
        var records: [(op: CaptureLog.ForwardOp, region: Int?)] = []
        var region: Int? = nil
        for case .marker(let m) in entries {
            switch m {
            case .regionStart(let r): region = r
            case .regionEnd: region = nil
            case .forwardOp(let op): records.append((op, region))
            default: break
            }
        }
        var ops: [StepGraph.Op] = []
        var opIndex: [String: Int] = [:]
        var slots: [(name: String, saver: String, storage: Int, role: String, shape: [Int], isOutput: Bool, dtype: DType, offset: Int)] = []
        var ownerOfStorage: [Int: Int] = [:]
        var outputStorage: [Int: Int] = [:]
        var consumersOfStorage: [Int: [Int]] = [:]
        for (r, region) in records {
            let i = ops.count
            opIndex[r.name] = i
            ops.append(StepGraph.Op(name: r.name, kind: r.kind, rank: i, region: region, inputs: r.inputs,
                                    seconds: timing.forward[r.name] ?? 0, outputTensor: nil))
            for s in r.slots {
                if ownerOfStorage[s.storage] == nil { ownerOfStorage[s.storage] = i }
                slots.append((s.name, r.name, s.storage, s.role, s.shape, s.isOutput, s.dtype, s.offset))
            }
            if ownerOfStorage[r.outputStorage] == nil { ownerOfStorage[r.outputStorage] = i }
            outputStorage[i] = r.outputStorage
            for p in r.inputs {
                if let pi = opIndex[p], let ps = outputStorage[pi] { consumersOfStorage[ps, default: []].append(i) }
            }
        }

        // Tensors: every storage the step allocates or frees, indexed in order of first appearance.
        var tensors: [StepGraph.TensorInfo] = []
        var tensorOf: [Int: Int] = [:]
        var sequence: [StepGraph.Event] = []
        var phase = StepGraph.Phase.forward
        var backwardStartIndex = 0
        let roleOf = Dictionary(slots.map { ($0.storage, $0.role) }, uniquingKeysWith: { a, _ in a })
        var forwardOp = 0
        for entry in entries {
            switch entry {
            case .marker(.forwardEnd):
                phase = .backward
                backwardStartIndex = sequence.count
            case .marker(.backwardEnd):
                phase = .optimizer
            case .marker(.regionStart(let r)):
                sequence.append(.regionStart(r))
            case .marker(.regionEnd(let r)):
                sequence.append(.regionEnd(r))
            case .marker(.forwardOp):
                sequence.append(.forwardOp(forwardOp))
                forwardOp += 1
            case .marker(.backwardOp(let name)):
                sequence.append(.backwardOp(name))
            case .marker(.evictor):
                break   // taken out by unconstrained(_:)
            case .memory(let e):
                switch e.kind {
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
                    sequence.append(.allocate(i))
                case .free:
                    if tensorOf[e.storageID] == nil {
                        let i = tensors.count
                        tensorOf[e.storageID] = i
                        var t = StepGraph.TensorInfo(id: i, name: e.name + "#\(i)", owner: nil, bytes: e.bytes, category: e.category,
                                                     phase: phase, savedBy: [], consumers: [])
                        t.preexisting = true
                        tensors.append(t)
                    }
                    sequence.append(.free(tensorOf[e.storageID]!))
                case .move:
                    if let i = tensorOf[e.storageID], e.category == .gradients || e.category == .optimizerState || e.category == .parameters {
                        tensors[i].category = e.category
                    }
                case .mark:
                    break
                }
            }
        }
        for (o, s) in outputStorage { if let t = tensorOf[s] { ops[o].outputTensor = t } }
        var graphSlots: [StepGraph.Slot] = []
        for s in slots {
            guard let t = tensorOf[s.storage] else { continue }   // data or parameters from before the step
            tensors[t].savedBy.append(s.name)
            var slot = StepGraph.Slot(name: s.name, saver: s.saver, tensor: t, role: s.role, shape: s.shape, isOutput: s.isOutput,
                                      dtype: s.dtype)
            slot.offset = s.offset
            graphSlots.append(slot)
        }
        // Liveness through slots, in backward order.
        var backwardRank = 0
        let slotsBySaver = Dictionary(grouping: graphSlots, by: \.saver)
        for case .backwardOp(let name) in sequence {
            for s in slotsBySaver[name] ?? [] {
                if tensors[s.tensor].firstBackwardUse == nil { tensors[s.tensor].firstBackwardUse = backwardRank }
                tensors[s.tensor].lastBackwardUse = backwardRank
            }
            backwardRank += 1
        }
        let graph = StepGraph(model: runner.model.typeName, inputShape: runner.inputShape, regions: [], ops: ops,
                              tensors: tensors, baselineBytes: base, baselineByCategory: baselineByCategory,
                              measuredPeakBytes: ledger.peakBytes, stepSeconds: timing.step,
                              backwardSeconds: timing.backward, keptSequence: sequence,
                              backwardStartIndex: backwardStartIndex, droppedForward: [], slots: graphSlots)
        return (graph, tensorOf)
    }

    /// The entries as the step would have made them unconstrained: the evictor's frees and its
    /// recomputes' allocations, frees and region markers left out, and a rebuilt tensor's later events given
    /// the storage the forward made it in. Unchanged when no evictor ran.
    static func unconstrained(_ entries: [CaptureLog.Entry]) -> [CaptureLog.Entry] {
        var result: [CaptureLog.Entry] = []
        result.reserveCapacity(entries.count)
        var hidden = 0
        var madeHidden = Set<Int>()
        var forwardStorage: [Int: Int] = [:]
        for entry in entries {
            switch entry {
            case .marker(.evictor(let event)):
                switch event {
                case .evictionBegins, .recomputeBegins: hidden += 1
                case .evictionEnds, .recomputeEnds: hidden -= 1
                case .rebuilt(let original, let storage): forwardStorage[storage] = original
                }
            case .memory(var e):
                if hidden > 0 {
                    if e.kind == .allocate { madeHidden.insert(e.storageID) }
                    continue
                }
                if let original = forwardStorage[e.storageID] {
                    e.storageID = original
                } else if madeHidden.contains(e.storageID) {
                    continue   // a recompute's tensor that outlived it, not a rebuilt one
                }
                result.append(.memory(e))
            case .marker:
                if hidden == 0 { result.append(entry) }   // a recompute's regions are not the step's
            }
        }
        return result
    }
}

/// The forward with every candidate dropped (each block a region that recomputes all its
/// candidates): where each tensor dies when no slot holds it. Its allocations must match the
/// unplanned forward's one for one (else the step is not deterministic and planning stops).
enum DroppedForwardPass {
    /// Whether an allocation is a part of a packed saved tensor: labelled `op:role.part`
    /// (`blocks.0.attn/sdpa#0:output.data`, with the capture's `#id` suffix or not), where op
    /// outputs and temporaries are labelled by their kind (`sdpa`, `copy`) or by `op:role`.
    static func isPackedPart(_ name: String) -> Bool {
        guard let colon = name.lastIndex(of: ":") else { return false }
        return name[colon...].contains(".")
    }

    /// `tensorOfStorage`: the unplanned step's tensor of each storage id (a storage of that step
    /// freed during this forward is that tensor).
    static func run(_ runner: StepRunner, regions: [String: Int], tensorOfStorage: [Int: Int], into graph: inout StepGraph) throws {
        let ledger = runner.ledger
        let log = CaptureLog(ledger)
        var events: [MemoryEvent] = []
        try withModuleExecution(CaptureExecution(regions: regions, log: log, planned: Set(graph.candidates.map(\.name)))) {
            try MemoryLedger.withLedger(ledger) {
                try runner.observingEvictor({ log.note(.evictor($0)) }) {
                try runner.limited("forward with every candidate dropped") {
                    runner.begin()
                    ledger.startTimeline()
                    AutogradContext.with({ ctx in
                        ctx.opObserver = { node, output in log.note(.forwardOp(.init(node, output))) }
                    }) {
                        let loss = runner.limitedForward()
                        events = ledger.stopTimeline()
                        withExtendedLifetime(loss) {}
                    }
                }
                }
            }
        }
        let opIndex = Dictionary(uniqueKeysWithValues: graph.ops.enumerated().map { ($0.element.name, $0.offset) })
        let forwardAllocations = graph.keptSequence[..<graph.backwardStartIndex].compactMap { ev -> Int? in
            if case .allocate(let t) = ev { return t }
            return nil
        }
        var sequence: [StepGraph.Event] = []
        var ordinal = 0
        var droppedTensor: [Int: Int] = [:]
        for entry in TimelinePass.unconstrained(log.merged(events)) {
            switch entry {
            case .marker(.regionStart(let r)): sequence.append(.regionStart(r))
            case .marker(.regionEnd(let r)): sequence.append(.regionEnd(r))
            case .marker(.forwardOp(let op)):
                if let i = opIndex[op.name] { sequence.append(.forwardOp(i)) }
            case .marker: break
            case .memory(let e):
                switch e.kind {
                case .allocate:
                    // A saved tensor the unplanned forward packed (autocast's 2-byte copies) is
                    // not packed when its op is dropped here: skip those the unplanned forward
                    // made and this one does not.
                    while ordinal < forwardAllocations.count, Self.isPackedPart(graph.tensors[forwardAllocations[ordinal]].name),
                          !Self.isPackedPart(e.name) {
                        ordinal += 1
                    }
                    guard ordinal < forwardAllocations.count, graph.tensors[forwardAllocations[ordinal]].bytes == e.bytes else {
                        throw PlanningError.nondeterministicStep(detail: "allocation #\(ordinal) of the forward (\(e.name), \(e.bytes) bytes) does not match")
                    }
                    droppedTensor[e.storageID] = forwardAllocations[ordinal]
                    sequence.append(.allocate(forwardAllocations[ordinal]))
                    ordinal += 1
                case .free:
                    if let t = droppedTensor[e.storageID] ?? tensorOfStorage[e.storageID] { sequence.append(.free(t)) }
                case .move, .mark:
                    break
                }
            }
        }
        while ordinal < forwardAllocations.count, Self.isPackedPart(graph.tensors[forwardAllocations[ordinal]].name) { ordinal += 1 }
        guard ordinal == forwardAllocations.count else {
            throw PlanningError.nondeterministicStep(detail: "the forward allocated \(forwardAllocations.count) tensors, then \(ordinal)")
        }
        // Where each tensor dies in the forward when no slot holds it.
        var rank = -1
        for ev in sequence {
            switch ev {
            case .forwardOp(let i): rank = i
            case .free(let t): graph.tensors[t].lastForwardUse = rank
            default: break
            }
        }
        graph.droppedForward = sequence
    }
}
