import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Testing
@testable import RematSVG

/// Parses `svg` as XML; returns every element as (name, attributes, text), in document order.
func parseXML(_ svg: String) throws -> [(name: String, attributes: [String: String], text: String)] {
    final class Collector: NSObject, XMLParserDelegate {
        var elements: [(name: String, attributes: [String: String], text: String)] = []
        var open: [Int] = []
        func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?,
                    attributes: [String: String] = [:]) {
            open.append(elements.count)
            elements.append((name, attributes, ""))
        }
        func parser(_ parser: XMLParser, foundCharacters string: String) {
            if let i = open.last { elements[i].text += string }
        }
        func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) {
            open.removeLast()
        }
    }
    struct NotXML: Error, CustomStringConvertible { let description: String }
    let parser = XMLParser(data: Data(svg.utf8))
    let collector = Collector()
    parser.delegate = collector
    guard parser.parse() else { throw NotXML(description: "not well-formed XML: \(parser.parserError.map(String.init(describing:)) ?? "?")") }
    return collector.elements
}

@Suite struct ScaleTests {
    @Test(arguments: [(0.0, 1.0), (0.0, 7.3), (3.0, 97.0), (-12.5, 40.0), (1e6, 2.7e8), (0.0012, 0.0047), (5.0, 5.0), (0.0, 0.0), (-3.0, -1.0)])
    func linearTicksAreNiceAndCoverTheData(lo: Double, hi: Double) throws {
        let s = try ChartScale(.linear, values: [lo, hi], start: 0, end: 100, tickCount: 6)
        let values = s.ticks.map(\.value)
        #expect(values.count >= 2 && values.count <= 12, "\(values)")
        #expect(values.first! <= lo && values.last! >= hi, "\(values) for \(lo)…\(hi)")
        // Equal steps of 1, 2 or 5 times a power of ten.
        let step = values[1] - values[0]
        let mantissa = step / pow(10, floor(log10(step)))
        #expect([1, 2, 5, 10].contains { abs(mantissa - $0) < 1e-9 }, "step \(step)")
        for (a, b) in zip(values, values.dropFirst()) { #expect(abs((b - a) - step) < step * 1e-9) }
        // Every value inside the shown domain maps inside the pixel range.
        for v in [lo, hi] {
            #expect(s.contains(v))
            #expect((0...100).contains(s.position(v)))
        }
    }

    @Test func tickLabelsAreShortAndExact() throws {
        #expect(try ChartScale(.linear, values: [0, 1], start: 0, end: 1).ticks.map(\.label) == ["0", "0.2", "0.4", "0.6", "0.8", "1"])
        #expect(try ChartScale(.linear, values: [0, 3e8], start: 0, end: 1).ticks.map(\.label) == ["0", "100M", "200M", "300M"])
        #expect(ChartScale.label(0.30000000000000004, step: 0.1) == "0.3")
        #expect(ChartScale.label(-0.0, step: 1) == "0")
        #expect(ChartScale.label(2500, step: 500) == "2.5k")
        let mib = try ChartScale(.linear, values: [0, 271.6], start: 0, end: 1, format: { "\(Int($0)) MiB" })
        #expect(mib.ticks.last!.label == "300 MiB")
    }

    @Test func logTicksAreDecadesOrOneTwoFive() throws {
        let wide = try ChartScale(.log, values: [3, 4e5], start: 0, end: 1)
        #expect(wide.ticks.map(\.value) == [1, 10, 100, 1000, 1e4, 1e5, 1e6])
        let short = try ChartScale(.log, values: [3, 70], start: 0, end: 1)
        #expect(short.ticks.map(\.value) == [2, 5, 10, 20, 50, 100])
        #expect(short.position(short.domain.lowerBound) == 0 && short.position(short.domain.upperBound) == 1)
        #expect(abs(wide.position(1000) - 0.5) < 1e-12)
    }

    @Test func badValuesAreTypedErrors() {
        #expect(throws: ChartError.nonPositiveOnLogScale(0)) { try ChartScale(.log, values: [0, 10], start: 0, end: 1) }
        #expect(throws: ChartError.nonFinite(.infinity)) { try ChartScale(.linear, values: [1, .infinity], start: 0, end: 1) }
        #expect(throws: ChartError.self) { try ChartScale(.linear, values: [.nan], start: 0, end: 1) }
    }
}

@Suite struct ChartTests {
    static let timeline = XYChart(
        title: "Memory <by> category & \"step\"",
        x: ChartAxis("time (ms)"),
        y: ChartAxis("MiB", includeZero: true),
        series: [
            .init("parameters", .stackedArea, (0..<50).map { ChartPoint(x: Double($0) * 3, y: 18.6) }),
            .init("activations", .stackedArea, (0..<50).map { ChartPoint(x: Double($0) * 3, y: Double(min($0, 50 - $0)) * 4) }),
            .init("budget", .line, [ChartPoint(x: 0, y: 100), ChartPoint(x: 147, y: 100)]),
            .init("plans", .points, [ChartPoint(x: 40, y: 80, note: "knee: 1.08×")]),
        ],
        annotations: [.init(x: 75, y: 18.6 + 100, label: "peak: h.3.attn/softmax#0")])

    @Test func anXYChartIsValidSVGWithEverySeriesAndTheDataInsideItsAxes() throws {
        let svg = try Self.timeline.svg()
        let elements = try parseXML(svg)
        #expect(elements.first?.name == "svg")
        #expect(elements.first { $0.name == "title" }?.text == "Memory <by> category & \"step\"")
        let drawn = Set(elements.filter { $0.attributes["class"] == "series" }.compactMap { $0.attributes["data-series"] })
        #expect(drawn == ["parameters", "activations", "budget", "plans"])
        let legend = elements.filter { $0.attributes["class"] == "legend-entry" }.compactMap { $0.attributes["data-series"] }
        #expect(legend == ["parameters", "activations", "budget", "plans"])
        #expect(elements.contains { $0.name == "text" && $0.text == "peak: h.3.attn/softmax#0" })
        #expect(elements.contains { $0.name == "title" && $0.text == "knee: 1.08×" })
        // The axes' ticks contain the data: the stack's top (118.6) and the x extent.
        let (xs, ys) = try Self.timeline.scales()
        #expect(xs.contains(0) && xs.contains(147))
        #expect(ys.contains(0) && ys.contains(118.6))
        let yTicks = elements.filter { $0.attributes["class"] == "tick" }.compactMap { $0.attributes["data-value"].flatMap(Double.init) }
        #expect(yTicks.contains(0) && yTicks.max()! >= 118.6)
        // Every coordinate of the paths lies in the plot area.
        let style = ChartStyle.standard
        for path in elements where path.name == "path" {
            let numbers = path.attributes["d"]!.split(whereSeparator: { "MLZ,".contains($0) }).compactMap { Double($0) }
            for (i, v) in numbers.enumerated() {
                if i % 2 == 0 { #expect(v >= style.plotLeft - 0.01 && v <= style.plotRight + 0.01) }
                else { #expect(v >= style.plotTop - 0.01 && v <= style.plotBottom + 0.01) }
            }
        }
    }

    @Test func stackedAreasStackInOrder() throws {
        let tops = try Self.timeline.stackedTops()
        #expect(tops["parameters"]![10] == 18.6)
        #expect(tops["activations"]![10] == 18.6 + 40)
    }

    @Test func mismatchedStacksAreTypedErrors() {
        var chart = Self.timeline
        chart.series[1].points.removeLast()
        #expect(throws: ChartError.stackMismatch(series: "activations", expectedPoints: 50, found: 49)) { try chart.svg() }
        chart = Self.timeline
        chart.series[1].points[7].x += 1
        #expect(throws: ChartError.stackXMismatch(series: "activations", index: 7)) { try chart.svg() }
    }

    @Test func aBarChartColoursBarsByGroupOnALogScale() throws {
        func group(_ i: Int) -> String { i % 5 == 0 ? "recomputed" : i % 7 == 0 ? "compressed" : "kept" }
        let bars: [BarChart.Bar] = (0..<40).map { (i: Int) -> BarChart.Bar in
            let bytes = Double(1 << (i % 12)) * 1024
            return BarChart.Bar("h.\(i / 8).op#\(i) with a long name that is cut", bytes, group: group(i))
        }
        for kind in [ChartScaleKind.linear, .log] {
            let chart = BarChart(title: "Saved bytes per op", categoryLabel: "op", y: ChartAxis("bytes", kind: kind),
                                 bars: bars, groups: ["kept", "recomputed", "compressed", "offloaded"])
            let elements = try parseXML(try chart.svg())
            let groups = elements.filter { $0.attributes["class"] == "series" }
            #expect(groups.compactMap { $0.attributes["data-series"] } == ["kept", "recomputed", "compressed", "offloaded"])
            let rects = elements.filter { (e: (name: String, attributes: [String: String], text: String)) -> Bool in e.name == "rect" }
            #expect(rects.count >= 40)
            // Colours from the palette, one per group.
            #expect(Set(groups.compactMap { $0.attributes["fill"] }).count == 4)
            let scale = try chart.scale()
            #expect(bars.allSatisfy { scale.contains($0.value) })
            // Labels cut to the style's length, with an ellipsis.
            let labels: [String] = elements.filter { $0.name == "text" && $0.text.hasPrefix("h.") }.map { $0.text }
            #expect(!labels.isEmpty && labels.allSatisfy { $0.count <= ChartStyle.standard.categoryLabelCharacters })
        }
    }

    @Test func escapingKeepsTheDocumentWellFormed() throws {
        #expect(xmlEscaped("a<b & 'c' \"d\">") == "a&lt;b &amp; &apos;c&apos; &quot;d&quot;&gt;")
        #expect(xmlEscaped("bell\u{07}") == "bell\u{FFFD}")
        let chart = XYChart(title: "</svg><script>", x: ChartAxis("x & y"), y: ChartAxis("<y>"),
                            series: [.init("a\"b", .line, [ChartPoint(x: 1, y: 1), ChartPoint(x: 2, y: 3)])])
        let elements = try parseXML(try chart.svg())
        #expect(!elements.contains { $0.name == "script" })
        #expect(elements.contains { $0.attributes["data-series"] == "a\"b" })
    }

    @Test func annotationsAtOnePointDoNotOverlap() throws {
        let chart = XYChart(title: "t", x: ChartAxis("x"), y: ChartAxis("y"),
                            series: [.init("s", .line, [ChartPoint(x: 0, y: 0), ChartPoint(x: 10, y: 10)])],
                            annotations: [.init(x: 2, y: 2, label: "knee (a)"), .init(x: 2, y: 2, label: "knee (b)"), .init(x: 9, y: 2, label: "far")])
        let texts = try parseXML(try chart.svg()).filter { $0.name == "text" && ["knee (a)", "knee (b)", "far"].contains($0.text) }
        let y = Dictionary(uniqueKeysWithValues: texts.map { ($0.text, Double($0.attributes["y"]!)!) })
        #expect(abs(y["knee (a)"]! - y["knee (b)"]!) >= ChartStyle.standard.fontSize)
        #expect(y["far"] == y["knee (a)"])
    }

    @Test func thePaletteIsOkabeItoAndRepeats() {
        #expect(Palette.colours.count == 8 && Set(Palette.colours).count == 8)
        #expect(Palette.colour(0) == "#0072B2" && Palette.colour(8) == Palette.colour(0) && Palette.colour(-1) == "#000000")
    }
}
