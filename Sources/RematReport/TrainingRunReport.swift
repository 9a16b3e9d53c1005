import Foundation
import RematCore
import RematPlanning
import RematTraining
import RematSVG

/// The report of a training run (`remat train … --report`): every step's peak against the
/// budget, its time and loss; the memory timeline of the last step; and, when the last step ran
/// a plan, that plan's per-op profile, frontier and step graph (``MemoryReport``'s sections).
public enum TrainingRunReport {
    /// Steps drawn and tabulated one by one; longer runs are drawn in at most this many equal
    /// runs of steps, each run drawn as its highest peak, its slowest step and its mean loss.
    public static let maxDrawnSteps = 1000

    /// The run's steps: peak per step (and activation peak) with the budget, step time and loss,
    /// with the table behind them. `profiled`: steps that profiled a new shape first (a memory
    /// budget's capture), marked.
    public static func runSection(_ reports: [StepReport], budgetBytes: Int?, profiled: Set<Int> = [],
                                  paragraph: String? = nil) throws -> HTMLReport.Section {
        let mib = TimelineCharts.formatMiB, toMiB = TimelineCharts.mebibytes
        let buckets = Self.buckets(reports.count)
        let bucketed = buckets.count < reports.count
        func point(_ range: Range<Int>, _ value: (StepReport) -> Double, combine: ([Double]) -> Double, unit: String) -> ChartPoint {
            let v = combine(reports[range].map(value))
            let where_ = range.count == 1 ? "step \(range.lowerBound + 1)" : "steps \(range.lowerBound + 1)–\(range.upperBound)"
            return ChartPoint(x: Double(range.lowerBound + 1), y: v, note: "\(where_): \((v * 10).rounded() / 10) \(unit)")
        }
        let max_: ([Double]) -> Double = { $0.max() ?? 0 }
        let mean: ([Double]) -> Double = { $0.isEmpty ? 0 : $0.reduce(0, +) / Double($0.count) }
        let peaks = buckets.map { point($0, { toMiB($0.peakBytes) }, combine: max_, unit: "MiB") }
        let activations = buckets.map { point($0, { toMiB($0.activationPeakBytes) }, combine: max_, unit: "MiB") }
        let times = buckets.map { point($0, { $0.stepMilliseconds }, combine: max_, unit: "ms") }
        let losses = buckets.map { point($0, { Double($0.loss) }, combine: mean, unit: "") }
        let stepAxis = ChartAxis("step", includeZero: true, include: [Double(reports.count)])
        var memory: [XYChart.Series] = [.init("peak", .line, peaks, colour: 0), .init("activation peak", .line, activations, colour: 3)]
        var notes: [XYChart.Annotation] = []
        if let budgetBytes {
            memory.append(.init("budget", .line, [ChartPoint(x: 0, y: toMiB(budgetBytes)), ChartPoint(x: Double(reports.count), y: toMiB(budgetBytes))],
                                colour: Palette.colours.count - 1))
        }
        if let top = reports.indices.max(by: { reports[$0].peakBytes < reports[$1].peakBytes }) {
            let over = budgetBytes.map { reports[top].peakBytes > $0 ? " (over the budget)" : " (\(mib($0 - reports[top].peakBytes)) under the budget)" } ?? ""
            notes.append(.init(x: Double(top + 1), y: toMiB(reports[top].peakBytes), label: "highest: step \(top + 1), \(mib(reports[top].peakBytes))\(over)"))
        }
        var timeNotes: [XYChart.Annotation] = []
        for s in profiled.sorted().prefix(8) where s < reports.count {
            timeNotes.append(.init(x: Double(s + 1), y: reports[s].stepMilliseconds, label: "step \(s + 1): new shape (profiled before it)"))
        }
        let charts = [
            XYChart(title: "Peak memory of each step", x: stepAxis, y: ChartAxis("MiB", includeZero: true), series: memory, annotations: notes),
            XYChart(title: "Time of each step", x: stepAxis, y: ChartAxis("ms", includeZero: true),
                    series: [.init("step time", .line, times, colour: 1)], annotations: timeNotes),
            XYChart(title: "Loss", x: stepAxis, y: ChartAxis("loss", includeZero: true), series: [.init("loss", .line, losses, colour: 2)]),
        ]
        let over = budgetBytes.map { b in reports.filter { $0.peakBytes > b }.count }
        let dynamic = reports.contains { $0.dynamic != nil }
        var header = ["step" + (bucketed ? "s" : ""), "loss", "step ms", "peak", "activation peak"]
        if dynamic { header += ["evicted", "recomputed"] }
        let showNote = !profiled.isEmpty && !bucketed
        if showNote { header.append("note") }
        let rows: [[String]] = buckets.map { r in
            let steps = reports[r]
            var row = [r.count == 1 ? "\(r.lowerBound + 1)" : "\(r.lowerBound + 1)–\(r.upperBound)",
                       String(format: "%.4f", mean(steps.map { Double($0.loss) })),
                       String(format: "%.1f", steps.map(\.stepMilliseconds).max() ?? 0),
                       mib(steps.map(\.peakBytes).max() ?? 0), mib(steps.map(\.activationPeakBytes).max() ?? 0)]
            if dynamic {
                row += ["\(steps.reduce(0) { $0 + ($1.dynamic?.evictions ?? 0) })", "\(steps.reduce(0) { $0 + ($1.dynamic?.rematerializations ?? 0) })"]
            }
            if showNote { row.append(profiled.contains(r.lowerBound) ? "new shape (profiled before it)" : "") }
            return row
        }
        var text = paragraph ?? "Every step of the run as the ledger measured it: its peak (all categories), its activations' own peak, its time and its loss."
        if let budgetBytes, let over { text += " Budget \(mib(budgetBytes)): \(over == 0 ? "no step" : "\(over) of \(reports.count) steps") above it." }
        if bucketed { text += " The \(reports.count) steps are drawn in \(buckets.count) equal runs of about \(reports.count / buckets.count): each run shows its highest peak, its slowest step and its mean loss." }
        if !profiled.isEmpty { text += " A step that met a new input shape is marked: the shape was profiled and planned just before it (not in its time)." }
        return .init(id: "run", title: "The run, step by step", paragraphs: [text], figures: try charts.map { try $0.svg() },
                     tables: [.init(caption: "per step", header: header, rows: rows)])
    }

    /// At most ``maxDrawnSteps`` equal ranges covering `0..<count`.
    static func buckets(_ count: Int) -> [Range<Int>] {
        guard count > maxDrawnSteps else { return (0..<count).map { $0..<($0 + 1) } }
        return (0..<maxDrawnSteps).map { count * $0 / maxDrawnSteps..<count * ($0 + 1) / maxDrawnSteps }
    }

    /// The whole report: the run, the last step's timeline (when recorded), and the last step's
    /// plan (when it ran one, with the captured step it was made from).
    public static func make(title: String, reports: [StepReport], budgetBytes: Int?, profiled: Set<Int> = [],
                            lastStep: MemoryReport.Run?, plan: (plan: MemoryPlan, graph: StepGraph)?, allowLossy: Set<Codec> = [],
                            frontierPoints: Int = 8, workload: String, provenance: [(label: String, value: String)]) throws -> HTMLReport {
        var sections = [try runSection(reports, budgetBytes: budgetBytes, profiled: profiled)]
        if let lastStep {
            sections.append(try MemoryReport.timelineSection([lastStep], budgetBytes: budgetBytes,
                                                             paragraph: "Live bytes by category through the run's last step (forward, backward, optimizer), measured by the ledger while the step ran (its time includes the timeline's recording); the peak marked with the allocation the ledger was making and the op running then."))
        }
        if let plan {
            sections.append(try MemoryReport.profileSection(plan.graph, plan: plan.plan))
            sections.append(try MemoryReport.frontierSection(plan.graph, policies: [], allowLossy: allowLossy, points: frontierPoints,
                                                             title: "the last step's shape: budget → step time (predicted)"))
            sections.append(try MemoryReport.graphSection(plan.graph, plan: plan.plan))
        }
        return HTMLReport(title: title, sections: sections, provenance: provenance + MemoryReport.machineFacts(workload: workload))
    }
}
