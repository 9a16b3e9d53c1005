import Foundation

/// The codec benchmark behind `remat bench codecs`: encode and decode throughput of every saved
/// tensor codec beside a memcpy of the same float32 bytes, measured interleaved in one run
/// (medians). The planner prices a codec from these figures.
public enum CodecBenchmark {
    public struct Row: Codable, Sendable {
        /// The codec's spelling (`bf16`, `fp8-e4m3/g128`, …).
        public var codec: String
        public var lossless: Bool
        /// Packed bytes per float32 byte (e.g. 0.5 for bf16).
        public var packed_ratio: Double
        /// Float32 bytes packed per second, GB/s (1e9): the tensor's size over the time to pack it.
        public var encode_gbps: Double
        /// Float32 bytes given back per second, GB/s.
        public var decode_gbps: Double
        /// memcpy of the same float32 bytes, GB/s (bytes copied per second), measured alongside.
        public var memcpy_gbps: Double
    }
    public struct Result: Codable, Sendable {
        public var threads: Int
        public var elements: Int
        public var codecs: [Row]
    }

    /// Packs and unpacks a tensor of `elements` standard-normal values (a 0/1 mask for `bits`, a
    /// stack of causal 256 × 256 matrices for `causal` and `causal-bf16`) with
    /// each codec, `reps` interleaved repetitions of encode, decode and memcpy. The tensor is
    /// rows of 1024 when `elements` is a multiple of 1024 (int8 scales each row), else one row.
    public static func run(codecs: [Codec] = Codec.all, elements: Int, reps: Int) -> Result {
        let shape = elements % 1024 == 0 ? [elements / 1024, 1024] : [elements]
        let x = Tensor.randn(shape, generator: RandomGenerator(seed: 1))
        let mask = Tensor(x.toArray().map { $0 > 0 ? 1 : 0 }, shape: shape)
        let bytes = Double(4 * elements)
        let copyTarget = Tensor.zeros([elements])
        let (ps, pd) = (x.rawPointer, copyTarget.rawPointer)
        func copy() {
            parallelChunks(4 * elements, grain: 1 << 20) { lo, hi in _ = memcpy(pd + lo, ps + lo, hi - lo) }
        }
        // Causal attention probabilities for the triangle codecs: matrices of 256 × 256 with zeros
        // above the diagonal (those rows are left out when `elements` is not a multiple of 256²).
        let t = 256
        let causal: Tensor? = elements % (t * t) == 0 ? {
            var v = x.toArray()
            for i in v.indices where i % t > (i / t) % t { v[i] = 0 }
            return Tensor(v, shape: [elements / (t * t), t, t])
        }() : nil
        let usable = codecs.filter { ($0 != .causal && $0 != .causalBF16) || causal != nil }
        let rows = usable.map { codec -> Row in
            let input = codec == .bits ? mask : (codec == .causal || codec == .causalBF16) ? causal! : x
            var packed = codec.pack(input)!
            _ = packed.unpack()
            copy()
            var enc: [Double] = [], dec: [Double] = [], mc: [Double] = []
            for _ in 0..<reps {
                var t0 = monotonicSeconds()
                packed = codec.pack(input)!
                enc.append(bytes / (monotonicSeconds() - t0) / 1e9)
                t0 = monotonicSeconds()
                let back = packed.unpack()
                dec.append(bytes / (monotonicSeconds() - t0) / 1e9)
                withExtendedLifetime(back) {}
                t0 = monotonicSeconds()
                copy()
                mc.append(bytes / (monotonicSeconds() - t0) / 1e9)
            }
            return Row(codec: codec.description, lossless: codec.isLossless,
                       packed_ratio: Double(packed.byteCount) / bytes,
                       encode_gbps: median(enc), decode_gbps: median(dec), memcpy_gbps: median(mc))
        }
        return Result(threads: Runtime.threads, elements: elements, codecs: rows)
    }
}
