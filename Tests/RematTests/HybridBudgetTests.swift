import Testing
import Remat

/// Profiling under the budget (issue 18, planner + DTR): a capture whose steps run under a hard
/// limit records the same step graph as an unlimited capture, and stays under the limit.
@Suite struct HybridBudgetTests {
    /// The graph without what depends on the clock.
    static func untimed(_ g: StepGraph) -> StepGraph {
        var g = g
        for i in g.ops.indices { g.ops[i].seconds = 0 }
        g.backwardSeconds = [:]
        g.stepSeconds = 0
        g.measuredPeakBytes = 0
        g.actionCosts = nil
        return g
    }

    static func capture(_ kernel: AttentionKernel, budget: (_ resident: Int, _ peak: Int) -> Int?) throws
        -> (graph: StepGraph, peak: Int, budget: Int?, statistics: DynamicRematerializer.Statistics?) {
        let ledger = MemoryLedger()
        return try MemoryLedger.withLedger(ledger) {
            let (trainer, batch) = DynamicBudgetTrainingTests.gptTrainer(ledger)
            trainer.model.setAttentionKernel(kernel)
            trainer.step(batch)   // optimizer state exists
            let resident = ledger.currentBytes
            let peak = trainer.preservingState { trainer.step(batch).peakBytes }
            let bytes = budget(resident, peak)
            let dtr = bytes.map { DynamicRematerializer(budgetBytes: $0) }
            ledger.resetPeak()
            let graph = try trainer.preservingState { try StepCapture.capture(trainer, batch: batch, timingRuns: 1, dynamic: dtr) }
            return (graph, ledger.peakBytes, bytes, dtr?.statistics)
        }
    }

    /// Equal lists, or the first difference (the lists are long).
    static func expectSame<T: Equatable>(_ a: [T], _ b: [T], _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
        if let i = zip(a.indices, b.indices).first(where: { a[$0.0] != b[$0.1] })?.0 {
            Issue.record("\(what) differ first at \(i): \(a[i]) unlimited, \(b[i]) under the limit", sourceLocation: sourceLocation)
        } else if a.count != b.count {
            Issue.record("\(what): \(a.count) unlimited, \(b.count) under the limit", sourceLocation: sourceLocation)
        }
    }

    @Test(arguments: AttentionKernel.allCases, [0.6, 0.4])
    func aCaptureUnderTheBudgetRecordsTheUnconstrainedStep(kernel: AttentionKernel, fraction: Double) throws {
        let free = try Self.capture(kernel) { _, _ in nil }
        let limited = try Self.capture(kernel) { resident, peak in resident + Int(fraction * Double(peak - resident)) }
        let budget = try #require(limited.budget)
        let stats = try #require(limited.statistics)
        // A pass that went over would have thrown; the last pass's peak is under the budget too.
        #expect(stats.evictions > 0 && stats.rematerializations > 0 && stats.overLimitAllocations == 0, "\(stats)")
        #expect(limited.peak <= budget, "the capture's peak \(limited.peak) is over its budget \(budget)")
        #expect(free.graph.measuredPeakBytes > budget)
        let a = Self.untimed(free.graph), b = Self.untimed(limited.graph)
        Self.expectSame(a.ops, b.ops, "ops")
        Self.expectSame(a.tensors, b.tensors, "tensors")
        Self.expectSame(a.slots, b.slots, "slots")
        Self.expectSame(a.keptSequence, b.keptSequence, "kept sequence")
        Self.expectSame(a.droppedForward, b.droppedForward, "dropped forward")
        if a != b { Issue.record("the graphs differ elsewhere") }
        // The simulated unconstrained peak stands for the measured one.
        #expect(limited.graph.measuredPeakBytes == free.graph.measuredPeakBytes)
    }
}

/// Training in the hybrid mode: plans made under the budget, every step under it, bitwise the
/// parameters of training without a budget.
@Suite struct HybridTrainingTests {
    /// `steps` steps of the small GPT on batches of lengths `lengths` (cycled), under `configure`.
    static func train(lengths: [Int], steps: Int, configure: (Trainer, _ resident: Int, _ peak: Int) -> Void)
        throws -> (parameters: [[UInt32]], reports: [StepReport], trainer: Trainer) {
        let ledger = MemoryLedger()
        return try MemoryLedger.withLedger(ledger) {
            let (trainer, _) = DynamicBudgetTrainingTests.gptTrainer(ledger)
            var source = ArithmeticText.dataset(seed: 5)
            let batches = lengths.map { source.nextBatch(batchSize: 2, length: $0) }
            trainer.step(batches[0])   // optimizer state exists
            let resident = ledger.currentBytes
            let peak = trainer.preservingState { batches.map { trainer.step($0).peakBytes }.max()! }
            configure(trainer, resident, peak)
            var reports: [StepReport] = []
            for i in 0..<steps { reports.append(try trainer.checkedStep(batches[i % batches.count])) }
            return (trainer.model.namedParameters.map { $0.1.toArray().map(\.bitPattern) }, reports, trainer)
        }
    }

    @Test func hybridTrainsBitwiseUnderTheBudgetOnNewShapes() throws {
        let lengths = [64, 40, 64, 24, 40]
        let free = try Self.train(lengths: lengths, steps: 6) { _, _, _ in }
        var budget = 0
        let hybrid = try Self.train(lengths: lengths, steps: 6) { trainer, resident, peak in
            budget = resident + (peak - resident) * 6 / 10
            trainer.memoryBudget = MemoryBudgetPlanner(.bytes(budget), timingRuns: 1, log: { _ in })
        }
        let planner = try #require(hybrid.trainer.memoryBudget)
        #expect(planner.mode == .hybrid)
        #expect(planner.capturedShapes.count == 3, "\(planner.capturedShapes)")
        #expect(planner.profilingExcess.isEmpty, "\(planner.profilingExcess)")
        for (i, r) in hybrid.reports.enumerated() {
            #expect(r.peakBytes <= budget, "step \(i): peak \(r.peakBytes) over the budget \(budget)")
            #expect(r.dynamic?.overLimitAllocations == 0)
        }
        #expect(free.reports.contains { $0.peakBytes > budget })
        #expect(hybrid.parameters == free.parameters)
        for (i, (a, b)) in zip(free.reports, hybrid.reports).enumerated() { #expect(a.loss.bitPattern == b.loss.bitPattern, "step \(i)") }
    }

    /// DTR as the safety net of a plan: the evictor runs a plan made for a larger budget
    /// (its recomputed ops dropped at once) under a smaller hard limit; what the plan keeps is
    /// evicted and rebuilt when the limit needs it, bitwise.
    @Test func aPlanUnderATighterLimitIsKeptByEviction() throws {
        let lengths = [64]
        let free = try Self.train(lengths: lengths, steps: 2) { _, _, _ in }
        var limit = 0
        var dropped = 0
        let netted = try Self.train(lengths: lengths, steps: 2) { trainer, resident, peak in
            var source = ArithmeticText.dataset(seed: 5)
            let batch = source.nextBatch(batchSize: 2, length: 64)
            let plan = try! trainer.preservingState {
                try trainer.planMemory(budget: .bytes(resident + (peak - resident) * 8 / 10), batch: batch, timingRuns: 1).plan
            }
            try! trainer.model.applyCheckpointing(.none)
            dropped = plan.recompute.count
            limit = resident + (peak - resident) * 5 / 10
            let dtr = DynamicRematerializer(budgetBytes: limit)
            dtr.plannedDrops = plan.recomputeGroups
            trainer.dynamicBudget = dtr
        }
        #expect(dropped > 0)
        for r in netted.reports {
            let stats = try #require(r.dynamic)
            #expect(stats.evictions > 0 && stats.rematerializations > 0 && stats.overLimitAllocations == 0, "\(stats)")
            #expect(r.peakBytes <= limit)
        }
        #expect(netted.parameters == free.parameters)
    }

    /// The plan's drops alone, under a limit nothing else needs: no eviction, bitwise, and the
    /// peak below keeping everything.
    @Test func plannedDropsAloneAreBitwise() throws {
        let free = try Self.train(lengths: [64], steps: 2) { _, _, _ in }
        var blocks = 0
        let planned = try Self.train(lengths: [64], steps: 2) { trainer, _, _ in
            let dtr = DynamicRematerializer(budgetBytes: 1 << 40)
            blocks = trainer.model.planningRegions.count
            dtr.plannedDrops = trainer.model.planningRegions.map { region in
                ["\(region.0).ln1/layer_norm#0", "\(region.0).ln2/layer_norm#0", "\(region.0).mlp.fc/linear#0", "\(region.0).mlp/gelu#0"]
            }
            trainer.dynamicBudget = dtr
        }
        #expect(planned.parameters == free.parameters)
        for (a, b) in zip(free.reports, planned.reports) {
            // One recompute per block rebuilds its group, as the block's replay would.
            #expect(b.dynamic?.evictions == 0 && b.dynamic?.rematerializations == blocks, "\(String(describing: b.dynamic)) for \(blocks) blocks")
            #expect(b.activationPeakBytes < a.activationPeakBytes, "\(b.activationPeakBytes) vs \(a.activationPeakBytes)")
        }
    }

    /// Evicting around planned regions is refused with a typed error before the step.
    @Test func aPlanInsideADynamicBudgetIsRefused() throws {
        let ledger = MemoryLedger()
        try MemoryLedger.withLedger(ledger) {
            let (trainer, batch) = DynamicBudgetTrainingTests.gptTrainer(ledger)
            let regions = trainer.model.planningRegions.map(\.0)
            trainer.model.execution = ExecutionStrategy(regions: Dictionary(uniqueKeysWithValues: regions.map { ($0, .planned(recompute: [])) }))
            trainer.dynamicBudget = DynamicRematerializer(budgetBytes: 1 << 30)
            #expect {
                try trainer.checkedStep(batch)
            } throws: { error in
                guard case DynamicBudgetError.planInsideDynamicBudget(let named) = error else { return false }
                return named == regions.sorted()
            }
            #expect(trainer.stepIndex == 0)
        }
    }

    @Test func twoBudgetsAreRefused() throws {
        let ledger = MemoryLedger()
        try MemoryLedger.withLedger(ledger) {
            let (trainer, batch) = DynamicBudgetTrainingTests.gptTrainer(ledger)
            trainer.memoryBudget = MemoryBudgetPlanner(.mebibytes(100), log: { _ in })
            trainer.dynamicBudget = DynamicRematerializer(budgetBytes: 100 << 20)
            #expect {
                try trainer.checkedStep(batch)
            } throws: { error in
                guard case DynamicBudgetError.twoBudgets = error else { return false }
                return "\(error)".contains("set one")
            }
            #expect(trainer.stepIndex == 0 && trainer.memoryBudget!.capturedShapes.isEmpty)
        }
    }

    @Test func modesByBudget() {
        #expect(MemoryBudgetPlanner(.mebibytes(10), log: { _ in }).mode == .hybrid)
        #expect(MemoryBudgetPlanner(.fraction(0.5), log: { _ in }).mode == .planned)
        #expect(MemoryBudgetPlanner(.fraction(0.5), log: { _ in }).evictor == nil)
        #expect(!MemoryBudgetPlanner.modeApplies(.hybrid, to: .fraction(0.5)))
        #expect(!MemoryBudgetPlanner.modeApplies(.dynamic, to: .fraction(0.5)))
        #expect(MemoryBudgetPlanner.modeApplies(.dynamic, to: .bytes(1)))
    }
}
