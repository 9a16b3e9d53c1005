extension Module {
    /// Runs the model's blocks under `plan`: each block with ops to recompute becomes a
    /// ``CheckpointRegion`` that recomputes those ops (by stable name) and keeps the rest; the
    /// others run as usual; the saved tensors the plan compresses are packed by its codecs (by
    /// slot name); the saved tensors it offloads go to `store` (default: the predictable store of
    /// the offload in force, else a new ``SpillStore/predictable`` one in the system's temporary
    /// directory: the simulator predicts a plan's peak for a predictable store). Replaces any checkpointing,
    /// compression and offload set before.
    ///
    /// Throws when the plan is for another model or other blocks (a foreign plan), or when the
    /// plan offloads and no spill store can be made (``OffloadError``).
    public func applyPlan(_ plan: MemoryPlan, store: SpillStore? = nil) throws {
        let blocks = planningRegions
        guard plan.model == typeName, plan.regions == blocks.map(\.0) else {
            throw PlanningError.stalePlan(expected: "\(plan.model) with blocks \(plan.regions.prefix(3).joined(separator: ", "))…",
                                          found: "\(typeName) with blocks \(blocks.map(\.0).prefix(3).joined(separator: ", "))…")
        }
        let current = activationOffload?.store
        let spill = plan.offload.isEmpty ? nil : try (store ?? (current?.predictable == true ? current : nil) ?? SpillStore(predictable: true))
        execution = ExecutionStrategy(plan)
        applyActivationCompression(plan.compressionRules)
        applyActivationOffload(spill.flatMap { plan.activationOffload(to: $0) })
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
        let predicted = sim.simulate(try sim.actions(of: self)).peakBytes
        guard predicted <= budgetBytes else {
            throw PlanningError.planExceedsBudget(predicted: predicted, budget: budgetBytes)
        }
    }
}

extension ExecutionStrategy {
    /// The strategy that runs `plan`: every block with ops to recompute as a planned region.
    public init(_ plan: MemoryPlan) {
        self.init(regions: plan.recomputeByRegion.filter { !$0.value.isEmpty }.mapValues { .planned(recompute: $0) })
    }
}
