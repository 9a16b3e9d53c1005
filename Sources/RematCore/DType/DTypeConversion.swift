import CRematKernels

/// Conversions between `Float` (the compute type) and the storage dtypes.
///
/// ## Encoding (`Float` → storage)
/// Every encoding rounds to nearest, ties to even (RNE). For an input `x`:
///
/// - `float16` (IEEE binary16): `|x| ≥ 65520` (max finite 65504 + ½ulp) → ±inf; ±inf → ±inf;
///   NaN → quiet NaN keeping the sign and the top payload bits.
/// - `bfloat16`: `|x| ≥ 0x1.FFp127` (max finite `0x1.FEp127` + ½ulp) → ±inf; ±inf → ±inf;
///   NaN → quiet NaN keeping the sign and the top payload bits.
/// - `float8E4M3FN`: `|x| > 448` and ±inf → ±448 (`0x7E`/`0xFE`); NaN → `S.1111.111` (`0x7F`/`0xFF`).
/// - `float8E5M2`: `|x| > 57344` and ±inf → ±57344 (`0x7B`/`0xFB`); NaN → `S.11111.11` (`0x7F`/`0xFF`).
/// - `int8`: clamps to `-128 ... 127` (±inf → -128 / 127); NaN → 0.
/// - `int32`, `int64`: clamp to the type's range; NaN → 0.
///
/// The FP8 formats follow the OCP 8-bit floating point specification in its *saturating* mode
/// (NVIDIA `__nv_cvt_float_to_fp8(x, __NV_SATFINITE, …)`): NaN stays NaN, while infinities and
/// every finite value beyond the largest finite magnitude become that magnitude with `x`'s sign.
/// (E4M3FN has no infinity; E5M2 does, but a saturating encoder never produces it. Note that
/// PyTorch's plain `.to(torch.float8_e5m2)` is *not* saturating.) Magnitudes up to and including
/// half the smallest subnormal round to ±0 (the tie goes to the even code, 0).
/// Signed zero is kept for the floating formats; `int` formats have a single zero.
///
/// ## Decoding (storage → `Float`)
/// Decoding is exact for every code: each storage value is representable in `Float`.
/// NaN codes decode to a quiet `Float` NaN with the code's sign, infinities to ±inf
/// (`int32` → `Float` and `int64` → `Float` round to nearest even when `|v| > 2^24`).
///
/// ## Scale
/// The buffer functions take an optional `scale` (for per-tensor quantisation):
/// `encode` stores `convert(Float(src[i] * scale))` — the product is rounded to `Float` first —
/// and `decode` produces `Float(decode(src[i])) * scale` (one more rounding).
/// With `scale == 1` these are exactly the scalar conversions.
///
/// The buffer loops run in C, compiled per ISA (AVX-512, AVX2, baseline) with run-time dispatch;
/// every version gives bitwise-identical results.
public enum DTypeConversion {

    // MARK: float16

    /// The IEEE binary16 encoding of `x`, rounded to nearest even.
    /// `|x| ≥ 65520` (= 65504 + ½ulp, a tie broken to even) gives ±inf; NaN gives a quiet NaN.
    public static func float16Bits(_ x: Float) -> UInt16 { remat_f32_to_f16_1(x) }

    /// The exact value of the binary16 code `bits` (subnormals included, NaN → quiet NaN).
    public static func float(float16Bits bits: UInt16) -> Float { remat_f16_to_f32_1(bits) }

    // MARK: bfloat16

    /// The bfloat16 encoding (the top 16 bits of a `Float`) of `x`, rounded to nearest even.
    /// Values that round past the largest finite bfloat16 (`0x7F7F` ≈ 3.39e38) give ±inf;
    /// NaN gives a quiet NaN.
    public static func bfloat16Bits(_ x: Float) -> UInt16 { remat_f32_to_bf16_1(x) }

    /// The exact value of the bfloat16 code `bits` (`Float(bitPattern: UInt32(bits) << 16)`).
    public static func float(bfloat16Bits bits: UInt16) -> Float { remat_bf16_to_f32_1(bits) }

    // MARK: float8 E4M3FN

    /// The OCP FP8 E4M3FN encoding of `x` (1 sign, 4 exponent bits with bias 7, 3 mantissa bits;
    /// no infinities; largest finite ±448 = `0x7E`; smallest subnormal 2⁻⁹ = `0x01`),
    /// rounded to nearest even and **saturating**: `|x| > 448` and ±inf give ±448,
    /// NaN gives `0x7F` (or `0xFF` if the NaN's sign bit is set).
    public static func float8E4M3FNBits(_ x: Float) -> UInt8 { remat_f32_to_e4m3fn_1(x) }

    /// The exact value of the E4M3FN code `bits`; `0x7F` and `0xFF` decode to NaN.
    public static func float(float8E4M3FNBits bits: UInt8) -> Float { remat_e4m3fn_to_f32_1(bits) }

    // MARK: float8 E5M2

    /// The OCP FP8 E5M2 encoding of `x` (1 sign, 5 exponent bits with bias 15, 2 mantissa bits;
    /// IEEE-like with ±inf = `0x7C`/`0xFC`; largest finite ±57344 = `0x7B`; smallest subnormal 2⁻¹⁶),
    /// rounded to nearest even and **saturating**: `|x| > 57344` and ±inf give ±57344,
    /// NaN gives `0x7F` (or `0xFF` if the NaN's sign bit is set).
    public static func float8E5M2Bits(_ x: Float) -> UInt8 { remat_f32_to_e5m2_1(x) }

    /// The exact value of the E5M2 code `bits`: `0x7C`/`0xFC` are ±inf, `0x7D...0x7F` and
    /// `0xFD...0xFF` are NaN.
    public static func float(float8E5M2Bits bits: UInt8) -> Float { remat_e5m2_to_f32_1(bits) }

    // MARK: int8

    /// `x` rounded to the nearest integer (ties to even), clamped to `-128 ... 127`; NaN gives 0.
    public static func int8(_ x: Float) -> Int8 { remat_f32_to_i8_1(x) }

    /// `Float(v)`, exact.
    @inlinable public static func float(int8 v: Int8) -> Float { Float(v) }

    // MARK: wider integers

    /// `x` rounded to nearest even, clamped to `Int32`'s range; NaN gives 0.
    @inlinable public static func int32(_ x: Float) -> Int32 {
        let r = x.rounded(.toNearestOrEven)
        if r.isNaN { return 0 }
        if r >= 0x1p31 { return .max }
        if r < -0x1p31 { return .min }
        return Int32(r)
    }

    /// `x` rounded to nearest even, clamped to `Int64`'s range; NaN gives 0.
    @inlinable public static func int64(_ x: Float) -> Int64 {
        let r = x.rounded(.toNearestOrEven)
        if r.isNaN { return 0 }
        if r >= 0x1p63 { return .max }
        if r < -0x1p63 { return .min }
        return Int64(r)
    }

    // MARK: buffers

    /// Encodes `src` as `dtype`, writing `src.count * dtype.byteSize` bytes at `dst`:
    /// `dst[i] = convert(src[i] * scale)` with the rules in the type's documentation.
    ///
    /// `float32` copies (multiplying by `scale` if it is not 1); `int32`/`int64` round to nearest
    /// even and clamp. `dst` need not be aligned; the buffers must not overlap.
    public static func encode(
        _ src: UnsafeBufferPointer<Float>, to dst: UnsafeMutableRawPointer, as dtype: DType, scale: Float = 1
    ) {
        guard let s = src.baseAddress, src.count > 0 else { return }
        let n = src.count
        let scaled = scale != 1
        switch dtype {
        case .float32:
            if scaled {
                for i in 0..<n { dst.storeBytes(of: s[i] * scale, toByteOffset: 4 * i, as: Float.self) }
            } else {
                dst.copyMemory(from: s, byteCount: 4 * n)
            }
        case .float16:
            let d = dst.assumingMemoryBound(to: UInt16.self)
            if scaled { remat_f32_to_f16_scaled(s, d, n, scale) } else { remat_f32_to_f16(s, d, n) }
        case .bfloat16:
            let d = dst.assumingMemoryBound(to: UInt16.self)
            if scaled { remat_f32_to_bf16_scaled(s, d, n, scale) } else { remat_f32_to_bf16(s, d, n) }
        case .float8E4M3FN:
            let d = dst.assumingMemoryBound(to: UInt8.self)
            if scaled { remat_f32_to_e4m3fn_scaled(s, d, n, scale) } else { remat_f32_to_e4m3fn(s, d, n) }
        case .float8E5M2:
            let d = dst.assumingMemoryBound(to: UInt8.self)
            if scaled { remat_f32_to_e5m2_scaled(s, d, n, scale) } else { remat_f32_to_e5m2(s, d, n) }
        case .int8:
            let d = dst.assumingMemoryBound(to: Int8.self)
            if scaled { remat_f32_to_i8_scaled(s, d, n, scale) } else { remat_f32_to_i8(s, d, n) }
        case .int32:
            for i in 0..<n { dst.storeBytes(of: int32(s[i] * scale), toByteOffset: 4 * i, as: Int32.self) }
        case .int64:
            for i in 0..<n { dst.storeBytes(of: int64(s[i] * scale), toByteOffset: 8 * i, as: Int64.self) }
        }
    }

    /// Decodes `count` values of `dtype` at `src` into `dst[0 ..< count]`:
    /// `dst[i] = decode(src[i]) * scale` (decode is exact; see the type's documentation).
    ///
    /// `float32` copies (multiplying by `scale` if it is not 1); `int32`/`int64` convert with
    /// `Float(_:)` (round to nearest even). `src` need not be aligned; the buffers must not overlap.
    /// - Precondition: `dst.count >= count`.
    public static func decode(
        _ src: UnsafeRawPointer, as dtype: DType, count: Int, into dst: UnsafeMutableBufferPointer<Float>,
        scale: Float = 1
    ) {
        precondition(count >= 0 && dst.count >= count, "decode: destination too small")
        guard let d = dst.baseAddress, count > 0 else { return }
        let n = count
        let scaled = scale != 1
        switch dtype {
        case .float32:
            UnsafeMutableRawPointer(d).copyMemory(from: src, byteCount: 4 * n)
            if scaled { for i in 0..<n { d[i] *= scale } }
        case .float16:
            let s = src.assumingMemoryBound(to: UInt16.self)
            if scaled { remat_f16_to_f32_scaled(s, d, n, scale) } else { remat_f16_to_f32(s, d, n) }
        case .bfloat16:
            let s = src.assumingMemoryBound(to: UInt16.self)
            if scaled { remat_bf16_to_f32_scaled(s, d, n, scale) } else { remat_bf16_to_f32(s, d, n) }
        case .float8E4M3FN:
            let s = src.assumingMemoryBound(to: UInt8.self)
            if scaled { remat_e4m3fn_to_f32_scaled(s, d, n, scale) } else { remat_e4m3fn_to_f32(s, d, n) }
        case .float8E5M2:
            let s = src.assumingMemoryBound(to: UInt8.self)
            if scaled { remat_e5m2_to_f32_scaled(s, d, n, scale) } else { remat_e5m2_to_f32(s, d, n) }
        case .int8:
            let s = src.assumingMemoryBound(to: Int8.self)
            if scaled { remat_i8_to_f32_scaled(s, d, n, scale) } else { remat_i8_to_f32(s, d, n) }
        case .int32:
            for i in 0..<n { d[i] = Float(src.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)) * scale }
        case .int64:
            for i in 0..<n { d[i] = Float(src.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self)) * scale }
        }
    }
}
