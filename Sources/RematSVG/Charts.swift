// Two charts: values against a numeric x (lines, stacked areas, points) and bars by category.
// Each series' marks carry `class="series"` and `data-series="<name>"`, annotations
// `class="annotation"`, so a reader (or a test) finds them by name.

/// A point of a series.
public struct ChartPoint: Sendable, Hashable {
    public var x: Double
    public var y: Double
    /// Shown on hover (an SVG `<title>`), for points only.
    public var note: String?
    public init(x: Double, y: Double, note: String? = nil) {
        self.x = x
        self.y = y
        self.note = note
    }
}

/// An x axis or a y axis: its label, scale kind and tick labels.
public struct ChartAxis: Sendable {
    public var label: String
    public var kind: ChartScaleKind
    /// ChartTick labels (nil: plain numbers, ``ChartScale/label(_:step:)``).
    public var format: (@Sendable (Double) -> String)?
    /// Whether the axis reaches 0 whatever the data (y axes of amounts).
    public var includeZero: Bool
    /// Values the axis reaches whatever the data (to give several charts the same axes).
    public var include: [Double]
    public init(_ label: String, kind: ChartScaleKind = .linear, includeZero: Bool = false, include: [Double] = [],
                format: (@Sendable (Double) -> String)? = nil) {
        self.label = label
        self.kind = kind
        self.includeZero = includeZero
        self.include = include
        self.format = format
    }
}

/// Values against a numeric x: lines, stacked areas (in order, bottom first) and points, with
/// labelled markers (annotations) such as a peak or a knee.
public struct XYChart: Sendable {
    public enum Mark: Sendable { case line, stackedArea, points }

    public struct Series: Sendable {
        public var name: String
        public var mark: Mark
        public var points: [ChartPoint]
        /// Palette index (nil: the series' position).
        public var colour: Int?
        public init(_ name: String, _ mark: Mark, _ points: [ChartPoint], colour: Int? = nil) {
            self.name = name
            self.mark = mark
            self.points = points
            self.colour = colour
        }
    }

    public struct Annotation: Sendable {
        public var x: Double
        public var y: Double
        public var label: String
        public init(x: Double, y: Double, label: String) {
            self.x = x
            self.y = y
            self.label = label
        }
    }

    public var title: String
    public var x: ChartAxis
    public var y: ChartAxis
    public var series: [Series]
    public var annotations: [Annotation]

    public init(title: String, x: ChartAxis, y: ChartAxis, series: [Series], annotations: [Annotation] = []) {
        self.title = title
        self.x = x
        self.y = y
        self.series = series
        self.annotations = annotations
    }

    /// The stacked areas' tops, series by series (each area's lower edge is the previous top).
    public func stackedTops() throws -> [String: [Double]] {
        var tops: [String: [Double]] = [:]
        var below: [ChartPoint]? = nil
        var level: [Double] = []
        for s in series where s.mark == .stackedArea {
            if let below {
                guard s.points.count == below.count else {
                    throw ChartError.stackMismatch(series: s.name, expectedPoints: below.count, found: s.points.count)
                }
                if let i = s.points.indices.first(where: { s.points[$0].x != below[$0].x }) { throw ChartError.stackXMismatch(series: s.name, index: i) }
            } else {
                level = Array(repeating: 0, count: s.points.count)
            }
            level = zip(level, s.points).map { $0 + $1.y }
            tops[s.name] = level
            below = s.points
        }
        return tops
    }

    /// The scales the chart draws with (the data's x and y values, the stacks' tops, the annotations).
    public func scales(style: ChartStyle = .standard) throws -> (x: ChartScale, y: ChartScale) {
        let tops = try stackedTops()
        let xs = series.flatMap { $0.points.map(\.x) } + annotations.map(\.x) + x.include
        var ys = series.filter { $0.mark != .stackedArea }.flatMap { $0.points.map(\.y) } + annotations.map(\.y) + y.include
        ys += tops.values.flatMap { $0 }
        let xScale = try ChartScale(x.kind, values: xs, start: style.plotLeft, end: style.plotRight, tickCount: style.tickCount,
                               includeZero: x.includeZero, format: x.format)
        let yScale = try ChartScale(y.kind, values: ys, start: style.plotBottom, end: style.plotTop, tickCount: style.tickCount,
                               includeZero: y.includeZero || !tops.isEmpty, format: y.format)
        return (xScale, yScale)
    }

    /// The chart as one `<svg>` element.
    public func svg(style: ChartStyle = .standard) throws -> String {
        let (xs, ys) = try scales(style: style)
        let tops = try stackedTops()
        var doc = SVGDocument(width: style.width, height: style.height)
        drawFrame(&doc, title: title, x: x, y: y, xScale: xs, yScale: ys, style: style)
        var legend: [(String, String, Mark)] = []
        for (i, s) in series.enumerated() {
            let colour = Palette.colour(s.colour ?? i)
            legend.append((s.name, colour, s.mark))
            let px = s.points.map { xs.position($0.x) }
            switch s.mark {
            case .stackedArea:
                let levels = tops[s.name]!
                let top = levels.map { ys.position($0) }
                let base = zip(levels, s.points).map { ys.position($0 - $1.y) }
                guard !px.isEmpty else { continue }
                var d = "M" + zip(px, top).map { "\(svgNumber($0)),\(svgNumber($1))" }.joined(separator: "L")
                d += "L" + zip(px, base).reversed().map { "\(svgNumber($0)),\(svgNumber($1))" }.joined(separator: "L") + "Z"
                doc.element("path", ["class": "series", "data-series": s.name.svg, "d": d.svg, "fill": colour.svg,
                                     "fill-opacity": 0.85, "stroke": colour.svg, "stroke-width": 0.5])
            case .line:
                guard !px.isEmpty else { continue }
                let d = "M" + zip(px, s.points).map { "\(svgNumber($0)),\(svgNumber(ys.position($1.y)))" }.joined(separator: "L")
                doc.element("path", ["class": "series", "data-series": s.name.svg, "d": d.svg, "fill": "none",
                                     "stroke": colour.svg, "stroke-width": style.lineWidth.svg])
            case .points:
                doc.group(["class": "series", "data-series": s.name.svg, "fill": colour.svg]) { g in
                    for (p, x) in zip(s.points, px) {
                        let attributes: KeyValuePairs<String, SVGValue> = ["cx": x.svg, "cy": ys.position(p.y).svg, "r": style.pointRadius.svg]
                        if let note = p.note {
                            g.group([:]) { h in
                                h.element("circle", attributes)
                                h.element("title", text: note)
                            }
                        } else {
                            g.element("circle", attributes)
                        }
                    }
                }
            }
        }
        // Labels that would overlap one placed before move down a line until they do not.
        var placed: [(x: ClosedRange<Double>, y: Double)] = []
        for a in annotations {
            let ax = xs.position(a.x), ay = ys.position(a.y)
            let anchor = ax > (style.plotLeft + style.plotRight) / 2 ? "end" : "start"
            let dx = anchor == "end" ? -style.pointRadius * 2 : style.pointRadius * 2
            let width = style.textWidth(a.label)
            let span = anchor == "end" ? (ax + dx - width)...(ax + dx) : (ax + dx)...(ax + dx + width)
            var ly = ay - style.pointRadius * 2
            while placed.contains(where: { $0.x.overlaps(span) && abs($0.y - ly) < style.fontSize * 1.1 }) { ly += style.fontSize * 1.2 }
            placed.append((span, ly))
            doc.group(["class": "annotation", "font-family": style.fontFamily.svg, "fill": style.axisColour.svg]) { g in
                g.element("circle", ["cx": ax.svg, "cy": ay.svg, "r": style.pointRadius.svg, "fill": "none",
                                     "stroke": style.axisColour.svg, "stroke-width": style.lineWidth.svg])
                g.element("text", ["x": (ax + dx).svg, "y": ly.svg, "text-anchor": anchor.svg,
                                   "font-size": style.fontSize.svg], text: a.label)
            }
        }
        drawLegend(&doc, legend, style: style)
        return doc.rendered(title: title)
    }
}

/// Bars by category (one bar each), coloured by the group each bar belongs to (say kept,
/// recomputed, compressed, offloaded), with a legend of the groups.
public struct BarChart: Sendable {
    public struct Bar: Sendable, Hashable {
        public var category: String
        public var value: Double
        public var group: String
        public init(_ category: String, _ value: Double, group: String) {
            self.category = category
            self.value = value
            self.group = group
        }
    }

    public var title: String
    public var categoryLabel: String
    public var y: ChartAxis
    public var bars: [Bar]
    /// The groups in legend and colour order (nil: in order of first appearance).
    public var groups: [String]?

    public init(title: String, categoryLabel: String, y: ChartAxis, bars: [Bar], groups: [String]? = nil) {
        self.title = title
        self.categoryLabel = categoryLabel
        self.y = y
        self.bars = bars
        self.groups = groups
    }

    /// The groups, in colour order.
    public var groupOrder: [String] {
        if let groups { return groups + bars.map(\.group).filter { !groups.contains($0) }.uniqued() }
        return bars.map(\.group).uniqued()
    }

    public func scale(style: ChartStyle = .standard) throws -> ChartScale {
        try ChartScale(y.kind, values: bars.map(\.value) + y.include, start: style.plotBottom, end: style.plotTop, tickCount: style.tickCount,
                  includeZero: y.kind == .linear, format: y.format)
    }

    /// The style with room below the plot for the category labels (written downwards).
    public func fitted(_ style: ChartStyle) -> ChartStyle {
        var fitted = style
        let longest = min(bars.map(\.category.count).max() ?? 0, style.categoryLabelCharacters)
        fitted.marginBottom = max(style.marginBottom, style.textWidth(String(repeating: "m", count: longest)) + style.tickLength + style.fontSize * 2.5)
        fitted.height = style.height + fitted.marginBottom - style.marginBottom   // the plot area keeps its height
        return fitted
    }

    public func svg(style: ChartStyle = .standard) throws -> String {
        let style = fitted(style)
        let ys = try scale(style: style)
        var doc = SVGDocument(width: style.width, height: style.height)
        let n = max(bars.count, 1)
        let slot = (style.plotRight - style.plotLeft) / Double(n)
        let frameX = try ChartScale(.linear, values: [0, Double(n)], start: style.plotLeft, end: style.plotRight)
        drawFrame(&doc, title: title, x: ChartAxis(categoryLabel), y: y, xScale: frameX, yScale: ys, style: style, categorical: true)
        let order = groupOrder
        let base = ys.kind == .log ? style.plotBottom : ys.position(0)
        for (g, group) in order.enumerated() {
            let colour = Palette.colour(g)
            doc.group(["class": "series", "data-series": group.svg, "fill": colour.svg]) { d in
                for (i, bar) in bars.enumerated() where bar.group == group {
                    let top = ys.position(bar.value)
                    d.group([:]) { h in
                        h.element("rect", ["x": (style.plotLeft + Double(i) * slot + slot * 0.1).svg, "y": min(top, base).svg,
                                           "width": (slot * 0.8).svg, "height": abs(base - top).svg])
                        h.element("title", text: "\(bar.category): \(y.format?(bar.value) ?? ChartScale.label(bar.value, step: abs(bar.value) / 1000))")
                    }
                }
            }
        }
        // Category labels, written downwards: every k-th, so that they do not overlap.
        let every = max(1, Int((style.fontSize * 1.2 / slot).rounded(.up)))
        doc.group(["class": "categories", "font-size": style.fontSize.svg, "font-family": style.fontFamily.svg, "fill": style.axisColour.svg]) { d in
            for (i, bar) in bars.enumerated() where i % every == 0 {
                let x = style.plotLeft + (Double(i) + 0.5) * slot
                let y = style.plotBottom + style.tickLength
                let label = bar.category.count > style.categoryLabelCharacters
                    ? String(bar.category.prefix(style.categoryLabelCharacters - 1)) + "…" : bar.category
                d.element("text", ["x": x.svg, "y": (y + style.fontSize * 0.35).svg, "text-anchor": "end",
                                   "transform": "rotate(-90 \(svgNumber(x)) \(svgNumber(y)))".svg], text: label)
            }
        }
        drawLegend(&doc, order.enumerated().map { ($1, Palette.colour($0), XYChart.Mark.stackedArea) }, style: style)
        return doc.rendered(title: title)
    }
}

extension Sequence where Element: Hashable {
    fileprivate func uniqued() -> [Element] {
        var seen: Set<Element> = []
        return filter { seen.insert($0).inserted }
    }
}

// MARK: Shared drawing

/// Title, grid, axes, ticks and axis labels.
private func drawFrame(_ doc: inout SVGDocument, title: String, x: ChartAxis, y: ChartAxis, xScale: ChartScale, yScale: ChartScale,
                       style: ChartStyle, categorical: Bool = false) {
    doc.element("text", ["class": "title", "x": style.plotLeft.svg, "y": (style.titleSize * 1.5).svg, "font-size": style.titleSize.svg,
                         "font-weight": "600", "font-family": style.fontFamily.svg], text: title)
    doc.group(["class": "grid", "stroke": style.gridColour.svg, "stroke-width": 1]) { g in
        for t in yScale.ticks {
            let py = yScale.position(t.value)
            g.element("line", ["x1": style.plotLeft.svg, "x2": style.plotRight.svg, "y1": py.svg, "y2": py.svg])
        }
    }
    doc.group(["class": "axis y-axis", "font-size": style.fontSize.svg, "font-family": style.fontFamily.svg, "fill": style.axisColour.svg]) { g in
        g.element("line", ["x1": style.plotLeft.svg, "x2": style.plotLeft.svg, "y1": style.plotTop.svg, "y2": style.plotBottom.svg,
                           "stroke": style.axisColour.svg])
        for t in yScale.ticks {
            let py = yScale.position(t.value)
            g.element("line", ["x1": (style.plotLeft - style.tickLength).svg, "x2": style.plotLeft.svg, "y1": py.svg, "y2": py.svg,
                               "stroke": style.axisColour.svg])
            g.element("text", ["class": "tick", "data-value": t.value.svg, "x": (style.plotLeft - style.tickLength * 1.6).svg,
                               "y": (py + style.fontSize * 0.35).svg, "text-anchor": "end"], text: t.label)
        }
        let cy = (style.plotTop + style.plotBottom) / 2
        g.element("text", ["class": "axis-label", "x": (style.fontSize * 1.2).svg, "y": cy.svg, "text-anchor": "middle",
                           "transform": "rotate(-90 \(svgNumber(style.fontSize * 1.2)) \(svgNumber(cy)))".svg], text: y.label)
    }
    doc.group(["class": "axis x-axis", "font-size": style.fontSize.svg, "font-family": style.fontFamily.svg, "fill": style.axisColour.svg]) { g in
        g.element("line", ["x1": style.plotLeft.svg, "x2": style.plotRight.svg, "y1": style.plotBottom.svg, "y2": style.plotBottom.svg,
                           "stroke": style.axisColour.svg])
        if !categorical {
            for t in xScale.ticks {
                let px = xScale.position(t.value)
                g.element("line", ["x1": px.svg, "x2": px.svg, "y1": style.plotBottom.svg, "y2": (style.plotBottom + style.tickLength).svg,
                                   "stroke": style.axisColour.svg])
                g.element("text", ["class": "tick", "data-value": t.value.svg, "x": px.svg,
                                   "y": (style.plotBottom + style.tickLength + style.fontSize * 1.1).svg, "text-anchor": "middle"], text: t.label)
            }
        }
        g.element("text", ["class": "axis-label", "x": ((style.plotLeft + style.plotRight) / 2).svg, "y": (style.height - style.fontSize * 0.4).svg,
                           "text-anchor": "middle"], text: x.label)
    }
}

/// One row of legend entries under the title, wrapping to a second row when full.
private func drawLegend(_ doc: inout SVGDocument, _ entries: [(name: String, colour: String, mark: XYChart.Mark)], style: ChartStyle) {
    guard !entries.isEmpty else { return }
    doc.group(["class": "legend", "font-size": style.fontSize.svg, "font-family": style.fontFamily.svg, "fill": style.axisColour.svg]) { g in
        var x = style.plotLeft
        var y = style.titleSize * 1.5 + style.fontSize * 1.6
        for e in entries {
            let width = style.legendSwatch + style.fontSize * 0.5 + style.textWidth(e.name) + style.fontSize * 1.2
            if x + width > style.plotRight, x > style.plotLeft {
                x = style.plotLeft
                y += style.fontSize * 1.4
            }
            g.group(["class": "legend-entry", "data-series": e.name.svg]) { h in
                switch e.mark {
                case .line:
                    h.element("line", ["x1": x.svg, "x2": (x + style.legendSwatch).svg, "y1": (y - style.legendSwatch / 2).svg,
                                       "y2": (y - style.legendSwatch / 2).svg, "stroke": e.colour.svg, "stroke-width": style.lineWidth.svg])
                case .points:
                    h.element("circle", ["cx": (x + style.legendSwatch / 2).svg, "cy": (y - style.legendSwatch / 2).svg,
                                         "r": style.pointRadius.svg, "fill": e.colour.svg])
                case .stackedArea:
                    h.element("rect", ["x": x.svg, "y": (y - style.legendSwatch).svg, "width": style.legendSwatch.svg,
                                       "height": style.legendSwatch.svg, "fill": e.colour.svg])
                }
                h.element("text", ["x": (x + style.legendSwatch + style.fontSize * 0.5).svg, "y": y.svg], text: e.name)
            }
            x += width
        }
    }
}
