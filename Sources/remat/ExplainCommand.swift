import ArgumentParser
import Foundation
import Remat

struct ExplainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "explain",
        abstract: "Show per module whether it is checkpointed and every saved tensor, kept or recomputed, with totals.")

    @OptionGroup var engine: EngineOptions
    @OptionGroup var policyOption: PolicyOption
    @OptionGroup var compression: CompressionOption
    @OptionGroup var workloadOptions: WorkloadOptions
    @Flag(help: "List every saved tensor (default: modules and totals, and the tensors of the first block).") var all = false
    @Flag(help: "Print JSON: totals and every saved tensor.") var json = false

    func run() throws {
        engine.apply()
        let policy = try policyOption.parsed()
        let (workload, b) = try workloadOptions.workload()
        let model = workload.name
        try checkSelectedModules(workload.model, try compression.parsed(), nil)
        let e = try CheckpointExplainer.explain(workload, policy: policy, compression: compression.parsed(), batchSize: b)
        if json {
            struct Row: Encodable {
                let name: String; let shape: [Int]; let dtype: String; let bytes: Int; let kept: Bool
                let codec: String?; let packed_bytes: Int?; let saturated: Int; let ignored_codec: String?
            }
            struct Output: Encodable {
                let model: String; let batch: Int; let policy: String; let compression: String
                let plain_saved_bytes, kept_bytes, estimated_activation_bytes: Int
                let measured_peak_activation_bytes, measured_peak_activation_bytes_without_policy: Int
                let checkpointed_blocks, blocks: Int
                let checkpointed_modules: [String]
                let saved: [Row]
            }
            print(try jsonString(Output(
                model: model, batch: b, policy: e.policy, compression: e.compression, plain_saved_bytes: e.plainSavedBytes, kept_bytes: e.keptBytes,
                estimated_activation_bytes: e.estimatedActivations, measured_peak_activation_bytes: e.measuredPeakActivations,
                measured_peak_activation_bytes_without_policy: e.measuredPeakActivationsWithoutPolicy,
                checkpointed_blocks: e.checkpointedBlocks, blocks: e.blocks,
                checkpointed_modules: e.modules.filter(\.checkpointed).map(\.path),
                saved: e.saved.map { Row(name: $0.info.name, shape: $0.info.shape, dtype: $0.info.dtype.description, bytes: $0.info.byteCount, kept: $0.kept,
                                         codec: $0.codec?.description, packed_bytes: $0.packedBytes, saturated: $0.saturated,
                                         ignored_codec: $0.ignoredCodec?.description) })))
            return
        }
        print("\(model), batch \(b), policy \(e.policy)" + (e.compression.isEmpty ? "" : ", compression \(e.compression)"))
        print("")
        print("module                                   type                    params  checkpointed")
        for row in e.modules where all || row.path.split(separator: ".").count <= 3 {
            print("\(row.path.padding(toLength: 40, withPad: " ", startingAt: 0)) \(row.typeName.padding(toLength: 22, withPad: " ", startingAt: 0)) \(String(row.parameters).leftPad(8))  \(row.checkpointed ? "✓" : "✗")")
        }
        print("")
        print("saved tensor                                         shape               dtype     bytes      ")
        let shown = all ? e.saved : e.saved.filter { !$0.info.name.hasPrefix("blocks.") || $0.info.name.hasPrefix("blocks.0.") || $0.info.name.hasPrefix("blocks.0/") }
        for r in shown {
            var fate = r.kept ? "kept" : "recomputed"
            if let c = r.codec, let p = r.packedBytes {
                fate = "packed \(c) \(p) B" + (r.saturated > 0 ? ", \(r.saturated) saturated" : "")
            } else if let c = r.ignoredCodec {
                fate += " (\(c) ignored: recomputed tensors are not packed)"
            }
            print("\(r.info.name.padding(toLength: 52, withPad: " ", startingAt: 0)) \("\(r.info.shape)".padding(toLength: 19, withPad: " ", startingAt: 0)) \(r.info.dtype.description.padding(toLength: 9, withPad: " ", startingAt: 0)) \(String(r.info.byteCount).leftPad(10))  \(fate)")
        }
        if !all && shown.count < e.saved.count { print("… \(e.saved.count - shown.count) more in the other blocks (--all lists them)") }
        let kept = e.saved.filter(\.kept).count
        print("")
        print("saved tensors: \(e.saved.count), kept \(kept), recomputed \(e.saved.count - kept); checkpointed blocks \(e.checkpointedBlocks) of \(e.blocks)")
        if !e.compression.isEmpty {
            let packed = e.saved.filter { $0.packedBytes != nil }
            let raw = packed.reduce(0) { $0 + $1.info.byteCount }, bytes = packed.reduce(0) { $0 + $1.packedBytes! }
            let ignored = e.saved.filter { $0.ignoredCodec != nil }.count
            print("compression \(e.compression): \(packed.count) tensors packed, \(mib(raw)) → \(mib(bytes)) (tensors sharing storage counted each); \(ignored) selected tensors recomputed instead (codec ignored)")
        }
        let with = e.compression.isEmpty ? e.policy : "\(e.policy) + \(e.compression)"
        print("activation bytes at the end of the forward: plain \(mib(e.plainSavedBytes)), with \(with) \(mib(e.keptBytes))")
        print("estimate (per-block bytes × checkpointed blocks): \(mib(e.estimatedActivations)) — off by \(String(format: "%+.1f%%", 100 * (Double(e.estimatedActivations) / Double(max(e.keptBytes, 1)) - 1))) from the measured \(mib(e.keptBytes))")
        print("measured peak activations during forward + backward: plain \(mib(e.measuredPeakActivationsWithoutPolicy)), with \(with) \(mib(e.measuredPeakActivations))")
    }
}

extension String {
    func leftPad(_ n: Int) -> String { count >= n ? self : String(repeating: " ", count: n - count) + self }
}
