/// Keeps a training loop under a memory budget: on the first step of every input shape it
/// profiles the step (``StepCapture``, with the trainer's state put back afterwards, so profiling
/// does not train the model), plans for the budget and caches the plan by shape; later steps of a
/// shape reuse its plan, and a step of another shape switches to that shape's plan (made on first
/// sight) instead of running a stale one. When no plan can reach the budget for a shape, the
/// model falls back to checkpointing every block and the planner says so once for that shape.
///
/// ```swift
/// trainer.memoryBudget = MemoryBudgetPlanner(.mebibytes(300))
/// trainer.run(steps: 100, nextBatch: next, log: show)   // plans on the first step
/// ```
public final class MemoryBudgetPlanner {
    public let budget: MemoryBudget
    public let solver: PlanSolver
    /// The actions plans may choose (``PlanOptions``: lossless ones by default).
    public let options: PlanOptions
    /// Timed steps per capture (per-op times are their medians).
    public var timingRuns: Int
    /// Called with one line per event: a plan made, a fallback (once per shape).
    public var log: (String) -> Void

    /// What a shape runs under.
    public enum Decision: Sendable {
        case plan(MemoryPlan)
        /// No plan reaches the budget: every block is checkpointed; the reason says why.
        case fallback(reason: String)
    }

    /// Decisions by input shape.
    public private(set) var decisions: [[Int]: Decision] = [:]
    /// Shapes profiled so far, in order (one capture each).
    public private(set) var capturedShapes: [[Int]] = []
    /// True while a capture runs (its own steps must not plan again).
    public private(set) var isPreparing = false
    private var appliedShape: [Int]? = nil

    public init(_ budget: MemoryBudget, solver: PlanSolver = .auto, options: PlanOptions = .default, timingRuns: Int = 2,
                log: @escaping (String) -> Void = { print($0) }) {
        self.budget = budget
        self.solver = solver
        self.options = options
        self.timingRuns = timingRuns
        self.log = log
    }

    /// Makes sure the model runs `batch`'s shape under its decision (profiling and planning first
    /// when the shape is new). Called by ``Trainer/step(_:)`` before each step.
    public func prepare(_ trainer: Trainer, batch: TrainingBatch) {
        let shape = batch.input.shape
        if decisions[shape] == nil {
            decisions[shape] = decide(trainer, batch: batch)
            capturedShapes.append(shape)
            appliedShape = nil
        }
        guard appliedShape != shape else { return }
        switch decisions[shape]! {
        case .plan(let plan):
            do { try trainer.model.applyPlan(plan) } catch {
                preconditionFailure("memory budget: the plan made for \(shape) does not apply to its own model: \(error)")
            }
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
        let shape = batch.input.shape
        do {
            let graph = try trainer.preservingState { try StepCapture.capture(trainer, batch: batch, timingRuns: timingRuns) }
            let plan = try Planner.plan(graph, budget: budget, solver: solver, options: options)
            log("memory budget \(formatBytes(plan.budgetBytes)) for input \(shape): \(plan.summary)")
            return .plan(plan)
        } catch {
            let reason = String(describing: error)
            log("memory budget \(budget) for input \(shape): no plan fits (\(reason)); falling back to checkpointing every block")
            return .fallback(reason: reason)
        }
    }
}

extension StepCapture {
    /// Captures `trainer`'s step on `batch` (``capture(_:timingRuns:)``).
    public static func capture(_ trainer: Trainer, batch: TrainingBatch, timingRuns: Int = 3) throws -> StepGraph {
        try capture(trainer.stepRunner(batch), timingRuns: timingRuns)
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
