import ArgumentParser
import Foundation
import Remat

struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "One HTML file with the memory story of a training step.",
        discussion: """
            Measures a step of the workload under none, --policy and each --compare policy and,
            with --budget, the plan for that budget (--allow-lossy: lossy codecs too), and writes
            one self-contained HTML file (inline SVG and CSS, no script, no network): the memory
            timeline by category of each run on one pair of axes with the peak named; per-op
            forward and backward time and saved bytes coloured by what the plan does; the budget →
            step-time frontier (recompute-only, lossless and, with --allow-lossy, lossy) with the
            knee and the policies as measured points; the step graph before and after the plan;
            the tables behind each figure, the command line and the machine.
            """)

    @OptionGroup var engine: EngineOptions
    @OptionGroup var workloadOptions: WorkloadOptions
    @Option(help: "The policy the report is about, measured beside none (give it or --budget, not both): \(ReportCommand.policyNames).") var policy: String?
    @Option(help: "A policy to measure beside none (repeatable): \(ReportCommand.policyNames).") var compare: [String] = []
    @Option(parsing: .unconditional, help: "Memory budget for a plan: bytes with a unit (300MiB) or a fraction of the unconstrained peak (0 < f ≤ 1).")
    var budget: String?
    @Option(name: .customLong("allow-lossy"), help: "Lossy codecs the plan and a third frontier may use (comma separated: bf16, fp8-e4m3, …; default: lossless only).")
    var allowLossy: String?
    @Option(parsing: .unconditional, help: "Points on each frontier, 2 to 64.") var points = 8
    @Option(help: "Where to write the report (an .html file; written atomically).") var out: String

    static let policyNames = "all, alternate, every-k:K, sqrt, recursive:L, revolve:S, store-nothing, heavy-ops[:PARAMS], auto[:PARAMS], save-matmuls, modules:PATH[,PATH...]"

    /// --policy first, then --compare's, each parsed.
    var measuredPolicies: [String] { (policy.map { [$0] } ?? []) + compare }

    func validate() throws {
        if let policy, budget != nil {
            throw ValidationError("--policy \(policy) and --budget: the report is about a policy or a plan; give one (measure more policies with --compare)")
        }
        var seen: Set<String> = []
        for (i, p) in measuredPolicies.enumerated() {
            let flag = i == 0 && policy != nil ? "--policy" : "--compare"
            do { _ = try CheckpointPolicy.parse(p) } catch let e as CheckpointPolicy.ParseError { throw ValidationError("\(flag): \(e.description)") }
            guard seen.insert(p).inserted else { throw ValidationError("\(flag): '\(p)' is given twice") }
            if p == "none" { throw ValidationError("\(flag): none is always measured; give the policies to set beside it") }
        }
        if let budget {
            do { _ = try MemoryBudget.parse(budget) } catch let e as PlanningError { throw ValidationError("--budget: \(e.description)") }
        }
        _ = try parsedLossy()
        try requireRange("--points", points, 2...64)
        try requireWritableFile("--out", out)
    }

    func parsedLossy() throws -> Set<Codec> {
        do { return try allowLossy.map(PlanOptions.parseLossy) ?? [] } catch { throw ValidationError("--allow-lossy: \(error.description)") }
    }

    func run() throws {
        engine.apply()
        let name = workloadOptions.name
        let batch = try workloadOptions.batch ?? ModelZoo.specBatchSize(name)
        try ModelZoo.checkMemory(workload: name, batchSize: batch)
        let report = try MemoryReport.make(workload: name, batchSize: batch, compare: try measuredPolicies.map(CheckpointPolicy.parse),
                                           budget: try budget.map(MemoryBudget.parse), allowLossy: try parsedLossy(), frontierPoints: points,
                                           provenance: [("command", quotedCommandLine())])
        try report.write(to: out)
        let bytes = (try? FileManager.default.attributesOfItem(atPath: out)[.size] as? Int) ?? 0
        print("wrote \(out) (\(bytes / 1024) KiB): \(report.sections.map(\.title).joined(separator: "; "))")
    }
}
