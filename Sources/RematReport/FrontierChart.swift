import RematPlanning
import RematSVG

/// The budget → step-time frontier as a chart: each frontier (recompute-only, lossless, with
/// lossy codecs…) as a line through its points, predicted peak against predicted time over the
/// unplanned step, its knee marked; manual policies as points beside them.
public enum FrontierChart {
    /// A policy measured or simulated outside the frontier (say `all`, `sqrt`, `selective`).
    public struct Policy: Sendable, Hashable {
        public var name: String
        public var peakBytes: Int
        /// Step time over the unplanned step's.
        public var overhead: Double
        public init(name: String, peakBytes: Int, overhead: Double) {
            self.name = name
            self.peakBytes = peakBytes
            self.overhead = overhead
        }
    }

    public static func chart(_ frontiers: [PlanFrontier], policies: [Policy] = [], title: String) -> XYChart {
        var series: [XYChart.Series] = []
        var annotations: [XYChart.Annotation] = []
        for (i, f) in frontiers.enumerated() {
            let points = f.points.map {
                ChartPoint(x: TimelineCharts.mebibytes($0.predictedPeakBytes), y: $0.overhead,
                           note: "\(f.actions): budget \(TimelineCharts.formatMiB($0.budgetBytes)), peak \(TimelineCharts.formatMiB($0.predictedPeakBytes)), ×\(rounded($0.overhead)) (\($0.recomputed) recomputed, \($0.compressed) compressed, \($0.offloaded) offloaded)")
            }
            series.append(.init(f.actions, .line, points, colour: i))
            series.append(.init("\(f.actions) plans", .points, points, colour: i))
            if let k = f.knee {
                let p = f.points[k]
                annotations.append(.init(x: TimelineCharts.mebibytes(p.predictedPeakBytes), y: p.overhead,
                                         label: "knee (\(f.actions)): \(TimelineCharts.formatMiB(p.predictedPeakBytes)), ×\(rounded(p.overhead))"))
            }
        }
        if !policies.isEmpty {
            series.append(.init("policies", .points, policies.map {
                ChartPoint(x: TimelineCharts.mebibytes($0.peakBytes), y: $0.overhead,
                           note: "\($0.name): peak \(TimelineCharts.formatMiB($0.peakBytes)), ×\(rounded($0.overhead))")
            }, colour: Palette.colours.count - 1))
            for p in policies {
                annotations.append(.init(x: TimelineCharts.mebibytes(p.peakBytes), y: p.overhead, label: p.name))
            }
        }
        return XYChart(title: title, x: ChartAxis("peak memory (MiB)"), y: ChartAxis("step time ÷ unplanned", format: { "×\(rounded($0))" }),
                       series: series, annotations: annotations)
    }

    static func rounded(_ x: Double) -> String {
        let r = (x * 100).rounded() / 100
        return "\(r)"
    }
}
