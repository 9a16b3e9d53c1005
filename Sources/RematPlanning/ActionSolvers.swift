/// Which actions a plan may choose besides keeping: recompute always; codecs that are lossless
/// (``Codec/isLossless``: relu-mask, bits, causal) unless `compression` is off; offload to the
/// spill store unless `offload` is off (or the capture has no spill rates); lossy codecs only
/// those the user allows (`--allow-lossy bf16,fp8-e4m3`).
public struct PlanOptions: Sendable, Hashable {
    public var compression: Bool
    public var offload: Bool
    public var allowLossy: Set<Codec>

    public init(compression: Bool = true, offload: Bool = true, allowLossy: Set<Codec> = []) {
        self.compression = compression
        self.offload = offload
        self.allowLossy = allowLossy
    }

    /// Keep, recompute, lossless codecs and offload.
    public static let `default` = PlanOptions()
    /// Keep or recompute (the planner before codecs and offload were planned).
    public static let recomputeOnly = PlanOptions(compression: false, offload: false)

    /// Parses `--allow-lossy`'s list (`bf16,fp8-e4m3`): lossy codecs only (a lossless one is
    /// always allowed, so naming it is a mistake).
    public static func parseLossy(_ text: String) throws(CodecError) -> Set<Codec> {
        var set = Set<Codec>()
        for part in text.split(separator: ",", omittingEmptySubsequences: false).map(String.init) {
            let codec = try Codec.parse(part)
            guard !codec.isLossless else {
                throw .badParameter(codec: part, reason: "\(codec) is lossless and always allowed; --allow-lossy lists lossy codecs (\(Codec.all.filter { !$0.isLossless }.map(\.description).joined(separator: ", ")))")
            }
            set.insert(codec)
        }
        return set
    }
}

extension Planner {
    /// The actions each candidate may take besides keep: recompute, then the codecs `options`
    /// allows that save bytes on it, then offload where it can be offloaded.
    static func actionChoices(_ sim: PlanSimulator, _ options: PlanOptions) -> [[SavedTensorAction]] {
        sim.candidates.indices.map { c in
            var a: [SavedTensorAction] = [.recompute]
            if options.compression {
                for codec in sim.codecs(for: c) where codec.isLossless || options.allowLossy.contains(codec) { a.append(.compress(codec)) }
            }
            if options.offload && sim.canOffload(c) { a.append(.offload) }
            return a
        }
    }

    /// Combinations of actions (keep included) over every candidate.
    static func exhaustiveCount(_ choices: [[SavedTensorAction]]) -> Double {
        choices.reduce(1.0) { $0 * Double($1.count + 1) }
    }

    /// Bytes an action frees between the forward and the backward, and what it costs, given the
    /// candidates `recomputed` (a recompute's path depends on what else is recomputed).
    static func effect(_ sim: PlanSimulator, _ c: Int, _ action: SavedTensorAction, recomputed: Set<Int>) -> (bytes: Int, seconds: Double) {
        switch action {
        case .keep: return (0, 0)
        case .recompute:
            var others = recomputed
            others.remove(c)
            return (sim.candidates[c].bytes, sim.marginalCost(c, given: others))
        case .compress(let codec): return sim.compressionEffect(c, codec)
        case .offload: return sim.offloadEffect(c)
        }
    }

    /// The plan with the least predicted peak the actions reach: everything recomputed, then each
    /// candidate moved to whichever action lowers the peak (a compressed tensor keeps a recompute
    /// burst away), until no single change lowers it.
    static func leastPeakSearch(_ sim: PlanSimulator, _ choices: [[SavedTensorAction]]) -> PlanActions {
        var actions = PlanActions(recompute: Set(sim.candidates.indices))
        var best = sim.simulate(actions)
        var improved = true
        var passes = 0
        while improved && passes < 4 {
            improved = false
            passes += 1
            for c in sim.candidates.indices {
                for a in [SavedTensorAction.keep] + choices[c] where a != actions[c] {
                    var trial = actions
                    trial[c] = a
                    let p = sim.simulate(trial)
                    if p.peakBytes < best.peakBytes || (p.peakBytes == best.peakBytes && p.stepSeconds < best.stepSeconds - 1e-15) {
                        actions = trial; best = p; improved = true
                    }
                }
            }
        }
        return actions
    }

    /// μ-TWO's greedy over every action: while the step is over budget, take the change with the
    /// most bytes freed per second added (a recompute at its marginal cost, a codec at its
    /// encode and decode time; a compressed op may still be recomputed), re-simulating after each;
    /// then undo what the final plan does not need, most expensive first, to the cheapest action
    /// that still fits.
    public static func greedy(_ sim: PlanSimulator, choices: [[SavedTensorAction]], budget: Int) -> PlanActions {
        var actions = PlanActions()
        var p = sim.simulate(actions)
        while p.peakBytes > budget {
            var best: (c: Int, a: SavedTensorAction)? = nil
            var bestRatio = -1.0
            let recomputed = actions.recompute
            for c in sim.candidates.indices {
                let current = effect(sim, c, actions[c], recomputed: recomputed)
                for a in choices[c] where a != actions[c] {
                    let e = effect(sim, c, a, recomputed: recomputed)
                    let gain = e.bytes - current.bytes
                    guard gain > 0 else { continue }
                    let ratio = Double(gain) / Swift.max(e.seconds - current.seconds, 1e-9)
                    if ratio > bestRatio { bestRatio = ratio; best = (c, a) }
                }
            }
            guard let b = best else { break }
            actions[b.c] = b.a
            p = sim.simulate(actions)
        }
        guard p.peakBytes <= budget else { return actions }
        // Undo: each chosen op to the cheapest action that still fits.
        let order = actions.byCandidate.keys.sorted { (sim.candidates[$0].bytes, $0) < (sim.candidates[$1].bytes, $1) }
        for c in order {
            let recomputed = actions.recompute
            let options = ([SavedTensorAction.keep] + choices[c]).map { a in (a, effect(sim, c, a, recomputed: recomputed).seconds) }
                .sorted { $0.1 < $1.1 }
            let currentCost = effect(sim, c, actions[c], recomputed: recomputed).seconds
            for (a, cost) in options where a != actions[c] && cost < currentCost {
                var trial = actions
                trial[c] = a
                if sim.simulate(trial).peakBytes <= budget { actions = trial; break }
            }
        }
        return actions
    }

    /// Compression first: every candidate packed by the codec that frees the most bytes per
    /// second (recomputed where no codec applies), then each choice undone — to keep, or to a
    /// cheaper action — while the plan still fits, most expensive first. A start for local search
    /// far from greedy's, which recomputes first where recomputing is cheap per byte.
    public static func compressionFirst(_ sim: PlanSimulator, choices: [[SavedTensorAction]], budget: Int) -> PlanActions {
        var actions = PlanActions()
        for c in sim.candidates.indices {
            let codecs = choices[c].filter { if case .compress = $0 { return true }; return false }
            let best = codecs.max { a, b in
                let ea = effect(sim, c, a, recomputed: []), eb = effect(sim, c, b, recomputed: [])
                return Double(ea.bytes) / Swift.max(ea.seconds, 1e-12) < Double(eb.bytes) / Swift.max(eb.seconds, 1e-12)
            }
            actions[c] = best ?? .recompute
        }
        // Not enough: recompute the largest candidates not recomputed yet until it fits.
        var p = sim.simulate(actions)
        while p.peakBytes > budget {
            let open = sim.candidates.indices.filter { actions[$0] != .recompute }
            guard let c = open.max(by: { (sim.candidates[$0].bytes, $1) < (sim.candidates[$1].bytes, $0) }) else { break }
            actions[c] = .recompute
            p = sim.simulate(actions)
        }
        let recomputedBefore = actions.recompute
        let order = actions.byCandidate.keys.sorted { a, b in
            (effect(sim, a, actions[a], recomputed: recomputedBefore).seconds, b) > (effect(sim, b, actions[b], recomputed: recomputedBefore).seconds, a)
        }
        for c in order {
            let recomputed = actions.recompute
            let currentCost = effect(sim, c, actions[c], recomputed: recomputed).seconds
            let options = ([SavedTensorAction.keep] + choices[c]).map { ($0, effect(sim, c, $0, recomputed: recomputed).seconds) }
                .filter { $0.1 < currentCost }.sorted { $0.1 < $1.1 }
            for (a, _) in options {
                var trial = actions
                trial[c] = a
                if sim.simulate(trial).peakBytes <= budget { actions = trial; break }
            }
        }
        return actions
    }

    /// A multiple-choice covering knapsack: for each candidate one action (keep, recompute at its
    /// standalone cost, a codec at its time), the least total time whose freed bytes reach the
    /// reduction the simulator asks for; when the simulated peak is still over (recompute bursts,
    /// decoded copies), ask for more and solve again.
    public static func knapsack(_ sim: PlanSimulator, choices: [[SavedTensorAction]], budget: Int, buckets: Int = 1024) -> PlanActions {
        let cands = sim.candidates
        guard !cands.isEmpty else { return PlanActions() }
        let empty = PlanActions()
        let items: [[(action: SavedTensorAction, bytes: Int, seconds: Double)]] = cands.indices.map { c in
            choices[c].map { a in
                let e = a == .recompute ? (cands[c].bytes, sim.standaloneCost(c)) : effect(sim, c, a, recomputed: [])
                return (a, Swift.max(0, e.0), e.1)
            }
        }
        let total = items.reduce(0) { $0 + ($1.map(\.bytes).max() ?? 0) }
        let unit = Swift.max(1, (total + buckets - 1) / buckets)
        let weights = items.map { $0.map { ($0.bytes + unit - 1) / unit } }
        let totalWeight = weights.reduce(0) { $0 + ($1.max() ?? 0) }
        var need = Swift.max(1, (sim.simulate(empty).peakBytes - budget + unit - 1) / unit)
        var last = PlanActions(recompute: Set(cands.indices))
        for _ in 0..<40 {
            let cap = Swift.min(need, totalWeight)
            // tables[k][b]: least time over the first k candidates reaching ≥ b buckets (b = cap: ≥ cap).
            var tables: [[Double]] = [[Double](repeating: .infinity, count: cap + 1)]
            tables[0][0] = 0
            for (k, options) in items.enumerated() {
                var next = tables[k]   // keep: same bucket, no time
                for b in 0...cap where tables[k][b] < .infinity {
                    for (j, o) in options.enumerated() {
                        let nb = Swift.min(cap, b + weights[k][j])
                        next[nb] = Swift.min(next[nb], tables[k][b] + o.seconds)
                    }
                }
                tables.append(next)
            }
            guard tables[items.count][cap] < .infinity else { break }
            var actions = PlanActions()
            var b = cap
            reconstruct: for k in stride(from: items.count - 1, through: 0, by: -1) where tables[k + 1][b] != tables[k][b] {
                // Candidate k took an action: find which, and the bucket it came from.
                for (j, o) in items[k].enumerated() {
                    if let pb = (0...b).first(where: { Swift.min(cap, $0 + weights[k][j]) == b && tables[k][$0] + o.seconds == tables[k + 1][b] }) {
                        actions[k] = o.action
                        b = pb
                        continue reconstruct
                    }
                }
                break
            }
            let p = sim.simulate(actions)
            last = actions
            if p.peakBytes <= budget { return actions }
            need = Swift.min(totalWeight, need + Swift.max(1, (p.peakBytes - budget + unit - 1) / unit))
            if cap == totalWeight { break }
        }
        return last
    }

    /// Local search over every action from a fitting plan: change one candidate's action, or two
    /// (every pair when they fit in the simulations left; else one to a cheaper action and one
    /// or two others to dearer ones, by estimated costs), when the step gets faster and
    /// still fits; until no move helps or `maxSimulations` simulations are spent. Never returns a
    /// slower plan.
    public static func improve(_ sim: PlanSimulator, _ start: PlanActions, choices: [[SavedTensorAction]], budget: Int,
                               maxSimulations: Int = 6000) -> PlanActions {
        var actions = start
        var current = sim.simulate(actions)
        guard current.peakBytes <= budget else { return start }
        var spent = 0
        var improved = true
        func attempt(_ trial: PlanActions) -> Bool {
            let p = sim.simulate(trial)
            spent += 1
            guard p.peakBytes <= budget && p.stepSeconds < current.stepSeconds - 1e-15 else { return false }
            actions = trial; current = p; improved = true
            return true
        }
        let standalone = sim.candidates.indices.map { sim.standaloneCost($0) }
        func cost(_ c: Int, _ a: SavedTensorAction) -> Double {
            switch a {
            case .keep: return 0
            case .recompute: return standalone[c]
            case .compress(let codec): return sim.compressionEffect(c, codec).seconds
            case .offload: return sim.offloadEffect(c).seconds
            }
        }
        while improved && spent < maxSimulations {
            improved = false
            // Single changes, the most expensive choices first, then changes of ops kept; every
            // other action is tried (estimates miss shared recompute paths and offload stalls).
            let chosen = actions.byCandidate.keys.sorted { (cost($0, actions[$0]), $1) > (cost($1, actions[$1]), $0) }
            let kept = sim.candidates.indices.filter { actions[$0] == .keep }
            singles: for c in chosen + kept {
                for a in ([SavedTensorAction.keep] + choices[c]).sorted(by: { cost(c, $0) < cost(c, $1) }) where a != actions[c] {
                    guard spent < maxSimulations else { break singles }
                    var trial = actions
                    trial[c] = a
                    if attempt(trial) { break singles }
                }
            }
            if improved { continue }
            // Every pair of changes, when they fit in the simulations left (small steps: the
            // cost estimates below miss how offloads overlap compute and share the I/O thread).
            let options = sim.candidates.indices.map { c in ([SavedTensorAction.keep] + choices[c]).filter { $0 != actions[c] } }
            var pairCount = 0
            for c in options.indices { for d in options.indices where d > c { pairCount += options[c].count * options[d].count } }
            let everyPair = pairCount <= maxSimulations - spent
            if everyPair {
                allPairs: for c in options.indices {
                    for d in options.indices where d > c {
                        for a in options[c] {
                            for b in options[d] {
                                var trial = actions
                                trial[c] = a
                                trial[d] = b
                                if attempt(trial) { break allPairs }
                            }
                        }
                    }
                }
                if improved { continue }
            }
            // Pairs: one chosen op to a cheaper action, another to a dearer one that frees bytes
            // (costs are estimates, recompute paths share ops: every move is simulated); none
            // is new when every pair was just tried.
            let others = sim.candidates.indices.sorted { (standalone[$0], $0) < (standalone[$1], $1) }
            pairs: for c in everyPair ? [] : chosen {
                for down in ([SavedTensorAction.keep] + choices[c]) where cost(c, down) < cost(c, actions[c]) {
                    for d in others where d != c {
                        for up in choices[d] where up != actions[d] && cost(d, up) > cost(d, actions[d])
                            && cost(d, up) - cost(d, actions[d]) < cost(c, actions[c]) - cost(c, down) {
                            guard spent < maxSimulations else { break pairs }
                            var trial = actions
                            trial[c] = down
                            trial[d] = up
                            if attempt(trial) { break pairs }
                        }
                    }
                }
            }
            if improved { continue }
            // One chosen op to a cheaper action, two others to dearer ones.
            splits: for c in chosen {
                for down in ([SavedTensorAction.keep] + choices[c]) where cost(c, down) < cost(c, actions[c]) {
                    let spare = cost(c, actions[c]) - cost(c, down)
                    for (i, d1) in others.enumerated() where d1 != c {
                        for up1 in choices[d1] where up1 != actions[d1] && cost(d1, up1) - cost(d1, actions[d1]) < spare {
                            for d2 in others[(i + 1)...] where d2 != c {
                                for up2 in choices[d2] where up2 != actions[d2]
                                    && cost(d1, up1) - cost(d1, actions[d1]) + cost(d2, up2) - cost(d2, actions[d2]) < spare {
                                    guard spent < maxSimulations else { break splits }
                                    var trial = actions
                                    trial[c] = down
                                    trial[d1] = up1
                                    trial[d2] = up2
                                    if attempt(trial) { break splits }
                                }
                            }
                        }
                    }
                }
            }
            if improved { continue }
            // Two chosen ops to cheaper actions, a third to a dearer one.
            triples: for (i, c1) in chosen.enumerated() {
                for c2 in chosen[(i + 1)...] {
                    for down1 in [SavedTensorAction.keep] + choices[c1] where cost(c1, down1) < cost(c1, actions[c1]) {
                        for down2 in [SavedTensorAction.keep] + choices[c2] where cost(c2, down2) < cost(c2, actions[c2]) {
                            let spare = cost(c1, actions[c1]) - cost(c1, down1) + cost(c2, actions[c2]) - cost(c2, down2)
                            for d in others where d != c1 && d != c2 {
                                for up in choices[d] where up != actions[d] && cost(d, up) - cost(d, actions[d]) < spare {
                                    guard spent < maxSimulations else { break triples }
                                    var trial = actions
                                    trial[c1] = down1
                                    trial[c2] = down2
                                    trial[d] = up
                                    if attempt(trial) { break triples }
                                }
                            }
                        }
                    }
                }
            }
        }
        return actions
    }

    /// The fastest fitting combination of actions by enumeration (nil above
    /// ``PlanSolver/exhaustiveCombinations``).
    public static func exhaustive(_ sim: PlanSimulator, choices: [[SavedTensorAction]], budget: Int) -> PlanActions? {
        guard exhaustiveCount(choices) <= PlanSolver.exhaustiveCombinations else { return nil }
        let n = sim.candidates.count
        var digits = [Int](repeating: 0, count: n)   // 0: keep, j: choices[c][j - 1]
        var best: (PlanActions, Double)? = nil
        while true {
            var actions = PlanActions()
            for c in 0..<n where digits[c] > 0 { actions[c] = choices[c][digits[c] - 1] }
            let p = sim.simulate(actions)
            if p.peakBytes <= budget, best == nil || p.stepSeconds < best!.1 || (p.stepSeconds == best!.1 && actions.count < best!.0.count) {
                best = (actions, p.stepSeconds)
            }
            var k = 0
            while k < n {
                digits[k] += 1
                if digits[k] <= choices[k].count { break }
                digits[k] = 0
                k += 1
            }
            if k == n { break }
        }
        return best?.0
    }
}

/// The budget → predicted step time frontier of a step: a plan at each of `points` budgets from
/// the unconstrained peak down to the least peak the actions reach (``Planner/frontier(_:options:points:solver:)``).
public struct PlanFrontier: Sendable, Hashable, Codable {
    public struct Point: Sendable, Hashable, Codable {
        public var budgetBytes: Int
        public var predictedPeakBytes: Int
        public var predictedStepSeconds: Double
        /// Predicted step time over the unplanned step's.
        public var overhead: Double
        public var recomputed: Int
        public var compressed: Int
        /// Ops offloaded (0 in frontiers written before offload was planned).
        public var offloaded: Int = 0
        public var lossy: Int
        public var solver: String

        public init(budgetBytes: Int, predictedPeakBytes: Int, predictedStepSeconds: Double, overhead: Double, recomputed: Int,
                    compressed: Int, offloaded: Int, lossy: Int, solver: String) {
            self.budgetBytes = budgetBytes
            self.predictedPeakBytes = predictedPeakBytes
            self.predictedStepSeconds = predictedStepSeconds
            self.overhead = overhead
            self.recomputed = recomputed
            self.compressed = compressed
            self.offloaded = offloaded
            self.lossy = lossy
            self.solver = solver
        }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            self.init(budgetBytes: try c.decode(Int.self, forKey: .budgetBytes), predictedPeakBytes: try c.decode(Int.self, forKey: .predictedPeakBytes),
                      predictedStepSeconds: try c.decode(Double.self, forKey: .predictedStepSeconds), overhead: try c.decode(Double.self, forKey: .overhead),
                      recomputed: try c.decode(Int.self, forKey: .recomputed), compressed: try c.decode(Int.self, forKey: .compressed),
                      offloaded: try c.decodeIfPresent(Int.self, forKey: .offloaded) ?? 0, lossy: try c.decode(Int.self, forKey: .lossy),
                      solver: try c.decode(String.self, forKey: .solver))
        }
    }

    public var model: String
    public var inputShape: [Int]
    /// `recompute-only`, `lossless` or `lossy:CODECS`.
    public var actions: String
    public var unconstrainedPeakBytes: Int
    public var leastPeakBytes: Int
    public var baseStepSeconds: Double
    /// From the largest budget to the smallest.
    public var points: [Point]
    /// Index in ``points`` of the knee: the budget past which each MiB saved costs more than the
    /// average MiB of the whole frontier (its extra time over its bytes saved, from the
    /// unconstrained peak to the least); nil with fewer than three points.
    public var knee: Int?

    /// The knee as defined above: the last point before the first step down whose time per byte
    /// saved exceeds the frontier's average (the point where the curve's slope passes its chord's).
    static func knee(_ points: [Point], unconstrained: Int, base: Double) -> Int? {
        guard points.count >= 3, let last = points.last else { return nil }
        let savedAll = Double(unconstrained - last.predictedPeakBytes)
        guard savedAll > 0 else { return nil }
        let average = (last.predictedStepSeconds - base) / savedAll
        for i in 0..<(points.count - 1) {
            let saved = Double(points[i].predictedPeakBytes - points[i + 1].predictedPeakBytes)
            let cost = points[i + 1].predictedStepSeconds - points[i].predictedStepSeconds
            if saved > 0 && cost / saved > average * (1 + 1e-9) { return i }
        }
        return points.count - 1
    }

    /// What a set of actions is called in frontiers and sweeps: `recompute-only`, `lossless`,
    /// `lossy:bf16,fp8-e4m3`, with `-no-offload` or `-no-codecs` when one of those is off.
    public static func name(of options: PlanOptions) -> String {
        if !options.compression && !options.offload { return "recompute-only" }
        let base = options.allowLossy.isEmpty ? "lossless" : "lossy:" + options.allowLossy.map(\.description).sorted().joined(separator: ",")
        return base + (!options.offload ? "-no-offload" : !options.compression ? "-no-codecs" : "")
    }

    /// The frontier as CSV, one row per point.
    public var csv: CSVTable {
        var t = CSVTable(header: ["actions", "budget_bytes", "predicted_peak_bytes", "predicted_step_seconds", "overhead",
                                  "recomputed_ops", "compressed_ops", "offloaded_ops", "lossy_ops", "solver", "knee"])
        for (i, p) in points.enumerated() {
            t.rows.append([actions, String(p.budgetBytes), String(p.predictedPeakBytes), "\(p.predictedStepSeconds)",
                           String(format: "%.4f", p.overhead), String(p.recomputed), String(p.compressed), String(p.offloaded), String(p.lossy), p.solver,
                           i == knee ? "true" : "false"])
        }
        return t
    }
}

extension Planner {
    /// The least predicted peak any plan over `options`' actions reaches (the minimum a budget
    /// below it is refused with).
    public static func leastPeak(_ sim: PlanSimulator, options: PlanOptions = .default) -> Int {
        leastPeakPlan(sim, actionChoices(sim, options)).prediction.peakBytes
    }

    /// The plan with the least predicted peak over `choices` and its prediction:
    /// ``leastPeakSearch(_:_:)`` from everything recomputed, or keeping everything where that
    /// peaks lower (a small step whose recompute bursts outweigh what it drops: recomputing
    /// everything is not always the least). Searched once per simulator and set of choices (a
    /// frontier plans at many budgets).
    static func leastPeakPlan(_ sim: PlanSimulator, _ choices: [[SavedTensorAction]]) -> (actions: PlanActions, prediction: PlanSimulator.Prediction) {
        let actions = sim.leastPeakActions(choices) {
            let searched = leastPeakSearch(sim, choices)
            return sim.simulate([]).peakBytes < sim.simulate(searched).peakBytes ? PlanActions() : searched
        }
        return (actions, sim.simulate(actions))
    }

    /// `points` budgets evenly spaced from the unconstrained peak down to `least`.
    public static func budgetGrid(_ sim: PlanSimulator, down least: Int, points: Int) -> [Int] {
        let top = sim.simulate([]).peakBytes
        return (0..<points).map { k in top - Int((Double(top - least) * Double(k) / Double(Swift.max(points - 1, 1))).rounded(.down)) }
    }

    /// The frontier over `options`' actions: plans at `points` budgets evenly spaced from the
    /// unconstrained peak down to the least peak those actions reach.
    public static func frontier(_ sim: PlanSimulator, options: PlanOptions = .default, points: Int = 12,
                                solver: PlanSolver = .auto) throws -> PlanFrontier {
        precondition(points >= 2, "Planner.frontier: at least 2 points, got \(points)")
        let least = leastPeak(sim, options: options)
        return try frontier(sim, options: options, budgets: budgetGrid(sim, down: least, points: points), solver: solver)
    }

    /// The frontier at the given budgets (largest first); budgets below the least peak of
    /// `options`' actions are left out, so two frontiers on one grid compare budget by budget.
    public static func frontier(_ sim: PlanSimulator, options: PlanOptions, budgets: [Int], solver: PlanSolver = .auto) throws -> PlanFrontier {
        let none = sim.simulate([])
        let least = leastPeak(sim, options: options)
        var result: [PlanFrontier.Point] = []
        for budget in budgets.sorted(by: >) where budget >= least {
            let p = try plan(sim, budget: .bytes(budget), solver: solver, options: options)
            result.append(.init(budgetBytes: p.budgetBytes, predictedPeakBytes: p.predictedPeakBytes, predictedStepSeconds: p.predictedStepSeconds,
                                overhead: p.predictedOverhead, recomputed: p.recomputedCount, compressed: p.compress.count,
                                offloaded: p.offload.count, lossy: p.lossyChoices.count, solver: p.solver))
        }
        return PlanFrontier(model: sim.graph.model, inputShape: sim.graph.inputShape, actions: PlanFrontier.name(of: options),
                            unconstrainedPeakBytes: none.peakBytes, leastPeakBytes: least, baseStepSeconds: sim.graph.stepSeconds,
                            points: result, knee: PlanFrontier.knee(result, unconstrained: none.peakBytes, base: sim.graph.stepSeconds))
    }
}
