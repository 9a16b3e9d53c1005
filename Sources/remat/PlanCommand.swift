import ArgumentParser
import Foundation
import Remat

struct PlanCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan", abstract: "Checkpointing plans.", subcommands: [PlanChain.self])
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
