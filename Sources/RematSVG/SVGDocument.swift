// A small SVG writer: elements with escaped attributes and text, numbers written short.

/// What can go wrong building a chart from data.
public enum ChartError: Error, Equatable, CustomStringConvertible {
    case nonFinite(Double)
    case nonPositiveOnLogScale(Double)
    /// Stacked series must share their x values, point for point.
    case stackMismatch(series: String, expectedPoints: Int, found: Int)
    case stackXMismatch(series: String, index: Int)
    /// A bar chart's series must give one value per category.
    case barCount(series: String, categories: Int, values: Int)

    public var description: String {
        switch self {
        case .nonFinite(let x): "chart: a value is not finite (\(x))"
        case .nonPositiveOnLogScale(let x): "chart: \(x) cannot be shown on a logarithmic axis (values must be positive)"
        case .stackMismatch(let s, let n, let m): "chart: stacked series '\(s)' has \(m) points, the stack has \(n)"
        case .stackXMismatch(let s, let i): "chart: stacked series '\(s)' has another x at point \(i) than the series below it"
        case .barCount(let s, let n, let m): "chart: bar series '\(s)' has \(m) values for \(n) categories"
        }
    }
}

/// Escapes `&`, `<`, `>`, `"` and `'` for XML text and attribute values.
public func xmlEscaped(_ s: String) -> String {
    var out = ""
    out.reserveCapacity(s.utf8.count)
    for c in s.unicodeScalars {
        switch c {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        case "'": out += "&apos;"
        default:
            // Characters XML 1.0 does not allow (control characters other than tab and newlines).
            if c.value < 0x20 && c != "\t" && c != "\n" && c != "\r" { out += "\u{FFFD}" } else { out.unicodeScalars.append(c) }
        }
    }
    return out
}

/// A number as SVG wants it: at most two decimals, no trailing zeros.
func svgNumber(_ x: Double) -> String {
    let r = (x * 100).rounded() / 100
    if r == r.rounded() { return String(Int(r)) }
    var s = String(r)
    if s.contains("e") { s = String(format: "%.2f", r) }
    return s
}

/// An SVG document under construction: `element` appends one element, `group` nests.
public struct SVGDocument {
    public let width: Double
    public let height: Double
    private var body: [String] = []
    private var depth = 1

    public init(width: Double, height: Double) {
        self.width = width
        self.height = height
    }

    /// Appends `<name attributes…>text</name>` (self-closed without text). Attribute values are
    /// escaped; Double values are written short.
    public mutating func element(_ name: String, _ attributes: KeyValuePairs<String, SVGValue> = [:], text: String? = nil) {
        let attrs = attributes.map { " \($0.key)=\"\(xmlEscaped($0.value.text))\"" }.joined()
        let indent = String(repeating: "  ", count: depth)
        if let text {
            body.append("\(indent)<\(name)\(attrs)>\(xmlEscaped(text))</\(name)>")
        } else {
            body.append("\(indent)<\(name)\(attrs)/>")
        }
    }

    /// Appends `<g attributes…>`, the elements `content` adds, and `</g>`.
    public mutating func group(_ attributes: KeyValuePairs<String, SVGValue> = [:], _ content: (inout SVGDocument) -> Void) {
        let attrs = attributes.map { " \($0.key)=\"\(xmlEscaped($0.value.text))\"" }.joined()
        body.append("\(String(repeating: "  ", count: depth))<g\(attrs)>")
        depth += 1
        content(&self)
        depth -= 1
        body.append("\(String(repeating: "  ", count: depth))</g>")
    }

    /// The document: an `<svg>` root with its size, a `viewBox`, and `title` for screen readers.
    public func rendered(title: String) -> String {
        let w = svgNumber(width), h = svgNumber(height)
        return (["<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(w)\" height=\"\(h)\" viewBox=\"0 0 \(w) \(h)\" role=\"img\">",
                 "  <title>\(xmlEscaped(title))</title>"]
                + body + ["</svg>"]).joined(separator: "\n")
    }
}

/// An attribute value: text or a number.
public enum SVGValue: ExpressibleByStringLiteral, ExpressibleByFloatLiteral, ExpressibleByIntegerLiteral {
    case string(String)
    case number(Double)
    public init(stringLiteral value: String) { self = .string(value) }
    public init(floatLiteral value: Double) { self = .number(value) }
    public init(integerLiteral value: Int) { self = .number(Double(value)) }
    var text: String {
        switch self {
        case .string(let s): s
        case .number(let x): svgNumber(x)
        }
    }
}

extension String {
    var svg: SVGValue { .string(self) }
}

extension Double {
    var svg: SVGValue { .number(self) }
}
