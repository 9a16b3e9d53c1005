import ArgumentParser
import Foundation
import Remat

struct StepCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "step",
        abstract: "One forward + backward on given weights and batch; writes every parameter's gradient.")

    @OptionGroup var engine: EngineOptions
    @OptionGroup var policyOption: PolicyOption
    @Option(help: "Workload: \(ModelZoo.names.joined(separator: ", ")).") var model = "gpt-mini"
    @Option(help: "Weights (safetensors, parameter names as in the workload spec).") var weights: String?
    @Option(help: "Batch (safetensors: `input` and `target` I32/I64 [B, T] for GPTs; `input` F32 [B, 3, 64, 64] and `target` I32/I64 [B] for resnet50-64).") var batch: String
    @Option(help: "Where to write the gradients (safetensors, one tensor per parameter name).") var saveGrads: String?
    @Option(help: "Memory budget (300MiB, 1.5GiB, or a fraction of the unconstrained peak): profile, plan and run the step under it.")
    var budget: String?
    @Option(help: "Solver with --budget: \(PlanSolver.allCases.map(\.rawValue).joined(separator: ", ")).") var solver = "auto"
    @Flag(help: "Print JSON {\"loss\": Float}.") var json = false

    func validate() throws {
        if budget != nil && policyOption.policy != "none" {
            throw ValidationError("--budget plans the checkpointing itself; drop --policy \(policyOption.policy)")
        }
    }

    func run() throws {
        engine.apply()
        let workload = try ModelZoo.workload(model)
        try workload.model.applyCheckpointing(policyOption.parsed())
        let (loss, grads, plan) = try SingleStep.run(workload, weightsPath: weights, batchPath: batch,
                                                     budget: budget.map(MemoryBudget.parse), solver: PlanSolver.parse(solver))
        if let saveGrads { try SafetensorsFile.write(grads, to: saveGrads) }
        if json {
            print("{\"loss\": \(loss)}")
            return
        }
        if let plan { print(plan.summary) }
        print("loss \(loss)" + (saveGrads.map { "; gradients of \(grads.count) parameters written to \($0)" } ?? ""))
    }
}
