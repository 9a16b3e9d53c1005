import Synchronization

/// What the actions other than keep and recompute cost on this machine, measured when a step is
/// captured: each codec's encode and decode rate (bytes of the float32 tensor per second, the
/// loops of ``CodecBenchmark`` on a tensor of `elements` values with the step's threads), and
/// the spill store's rates when offload is planned (``SpillCosts``).
///
/// The simulator charges a compressed tensor `bytes / encode` in the forward and `bytes / decode`
/// in the backward, on the critical path: the codec loops use every thread the step uses, so
/// nothing else runs meanwhile. An offloaded tensor's file is written and read by the spill
/// store's I/O thread beside the step; the simulator runs that thread on its own clock
/// (``SpillRate``) and charges the step its waits and ``SpillRate/interference`` of the I/O
/// done beside compute.
public struct ActionCosts: Sendable, Hashable, Codable {
    /// The spill store on this machine: write and read GB/s of a file of `bytes` (flushed and
    /// dropped from the page cache; read cold, checksum included), the latency of one file
    /// (half a 4 KiB round trip), how it shares the cores with compute
    /// (``SpillMeasurement/sharing(in:bytes:rates:reps:work:)`` with the step's threads: I/O
    /// seconds done per compute second beside it, `overlap`, and compute seconds lost per I/O
    /// second, `interference`), and the store settings a plan runs with.
    public struct SpillRate: Sendable, Hashable, Codable {
        public var write_gbps: Double
        public var read_gbps: Double
        public var latency_seconds: Double
        public var overlap: Double
        public var interference: Double
        public var bytes: Int
        /// ``SpillStore/maximumBytesInFlight``, ``SpillStore/readAheadTensors`` and
        /// ``ActivationOffload/minimumBytes`` of the store plans are applied with.
        public var max_bytes_in_flight: Int
        public var read_ahead: Int
        public var minimum_bytes: Int

        public init(write_gbps: Double, read_gbps: Double, latency_seconds: Double, overlap: Double, interference: Double, bytes: Int,
                    max_bytes_in_flight: Int = 64 << 20, read_ahead: Int = 2, minimum_bytes: Int = 1 << 16) {
            self.write_gbps = write_gbps
            self.read_gbps = read_gbps
            self.latency_seconds = latency_seconds
            self.overlap = overlap
            self.interference = interference
            self.bytes = bytes
            self.max_bytes_in_flight = max_bytes_in_flight
            self.read_ahead = read_ahead
            self.minimum_bytes = minimum_bytes
        }

        /// Seconds the I/O thread takes to write and to read `bytes`.
        public func writeSeconds(_ bytes: Int) -> Double { latency_seconds + Double(bytes) / (write_gbps * 1e9) }
        public func readSeconds(_ bytes: Int) -> Double { latency_seconds + Double(bytes) / (read_gbps * 1e9) }
    }
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
    /// The spill store's rates (nil: not measured, as in a profile written before offload was
    /// planned, or where no spill directory could be made: offload is not planned).
    public var spill: SpillRate? = nil

    public init(codecs: [String: CodecRate], elements: Int, threads: Int, spill: SpillRate? = nil) {
        self.codecs = codecs
        self.elements = elements
        self.threads = threads
        self.spill = spill
    }

    /// Measures the spill store in the system's temporary directory: 4 MiB files, medians of 3
    /// round trips, and its interference with float32 GEMMs on the step's threads (nil when the
    /// store cannot be made or a round trip fails).
    public static func measureSpill(bytes: Int = 4 << 20, reps: Int = 3) -> SpillRate? {
        guard let m = try? SpillMeasurement.run(bytes: bytes, reps: reps) else { return nil }
        let a = Tensor.randn([384, 384], generator: RandomGenerator(seed: 9))
        let work = { for _ in 0..<24 { withExtendedLifetime(matmul(a, a)) {} } }
        guard let shared = try? SpillMeasurement.sharing(bytes: bytes, rates: m, reps: reps, work: work) else { return nil }
        return SpillRate(write_gbps: m.write_gbps, read_gbps: m.read_gbps, latency_seconds: m.small_round_trip_ms / 2000,
                         overlap: shared.overlap, interference: shared.interference, bytes: m.bytes)
    }

    /// Measures every codec but `none` (median of `reps` interleaved runs each).
    public static func measure(elements: Int = 1 << 20, reps: Int = 5) -> ActionCosts {
        let result = CodecBenchmark.run(codecs: Codec.all.filter { $0 != .none }, elements: elements, reps: reps)
        var rates: [String: CodecRate] = [:]
        for row in result.codecs { rates[row.codec] = CodecRate(encode_gbps: row.encode_gbps, decode_gbps: row.decode_gbps) }
        return ActionCosts(codecs: rates, elements: elements, threads: result.threads, spill: measureSpill())
    }

    /// ``measure(elements:reps:)`` once per process and thread count (the machine does not change
    /// between captures; the measurement takes under a second).
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
