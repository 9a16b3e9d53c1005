import Foundation
import Testing
import Synchronization
import CRematBLAS
import RematCore

/// OpenBLAS's thread count is one setting for the whole process (`openblas_set_num_threads`), and
/// its sgemm gives other bits with 1 and with 2 threads for most shapes (OpenBLAS 0.3.21, Haswell
/// kernel: 894 of 915 shapes from 16 to 1024). A GEMM must run with the threads it asks for even
/// while another thread of the process asks for another count, or a step's result depends on what
/// else runs beside it (a planned and an unplanned gpt-mini step once differed in every
/// parameter's last bits under the whole test suite).
@Suite struct BLASThreadsTests {
    final class Background: @unchecked Sendable {
        let stop = Atomic<Bool>(false)
        let calls = Atomic<Int>(0)
        let wrong = Atomic<Int>(0)
    }

    @Test("a GEMM runs with the threads it asks for while another thread asks for another count")
    func threadCountIsPerCall() throws {
        let n = 256
        let g = RandomGenerator(seed: 3)
        let a = Tensor.randn([n, n], generator: g).toArray(), b = Tensor.randn([n, n], generator: g).toArray()
        @Sendable func gemm(_ threads: Int32, m: Int = n) -> [UInt32] {
            var c = [Float](repeating: 0, count: m * n)
            remat_sgemm_raw(threads, 0, 0, Int32(m), Int32(n), Int32(n), 1, a, Int32(n), b, Int32(n), 0, &c, Int32(n))
            return c.map(\.bitPattern)
        }
        let one = gemm(1), two = gemm(2)
        // Where both counts give the same bits (another library, one core) there is nothing to see.
        guard one != two else { return }
        let bg = Background()
        // Another thread: 2-thread GEMMs, mostly 1×256·256×256 (each call still sets the library's
        // count), now and then the whole product, which must give the 2-thread bits.
        let done = DispatchSemaphore(value: 0)
        Thread {
            var i = 0
            while !bg.stop.load(ordering: .relaxed) {
                if i % 64 == 63 {
                    if gemm(2) != two { bg.wrong.add(1, ordering: .relaxed) }
                } else {
                    _ = gemm(2, m: 1)
                }
                i += 1
                bg.calls.add(1, ordering: .relaxed)
            }
            done.signal()
        }.start()
        while bg.calls.load(ordering: .relaxed) == 0 { usleep(100) }
        var wrong = 0
        let iterations = 4000
        for _ in 0..<iterations where gemm(1) != one { wrong += 1 }
        bg.stop.store(true, ordering: .relaxed)
        done.wait()
        #expect(wrong == 0, "\(wrong) of \(iterations) 1-thread GEMMs gave other bits beside 2-thread GEMMs (\(bg.calls.load(ordering: .relaxed)) calls)")
        #expect(bg.wrong.load(ordering: .relaxed) == 0, "\(bg.wrong.load(ordering: .relaxed)) 2-thread GEMMs gave other bits beside 1-thread GEMMs")
    }
}
