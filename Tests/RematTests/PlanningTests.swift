import Foundation
import Testing
import Remat

@Suite("Planning under a memory budget")
struct PlanningTests {
    static let config = GPTConfig(contextLength: 32, layers: 3, heads: 2, modelDimension: 32, mlpHidden: 128, batchSize: 4)

    static func tokenBatch(_ c: GPTConfig, batchSize: Int? = nil) -> TrainingBatch {
        var data = ByteSequenceDataset(bytes: ArithmeticText.generate(bytes: 1 << 14, seed: 5), seed: 5)
        return data.nextBatch(batchSize: batchSize ?? c.batchSize, length: c.contextLength)
    }

    static func gptTrainer(seed: UInt64 = 1, ledger: MemoryLedger, attention: AttentionKernel = .default) -> Trainer {
        let model = GPT(config, seed: seed)
        model.setAttentionKernel(attention)
        return Trainer(model: model, optimizer: Trainer.specAdamW(model), gradientClip: nil, ledger: ledger)
    }

    static func resnetTrainer(seed: UInt64 = 1, ledger: MemoryLedger) -> Trainer {
        let model = ResNet(ResNetConfig(stages: [2, 1], width: 32, classes: 5, imageSize: 32), seed: seed)
        return Trainer(model: model, optimizer: SGD(model.parameters, learningRate: 0.01, momentum: 0.9), gradientClip: nil, ledger: ledger)
    }

    static func imageBatch() -> TrainingBatch {
        let g = RandomGenerator(seed: 4)
        let x = Tensor.randn([4, 3, 32, 32], generator: g)
        let y = Tensor(indices: [0, 3, 4, 1], shape: [4])
        return TrainingBatch(input: x, target: y)
    }

    /// Plans at several budgets and checks, on fresh identical models, that a planned step gives
    /// bitwise the same parameters as an unplanned one, stays under budget, and that the
    /// prediction is within 1% of the ledger's peak.
    static func checkBudgets(_ make: (UInt64, MemoryLedger) -> Trainer, batch: TrainingBatch, fractions: [Double]) throws -> Int {
        let graph = try StepCapture.capture(make(1, MemoryLedger()), batch: batch, timingRuns: 1)
        let sim = PlanSimulator(graph)
        let none = sim.simulate([])
        #expect(abs(Double(none.peakBytes - graph.measuredPeakBytes)) <= 0.01 * Double(graph.measuredPeakBytes),
                "unplanned: predicted \(none.peakBytes), measured \(graph.measuredPeakBytes)")
        #expect(!sim.candidates.isEmpty)
        var checked = 0
        let floor = sim.simulate(Set(sim.candidates.indices)).peakBytes
        #expect(floor < none.peakBytes, "recomputing everything saves nothing")
        // Budgets between the minimum feasible (0) and the unconstrained peak (1).
        for fraction in fractions {
            let plan = try Planner.plan(sim, budget: .bytes(floor + Int(Double(none.peakBytes - floor) * fraction)))
            #expect(plan.recomputedCount > 0)
            let refLedger = MemoryLedger(), planLedger = MemoryLedger()
            let ref = make(9, refLedger), planned = make(9, planLedger)
            try planned.model.applyPlan(plan)
            _ = ref.step(batch)
            _ = planned.step(batch)
            let r1 = ref.step(batch), r2 = planned.step(batch)
            #expect(r1.loss == r2.loss)
            for ((name, a), (_, b)) in zip(ref.model.namedParameters, planned.model.namedParameters) {
                #expect(a.toArray().map(\.bitPattern) == b.toArray().map(\.bitPattern), "parameter \(name) differs after a planned step under \(plan.summary); recompute \(plan.recompute.sorted()), compress \(plan.compress.map { "\($0.op):\($0.codec)" }), offload \(plan.offload.map(\.op))")
            }
            for ((name, a), (_, b)) in zip(ref.model.namedBuffers, planned.model.namedBuffers) {
                #expect(a.toArray().map(\.bitPattern) == b.toArray().map(\.bitPattern), "buffer \(name) differs after a planned step")
            }
            #expect(refLedger.currentBytes == planLedger.currentBytes, "the planned step leaves memory behind")
            #expect(r2.peakBytes <= plan.budgetBytes, "fraction \(fraction): measured \(r2.peakBytes) > budget \(plan.budgetBytes)")
            let err = abs(Double(plan.predictedPeakBytes - r2.peakBytes)) / Double(r2.peakBytes)
            #expect(err <= 0.01, "fraction \(fraction): predicted \(plan.predictedPeakBytes), measured \(r2.peakBytes)")
            checked += 1
        }
        return checked
    }

    @Test("gpt: under budget, prediction within 1%, gradients bitwise equal")
    func gptBudgets() throws {
        let n = try Self.checkBudgets({ Self.gptTrainer(seed: $0, ledger: $1) }, batch: Self.tokenBatch(Self.config),
                                      fractions: [0.8, 0.5, 0.2, 0])
        #expect(n == 4)
    }

    @Test("gpt-mini itself (batch 2): under budget, prediction within 1%, gradients bitwise equal")
    func gptMiniBudgets() throws {
        var data = ByteSequenceDataset(bytes: ArithmeticText.generate(bytes: 1 << 14, seed: 5), seed: 5)
        let batch = data.nextBatch(batchSize: 2, length: GPTConfig.gptMini.contextLength)
        let n = try Self.checkBudgets({ seed, ledger in
            let model = GPT(.gptMini, seed: seed)
            return Trainer(model: model, optimizer: Trainer.specAdamW(model), gradientClip: nil, ledger: ledger)
        }, batch: batch, fractions: [0.5, 0])
        #expect(n == 2)
    }

    @Test("resnet: under budget, prediction within 1%, gradients bitwise equal")
    func resnetBudgets() throws {
        let n = try Self.checkBudgets({ Self.resnetTrainer(seed: $0, ledger: $1) }, batch: Self.imageBatch(),
                                      fractions: [0.7, 0.3, 0])
        #expect(n == 3)
    }

    @Test("resnet: the stem is a planning region and the downsample outputs are plannable")
    func resnetStemRegion() throws {
        let trainer = Self.resnetTrainer(ledger: MemoryLedger())
        #expect(trainer.model.planningRegions.first?.0 == "stem")
        let graph = try StepCapture.capture(trainer, batch: Self.imageBatch(), timingRuns: 1)
        #expect(graph.regions.first == "stem")
        let sim = PlanSimulator(graph)
        let floor = sim.simulate(Set(sim.candidates.indices)).peakBytes
        let plan = try Planner.plan(sim, budget: .bytes(floor))
        // Which ops the least-memory plan picks depends on the profiled times (several plans can
        // reach the same peak); what the stem region and outermost blocks guarantee is that the
        // stem's ops and the downsample convolutions' outputs can be planned at all.
        let names = sim.candidates.map(\.name)
        #expect(names.contains { $0.hasPrefix("stem.") }, "\(names)")
        #expect(!trainer.model.blockModules.contains { $0.0.contains("downsample") })
        #expect(names.contains { $0.contains("downsample.0/conv2d") }, "\(names)")
        // What is alive at the predicted peak adds up to it.
        let atPeak = sim.tensorsAtPeak(try sim.recomputeSet(Set(plan.recompute)))
        let bytes = atPeak.reduce(0) { $0 + $1.bytes }
        #expect(bytes <= plan.predictedPeakBytes && bytes + graph.baselineBytes >= plan.predictedPeakBytes)
    }

    @Test("solvers: best matches exhaustive search, greedy and knapsack fit the budget")
    func solversAgainstExhaustive() throws {
        // One block: few enough candidates to enumerate every subset.
        let c = GPTConfig(contextLength: 16, layers: 1, heads: 2, modelDimension: 16, mlpHidden: 32, batchSize: 2)
        let model = GPT(c, seed: 2)
        let trainer = Trainer(model: model, optimizer: Trainer.specAdamW(model), gradientClip: nil, ledger: MemoryLedger())
        let graph = try StepCapture.capture(trainer, batch: Self.tokenBatch(c), timingRuns: 1)
        let sim = PlanSimulator(graph)
        #expect(sim.candidates.count <= PlanSolver.exhaustiveLimit)
        let none = sim.simulate([]).peakBytes, floor = Planner.leastPeak(sim, options: .recomputeOnly)
        #expect(floor <= min(none, sim.simulate(Set(sim.candidates.indices)).peakBytes))
        for k in 1...4 {
            let budget = floor + (none - floor) * k / 5
            let exact = try #require(Planner.exhaustive(sim, budget: budget))
            let best = try Planner.plan(sim, budget: .bytes(budget), solver: .auto, options: .recomputeOnly)
            #expect(best.predictedPeakBytes <= budget)
            #expect(abs(best.predictedStepSeconds - sim.simulate(exact).stepSeconds) < 1e-12,
                    "budget \(budget): auto \(best.predictedStepSeconds) vs exhaustive \(sim.simulate(exact).stepSeconds)")
            // Over every action (lossless codecs too) the plan is never slower than recompute only.
            let fourWay = try Planner.plan(sim, budget: .bytes(budget), solver: .auto)
            #expect(fourWay.predictedPeakBytes <= budget && fourWay.predictedStepSeconds <= best.predictedStepSeconds + 1e-15)
            for s in [PlanSolver.greedy, .knapsack] {
                let p = try Planner.plan(sim, budget: .bytes(budget), solver: s, options: .recomputeOnly)
                #expect(p.predictedPeakBytes <= budget, "\(s) exceeds the budget")
                #expect(p.predictedStepSeconds >= sim.simulate(exact).stepSeconds - 1e-12, "\(s) beats exhaustive search?")
            }
        }
    }

    @Test("a budget below the minimum names the minimum and what it is made of")
    func budgetBelowMinimum() throws {
        let graph = try StepCapture.capture(Self.gptTrainer(ledger: MemoryLedger()), batch: Self.tokenBatch(Self.config), timingRuns: 1)
        #expect {
            try Planner.plan(graph, budget: .bytes(1000))
        } throws: { error in
            let text = String(describing: error)
            return text.contains("below the minimum feasible") && text.contains("parameters") && text.contains("optimizer state")
        }
    }

    @Test("stale and foreign plans are rejected")
    func stalePlans() throws {
        let graph = try StepCapture.capture(Self.gptTrainer(ledger: MemoryLedger()), batch: Self.tokenBatch(Self.config), timingRuns: 1)
        let plan = try Planner.plan(graph, budget: .fraction(0.7))
        // Another shape.
        let other = try StepCapture.capture(Self.gptTrainer(ledger: MemoryLedger()), batch: Self.tokenBatch(Self.config, batchSize: 2), timingRuns: 1)
        #expect(throws: PlanningError.self) { try plan.validate(against: other) }
        // Unknown names.
        var renamed = plan
        renamed.recompute = ["blocks.9.mlp/gelu#0"]
        #expect(throws: PlanningError.self) { try renamed.validate(against: graph) }
        // Another model.
        #expect(throws: PlanningError.self) { try ResNet(.tiny).applyPlan(plan) }
        try plan.validate(against: graph)
        // A plan whose step no longer fits its budget.
        var tight = plan
        tight.budgetBytes = plan.predictedPeakBytes - 1
        #expect(throws: PlanningError.planExceedsBudget(predicted: plan.predictedPeakBytes, budget: plan.predictedPeakBytes - 1)) {
            try tight.validate(against: graph)
        }
    }

    @Test("profile files: export and import give the same step and the same plan")
    func statsRoundTrip() throws {
        let graph = try StepCapture.capture(Self.gptTrainer(ledger: MemoryLedger()), batch: Self.tokenBatch(Self.config), timingRuns: 1)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("remat-stats-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try graph.writeStats(to: dir)
        let read = try StepGraph.readStats(from: dir)
        let same = read == graph
        #expect(same, "the step read back differs from the one written")
        let sim = PlanSimulator(graph)
        let none = sim.simulate([]).peakBytes, floor = sim.simulate(Set(sim.candidates.indices)).peakBytes
        for k in [1, 3] {
            let budget = MemoryBudget.bytes(floor + (none - floor) * k / 4)
            var a = try Planner.plan(graph, budget: budget), b = try Planner.plan(read, budget: budget)
            #expect(a.recomputedCount > 0)
            a.planningSeconds = 0
            b.planningSeconds = 0
            #expect(a == b)
        }
        // The seed's columns come first, with ranks over the whole step.
        let acts = try CSVTable.read(path: dir + "/activation_stats.csv")
        #expect(Array(acts.header.prefix(6)) == ["activation_name", "creation_rank", "last_fw_use_rank", "first_bw_use_rank", "last_bw_use_rank", "avg_mem_size_bytes"])
        let nodes = try CSVTable.read(path: dir + "/node_stats.csv")
        #expect(Array(nodes.header.prefix(6)) == ["rank", "node_name", "node_type", "gtype", "avg_run_time_s", "avg_peak_mem_bytes"])
        #expect(nodes.rows.count == graph.ops.count + graph.backwardOrder.count)

        // A file changed after the profile was written is refused: the folder no longer holds one profile.
        var events = try CSVTable.read(path: dir + "/memory_events.csv")
        let row = try #require(events.rows.firstIndex { $0[2] == "allocate" })
        events.rows[row][3] = "99999"
        try events.write(to: dir + "/memory_events.csv")
        #expect {
            try StepGraph.readStats(from: dir)
        } throws: { error in
            let text = String(describing: error)
            return text.contains("memory_events.csv") && text.contains("mixes two profiles")
        }
        // Without the stamps (a version-1 profile), damaged values are named, with the line.
        let stepJSON = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/step.json"))) as! [String: Any]
        var unstamped = stepJSON
        unstamped["files"] = nil
        unstamped["version"] = 1
        try JSONSerialization.data(withJSONObject: unstamped).write(to: URL(fileURLWithPath: dir + "/step.json"))
        #expect {
            try StepGraph.readStats(from: dir)
        } throws: { error in
            let text = String(describing: error)
            return text.contains("memory_events.csv") && text.contains("line \(row + 2)") && text.contains("99999")
        }
        try FileManager.default.removeItem(atPath: dir + "/saved_slots.csv")
        #expect(throws: PlanningError.self) { try StepGraph.readStats(from: dir) }
        #expect(throws: PlanningError.self) { try StepGraph.readStats(from: dir + "/nowhere") }
    }

    @Test("budgets parse with units and as fractions")
    func budgetParsing() throws {
        #expect(try MemoryBudget.parse("300MiB") == .bytes(300 << 20))
        #expect(try MemoryBudget.parse("1.5GiB") == .bytes(3 << 29))
        #expect(try MemoryBudget.parse("0.5") == .fraction(0.5))
        #expect(throws: PlanningError.self) { try MemoryBudget.parse("lots") }
        #expect(throws: PlanningError.self) { try MemoryBudget.parse("-3MiB") }
    }
}
