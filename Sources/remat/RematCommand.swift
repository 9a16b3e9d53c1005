import ArgumentParser
import Remat

@main
struct RematCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "remat",
        abstract: "Train neural networks in less memory: activation checkpointing, planning and measurement.",
        subcommands: [DemoCommand.self, TrainCommand.self, StepCommand.self, ExplainCommand.self, ProfileCommand.self, PlanCommand.self, EmbedCommand.self, BenchCommand.self])
}

/// Options every command that computes shares.
struct EngineOptions: ParsableArguments {
    @Option(help: "Threads for kernels and GEMM (default: CPUs, at most 4; env REMAT_THREADS).")
    var threads: Int?

    func apply() {
        if let threads { Runtime.setThreads(threads) } else { _ = Runtime.threads }
    }
}

/// Bytes as MiB with one decimal.
func mib(_ bytes: Int) -> String {
    let v = Double(bytes) / 1_048_576
    return String(format: "%.1f MiB", v)
}
