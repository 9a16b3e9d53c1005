import Foundation
import Testing
import Remat

/// Plans over keep, recompute and compress: the simulator's prediction of mixes against the
/// ledger, lossless plans bitwise equal to keeping, lossy ones listed, and the solvers against
/// exhaustive search.
@Suite struct ActionPlanningTests {
    /// Runs `plan` on a fresh model and returns the measured peak of its second step, with the
    /// loss and parameters beside an unplanned reference.
    static func measure(_ make: (UInt64, MemoryLedger) -> Trainer, batch: TrainingBatch, plan: MemoryPlan) throws
        -> (peak: Int, bitwise: Bool, lossDelta: Float) {
        let refLedger = MemoryLedger(), planLedger = MemoryLedger()
        let ref = make(9, refLedger), planned = make(9, planLedger)
        try planned.model.applyPlan(plan)
        _ = ref.step(batch)
        _ = planned.step(batch)
        let r1 = ref.step(batch), r2 = planned.step(batch)
        var bitwise = r1.loss == r2.loss
        for ((_, a), (_, b)) in zip(ref.model.namedParameters, planned.model.namedParameters) where bitwise {
            bitwise = a.toArray().map(\.bitPattern) == b.toArray().map(\.bitPattern)
        }
        #expect(refLedger.currentBytes == planLedger.currentBytes, "the planned step leaves memory behind")
        return (r2.peakBytes, bitwise, abs(r1.loss - r2.loss))
    }

    /// When a measured peak is not the predicted one: the plan, and what the ledger held at its
    /// peak against what the simulator holds at its own (by name, the largest differences).
    static func explainMismatch(_ make: (UInt64, MemoryLedger) -> Trainer, batch: TrainingBatch, plan: MemoryPlan,
                                sim: PlanSimulator, measured: Int) throws {
        let ledger = MemoryLedger()
        let t = make(9, ledger)
        try t.model.applyPlan(plan)
        _ = t.step(batch)
        ledger.resetPeak()
        ledger.startTimeline()
        let again = t.step(batch).peakBytes
        let events = ledger.stopTimeline()
        var live: [Int: MemoryEvent] = [:]
        var best = 0, atPeak: [Int: MemoryEvent] = [:]
        for e in events {
            if e.kind == .allocate { live[e.storageID] = e } else if e.kind == .free { live[e.storageID] = nil }
            if e.liveBytes > best { best = e.liveBytes; atPeak = live }
        }
        let actions = try sim.actions(of: plan)
        print("mismatch: predicted \(plan.predictedPeakBytes) (\(plan.predictedPeakLocation)), measured \(measured), again \(again); plan "
              + actions.byCandidate.sorted { $0.key < $1.key }.map { "\(sim.candidates[$0.key].name)=\($0.value)" }.joined(separator: " "))
        print("mismatch: simulator at its peak: " + sim.tensorsAtPeak(actions).map { "\($0.name) \($0.bytes)" }.joined(separator: ", "))
        print("mismatch: ledger at its peak: " + atPeak.values.sorted { $0.rank < $1.rank }.map { "\($0.name) \($0.bytes)" }.joined(separator: ", "))
        print("mismatch: ledger events before its peak: " + events.prefix { $0.liveBytes < best }.suffix(25).map { "\($0.kind) \($0.name) \($0.bytes) \($0.category)" }.joined(separator: "; "))
    }

    /// `spill`: replaces the measured spill rates (offload planned as if the disk were that fast;
    /// the plan then runs on this machine's disk, whose speed a predictable store's memory does
    /// not depend on); returns how many plans offloaded.
    @discardableResult
    static func checkMixes(_ make: (UInt64, MemoryLedger) -> Trainer, batch: TrainingBatch, options: PlanOptions,
                           fractions: [Double], spill: ActionCosts.SpillRate? = nil) throws -> Int {
        var graph = try StepCapture.capture(make(1, MemoryLedger()), batch: batch, timingRuns: 1)
        if let spill { graph.actionCosts?.spill = spill }
        let sim = PlanSimulator(graph)
        var offloading = 0
        let recomputeFloor = sim.simulate(Set(sim.candidates.indices)).peakBytes
        let none = sim.simulate([]).peakBytes
        // The fractions of the way from recompute-only's least peak, and the least peak of these
        // actions itself (-1), where a simulator that missed a byte would put the step over.
        for f in fractions + [-1] {
            let budget = f < 0 ? Planner.leastPeak(sim, options: options) : recomputeFloor + Int(Double(none - recomputeFloor) * f)
            let plan = try Planner.plan(sim, budget: .bytes(budget), options: options)
            let m = try measure(make, batch: batch, plan: plan)
            if abs(m.peak - plan.predictedPeakBytes) * 100 > m.peak || m.peak > plan.budgetBytes {
                try explainMismatch(make, batch: batch, plan: plan, sim: sim, measured: m.peak)
            }
            let err = abs(Double(plan.predictedPeakBytes - m.peak)) / Double(m.peak)
            #expect(err <= 0.01, "fraction \(f): predicted \(plan.predictedPeakBytes), measured \(m.peak)")
            #expect(m.peak <= plan.budgetBytes, "fraction \(f): measured \(m.peak) over the budget \(plan.budgetBytes)")
            if plan.lossyChoices.isEmpty { #expect(m.bitwise, "fraction \(f): a lossless plan changed the parameters") }
            if !plan.offload.isEmpty { offloading += 1 }
        }
        return offloading
    }

    /// Offload planned as if spilling were nearly free (so that plans offload a lot), run on this
    /// machine's disk: the predictable store's memory follows the simulator's save points
    /// whatever the I/O speed, so the prediction still holds to 1%, within the budget, bitwise.
    @Test func offloadMixesPredictWithinOnePercent() throws {
        let fast = ActionCosts.SpillRate(write_gbps: 100, read_gbps: 100, latency_seconds: 0, overlap: 1, interference: 0,
                                         bytes: 1 << 20, minimum_bytes: 1024)
        let gpt = try Self.checkMixes({ PlanningTests.gptTrainer(seed: $0, ledger: $1) }, batch: PlanningTests.tokenBatch(PlanningTests.config),
                                      options: .default, fractions: [0.8, 0.5, 0.2, 0], spill: fast)
        let resnet = try Self.checkMixes({ PlanningTests.resnetTrainer(seed: $0, ledger: $1) }, batch: PlanningTests.imageBatch(),
                                         options: PlanOptions(allowLossy: [.bf16]), fractions: [0.7, 0.3, 0], spill: fast)
        #expect(gpt >= 3 && resnet >= 2, "offloaded in \(gpt) gpt and \(resnet) resnet plans")
    }

    @Test func gptMixesPredictWithinOnePercent() throws {
        try Self.checkMixes({ PlanningTests.gptTrainer(seed: $0, ledger: $1) }, batch: PlanningTests.tokenBatch(PlanningTests.config),
                            options: PlanOptions(allowLossy: [.bf16]), fractions: [0.8, 0.5, 0.2, 0])
        try Self.checkMixes({ PlanningTests.gptTrainer(seed: $0, ledger: $1) }, batch: PlanningTests.tokenBatch(PlanningTests.config),
                            options: .default, fractions: [0.8, 0.5, 0.2, 0])
    }

    @Test func resnetMixesPredictWithinOnePercent() throws {
        try Self.checkMixes({ PlanningTests.resnetTrainer(seed: $0, ledger: $1) }, batch: PlanningTests.imageBatch(),
                            options: PlanOptions(allowLossy: [.bf16, .fp8E4M3(.perTensor)]), fractions: [0.7, 0.3, 0])
        try Self.checkMixes({ PlanningTests.resnetTrainer(seed: $0, ledger: $1) }, batch: PlanningTests.imageBatch(),
                            options: .default, fractions: [0.7, 0.3, 0])
    }

    @Test func bertMixesPredictWithinOnePercent() throws {
        func make(_ seed: UInt64, _ ledger: MemoryLedger) -> Trainer {
            let model = BertClassifier(BertCheckpointTests.config, labels: 2, seed: seed)
            return Trainer(model: model, optimizer: AdamW(model.parameters, learningRate: 1e-3), gradientClip: nil, ledger: ledger)
        }
        try Self.checkMixes(make, batch: BertCheckpointTests.batch(), options: PlanOptions(allowLossy: [.bf16]), fractions: [0.6, 0])
        try Self.checkMixes(make, batch: BertCheckpointTests.batch(), options: .default, fractions: [0.6, 0])
    }

    /// Random steps whose ops compete with codecs: auto over keep / recompute / compress equals
    /// exhaustive search in at least 95% of the cases and is within 1.06× of it in all; every solver's plan fits; and the least peak over every action is never above recompute-only's.
    /// With offload (four actions) and without (keep / recompute / compress).
    @Test(arguments: [true, false]) func fourWayAutoAgainstExhaustive(offload: Bool) throws {
        var cases = 0, equal = 0
        var worst = 1.0
        let options = PlanOptions(offload: offload, allowLossy: [.bf16, .fp8E4M3(.perTensor)])
        for seed in 0..<120 {
            let g = StepGraph.random(seed: UInt64(seed), blocks: 2, opsPerBlock: 3 + seed % 4, codecs: true)
            let sim = PlanSimulator(g)
            let none = sim.simulate([]).peakBytes
            let recomputeFloor = sim.simulate(Set(sim.candidates.indices)).peakBytes
            guard recomputeFloor < none else { continue }
            let probe = try Planner.plan(sim, budget: .bytes(none), options: options)
            #expect(probe.minimumPeakBytes <= recomputeFloor, "seed \(seed): four-way least peak above recompute-only's")
            let choicesCount = sim.candidates.indices.reduce(1.0) { r, c in
                r * Double(2 + sim.codecs(for: c).filter { $0.isLossless || options.allowLossy.contains($0) }.count + (options.offload && sim.canOffload(c) ? 1 : 0))
            }
            // Above what auto enumerates itself, so that its heuristics are what is measured.
            guard choicesCount > PlanSolver.autoExhaustiveCombinations, choicesCount <= 16384 else { continue }
            for k in 1...3 {
                let budget = probe.minimumPeakBytes + (none - probe.minimumPeakBytes) * k / 4
                let exact = try Planner.plan(sim, budget: .bytes(budget), solver: .exhaustive, options: options)
                let auto = try Planner.plan(sim, budget: .bytes(budget), solver: .auto, options: options)
                #expect(auto.predictedPeakBytes <= budget && exact.predictedPeakBytes <= budget)
                let ratio = auto.predictedStepSeconds / exact.predictedStepSeconds
                #expect(ratio >= 1 - 1e-9, "seed \(seed): auto beats exhaustive search?")
                for s in [PlanSolver.greedy, .knapsack, .local] {
                    if let p = try? Planner.plan(sim, budget: .bytes(budget), solver: s, options: options) {
                        #expect(p.predictedPeakBytes <= budget, "seed \(seed): \(s) over the budget")
                    }
                }
                cases += 1
                if ratio <= 1 + 1e-9 { equal += 1 }
                worst = max(worst, ratio)
            }
        }
        print("auto vs exhaustive (offload \(offload)): \(equal) of \(cases) equal, worst \(worst)")
        #expect(cases >= 60)
        #expect(Double(equal) >= 0.95 * Double(cases), "auto equals exhaustive in \(equal) of \(cases)")
        #expect(worst <= 1.06, "worst auto/exhaustive \(worst)")
    }

    /// A plan with compressions round-trips through its JSON; a plan written before codecs were
    /// planned (no `compress`) still reads; a codec that is not one is refused by name.
    @Test func plansWithCodecsReadBack() throws {
        let graph = try StepCapture.capture(PlanningTests.gptTrainer(ledger: MemoryLedger(), attention: .explicit),
                                            batch: PlanningTests.tokenBatch(PlanningTests.config), timingRuns: 1)
        #expect(graph.actionCosts != nil)
        #expect(graph.slots.contains { $0.valueCodecs.contains(.causal) }, "GPT's explicit attention probabilities are causal")
        let sim = PlanSimulator(graph)
        // A given mix (what a solver picks depends on the measured times): one candidate packed
        // by bf16, another recomputed.
        let c = try #require(sim.candidates.indices.first { sim.codecs(for: $0).contains(.bf16) })
        var actions = PlanActions()
        actions[c] = .compress(.bf16)
        actions[try #require(sim.candidates.indices.first { $0 != c })] = .recompute
        let plan = Planner.plan(sim, actions: actions)
        #expect(!plan.compress.isEmpty && !plan.lossyChoices.isEmpty && !plan.recompute.isEmpty)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("remat-plan-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try plan.jsonString().write(toFile: dir + "/p.json", atomically: true, encoding: .utf8)
        let read = try MemoryPlan.read(path: dir + "/p.json")
        #expect(read == plan)
        try read.validate(against: graph)
        #expect(try sim.actions(of: read) == sim.actions(of: plan))
        // Older: no compress, no codec seconds.
        var object = try JSONSerialization.jsonObject(with: Data(try plan.jsonString().utf8)) as! [String: Any]
        object["compress"] = nil
        object["predictedCodecSeconds"] = nil
        try JSONSerialization.data(withJSONObject: object).write(to: URL(fileURLWithPath: dir + "/old.json"))
        let old = try MemoryPlan.read(path: dir + "/old.json")
        #expect(old.compress.isEmpty && old.recompute == plan.recompute)
        // A codec that is not one.
        var entries = (try JSONSerialization.jsonObject(with: Data(try plan.jsonString().utf8)) as! [String: Any])
        var first = (entries["compress"] as! [[String: Any]])
        first[0]["codec"] = "bf17"
        entries["compress"] = first
        try JSONSerialization.data(withJSONObject: entries).write(to: URL(fileURLWithPath: dir + "/bad.json"))
        #expect { try MemoryPlan.read(path: dir + "/bad.json") } throws: { e in
            guard case PlanningError.badPlanFile(_, let reason) = e else { return false }
            return reason.contains("bf17")
        }
    }

    /// The frontier: on one grid of budgets the plans over every action are never slower than
    /// recompute only, the least peak is never higher, peaks fit their budgets, and the knee is a
    /// point of the frontier.
    @Test func frontierOverEveryActionIsNeverSlower() throws {
        let graph = try StepCapture.capture(PlanningTests.gptTrainer(ledger: MemoryLedger()), batch: PlanningTests.tokenBatch(PlanningTests.config), timingRuns: 1)
        let sim = PlanSimulator(graph)
        let options = PlanOptions(allowLossy: [.bf16])
        let least = Planner.leastPeak(sim, options: options)
        #expect(least <= Planner.leastPeak(sim, options: .recomputeOnly))
        let grid = Planner.budgetGrid(sim, down: least, points: 6)
        let recompute = try Planner.frontier(sim, options: .recomputeOnly, budgets: grid)
        let fourWay = try Planner.frontier(sim, options: options, budgets: grid)
        #expect(fourWay.points.count == 6 && fourWay.actions == "lossy:bf16" && recompute.actions == "recompute-only")
        for p in recompute.points {
            let q = try #require(fourWay.points.first { $0.budgetBytes == p.budgetBytes })
            #expect(q.predictedStepSeconds <= p.predictedStepSeconds + 1e-15, "budget \(p.budgetBytes)")
        }
        for f in [recompute, fourWay] {
            for p in f.points { #expect(p.predictedPeakBytes <= p.budgetBytes) }
            let k = try #require(f.knee)
            #expect(f.points.indices.contains(k))
        }
        #expect(fourWay.csv.rows.count == 6 && fourWay.csv.rows.filter { $0.last == "true" }.count == 1)
    }
}



