import ArgumentParser
#if canImport(Glibc)
@preconcurrency import Glibc
#endif
import Foundation
import Remat

@main
enum Main {
    static func main() {
        // Lines reach a pipe or file as they are printed (an interrupted run keeps what it said).
        setvbuf(stdout, nil, _IOLBF, 0)
        // Ctrl-C (and SIGUSR1, the clean stop of a data-parallel job) must reach the handler
        // even when the parent started us with them blocked.
        var interrupts = sigset_t()
        sigemptyset(&interrupts)
        sigaddset(&interrupts, SIGINT)
        sigaddset(&interrupts, SIGUSR1)
        sigprocmask(SIG_UNBLOCK, &interrupts, nil)
        RematCommand.main()
    }
}

struct RematCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "remat",
        abstract: "Train neural networks in less memory: activation checkpointing, planning and measurement.",
        subcommands: [DemoCommand.self, TrainCommand.self, StepCommand.self, ExplainCommand.self, ProfileCommand.self, PlanCommand.self, ReportCommand.self, EmbedCommand.self, BenchCommand.self])
}

/// Bytes as MiB with one decimal.
func mib(_ bytes: Int) -> String {
    let v = Double(bytes) / 1_048_576
    return String(format: "%.1f MiB", v)
}

