import Foundation

/// A memory budget: bytes, or a fraction of the step's unconstrained peak.
public enum MemoryBudget: Sendable, Hashable, CustomStringConvertible {
    case bytes(Int)
    case fraction(Double)

    public static func mebibytes(_ m: Double) -> MemoryBudget { .bytes(bytes(m, scale: 1_048_576)) }
    public static func gibibytes(_ g: Double) -> MemoryBudget { .bytes(bytes(g, scale: 1_073_741_824)) }

    /// The largest budget in bytes (1 EiB): beyond any machine, and far from overflowing the
    /// simulator's sums.
    public static let maximumBytes = 1 << 60

    private static func bytes(_ v: Double, scale: Double) -> Int {
        precondition(v.isFinite && v > 0 && v * scale <= Double(maximumBytes), "MemoryBudget: \(v) × \(scale) bytes is not in (0, 1 EiB]")
        return Int(v * scale)
    }

    /// Parses bytes with a unit (`300MiB`, `1.5GiB`, `500MB`, `64KiB`, `123456B`) or a fraction of
    /// the unconstrained peak (`0.5`: greater than 0, at most 1). A number without a unit above 1
    /// is an error (it would be bytes or a typo for a fraction); so are zero, negative, infinite
    /// and NaN values, and more than 1 EiB.
    public static func parse(_ text: String) throws -> MemoryBudget {
        let t = text.trimmingCharacters(in: .whitespaces)
        let units: [(String, Double)] = [("GiB", 1_073_741_824), ("MiB", 1_048_576), ("KiB", 1024), ("GB", 1e9), ("MB", 1e6),
                                         ("KB", 1e3), ("B", 1)]
        for (u, scale) in units where t.hasSuffix(u) {
            guard let v = Double(t.dropLast(u.count).trimmingCharacters(in: .whitespaces)), v.isFinite, v > 0 else {
                throw PlanningError.badBudget(text, reason: "the amount before \(u) must be a positive number")
            }
            guard v * scale >= 1, v * scale <= Double(maximumBytes) else {
                throw PlanningError.badBudget(text, reason: "it is \(v * scale < 1 ? "less than a byte" : "more than 1 EiB")")
            }
            return .bytes(Int(v * scale))
        }
        guard let v = Double(t), v.isFinite, v > 0 else {
            throw PlanningError.badBudget(text, reason: "it is neither bytes with a unit nor a fraction")
        }
        guard v <= 1 else {
            throw PlanningError.badBudget(text, reason: "a number without a unit is a fraction of the unconstrained peak, at most 1 (for bytes give a unit: \(t)B)")
        }
        return .fraction(v)
    }

    /// The budget in bytes for a step whose unconstrained peak is `unconstrainedPeak`.
    public func bytes(unconstrainedPeak: Int) -> Int {
        switch self {
        case .bytes(let b): return b
        case .fraction(let f): return Int(Double(unconstrainedPeak) * f)
        }
    }

    public var description: String {
        switch self {
        case .bytes(let b): return formatBytes(b)
        case .fraction(let f): return String(format: "%.2f of the unconstrained peak", f)
        }
    }
}

/// Which solver decides KEEP or RECOMPUTE.
public enum PlanSolver: String, Sendable, CaseIterable {
    /// Try every solver that applies and take the fastest plan that fits.
    case auto
    /// μ-TWO's Algorithm B: greedy on recompute ratio (bytes / recompute time), re-simulating
    /// after each choice and re-costing the candidates whose recompute path changed.
    case greedy
    /// A knapsack dynamic program over (bytes, time) (as PyTorch's activation memory budget),
    /// repaired with the simulator until the plan fits.
    case knapsack
    /// Greedy's and knapsack's plans improved by local search (``Planner/improve(_:_:budget:maxSimulations:)``:
    /// drops, and swaps of one or two ops, every move simulated).
    case local
    /// Every subset (small problems only: at most ``PlanSolver/exhaustiveLimit`` candidates).
    case exhaustive

    public static let exhaustiveLimit = 16
    /// Most combinations of actions ``exhaustive`` enumerates when codecs are planned too.
    public static let exhaustiveCombinations: Double = 65536
    /// Combinations up to which ``auto`` also enumerates them all.
    public static let autoExhaustiveCombinations: Double = 512

    public static func parse(_ s: String) throws -> PlanSolver {
        guard let v = PlanSolver(rawValue: s) else { throw PlanningError.unknownSolver(s) }
        return v
    }
}

/// One candidate op whose saved tensors a plan compresses: the codec, the slots (stable saved
/// tensor names) it packs, and their bytes raw and packed.
public struct PlannedCompression: Sendable, Hashable, Codable {
    public var op: String
    public var codec: String
    public var slots: [String]
    public var bytes: Int
    public var packedBytes: Int
    public var lossless: Bool
}

/// One candidate op whose saved tensors a plan offloads: the slots (stable saved tensor names)
/// whose tensors go to the spill store, and their bytes.
public struct PlannedOffload: Sendable, Hashable, Codable {
    public var op: String
    public var slots: [String]
    public var bytes: Int
}

/// What to do with the saved tensors of one training step — recompute, compress or offload them — by
/// stable names, with what the simulator predicts.
public struct MemoryPlan: Sendable, Hashable, Codable {
    public var model: String
    public var inputShape: [Int]
    /// Block paths the plan was made for.
    public var regions: [String]
    /// Ops whose saved tensors are recomputed (`blocks.3.attn/attention_probs#0`), in forward order.
    public var recompute: [String]
    public var solver: String
    public var budgetBytes: Int
    public var unconstrainedPeakBytes: Int
    /// The least predicted peak any plan reaches (everything plannable recomputed).
    public var minimumPeakBytes: Int
    public var predictedPeakBytes: Int
    /// Where the predicted peak happens (`backward of layer1.0.conv2/conv2d#0`, …).
    public var predictedPeakLocation: String
    public var baseStepSeconds: Double
    public var predictedStepSeconds: Double
    public var keptCount: Int
    public var keptBytes: Int
    public var recomputedCount: Int
    public var recomputedBytes: Int
    public var planningSeconds: Double
    /// Ops whose saved tensors are compressed (empty in plans of Remat before codecs were planned).
    public var compress: [PlannedCompression] = []
    /// Predicted seconds of the codecs (in ``predictedStepSeconds``).
    public var predictedCodecSeconds: Double = 0
    /// Ops whose saved tensors are offloaded (empty in plans of Remat before offload was planned).
    public var offload: [PlannedOffload] = []
    /// Predicted seconds the offloads add (stalls and the I/O thread's share, in ``predictedStepSeconds``).
    public var predictedOffloadSeconds: Double = 0

    /// The offload that runs the plan's choices (by slot names) into `store`; nil without offloads.
    /// The names select exactly the tensors planned (each at least the minimum the plan was made
    /// with), so no size threshold applies.
    public func activationOffload(to store: SpillStore) -> ActivationOffload? {
        guard !offload.isEmpty else { return nil }
        return ActivationOffload(to: store, where: .names(Set(offload.flatMap(\.slots))), minimumBytes: 0)
    }

    /// The lossy choices: every compression whose codec changes what backward reads.
    public var lossyChoices: [PlannedCompression] { compress.filter { !$0.lossless } }

    /// The compression rules that run the plan's choices (one rule per codec, by slot names).
    public var compressionRules: ActivationCompression? {
        guard !compress.isEmpty else { return nil }
        var byCodec: [String: Set<String>] = [:]
        for c in compress { byCodec[c.codec, default: []].formUnion(c.slots) }
        return ActivationCompression(byCodec.sorted { $0.key < $1.key }.map { codec, slots in
            ActivationCompression.Rule(try! Codec.parse(codec), where: .names(slots))
        })
    }

    /// Predicted step-time overhead (1.0 = none).
    public var predictedOverhead: Double { predictedStepSeconds / Swift.max(baseStepSeconds, 1e-12) }

    /// The recompute set by block path.
    public var recomputeByRegion: [String: Set<String>] {
        var result: [String: Set<String>] = [:]
        for n in recompute {
            guard let path = regions.filter({ n.hasPrefix($0 + ".") || n.hasPrefix($0 + "/") }).max(by: { $0.count < $1.count }) else { continue }
            result[path, default: []].insert(n)
        }
        return result
    }

    /// The recompute set in groups, one per block (by path, each sorted): what
    /// ``DynamicRematerializer/plannedDrops`` takes to run the plan as its blocks would.
    public var recomputeGroups: [[String]] {
        recomputeByRegion.sorted { $0.key < $1.key }.map { $0.value.sorted() }
    }

    /// Reads a plan written by ``jsonString()`` (`remat plan --json`).
    public static func read(path: String) throws -> MemoryPlan {
        let data: Data
        do { data = try RegularFile.contents(atPath: path) } catch let e as RegularFile.Error {
            throw PlanningError.badPlanFile(path: path, reason: e.reason)
        }
        do { return try JSONDecoder().decode(MemoryPlan.self, from: data) } catch {
            throw PlanningError.badPlanFile(path: path, reason: "not a plan: \(describeJSONError(error))")
        }
    }

    /// The plan as JSON (what ``read(path:)`` reads back). Throws when a figure is not finite
    /// (JSON has no NaN), rather than printing invalid JSON.
    public func jsonString() throws -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: try enc.encode(self), as: UTF8.self)
    }

    /// A human summary: counts, bytes, predicted peak and overhead.
    public var summary: String {
        let packed = compress.isEmpty ? "" : String(format: ", compress %d (%@ into %@%@)", compress.count,
                                                   formatBytes(compress.reduce(0) { $0 + $1.bytes }),
                                                   formatBytes(compress.reduce(0) { $0 + $1.packedBytes }),
                                                   lossyChoices.isEmpty ? ", lossless" : ", \(lossyChoices.count) lossy")
        let spilled = offload.isEmpty ? "" : ", offload \(offload.count) (\(formatBytes(offload.reduce(0) { $0 + $1.bytes })))"
        return String(format: "plan (%@): recompute %d ops (%@)%@%@, keep %d (%@); predicted peak %@ (budget %@, unconstrained %@), predicted step time x%.2f",
                      solver, recomputedCount, formatBytes(recomputedBytes), packed, spilled, keptCount, formatBytes(keptBytes),
                      formatBytes(predictedPeakBytes), formatBytes(budgetBytes), formatBytes(unconstrainedPeakBytes), predictedOverhead)
    }
}

extension MemoryPlan {
    /// Reads a plan's JSON; plans written before compression was planned have no `compress`.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        model = try c.decode(String.self, forKey: .model)
        inputShape = try c.decode([Int].self, forKey: .inputShape)
        regions = try c.decode([String].self, forKey: .regions)
        recompute = try c.decode([String].self, forKey: .recompute)
        solver = try c.decode(String.self, forKey: .solver)
        budgetBytes = try c.decode(Int.self, forKey: .budgetBytes)
        unconstrainedPeakBytes = try c.decode(Int.self, forKey: .unconstrainedPeakBytes)
        minimumPeakBytes = try c.decode(Int.self, forKey: .minimumPeakBytes)
        predictedPeakBytes = try c.decode(Int.self, forKey: .predictedPeakBytes)
        predictedPeakLocation = try c.decode(String.self, forKey: .predictedPeakLocation)
        baseStepSeconds = try c.decode(Double.self, forKey: .baseStepSeconds)
        predictedStepSeconds = try c.decode(Double.self, forKey: .predictedStepSeconds)
        keptCount = try c.decode(Int.self, forKey: .keptCount)
        keptBytes = try c.decode(Int.self, forKey: .keptBytes)
        recomputedCount = try c.decode(Int.self, forKey: .recomputedCount)
        recomputedBytes = try c.decode(Int.self, forKey: .recomputedBytes)
        planningSeconds = try c.decode(Double.self, forKey: .planningSeconds)
        compress = try c.decodeIfPresent([PlannedCompression].self, forKey: .compress) ?? []
        for p in compress {
            guard let codec = try? Codec.parse(p.codec) else {
                throw DecodingError.dataCorruptedError(forKey: .compress, in: c, debugDescription: "op \(p.op): '\(p.codec)' is not a codec")
            }
            guard codec.isLossless == p.lossless, !p.slots.isEmpty else {
                throw DecodingError.dataCorruptedError(forKey: .compress, in: c, debugDescription: "op \(p.op): \(p.slots.isEmpty ? "no slots" : "\(p.codec) is \(codec.isLossless ? "lossless" : "lossy"), the plan says otherwise")")
            }
        }
        predictedCodecSeconds = try c.decodeIfPresent(Double.self, forKey: .predictedCodecSeconds) ?? 0
        offload = try c.decodeIfPresent([PlannedOffload].self, forKey: .offload) ?? []
        for p in offload where p.slots.isEmpty {
            throw DecodingError.dataCorruptedError(forKey: .offload, in: c, debugDescription: "op \(p.op): no slots")
        }
        predictedOffloadSeconds = try c.decodeIfPresent(Double.self, forKey: .predictedOffloadSeconds) ?? 0
    }
}

/// Decides, for every plannable op of a captured step, KEEP or RECOMPUTE so that the predicted
/// peak fits the budget at the least recompute time.
public enum Planner {
    public static func plan(_ graph: StepGraph, budget: MemoryBudget, solver: PlanSolver = .auto,
                            options: PlanOptions = .default) throws -> MemoryPlan {
        try plan(PlanSimulator(graph), budget: budget, solver: solver, options: options)
    }

    public static func plan(_ sim: PlanSimulator, budget: MemoryBudget, solver: PlanSolver = .auto,
                            options: PlanOptions = .default) throws -> MemoryPlan {
        let start = monotonicSeconds()
        let none = sim.simulate([])
        let budgetBytes = budget.bytes(unconstrainedPeak: none.peakBytes)
        let choices = actionChoices(sim, options)
        let fourWay = choices.contains { $0.count > 1 }
        let (least, floor) = leastPeakPlan(sim, choices)
        if floor.peakBytes > budgetBytes {
            throw PlanningError.budgetBelowMinimum(budget: budgetBytes, minimum: floor.peakBytes, breakdown: breakdown(floor))
        }
        var chosen: (actions: PlanActions, prediction: PlanSimulator.Prediction, solver: String)
        if none.peakBytes <= budgetBytes {
            chosen = (PlanActions(), none, solver.rawValue)
        } else {
            var results: [(PlanActions, PlanSimulator.Prediction, String)] = []
            func consider(_ actions: PlanActions?, _ name: PlanSolver) {
                guard let actions else { return }
                let p = sim.simulate(actions)
                if p.peakBytes <= budgetBytes { results.append((actions, p, name.rawValue)) }
            }
            func consider(_ set: Set<Int>?, _ name: PlanSolver) { consider(set.map { PlanActions(recompute: $0) }, name) }
            // The starts that fit, fastest first.
            func fitting(_ starts: [PlanActions]) -> [PlanActions] {
                starts.map { ($0, sim.simulate($0)) }.filter { $0.1.peakBytes <= budgetBytes }
                    .sorted { $0.1.stepSeconds < $1.1.stepSeconds }.map(\.0)
            }
            // Local search over keep / recompute (today's, exactly) from the fastest fitting start.
            func localRecompute(_ starts: [Set<Int>]) -> PlanActions? {
                fitting(starts.map { PlanActions(recompute: $0) }).first.map { PlanActions(recompute: improve(sim, $0.recompute, budget: budgetBytes)) }
            }
            // Recompute only, or over every action when codecs are allowed.
            func local(_ recomputeStarts: [Set<Int>], _ otherStarts: [PlanActions]) -> PlanActions? {
                if !fourWay { return localRecompute(recomputeStarts) }
                // Over every action: from each distinct fitting start (the moves are local, the
                // starts far apart), the fastest result. The three fastest distinct starts, 1300
                // simulations each (planning time stays near a second on gpt-small).
                var seen = Set<PlanActions>()
                var best: (PlanActions, Double)? = nil
                let distinct = fitting(recomputeStarts.map { PlanActions(recompute: $0) } + otherStarts).filter { seen.insert($0).inserted }.prefix(3)
                for s in distinct {
                    let a = improve(sim, s, choices: choices, budget: budgetBytes, maxSimulations: 1300)
                    let t = sim.simulate(a).stepSeconds
                    if best == nil || t < best!.1 { best = (a, t) }
                }
                return best?.0
            }
            let count = sim.candidates.count
            switch solver {
            case .auto:
                let g = greedy(sim, budget: budgetBytes), k = knapsack(sim, budget: budgetBytes)
                consider(g, .greedy)
                consider(k, .knapsack)
                var starts: [PlanActions] = []
                if fourWay {
                    let g4 = greedy(sim, choices: choices, budget: budgetBytes), k4 = knapsack(sim, choices: choices, budget: budgetBytes)
                    consider(g4, .greedy)
                    consider(k4, .knapsack)
                    // Recompute-only local search too: the plan over every action is never slower.
                    consider(localRecompute([g, k]), .local)
                    starts = [g4, k4, compressionFirst(sim, choices: choices, budget: budgetBytes), least]
                }
                consider(local([g, k], starts), .local)
                if fourWay {
                    if exhaustiveCount(choices) <= PlanSolver.autoExhaustiveCombinations { consider(exhaustive(sim, choices: choices, budget: budgetBytes), .exhaustive) }
                } else if count <= 12 {
                    consider(exhaustive(sim, budget: budgetBytes), .exhaustive)
                }
            case .greedy: consider(fourWay ? greedy(sim, choices: choices, budget: budgetBytes) : PlanActions(recompute: greedy(sim, budget: budgetBytes)), .greedy)
            case .knapsack: consider(fourWay ? knapsack(sim, choices: choices, budget: budgetBytes) : PlanActions(recompute: knapsack(sim, budget: budgetBytes)), .knapsack)
            case .local:
                let starts = fourWay ? [greedy(sim, choices: choices, budget: budgetBytes), knapsack(sim, choices: choices, budget: budgetBytes),
                                        compressionFirst(sim, choices: choices, budget: budgetBytes), least] : []
                consider(local([greedy(sim, budget: budgetBytes), knapsack(sim, budget: budgetBytes)], starts), .local)
            case .exhaustive:
                let combinations = exhaustiveCount(choices)
                guard fourWay ? combinations <= PlanSolver.exhaustiveCombinations : count <= PlanSolver.exhaustiveLimit else {
                    let reason = fourWay
                        ? "it enumerates every combination of actions, at most \(PlanSolver.exhaustiveCombinations), and this step has \(combinations > Double(1 << 60) ? "more than 2^60" : String(format: "%.0f", combinations)); use auto, greedy, knapsack or local"
                        : "it enumerates every subset of at most \(PlanSolver.exhaustiveLimit) candidate ops, and this step has \(count); use auto, greedy, knapsack or local"
                    throw PlanningError.solverNotApplicable(solver: "exhaustive", reason: reason)
                }
                if fourWay { consider(exhaustive(sim, choices: choices, budget: budgetBytes), .exhaustive) }
                else { consider(exhaustive(sim, budget: budgetBytes), .exhaustive) }
            }
            if let best = results.min(by: { a, b in
                a.1.stepSeconds != b.1.stepSeconds ? a.1.stepSeconds < b.1.stepSeconds : a.0.count < b.0.count
            }) {
                chosen = (best.0, best.1, solver == .auto ? "auto:" + best.2 : best.2)
            } else {
                // No solver's plan fits: the least-peak plan (which fits).
                chosen = (least, floor, fourWay ? "least-peak" : "all")
            }
        }
        return makePlan(sim, chosen.actions, chosen.prediction, solver: chosen.solver, budget: budgetBytes, none: none,
                        floor: floor.peakBytes, start: start)
    }

    /// The plan that runs `actions` as given (no solver), with its prediction; its budget is
    /// the predicted peak. For mixes chosen by hand, and to check the simulator action by action.
    public static func plan(_ sim: PlanSimulator, actions: PlanActions) -> MemoryPlan {
        let start = monotonicSeconds()
        let p = sim.simulate(actions)
        return makePlan(sim, actions, p, solver: "given", budget: p.peakBytes, none: sim.simulate([]),
                        floor: leastPeakPlan(sim, actionChoices(sim, .default)).prediction.peakBytes, start: start)
    }

    private static func makePlan(_ sim: PlanSimulator, _ actions: PlanActions, _ p: PlanSimulator.Prediction, solver: String,
                                 budget: Int, none: PlanSimulator.Prediction, floor: Int, start: Double) -> MemoryPlan {
        let cands = sim.candidates
        let rec = actions.recompute.sorted { cands[$0].op < cands[$1].op }
        let recBytes = rec.reduce(0) { $0 + cands[$1].bytes }
        var compress: [PlannedCompression] = []
        for (c, action) in actions.byCandidate.sorted(by: { cands[$0.key].op < cands[$1.key].op }) {
            guard case .compress(let codec) = action else { continue }
            let effect = sim.compressionEffect(c, codec)
            compress.append(PlannedCompression(op: cands[c].name, codec: codec.description, slots: sim.packedSlots(c, codec).sorted(),
                                               bytes: cands[c].bytes, packedBytes: cands[c].bytes - effect.bytes, lossless: codec.isLossless))
        }
        let offloaded = actions.offload.sorted { cands[$0].op < cands[$1].op }
        let offload = offloaded.map { c in
            PlannedOffload(op: cands[c].name, slots: sim.offloadedSlots(c).sorted(), bytes: sim.offloadEffect(c).bytes)
        }
        // Bytes of the ops neither recomputed nor kept as they are.
        let treatedBytes = compress.reduce(0) { $0 + $1.bytes } + offloaded.reduce(0) { $0 + cands[$1].bytes }
        let totalBytes = cands.reduce(0) { $0 + $1.bytes }
        var plan = MemoryPlan(model: sim.graph.model, inputShape: sim.graph.inputShape, regions: sim.graph.regions,
                              recompute: rec.map { cands[$0].name }, solver: solver, budgetBytes: budget,
                              unconstrainedPeakBytes: none.peakBytes, minimumPeakBytes: floor, predictedPeakBytes: p.peakBytes,
                              predictedPeakLocation: p.peakLocation,
                              baseStepSeconds: sim.graph.stepSeconds, predictedStepSeconds: p.stepSeconds,
                              keptCount: cands.count - rec.count - compress.count - offload.count, keptBytes: totalBytes - recBytes - treatedBytes,
                              recomputedCount: rec.count, recomputedBytes: recBytes,
                              planningSeconds: 0)
        plan.compress = compress
        plan.predictedCodecSeconds = p.codecSeconds
        plan.offload = offload
        plan.predictedOffloadSeconds = p.offloadSeconds
        plan.planningSeconds = monotonicSeconds() - start
        return plan
    }

    static func breakdown(_ p: PlanSimulator.Prediction) -> String {
        let c = p.peakByCategory
        let params = c[.parameters] ?? 0, grads = c[.gradients] ?? 0, opt = c[.optimizerState] ?? 0
        let rest = p.peakBytes - params - grads - opt
        return "at its peak (\(p.peakLocation)): parameters \(formatBytes(params)), gradients \(formatBytes(grads)), optimizer state \(formatBytes(opt)), activations and temporaries that no plan can drop \(formatBytes(rest))"
    }

    /// μ-TWO Algorithm B.
    public static func greedy(_ sim: PlanSimulator, budget: Int) -> Set<Int> {
        var plan = Set<Int>()
        var p = sim.simulate(plan)
        while p.peakBytes > budget {
            var best: Int? = nil
            var bestRatio = -1.0
            for c in sim.candidates.indices where !plan.contains(c) {
                let cost = Swift.max(sim.marginalCost(c, given: plan), 1e-9)
                let ratio = Double(sim.candidates[c].bytes) / cost
                if ratio > bestRatio { bestRatio = ratio; best = c }
            }
            guard let b = best else { break }
            plan.insert(b)
            p = sim.simulate(plan)
        }
        // Undo choices the final plan does not need (cheapest memory first).
        for c in plan.sorted(by: { (sim.candidates[$0].bytes, $0) < (sim.candidates[$1].bytes, $1) }) {
            var trial = plan
            trial.remove(c)
            if sim.simulate(trial).peakBytes <= budget { plan = trial }
        }
        return plan
    }

    /// Covering knapsack: the least standalone recompute time whose bytes reach the reduction the
    /// simulator asks for; when recompute bursts push the peak over, ask for more and solve again.
    /// (The multiple-choice knapsack over every action with recompute as the only choice: the
    /// same tables, ties and repairs, so the same plans.)
    public static func knapsack(_ sim: PlanSimulator, budget: Int, buckets: Int = 1024) -> Set<Int> {
        knapsack(sim, choices: sim.candidates.map { _ in [.recompute] }, budget: budget, buckets: buckets).recompute
    }

    /// Local search from a fitting plan: drop what the budget does not need, and swap a recomputed
    /// op for one not recomputed when the step gets faster and still fits; repeats until no move
    /// helps or `maxSimulations` simulations are spent. Never returns a slower plan.
    public static func improve(_ sim: PlanSimulator, _ start: Set<Int>, budget: Int, maxSimulations: Int = 4000) -> Set<Int> {
        var plan = start
        var current = sim.simulate(plan)
        guard current.peakBytes <= budget else { return start }
        var spent = 0
        var improved = true
        let standalone = sim.candidates.indices.map { sim.standaloneCost($0) }
        while improved && spent < maxSimulations {
            improved = false
            // Removals, most expensive first.
            for c in plan.sorted(by: { (standalone[$0], $1) > (standalone[$1], $0) }) where spent < maxSimulations {
                var trial = plan
                trial.remove(c)
                let p = sim.simulate(trial)
                spent += 1
                if p.peakBytes <= budget && p.stepSeconds <= current.stepSeconds {
                    plan = trial; current = p; improved = true
                }
            }
            // Swaps: one op out and one in, then two out and one in, then one out and two in (costs depend on the whole
            // set, because recompute paths share ops: simulate every move).
            let outside = sim.candidates.indices.filter { !plan.contains($0) }.sorted { (standalone[$0], $0) < (standalone[$1], $1) }
            let inside = plan.sorted { (standalone[$0], $1) > (standalone[$1], $0) }
            func attempt(_ out: [Int], _ into: [Int]) -> Bool {
                var trial = plan
                for c in out { trial.remove(c) }
                for d in into { trial.insert(d) }
                let p = sim.simulate(trial)
                spent += 1
                guard p.peakBytes <= budget && p.stepSeconds < current.stepSeconds - 1e-15 else { return false }
                plan = trial; current = p; improved = true
                return true
            }
            swapping: for c in inside {
                for d in outside {
                    guard spent < maxSimulations else { break swapping }
                    if attempt([c], [d]) { break swapping }
                }
            }
            if improved { continue }
            pairs: for (i, c1) in inside.enumerated() {
                for c2 in inside[(i + 1)...] {
                    for d in outside where standalone[d] < standalone[c1] + standalone[c2] {
                        guard spent < maxSimulations else { break pairs }
                        if attempt([c1, c2], [d]) { break pairs }
                    }
                }
            }
            if improved { continue }
            splits: for c in inside {
                for (i, d1) in outside.enumerated() where standalone[d1] < standalone[c] {
                    for d2 in outside[(i + 1)...] {
                        guard spent < maxSimulations else { break splits }
                        if attempt([c], [d1, d2]) { break splits }
                    }
                }
            }
        }
        return plan
    }

    /// The fastest fitting subset by enumeration (nil above ``PlanSolver/exhaustiveLimit`` candidates).
    public static func exhaustive(_ sim: PlanSimulator, budget: Int) -> Set<Int>? {
        let n = sim.candidates.count
        guard n <= PlanSolver.exhaustiveLimit else { return nil }
        var best: (Set<Int>, Double)? = nil
        for mask in 0..<(1 << n) {
            let set = Set((0..<n).filter { mask & (1 << $0) != 0 })
            let p = sim.simulate(set)
            guard p.peakBytes <= budget else { continue }
            if best == nil || p.stepSeconds < best!.1 || (p.stepSeconds == best!.1 && set.count < best!.0.count) {
                best = (set, p.stepSeconds)
            }
        }
        return best?.0
    }
}
