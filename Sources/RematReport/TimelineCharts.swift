import RematCore
import RematSVG

/// Memory timelines drawn as charts: one stacked-area chart per timeline (parameters at the
/// bottom, then gradients, optimizer state, activations, temporaries; offloaded bytes, outside
/// the compute total, as a line), every chart on the same axes so they compare at a glance, the
/// peak marked with what the ledger was doing then.
public enum TimelineCharts {
    /// One chart per `(label, timeline)`; `budgetBytes` drawn as a line when given.
    public static func charts(_ timelines: [(label: String, timeline: CategoryTimeline)], budgetBytes: Int? = nil) throws -> [XYChart] {
        let longest = timelines.map { $0.timeline.samples.last?.seconds ?? 0 }.max() ?? 0
        let highest = timelines.map { Double($0.timeline.peak.totalBytes) }.max() ?? 0
        let x = ChartAxis("time in the step (ms)", includeZero: true, include: [longest * 1000])
        let y = ChartAxis("MiB", includeZero: true, include: [mebibytes(Int(highest))] + (budgetBytes.map { [mebibytes($0)] } ?? []))
        return timelines.map { label, timeline in
            let ms = timeline.samples.map { $0.seconds * 1000 }
            var series: [XYChart.Series] = []
            for (i, category) in CategoryTimeline.order.enumerated() {
                let bytes = timeline.series(category)
                guard bytes.contains(where: { $0 != 0 }) else { continue }
                let points = zip(ms, bytes).map { ChartPoint(x: $0, y: mebibytes($1)) }
                series.append(.init(category.description, category == .offloaded ? .line : .stackedArea, points, colour: i))
            }
            if let budgetBytes {
                series.append(.init("budget", .line, [ChartPoint(x: 0, y: mebibytes(budgetBytes)), ChartPoint(x: longest * 1000, y: mebibytes(budgetBytes))],
                                    colour: Palette.colours.count - 1))
            }
            let peak = timeline.peak
            let phase = timeline.peakPhase.map { " (\($0))" } ?? ""
            let note = XYChart.Annotation(x: peak.seconds * 1000, y: mebibytes(peak.totalBytes),
                                          label: "peak \(formatMiB(peak.totalBytes)): \(peak.name)\(phase)")
            return XYChart(title: "\(label): memory during one step (peak \(formatMiB(peak.totalBytes)))", x: x, y: y,
                           series: series, annotations: [note])
        }
    }

    static func mebibytes(_ bytes: Int) -> Double { Double(bytes) / 1_048_576 }

    static func formatMiB(_ bytes: Int) -> String {
        let m = (mebibytes(bytes) * 10).rounded() / 10
        return "\(m) MiB"
    }
}
