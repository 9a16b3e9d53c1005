import Testing
import Remat

@Suite("Training under a memory budget")
struct BudgetedTrainingTests {
    static let config = GPTConfig(contextLength: 32, layers: 3, heads: 2, modelDimension: 32, mlpHidden: 128, batchSize: 4)

    static func batches(_ lengths: [Int]) -> [TrainingBatch] {
        var data = ByteSequenceDataset(bytes: ArithmeticText.generate(bytes: 1 << 14, seed: 5), seed: 5)
        return lengths.map { data.nextBatch(batchSize: config.batchSize, length: $0) }
    }

    static func trainer(_ ledger: MemoryLedger) -> Trainer {
        let model = GPT(config, seed: 3)
        return Trainer(model: model, optimizer: Trainer.specAdamW(model), ledger: ledger)
    }

    static func bits(_ t: Trainer) -> [[UInt32]] { t.model.namedTensors.map { $0.1.toArray().map(\.bitPattern) } }

    @Test("plans once per shape, switches plans with the shape, stays under budget, trains bitwise as without a budget")
    func plansPerShape() throws {
        let steps = Self.batches([32, 32, 16, 32, 16])
        let reference = Self.trainer(MemoryLedger())
        let ledger = MemoryLedger()
        let budgeted = Self.trainer(ledger)
        var lines: [String] = []
        let planner = MemoryBudgetPlanner(.fraction(0.9), timingRuns: 1, log: { lines.append($0) })
        budgeted.memoryBudget = planner
        for batch in steps {
            let r = reference.step(batch)
            let b = budgeted.step(batch)
            #expect(r.loss == b.loss, "profiling changed the training")
            guard case .plan(let plan)? = planner.decisions[batch.input.shape] else {
                Issue.record("no plan for \(batch.input.shape): \(lines)"); continue
            }
            #expect(plan.inputShape == batch.input.shape)
            #expect(plan.recomputedCount > 0)
            #expect(b.peakBytes <= plan.budgetBytes, "shape \(batch.input.shape): peak \(b.peakBytes) > budget \(plan.budgetBytes)")
        }
        #expect(planner.capturedShapes == [[4, 32], [4, 16]])
        #expect(lines.count == 2, "\(lines)")
        #expect(Self.bits(reference) == Self.bits(budgeted), "parameters differ from the run without a budget")
        #expect(reference.stepIndex == budgeted.stepIndex)
    }

    @Test("no plan reaches the budget: falls back to checkpointing every block and says so once")
    func fallback() throws {
        let steps = Self.batches([32, 32, 32])
        let reference = Self.trainer(MemoryLedger())
        let budgeted = Self.trainer(MemoryLedger())
        var lines: [String] = []
        let planner = MemoryBudgetPlanner(.bytes(4096), mode: .planned, timingRuns: 1, log: { lines.append($0) })
        budgeted.memoryBudget = planner
        for batch in steps {
            let r = reference.step(batch), b = budgeted.step(batch)
            #expect(r.loss == b.loss)
        }
        #expect(lines.count == 1)
        #expect(lines.first?.contains("falling back to checkpointing every block") == true)
        #expect(lines.first?.contains("below the minimum feasible") == true)
        guard case .fallback? = planner.decisions[[4, 32]] else { Issue.record("expected a fallback"); return }
        #expect(Self.bits(reference) == Self.bits(budgeted))
    }

    @Test("hybrid: a budget the step cannot fit in is refused with a typed error, nothing trained")
    func hybridRefusesABudgetTheStepCannotFit() throws {
        let batch = Self.batches([32])[0]
        let budgeted = Self.trainer(MemoryLedger())
        let before = Self.bits(budgeted)
        var lines: [String] = []
        budgeted.memoryBudget = MemoryBudgetPlanner(.bytes(4096), timingRuns: 1, log: { lines.append($0) })
        #expect(budgeted.memoryBudget?.mode == .hybrid)
        #expect(throws: DynamicBudgetError.self) { try budgeted.checkedStep(batch) }
        #expect(budgeted.stepIndex == 0 && Self.bits(budgeted) == before)
        #expect(lines.first?.contains("went over it") == true, "\(lines)")
        #expect(lines.first?.contains("running it under DTR alone") == true)
    }

    @Test("preservingState puts back parameters, optimizer state and the step counter bitwise")
    func preservingState() throws {
        let batch = Self.batches([32])[0]
        let a = Self.trainer(MemoryLedger()), b = Self.trainer(MemoryLedger())
        a.step(batch); b.step(batch)
        b.preservingState { for _ in 0..<3 { b.step(batch) } }
        #expect(b.stepIndex == 1)
        let ra = a.step(batch), rb = b.step(batch)
        #expect(ra.loss == rb.loss)
        #expect(Self.bits(a) == Self.bits(b))
    }
}
