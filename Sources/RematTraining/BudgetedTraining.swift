/// Keeps a training loop under a memory budget, in one of three ways (``Mode``).
///
/// - ``Mode/planned``: on the first step of every input shape it profiles the step
///   (``StepCapture``, with the trainer's state put back afterwards, so profiling does not train
///   the model) unconstrained, plans for the budget and caches the plan by shape; later steps of
///   a shape reuse its plan, and a step of another shape switches to that shape's plan (made on
///   first sight) instead of running a stale one. When no plan can reach the budget for a shape,
///   the model falls back to checkpointing every block and the planner says so once for that
///   shape. The profiling of a new shape runs at its full unconstrained peak.
/// - ``Mode/dynamic``: no plans; every step runs under the budget as a hard limit
///   (``DynamicRematerializer``, DTR), as ``Trainer/dynamicBudget`` does.
/// - ``Mode/hybrid``: planned as above, but the profiling of a new shape runs under DTR at the
///   budget (``StepRunner/dynamic``: it records the unconstrained step all the same), and every
///   step runs its plan under the budget as a hard limit, DTR the safety net for what the plan
///   did not foresee: the evictor runs the plan (``DynamicRematerializer/plannedDrops``: the
///   tensors the plan recomputes are dropped as soon as the forward is done with them and
///   rebuilt when backward needs them), and evicts what the plan keeps only when an allocation
///   would still pass the budget. Its plans keep or recompute (the evictor holds saved tensors
///   as they are: no codecs, no offload). A shape no plan fits runs under DTR alone. The default
///   for a budget in bytes with no lossy codec allowed.
///
/// A fraction of the unconstrained peak names a different number of bytes for every shape, known
/// only once the shape is profiled unconstrained: such budgets are planned only.
///
/// ```swift
/// trainer.memoryBudget = MemoryBudgetPlanner(.mebibytes(300))   // hybrid
/// trainer.run(steps: 100, nextBatch: next, log: show)   // plans each new shape under 300 MiB
/// ```
public final class MemoryBudgetPlanner {
    /// How the budget is kept.
    public enum Mode: String, Sendable, Hashable, Codable, CaseIterable {
        /// A plan per shape, profiled unconstrained.
        case planned
        /// DTR alone.
        case dynamic
        /// A plan per shape, profiled under DTR, run with DTR as the safety net.
        case hybrid
    }

    public let budget: MemoryBudget
    public let mode: Mode
    public let solver: PlanSolver
    /// The actions plans may choose (``PlanOptions``: lossless ones by default).
    public let options: PlanOptions
    /// Timed steps per capture (per-op times are their medians).
    public var timingRuns: Int
    /// Called with one line per event: a plan made, a fallback (once per shape).
    public var log: (String) -> Void
    /// The evictor of the dynamic and hybrid modes (its limit is the budget); nil when planned.
    public let evictor: DynamicRematerializer?

    /// What a shape runs under.
    public enum Decision: Sendable {
        case plan(MemoryPlan)
        /// No plan reaches the budget: every block is checkpointed (planned), or DTR alone
        /// (hybrid); the reason says why.
        case fallback(reason: String)
    }

    /// Decisions by input shape (none in the dynamic mode).
    public private(set) var decisions: [[Int]: Decision] = [:]
    /// Shapes profiled so far, in order (one capture each).
    public private(set) var capturedShapes: [[Int]] = []
    /// Hybrid: shapes whose profiling went over the budget even with every evictable tensor
    /// evicted, with the most it went over by (bytes); such a shape runs under DTR alone.
    public private(set) var profilingExcess: [[Int]: Int] = [:]
    /// Keep each shape's captured step in ``graphs`` (for a report of the plans; off by default:
    /// a long stream of shapes would keep one graph per shape).
    public var keepsGraphs = false
    /// With ``keepsGraphs``: the captured step each shape's plan was made from.
    public private(set) var graphs: [[Int]: StepGraph] = [:]
    /// True while a capture runs (its own steps must not plan again).
    public private(set) var isPreparing = false
    private var appliedShape: [Int]? = nil

    /// `mode` nil: ``defaultMode(for:options:)``. A fraction with the dynamic or hybrid mode stops
    /// the program (check with ``modeApplies(_:to:)`` first). The hybrid mode plans keep or
    /// recompute only, whatever `options` allow (lossless codecs and offload are left out).
    public init(_ budget: MemoryBudget, mode: Mode? = nil, solver: PlanSolver = .auto, options: PlanOptions = .default,
                timingRuns: Int = 2, log: @escaping (String) -> Void = { print($0) }) {
        let resolved = mode ?? Self.defaultMode(for: budget, options: options)
        precondition(Self.modeApplies(resolved, to: budget),
                     "MemoryBudgetPlanner: the \(resolved) mode needs a budget in bytes, not \(budget) (a fraction of each shape's own unconstrained peak is known only after profiling it unconstrained)")
        precondition(resolved != .hybrid || options.allowLossy.isEmpty,
                     "MemoryBudgetPlanner: the hybrid mode plans keep or recompute only; lossy codecs (\(options.allowLossy)) need the planned mode")
        self.budget = budget
        self.mode = resolved
        self.solver = solver
        self.options = resolved == .hybrid ? .recomputeOnly : options
        self.timingRuns = timingRuns
        self.log = log
        if case .bytes(let b) = budget, resolved != .planned {
            evictor = DynamicRematerializer(budgetBytes: b)
        } else {
            evictor = nil
        }
    }

    /// Hybrid for bytes; planned for a fraction, or when lossy codecs are allowed (the hybrid
    /// mode's plans keep or recompute).
    public static func defaultMode(for budget: MemoryBudget, options: PlanOptions = .default) -> Mode {
        if case .bytes = budget, options.allowLossy.isEmpty { return .hybrid }
        return .planned
    }

    /// Whether `mode` can keep `budget`: the dynamic and hybrid modes need bytes.
    public static func modeApplies(_ mode: Mode, to budget: MemoryBudget) -> Bool {
        if case .fraction = budget { return mode == .planned }
        return true
    }

    /// Makes sure the model runs `batch`'s shape under its decision (profiling and planning first
    /// when the shape is new). Called by ``Trainer/step(_:)`` before each step.
    public func prepare(_ trainer: Trainer, batch: TrainingBatch) {
        guard mode != .dynamic else { return }
        let shape = batch.input.shape
        if decisions[shape] == nil {
            decisions[shape] = decide(trainer, batch: batch)
            capturedShapes.append(shape)
            appliedShape = nil
        }
        guard appliedShape != shape else { return }
        switch decisions[shape]! {
        case .plan(let plan) where mode == .hybrid:
            // The evictor runs the plan over the unplanned model (the one recompute engine).
            try? trainer.model.applyCheckpointing(.none)   // clearing never throws
            evictor?.plannedDrops = plan.recomputeGroups
        case .plan(let plan):
            do { try trainer.model.applyPlan(plan) } catch {
                preconditionFailure("memory budget: the plan made for \(shape) does not apply to its own model: \(error)")
            }
        case .fallback where mode == .hybrid:
            try? trainer.model.applyCheckpointing(.none)   // DTR alone
            evictor?.plannedDrops = []
        case .fallback:
            do { try trainer.model.applyCheckpointing(.all) } catch {
                log("memory budget \(budget) for input \(shape): cannot checkpoint every block either (\(error)); the step runs unconstrained")
            }
        }
        appliedShape = shape
    }

    private func decide(_ trainer: Trainer, batch: TrainingBatch) -> Decision {
        isPreparing = true
        defer { isPreparing = false }
        evictor?.plannedDrops = []   // the capture records the step as it is
        let shape = batch.input.shape
        let fallback = mode == .hybrid ? "running it under DTR alone" : "falling back to checkpointing every block"
        do {
            let graph = try trainer.preservingState {
                try StepCapture.capture(trainer, batch: batch, timingRuns: timingRuns, dynamic: evictor)
            }
            if keepsGraphs { graphs[shape] = graph }
            let plan = try Planner.plan(graph, budget: budget, solver: solver, options: options)
            log("memory budget \(formatBytes(plan.budgetBytes)) for input \(shape): \(plan.summary)")
            return .plan(plan)
        } catch {
            if case PlanningError.captureOverBudget(_, _, _, let excess) = error { profilingExcess[shape] = excess }
            let reason = String(describing: error)
            log("memory budget \(budget) for input \(shape): no plan fits (\(reason)); \(fallback)")
            return .fallback(reason: reason)
        }
    }
}

extension StepCapture {
    /// Captures `trainer`'s step on `batch` (``capture(_:timingRuns:)``), under `dynamic`'s
    /// limit when given (``StepRunner/dynamic``).
    public static func capture(_ trainer: Trainer, batch: TrainingBatch, timingRuns: Int = 3,
                               dynamic: DynamicRematerializer? = nil) throws -> StepGraph {
        try capture(trainer.stepRunner(batch, dynamic: dynamic), timingRuns: timingRuns)
    }
}

extension Trainer {
    /// Profiles a step on `batch` (``StepCapture``: a few real training steps), plans for `budget`
    /// and applies the plan to the model. Returns the plan and the captured step.
    @discardableResult
    public func planMemory(budget: MemoryBudget, batch: TrainingBatch, solver: PlanSolver = .auto, options: PlanOptions = .default,
                           timingRuns: Int = 2) throws -> (plan: MemoryPlan, graph: StepGraph) {
        let graph = try StepCapture.capture(stepRunner(batch), timingRuns: timingRuns)
        let plan = try Planner.plan(graph, budget: budget, solver: solver, options: options)
        try model.applyPlan(plan)
        return (plan, graph)
    }
}
