extension Module {
    /// Runs the model's blocks under `plan`: each block with ops to recompute becomes a
    /// ``CheckpointRegion`` that recomputes those ops (by stable name) and keeps the rest; the
    /// others run as usual. Replaces any checkpointing set before.
    ///
    /// Throws when the plan is for another model or other blocks (a foreign plan).
    public func applyPlan(_ plan: MemoryPlan) throws {
        let blocks = planningRegions
        guard plan.model == typeName, plan.regions == blocks.map(\.0) else {
            throw PlanningError.stalePlan(expected: "\(plan.model) with blocks \(plan.regions.prefix(3).joined(separator: ", "))…",
                                          found: "\(typeName) with blocks \(blocks.map(\.0).prefix(3).joined(separator: ", "))…")
        }
        for (_, m) in namedModules { m.callWrapper = nil }
        if let chain = self as? any BlockChainModel { chain.blockSchedule = nil }
        let byRegion = plan.recomputeByRegion
        for (path, m) in blocks {
            guard let set = byRegion[path], !set.isEmpty else { continue }
            m.callWrapper = { _, x, body in plannedRegion(set, x, body) }
        }
    }
}

extension MemoryPlan {
    /// Checks the plan against a captured step of the same model: same shape, every name known,
    /// and the step under it, simulated, within the budget. (Every recompute has its inputs: a
    /// block re-runs from its own input, which the block keeps, and recomputes the ops on the path.)
    public func validate(against graph: StepGraph) throws {
        guard model == graph.model, regions == graph.regions else {
            throw PlanningError.stalePlan(expected: "\(model)", found: "\(graph.model)")
        }
        guard inputShape == graph.inputShape else {
            throw PlanningError.stalePlan(expected: "\(model) on input \(inputShape)", found: "input \(graph.inputShape)")
        }
        let sim = PlanSimulator(graph)
        let predicted = sim.simulate(try sim.recomputeSet(Set(recompute))).peakBytes
        guard predicted <= budgetBytes else {
            throw PlanningError.planExceedsBudget(predicted: predicted, budget: budgetBytes)
        }
    }
}

extension Trainer {
    /// Profiles a step on `batch` (``StepCapture``: a few real training steps), plans for `budget`
    /// and applies the plan to the model. Returns the plan and the captured step.
    @discardableResult
    public func planMemory(budget: MemoryBudget, batch: TrainingBatch, solver: PlanSolver = .auto,
                           timingRuns: Int = 2) throws -> (plan: MemoryPlan, graph: StepGraph) {
        let graph = try StepCapture.capture(self, batch: batch, timingRuns: timingRuns)
        let plan = try Planner.plan(graph, budget: budget, solver: solver)
        try model.applyPlan(plan)
        return (plan, graph)
    }
}

/// One call of a block under a plan: a region that recomputes the ops named in `recompute`.
func plannedRegion(_ recompute: Set<String>, _ x: Tensor, _ body: @escaping (Tensor) -> Tensor) -> Tensor {
    guard isGradEnabled else { return body(x) }
    return CheckpointRegion(inputs: [x], options: CheckpointOptions(), decisions: .planned(recompute), body: { [body($0[0])] }).run([x])[0]
}
