import CRematBLAS
import Dispatch
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Monotonic wall-clock time in seconds.
public func monotonicSeconds() -> Double {
    Double(DispatchTime.now().uptimeNanoseconds) * 1e-9
}

/// Median of a non-empty list.
public func median(_ values: [Double]) -> Double {
    precondition(!values.isEmpty, "median: no values")
    let s = values.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

/// The kernel benchmark behind `remat bench kernels`: engine matmul beside the GEMM library
/// called raw on the same buffers, and elementwise / LayerNorm / softmax throughput beside a plain
/// memcpy of the same bytes. Every pair is measured interleaved in the same run (the machine is
/// shared and noisy) and reported as medians.
public enum KernelBenchmark {
    public struct MatmulRow: Codable, Sendable {
        public var n: Int
        public var gflops: Double
        public var blas_gflops: Double
    }
    public struct ElementwiseRow: Codable, Sendable {
        public var name: String
        /// Bytes read + written per second by the engine op, GB/s (1e9).
        public var gbps: Double
        /// Bytes read + written per second by memcpy over the same traffic, GB/s.
        public var memcpy_gbps: Double
    }
    public struct Result: Codable, Sendable {
        public var threads: Int
        public var blas: String
        /// The GEMM autocast's bf16 products run (``Runtime/bfloat16GemmPath``).
        public var bf16_gemm: String
        public var matmul: [MatmulRow]
        public var elementwise: [ElementwiseRow]
        public init(threads: Int, blas: String, bf16_gemm: String, matmul: [MatmulRow], elementwise: [ElementwiseRow]) {
            self.threads = threads
            self.blas = blas
            self.bf16_gemm = bf16_gemm
            self.matmul = matmul
            self.elementwise = elementwise
        }
    }

    /// An op measured for throughput: its name, the bytes it reads and writes per call, and the call.
    public struct ElementwiseCase {
        public var name: String
        public var bytesMoved: Int
        public var run: () -> Void
        public init(name: String, bytesMoved: Int, run: @escaping () -> Void) {
            self.name = name
            self.bytesMoved = bytesMoved
            self.run = run
        }
    }

    /// Times engine `matmul` against `remat_sgemm_raw` at each size (square n×n·n×n), `reps` interleaved
    /// repetitions each, and returns GFLOP/s medians.
    public static func matmul(sizes: [Int], reps: Int) -> [MatmulRow] {
        let threads = Runtime.threads
        let rng = RandomGenerator(seed: 1)
        return sizes.map { n in
            let a = Tensor.randn([n, n], generator: rng), b = Tensor.randn([n, n], generator: rng)
            let c = Tensor.zeros([n, n])
            let flops = 2 * Double(n) * Double(n) * Double(n)
            var engine: [Double] = [], raw: [Double] = []
            let (pa, pb, pc) = (a.floatPointer, b.floatPointer, c.floatPointer)
            func rawCall() {
                remat_sgemm_raw(Int32(threads), 0, 0, Int32(n), Int32(n), Int32(n), 1, pa, Int32(n), pb, Int32(n), 0, pc, Int32(n))
            }
            noGrad { _ = RematCore.matmul(a, b) }
            rawCall()
            for _ in 0..<reps {
                var t0 = monotonicSeconds()
                noGrad { _ = RematCore.matmul(a, b) }
                engine.append(flops / (monotonicSeconds() - t0) / 1e9)
                t0 = monotonicSeconds()
                rawCall()
                raw.append(flops / (monotonicSeconds() - t0) / 1e9)
            }
            return MatmulRow(n: n, gflops: median(engine), blas_gflops: median(raw))
        }
    }

    /// Times each case against memcpy moving the same number of bytes (half read, half written),
    /// `reps` interleaved repetitions each.
    public static func elementwise(_ cases: [ElementwiseCase], reps: Int) -> [ElementwiseRow] {
        cases.map { c in
            let half = c.bytesMoved / 2
            let src = Tensor.zeros([half / 4]), dst = Tensor.zeros([half / 4])
            let (ps, pd) = (src.rawPointer, dst.rawPointer)
            func copy() {
                // memcpy split over the same threads the engine uses.
                parallelChunks(half, grain: 1 << 20) { lo, hi in _ = memcpy(pd + lo, ps + lo, hi - lo) }
            }
            c.run(); copy()
            var op: [Double] = [], mc: [Double] = []
            for _ in 0..<reps {
                var t0 = monotonicSeconds()
                c.run()
                op.append(Double(c.bytesMoved) / (monotonicSeconds() - t0) / 1e9)
                t0 = monotonicSeconds()
                copy()
                mc.append(Double(2 * half) / (monotonicSeconds() - t0) / 1e9)
            }
            return ElementwiseRow(name: c.name, gbps: median(op), memcpy_gbps: median(mc))
        }
    }
}
