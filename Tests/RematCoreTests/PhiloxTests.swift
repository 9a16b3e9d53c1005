import Foundation
import RematCore
import Testing

private typealias Block = (UInt32, UInt32, UInt32, UInt32)
private func same(_ a: Block, _ b: Block) -> Bool { a.0 == b.0 && a.1 == b.1 && a.2 == b.2 && a.3 == b.3 }
private func lane(_ b: Block, _ i: Int) -> UInt32 { [b.0, b.1, b.2, b.3][i] }

private func uniform(_ g: RandomGenerator, _ n: Int) -> [Float] {
    var a = [Float](repeating: .nan, count: n)
    a.withUnsafeMutableBufferPointer { g.fillUniform($0) }
    return a
}

private func normal(_ g: RandomGenerator, _ n: Int, mean: Float = 0, std: Float = 1) -> [Float] {
    var a = [Float](repeating: .nan, count: n)
    a.withUnsafeMutableBufferPointer { g.fillNormal($0, mean: mean, std: std) }
    return a
}

@Suite("Philox")
struct PhiloxTests {

    /// Random123 `tests/kat_vectors`, the three `philox4x32 10` lines (counter, key -> output).
    @Test func knownAnswerVectors() {
        let kat: [(Block, (UInt32, UInt32), Block)] = [
            ((0, 0, 0, 0), (0, 0), (0x6627_E8D5, 0xE169_C58D, 0xBC57_AC4C, 0x9B00_DBD8)),
            ((0xFFFF_FFFF, 0xFFFF_FFFF, 0xFFFF_FFFF, 0xFFFF_FFFF), (0xFFFF_FFFF, 0xFFFF_FFFF),
             (0x408F_276D, 0x41C8_3B0E, 0xA20B_C7C6, 0x6D54_51FD)),
            ((0x243F_6A88, 0x85A3_08D3, 0x1319_8A2E, 0x0370_7344), (0xA409_3822, 0x299F_31D0),
             (0xD16C_FE09, 0x94FD_CCEB, 0x5001_E420, 0x2412_6EA1)),
        ]
        for (ctr, key, want) in kat {
            #expect(same(RandomGenerator.philox(counter: ctr, key: key), want))
        }
    }

    @Test func blockLayoutAndKeySplit() {
        let seed: UInt64 = 0x299F_31D0_A409_3822
        let idx: UInt64 = 0x85A3_08D3_243F_6A88
        #expect(same(RandomGenerator.block(idx, seed: seed),
                     RandomGenerator.philox(counter: (0x243F_6A88, 0x85A3_08D3, 0, 0), key: (0xA409_3822, 0x299F_31D0))))
    }

    /// The C fill loops produce exactly the documented function of the Swift block function,
    /// including across the 2^32 block boundary (counter word 1 increments) and for tails.
    @Test(arguments: [UInt64(0), 5, 0xFFFF_FFF0, 0xFFFF_FFFF_FFFF_FFFE])
    func fillsMatchBlockFunction(start: UInt64) {
        let seed: UInt64 = 0xDEAD_BEEF_0123_4567
        for n in [1, 2, 3, 4, 5, 255, 256, 257, 1023, 1029] {
            let g = RandomGenerator(state: RNGState(seed: seed, offset: start))
            let u = uniform(g, n)
            #expect(g.state.offset == start &+ UInt64((n + 3) / 4))

            g.state = RNGState(seed: seed, offset: start)
            var w = [UInt32](repeating: 0, count: n)
            w.withUnsafeMutableBufferPointer { g.fillUInt32($0) }

            var ok = true
            for i in 0..<n {
                let b = RandomGenerator.block(start &+ UInt64(i / 4), seed: seed)
                let x = lane(b, i % 4)
                ok = ok && w[i] == x && u[i] == Float(x >> 8) * 0x1p-24
            }
            #expect(ok, "n = \(n), start = \(start)")
        }
    }

    @Test func captureRestoreIsBitwiseIdentical() {
        let g = RandomGenerator(seed: 42)
        _ = uniform(g, 37)  // move off zero
        let saved = g.state
        let u1 = uniform(g, 1001), n1 = normal(g, 333, mean: 1, std: 0.5), x1 = g.nextUInt64()
        let after = g.state
        _ = uniform(g, 10)  // disturb
        g.state = saved
        let u2 = uniform(g, 1001), n2 = normal(g, 333, mean: 1, std: 0.5), x2 = g.nextUInt64()
        #expect(u1.map(\.bitPattern) == u2.map(\.bitPattern))
        #expect(n1.map(\.bitPattern) == n2.map(\.bitPattern))
        #expect(x1 == x2)
        #expect(g.state == after)

        // A fresh generator at the same state gives the same stream too.
        let h = RandomGenerator(state: saved)
        #expect(uniform(h, 1001).map(\.bitPattern) == u1.map(\.bitPattern))
    }

    @Test func offsetAdvancesByBlocks() {
        let g = RandomGenerator(seed: 7)
        #expect(g.state == RNGState(seed: 7, offset: 0))
        _ = uniform(g, 10)
        #expect(g.state.offset == 3)
        _ = uniform(g, 10)
        #expect(g.state.offset == 6)
        _ = normal(g, 9)
        #expect(g.state.offset == 9)
        _ = uniform(g, 0)
        #expect(g.state.offset == 9)
        let x = g.nextUInt64()
        #expect(g.state.offset == 10)
        let b = RandomGenerator.block(9, seed: 7)
        #expect(x == UInt64(b.1) << 32 | UInt64(b.0))
        // Two fills of n are the blocks of [0, ceil(n/4)) and [ceil(n/4), 2 ceil(n/4)).
        let a = RandomGenerator(seed: 9), c = RandomGenerator(seed: 9)
        let first = uniform(a, 8), second = uniform(a, 8)
        #expect(first + second == uniform(c, 16))
    }

    @Test func differentSeedsDiffer() {
        let a = uniform(RandomGenerator(seed: 1), 64)
        let b = uniform(RandomGenerator(seed: 2), 64)
        let c = uniform(RandomGenerator(seed: 1 << 32), 64)  // high key word only
        #expect(a != b && a != c && b != c)
    }

    @Test func uniformStatistics() {
        let n = 1 << 20
        let u = uniform(RandomGenerator(seed: 12345), n)
        #expect(u.allSatisfy { $0 >= 0 && $0 < 1 })
        var sum = 0.0, sq = 0.0
        var buckets = [Int](repeating: 0, count: 16)
        for x in u {
            sum += Double(x); sq += Double(x) * Double(x)
            buckets[Int(x * 16)] += 1
        }
        let mean = sum / Double(n), variance = sq / Double(n) - mean * mean
        #expect(abs(mean - 0.5) < 0.002)              // sd of mean ~ 0.00028
        #expect(abs(variance - 1.0 / 12) < 0.001)
        let expected = Double(n) / 16
        let chi2 = buckets.reduce(0.0) { $0 + pow2(Double($1) - expected) / expected }
        #expect(chi2 < 50)                             // 15 dof; p(chi2 > 50) ~ 1e-5
    }

    @Test func normalStatistics() {
        let n = 1 << 20
        let z = normal(RandomGenerator(seed: 99), n, mean: 2, std: 3)
        #expect(z.allSatisfy { $0.isFinite && abs($0 - 2) <= 3 * 5.78 })
        var sum = 0.0, sq = 0.0, within1 = 0
        for x in z {
            sum += Double(x); sq += Double(x) * Double(x)
            if abs(x - 2) < 3 { within1 += 1 }
        }
        let mean = sum / Double(n), std = (sq / Double(n) - mean * mean).squareRoot()
        #expect(abs(mean - 2) < 0.02)                  // sd of mean ~ 0.003
        #expect(abs(std - 3) < 0.02)
        #expect(abs(Double(within1) / Double(n) - 0.6827) < 0.003)
    }

    /// fillNormal is the documented Box-Muller transform of the block stream, to float accuracy.
    @Test func normalMatchesDoubleBoxMuller() {
        let seed: UInt64 = 2024, start: UInt64 = 77
        let n = 4 * 50_000 + 3
        let g = RandomGenerator(state: RNGState(seed: seed, offset: start))
        let z = normal(g, n)
        var worst = 0.0
        for j in 0..<((n + 3) / 4) {
            let b = RandomGenerator.block(start + UInt64(j), seed: seed)
            for (pair, (ua, ut)) in [(b.0, b.1), (b.2, b.3)].enumerated() {
                let a = Double((ua >> 8) + 1) * 0x1p-24
                let t = Double(ut >> 8) * 0x1p-24
                let r = (-2 * log(a)).squareRoot()
                for (k, ref) in [r * cos(2 * .pi * t), r * sin(2 * .pi * t)].enumerated() {
                    let i = 4 * j + 2 * pair + k
                    guard i < n else { continue }
                    worst = max(worst, abs(Double(z[i]) - ref) / max(1, abs(ref)))
                }
            }
        }
        #expect(worst < 1e-6, "max relative error \(worst)")
    }

    @Test func randomNumberGeneratorConformance() {
        var g = RandomGenerator(seed: 3)
        let x = Int.random(in: 0..<1000, using: &g)
        #expect((0..<1000).contains(x))
        #expect(g.state.offset >= 1)
    }
}

private func pow2(_ x: Double) -> Double { x * x }
