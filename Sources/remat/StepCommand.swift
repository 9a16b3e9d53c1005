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
    @Flag(help: "Print JSON {\"loss\": Float}.") var json = false

    func run() throws {
        engine.apply()
        let workload = try ModelZoo.workload(model)
        try workload.model.applyCheckpointing(policyOption.parsed())
        let (loss, grads) = try SingleStep.run(workload, weightsPath: weights, batchPath: batch)
        if let saveGrads { try SafetensorsFile.write(grads, to: saveGrads) }
        if json {
            print("{\"loss\": \(loss)}")
        } else {
            print("loss \(loss)" + (saveGrads.map { "; gradients of \(grads.count) parameters written to \($0)" } ?? ""))
        }
    }
}
