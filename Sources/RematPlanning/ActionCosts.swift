import Synchronization

/// What the actions other than keep and recompute cost on this machine, measured when a step is
/// captured: each codec's encode and decode rate (bytes of the float32 tensor per second, the
/// loops of ``CodecBenchmark`` on a tensor of `elements` values with the step's threads), and
/// the spill store's rates when offload is planned (``SpillCosts``).
///
/// The simulator charges a compressed tensor `bytes / encode` in the forward and `bytes / decode`
/// in the backward, on the critical path: the codec loops use every thread the step uses, so
/// nothing else runs meanwhile.
public struct ActionCosts: Sendable, Hashable, Codable {
    public struct CodecRate: Sendable, Hashable, Codable {
        public var encode_gbps: Double
        public var decode_gbps: Double
        public init(encode_gbps: Double, decode_gbps: Double) {
            self.encode_gbps = encode_gbps
            self.decode_gbps = decode_gbps
        }
    }

    /// Rates by codec spelling (``Codec/description``).
    public var codecs: [String: CodecRate]
    /// Values per tensor the rates were measured on.
    public var elements: Int
    public var threads: Int

    public init(codecs: [String: CodecRate], elements: Int, threads: Int) {
        self.codecs = codecs
        self.elements = elements
        self.threads = threads
    }

    /// Measures every codec but `none` (median of `reps` interleaved runs each).
    public static func measure(elements: Int = 1 << 20, reps: Int = 5) -> ActionCosts {
        let result = CodecBenchmark.run(codecs: Codec.all.filter { $0 != .none }, elements: elements, reps: reps)
        var rates: [String: CodecRate] = [:]
        for row in result.codecs { rates[row.codec] = CodecRate(encode_gbps: row.encode_gbps, decode_gbps: row.decode_gbps) }
        return ActionCosts(codecs: rates, elements: elements, threads: result.threads)
    }

    /// ``measure(elements:reps:)`` once per process and thread count (the machine does not change
    /// between captures; the measurement takes a tenth of a second).
    public static func measuredOnce() -> ActionCosts {
        let threads = Runtime.threads
        if let c = cache.withLock({ $0[threads] }) { return c }
        let c = measure()
        cache.withLock { $0[threads] = c }
        return c
    }
    private static let cache = Mutex<[Int: ActionCosts]>([:])

    /// Seconds to encode and to decode `bytes` of float32 with `codec` (nil: not measured).
    public func seconds(_ codec: Codec, bytes: Int) -> (encode: Double, decode: Double)? {
        guard let r = codecs[codec.description], r.encode_gbps > 0, r.decode_gbps > 0 else { return nil }
        return (Double(bytes) / (r.encode_gbps * 1e9), Double(bytes) / (r.decode_gbps * 1e9))
    }
}
