import ArgumentParser
import Foundation
import Remat

struct PlanCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan", abstract: "Checkpointing plans.", subcommands: [PlanBudget.self, PlanChain.self],
        defaultSubcommand: PlanBudget.self)
}

struct PlanChain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chain",
        abstract: "The optimal (Revolve) schedule for a chain of N equal layers with S checkpoint slots.",
        discussion: """
            Griewank's model: the S slots include the one holding the chain's input; reversing layer i
            needs the state before layer i; forward_steps counts every layer evaluation that is not
            part of a reverse step. Actions: advance a->b (run layers a..<b without recording),
            store i / free i (a slot), reverse i (re-run layer i recording, then backpropagate).
            """)

    @Option(parsing: .unconditional, help: "Layers in the chain (1 to \(PlanChain.maxLength)).") var length: Int
    @Option(parsing: .unconditional, help: "Checkpoint slots, including the one holding the input (1 to \(PlanChain.maxLength)).") var slots: Int
    @Flag(help: "Print JSON {length, slots, forward_steps, schedule}.") var json = false

    /// Longest chain answered (the count is closed-form; this bounds only the arithmetic).
    static let maxLength = 1 << 40
    /// Longest chain whose actions are listed (a schedule has at most about forward_steps + 3·length actions).
    static let maxListedLength = 10_000

    func validate() throws {
        guard (1...Self.maxLength).contains(length) else {
            throw ValidationError("--length must be from 1 to \(Self.maxLength), got \(length)")
        }
        guard (1...Self.maxLength).contains(slots) else {
            throw ValidationError("--slots must be from 1 (the input's slot) to \(Self.maxLength), got \(slots)")
        }
    }

    func run() throws {
        guard let steps = Revolve.forwardSteps(length: length, slots: slots) else {
            throw ValidationError("the forward count of \(length) layers with \(slots) slots does not fit 64 bits; use more slots")
        }
        // The reversal only: Griewank's schedule starts from the stored input.
        var actions: [ChainAction]? = nil
        var peak = Swift.min(slots, length)   // Revolve stores as many states as it has slots for
        if length <= Self.maxListedLength {
            let schedule = ChainSchedule.revolve(length: length, slots: slots)
            actions = schedule.backward.filter { if case .free(0) = $0 { return false }; return true }
            peak = schedule.peakSlots
        }
        if json {
            struct Output: Encodable { let length, slots, forward_steps: Int; let schedule: [String]? }
            print(try jsonString(Output(length: length, slots: slots, forward_steps: steps, schedule: actions?.map(\.description))))
        } else {
            print("chain of \(length) layers, \(slots) slots: \(steps) forward steps (peak \(peak) slots)")
            if let actions {
                for a in actions { print("  \(a)") }
            } else {
                print("  (the actions are listed for chains of at most \(Self.maxListedLength) layers)")
            }
        }
    }
}

struct PlanBudget: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "budget",
        abstract: "Profile a training step of a workload (or read a profile) and plan what to recompute under a memory budget.",
        discussion: """
            remat plan --model gpt-mini --budget 0.5 prints the plan: counts and bytes kept and recomputed, \
            predicted peak and step-time overhead, and the ops recomputed (by stable name). \
            remat plan --stats DIR --budget 0.5 plans offline from the files `remat profile --out DIR` wrote.
            """)

    @OptionGroup var engine: EngineOptions
    @OptionGroup var workloadOptions: WorkloadOptions
    @Option(help: "Plan from the profile files in this directory (remat profile --out DIR) instead of profiling now.")
    var stats: String?
    @OptionGroup var budgetOptions: BudgetOptions
    @Flag(help: "Print the plan as JSON.") var json = false
    @Option(parsing: .unconditional, help: "Also list the N largest tensors alive at the predicted peak, N from 0 to 100000 (what a lower budget would have to drop).")
    var showPeak = 0
    @Flag(help: "Instead of one budget: the budget → predicted step time frontier, from the unconstrained peak down to the least peak, recompute-only beside the actions allowed (lossless codecs; --allow-lossy adds lossy ones), with the knee marked.")
    var sweep = false
    @Option(parsing: .unconditional, help: "Budgets on the frontier with --sweep, 3 to 200.") var points = 12
    @Option(help: "With --sweep: a directory to write frontier.csv and frontier.json into (they appear together).") var out: String?

    func validate() throws {
        if sweep {
            guard budgetOptions.budget == nil else { throw ValidationError("--sweep plans at every budget from the unconstrained peak down: give no --budget with it") }
            guard showPeak == 0 else { throw ValidationError("--show-peak lists one plan's peak: give --budget, not --sweep") }
            try requireRange("--points", points, 3...200)
            if let out { try requireWritableDirectory("--out", out) }
        } else {
            guard budgetOptions.budget != nil else { throw ValidationError("--budget is required: bytes with a unit (300MiB) or a fraction (0.6), or --sweep for the frontier") }
            guard out == nil, points == 12 else { throw ValidationError("--points and --out go with --sweep") }
        }
        if budgetOptions.recomputeOnly && sweep { throw ValidationError("--sweep already shows recompute-only beside the other actions: drop --recompute-only") }
        try requireRange("--show-peak", showPeak, 0...100_000)
        if let stats {
            guard workloadOptions.model == nil, workloadOptions.batch == nil else {
                throw ValidationError("--stats plans the profiled step as it was: give no --model or --batch with it")
            }
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: stats, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw ValidationError("--stats \(stats) is not a directory (remat profile --out DIR writes one)")
            }
        }
    }

    func run() throws {
        engine.apply()
        let solver = try budgetOptions.parsedSolver()
        let graph: StepGraph
        let what: String
        if let stats {
            graph = try StepGraph.readStats(from: stats)
            what = "\(graph.model) on input \(graph.inputShape) (profile \(stats))"
        } else {
            let b: Int
            (graph, b) = try captureWorkload(workloadOptions, timingRuns: 2)
            what = "\(workloadOptions.name), batch \(b)"
        }
        if sweep { return try runSweep(graph, what: what, solver: solver) }
        let budget = try budgetOptions.parsedBudget()!
        let plan = try Planner.plan(graph, budget: budget, solver: solver, options: budgetOptions.parsedPlanOptions())
        if json {
            print(try plan.jsonString())
            return
        }
        print("\(what): \(plan.summary)")
        let sim = PlanSimulator(graph)
        print(String(format: "planning took %.3f s over %d candidate ops", plan.planningSeconds, sim.candidates.count))
        if graph.actionCosts == nil {
            print("this profile has no codec costs (written before codecs were planned): keep or recompute only")
        }
        let bytesOf = Dictionary(uniqueKeysWithValues: sim.candidates.map { ($0.name, $0.bytes) })
        func column(_ s: String, _ n: Int) -> String { s.padding(toLength: Swift.max(n, s.count), withPad: " ", startingAt: 0) }
        if !plan.recompute.isEmpty { print("recompute: \(plan.recomputedCount) ops, \(formatBytes(plan.recomputedBytes))") }
        for n in plan.recompute { print("  recompute \(column(formatBytes(bytesOf[n] ?? 0), 10)) \(n)") }
        if !plan.compress.isEmpty {
            print("compress: \(plan.compress.count) ops, \(formatBytes(plan.compress.reduce(0) { $0 + $1.bytes })) into \(formatBytes(plan.compress.reduce(0) { $0 + $1.packedBytes }))"
                  + (plan.lossyChoices.isEmpty ? " (all lossless)" : " (\(plan.lossyChoices.count) lossy: \(Set(plan.lossyChoices.map(\.codec)).sorted().joined(separator: ", ")))"))
        }
        for c in plan.compress {
            print("  compress  \(column(formatBytes(c.bytes), 10)) → \(column(formatBytes(c.packedBytes), 10)) \(column(c.codec, 11)) \(c.lossless ? "lossless" : "LOSSY   ") \(c.op)")
        }
        if !plan.offload.isEmpty {
            print("offload: \(plan.offload.count) ops, \(formatBytes(plan.offload.reduce(0) { $0 + $1.bytes })) to the spill store"
                  + String(format: " (predicted %.1f ms of the step: stalls and the I/O thread's share)", plan.predictedOffloadSeconds * 1000))
        }
        for o in plan.offload { print("  offload   \(column(formatBytes(o.bytes), 10)) \(o.op)") }
        print("keep: \(plan.keptCount) ops, \(formatBytes(plan.keptBytes))")
        if showPeak > 0 {
            let atPeak = sim.tensorsAtPeak(try sim.actions(of: plan))
            let total = atPeak.reduce(0) { $0 + $1.bytes }
            print("at the predicted peak (\(plan.predictedPeakLocation)): \(atPeak.count) tensors of the step, \(formatBytes(total)), besides \(formatBytes(graph.baselineBytes)) from before it; largest:")
            for t in atPeak.prefix(showPeak) {
                print("  \(formatBytes(t.bytes).padding(toLength: 10, withPad: " ", startingAt: 0)) \(t.category.description.padding(toLength: 12, withPad: " ", startingAt: 0)) \(t.name)")
            }
        }
    }
}

extension PlanBudget {
    /// The frontiers, printed side by side (or as JSON), and written to --out.
    func runSweep(_ graph: StepGraph, what: String, solver: PlanSolver) throws {
        let sim = PlanSimulator(graph)
        let options = try budgetOptions.parsedPlanOptions()
        // One grid of budgets for both, down to the lower least peak.
        let withCodecs = graph.actionCosts != nil
        let least = Planner.leastPeak(sim, options: withCodecs ? options : .recomputeOnly)
        let grid = Planner.budgetGrid(sim, down: least, points: points)
        var frontiers = [try Planner.frontier(sim, options: .recomputeOnly, budgets: grid, solver: solver)]
        if withCodecs { frontiers.append(try Planner.frontier(sim, options: options, budgets: grid, solver: solver)) }
        if let out {
            var csv = frontiers[0].csv
            for f in frontiers.dropFirst() { csv.rows += f.csv.rows }
            try AtomicFile.writeDirectory(out, files: [("frontier.csv", Array(csv.text.utf8)),
                                                       ("frontier.json", Array(try jsonString(frontiers).utf8))])
        }
        if json {
            print(try jsonString(frontiers))
            return
        }
        print("\(what): budget → predicted step time, \(points) budgets from the unconstrained peak (\(formatBytes(frontiers[0].unconstrainedPeakBytes))) down to the least peak (\(formatBytes(least)))")
        if graph.actionCosts == nil { print("this profile has no codec costs (written before codecs were planned): recompute only") }
        for f in frontiers {
            print("\(f.actions): least peak \(formatBytes(f.leastPeakBytes))" + (f.knee.map { k in
                String(format: "; knee at %@ (x%.3f): past it each MiB saved costs more than the frontier's average MiB", formatBytes(f.points[k].predictedPeakBytes), f.points[k].overhead)
            } ?? ""))
            print("  budget      peak        time      recomputed  compressed  offloaded  lossy")
            for (i, p) in f.points.enumerated() {
                let cells = [formatBytes(p.budgetBytes), formatBytes(p.predictedPeakBytes), String(format: "x%.3f", p.overhead),
                             String(p.recomputed), String(p.compressed), String(p.offloaded), String(p.lossy)]
                print("  " + zip(cells, [12, 12, 10, 12, 12, 11, 6]).map { $0.padding(toLength: Swift.max($1, $0.count), withPad: " ", startingAt: 0) }.joined()
                      + (i == f.knee ? "  ← knee" : ""))
            }
        }
        if let out { print("wrote \(out.hasSuffix("/") ? out : out + "/")frontier.csv and frontier.json") }
    }
}

struct ProfileCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "profile",
        abstract: "Profile one training step of a workload and write its statistics (node_stats.csv, activation_stats.csv, ...).",
        discussion: """
            Runs a warm-up step, timed steps (median per-op forward and backward time) and one step with the \
            memory ledger's timeline, then writes into DIR: node_stats.csv (per forward op and backward node: \
            rank, run time, live-bytes peak), activation_stats.csv (per tensor: liveness ranks, bytes, inactive \
            time, recompute time and memory, recompute ratio), saved_slots.csv, memory_events.csv and step.json. \
            remat plan --stats DIR --budget X plans from them offline.
            """)

    @OptionGroup var engine: EngineOptions
    @OptionGroup var workloadOptions: WorkloadOptions
    @Option(parsing: .unconditional, help: "Timed steps, 1 to 100 (per-op times are their medians).") var runs = 3
    @Option(help: "Directory to write the statistics into (created if missing; the files appear together).") var out: String

    func validate() throws {
        try requireRange("--runs", runs, 1...100)
        try requireWritableDirectory("--out", out)
    }

    func run() throws {
        engine.apply()
        let model = workloadOptions.name
        let (graph, b) = try captureWorkload(workloadOptions, timingRuns: runs)
        try graph.writeStats(to: out)
        let sim = PlanSimulator(graph)
        let floor = sim.simulate(Set(sim.candidates.indices))
        let saved = graph.tensors.filter { !$0.savedBy.isEmpty }
        print("\(model), batch \(b): \(graph.ops.count) forward ops, \(graph.backwardOrder.count) backward nodes, \(graph.tensors.count) tensors (\(saved.count) saved for backward, \(formatBytes(saved.reduce(0) { $0 + $1.bytes })))")
        print(String(format: "step %.3f s (median of %d); measured peak %@; %d plannable ops; the least peak a plan reaches %@",
                     graph.stepSeconds, runs, formatBytes(graph.measuredPeakBytes), sim.candidates.count, formatBytes(floor.peakBytes)))
        print("wrote \(StepGraph.statsFiles.map { (out.hasSuffix("/") ? out : out + "/") + $0 }.joined(separator: ", "))")
    }
}

/// Profiles one training step of workload `model` at `batch` (default: the workload's) with its
/// spec optimizer on its synthetic batches. Returns the step and the batch size used.
func captureWorkload(_ options: WorkloadOptions, timingRuns: Int) throws -> (StepGraph, Int) {
    let (workload, b) = try options.workload()
    let trainer = Trainer(model: workload.model, optimizer: workload.makeOptimizer(), gradientClip: nil)
    return (try StepCapture.capture(trainer, batch: workload.batches(b, 7)(), timingRuns: timingRuns), b)
}
