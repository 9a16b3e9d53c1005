import RematCore
import RematPlanning
import RematSVG

/// The seed's profiler plots for one captured step: per forward op its forward time, its
/// backward time and the bytes of the tensors it saves, each bar coloured by what a plan does
/// with that op's saved tensors.
public enum OpProfileCharts {
    /// What a plan does with an op's saved tensors (the bar groups, in legend order).
    public enum Action: String, CaseIterable, Sendable {
        case kept, recomputed, compressed, offloaded
        /// Not a candidate (outside every block, or saved by ops of other blocks): always kept.
        case notPlannable = "not plannable"
    }

    /// The action of each forward op under `plan` (nil: every candidate kept).
    public static func actions(_ graph: StepGraph, plan: MemoryPlan?) -> [String: Action] {
        let candidates = Set(graph.candidates.map(\.name))
        let recomputed = Set(plan?.recompute ?? [])
        let compressed = Set(plan?.compress.map(\.op) ?? [])
        let offloaded = Set(plan?.offload.map(\.op) ?? [])
        var result: [String: Action] = [:]
        for op in graph.ops {
            result[op.name] = recomputed.contains(op.name) ? .recomputed
                : compressed.contains(op.name) ? .compressed
                : offloaded.contains(op.name) ? .offloaded
                : candidates.contains(op.name) ? .kept : .notPlannable
        }
        return result
    }

    /// Bytes of the saved tensors each forward op made (tensors it owns that a slot holds).
    public static func savedBytes(_ graph: StepGraph) -> [String: Int] {
        var bytes: [String: Int] = [:]
        for t in graph.tensors where !t.savedBy.isEmpty {
            guard let owner = t.owner else { continue }
            bytes[graph.ops[owner].name, default: 0] += t.bytes
        }
        return bytes
    }

    /// Three bar charts, ops in forward order: forward ms, backward ms, saved MiB (log scale when
    /// the bars span more than three decades). `label` names the plan (say "none" or "budget 150 MiB").
    public static func charts(_ graph: StepGraph, plan: MemoryPlan?, label: String) -> [BarChart] {
        let action = actions(graph, plan: plan)
        let saved = savedBytes(graph)
        let groups = Action.allCases.map(\.rawValue)
        func bars(_ value: (StepGraph.Op) -> Double) -> [BarChart.Bar] {
            graph.ops.map { BarChart.Bar($0.name, value($0), group: (action[$0.name] ?? .notPlannable).rawValue) }
        }
        let savedBars = bars { Double(saved[$0.name] ?? 0) / 1_048_576 }.filter { $0.value > 0 }
        let positive = savedBars.map(\.value)
        let spread = (positive.max() ?? 1) / max(positive.min() ?? 1, 1e-12)
        return [
            BarChart(title: "\(label): forward time per op", categoryLabel: "op (forward order)", y: ChartAxis("ms"),
                     bars: bars { $0.seconds * 1000 }, groups: groups),
            BarChart(title: "\(label): backward time per op", categoryLabel: "op (forward order)", y: ChartAxis("ms"),
                     bars: bars { (graph.backwardSeconds[$0.name] ?? 0) * 1000 }, groups: groups),
            BarChart(title: "\(label): saved bytes per op", categoryLabel: "op (forward order; ops that save nothing left out)",
                     y: ChartAxis("MiB", kind: spread > 1000 ? .log : .linear), bars: savedBars, groups: groups),
        ]
    }
}
