import CMPI
import RematCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What an MPI call reported, or why the job cannot use MPI.
public enum DistributedError: Error, CustomStringConvertible, Equatable {
    /// An MPI call returned an error code (the communicator returns errors instead of aborting).
    case mpi(call: String, code: Int32, message: String)
    /// ``Communicator/world()`` again after ``Communicator/finalize()`` (MPI can be initialised once per process).
    case finalized
    /// A collective's buffers disagree with what the call needs.
    case badBuffer(String)
    /// A batch data parallelism cannot split into equal shards, one per rank.
    case badBatch(String)

    public var description: String {
        switch self {
        case .mpi(let call, let code, let message): return "\(call) failed (MPI error \(code)): \(message)"
        case .finalized: return "MPI was finalized in this process; it cannot be initialised again"
        case .badBuffer(let why): return "bad buffer for a collective: \(why)"
        case .badBatch(let why): return "data parallel: \(why)"
        }
    }
}

/// The job's processes as one MPI communicator (`MPI_COMM_WORLD`): rank, size and the collectives
/// data-parallel training needs, on float32 buffers and tensors.
///
/// MPI is initialised on first use with `MPI_THREAD_FUNNELED` (every MPI call comes from the
/// thread that initialised it; the kernels' worker threads never call MPI) and the world's error
/// handler set to return errors, so a failed call throws ``DistributedError/mpi(call:code:message:)``
/// instead of aborting inside the library. Non-blocking all-reduces (``startAllReduceSum(_:)``)
/// progress while the caller computes, as far as the MPI library progresses them (Open MPI over
/// shared memory: during later MPI calls, and on its progress thread where one runs).
public final class Communicator: @unchecked Sendable {
    /// This process's rank, 0 ..< ``size``.
    public let rank: Int
    /// Processes in the job.
    public let size: Int

    private nonisolated(unsafe) static var shared: Communicator?
    private nonisolated(unsafe) static var wasFinalized = false

    private init(rank: Int, size: Int) {
        self.rank = rank
        self.size = size
    }

    /// The world communicator, initialising MPI on first use. A process started without
    /// `mpirun` is a job of one (rank 0, size 1).
    public static func world() throws(DistributedError) -> Communicator {
        if let shared { return shared }
        if wasFinalized { throw .finalized }
        var provided: Int32 = 0
        try check("MPI_Init_thread", MPI_Init_thread(nil, nil, remat_mpi_thread_funneled(), &provided))
        try check("MPI_Comm_set_errhandler", MPI_Comm_set_errhandler(remat_mpi_comm_world(), remat_mpi_errors_return()))
        var rank: Int32 = 0, size: Int32 = 0
        try check("MPI_Comm_rank", MPI_Comm_rank(remat_mpi_comm_world(), &rank))
        try check("MPI_Comm_size", MPI_Comm_size(remat_mpi_comm_world(), &size))
        let c = Communicator(rank: Int(rank), size: Int(size))
        shared = c
        return c
    }

    /// Ends MPI in this process (after which no collective can run). Every rank must call it.
    public func finalize() {
        guard Self.shared != nil else { return }
        _ = MPI_Finalize()
        Self.shared = nil
        Self.wasFinalized = true
    }

    /// Ends every process of the job with `code` (a failing rank's way to stop the others
    /// instead of leaving them blocked in a collective).
    public func abort(code: Int32) -> Never {
        _ = MPI_Abort(remat_mpi_comm_world(), code)
        exit(code)
    }

    /// Waits until every rank has called it.
    public func barrier() throws(DistributedError) {
        try Self.check("MPI_Barrier", MPI_Barrier(remat_mpi_comm_world()))
    }

    /// Copies `root`'s `buffer` into every rank's.
    public func broadcast(_ buffer: UnsafeMutableBufferPointer<Float>, root: Int = 0) throws(DistributedError) {
        try checkRoot(root)
        try Self.check("MPI_Bcast", MPI_Bcast(buffer.baseAddress, try count(buffer.count), remat_mpi_float(), Int32(root), remat_mpi_comm_world()))
    }

    /// Every rank's `buffer` becomes the element-wise sum over the ranks (in place).
    public func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws(DistributedError) {
        guard size > 1 else { return }
        try Self.check("MPI_Allreduce", MPI_Allreduce(remat_mpi_in_place(), buffer.baseAddress, try count(buffer.count), remat_mpi_float(),
                                                        remat_mpi_sum(), remat_mpi_comm_world()))
    }

    /// The element-wise maximum over the ranks of one value.
    public func allReduceMax(_ value: Double) throws(DistributedError) -> Double {
        var v = value
        try Self.check("MPI_Allreduce", MPI_Allreduce(remat_mpi_in_place(), &v, 1, remat_mpi_double(), remat_mpi_max(), remat_mpi_comm_world()))
        return v
    }

    /// Every rank's `values` gathered in rank order (each rank gives the same count).
    public func allGather(_ values: [Double]) throws(DistributedError) -> [Double] {
        var out = [Double](repeating: 0, count: values.count * size)
        let n = try count(values.count)
        let rc = values.withUnsafeBufferPointer { v in
            out.withUnsafeMutableBufferPointer { o in
                MPI_Allgather(v.baseAddress, n, remat_mpi_double(), o.baseAddress, n, remat_mpi_double(), remat_mpi_comm_world())
            }
        }
        try Self.check("MPI_Allgather", rc)
        return out
    }

    /// An all-reduce in flight (``startAllReduceSum(_:)``); ``wait()`` completes it.
    public final class Request {
        fileprivate var handle: MPI_Request? = remat_mpi_request_null()
        /// Whether ``wait()`` has completed it.
        public fileprivate(set) var isComplete = false

        /// Lets MPI progress the reduction without blocking (`MPI_Test`); true once it is done.
        @discardableResult
        public func test() throws(DistributedError) -> Bool {
            guard !isComplete else { return true }
            var flag: Int32 = 0
            try Communicator.check("MPI_Test", MPI_Test(&handle, &flag, remat_mpi_status_ignore()))
            if flag != 0 { isComplete = true }
            return isComplete
        }

        /// Blocks until the reduction is done; its buffer then holds the sum. Waiting twice is a no-op.
        public func wait() throws(DistributedError) {
            guard !isComplete else { return }
            try Communicator.check("MPI_Wait", MPI_Wait(&handle, remat_mpi_status_ignore()))
            isComplete = true
        }
    }

    /// Starts summing `buffer` over the ranks in place (`MPI_Iallreduce`) and returns at once; the
    /// buffer must stay alive and untouched until the request's ``Request/wait()`` returns.
    public func startAllReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws(DistributedError) -> Request {
        let r = Request()
        guard size > 1 else {
            r.isComplete = true
            return r
        }
        try Self.check("MPI_Iallreduce", MPI_Iallreduce(remat_mpi_in_place(), buffer.baseAddress, try count(buffer.count), remat_mpi_float(),
                                                          remat_mpi_sum(), remat_mpi_comm_world(), &r.handle))
        return r
    }

    /// Starts a reduce-scatter (`MPI_Ireduce_scatter_block`): `buffer` (the same count on every
    /// rank, a multiple of the rank count) is summed over the ranks, and rank r receives into
    /// `shard` the r-th of its equal parts. Both buffers must stay alive and untouched until the
    /// request's ``Request/wait()`` returns.
    public func startReduceScatterSum(_ buffer: UnsafeMutableBufferPointer<Float>,
                                      into shard: UnsafeMutableBufferPointer<Float>) throws(DistributedError) -> Request {
        guard buffer.count == shard.count * size else {
            throw .badBuffer("a reduce-scatter of \(buffer.count) elements over \(size) ranks gives each \(Double(buffer.count) / Double(size)), not the \(shard.count) its shard holds")
        }
        let r = Request()
        guard size > 1 else {
            _ = shard.update(fromContentsOf: buffer)
            r.isComplete = true
            return r
        }
        try Self.check("MPI_Ireduce_scatter_block",
                       MPI_Ireduce_scatter_block(buffer.baseAddress, shard.baseAddress, try count(shard.count), remat_mpi_float(),
                                                 remat_mpi_sum(), remat_mpi_comm_world(), &r.handle))
        return r
    }

    /// Every rank's part of `buffer` copied into every rank's (`MPI_Allgather` in place): the
    /// buffer, the same count on every rank and a multiple of the rank count, is in equal parts,
    /// and rank r's r-th part is what the others receive.
    public func allGatherInPlace(_ buffer: UnsafeMutableBufferPointer<Float>) throws(DistributedError) {
        guard size > 1 else { return }
        guard buffer.count % size == 0 else {
            throw .badBuffer("an all-gather of \(buffer.count) elements does not split into \(size) equal parts")
        }
        let part = try count(buffer.count / size)
        try Self.check("MPI_Allgather", MPI_Allgather(remat_mpi_in_place(), 0, remat_mpi_float(), buffer.baseAddress, part, remat_mpi_float(),
                                                        remat_mpi_comm_world()))
    }

    /// The sum over the ranks of one value.
    public func allReduceSum(_ value: Double) throws(DistributedError) -> Double {
        var v = value
        try Self.check("MPI_Allreduce", MPI_Allreduce(remat_mpi_in_place(), &v, 1, remat_mpi_double(), remat_mpi_sum(), remat_mpi_comm_world()))
        return v
    }

    // MARK: Tensors

    /// ``broadcast(_:root:)`` of a contiguous float32 tensor's elements.
    public func broadcast(_ tensor: Tensor, root: Int = 0) throws(DistributedError) {
        try broadcast(try elements(tensor), root: root)
    }

    /// ``allReduceSum(_:)`` of a contiguous float32 tensor's elements.
    public func allReduceSum(_ tensor: Tensor) throws(DistributedError) {
        try allReduceSum(try elements(tensor))
    }

    // MARK: Checks

    /// The elements of a contiguous float32 tensor, for a collective to write in place.
    private func elements(_ t: Tensor) throws(DistributedError) -> UnsafeMutableBufferPointer<Float> {
        guard t.dtype == .float32, t.isContiguous else {
            throw .badBuffer("a collective needs a contiguous float32 tensor, got \(t.dtype) of shape \(t.shape)")
        }
        return UnsafeMutableBufferPointer(start: t.floatPointer, count: t.count)
    }

    private func checkRoot(_ root: Int) throws(DistributedError) {
        guard (0..<size).contains(root) else { throw .badBuffer("root \(root) is not a rank of this job of \(size)") }
    }

    private func count(_ n: Int) throws(DistributedError) -> Int32 {
        guard let c = Int32(exactly: n) else { throw .badBuffer("\(n) elements: MPI counts are 32-bit; split the buffer") }
        return c
    }

    fileprivate static func check(_ call: String, _ rc: Int32) throws(DistributedError) {
        guard rc != remat_mpi_success() else { return }
        var text = [CChar](repeating: 0, count: Int(remat_mpi_max_error_string()) + 1)
        var length: Int32 = 0
        _ = MPI_Error_string(rc, &text, &length)
        throw .mpi(call: call, code: rc, message: String(decoding: text.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self))
    }
}
