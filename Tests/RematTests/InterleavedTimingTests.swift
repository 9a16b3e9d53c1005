import Testing
import Remat

/// A fake clock whose load changes in the middle of a run: timing each variant in a block of its
/// own puts the change into the ratio; interleaved rounds see the true ratio.
@Suite struct InterleavedTimingTests {
    /// Variant 0 takes 100 ms and variant 1 120 ms on an idle machine (1.2×); the machine is
    /// busy — every step twice as slow — for the first `busyCalls` steps of the run.
    static func time(_ order: InterleavedTiming.Order, rounds: Int, busyCalls: Int) -> InterleavedTiming.Result {
        var calls = 0
        return InterleavedTiming.run(variants: 2, rounds: rounds, order: order) { v in
            defer { calls += 1 }
            return [100.0, 120.0][v] * (calls < busyCalls ? 2 : 1)
        }
    }

    @Test func blockTimingShowsARatioBelowOneInterleavingTheTrueOne() {
        // The load drops after 7 of 14 steps: in the middle of a block, and in the middle of round 3.
        let blocks = Self.time(.blocks, rounds: 7, busyCalls: 7)
        #expect(blocks.medianRatio(1) < 1, "block timing: \(blocks.medianRatio(1))")   // 120 idle / 200 busy = 0.6
        let interleaved = Self.time(.interleaved, rounds: 7, busyCalls: 7)
        #expect(abs(interleaved.medianRatio(1) - 1.2) < 1e-12, "interleaved: \(interleaved.medianRatio(1))")
        #expect(interleaved.ratioRange(1).lowerBound < 1.2 || interleaved.ratioRange(1).upperBound > 1.2,
                "the round that straddles the change shows in the range")
        #expect(interleaved.spread(1) > 0.10, "a wide spread is reported as noise")
        #expect(abs(interleaved.medianRatio(0) - 1) < 1e-12 && interleaved.spread(0) == 0)
    }

    @Test func aSteadyMachineHasNoSpread() {
        let steady = Self.time(.interleaved, rounds: 5, busyCalls: 0)
        #expect(steady.ratios[1].allSatisfy { abs($0 - 1.2) < 1e-12 })
        #expect(steady.widestSpread < 1e-12)
        #expect(steady.medianTime(1) == 120)
    }
}
