import ArgumentParser
import Foundation
import Remat

struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "One HTML file with the memory story of a training step.",
        discussion: """
            Measures a step of the workload under none, each --compare policy and, with --budget,
            the plan for that budget, and writes one self-contained HTML file (inline SVG and CSS,
            no script, no network): the memory timeline by category of each run on one pair of
            axes with the peak named; per-op forward and backward time and saved bytes coloured by
            what the plan does; the budget → step-time frontier (recompute-only and lossless) with
            the knee and the policies as measured points; the step graph before and after the
            plan; the tables behind each figure, the command line and the machine.
            """)

    @OptionGroup var engine: EngineOptions
    @OptionGroup var workloadOptions: WorkloadOptions
    @Option(help: "A policy to measure beside none (repeatable): \(ReportCommand.policyNames).") var compare: [String] = []
    @Option(parsing: .unconditional, help: "Memory budget for a plan: bytes with a unit (300MiB) or a fraction of the unconstrained peak (0 < f ≤ 1).")
    var budget: String?
    @Option(parsing: .unconditional, help: "Points on each frontier, 2 to 64.") var points = 8
    @Option(help: "Where to write the report (an .html file; written atomically).") var out: String

    static let policyNames = "all, alternate, every-k:K, sqrt, recursive:L, revolve:S, store-nothing, heavy-ops[:PARAMS], auto[:PARAMS], save-matmuls, modules:PATH[,PATH...]"

    func validate() throws {
        var seen: Set<String> = []
        for p in compare {
            do { _ = try CheckpointPolicy.parse(p) } catch let e as CheckpointPolicy.ParseError { throw ValidationError("--compare: \(e.description)") }
            guard seen.insert(p).inserted else { throw ValidationError("--compare: '\(p)' is given twice") }
            if p == "none" { throw ValidationError("--compare: none is always measured; give the policies to set beside it") }
        }
        if let budget {
            do { _ = try MemoryBudget.parse(budget) } catch let e as PlanningError { throw ValidationError("--budget: \(e.description)") }
        }
        try requireRange("--points", points, 2...64)
        try requireWritableFile("--out", out)
    }

    func run() throws {
        engine.apply()
        let name = workloadOptions.name
        let batch = try workloadOptions.batch ?? ModelZoo.specBatchSize(name)
        try ModelZoo.checkMemory(workload: name, batchSize: batch)
        let command = CommandLine.arguments.map { $0.contains(where: { " '\"".contains($0) }) ? "'\($0.replacingOccurrences(of: "'", with: "'\\''"))'" : $0 }
            .joined(separator: " ")
        let report = try MemoryReport.make(workload: name, batchSize: batch, compare: try compare.map(CheckpointPolicy.parse),
                                           budget: try budget.map(MemoryBudget.parse), frontierPoints: points,
                                           provenance: [("command", command)])
        try report.write(to: out)
        let bytes = (try? FileManager.default.attributesOfItem(atPath: out)[.size] as? Int) ?? 0
        print("wrote \(out) (\(bytes / 1024) KiB): \(report.sections.map(\.title).joined(separator: "; "))")
    }
}
