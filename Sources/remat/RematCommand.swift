import ArgumentParser
import Remat

@main
struct RematCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "remat",
        abstract: "Train neural networks in less memory: activation checkpointing, planning and measurement.",
        subcommands: [])
}
