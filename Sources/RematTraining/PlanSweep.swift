/// A measured budget sweep: one capture of a workload's step, plans at a grid of budgets for
/// each set of actions (recompute only, lossless, lossy codecs allowed, …), then every plan run
/// on one model and optimizer with `none`, interleaved (``InterleavedTiming``: one untimed and
/// one timed step of each per round), so that each plan's measured peak (ledger) and step-time ratio to `none` sit
/// beside the simulator's prediction.
public struct PlanSweepResult: Codable, Sendable {
    public struct Row: Codable, Sendable {
        public var actions: String
        public var budget_bytes: Int
        public var predicted_peak_bytes: Int
        public var measured_peak_bytes: Int
        public var predicted_ratio: Double
        public var measured_ratio: Double
        public var ratio_min: Double
        public var ratio_max: Double
        public var recomputed_ops: Int
        public var compressed_ops: Int
        public var offloaded_ops: Int
        /// Bytes the plan's offloads spill in a step.
        public var offloaded_bytes: Int
        public var lossy_ops: Int
        public var solver: String
        public var activation_peak_bytes: Int
        /// Predicted peak minus measured, over measured.
        public var peak_error: Double { Double(predicted_peak_bytes - measured_peak_bytes) / Double(Swift.max(measured_peak_bytes, 1)) }
    }
    public var model: String
    public var batch: Int
    public var threads: Int
    public var rounds: Int
    public var unconstrained_peak_bytes: Int
    public var none_median_step_ms: Double
    public var none_activation_peak_bytes: Int
    public var planning_seconds: Double
    /// The least peak each set of actions reaches, by its name.
    public var least_peak_bytes: [String: Int]
    public var rows: [Row]
}

extension TrainingBenchmark {
    public static func planSweep(_ workload: Workload, batchSize: Int, options: [PlanOptions], points: Int, rounds: Int,
                                 ledger: MemoryLedger = .shared) throws -> PlanSweepResult {
        let trainer = Trainer(model: workload.model, optimizer: workload.makeOptimizer(), gradientClip: nil, ledger: ledger)
        let nextBatch = workload.batches(batchSize, 7)
        let graph = try trainer.preservingState { try StepCapture.capture(trainer, batch: nextBatch(), timingRuns: 3) }
        let sim = PlanSimulator(graph)
        let start = monotonicSeconds()
        var least: [String: Int] = [:]
        var lowest = Int.max
        for o in options {
            let l = Planner.leastPeak(sim, options: o)
            least[PlanFrontier.name(of: o)] = l
            lowest = Swift.min(lowest, l)
        }
        let grid = Planner.budgetGrid(sim, down: lowest, points: points)
        var plans: [(String, MemoryPlan)] = []
        for o in options {
            for b in grid where b >= least[PlanFrontier.name(of: o)]! {
                plans.append((PlanFrontier.name(of: o), try Planner.plan(sim, budget: .bytes(b), options: o)))
            }
        }
        let planning = monotonicSeconds() - start
        // One predictable spill store for every plan that offloads.
        let store = plans.contains { !$0.1.offload.isEmpty } ? try SpillStore(predictable: true) : nil
        defer { store?.close() }
        func use(_ v: Int) throws {
            try StepVariant(.none).apply(to: workload.model)
            if v > 0 { try workload.model.applyPlan(plans[v - 1].1, store: store) }
        }
        for v in 0...plans.count { try use(v); _ = try trainer.checkedStep(nextBatch()) }
        let (timing, last) = try InterleavedTiming.steps(variants: plans.count + 1, rounds: rounds, apply: use,
                                                         step: { try trainer.checkedStep(nextBatch()) })
        try StepVariant(.none).apply(to: workload.model)
        let rows = plans.enumerated().map { i, entry in
            let (name, p) = entry, v = i + 1
            return PlanSweepResult.Row(actions: name, budget_bytes: p.budgetBytes, predicted_peak_bytes: p.predictedPeakBytes,
                                       measured_peak_bytes: last[v].peakBytes, predicted_ratio: p.predictedOverhead,
                                       measured_ratio: timing.medianRatio(v), ratio_min: timing.ratioRange(v).lowerBound,
                                       ratio_max: timing.ratioRange(v).upperBound, recomputed_ops: p.recomputedCount,
                                       compressed_ops: p.compress.count, offloaded_ops: p.offload.count,
                                       offloaded_bytes: p.offload.reduce(0) { $0 + $1.bytes }, lossy_ops: p.lossyChoices.count, solver: p.solver,
                                       activation_peak_bytes: last[v].activationPeakBytes)
        }
        return PlanSweepResult(model: workload.name, batch: batchSize, threads: Runtime.threads, rounds: rounds,
                               unconstrained_peak_bytes: sim.simulate([]).peakBytes, none_median_step_ms: timing.medianTime(0),
                               none_activation_peak_bytes: last[0].activationPeakBytes, planning_seconds: planning,
                               least_peak_bytes: least, rows: rows)
    }
}
