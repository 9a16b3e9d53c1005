// A layered diagram: nodes in labelled rows (say one row per block of a model), left to right
// in order, coloured by group, with edges between them.

/// Nodes in rows, edges between nodes, a legend of the groups.
public struct LayeredDiagram: Sendable {
    public struct Node: Sendable, Hashable {
        public var id: String
        /// Shown in the box (cut to ``DiagramStyle/nodeCharacters``).
        public var label: String
        public var group: String
        /// Shown on hover.
        public var note: String
        public init(id: String, label: String, group: String, note: String = "") {
            self.id = id
            self.label = label
            self.group = group
            self.note = note
        }
    }

    public struct Row: Sendable, Hashable {
        public var label: String
        public var nodes: [Node]
        public init(label: String, nodes: [Node]) {
            self.label = label
            self.nodes = nodes
        }
    }

    public var title: String
    public var rows: [Row]
    /// (from, to) node ids; edges naming an unknown node are a ``DiagramError``.
    public var edges: [(from: String, to: String)]
    /// Groups in legend and colour order (others follow in order of first appearance).
    public var groups: [String]

    public init(title: String, rows: [Row], edges: [(from: String, to: String)], groups: [String] = []) {
        self.title = title
        self.rows = rows
        self.edges = edges
        self.groups = groups
    }

    /// The groups in colour order.
    public var groupOrder: [String] {
        var order = groups
        for r in rows { for n in r.nodes where !order.contains(n.group) { order.append(n.group) } }
        return order
    }

    /// Each node's box: its centre and size.
    public func layout(style: DiagramStyle = .standard) throws -> [String: (x: Double, y: Double)] {
        var centre: [String: (x: Double, y: Double)] = [:]
        for (r, row) in rows.enumerated() {
            for (i, n) in row.nodes.enumerated() {
                guard centre[n.id] == nil else { throw DiagramError.duplicateNode(n.id) }
                centre[n.id] = (style.rowLabelWidth + style.gap + (Double(i) + 0.5) * (style.nodeWidth + style.gap),
                                style.top + (Double(r) + 0.5) * (style.nodeHeight + style.rowGap))
            }
        }
        for e in edges {
            for id in [e.from, e.to] where centre[id] == nil { throw DiagramError.unknownNode(id) }
        }
        return centre
    }

    public func svg(style: DiagramStyle = .standard) throws -> String {
        let centre = try layout(style: style)
        let widest = rows.map(\.nodes.count).max() ?? 0
        let width = style.rowLabelWidth + style.gap + Double(widest) * (style.nodeWidth + style.gap) + style.gap
        let height = style.top + Double(rows.count) * (style.nodeHeight + style.rowGap) + style.gap
        var doc = SVGDocument(width: max(width, style.minimumWidth), height: height)
        doc.element("text", ["class": "title", "x": style.gap.svg, "y": (style.titleSize * 1.5).svg, "font-size": style.titleSize.svg,
                             "font-weight": "600", "font-family": style.fontFamily.svg], text: title)
        let order = groupOrder
        // Legend under the title.
        doc.group(["class": "legend", "font-size": style.fontSize.svg, "font-family": style.fontFamily.svg, "fill": style.textColour.svg]) { g in
            var x = style.gap
            let y = style.titleSize * 1.5 + style.fontSize * 1.6
            for (i, group) in order.enumerated() {
                g.group(["class": "legend-entry", "data-series": group.svg]) { h in
                    h.element("rect", ["x": x.svg, "y": (y - style.fontSize * 0.8).svg, "width": style.fontSize.svg, "height": style.fontSize.svg,
                                       "fill": Palette.colour(i).svg])
                    h.element("text", ["x": (x + style.fontSize * 1.4).svg, "y": y.svg], text: group)
                }
                x += style.fontSize * 2.4 + Double(group.count) * style.fontSize * 0.6
            }
        }
        // Edges first, under the boxes: straight within a row, a curve between rows.
        doc.group(["class": "edges", "fill": "none", "stroke": style.edgeColour.svg, "stroke-width": 1]) { g in
            for e in edges {
                let a = centre[e.from]!, b = centre[e.to]!
                let d: String
                if a.y == b.y {
                    let lift = b.x - a.x > style.nodeWidth + style.gap * 1.5 ? style.nodeHeight * 0.9 : 0   // skip over boxes between
                    d = "M\(svgNumber(a.x)),\(svgNumber(a.y - style.nodeHeight / 2))C\(svgNumber(a.x)),\(svgNumber(a.y - style.nodeHeight / 2 - lift)) \(svgNumber(b.x)),\(svgNumber(b.y - style.nodeHeight / 2 - lift)) \(svgNumber(b.x)),\(svgNumber(b.y - style.nodeHeight / 2))"
                } else {
                    let (x1, y1) = (a.x, a.y + style.nodeHeight / 2), (x2, y2) = (b.x, b.y - style.nodeHeight / 2)
                    let my = (y1 + y2) / 2
                    d = "M\(svgNumber(x1)),\(svgNumber(y1))C\(svgNumber(x1)),\(svgNumber(my)) \(svgNumber(x2)),\(svgNumber(my)) \(svgNumber(x2)),\(svgNumber(y2))"
                }
                g.element("path", ["class": "edge", "data-from": e.from.svg, "data-to": e.to.svg, "d": d.svg])
            }
        }
        for (r, row) in rows.enumerated() {
            let y = style.top + (Double(r) + 0.5) * (style.nodeHeight + style.rowGap)
            doc.group(["class": "row", "data-row": row.label.svg, "font-family": style.fontFamily.svg, "font-size": style.fontSize.svg]) { g in
                g.element("text", ["x": style.gap.svg, "y": (y + style.fontSize * 0.35).svg, "fill": style.textColour.svg],
                          text: cut(row.label, style.rowLabelCharacters))
                for n in row.nodes {
                    let c = centre[n.id]!
                    let colour = Palette.colour(order.firstIndex(of: n.group)!)
                    g.group(["class": "node", "data-node": n.id.svg, "data-group": n.group.svg]) { h in
                        h.element("rect", ["x": (c.x - style.nodeWidth / 2).svg, "y": (c.y - style.nodeHeight / 2).svg,
                                           "width": style.nodeWidth.svg, "height": style.nodeHeight.svg, "rx": 4,
                                           "fill": colour.svg, "fill-opacity": 0.85])
                        h.element("text", ["x": c.x.svg, "y": (c.y + style.fontSize * 0.35).svg, "text-anchor": "middle", "fill": "#000000"],
                                  text: cut(n.label, style.nodeCharacters))
                        h.element("title", text: n.note.isEmpty ? n.id : "\(n.id)\n\(n.note)")
                    }
                }
            }
        }
        return doc.rendered(title: title)
    }

    private func cut(_ s: String, _ n: Int) -> String { s.count > n ? String(s.prefix(n - 1)) + "…" : s }
}

public enum DiagramError: Error, Equatable, CustomStringConvertible {
    case duplicateNode(String)
    case unknownNode(String)
    public var description: String {
        switch self {
        case .duplicateNode(let id): "diagram: node '\(id)' appears twice"
        case .unknownNode(let id): "diagram: an edge names node '\(id)', which no row has"
        }
    }
}

/// The measures of a ``LayeredDiagram``.
public struct DiagramStyle: Sendable, Hashable {
    public var nodeWidth: Double = 64
    public var nodeHeight: Double = 22
    public var gap: Double = 8
    public var rowGap: Double = 26
    public var rowLabelWidth: Double = 118
    public var rowLabelCharacters = 19
    public var nodeCharacters = 10
    /// Space above the first row for the title and the legend.
    public var top: Double = 64
    public var minimumWidth: Double = 480
    public var fontSize: Double = 10
    public var titleSize: Double = 14
    public var textColour = "#333333"
    public var edgeColour = "#9a9a9a"
    public var fontFamily = "system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif"
    public init() {}
    public static let standard = DiagramStyle()
}
