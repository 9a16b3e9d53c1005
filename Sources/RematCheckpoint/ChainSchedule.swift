import Foundation

/// Schedules for checkpointing a chain of layers `x_{i+1} = f_i(x_i)`, `i = 0..<n`.
///
/// A schedule is a list of actions over chain states (state `i` is the input of layer `i`):
/// - `advance(from, to)`: run layers `from..<to` without recording, from stored state `from` (or
///   the working state, if it is at `from`), leaving the working state at `to`;
/// - `store(i)`: keep the working state, which is at `i` (takes a slot until `free(i)`);
/// - `free(i)`: drop state `i`;
/// - `reverse(from, to)`: re-run layers `from..<to` recording the graph from state `from` (stored
///   or working), then backpropagate the gradient of state `to` through them (segment reversal).
///
/// Model (Griewank's): the slots include the one holding the chain's input; reversing layer `i`
/// needs state `i`; the forward count is every layer evaluation outside a reverse action
/// (``forwardSteps``). The initial forward sweep is part of the schedule.
public enum ChainAction: Hashable, Sendable, Codable, CustomStringConvertible {
    case advance(from: Int, to: Int)
    case store(Int)
    case free(Int)
    case reverse(from: Int, to: Int)

    public var description: String {
        switch self {
        case .advance(let a, let b): return "advance \(a)->\(b)"
        case .store(let i): return "store \(i)"
        case .free(let i): return "free \(i)"
        case .reverse(let a, let b): return b == a + 1 ? "reverse \(a)" : "reverse \(a)->\(b)"
        }
    }
}

public struct ChainSchedule: Sendable, Hashable {
    public let length: Int
    /// Actions of the forward sweep (before backward starts).
    public let forward: [ChainAction]
    /// Actions run when the gradient of the chain's output arrives.
    public let backward: [ChainAction]

    /// Layer evaluations outside reverse actions during backward: Griewank's forward count of the
    /// reversal (the forward sweep that produces the chain's output comes on top: ``sweepSteps``).
    public var forwardSteps: Int { Self.advanced(backward) }

    /// Layer evaluations of the forward sweep (`length` for every schedule here).
    public var sweepSteps: Int { Self.advanced(forward) }

    private static func advanced(_ actions: [ChainAction]) -> Int {
        actions.reduce(0) { n, a in
            if case .advance(let f, let t) = a { return n + (t - f) }
            return n
        }
    }

    /// Most states stored at once (including the chain's input).
    public var peakSlots: Int {
        var live = Set<Int>(), peak = 0
        for a in forward + backward {
            switch a {
            case .store(let i): live.insert(i); peak = max(peak, live.count)
            case .free(let i): live.remove(i)
            default: break
            }
        }
        return peak
    }

    // MARK: Schedules

    /// Segments of `k` layers: store each segment's input in the forward sweep; in backward,
    /// re-run each segment recording its graph, last segment first (PyTorch `checkpoint_sequential`).
    public static func segments(length n: Int, segmentSize k: Int) -> ChainSchedule {
        precondition(n >= 1 && k >= 1, "segments: length \(n) and segment size \(k) must be positive")
        let starts = Array(stride(from: 0, to: n, by: k))
        var fwd: [ChainAction] = []
        for (i, s) in starts.enumerated() {
            fwd.append(.store(s))
            fwd.append(.advance(from: s, to: i + 1 < starts.count ? starts[i + 1] : n))
        }
        var bwd: [ChainAction] = []
        for (i, s) in starts.enumerated().reversed() {
            bwd.append(.reverse(from: s, to: i + 1 < starts.count ? starts[i + 1] : n))
            bwd.append(.free(s))
        }
        return ChainSchedule(length: n, forward: fwd, backward: bwd)
    }

    /// √n segments (the classic sqrt(L) scheme).
    public static func sqrt(length n: Int) -> ChainSchedule {
        segments(length: n, segmentSize: Swift.max(1, Int(Double(n).squareRoot().rounded(.up))))
    }

    /// Multi-level segments: `levels` nested levels of segments of about `n^(1/levels)` pieces each,
    /// so at most about `levels · n^(1/levels)` states are stored at once, at about `levels` forward
    /// sweeps (the O(n^(1/3)) scheme for 3 levels). Level 1 is one segment (store-all in backward);
    /// level 2 is √n segments.
    public static func recursive(length n: Int, levels: Int) -> ChainSchedule {
        precondition(levels >= 1, "recursive: levels must be at least 1, got \(levels)")
        var fwd: [ChainAction] = [.store(0)]
        var bwd: [ChainAction] = []
        let pieces = Swift.max(1, Int(Foundation.pow(Double(n), 1 / Double(levels)).rounded(.up)))
        // Top level: split [0, n) into pieces, store their starts in the forward sweep.
        let tops = split(0, n, pieces)
        for (i, (a, b)) in tops.enumerated() {
            if i > 0 { fwd.append(.store(a)) }
            fwd.append(.advance(from: a, to: b))
        }
        for (a, b) in tops.reversed() {
            reverseRecursive(a, b, levels - 1, pieces, &bwd)
            bwd.append(.free(a))
        }
        return ChainSchedule(length: n, forward: fwd, backward: bwd)
    }

    private static func reverseRecursive(_ a: Int, _ b: Int, _ levels: Int, _ pieces: Int, _ out: inout [ChainAction]) {
        if levels <= 0 || b - a <= 1 {
            out.append(.reverse(from: a, to: b))
            return
        }
        let parts = split(a, b, pieces)
        for (i, (s, e)) in parts.enumerated() where i + 1 < parts.count {
            out.append(.advance(from: s, to: e))
            out.append(.store(e))
        }
        for (i, (s, e)) in parts.enumerated().reversed() {
            reverseRecursive(s, e, levels - 1, pieces, &out)
            if i > 0 { out.append(.free(s)) }
        }
    }

    private static func split(_ a: Int, _ b: Int, _ pieces: Int) -> [(Int, Int)] {
        let n = b - a, p = Swift.min(pieces, n)
        return (0..<p).map { i in (a + n * i / p, a + n * (i + 1) / p) }
    }

    /// Store nothing but the input: every reversal recomputes from the input (quadratic time,
    /// minimal memory). The same as Revolve with one slot.
    public static func storeNothing(length n: Int) -> ChainSchedule { revolve(length: n, slots: 1) }

    /// The optimal binomial schedule (Griewank–Walther Revolve) for `n` equal layers and `slots`
    /// slots (including the one holding the input): minimal forward steps, one layer reversed at a time.
    public static func revolve(length n: Int, slots: Int) -> ChainSchedule {
        precondition(n >= 1 && slots >= 1, "revolve: length \(n) and slots \(slots) must be positive")
        let bwd = Revolve.reverse(0, n, slots)
        // The forward sweep runs the chain once to produce its output, storing only the input;
        // backward follows the optimal reversal from the input.
        let fwd: [ChainAction] = [.store(0), .advance(from: 0, to: n)]
        return ChainSchedule(length: n, forward: fwd, backward: bwd + [.free(0)])
    }
}

/// Griewank–Walther's binomial checkpointing, in closed form.
///
/// With `s` slots (the start's included) and `n` layers, the least number of forward steps to
/// reverse the chain from its stored start is `F(n, s) = r·n − β(s + 1, r − 1)`, where
/// `β(s, r) = C(s + r, s)` and the repetition number `r` is the least with `β(s, r) ≥ n` (Griewank,
/// "Achieving logarithmic growth of temporal and spatial complexity in reverse automatic
/// differentiation", 1992; it satisfies `F(1, s) = 0`, `F(n, 1) = n(n−1)/2` and the recursion
/// `F(n, s) = min_m m + F(n−m, s−1) + F(m, s)`). An optimal first split is
/// `m = clamp(β(s, r−2), max(1, n − β(s−1, r)), min(n−1, β(s, r−1)))` — the least optimal one,
/// as the recursion's minimum over m would pick (checked against it for every n < 200, s < 40).
/// Everything here is O(log n · min(s, r)) per call: no table, no recursion.
public enum Revolve {
    /// `β(s, r) = C(s + r, s)`, or nil past `limit` (it only grows with s and r).
    static func beta(_ s: Int, _ r: Int, limit: Int = 1 << 62) -> Int? {
        if r < 0 { return 0 }
        let k = Swift.min(s, r), top = s + r
        var c = 1
        for i in 0..<k {
            // c·(top − i)/(i + 1) is exact: c = C(top, i), and C(top, i + 1) = C(top, i)·(top − i)/(i + 1).
            let (p, overflow) = c.multipliedReportingOverflow(by: top - i)
            if overflow { return nil }
            c = p / (i + 1)
            if c > limit { return nil }
        }
        return c
    }

    /// The repetition number: the least r with β(s, r) ≥ n.
    static func repetitions(_ n: Int, _ s: Int) -> Int {
        var lo = 0, hi = Swift.max(n, 1)   // β(s, n) ≥ n + 1 > n for s ≥ 1
        while lo < hi {
            let mid = lo + (hi - lo) / 2
            if let b = beta(s, mid), b < n { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    /// F(n, s), or nil when it does not fit an Int.
    public static func forwardSteps(length n: Int, slots s: Int) -> Int? {
        precondition(n >= 1 && s >= 1, "Revolve.forwardSteps: length \(n) and slots \(s) must be positive")
        let r = repetitions(n, s)
        guard let b = beta(s + 1, r - 1, limit: Int.max) else { return nil }
        let (rn, overflow) = r.multipliedReportingOverflow(by: n)
        return overflow ? nil : rn - b
    }

    /// The optimal first split of `n ≥ 2` layers with `s ≥ 2` slots.
    static func split(_ n: Int, _ s: Int) -> Int {
        let r = repetitions(n, s)
        let lo = Swift.max(1, n - (beta(s - 1, r) ?? n))
        let hi = Swift.min(n - 1, beta(s, r - 1) ?? n)
        return Swift.max(lo, Swift.min(hi, beta(s, r - 2) ?? hi))
    }

    /// The optimal actions to reverse layers `a..<b` from stored state `a` with `s` slots.
    static func reverse(_ a: Int, _ b: Int, _ s: Int) -> [ChainAction] {
        var out: [ChainAction] = []
        // Pending work, last first: reverse a range, or free a stored state.
        enum Work { case reverse(Int, Int, Int), free(Int) }
        var stack: [Work] = [.reverse(a, b, s)]
        while let w = stack.popLast() {
            switch w {
            case .free(let i):
                out.append(.free(i))
            case .reverse(let a, let b, let s):
                let n = b - a
                if n <= 0 { continue }
                if n == 1 { out.append(.reverse(from: a, to: b)); continue }
                if s <= 1 {
                    // Only the start is stored: advance a working state to each layer, last first.
                    for i in stride(from: b - 1, through: a, by: -1) {
                        if i > a { out.append(.advance(from: a, to: i)) }
                        out.append(.reverse(from: i, to: i + 1))
                    }
                    continue
                }
                let m = split(n, s)
                out.append(.advance(from: a, to: a + m))
                out.append(.store(a + m))
                stack.append(.reverse(a, a + m, s))
                stack.append(.free(a + m))
                stack.append(.reverse(a + m, b, s - 1))
            }
        }
        return out
    }
}

/// Revolve's forward counts under the name earlier code used (``Revolve/forwardSteps(length:slots:)``).
public struct RevolvePlanner {
    public init(maxSlots: Int) {}
    /// F(n, s) (`Int.max` when it does not fit).
    public mutating func cost(_ n: Int, _ s: Int) -> Int { n <= 1 ? 0 : Revolve.forwardSteps(length: n, slots: Swift.max(s, 1)) ?? .max }
}

extension ChainSchedule {
    /// A schedule as nested checkpoint regions (what ``checkpointSequential(_:_:schedule:parameters:options:)`` runs).
    public indirect enum Part: Sendable, Hashable {
        /// Parts run one after the other, not as a region: the forward sweep's stored states are
        /// the inputs of these parts.
        case sequence([Part])
        /// A region over its parts: its recompute advances from its input to the inputs of its
        /// later parts and rebuilds them (the schedule's `advance` and `store`).
        case region([Part])
        /// A region over these layers (a `reverse` action).
        case layers(Range<Int>)
    }

    /// The schedule as nested regions: the forward sweep's stored states cut the chain into the
    /// outermost parts; each backward reversal of a part `[a, b)` is either one `reverse(a, b)`
    /// (a region over the layers), or an advance from `a` to states it stores — or keeps as the
    /// working state — followed by the reversals of the pieces, last first (a region over them).
    /// Every schedule built here has that shape.
    public var regions: Part {
        var actions = backward[...]
        func next() -> ChainAction? { actions.first }
        func take() { actions = actions.dropFirst() }
        func expect(_ a: ChainAction) {
            precondition(next() == a, "ChainSchedule.regions: expected \(a), found \(next().map(String.init(describing:)) ?? "the end") in \(backward)")
            take()
        }
        func parse(_ a: Int, _ b: Int) -> Part {
            switch next() {
            case .reverse(a, b)?:
                take()
                return .layers(a..<b)
            case .advance(a, let m)?:
                take()
                guard next() == .store(m) else {
                    // The working state at m is the input of the last piece.
                    expect(.reverse(from: m, to: b))
                    return .region([parse(a, m), .layers(m..<b)])
                }
                take()
                var bounds = [a, m]
                while case .advance(bounds.last!, let e)? = next(), actions.dropFirst().first == .store(e) {
                    take(); take()
                    bounds.append(e)
                }
                bounds.append(b)
                var parts = [Part](repeating: .layers(a..<a), count: bounds.count - 1)
                for i in parts.indices.reversed() {
                    parts[i] = parse(bounds[i], bounds[i + 1])
                    if i > 0 { expect(.free(bounds[i])) }
                }
                return .region(parts)
            default:
                preconditionFailure("ChainSchedule.regions: cannot reverse layers \(a)..<\(b) at \(next().map(String.init(describing:)) ?? "the end") in \(backward)")
            }
        }
        let stored = forward.compactMap { a -> Int? in if case .store(let i) = a { return i } else { return nil } }
        precondition(stored.first == 0, "ChainSchedule.regions: the forward sweep must store the chain's input: \(forward)")
        let bounds = stored + [length]
        var parts = [Part](repeating: .layers(0..<0), count: stored.count)
        for i in parts.indices.reversed() {
            parts[i] = parse(bounds[i], bounds[i + 1])
            expect(.free(bounds[i]))
        }
        precondition(actions.isEmpty, "ChainSchedule.regions: actions left after the reversal: \(Array(actions))")
        return .sequence(parts)
    }
}
