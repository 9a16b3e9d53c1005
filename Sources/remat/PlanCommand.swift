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

    @Option(help: "Layers in the chain.") var length: Int
    @Option(help: "Checkpoint slots, including the one holding the input.") var slots: Int
    @Flag(help: "Print JSON {length, slots, forward_steps, schedule}.") var json = false

    func validate() throws {
        guard length >= 1 else { throw ValidationError("--length must be at least 1, got \(length)") }
        guard slots >= 1 else { throw ValidationError("--slots must be at least 1 (the input's slot), got \(slots)") }
    }

    func run() throws {
        let schedule = ChainSchedule.revolve(length: length, slots: slots)
        // The reversal only: Griewank's schedule starts from the stored input.
        let actions = schedule.backward.filter { if case .free(0) = $0 { return false }; return true }
        if json {
            struct Output: Encodable { let length, slots, forward_steps: Int; let schedule: [String] }
            print(try jsonString(Output(length: length, slots: slots, forward_steps: schedule.forwardSteps,
                                        schedule: actions.map(\.description))))
        } else {
            print("chain of \(length) layers, \(slots) slots: \(schedule.forwardSteps) forward steps (peak \(schedule.peakSlots) slots)")
            for a in actions { print("  \(a)") }
        }
    }
}

struct PlanBudget: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "budget",
        abstract: "Profile a training step of a workload and plan what to recompute under a memory budget.",
        discussion: "remat plan --model gpt-mini --budget 0.5 prints the plan: counts and bytes kept and recomputed, predicted peak and step-time overhead, and the ops recomputed (by stable name).")

    @OptionGroup var engine: EngineOptions
    @Option(help: "Workload: \(ModelZoo.names.joined(separator: ", ")).") var model = "gpt-mini"
    @Option(help: "Batch size (default: the workload's).") var batch: Int?
    @Option(help: "Memory budget: 300MiB, 1.5GiB, or a fraction of the unconstrained peak (0.5).") var budget: String
    @Option(help: "Solver: auto, greedy, knapsack, exhaustive.") var solver = "auto"
    @Flag(help: "Print the plan as JSON.") var json = false

    func run() throws {
        engine.apply()
        let workload = try ModelZoo.workload(model)
        let b = batch ?? workload.specBatchSize
        let trainer = Trainer(model: workload.model, optimizer: workload.makeOptimizer(), gradientClip: nil)
        let graph = try StepCapture.capture(trainer, batch: workload.batches(b, 7)(), timingRuns: 2)
        let plan = try Planner.plan(graph, budget: MemoryBudget.parse(budget), solver: PlanSolver.parse(solver))
        if json {
            print(plan.jsonString())
            return
        }
        print("\(model), batch \(b): \(plan.summary)")
        print(String(format: "planning took %.3f s over %d candidate ops", plan.planningSeconds, PlanSimulator(graph).candidates.count))
        for n in plan.recompute { print("  recompute \(n)") }
    }
}
