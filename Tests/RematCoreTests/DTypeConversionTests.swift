import RematCore
import Testing

// Shorthands for the scalar API.
private typealias C = DTypeConversion
private func f16(_ x: Float) -> UInt16 { C.float16Bits(x) }
private func bf16(_ x: Float) -> UInt16 { C.bfloat16Bits(x) }
private func e4(_ x: Float) -> UInt8 { C.float8E4M3FNBits(x) }
private func e5(_ x: Float) -> UInt8 { C.float8E5M2Bits(x) }
private func bits(_ x: Float) -> UInt32 { x.bitPattern }
private func fl(_ b: UInt32) -> Float { Float(bitPattern: b) }

/// Deterministic 64-bit LCG/xorshift mix for sampling inputs (no dependence on the code under test).
private struct SplitMix {
    var s: UInt64
    mutating func next() -> UInt64 {
        s &+= 0x9E37_79B9_7F4A_7C15
        var z = s
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// A float with random sign and mantissa and an exponent uniform in `exps`.
    mutating func float(exponents exps: ClosedRange<Int>) -> Float {
        let r = next()
        let e = exps.lowerBound + Int(r % UInt64(exps.count))
        let m = UInt32(truncatingIfNeeded: r >> 16) & 0x7F_FFFF
        let s = UInt32(truncatingIfNeeded: r >> 63) << 31
        return Float(sign: .plus, exponent: e, significand: Float(bitPattern: 0x3F80_0000 | m))
            * (s != 0 ? -1 : 1)
    }
}

/// Reference round-to-nearest-even onto a finite code set, by brute force over all codes.
/// `codes` are the positive finite codes; ties go to the code with an even low bit.
private func referenceEncode(_ x: Float, codes: [(code: UInt8, value: Float)], maxCode: UInt8) -> UInt8 {
    let sign: UInt8 = x.sign == .minus ? 0x80 : 0
    let a = Double(x.magnitude)
    var best = codes[0]
    var bestErr = Double.infinity
    for c in codes {
        let err = abs(Double(c.value) - a)
        if err < bestErr || (err == bestErr && c.code & 1 == 0) {
            best = c
            bestErr = err
        }
    }
    // Saturation: anything beyond the max finite magnitude (even past the would-be rounding point).
    if a >= Double(codes.first { $0.code == maxCode }!.value) { return maxCode | sign }
    return best.code | sign
}

@Suite("DTypeConversion")
struct DTypeConversionTests {

    // MARK: float16

    @Test func float16EdgeValues() {
        #expect(f16(0) == 0x0000)
        #expect(f16(-0.0) == 0x8000)
        #expect(f16(1) == 0x3C00)
        #expect(f16(-2) == 0xC000)
        #expect(f16(65504) == 0x7BFF)                       // max finite
        #expect(f16(0x1p-24) == 0x0001)                     // smallest subnormal
        #expect(f16(1023 * 0x1p-24) == 0x03FF)              // largest subnormal
        #expect(f16(0x1p-14) == 0x0400)                     // smallest normal
        // Rounding at 1.0 (ulp 2^-10).
        #expect(f16(1 + 0x1p-11) == 0x3C00)                 // tie -> even (down)
        #expect(f16(1 + 3 * 0x1p-11) == 0x3C02)             // tie -> even (up)
        #expect(f16((1 + 0x1p-11).nextUp) == 0x3C01)        // just above tie -> up
        #expect(f16((1 + 0x1p-11).nextDown) == 0x3C00)      // just below tie -> down
        // Rounding in the subnormal range.
        #expect(f16(0x1p-25) == 0x0000)                     // half the smallest subnormal: tie -> 0
        #expect(f16(-0x1p-25) == 0x8000)
        #expect(f16(Float(0x1p-25).nextUp) == 0x0001)
        #expect(f16(3 * 0x1p-25) == 0x0002)                 // tie between 1 and 2 -> 2
        #expect(f16(1023.5 * 0x1p-24) == 0x0400)            // largest subnormal + half ulp -> min normal
        #expect(f16(Float.leastNonzeroMagnitude) == 0x0000)
        // Overflow -> inf (65520 = 65504 + half ulp, tie to even = inf).
        #expect(f16(Float(65520).nextDown) == 0x7BFF)
        #expect(f16(65520) == 0x7C00)
        #expect(f16(-65520) == 0xFC00)
        #expect(f16(1e10) == 0x7C00)
        #expect(f16(.greatestFiniteMagnitude) == 0x7C00)
        #expect(f16(.infinity) == 0x7C00)
        #expect(f16(-.infinity) == 0xFC00)
        // NaN -> quiet NaN, sign kept, even when only low payload bits were set.
        for nan in [Float.nan, -Float.nan, Float.signalingNaN, fl(0x7F80_0001), fl(0xFFFF_FFFF)] {
            let h = f16(nan)
            #expect(h & 0x7C00 == 0x7C00 && h & 0x03FF != 0, "NaN must stay NaN: \(String(h, radix: 16))")
            #expect(h & 0x0200 != 0, "quiet bit")
            #expect((h & 0x8000 != 0) == (nan.sign == .minus))
        }
        // Decode.
        #expect(C.float(float16Bits: 0x0001) == 0x1p-24)
        #expect(C.float(float16Bits: 0x03FF) == 1023 * 0x1p-24)
        #expect(C.float(float16Bits: 0x7BFF) == 65504)
        #expect(C.float(float16Bits: 0x7C00) == .infinity)
        #expect(C.float(float16Bits: 0xFC00) == -.infinity)
        #expect(C.float(float16Bits: 0x8000).bitPattern == 0x8000_0000)
        #expect(C.float(float16Bits: 0x7C01).isNaN)
        #expect(C.float(float16Bits: 0xFE00).isNaN)
    }

    @Test func float16ExhaustiveAgainstSwiftFloat16() {
        for code in 0...0xFFFF {
            let h = UInt16(code)
            let ref = Float(Float16(bitPattern: h))
            let v = C.float(float16Bits: h)
            if ref.isNaN {
                #expect(v.isNaN, "code \(code)")
                #expect(v.sign == ref.sign)
                let back = f16(v)
                #expect(back & 0x7C00 == 0x7C00 && back & 0x03FF != 0)
            } else {
                #expect(v.bitPattern == ref.bitPattern, "decode \(code)")
                #expect(f16(v) == h, "round trip \(code)")
            }
        }
    }

    @Test func float16EncodeMatchesSwiftFloat16() {
        var rng = SplitMix(s: 1)
        var mismatches = 0
        for i in 0..<2_000_000 {
            // Mix of wide random bit patterns and values concentrated in f16's range.
            let x = i % 2 == 0 ? fl(UInt32(truncatingIfNeeded: rng.next())) : rng.float(exponents: -27...17)
            let ref = Float16(x).bitPattern
            let got = f16(x)
            if x.isNaN {
                if !(got & 0x7C00 == 0x7C00 && got & 0x03FF != 0) { mismatches += 1 }
            } else if ref != got {
                mismatches += 1
            }
        }
        #expect(mismatches == 0)
    }

    // MARK: bfloat16

    @Test func bfloat16EdgeValues() {
        #expect(bf16(1) == 0x3F80)
        #expect(bf16(0) == 0x0000)
        #expect(bf16(-0.0) == 0x8000)
        #expect(bf16(-1) == 0xBF80)
        #expect(bf16(fl(0x0001_0000)) == 0x0001)             // smallest bf16 subnormal
        #expect(bf16(fl(0x007F_0000)) == 0x007F)             // largest bf16 subnormal
        #expect(bf16(fl(0x0080_0000)) == 0x0080)             // smallest normal
        #expect(bf16(fl(0x0000_8000)) == 0x0000)             // tie -> even (0)
        #expect(bf16(fl(0x0001_8000)) == 0x0002)             // tie -> even (up)
        #expect(bf16(fl(0x3F80_8000)) == 0x3F80)             // tie at 1.0 -> even (down)
        #expect(bf16(fl(0x3F81_8000)) == 0x3F82)             // tie -> even (up)
        #expect(bf16(fl(0x3F80_8001)) == 0x3F81)             // above tie
        #expect(bf16(fl(0x3F80_7FFF)) == 0x3F80)             // below tie
        #expect(bf16(fl(0x7F7F_0000)) == 0x7F7F)             // max finite
        #expect(bf16(fl(0x7F7F_7FFF)) == 0x7F7F)
        #expect(bf16(fl(0x7F7F_8000)) == 0x7F80)             // tie, odd -> up -> overflow -> inf
        #expect(bf16(.greatestFiniteMagnitude) == 0x7F80)
        #expect(bf16(.infinity) == 0x7F80)
        #expect(bf16(-.infinity) == 0xFF80)
        for nan in [Float.nan, -Float.nan, Float.signalingNaN, fl(0x7F80_0001), fl(0xFF80_0001)] {
            let b = bf16(nan)
            #expect(b & 0x7F80 == 0x7F80 && b & 0x007F != 0, "NaN must stay NaN")
            #expect(b & 0x0040 != 0, "quiet bit")
            #expect((b & 0x8000 != 0) == (nan.sign == .minus))
        }
        #expect(C.float(bfloat16Bits: 0x3F80) == 1)
        #expect(C.float(bfloat16Bits: 0x7F80) == .infinity)
        #expect(C.float(bfloat16Bits: 0x0001) == fl(0x0001_0000))
    }

    @Test func bfloat16ExhaustiveRoundTrip() {
        for code in 0...0xFFFF {
            let b = UInt16(code)
            let v = C.float(bfloat16Bits: b)
            #expect(v.bitPattern == UInt32(b) << 16)
            if v.isNaN {
                let back = bf16(v)
                #expect(back & 0x7F80 == 0x7F80 && back & 0x007F != 0)
            } else {
                #expect(bf16(v) == b, "round trip \(code)")
            }
        }
    }

    @Test func bfloat16EncodeMatchesReference() {
        // Reference: RNE on the Double value to the nearest multiple of the bf16 spacing.
        var rng = SplitMix(s: 2)
        var mismatches = 0
        for _ in 0..<1_000_000 {
            let x = fl(UInt32(truncatingIfNeeded: rng.next()))
            guard x.isFinite else { continue }
            let hi = x.bitPattern & 0xFFFF_0000
            let lo = x.bitPattern & 0x0000_FFFF
            var ref = hi >> 16
            if lo > 0x8000 || (lo == 0x8000 && ref & 1 == 1) { ref += 1 }
            if UInt16(ref) != bf16(x) { mismatches += 1 }
        }
        #expect(mismatches == 0)
    }

    // MARK: float8 E4M3FN

    /// Independent decode: S.EEEE.MMM, bias 7, subnormal when E == 0, NaN at S.1111.111.
    private static func e4m3Reference(_ b: UInt8) -> Float {
        let s: Float = b & 0x80 != 0 ? -1 : 1
        let e = Int((b >> 3) & 0xF), m = Float(b & 7)
        if b & 0x7F == 0x7F { return .nan }
        if e == 0 { return s * m * 0x1p-9 }
        return s * Float(sign: .plus, exponent: e - 7, significand: 1 + m / 8)
    }

    @Test func e4m3fnEdgeValues() {
        #expect(e4(0) == 0x00)
        #expect(e4(-0.0) == 0x80)
        #expect(e4(1) == 0x38)
        #expect(e4(448) == 0x7E)                             // max finite
        #expect(e4(-448) == 0xFE)
        #expect(e4(0x1p-9) == 0x01)                          // smallest subnormal
        #expect(e4(7 * 0x1p-9) == 0x07)                      // largest subnormal
        #expect(e4(0x1p-6) == 0x08)                          // smallest normal
        #expect(e4(0x1p-10) == 0x00)                         // tie -> 0
        #expect(e4(Float(0x1p-10).nextUp) == 0x01)
        #expect(e4(3 * 0x1p-10) == 0x02)                     // tie between 1 and 2 -> 2
        #expect(e4(7.5 * 0x1p-9) == 0x08)                    // largest subnormal + half -> min normal
        #expect(e4(1.0625) == 0x38)                          // tie -> even (down)
        #expect(e4(1.1875) == 0x3A)                          // tie -> even (up)
        #expect(e4(Float(1.0625).nextUp) == 0x39)
        #expect(e4(416) == 0x7D)                             // 416 = 1.625 * 2^8
        #expect(e4(432) == 0x7E)                             // tie between 416 (odd) and 448 -> 448
        // Saturation: overflow and infinities go to +-448.
        #expect(e4(Float(448).nextUp) == 0x7E)
        #expect(e4(464) == 0x7E)                             // would round to 480 (the NaN code) unsaturated
        #expect(e4(480) == 0x7E)
        #expect(e4(1e6) == 0x7E)
        #expect(e4(-1e6) == 0xFE)
        #expect(e4(.greatestFiniteMagnitude) == 0x7E)
        #expect(e4(.infinity) == 0x7E)
        #expect(e4(-.infinity) == 0xFE)
        // NaN -> S.1111.111
        #expect(e4(.nan) == 0x7F)
        #expect(e4(-Float.nan) == 0xFF)
        #expect(e4(.signalingNaN) == 0x7F)
        #expect(e4(fl(0x7F80_0001)) == 0x7F)
        // Decode.
        #expect(C.float(float8E4M3FNBits: 0x7E) == 448)
        #expect(C.float(float8E4M3FNBits: 0xFE) == -448)
        #expect(C.float(float8E4M3FNBits: 0x01) == 0x1p-9)
        #expect(C.float(float8E4M3FNBits: 0x80).bitPattern == 0x8000_0000)
        #expect(C.float(float8E4M3FNBits: 0x7F).isNaN)
        #expect(C.float(float8E4M3FNBits: 0xFF).isNaN)
        #expect(C.float(float8E4M3FNBits: 0x78) == 256)      // S.1111.000 is finite in the "fn" variant
    }

    @Test func e4m3fnExhaustive() {
        for code in 0...0xFF {
            let b = UInt8(code)
            let v = C.float(float8E4M3FNBits: b)
            let ref = Self.e4m3Reference(b)
            if ref.isNaN {
                #expect(v.isNaN, "code \(code)")
            } else {
                #expect(v.bitPattern == ref.bitPattern, "decode \(code)")
            }
            #expect(e4(v) == b, "round trip \(code)")       // exact for all 256 codes, NaNs included
        }
    }

    @Test func e4m3fnEncodeMatchesBruteForce() {
        let codes = (UInt8(0)...0x7E).map { (code: $0, value: C.float(float8E4M3FNBits: $0)) }
        var rng = SplitMix(s: 3)
        var mismatches = 0
        for _ in 0..<200_000 {
            let x = rng.float(exponents: -12...10)
            if referenceEncode(x, codes: codes, maxCode: 0x7E) != e4(x) { mismatches += 1 }
        }
        // Also every midpoint between adjacent codes and its neighbours.
        for i in 0..<(codes.count - 1) {
            let mid = (codes[i].value + codes[i + 1].value) / 2          // exact in Float
            for x in [mid, mid.nextUp, mid.nextDown, -mid] {
                if referenceEncode(x, codes: codes, maxCode: 0x7E) != e4(x) { mismatches += 1 }
            }
        }
        #expect(mismatches == 0)
    }

    // MARK: float8 E5M2

    @Test func e5m2EdgeValues() {
        #expect(e5(0) == 0x00)
        #expect(e5(-0.0) == 0x80)
        #expect(e5(1) == 0x3C)
        #expect(e5(57344) == 0x7B)                           // max finite
        #expect(e5(-57344) == 0xFB)
        #expect(e5(0x1p-16) == 0x01)                         // smallest subnormal
        #expect(e5(3 * 0x1p-16) == 0x03)                     // largest subnormal
        #expect(e5(0x1p-14) == 0x04)                         // smallest normal
        #expect(e5(0x1p-17) == 0x00)                         // tie -> 0
        #expect(e5(Float(0x1p-17).nextUp) == 0x01)
        #expect(e5(3 * 0x1p-17) == 0x02)                     // tie between 1 and 2 -> 2
        #expect(e5(3.5 * 0x1p-16) == 0x04)                   // largest subnormal + half -> min normal
        #expect(e5(1.125) == 0x3C)                           // tie -> even (down)
        #expect(e5(1.375) == 0x3E)                           // tie -> even (up)
        #expect(e5(Float(1.125).nextUp) == 0x3D)
        // Saturation.
        #expect(e5(Float(57344).nextUp) == 0x7B)
        #expect(e5(61440) == 0x7B)                           // tie that would round to inf unsaturated
        #expect(e5(65536) == 0x7B)
        #expect(e5(.greatestFiniteMagnitude) == 0x7B)
        #expect(e5(.infinity) == 0x7B)
        #expect(e5(-.infinity) == 0xFB)
        // NaN
        #expect(e5(.nan) == 0x7F)
        #expect(e5(-Float.nan) == 0xFF)
        #expect(e5(fl(0x7F80_0001)) == 0x7F)
        // Decode.
        #expect(C.float(float8E5M2Bits: 0x7B) == 57344)
        #expect(C.float(float8E5M2Bits: 0x7C) == .infinity)
        #expect(C.float(float8E5M2Bits: 0xFC) == -.infinity)
        for nan: UInt8 in [0x7D, 0x7E, 0x7F, 0xFD, 0xFE, 0xFF] { #expect(C.float(float8E5M2Bits: nan).isNaN) }
        #expect(C.float(float8E5M2Bits: 0x01) == 0x1p-16)
    }

    @Test func e5m2Exhaustive() {
        for code in 0...0xFF {
            let b = UInt8(code)
            let v = C.float(float8E5M2Bits: b)
            // E5M2 is binary16 with 8 fewer mantissa bits.
            let ref = Float(Float16(bitPattern: UInt16(b) << 8))
            if ref.isNaN {
                #expect(v.isNaN, "code \(code)")
                #expect(e5(v) == (b & 0x80) | 0x7F)          // NaN stays NaN (canonical code)
            } else if ref.isInfinite {
                #expect(v == ref)
                #expect(e5(v) == (b & 0x80) | 0x7B)          // saturating: inf -> max finite
            } else {
                #expect(v.bitPattern == ref.bitPattern, "decode \(code)")
                #expect(e5(v) == b, "round trip \(code)")
            }
        }
    }

    @Test func e5m2EncodeMatchesBruteForce() {
        let codes = (UInt8(0)...0x7B).map { (code: $0, value: C.float(float8E5M2Bits: $0)) }
        var rng = SplitMix(s: 4)
        var mismatches = 0
        for _ in 0..<200_000 {
            let x = rng.float(exponents: -19...17)
            if referenceEncode(x, codes: codes, maxCode: 0x7B) != e5(x) { mismatches += 1 }
        }
        for i in 0..<(codes.count - 1) {
            let mid = (codes[i].value + codes[i + 1].value) / 2
            for x in [mid, mid.nextUp, mid.nextDown, -mid] {
                if referenceEncode(x, codes: codes, maxCode: 0x7B) != e5(x) { mismatches += 1 }
            }
        }
        #expect(mismatches == 0)
    }

    // MARK: int8

    @Test func int8RoundingAndSaturation() {
        let cases: [(Float, Int8)] = [
            (0, 0), (-0.0, 0), (0.5, 0), (-0.5, 0), (1.5, 2), (2.5, 2), (-2.5, -2), (3.5, 4),
            (0.49999997, 0), (0.50000006, 1), (-1.4, -1), (126.5, 126), (127, 127), (127.4, 127),
            (127.5, 127), (128, 127), (-128, -128), (-128.5, -128), (-129, -128), (1e10, 127),
            (-1e10, -128), (.infinity, 127), (-.infinity, -128), (.nan, 0), (-Float.nan, 0),
            (.greatestFiniteMagnitude, 127), (.leastNonzeroMagnitude, 0),
        ]
        for (x, want) in cases { #expect(C.int8(x) == want, "int8(\(x))") }
        for v in Int8.min...Int8.max {
            #expect(C.float(int8: v) == Float(v))
            #expect(C.int8(Float(v)) == v)
        }
        var rng = SplitMix(s: 5)
        for _ in 0..<100_000 {
            let x = rng.float(exponents: -3...8)
            let want = Int8(max(-128, min(127, x.rounded(.toNearestOrEven))))
            #expect(C.int8(x) == want)
        }
    }

    @Test func wideIntegers() {
        #expect(C.int32(2.5) == 2)
        #expect(C.int32(.nan) == 0)
        #expect(C.int32(3e9) == .max)
        #expect(C.int32(-3e9) == .min)
        #expect(C.int32(-0x1p31) == .min)
        #expect(C.int64(.infinity) == .max)
        #expect(C.int64(-0x1p63) == .min)
        #expect(C.int64(0x1p62) == 1 << 62)
    }

    // MARK: buffer API

    @Test(arguments: DType.allCases)
    func bufferEncodeDecodeMatchScalar(dtype: DType) {
        var rng = SplitMix(s: 6)
        let n = 1000 + 3  // exercise vector tails
        var src = (0..<n).map { _ in rng.float(exponents: -10...9) }
        src[0] = .nan; src[1] = .infinity; src[2] = -.infinity; src[3] = 0; src[4] = -0.0; src[5] = 1e30
        if !dtype.isFloatingPoint { src[0] = 7.5 }  // NaN handled separately below for ints

        for scale: Float in [1, 0.25, 3] {
            // Misaligned destination: one byte past an aligned allocation.
            let raw = UnsafeMutableRawPointer.allocate(byteCount: n * dtype.byteSize + 8, alignment: 16)
            defer { raw.deallocate() }
            let dst = raw + 1
            src.withUnsafeBufferPointer { DTypeConversion.encode($0, to: dst, as: dtype, scale: scale) }

            var out = [Float](repeating: -1, count: n)
            out.withUnsafeMutableBufferPointer {
                DTypeConversion.decode(UnsafeRawPointer(dst), as: dtype, count: n, into: $0, scale: scale)
            }
            for i in 0..<n {
                let x = src[i] * scale
                let (wantBits, wantValue): (UInt64, Float)
                switch dtype {
                case .float32: (wantBits, wantValue) = (UInt64(x.bitPattern), x)
                case .float16: let b = f16(x); (wantBits, wantValue) = (UInt64(b), C.float(float16Bits: b))
                case .bfloat16: let b = bf16(x); (wantBits, wantValue) = (UInt64(b), C.float(bfloat16Bits: b))
                case .float8E4M3FN: let b = e4(x); (wantBits, wantValue) = (UInt64(b), C.float(float8E4M3FNBits: b))
                case .float8E5M2: let b = e5(x); (wantBits, wantValue) = (UInt64(b), C.float(float8E5M2Bits: b))
                case .int8: let v = C.int8(x); (wantBits, wantValue) = (UInt64(UInt8(bitPattern: v)), Float(v))
                case .int32: let v = C.int32(x); (wantBits, wantValue) = (UInt64(UInt32(bitPattern: v)), Float(v))
                case .int64: let v = C.int64(x); (wantBits, wantValue) = (UInt64(bitPattern: v), Float(v))
                }
                var got: UInt64 = 0
                withUnsafeMutableBytes(of: &got) {
                    $0.copyMemory(from: UnsafeRawBufferPointer(start: dst + i * dtype.byteSize, count: dtype.byteSize))
                }
                #expect(got == wantBits, "\(dtype) encode[\(i)] scale \(scale)")
                let want = wantValue * scale
                #expect(out[i].bitPattern == want.bitPattern || (out[i].isNaN && want.isNaN),
                        "\(dtype) decode[\(i)] scale \(scale)")
            }
        }
    }

    @Test func int8BufferNaNIsZero() {
        let src: [Float] = [.nan, -.nan, 1, .infinity]
        var dst = [Int8](repeating: 5, count: 4)
        src.withUnsafeBufferPointer { s in
            dst.withUnsafeMutableBytes { DTypeConversion.encode(s, to: $0.baseAddress!, as: .int8) }
        }
        #expect(dst == [0, 0, 1, 127])
    }
}
