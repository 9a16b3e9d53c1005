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
/// of real steps, the frontier predicted by the simulator from the captured step.
public enum MemoryReport {
    /// What one policy's step measured.
    public struct Run: Sendable {
        public var label: String
        public var timeline: CategoryTimeline
        /// The median of ``MemoryReport/timedSteps`` steps (the timeline's step, with its marks, is not timed).
        public var stepMilliseconds: Double
    }

    /// Steps timed per run (after a warm-up step), their median reported.
    public static let timedSteps = 3

    /// Builds the report. `compare`: policies beside `none`; `budget`: a plan made and run too;
    /// `provenance`: the command line and anything else to state (versions and the machine are added).
    public static func make(workload name: String, batchSize: Int? = nil, compare: [CheckpointPolicy] = [], budget: MemoryBudget? = nil,
                            frontierPoints: Int = 8, provenance: [(label: String, value: String)] = []) throws -> HTMLReport {
        // Everything in a ledger of its own, the model's parameters included.
        let ledger = MemoryLedger(label: "report")
        return try MemoryLedger.withLedger(ledger) {
            try make(workload: try ModelZoo.workload(name), name: name, batchSize: batchSize, compare: compare, budget: budget,
                     frontierPoints: frontierPoints, provenance: provenance, ledger: ledger)
        }
    }

    private static func make(workload: Workload, name: String, batchSize: Int?, compare: [CheckpointPolicy], budget: MemoryBudget?,
                             frontierPoints: Int, provenance: [(label: String, value: String)], ledger: MemoryLedger) throws -> HTMLReport {
        let batch = batchSize ?? workload.specBatchSize
        let trainer = Trainer(model: workload.model, optimizer: workload.makeOptimizer(), gradientClip: nil, ledger: ledger)
        let next = workload.batches(batch, 7)
        let input = next()

        func measured(_ label: String) -> Run {
            trainer.preservingState {
                trainer.step(input)   // warm: optimizer state and caches exist
                let milliseconds = median((0..<timedSteps).map { _ in trainer.step(input).stepMilliseconds })
                let start = ledger.breakdown
                ledger.resetPeak()
                ledger.startTimeline()
                // Each op marks the timeline as it starts computing, so the peak is named by the
                // op running then (the timeline's phase) beside the allocation's own label.
                _ = AutogradContext.with({ ctx in
                    let forward = ctx.opObserver, backward = ctx.backwardObserver
                    ctx.opObserver = { node, output in ledger.mark("after \(node.name)"); forward?(node, output) }
                    ctx.backwardObserver = { node in ledger.mark("backward of \(node.name)"); backward?(node) }
                }) { trainer.step(input) }
                return Run(label: label, timeline: CategoryTimeline(events: ledger.stopTimeline(), start: start),
                           stepMilliseconds: milliseconds)
            }
        }

        try trainer.model.applyCheckpointing(.none)
        let graph = try trainer.preservingState { try StepCapture.capture(trainer.stepRunner(input), timingRuns: 2) }
        var runs = [measured("none")]
        for policy in compare where policy != .none {
            try trainer.model.applyCheckpointing(policy)
            runs.append(measured("\(policy)"))
        }
        try trainer.model.applyCheckpointing(.none)
        var plan: MemoryPlan? = nil
        if let budget {
            let p = try Planner.plan(graph, budget: budget)
            try trainer.model.applyPlan(p)
            runs.append(measured("plan for \(TimelineCharts.formatMiB(p.budgetBytes))"))
            try trainer.model.applyCheckpointing(.none)
            plan = p
        }
        let sim = PlanSimulator(graph)
        let frontiers = [try Planner.frontier(sim, options: .recomputeOnly, points: frontierPoints),
                         try Planner.frontier(sim, options: .default, points: frontierPoints)]
        let base = runs[0].stepMilliseconds
        let policies = runs.dropFirst().map {
            FrontierChart.Policy(name: $0.label, peakBytes: $0.timeline.peak.totalBytes, overhead: $0.stepMilliseconds / base)
        }

        let timelines = try TimelineCharts.charts(runs.map { ($0.label, $0.timeline) }, budgetBytes: plan?.budgetBytes)
        let profile = OpProfileCharts.charts(graph, plan: plan, label: plan == nil ? "unplanned" : "plan")
        let frontier = FrontierChart.chart(frontiers, policies: policies, title: "\(name) batch \(batch): budget → step time (predicted)")
        var diagrams = [StepGraphDiagram.diagram(graph, plan: nil, title: "The step unplanned")]
        if let plan { diagrams.append(StepGraphDiagram.diagram(graph, plan: plan, title: "Under the plan for \(TimelineCharts.formatMiB(plan.budgetBytes))")) }

        let mib = TimelineCharts.formatMiB
        let runTable = HTMLReport.Table(caption: "each run's step", header: ["run", "step ms", "× none", "peak", "op at the peak"] + CategoryTimeline.order.map(\.description),
                                        rows: runs.map { r in
                                            [r.label, String(format: "%.1f", r.stepMilliseconds), String(format: "%.2f", r.stepMilliseconds / base),
                                             mib(r.timeline.peak.totalBytes), r.timeline.peak.name + (r.timeline.peakPhase.map { " (\($0))" } ?? "")] + r.timeline.peak.bytes.map(mib)
                                        })
        let action = OpProfileCharts.actions(graph, plan: plan)
        let saved = OpProfileCharts.savedBytes(graph)
        let opTable = HTMLReport.Table(caption: "per op", header: ["op", "kind", "forward ms", "backward ms", "saved", "action"],
                                       rows: graph.ops.map { op in
                                           [op.name, op.kind, String(format: "%.3f", op.seconds * 1000),
                                            String(format: "%.3f", (graph.backwardSeconds[op.name] ?? 0) * 1000), mib(saved[op.name] ?? 0),
                                            (action[op.name] ?? .notPlannable).rawValue]
                                       })
        let frontierTable = HTMLReport.Table(caption: "frontier points", header: ["actions", "budget", "predicted peak", "× unplanned", "recomputed", "compressed", "offloaded", "knee"],
                                             rows: frontiers.flatMap { f in
                                                 f.points.enumerated().map { i, p in
                                                     [f.actions, mib(p.budgetBytes), mib(p.predictedPeakBytes), String(format: "%.3f", p.overhead),
                                                      "\(p.recomputed)", "\(p.compressed)", "\(p.offloaded)", f.knee == i ? "knee" : ""]
                                                 }
                                             })
        let sections: [HTMLReport.Section] = [
            .init(id: "timeline", title: "Memory during one step",
                  paragraphs: ["Live bytes by category through one training step (forward, backward, optimizer), measured by the ledger; every chart on the same axes. The peak is marked with the allocation the ledger was making."],
                  figures: try timelines.map { try $0.svg() }, tables: [runTable]),
            .init(id: "ops", title: "Per-op time and saved bytes",
                  paragraphs: ["Median forward and backward time of each forward op and the bytes of what it saves for backward, from the captured step; each bar coloured by what \(plan == nil ? "a plan" : "the plan") does with the op's saved tensors."],
                  figures: try profile.map { try $0.svg() }, tables: [opTable]),
            .init(id: "frontier", title: "Budget → step time",
                  paragraphs: ["Predicted step time over the unplanned step's against predicted peak, for plans that recompute only and for plans that may also compress losslessly and offload, from the unconstrained peak down to the least peak each reaches; the knee is where each MiB saved starts to cost more than the average. The policies are measured."],
                  figures: [try frontier.svg()], tables: [frontierTable]),
            .init(id: "graph", title: "The step graph",
                  paragraphs: ["The forward's ops by block, in order, with their inputs; colours say what happens to each op's saved tensors."],
                  figures: try diagrams.map { try $0.svg() }),
        ]
        var facts = provenance
        facts.append(("workload", "\(name), batch \(batch), input \(input.input.shape)"))
        facts.append(("threads", "\(Runtime.threads)"))
        facts.append(("machine", ProcessInfo.processInfo.hostName + ", " + cpuName()))
        facts.append(("made", ISO8601DateFormatter().string(from: Date())))
        return HTMLReport(title: "Remat memory report: \(name), batch \(batch)", sections: sections, provenance: facts)
    }

    /// The CPU's model name (Linux: /proc/cpuinfo), or "unknown CPU".
    static func cpuName() -> String {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("model name") }),
              let colon = line.firstIndex(of: ":") else { return "unknown CPU" }
        return line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
    }
}
