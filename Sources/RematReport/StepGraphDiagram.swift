import RematPlanning
import RematSVG

/// A captured step's forward as a layered diagram: one row per block (ops outside the blocks in
/// rows of their own, before and after), each op a box coloured by what the plan does with its
/// saved tensors, edges from each op's inputs. Without a plan: the step as it runs unplanned.
public enum StepGraphDiagram {
    public static func diagram(_ graph: StepGraph, plan: MemoryPlan?, title: String) -> LayeredDiagram {
        let action = OpProfileCharts.actions(graph, plan: plan)
        let saved = OpProfileCharts.savedBytes(graph)
        var rows: [LayeredDiagram.Row] = []
        var currentRegion: Int?? = .none
        for op in graph.ops {
            if currentRegion == .none || currentRegion! != op.region {
                let label = op.region.map { graph.regions[$0] } ?? (rows.isEmpty ? "before the blocks" : "outside the blocks")
                rows.append(.init(label: label, nodes: []))
                currentRegion = .some(op.region)
            }
            let bytes = saved[op.name] ?? 0
            let did = action[op.name] ?? .notPlannable
            let note = "\(op.kind), \(formatMs(op.seconds)) forward; saves \(TimelineCharts.formatMiB(bytes)): \(did.rawValue)"
            rows[rows.count - 1].nodes.append(.init(id: op.name, label: op.kind, group: did.rawValue, note: note))
        }
        let names = Set(graph.ops.map(\.name))
        let edges = graph.ops.flatMap { op in op.inputs.filter(names.contains).map { (from: $0, to: op.name) } }
        return LayeredDiagram(title: title, rows: rows, edges: edges, groups: OpProfileCharts.Action.allCases.map(\.rawValue))
    }

    static func formatMs(_ seconds: Double) -> String {
        "\((seconds * 100_000).rounded() / 100) ms"
    }
}
