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

    func validate() throws {
        guard budgetOptions.budget != nil else { throw ValidationError("--budget is required: bytes with a unit (300MiB) or a fraction (0.6)") }
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
        let budget = try budgetOptions.parsedBudget()!, solver = try budgetOptions.parsedSolver()
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
        let plan = try Planner.plan(graph, budget: budget, solver: solver)
        if json {
            print(try plan.jsonString())
            return
        }
        print("\(what): \(plan.summary)")
        let sim = PlanSimulator(graph)
        print(String(format: "planning took %.3f s over %d candidate ops", plan.planningSeconds, sim.candidates.count))
        for n in plan.recompute { print("  recompute \(n)") }
        if showPeak > 0 {
            let atPeak = sim.tensorsAtPeak(try sim.recomputeSet(Set(plan.recompute)))
            let total = atPeak.reduce(0) { $0 + $1.bytes }
            print("at the predicted peak (\(plan.predictedPeakLocation)): \(atPeak.count) tensors of the step, \(formatBytes(total)), besides \(formatBytes(graph.baselineBytes)) from before it; largest:")
            for t in atPeak.prefix(showPeak) {
                print("  \(formatBytes(t.bytes).padding(toLength: 10, withPad: " ", startingAt: 0)) \(t.category.description.padding(toLength: 12, withPad: " ", startingAt: 0)) \(t.name)")
            }
        }
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
