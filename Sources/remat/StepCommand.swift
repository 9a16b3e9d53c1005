import ArgumentParser
import Foundation
import Remat

struct StepCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "step",
        abstract: "One forward + backward on given weights and batch; writes every parameter's gradient.")

    @OptionGroup var engine: EngineOptions
    @OptionGroup var policyOption: PolicyOption
    @OptionGroup var compression: CompressionOption
    @OptionGroup var offload: OffloadOption
    @Option(help: "Workload: \(ModelZoo.names.joined(separator: ", ")).") var model = "gpt-mini"
    @Option(help: "Weights (safetensors, parameter names as in the workload spec; default: the workload's initial weights).") var weights: String?
    @Option(help: "Batch (safetensors: `input` and `target` I32/I64 [B, T] for GPTs; `input` F32 [B, 3, S, S] and `target` I32/I64 [B] for resnet50-64 (S = 64) and resnet50 (S = 224)).") var batch: String
    @Option(help: "Where to write the gradients (safetensors, one tensor per parameter name).") var saveGrads: String?
    @OptionGroup var budgetOptions: BudgetOptions
    @Flag(help: "Print JSON {\"loss\": Float}.") var json = false

    func validate() throws {
        guard ModelZoo.names.contains(model) else {
            throw ValidationError("--model: unknown workload '\(model)'; known: \(ModelZoo.names.joined(separator: ", "))")
        }
        if budgetOptions.budget != nil && policyOption.policy != "none" {
            throw ValidationError("--budget plans the checkpointing itself; drop --policy \(policyOption.policy)")
        }
        try budgetOptions.requireBudgetForPlannerOptions()
        if budgetOptions.budget != nil {
            try compression.requireAbsent(with: "--budget")
            try offload.requireAbsent(with: "--budget")
        }
        try requireReadableFile("--batch", batch)
        if let weights { try requireReadableFile("--weights", weights) }
        if let saveGrads {
            try requireWritableFile("--save-grads", saveGrads, notSameAs: [("--batch", batch)] + (weights.map { [("--weights", $0)] } ?? []))
        }
    }

    func run() throws {
        engine.apply()
        let workload = try ModelZoo.workload(model)
        try workload.model.applyCheckpointing(policyOption.parsed())
        try checkSelectedModules(workload.model, try compression.parsed(), try offload.parsedSelector())
        workload.model.applyActivationCompression(try compression.parsed())
        let spill = try offload.make()
        defer { spill?.store.close() }
        workload.model.applyActivationOffload(spill)
        let (loss, grads, plan) = try SingleStep.run(workload, weightsPath: weights, batchPath: batch,
                                                     budget: budgetOptions.parsedBudget(), solver: budgetOptions.parsedSolver(),
                                                     options: budgetOptions.parsedPlanOptions())
        if let saveGrads { try SafetensorsFile.write(grads, to: saveGrads) }
        if json {
            struct Output: Encodable { let loss: Float }
            print(try jsonString(Output(loss: loss)))
            return
        }
        if let plan { print(plan.summary) }
        print("loss \(loss)" + (saveGrads.map { "; gradients of \(grads.count) parameters written to \($0)" } ?? ""))
    }
}
