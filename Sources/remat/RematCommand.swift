import ArgumentParser
import Remat

@main
struct RematCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "remat",
        abstract: "Train neural networks in less memory: activation checkpointing, planning and measurement.",
        subcommands: [DemoCommand.self, TrainCommand.self, StepCommand.self, ExplainCommand.self, ProfileCommand.self, PlanCommand.self, EmbedCommand.self, BenchCommand.self])
}

/// Bytes as MiB with one decimal.
func mib(_ bytes: Int) -> String {
    let v = Double(bytes) / 1_048_576
    return String(format: "%.1f MiB", v)
}
