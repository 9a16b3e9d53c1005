import Dispatch
import Synchronization
import CRematBLAS
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Thread settings for the engine: how many threads large kernels and GEMMs use.
///
/// Default: the BLAS seam's default (the online CPU count capped at 4, or `REMAT_THREADS`).
/// Keep it small: on a shared 2-core machine, 2-thread kernels collapse when another process
/// holds a core. Set with ``Runtime/setThreads(_:)``.
public enum Runtime {
    private static let threadCount = Atomic<Int>(0)

    /// Threads used by large kernels and GEMMs.
    public static var threads: Int {
        let n = threadCount.load(ordering: .relaxed)
        if n > 0 { return n }
        _ = remat_blas_init()
        let d = max(1, Int(remat_blas_get_threads()))
        threadCount.store(d, ordering: .relaxed)
        return d
    }

    /// Sets the thread count for kernels and GEMMs (at least 1).
    public static func setThreads(_ n: Int) {
        let n = max(1, n)
        _ = remat_blas_init()
        remat_blas_set_threads(Int32(n))
        threadCount.store(n, ordering: .relaxed)
    }

    /// The GEMM autocast's bf16 linear and matmul products run, fixed for the process:
    /// `.sbgemm` (the library's bf16 GEMM, `cblas_sbgemm`, float32 accumulation) when the loaded
    /// library exports it and the CPU has AVX512_BF16 — an OpenBLAS built with
    /// `BUILD_BFLOAT16=1`, given by `REMAT_OPENBLAS` (`scripts/build_openblas_bf16.sh`); the
    /// packaged ones (Debian, PyPI) have none — else `.float32`: the float32 GEMM on the bf16
    /// values (each product of two bf16 values is exact in float32, so this is a bf16 GEMM with
    /// float32 accumulation too, at float32 speed). `REMAT_BF16_GEMM=float32` forces the float32
    /// GEMM. Convolutions and the attention kernel always run the float32 GEMM; fp16 products too.
    public static let bfloat16Gemm: BFloat16GEMM = {
        _ = remat_blas_init()
        let forced = getenv("REMAT_BF16_GEMM").map { String(cString: $0) }
        guard forced != "float32", remat_blas_has_sbgemm() != 0, remat_cpu_has_avx512_bf16() != 0 else { return .float32 }
        return .sbgemm
    }()

    /// ``bfloat16Gemm`` in words, with the two facts it depends on.
    public static var bfloat16GemmPath: String {
        let cpu = remat_cpu_has_avx512_bf16() != 0 ? "CPU has AVX512_BF16" : "CPU has no bf16 instructions"
        let lib = remat_blas_has_sbgemm() != 0 ? "the GEMM library exports cblas_sbgemm" : "the GEMM library exports no cblas_sbgemm"
        let forced = getenv("REMAT_BF16_GEMM").map { String(cString: $0) } == "float32" ? "; REMAT_BF16_GEMM=float32" : ""
        switch bfloat16Gemm {
        case .sbgemm: return "bf16 linear/matmul: cblas_sbgemm, float32 accumulation (\(cpu); \(lib)); convolutions, attention and fp16 on the float32 GEMM"
        case .float32: return "float32 GEMM on bf16 (or fp16) values, float32 accumulation (\(cpu); \(lib)\(forced))"
        }
    }

    /// The GEMM library and kernel in use, e.g. "OpenBLAS 0.3.21 (SkylakeX kernel)".
    public static var blasDescription: String {
        _ = remat_blas_init()
        return String(cString: remat_blas_describe())
    }
}

/// Which GEMM autocast's bf16 products run (``Runtime/bfloat16Gemm``).
public enum BFloat16GEMM: String, Sendable {
    /// The float32 GEMM on float32 storage holding bf16 values.
    case float32
    /// The library's bf16 GEMM (`cblas_sbgemm`) on the values converted to bf16 (exactly).
    case sbgemm
}

/// Splits `0..<count` into at most `Runtime.threads` contiguous chunks of at least `grain` items
/// and runs `body(begin, end)` on each, in parallel. Runs inline when one chunk suffices.
@inlinable
public func parallelChunks(_ count: Int, grain: Int, _ body: (Int, Int) -> Void) {
    guard count > 0 else { return }
    let chunks = min(Runtime.threads, max(1, count / max(grain, 1)))
    if chunks <= 1 {
        body(0, count)
        return
    }
    withoutActuallyEscaping(body) { escaping in
        let box = UncheckedSendableBox(escaping)
        DispatchQueue.concurrentPerform(iterations: chunks) { c in
            let begin = count * c / chunks
            let end = count * (c + 1) / chunks
            box.value(begin, end)
        }
    }
}

/// Wraps a value that is safe to share for the duration of a parallel loop (the loop bodies
/// write disjoint memory).
@usableFromInline
struct UncheckedSendableBox<T>: @unchecked Sendable {
    @usableFromInline let value: T
    @usableFromInline init(_ value: T) { self.value = value }
}

/// Elements per thread below which elementwise kernels stay single-threaded.
public let elementwiseGrain = 1 << 16
