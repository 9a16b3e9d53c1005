// Axis scales and their ticks: "nice numbers" (1, 2 or 5 times a power of ten, Heckbert,
// Graphics Gems 1990) for linear axes, decades (with 2 and 5 between when the range is short)
// for logarithmic ones.

import Foundation

/// A tick on an axis: its value and its label.
public struct ChartTick: Sendable, Hashable {
    public var value: Double
    public var label: String
    public init(value: Double, label: String) {
        self.value = value
        self.label = label
    }
}

/// How an axis maps values to positions.
public enum ChartScaleKind: Sendable, Hashable {
    case linear
    /// Base-10 logarithmic; every value on it must be positive.
    case log
}

/// A map from a data interval (the domain) to a pixel interval (the range), with ticks.
///
/// Linear: the domain is widened to the nearest ticks, so the data sit inside the first and last
/// tick. Log: the domain is widened to whole decades.
public struct ChartScale: Sendable, Hashable {
    public let kind: ChartScaleKind
    /// The data interval shown (after widening to ticks).
    public let domain: ClosedRange<Double>
    /// The pixel interval it maps to (`lowerBound` may be the larger number: y grows upwards).
    public let start: Double
    public let end: Double
    public let ticks: [ChartTick]

    /// A scale over `values` (empty: 0…1) to the pixels `start`…`end`, with about `tickCount`
    /// ticks (linear) labelled by `format` (nil: ``ChartScale/label(_:step:)``).
    public init(_ kind: ChartScaleKind, values: [Double], start: Double, end: Double, tickCount: Int = 5,
                includeZero: Bool = false, format: (@Sendable (Double) -> String)? = nil) throws {
        let finite = values.filter(\.isFinite)
        if let bad = values.first(where: { !$0.isFinite }) { throw ChartError.nonFinite(bad) }
        self.kind = kind
        self.start = start
        self.end = end
        switch kind {
        case .linear:
            var lo = finite.min() ?? 0, hi = finite.max() ?? 1
            if includeZero { lo = Swift.min(lo, 0); hi = Swift.max(hi, 0) }
            let (values, step) = Self.niceTicks(lo, hi, count: tickCount)
            domain = values.first!...values.last!
            ticks = values.map { ChartTick(value: $0, label: format?($0) ?? Self.label($0, step: step)) }
        case .log:
            if let bad = finite.first(where: { $0 <= 0 }) { throw ChartError.nonPositiveOnLogScale(bad) }
            let lo = finite.min() ?? 1, hi = finite.max() ?? 10
            let values = Self.logTicks(lo, hi)
            domain = values.first!...values.last!
            ticks = values.map { ChartTick(value: $0, label: format?($0) ?? Self.label($0, step: $0)) }
        }
    }

    /// The pixel position of `value`.
    public func position(_ value: Double) -> Double {
        let t: Double
        switch kind {
        case .linear:
            let width = domain.upperBound - domain.lowerBound
            t = width == 0 ? 0.5 : (value - domain.lowerBound) / width
        case .log:
            let a = log10(domain.lowerBound), b = log10(domain.upperBound)
            t = b == a ? 0.5 : (log10(value) - a) / (b - a)
        }
        return start + t * (end - start)
    }

    /// Whether `value` lies inside the shown domain.
    public func contains(_ value: Double) -> Bool { domain.contains(value) }

    // MARK: Ticks

    /// The nice number near `x` (> 0): 1, 2, 5 or 10 times a power of ten, rounded to the nearest
    /// (`round`) or the next one up.
    public static func niceNumber(_ x: Double, round: Bool) -> Double {
        precondition(x > 0 && x.isFinite, "niceNumber: \(x) is not a positive finite number")
        let exponent = floor(log10(x))
        let power = pow(10, exponent)
        let f = x / power
        let nice: Double
        if round {
            nice = f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10
        } else {
            nice = f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10
        }
        return nice * power
    }

    /// Ticks at multiples of a nice step covering `lo`…`hi` (about `count` of them, at least two).
    public static func niceTicks(_ lo: Double, _ hi: Double, count: Int = 5) -> (values: [Double], step: Double) {
        precondition(lo.isFinite && hi.isFinite && lo <= hi, "niceTicks: bad interval \(lo)…\(hi)")
        var lo = lo, hi = hi
        if lo == hi {
            // One value: a unit interval around it, at its own magnitude.
            let pad = lo == 0 ? 1 : abs(lo) / 2
            lo -= pad
            hi += pad
        }
        let range = niceNumber(hi - lo, round: false)
        let step = niceNumber(range / Double(Swift.max(count - 1, 1)), round: true)
        let first = floor(lo / step), last = ceil(hi / step)
        let values = stride(from: first, through: last, by: 1).map { cleaned($0 * step, step: step) }
        return (values, step)
    }

    /// Decades covering `lo`…`hi` (> 0); with 2 and 5 times each decade when there are fewer than
    /// three decades.
    public static func logTicks(_ lo: Double, _ hi: Double) -> [Double] {
        let a = floor(log10(lo)), b = Swift.max(ceil(log10(hi)), a + 1)
        let decades = stride(from: a, through: b, by: 1).map { pow(10, $0) }
        guard b - a < 3 else { return decades }
        var values: [Double] = []
        for d in decades.dropLast() { values += [d, 2 * d, 5 * d] }
        values.append(decades.last!)
        // Trim the subdivisions outside the data (keep one tick either side).
        let below = values.lastIndex(where: { $0 <= lo }) ?? 0
        let above = values.firstIndex(where: { $0 >= hi }) ?? values.count - 1
        return Array(values[below...above])
    }

    /// Removes the floating-point residue of `k × step` (0.30000000000000004 → 0.3).
    private static func cleaned(_ x: Double, step: Double) -> Double {
        let digits = Swift.max(0, -Int(floor(log10(step))))
        let scale = pow(10, Double(digits))
        return (x * scale).rounded() / scale
    }

    /// A plain label for `value` with as many decimals as `step` needs (no trailing zeros);
    /// thousands and up as 1k, 2.5M, 1G.
    public static func label(_ value: Double, step: Double) -> String {
        if value == 0 { return "0" }
        let magnitude = abs(value)
        for (limit, suffix) in [(1e9, "G"), (1e6, "M"), (1e3, "k")] where magnitude >= limit {
            return trimmed(value / limit, decimals: decimals(for: step / limit)) + suffix
        }
        return trimmed(value, decimals: decimals(for: step))
    }

    private static func decimals(for step: Double) -> Int {
        guard step > 0, step.isFinite else { return 0 }
        return Swift.min(6, Swift.max(0, -Int(floor(log10(step) + 1e-9))))
    }

    private static func trimmed(_ x: Double, decimals: Int) -> String {
        var s = String(format: "%.\(decimals)f", x)
        if s.contains(".") {
            while s.hasSuffix("0") { s.removeLast() }
            if s.hasSuffix(".") { s.removeLast() }
        }
        return s == "-0" ? "0" : s
    }
}
