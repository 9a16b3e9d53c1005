import CRematKernels
import Synchronization

/// A way to store a saved float32 tensor in fewer bytes until backward reads it.
///
/// `pack` encodes a tensor into a ``PackedTensor`` and ``PackedTensor/unpack(label:)``
/// gives backward a float32 tensor of the original shape back. Lossless codecs give back exactly
/// what backward reads (bitwise); lossy ones state their error bound per element below, where
/// `x` is the value saved and `x̂` the value backward gets. The byte count of a packed tensor is
/// known before packing (``packedByteCount(shape:)``): the planner prices a codec with the same
/// function that sizes its buffers.
///
/// Non-finite inputs: every codec says what NaN and ±inf become; ``PackedTensor/saturated``
/// counts the elements a codec could not represent (clipped to the largest code or replaced).
/// The loops run in C (`Sources/CRematKernels/codec.c`), compiled per ISA with run-time
/// dispatch, split over threads; every ISA version gives the same bits.
public enum Codec: Sendable, Hashable, CustomStringConvertible {
    /// Keep the tensor as it is (4 bytes per element).
    case none
    /// bfloat16, round to nearest even (2 bytes per element): `|x̂ − x| ≤ 2⁻⁸·|x|` for
    /// `|x| ≥ 2⁻¹²⁶`, `≤ 2⁻¹³⁴` below (bfloat16 has float32's exponent range). NaN stays NaN,
    /// ±inf stays ±inf; only `|x| ≥ 0x1.FFp127` overflows to ±inf (counted as saturated).
    case bf16
    /// IEEE float16, round to nearest even, no scaling (2 bytes per element):
    /// `|x̂ − x| ≤ 2⁻¹¹·|x|` for `2⁻¹⁴ ≤ |x| < 65520`, `≤ 2⁻²⁵` below; `|x| ≥ 65520` becomes ±inf
    /// (counted as saturated). NaN stays NaN, ±inf stays ±inf.
    case fp16
    /// OCP FP8 E4M3FN (1 byte per element) scaled by a power of two `2ᵏ` per tensor or per group
    /// (1 more byte per group), k the largest with `amax·2ᵏ ≤ 448` (amax over the group's finite
    /// values): `|x̂ − x| ≤ max(2⁻⁴·|x|, 2⁻¹⁰·2⁻ᵏ)` (2⁻⁴: half an ulp of 3 mantissa bits; 2⁻¹⁰:
    /// half the subnormal spacing 2⁻⁹, in scaled units). Saturating: ±inf becomes ±448·2⁻ᵏ
    /// (counted); NaN stays NaN. Scales are exact powers of two, so the only rounding is FP8's
    /// (a decoded value below float32's normal range rounds once more, to float32's subnormal grid).
    case fp8E4M3(FP8Scaling)
    /// OCP FP8 E5M2, as ``fp8E4M3(_:)`` with `amax·2ᵏ ≤ 57344`:
    /// `|x̂ − x| ≤ max(2⁻³·|x|, 2⁻¹⁷·2⁻ᵏ)`. Saturating (±inf → ±57344·2⁻ᵏ, counted); NaN stays NaN.
    case fp8E5M2(FP8Scaling)
    /// int8, symmetric, one float32 scale per row of the last dimension (`scale = amax/127`, amax
    /// over the row's finite values; 1 byte per element + 4 per row):
    /// `|x̂ − x| ≤ amax·(1/254 + 2⁻²⁰)` for finite `x`. int8 has no NaN or inf: NaN becomes 0,
    /// ±inf becomes ±amax (both counted as saturated).
    case int8
    /// Lossless for ReLU's saved output, 1 bit per element: the bit says whether ReLU's backward
    /// passes the gradient through (`!(y ≤ 0)`: y > 0, or NaN). Unpacks to 1 where set and 0
    /// elsewhere — what ReLU's backward reads, not the output itself, so it applies only to
    /// ReLU's own saved output (``applies(to:)``).
    case reluMask
    /// Lossless for masks, 1 bit per element: packs only a tensor whose every element is +0.0 or
    /// 1.0 (checked when packing; any other value, −0.0 included, and ``pack(_:label:)`` gives nil
    /// and the tensor stays as it is).
    case bits
    /// Lossless for causal attention probabilities: a tensor whose last two dimensions are square
    /// (T × T) and whose elements above the diagonal are all +0.0 (checked when packing; otherwise
    /// ``pack(_:label:)`` gives nil and the tensor stays as it is) keeps only its lower triangle,
    /// T(T+1)/2 of T² float32 elements per matrix. Unpacks bitwise (zeros above the diagonal).
    case causal
    /// ``causal`` with the lower triangle in bfloat16: ``bf16``'s bound below and on the diagonal,
    /// exact zeros above (T(T+1) bytes per matrix).
    case causalBF16

    /// How FP8 codecs choose their power-of-two scale.
    public enum FP8Scaling: Sendable, Hashable {
        /// One scale for the whole tensor.
        case perTensor
        /// One scale per run of this many consecutive elements (the last run may be shorter).
        case perGroup(Int)
    }

    /// Every codec with its default parameters, in the order tables list them.
    public static let all: [Codec] = [.none, .bf16, .fp16, .fp8E4M3(.perTensor), .fp8E4M3(.perGroup(128)),
                                      .fp8E5M2(.perTensor), .fp8E5M2(.perGroup(128)), .int8, .reluMask, .bits, .causal, .causalBF16]

    /// Whether backward gets bitwise what it would have read from the tensor itself.
    public var isLossless: Bool {
        switch self {
        case .none, .reluMask, .bits, .causal: return true
        case .bf16, .fp16, .fp8E4M3, .fp8E5M2, .int8, .causalBF16: return false
        }
    }

    /// The command-line spelling: `none`, `bf16`, `fp16`, `fp8-e4m3`, `fp8-e4m3/g128` (per group
    /// of 128), `fp8-e5m2`, `fp8-e5m2/gN`, `int8`, `relu-mask`, `bits`, `causal`, `causal-bf16`.
    public var description: String {
        switch self {
        case .none: return "none"
        case .bf16: return "bf16"
        case .fp16: return "fp16"
        case .fp8E4M3(let s): return "fp8-e4m3" + s.suffix
        case .fp8E5M2(let s): return "fp8-e5m2" + s.suffix
        case .int8: return "int8"
        case .reluMask: return "relu-mask"
        case .bits: return "bits"
        case .causal: return "causal"
        case .causalBF16: return "causal-bf16"
        }
    }

    /// Most elements a group may hold (beyond any tensor worth grouping).
    public static let maximumGroupSize = 1 << 24

    /// Parses the command-line spelling (``description``).
    public static func parse(_ text: String) throws(CodecError) -> Codec {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        let base = parts[0]
        var scaling = FP8Scaling.perTensor
        if parts.count == 2 {
            guard base == "fp8-e4m3" || base == "fp8-e5m2" else {
                throw .badParameter(codec: text, reason: "only the FP8 codecs take a group size (fp8-e4m3/g128)")
            }
            let g = parts[1]
            guard g.hasPrefix("g"), let size = Int(g.dropFirst()), size >= 1, size <= maximumGroupSize else {
                throw .badParameter(codec: text, reason: "the group size is gN with N a whole number from 1 to \(maximumGroupSize), got '\(g)'")
            }
            scaling = .perGroup(size)
        }
        switch base {
        case "none": return .none
        case "bf16": return .bf16
        case "fp16": return .fp16
        case "fp8-e4m3": return .fp8E4M3(scaling)
        case "fp8-e5m2": return .fp8E5M2(scaling)
        case "int8": return .int8
        case "relu-mask": return .reluMask
        case "bits": return .bits
        case "causal": return .causal
        case "causal-bf16": return .causalBF16
        default: throw .unknown(text)
        }
    }

    /// Whether this codec may pack the saved tensor `info` describes: float32, not a parameter;
    /// for ``reluMask`` ReLU's own saved output; for ``causal`` and ``causalBF16`` square last
    /// two dimensions.
    public func applies(to info: SavedTensorInfo) -> Bool {
        guard info.dtype == .float32, !info.isParameter else { return false }
        switch self {
        case .reluMask: return info.op == OpKind.relu.rawValue && info.isOutput
        case .causal, .causalBF16: return info.shape.count >= 2 && info.shape[info.shape.count - 1] == info.shape[info.shape.count - 2]
        default: return true
        }
    }

    /// Whether ``pack(_:label:)`` packs `tensor` (its values, for the codecs that depend on them:
    /// ``bits`` needs every element +0.0 or 1.0, ``causal`` and ``causalBF16`` zeros above every
    /// diagonal; one pass over the values, with the checks ``pack(_:label:)`` makes); true for
    /// every other codec on a float32 tensor.
    public func packs(_ tensor: Tensor) -> Bool {
        guard tensor.dtype == .float32 else { return false }
        switch self {
        case .bits, .causal, .causalBF16:
            let t = tensor.isContiguous ? tensor : tensor.contiguousCopy()
            let src = UnsafePointer(t.floatPointer), n = t.count
            if self == .bits {
                let other = Atomic<Int>(0)
                parallelChunks(n, grain: elementwiseGrain) { lo, hi in other.add(remat_count_not_binary(src, lo, hi), ordering: .relaxed) }
                return other.load(ordering: .relaxed) == 0
            }
            guard t.rank >= 2, t.shape[t.rank - 1] == t.shape[t.rank - 2] else { return false }
            let side = t.shape[t.rank - 1]
            let rows = side == 0 ? 0 : n / side
            let nonzero = Atomic<Int>(0)
            parallelChunks(rows, grain: max(1, elementwiseGrain / max(side, 1))) { lo, hi in
                nonzero.add(remat_tri_count_nonzero_upper(src, side, lo, hi), ordering: .relaxed)
            }
            return nonzero.load(ordering: .relaxed) == 0
        default: return true
        }
    }

    /// Lower-triangle elements of a tensor whose last two dimensions are T × T.
    static func triangleCount(_ shape: [Int]) -> Int {
        guard shape.count >= 2, let t = shape.last, t > 0 else { return 0 }
        return ShapeRules.count(shape) / (t * t) * (t * (t + 1) / 2)
    }

    /// Bytes a tensor of `shape` takes packed (exact; ``bits`` assumes it packs).
    public func packedByteCount(shape: [Int]) -> Int {
        let n = ShapeRules.count(shape)
        switch self {
        case .none: return 4 * n
        case .bf16, .fp16: return 2 * n
        case .fp8E4M3(let s), .fp8E5M2(let s): return n + s.groupCount(n)
        case .int8: return n + 4 * Self.rowCount(shape)
        case .reluMask, .bits: return (n + 7) / 8
        case .causal: return 4 * Self.triangleCount(shape)
        case .causalBF16: return 2 * Self.triangleCount(shape)
        }
    }

    /// Rows of the last dimension (one for a scalar or a vector).
    static func rowCount(_ shape: [Int]) -> Int {
        guard let last = shape.last else { return 1 }
        return last == 0 ? 0 : ShapeRules.count(shape) / last
    }

    /// Packs `tensor` (float32, any layout). Nil only for ``bits`` when some element is neither
    /// +0.0 nor 1.0, and for ``causal`` / ``causalBF16`` when the tensor is not square in its last
    /// two dimensions or has a nonzero above a diagonal. The packed parts are new temporaries (a saved-tensor slot that keeps them
    /// counts them as activations).
    public func pack(_ tensor: Tensor, label: String = "packed") -> PackedTensor? {
        precondition(tensor.dtype == .float32, "Codec.pack: \(self) packs float32 tensors, got \(tensor.dtype) (shape \(tensor.shape))")
        let source = tensor.isContiguous ? tensor : tensor.contiguousCopy()
        let n = source.count
        let src = source.floatPointer
        let saturated = Atomic<Int>(0)
        func part(_ count: Int, _ dtype: DType, _ suffix: String) -> Tensor {
            Tensor(uninitializedShape: [count], dtype: dtype, label: "\(label).\(suffix)")
        }
        switch self {
        case .none:
            let data = part(n, .float32, "data")
            let (to, from) = (data.rawPointer, source.rawPointer)
            parallelChunks(4 * n, grain: 4 * elementwiseGrain) { lo, hi in (to + lo).copyMemory(from: from + lo, byteCount: hi - lo) }
            return PackedTensor(codec: self, shape: tensor.shape, parts: [data], saturated: 0)
        case .bf16, .fp16:
            let data = part(n, self == .bf16 ? .bfloat16 : .float16, "data")
            let dst = data.rawPointer.assumingMemoryBound(to: UInt16.self)
            let bf16 = self == .bf16
            parallelChunks(n, grain: elementwiseGrain) { lo, hi in
                let c = bf16 ? remat_f32_to_bf16_counted(src, dst, lo, hi) : remat_f32_to_f16_counted(src, dst, lo, hi)
                saturated.add(c, ordering: .relaxed)
            }
            return PackedTensor(codec: self, shape: tensor.shape, parts: [data], saturated: saturated.load(ordering: .relaxed))
        case .fp8E4M3(let s), .fp8E5M2(let s):
            let e4m3 = if case .fp8E4M3 = self { true } else { false }
            let group = s.groupSize(n)
            let groups = s.groupCount(n)
            let data = part(n, e4m3 ? .float8E4M3FN : .float8E5M2, "data")
            let exps = part(groups, .int8, "exponents")
            let pe = exps.rawPointer.assumingMemoryBound(to: Int8.self)
            let pd = data.rawPointer.assumingMemoryBound(to: UInt8.self)
            let fmax: Float = e4m3 ? 448 : 57344
            if case .perTensor = s {
                // Two passes over the whole tensor, each split over threads: amax, then encode.
                let amax = Mutex<Float>(0)
                parallelChunks(n, grain: elementwiseGrain) { lo, hi in
                    let m = remat_absmax_finite_f32(src, lo, hi)
                    amax.withLock { $0 = max($0, m) }
                }
                if groups > 0 { pe[0] = remat_fp8_exponent(amax.withLock { $0 }, fmax) }
                let k = groups > 0 ? Int32(pe[0]) : 0
                parallelChunks(n, grain: elementwiseGrain) { lo, hi in
                    let c = e4m3 ? remat_f32_to_e4m3fn_pow2(src, pd, lo, hi, k) : remat_f32_to_e5m2_pow2(src, pd, lo, hi, k)
                    saturated.add(c, ordering: .relaxed)
                }
            } else {
                // One pass: each group's amax and encoding while the group is in cache.
                parallelChunks(groups, grain: max(1, elementwiseGrain / group)) { lo, hi in
                    let c = e4m3 ? remat_f32_to_e4m3fn_grouped(src, pd, pe, n, group, lo, hi)
                                 : remat_f32_to_e5m2_grouped(src, pd, pe, n, group, lo, hi)
                    saturated.add(c, ordering: .relaxed)
                }
            }
            return PackedTensor(codec: self, shape: tensor.shape, parts: [data, exps], saturated: saturated.load(ordering: .relaxed))
        case .int8:
            let rows = Self.rowCount(tensor.shape)
            let cols = rows == 0 ? 0 : n / rows
            let data = part(n, .int8, "data")
            let scales = part(rows, .float32, "scales")
            let pd = data.rawPointer.assumingMemoryBound(to: Int8.self)
            let ps = scales.floatPointer
            parallelChunks(rows, grain: max(1, elementwiseGrain / max(cols, 1))) { lo, hi in
                saturated.add(remat_f32_to_i8_rows(src, pd, ps, cols, lo, hi), ordering: .relaxed)
            }
            return PackedTensor(codec: self, shape: tensor.shape, parts: [data, scales], saturated: saturated.load(ordering: .relaxed))
        case .causal, .causalBF16:
            guard tensor.rank >= 2, tensor.shape[tensor.rank - 1] == tensor.shape[tensor.rank - 2] else { return nil }
            let t = tensor.shape[tensor.rank - 1]
            let rows = t == 0 ? 0 : n / t
            let grain = max(1, elementwiseGrain / max(t, 1))
            let nonzero = Atomic<Int>(0)
            parallelChunks(rows, grain: grain) { lo, hi in nonzero.add(remat_tri_count_nonzero_upper(src, t, lo, hi), ordering: .relaxed) }
            if nonzero.load(ordering: .relaxed) > 0 { return nil }
            let count = Self.triangleCount(tensor.shape)
            if self == .causal {
                let data = part(count, .float32, "triangle")
                let pd = data.floatPointer
                parallelChunks(rows, grain: grain) { lo, hi in remat_tri_pack_f32(src, pd, t, lo, hi) }
                return PackedTensor(codec: self, shape: tensor.shape, parts: [data], saturated: 0)
            }
            let data = part(count, .bfloat16, "triangle")
            let pd = data.rawPointer.assumingMemoryBound(to: UInt16.self)
            parallelChunks(rows, grain: grain) { lo, hi in saturated.add(remat_tri_pack_bf16(src, pd, t, lo, hi), ordering: .relaxed) }
            return PackedTensor(codec: self, shape: tensor.shape, parts: [data], saturated: saturated.load(ordering: .relaxed))
        case .reluMask, .bits:
            if self == .bits {
                let other = Atomic<Int>(0)
                parallelChunks(n, grain: elementwiseGrain) { lo, hi in
                    other.add(remat_count_not_binary(src, lo, hi), ordering: .relaxed)
                }
                if other.load(ordering: .relaxed) > 0 { return nil }
            }
            let bytes = (n + 7) / 8
            let data = part(bytes, .int8, "bits")
            let pb = data.rawPointer.assumingMemoryBound(to: UInt8.self)
            let relu = self == .reluMask
            parallelChunks(bytes, grain: elementwiseGrain / 8) { lo, hi in
                if relu { remat_pack_positive_bits(src, pb, n, lo, hi) } else { remat_pack_binary_bits(src, pb, n, lo, hi) }
            }
            return PackedTensor(codec: self, shape: tensor.shape, parts: [data], saturated: 0)
        }
    }
}

extension Codec.FP8Scaling {
    var suffix: String {
        switch self {
        case .perTensor: return ""
        case .perGroup(let g): return "/g\(g)"
        }
    }
    /// Elements per group for a tensor of `n` elements (a whole tensor is one group).
    func groupSize(_ n: Int) -> Int {
        switch self {
        case .perTensor: return max(n, 1)
        case .perGroup(let g): return g
        }
    }
    func groupCount(_ n: Int) -> Int { n == 0 ? 0 : (n + groupSize(n) - 1) / groupSize(n) }
}

/// A codec's error on a bad spelling.
public enum CodecError: Error, CustomStringConvertible, Equatable, Sendable {
    case unknown(String)
    case badParameter(codec: String, reason: String)
    /// A bad `WHERE` of a compression rule (`bf16:WHERE`).
    case badSelector(String, reason: String)
    public var description: String {
        switch self {
        case .unknown(let s):
            return "unknown codec '\(s)'; use none, bf16, fp16, fp8-e4m3[/gN], fp8-e5m2[/gN], int8, relu-mask, bits, causal, causal-bf16"
        case .badParameter(let c, let reason):
            return "codec '\(c)': \(reason)"
        case .badSelector(let w, let reason):
            return "selector '\(w)': \(reason)"
        }
    }
}

/// A tensor in a codec's packed form: its parts (codes, then scales or exponents where the codec
/// has them) and what it needs to give the float32 tensor back.
public final class PackedTensor: PackedSavedTensor, @unchecked Sendable {
    public let codec: Codec
    /// The shape of the tensor that was packed (and that ``unpack(label:)`` gives back).
    public let shape: [Int]
    /// The packed storage: codes first, then the per-group exponents (FP8) or per-row scales (int8).
    public let parts: [Tensor]
    /// Elements the codec could not represent (clipped to its largest code, or NaN/inf replaced;
    /// see each codec).
    public let saturated: Int

    init(codec: Codec, shape: [Int], parts: [Tensor], saturated: Int) {
        self.codec = codec
        self.shape = shape
        self.parts = parts
        self.saturated = saturated
    }

    /// Bytes the packed form takes (equals ``Codec/packedByteCount(shape:)``).
    public var byteCount: Int { parts.reduce(0) { $0 + $1.byteCount } }

    /// Slots sharing this packed form (tensors saved from one storage) that have not unpacked it
    /// yet, and the decoded tensor kept for them: the first unpack decodes, the others get the
    /// same tensor (backward never writes into what it reads), the last lets it go.
    private var pendingUnpacks = 0
    private var decoded: Tensor? = nil

    /// Counts one more slot that will unpack this packed form.
    func addSharer() { pendingUnpacks += 1 }

    /// The float32 tensor for one of the slots sharing this form (``addSharer()``), decoded once
    /// for all of them.
    func unpackShared(label: String) -> Tensor {
        let t = decoded ?? unpack(label: label)
        pendingUnpacks -= 1
        decoded = pendingUnpacks > 0 ? t : nil
        return t
    }

    /// The float32 tensor backward reads, in new contiguous storage (a temporary).
    public func unpack(label: String = "unpacked") -> Tensor {
        let out = Tensor(uninitializedShape: shape, label: label)
        let n = out.count
        guard n > 0 else { return out }
        let dst = out.floatPointer
        let data = parts[0]
        switch codec {
        case .none:
            let (to, from) = (out.rawPointer, data.rawPointer)
            parallelChunks(4 * n, grain: 4 * elementwiseGrain) { lo, hi in (to + lo).copyMemory(from: from + lo, byteCount: hi - lo) }
        case .bf16, .fp16:
            let src = data.rawPointer.assumingMemoryBound(to: UInt16.self)
            let bf16 = codec == .bf16
            parallelChunks(n, grain: elementwiseGrain) { lo, hi in
                if bf16 { remat_bf16_to_f32(src + lo, dst + lo, hi - lo) } else { remat_f16_to_f32(src + lo, dst + lo, hi - lo) }
            }
        case .fp8E4M3(let s), .fp8E5M2(let s):
            let e4m3 = if case .fp8E4M3 = codec { true } else { false }
            let group = s.groupSize(n)
            let src = data.rawPointer.assumingMemoryBound(to: UInt8.self)
            let pe = parts[1].rawPointer.assumingMemoryBound(to: Int8.self)
            if case .perTensor = s {
                let k = Int32(pe[0])
                parallelChunks(n, grain: elementwiseGrain) { lo, hi in
                    if e4m3 { remat_e4m3fn_to_f32_pow2(src, dst, lo, hi, k) } else { remat_e5m2_to_f32_pow2(src, dst, lo, hi, k) }
                }
            } else {
                parallelChunks(s.groupCount(n), grain: max(1, elementwiseGrain / group)) { lo, hi in
                    if e4m3 { remat_e4m3fn_to_f32_grouped(src, dst, pe, n, group, lo, hi) }
                    else { remat_e5m2_to_f32_grouped(src, dst, pe, n, group, lo, hi) }
                }
            }
        case .int8:
            let rows = Codec.rowCount(shape)
            let cols = n / rows
            let src = data.rawPointer.assumingMemoryBound(to: Int8.self)
            let ps = parts[1].floatPointer
            parallelChunks(rows, grain: max(1, elementwiseGrain / max(cols, 1))) { lo, hi in
                remat_i8_to_f32_rows(src, dst, ps, cols, lo, hi)
            }
        case .reluMask, .bits:
            let src = data.rawPointer.assumingMemoryBound(to: UInt8.self)
            parallelChunks(n, grain: elementwiseGrain) { lo, hi in remat_unpack_bits_f32(src, dst, lo, hi) }
        case .causal, .causalBF16:
            let t = shape[shape.count - 1]
            let rows = n / t
            let grain = max(1, elementwiseGrain / t)
            if codec == .causal {
                let src = data.floatPointer
                parallelChunks(rows, grain: grain) { lo, hi in remat_tri_unpack_f32(src, dst, t, lo, hi) }
            } else {
                let src = data.rawPointer.assumingMemoryBound(to: UInt16.self)
                parallelChunks(rows, grain: grain) { lo, hi in remat_tri_unpack_bf16(src, dst, t, lo, hi) }
            }
        }
        return out
    }
}
