import Foundation
import RematCore
import RematCheckpoint
import RematPlanning
import RematTraining
import RematSVG

/// The memory story of one training step of a workload, as an ``HTMLReport``: the timeline by
/// category under `none`, each compared policy and the plan for a budget; the per-op profile;
/// the budget → step-time frontier with the policies as points; the step graph before and after
/// the plan; and the tables behind each figure.
///
/// Every figure is measured in this run (a fresh model, its own ledger): timelines and step times
/// of real steps, the frontier predicted by the simulator from the captured step. The section
/// builders (``timelineSection(_:budgetBytes:)``, ``profileSection(_:plan:)``,
/// ``frontierSection(_:policies:allowLossy:points:title:)``, ``graphSection(_:plan:)``) are the
/// ones `remat train --report` and `remat demo` use too.
public enum MemoryReport {
    /// What one policy's step measured.
    public struct Run: Sendable {
        public var label: String
        public var timeline: CategoryTimeline
        /// The step's time (for ``make(workload:batchSize:compare:budget:allowLossy:frontierPoints:provenance:)``:
        /// the median of ``MemoryReport/timedSteps`` steps; the timeline's step, with its marks, is not timed).
        public var stepMilliseconds: Double
        public init(label: String, timeline: CategoryTimeline, stepMilliseconds: Double) {
            self.label = label
            self.timeline = timeline
            self.stepMilliseconds = stepMilliseconds
        }
    }

    /// Steps timed per run (after a warm-up step), their median reported.
    public static let timedSteps = 3

    /// Builds the report. `compare`: policies beside `none`; `budget`: a plan made and run too;
    /// `allowLossy`: lossy codecs the frontier may also use (a third frontier); `provenance`: the
    /// command line and anything else to state (versions and the machine are added).
    public static func make(workload name: String, batchSize: Int? = nil, compare: [CheckpointPolicy] = [], budget: MemoryBudget? = nil,
                            allowLossy: Set<Codec> = [], frontierPoints: Int = 8,
                            provenance: [(label: String, value: String)] = []) throws -> HTMLReport {
        // Everything in a ledger of its own, the model's parameters included.
        let ledger = MemoryLedger(label: "report")
        return try MemoryLedger.withLedger(ledger) {
            try make(workload: try ModelZoo.workload(name), name: name, batchSize: batchSize, compare: compare, budget: budget,
                     allowLossy: allowLossy, frontierPoints: frontierPoints, provenance: provenance, ledger: ledger)
        }
    }

    private static func make(workload: Workload, name: String, batchSize: Int?, compare: [CheckpointPolicy], budget: MemoryBudget?,
                             allowLossy: Set<Codec>, frontierPoints: Int, provenance: [(label: String, value: String)],
                             ledger: MemoryLedger) throws -> HTMLReport {
        let batch = batchSize ?? workload.specBatchSize
        let trainer = Trainer(model: workload.model, optimizer: workload.makeOptimizer(), gradientClip: nil, ledger: ledger)
        let next = workload.batches(batch, 7)
        let input = next()

        func measured(_ label: String) throws -> Run {
            try trainer.preservingState {
                try trainer.checkedStep(input)   // warm: optimizer state and caches exist
                let milliseconds = median(try (0..<timedSteps).map { _ in try trainer.checkedStep(input).stepMilliseconds })
                let (_, timeline) = try record(ledger) { try trainer.checkedStep(input) }
                return Run(label: label, timeline: timeline, stepMilliseconds: milliseconds)
            }
        }

        try trainer.model.applyCheckpointing(.none)
        let graph = try trainer.preservingState { try StepCapture.capture(trainer.stepRunner(input), timingRuns: 2) }
        var runs = [try measured("none")]
        for policy in compare where policy != .none {
            try trainer.model.applyCheckpointing(policy)
            runs.append(try measured("\(policy)"))
        }
        try trainer.model.applyCheckpointing(.none)
        var plan: MemoryPlan? = nil
        if let budget {
            let p = try Planner.plan(graph, budget: budget, options: PlanOptions(allowLossy: allowLossy))
            try trainer.model.applyPlan(p)
            runs.append(try measured("plan for \(TimelineCharts.formatMiB(p.budgetBytes))"))
            try trainer.model.applyCheckpointing(.none)
            plan = p
        }
        let base = runs[0].stepMilliseconds
        let policies = runs.dropFirst().map {
            FrontierChart.Policy(name: $0.label, peakBytes: $0.timeline.peak.totalBytes, overhead: $0.stepMilliseconds / base)
        }
        let sections: [HTMLReport.Section] = [
            try timelineSection(runs, budgetBytes: plan?.budgetBytes),
            try profileSection(graph, plan: plan),
            try frontierSection(graph, policies: policies, allowLossy: allowLossy, points: frontierPoints,
                                title: "\(name) batch \(batch): budget → step time (predicted)"),
            try graphSection(graph, plan: plan),
        ]
        let facts = provenance + machineFacts(workload: "\(name), batch \(batch), input \(input.input.shape)")
        return HTMLReport(title: "Remat memory report: \(name), batch \(batch)", sections: sections, provenance: facts)
    }

    /// Runs `body` (one training step) with the ledger's timeline recording and returns what it
    /// returned and the step's ``CategoryTimeline``. Each op marks the timeline as it starts
    /// computing, so the peak is named by the op running then (the timeline's phase) beside the
    /// allocation's own label. The ledger's peak is reset first.
    public static func record<T>(_ ledger: MemoryLedger, maxSamples: Int = 2000, _ body: () throws -> T) rethrows -> (T, CategoryTimeline) {
        let start = ledger.breakdown
        ledger.resetPeak()
        ledger.startTimeline()
        var stopped = false
        defer { if !stopped { _ = ledger.stopTimeline() } }
        let result = try AutogradContext.with({ ctx in
            let forward = ctx.opObserver, backward = ctx.backwardObserver
            ctx.opObserver = { node, output in ledger.mark("after \(node.name)"); forward?(node, output) }
            ctx.backwardObserver = { node in ledger.mark("backward of \(node.name)"); backward?(node) }
        }) { try body() }
        stopped = true
        return (result, CategoryTimeline(events: ledger.stopTimeline(), start: start, maxSamples: maxSamples))
    }

    // MARK: Sections

    /// The memory timeline of each run, on one pair of axes, with the table of each run's step.
    public static func timelineSection(_ runs: [Run], budgetBytes: Int?, paragraph: String? = nil) throws -> HTMLReport.Section {
        let mib = TimelineCharts.formatMiB
        let base = runs.first?.stepMilliseconds ?? 1
        let timelines = try TimelineCharts.charts(runs.map { ($0.label, $0.timeline) }, budgetBytes: budgetBytes)
        let table = HTMLReport.Table(caption: "each run's step", header: ["run", "step ms", "× \(runs.first?.label ?? "first")", "peak", "op at the peak"] + CategoryTimeline.order.map(\.description),
                                     rows: runs.map { r in
                                         [r.label, String(format: "%.1f", r.stepMilliseconds), String(format: "%.2f", r.stepMilliseconds / base),
                                          mib(r.timeline.peak.totalBytes), r.timeline.peak.name + (r.timeline.peakPhase.map { " (\($0))" } ?? "")] + r.timeline.peak.bytes.map(mib)
                                     })
        let events = runs.map(\.timeline.eventCount)
        let sampling = runs.map(\.timeline).contains { $0.stride > 1 }
            ? " Each chart draws at most \(runs.map { $0.timeline.samples.count }.max() ?? 0) of its step's \(events.min()! == events.max()! ? "\(events[0])" : "\(events.min()!)–\(events.max()!)") ledger events: the events are split into equal runs and the highest of each run is drawn, so the drawn peak is the true peak." : ""
        return .init(id: "timeline", title: "Memory during one step",
                     paragraphs: [(paragraph ?? "Live bytes by category through one training step (forward, backward, optimizer), measured by the ledger; every chart on the same axes. The peak is marked with the allocation the ledger was making and the op running then.") + sampling],
                     figures: try timelines.map { try $0.svg() }, tables: [table])
    }

    /// Per-op forward and backward time and saved bytes of a captured step, coloured by what
    /// `plan` does, with the per-op table.
    public static func profileSection(_ graph: StepGraph, plan: MemoryPlan?) throws -> HTMLReport.Section {
        let mib = TimelineCharts.formatMiB
        let profile = OpProfileCharts.charts(graph, plan: plan, label: plan == nil ? "unplanned" : "plan")
        let action = OpProfileCharts.actions(graph, plan: plan)
        let saved = OpProfileCharts.savedBytes(graph)
        let codec = Dictionary(plan?.compress.map { ($0.op, "\($0.codec)") } ?? [], uniquingKeysWith: { a, _ in a })
        let table = HTMLReport.Table(caption: "per op", header: ["op", "kind", "forward ms", "backward ms", "saved", "action"],
                                     rows: graph.ops.map { op in
                                         [op.name, op.kind, String(format: "%.3f", op.seconds * 1000),
                                          String(format: "%.3f", (graph.backwardSeconds[op.name] ?? 0) * 1000), mib(saved[op.name] ?? 0),
                                          (action[op.name] ?? .notPlannable).rawValue + (codec[op.name].map { " (\($0))" } ?? "")]
                                     })
        return .init(id: "ops", title: "Per-op time and saved bytes",
                     paragraphs: ["Median forward and backward time of each forward op and the bytes of what it saves for backward, from the captured step; each bar coloured by what \(plan == nil ? "a plan" : "the plan") does with the op's saved tensors."],
                     figures: try profile.map { try $0.svg() }, tables: [table])
    }

    /// The budget → step-time frontiers of a captured step (recompute only; lossless; with
    /// `allowLossy` too when given) with `policies` as points, and the table of the points.
    public static func frontierSection(_ graph: StepGraph, policies: [FrontierChart.Policy], allowLossy: Set<Codec> = [], points: Int,
                                       title: String) throws -> HTMLReport.Section {
        let mib = TimelineCharts.formatMiB
        let sim = PlanSimulator(graph)
        var frontiers = [try Planner.frontier(sim, options: .recomputeOnly, points: points),
                         try Planner.frontier(sim, options: .default, points: points)]
        if !allowLossy.isEmpty { frontiers.append(try Planner.frontier(sim, options: PlanOptions(allowLossy: allowLossy), points: points)) }
        let chart = FrontierChart.chart(frontiers, policies: policies, title: title)
        let table = HTMLReport.Table(caption: "frontier points", header: ["actions", "budget", "predicted peak", "× unplanned", "recomputed", "compressed", "offloaded", "knee"],
                                     rows: frontiers.flatMap { f in
                                         f.points.enumerated().map { i, p in
                                             [f.actions, mib(p.budgetBytes), mib(p.predictedPeakBytes), String(format: "%.3f", p.overhead),
                                              "\(p.recomputed)", "\(p.compressed)", "\(p.offloaded)", f.knee == i ? "knee" : ""]
                                         }
                                     })
        let lossy = allowLossy.isEmpty ? "" : ", and for plans that may also use the lossy codecs allowed (\(allowLossy.map(\.description).sorted().joined(separator: ", ")))"
        return .init(id: "frontier", title: "Budget → step time",
                     paragraphs: ["Predicted step time over the unplanned step's against predicted peak, for plans that recompute only and for plans that may also compress losslessly and offload\(lossy), from the unconstrained peak down to the least peak each reaches; the knee is where each MiB saved starts to cost more than the average.\(policies.isEmpty ? "" : " The runs beside it are measured.")"],
                     figures: [try chart.svg()], tables: [table])
    }

    /// The step graph unplanned and, given a plan, under it.
    public static func graphSection(_ graph: StepGraph, plan: MemoryPlan?) throws -> HTMLReport.Section {
        var diagrams = [StepGraphDiagram.diagram(graph, plan: nil, title: "The step unplanned")]
        if let plan { diagrams.append(StepGraphDiagram.diagram(graph, plan: plan, title: "Under the plan for \(TimelineCharts.formatMiB(plan.budgetBytes))")) }
        return .init(id: "graph", title: "The step graph",
                     paragraphs: ["The forward's ops by block, in order, with their inputs; colours say what happens to each op's saved tensors."],
                     figures: try diagrams.map { try $0.svg() })
    }

    /// The workload, threads, GEMM library, machine and time, for a report's provenance.
    public static func machineFacts(workload: String) -> [(label: String, value: String)] {
        [("workload", workload), ("threads", "\(Runtime.threads)"), ("GEMM", Runtime.blasDescription),
         ("machine", ProcessInfo.processInfo.hostName + ", " + cpuName()),
         ("made", ISO8601DateFormatter().string(from: Date()))]
    }

    /// The CPU's model name (Linux: /proc/cpuinfo), or "unknown CPU".
    static func cpuName() -> String {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("model name") }),
              let colon = line.firstIndex(of: ":") else { return "unknown CPU" }
        return line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
    }
}
