import Foundation
import Testing
import RematCore

/// Accuracy of the remat_math.h approximations (remat_exp, remat_log, remat_tanh, remat_erf),
/// measured through the tensor ops that use them (the real kernel path: C kernel, the ISA clone
/// this machine dispatches to, parallel chunks) against Double-precision libm.
///
/// "ulp" is 2⁻²³ relative error, as in remat_math.h. Each sweep holds ~1e6 points: a uniform grid
/// over the function's interesting range, plus log-spaced magnitudes of both signs down to the
/// subnormals. The asserted bounds are the documented ones; exhaustive runs over every float
/// (outside the test suite, both FMA and non-FMA builds) measured exp 0.71, log 0.69, tanh 1.19,
/// erf 1.52 ulp at most.
@Suite struct FastMathTests {
    static let ulp = 1.0 / 8_388_608.0   // 2^-23

    /// `count` points evenly spaced in [lo, hi].
    static func grid(_ lo: Float, _ hi: Float, count: Int) -> [Float] {
        (0..<count).map { i in lo + (hi - lo) * Float(i) / Float(count - 1) }
    }

    /// `count` magnitudes log-spaced over [2^lo, 2^hi].
    static func logGrid(_ lo: Float, _ hi: Float, count: Int) -> [Float] {
        (0..<count).map { i in Float(Foundation.pow(2.0, Double(lo) + Double(hi - lo) * Double(i) / Double(count - 1))) }
    }

    /// Largest relative error (in ulp) of `op` over `xs` against `reference`, skipping points whose
    /// reference value is outside the normal float range (0, subnormal, overflow).
    static func maxError(_ xs: [Float], _ op: (Tensor) -> Tensor,
                         _ reference: (Double) -> Double) -> (ulp: Double, at: Float) {
        let y = op(Tensor(xs, shape: [xs.count])).toArray()
        var worst = (ulp: 0.0, at: Float(0))
        for (x, v) in zip(xs, y) {
            let r = reference(Double(x))
            guard abs(r) >= Double(Float.leastNormalMagnitude), abs(r) <= Double(Float.greatestFiniteMagnitude) else { continue }
            let e = abs(Double(v) - r) / abs(r) / ulp
            if !(e <= worst.ulp) { worst = (e, x) }   // NaN output counts as worst
        }
        return worst
    }

    /// Bitwise results of `op` on `xs`.
    static func values(_ xs: [Float], _ op: (Tensor) -> Tensor) -> [Float] {
        op(Tensor(xs, shape: [xs.count])).toArray()
    }

    // MARK: exp

    @Test func expWithinOneUlp() {
        let xs = Self.grid(-87.3, 88.7, count: 800_000)
            + Self.logGrid(-140, 6.4, count: 100_000) + Self.logGrid(-140, 6.4, count: 100_000).map { -$0 }
        let (err, at) = Self.maxError(xs, { exp($0) }, Foundation.exp)
        #expect(err <= 1.0, "exp: \(err) ulp at x = \(at)")
    }

    @Test func expEdgeCases() {
        let y = Self.values([-.infinity, .infinity, .nan, 0, -0.0, -100, 100, -87.4, 88.8, 1], { exp($0) })
        #expect(y[0] == 0 && y[0].sign == .plus)
        #expect(y[1] == .infinity)
        #expect(y[2].isNaN)
        #expect(y[3] == 1 && y[4] == 1)
        #expect(y[5] == 0 && y[6] == .infinity)
        #expect(y[7] == 0 && y[8] == .infinity)   // documented cut-offs
        #expect(abs(Double(y[9]) - M_E) <= M_E * Self.ulp)
    }

    // MARK: log

    @Test func logWithinOneUlp() {
        let xs = Self.logGrid(-149, 127.9, count: 600_000)       // every binade, subnormals included
            + Self.grid(0.5, 2, count: 300_000)                   // around 1, where ln x → 0
            + Self.grid(1 - 1e-3, 1 + 1e-3, count: 100_000)
        let (err, at) = Self.maxError(xs, { log($0) }, Foundation.log)
        #expect(err <= 1.0, "log: \(err) ulp at x = \(at)")
    }

    @Test func logEdgeCases() {
        let y = Self.values([0, -0.0, -1, -.infinity, .infinity, .nan, 1], { log($0) })
        #expect(y[0] == -.infinity && y[1] == -.infinity)
        #expect(y[2].isNaN && y[3].isNaN)
        #expect(y[4] == .infinity)
        #expect(y[5].isNaN)
        #expect(y[6] == 0)
    }

    @Test(arguments: [Float.leastNonzeroMagnitude, Float(bitPattern: 0x0000_0801), Float(bitPattern: 0x0001_2345),
                      Float(bitPattern: 0x0040_0000), Float.leastNormalMagnitude.nextDown, Float.leastNormalMagnitude])
    func logOfSubnormalIsFiniteAndCorrect(x: Float) {
        let y = Self.values([x], { log($0) })[0]
        let r = Foundation.log(Double(x))
        #expect(y.isFinite)
        #expect(abs(Double(y) - r) <= abs(r) * Self.ulp, "log(\(x)) = \(y), libm \(r)")
    }

    // MARK: tanh

    @Test func tanhWithinOneAndAHalfUlp() {
        let xs = Self.grid(-10, 10, count: 600_000)
            + Self.logGrid(-149, 4, count: 200_000) + Self.logGrid(-149, 4, count: 200_000).map { -$0 }
        let (err, at) = Self.maxError(xs, { tanh($0) }, Foundation.tanh)
        #expect(err <= 1.5, "tanh: \(err) ulp at x = \(at)")
    }

    @Test func tanhEdgeCases() {
        let tiny = -Float(bitPattern: 0x0001_2345)   // subnormal
        let y = Self.values([20, -20, 9.02, -9.02, .infinity, -.infinity, 0, -0.0, .nan, 1e-30, tiny], { tanh($0) })
        #expect(y[0] == 1 && y[1] == -1)
        #expect(y[2] == 1 && y[3] == -1)
        #expect(y[4] == 1 && y[5] == -1)
        #expect(y[6] == 0 && y[6].sign == .plus)
        #expect(y[7] == 0 && y[7].sign == .minus)
        #expect(y[8].isNaN)
        #expect(y[9] == 1e-30 && y[10] == tiny)   // tanh x = x to float precision
    }

    // MARK: erf

    @Test func erfWithinTwoUlp() {
        let xs = Self.grid(-5, 5, count: 600_000)
            + Self.logGrid(-149, 2.3, count: 200_000) + Self.logGrid(-149, 2.3, count: 200_000).map { -$0 }
        let (err, at) = Self.maxError(xs, { erf($0) }, Foundation.erf)
        #expect(err <= 2.0, "erf: \(err) ulp at x = \(at)")
    }

    @Test func erfEdgeCases() {
        let y = Self.values([10, -10, 3.92, -3.92, .infinity, -.infinity, 0, -0.0, .nan, 1e-30], { erf($0) })
        #expect(y[0] == 1 && y[1] == -1)
        #expect(y[2] == 1 && y[3] == -1)
        #expect(y[4] == 1 && y[5] == -1)
        #expect(y[6] == 0 && y[6].sign == .plus)
        #expect(y[7] == 0 && y[7].sign == .minus)
        #expect(y[8].isNaN)
        #expect(abs(Double(y[9]) - 2 / Double.pi.squareRoot() * 1e-30) <= 1.2e-30 * Self.ulp)
    }

    // MARK: Φ (through gelu = x·Φ(x))

    /// The normal CDF behind exact GELU keeps its relative accuracy in the lower tail: error
    /// ≤ 3 ulp·(1 + x²) down to x = −5.65 (the x² is Φ's conditioning), where 1 + erf would have
    /// lost every digit.
    @Test func normalCDFKeepsRelativeAccuracyInTheLowerTail() {
        let xs = Self.grid(-5.65, 6, count: 500_000)
        let y = Self.values(xs, { gelu($0) })
        var worst = 0.0
        var at: Float = 0
        for (x, v) in zip(xs, y) where x != 0 {
            let r = Double(x) * 0.5 * Foundation.erfc(-Double(x) / 2.0.squareRoot())
            let e = abs(Double(v) - r) / abs(r) / Self.ulp / (1 + Double(x) * Double(x))
            if !(e <= worst) { worst = e; at = x }
        }
        #expect(worst <= 3.0, "gelu: \(worst) ulp/(1+x²) at x = \(at)")
    }
}
