/// The element types a tensor's storage can hold.
///
/// Compute happens in `float32`; `int32`/`int64` hold indices (token ids, targets);
/// `float16`, `bfloat16`, `float8E4M3FN`, `float8E5M2` and `int8` are *storage* types
/// used to pack saved activations and weights. Conversions to and from `Float` live in
/// `DTypeConversion.swift` (round-to-nearest-even; FP8 saturating as the OCP spec says).
public enum DType: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case float32
    case float16
    case bfloat16
    /// OCP FP8 E4M3 "fn": finite-only, no infinities, NaN = S.1111.111, max ±448.
    case float8E4M3FN
    /// OCP FP8 E5M2: IEEE-like, has ±inf and NaNs, max ±57344.
    case float8E5M2
    case int8
    case int32
    case int64

    /// Bytes per element.
    public var byteSize: Int {
        switch self {
        case .float32, .int32: return 4
        case .float16, .bfloat16: return 2
        case .float8E4M3FN, .float8E5M2, .int8: return 1
        case .int64: return 8
        }
    }

    /// Whether values of this type are floating point (and so can carry gradients once converted).
    public var isFloatingPoint: Bool {
        switch self {
        case .float32, .float16, .bfloat16, .float8E4M3FN, .float8E5M2: return true
        case .int8, .int32, .int64: return false
        }
    }

    /// The safetensors spelling of the type ("F32", "BF16", "F8_E4M3", ...).
    public var safetensorsName: String {
        switch self {
        case .float32: return "F32"
        case .float16: return "F16"
        case .bfloat16: return "BF16"
        case .float8E4M3FN: return "F8_E4M3"
        case .float8E5M2: return "F8_E5M2"
        case .int8: return "I8"
        case .int32: return "I32"
        case .int64: return "I64"
        }
    }

    public var description: String { rawValue }
}
