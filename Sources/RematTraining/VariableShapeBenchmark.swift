/// Training under a memory budget on batches whose shape changes from step to step (issue 18):
/// sequence lengths for the language models, batch sizes for the image models, drawn uniformly
/// from a range with a fixed seed. Each mode trains a fresh model (the same seed) for the same
/// stream of batches, and every step's highest memory is measured — for the planner including
/// the profiling it does on the first step of a shape, which today runs unconstrained.
public enum VariableShapeBenchmark {
    /// How the budget is kept.
    public enum Mode: String, Sendable, Codable, CaseIterable {
        /// No budget (the reference for time).
        case none
        /// ``MemoryBudgetPlanner``: each new shape is profiled unconstrained, planned and its plan
        /// cached; later steps of the shape run the plan.
        case planned
        /// ``Trainer/dynamicBudget``: every allocation under the budget as a hard limit (DTR).
        case dynamic
        /// ``MemoryBudgetPlanner`` in its hybrid mode: each new shape profiled under DTR at the
        /// budget and planned; every step runs its plan under the budget as a hard limit.
        case hybrid
    }

    /// What varies between batches: the sequence length (language models) or the batch size
    /// (image models), from `range`, drawn with `seed`.
    public struct Stream: Sendable, Hashable, Codable {
        public var range: ClosedRange<Int>
        public var seed: UInt64
        public init(range: ClosedRange<Int>, seed: UInt64 = 0) {
            self.range = range
            self.seed = seed
        }
    }

    public struct StepRecord: Sendable, Codable {
        /// The batch's shape (its input's).
        public var shape: [Int]
        /// The highest ledger total during the step, profiling included (``measuredStep``).
        public var highestBytes: Int
        /// Milliseconds for the step, profiling and planning included.
        public var milliseconds: Double
        public var loss: Float
        public var evictions: Int = 0
        public var rematerializations: Int = 0
    }

    public struct Run: Sendable, Codable {
        public var mode: Mode
        public var budgetBytes: Int?
        public var steps: [StepRecord]
        public var totalSeconds: Double
        /// Steps whose highest memory went over the budget (0-based indices).
        public var stepsOverBudget: [Int]
        public var highestBytes: Int
        public var distinctShapes: Int
        public var evictions: Int
        public var rematerializations: Int
        /// A step that could not be kept under the budget and the error it ended with.
        public var failure: String? = nil
    }

    /// The batch generator of `workload` at step `i` of `stream`: a token batch of the drawn
    /// length (at most the context length) at the spec batch size `batch`, or an image batch of
    /// the drawn size.
    public static func shapes(_ workload: Workload, batch: Int, stream: Stream, steps: Int) -> [(batch: Int, length: Int?)] {
        let g = RandomGenerator(seed: stream.seed)
        let span = UInt64(stream.range.upperBound - stream.range.lowerBound + 1)
        return (0..<steps).map { _ in
            let v = stream.range.lowerBound + Int(g.nextUInt64() % span)
            switch workload.batchKind {
            case .tokens, .labelledSequences: return (batch, v)
            case .images: return (v, nil)
            }
        }
    }

    /// The workload's model trained `steps` steps on `stream` under `mode`. `budgetBytes` is the
    /// budget (nil for `.none`).
    public static func run(_ name: String, batch: Int, stream: Stream, steps: Int, mode: Mode, budgetBytes: Int?,
                           ledger: MemoryLedger = MemoryLedger(label: "variable-shape")) throws -> Run {
        try MemoryLedger.withLedger(ledger) {
            let workload = try ModelZoo.workload(name)
            let trainer = Trainer(model: workload.model, optimizer: workload.makeOptimizer(), gradientClip: nil, ledger: ledger)
            switch mode {
            case .none: break
            case .planned: trainer.memoryBudget = MemoryBudgetPlanner(.bytes(budgetBytes!), mode: .planned, timingRuns: 1, log: { _ in })
            case .dynamic: trainer.dynamicBudget = DynamicRematerializer(budgetBytes: budgetBytes!)
            case .hybrid: trainer.memoryBudget = MemoryBudgetPlanner(.bytes(budgetBytes!), mode: .hybrid, timingRuns: 1, log: { _ in })
            }
            let plannedShapes = shapes(workload, batch: batch, stream: stream, steps: steps)
            var records: [StepRecord] = []
            var failure: String? = nil
            let start = monotonicSeconds()
            for (i, shape) in plannedShapes.enumerated() {
                let b = makeBatch(workload, shape, seed: stream.seed &+ UInt64(i))
                let t0 = monotonicSeconds()
                do {
                    let (report, highest) = try measuredStep(trainer, b, mode: mode, budgetBytes: budgetBytes, ledger: ledger)
                    records.append(StepRecord(shape: b.input.shape, highestBytes: highest, milliseconds: (monotonicSeconds() - t0) * 1000,
                                              loss: report.loss, evictions: report.dynamic?.evictions ?? 0,
                                              rematerializations: report.dynamic?.rematerializations ?? 0))
                } catch {
                    failure = "step \(i) (input \(b.input.shape)): \(error)"
                    break
                }
            }
            let total = monotonicSeconds() - start
            let over = budgetBytes.map { budget in records.indices.filter { records[$0].highestBytes > budget } } ?? []
            return Run(mode: mode, budgetBytes: budgetBytes, steps: records, totalSeconds: total, stepsOverBudget: over,
                       highestBytes: records.map(\.highestBytes).max() ?? 0, distinctShapes: Set(records.map(\.shape)).count,
                       evictions: records.reduce(0) { $0 + $1.evictions }, rematerializations: records.reduce(0) { $0 + $1.rematerializations },
                       failure: failure)
        }
    }

    /// One step and the highest total the ledger reached in it: under a dynamic budget the step's
    /// own peak (its limit covers the whole step); for the planner, a limit at the budget that
    /// frees nothing watches the whole call, profiling included (which runs before the step's peak
    /// is reset): the budget plus the largest excess when anything went over, else the step's own
    /// peak (the profiling stayed under the budget then); without a budget, the step's peak.
    /// Hybrid: the step's own peak, or the budget plus what the profiling of a new shape went over
    /// it by when it did (every pass of that profiling runs under the budget as a hard limit and
    /// the planner records any excess).
    static func measuredStep(_ trainer: Trainer, _ batch: TrainingBatch, mode: Mode, budgetBytes: Int?,
                             ledger: MemoryLedger) throws -> (StepReport, Int) {
        switch mode {
        case .dynamic, .none:
            let report = try trainer.checkedStep(batch)
            return (report, report.peakBytes)
        case .hybrid:
            let planner = trainer.memoryBudget!
            let isNew = !planner.capturedShapes.contains(batch.input.shape)
            let report = try trainer.checkedStep(batch)
            let profiling = isNew ? planner.profilingExcess[batch.input.shape].map { budgetBytes! + $0 } ?? 0 : 0
            return (report, max(report.peakBytes, profiling))
        case .planned:
            let watch = budgetBytes!
            return try ledger.withLimit(watch, relieve: { _ in }) {
                let report = try trainer.checkedStep(batch)
                let highest = ledger.overLimitAllocations > 0 ? watch + ledger.largestExcessBytes : max(report.peakBytes, 0)
                return (report, highest)
            }
        }
    }

    /// The unconstrained peak of the stream's largest shape (one step of a fresh model).
    public static func largestShapePeak(_ name: String, batch: Int, stream: Stream) throws -> Int {
        let ledger = MemoryLedger(label: "largest-shape")
        return try MemoryLedger.withLedger(ledger) {
            let workload = try ModelZoo.workload(name)
            let trainer = Trainer(model: workload.model, optimizer: workload.makeOptimizer(), gradientClip: nil, ledger: ledger)
            let largest: (batch: Int, length: Int?)
            switch workload.batchKind {
            case .tokens, .labelledSequences: largest = (batch, stream.range.upperBound)
            case .images: largest = (stream.range.upperBound, nil)
            }
            // Two steps: the first makes the optimizer state; the second is a steady-state step.
            _ = try trainer.checkedStep(makeBatch(workload, largest, seed: stream.seed))
            return try trainer.checkedStep(makeBatch(workload, largest, seed: stream.seed)).peakBytes
        }
    }

    static func makeBatch(_ workload: Workload, _ shape: (batch: Int, length: Int?), seed: UInt64) -> TrainingBatch {
        let full = workload.batches(shape.batch, seed)()
        guard let length = shape.length, length < full.input.shape[1] else { return full }
        let input = full.input.narrowed(axis: 1, start: 0, length: length).contiguous()
        // Next-token targets are cut alike; a sequence's label stays.
        let target = full.target.rank == 2 ? full.target.narrowed(axis: 1, start: 0, length: length).contiguous() : full.target
        return TrainingBatch(input: input, target: target)
    }
}
