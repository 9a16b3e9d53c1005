/// Times several ways of running the same work against the first of them on a shared, noisy
/// machine: in every round each variant runs once, back to back (the order reversed every other
/// round, so neither side always goes first), and each variant's figure is its median ratio to the
/// first variant *of the same round* — a load change between rounds moves both sides of a ratio
/// alike. Timing each variant in a block of its own, one after the other (``Order/blocks``), lets any
/// load change between blocks land in the ratio; it is here to show exactly that.
public enum InterleavedTiming {
    public enum Order: Sendable { case interleaved, blocks }

    /// The timings of one comparison.
    public struct Result: Sendable {
        /// `times[v][r]`: variant `v`'s time in round `r` (whatever unit `measure` returns).
        public var times: [[Double]]
        /// `ratios[v][r] = times[v][r] / times[0][r]`.
        public var ratios: [[Double]] {
            times.map { t in zip(t, times[0]).map { $0 / $1 } }
        }
        /// Variant `v`'s median time.
        public func medianTime(_ v: Int) -> Double { median(times[v]) }
        /// Variant `v`'s median ratio to the first variant.
        public func medianRatio(_ v: Int) -> Double { median(ratios[v]) }
        /// The lowest and highest of variant `v`'s per-round ratios.
        public func ratioRange(_ v: Int) -> ClosedRange<Double> { ratios[v].min()!...ratios[v].max()! }
        /// Half the range of variant `v`'s per-round ratios, relative to its median (0.05: ±5%).
        public func spread(_ v: Int) -> Double {
            let r = ratioRange(v)
            return (r.upperBound - r.lowerBound) / 2 / Swift.max(medianRatio(v), 1e-12)
        }
        /// The widest spread of any variant.
        public var widestSpread: Double { (0..<times.count).map(spread).max() ?? 0 }
    }

    /// Runs `rounds` rounds of `variants` variants; `measure(v)` runs variant `v` once and returns
    /// its time.
    public static func run(variants: Int, rounds: Int, order: Order = .interleaved, measure: (Int) -> Double) -> Result {
        precondition(variants >= 1 && rounds >= 1, "InterleavedTiming: needs at least one variant and one round")
        var times = [[Double]](repeating: [], count: variants)
        switch order {
        case .interleaved:
            for r in 0..<rounds {
                for v in (r % 2 == 0 ? Array(0..<variants) : (0..<variants).reversed()) { times[v].append(measure(v)) }
            }
        case .blocks:
            for v in 0..<variants { for _ in 0..<rounds { times[v].append(measure(v)) } }
        }
        return Result(times: times)
    }
}

extension InterleavedTiming {
    /// Times `variants` training steps interleaved (``run(variants:rounds:order:measure:)``): per
    /// round and variant, `apply(v)`, an untimed `step()` and a timed one. The untimed step is
    /// there because the first step after another variant's touches the pages that variant's
    /// smaller peak gave back, which a loop repeating one variant never pays (it biased every
    /// ratio to the first, largest-peak variant low by a few percent). Returns the timing and each
    /// variant's last timed report; the first error stops the rounds and is thrown.
    public static func steps(variants: Int, rounds: Int, apply: (Int) throws -> Void,
                             step: () throws -> StepReport) throws -> (timing: Result, reports: [StepReport]) {
        var last = [StepReport?](repeating: nil, count: variants)
        var failure: Error? = nil
        let timing = run(variants: variants, rounds: rounds) { v in
            guard failure == nil else { return 1 }
            do {
                try apply(v)
                _ = try step()
                let r = try step()
                last[v] = r
                return r.stepMilliseconds
            } catch {
                failure = error
                return 1
            }
        }
        if let failure { throw failure }
        return (timing, last.map { $0! })
    }
}
