import CRematKernels
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// What went wrong with a spilled saved tensor, naming the tensor and its file.
public enum OffloadError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The spill directory cannot be made or written.
    case directoryUnusable(directory: String, reason: String)
    /// Writing the spill file failed (disk full, file size limit, I/O error).
    case writeFailed(tensor: String, file: String, reason: String)
    /// The spill file is gone.
    case missingFile(tensor: String, file: String)
    /// The spill file is shorter or longer than what was written.
    case wrongSize(tensor: String, file: String, expected: Int, found: Int)
    /// The spill file's bytes are not those written (CRC-32C differs).
    case checksumMismatch(tensor: String, file: String, expected: UInt32, found: UInt32)
    /// Reading the spill file failed.
    case readFailed(tensor: String, file: String, reason: String)

    public var description: String {
        switch self {
        case .directoryUnusable(let d, let r): return "offload directory \(d) cannot be used: \(r)"
        case .writeFailed(let t, let f, let r): return "offloading saved tensor \(t) failed writing \(f): \(r)"
        case .missingFile(let t, let f): return "the spill file \(f) of saved tensor \(t) is missing"
        case .wrongSize(let t, let f, let e, let n): return "the spill file \(f) of saved tensor \(t) has \(n) bytes, \(e) were written"
        case .checksumMismatch(let t, let f, let e, let n):
            return "the spill file \(f) of saved tensor \(t) is corrupted: CRC-32C \(String(n, radix: 16)), written \(String(e, radix: 16))"
        case .readFailed(let t, let f, let r): return "reading the spill file \(f) of saved tensor \(t) failed: \(r)"
        }
    }
}

/// Where offloaded saved tensors go: one file per tensor in a directory of the store's own, written
/// by a background I/O thread after the forward saved the tensor and read back ahead of backward.
///
/// - Writes: the saving thread hands the tensor over and goes on; at most ``maximumBytesInFlight``
///   bytes wait to be written (the saver waits beyond that). The I/O thread writes the bytes,
///   computes their CRC-32C, flushes the file (`fdatasync`) and drops its pages from the page
///   cache (`posix_fadvise(DONTNEED)`), so the memory is really free; then it lets go of the
///   tensor (its storage is freed when nothing else holds it) and the ledger counts the bytes as
///   offloaded. A backward that asks before the write finished gets the tensor as it is.
/// - Reads: the first unpack reads its file at once; each unpack then prefetches the
///   ``readAheadTensors`` tensors backward will ask for next: in the order the previous step's
///   backward asked for them (by stable name), or, in a first step, those saved before it (the
///   reverse of the forward's order); at most ``maximumBytesInFlight`` bytes read ahead. Read
///   buffers are temporaries in the ledger.
/// - Faults: a failed write or read, a missing, resized or corrupted file is recorded with the
///   tensor's and the file's names; backward gets zeros for it and ``checkFaults()`` throws the
///   first fault — a training step checks before the optimizer steps, so wrong gradients are
///   never applied. Files are removed when their slot is released, after a fault, when the store
///   goes and at exit.
///
/// - Predictable memory (``predictable``, the store memory plans run with): the ledger changes
///   only where the training thread is, so a plan's peak can be predicted exactly. A save first
///   waits for every earlier write to finish (one write in flight) and only then lets go of the
///   tensors written (the ledger counts them offloaded there, not when the I/O thread finishes);
///   backward's first ask does the same; a read's buffer is allocated when the read is queued,
///   on the thread that queues it.
///
/// Ownership: shared by the training thread and the store's I/O thread; every state change is
/// under the store's lock.
public final class SpillStore: @unchecked Sendable {
    /// The store's own directory (inside the one given, or the system's temporary directory).
    public let directory: String
    /// Most bytes waiting to be written, and most bytes read ahead of backward.
    public let maximumBytesInFlight: Int
    /// How many tensors backward reads ahead of the one it asks for.
    public let readAheadTensors: Int
    /// Memory changes only at the training thread's save points (see above).
    public let predictable: Bool

    private let condition = NSCondition()
    /// Predictable stores: handles written whose tensors are still held until the next save point.
    private var retained: [SpillHandle] = []
    private var queue: [SpillHandle] = []
    private var writeBacklog = 0
    private var readAhead = 0
    private var faults: [OffloadError] = []
    private var stopping = false
    private var thread: Thread?
    private var sequence = 0
    private var measured = Counters()
    /// The order backward asked for the offloaded tensors (by stable name) in the previous step,
    /// and in this one so far; this step's handles by name. The read-ahead follows the recorded
    /// order; in a first step (or for a tensor it does not list) the reverse of the save order.
    private var recordedOrder: [String] = []
    private var recordedPosition: [String: Int] = [:]
    private var currentOrder: [String] = []
    private struct WeakHandle { weak var handle: SpillHandle? }
    private var handlesByName: [String: WeakHandle] = [:]

    /// Bytes written and read, and the seconds the I/O thread spent on each; seconds backward
    /// waited for a read, and the forward for room to write.
    public struct Counters: Sendable, Hashable {
        public var bytesWritten = 0, bytesRead = 0
        public var writeSeconds = 0.0, readSeconds = 0.0, waitSeconds = 0.0
        /// Seconds the forward waited for room in the write backlog.
        public var saveWaitSeconds = 0.0

        /// Bytes written and read per second of the I/O thread's time, GB/s (nil before any).
        public var writeGBps: Double? { writeSeconds > 0 ? Double(bytesWritten) / writeSeconds / 1e9 : nil }
        public var readGBps: Double? { readSeconds > 0 ? Double(bytesRead) / readSeconds / 1e9 : nil }
        public var filesWritten = 0
        /// Tensors handed to the store to be spilled (a write still in flight when backward needs
        /// the tensor is cancelled, so this can exceed `filesWritten`).
        public var tensorsSpilled = 0
    }

    /// Makes the store's directory (`remat-spill-XXXXXX`) inside `parent` (default: the system's
    /// temporary directory) and checks that it can be written.
    public init(in parent: String? = nil, maximumBytesInFlight: Int = 64 << 20, readAhead: Int = 2, predictable: Bool = false) throws(OffloadError) {
        let base = parent ?? FileManager.default.temporaryDirectory.path
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: base, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw .directoryUnusable(directory: base, reason: "no such directory")
        }
        var template = Array((base + "/remat-spill-XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else {
            throw .directoryUnusable(directory: base, reason: String(cString: strerror(errno)))
        }
        directory = String(cString: made)
        self.maximumBytesInFlight = max(1, maximumBytesInFlight)
        self.readAheadTensors = max(0, readAhead)
        self.predictable = predictable
        let probe = directory + "/probe"
        let fd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        if fd < 0 {
            let reason = String(cString: strerror(errno))
            rmdir(directory)
            throw .directoryUnusable(directory: base, reason: reason)
        }
        Glibc.close(fd)
        unlink(probe)
        // A file size limit (ulimit -f) must fail a write with EFBIG, not kill the process.
        signal(SIGXFSZ, SIG_IGN)
        SpillDirectories.register(directory)
        let t = Thread { [unowned self] in ioLoop() }
        t.name = "remat-spill"
        thread = t
        t.start()
    }

    deinit {
        condition.lock()
        stopping = true
        condition.broadcast()
        condition.unlock()
        removeDirectory()
    }

    /// Stops the I/O thread and removes every spill file and the directory.
    public func close() {
        condition.lock()
        stopping = true
        let handles = queue
        queue.removeAll()
        condition.broadcast()
        condition.unlock()
        for h in handles { locked { h.release() } }
        removeDirectory()
    }

    private func removeDirectory() {
        if let names = try? FileManager.default.contentsOfDirectory(atPath: directory) {
            for n in names where n.hasSuffix(".spill") { unlink(directory + "/" + n) }
        }
        rmdir(directory)
        SpillDirectories.unregister(directory)
    }

    /// Waits until every queued write has finished (or failed).
    public func waitForWrites() {
        condition.lock()
        while writeBacklog > 0 && !stopping { condition.wait() }
        condition.unlock()
    }

    /// What was written and read so far.
    public var counters: Counters { condition.lock(); defer { condition.unlock() }; return measured }

    /// Spill files in the directory now.
    public var fileCount: Int {
        (try? FileManager.default.contentsOfDirectory(atPath: directory))?.filter { $0.hasSuffix(".spill") }.count ?? 0
    }

    /// Throws the first fault since the last call (and forgets them all).
    public func checkFaults() throws(OffloadError) {
        condition.lock()
        let first = faults.first
        faults.removeAll()
        condition.unlock()
        if let first { throw first }
    }

    // MARK: Saving and loading (called by handles)

    /// A forward begins (its first offloaded tensor): the order of the last backward becomes the
    /// read-ahead schedule.
    func beginForward() {
        condition.lock()
        if !currentOrder.isEmpty {
            recordedOrder = currentOrder
            recordedPosition = Dictionary(recordedOrder.enumerated().map { ($1, $0) }, uniquingKeysWith: { a, _ in a })
            currentOrder = []
        }
        handlesByName = [:]
        condition.unlock()
    }

    /// Under the lock: `handle` was asked for; queues reads of the tensors backward will ask for
    /// next (the recorded order, else the save order backwards).
    func readAhead(after handle: SpillHandle) {
        currentOrder.append(handle.info.name)
        var queued = 0
        if let i = recordedPosition[handle.info.name] {
            var j = i + 1
            while j < recordedOrder.count, queued < readAheadTensors, canReadAhead {
                if let h = handlesByName[recordedOrder[j]]?.handle, h.prefetch() { queued += 1 }
                j += 1
            }
            return
        }
        var p = handle.previous
        while let h = p, queued < readAheadTensors, canReadAhead {
            if h.prefetch() { queued += 1 }
            p = h.previous
        }
    }

    /// Hands `tensor` (contiguous) to the I/O thread to be written; waits while too many bytes are
    /// waiting already.
    func spill(_ tensor: Tensor, info: SavedTensorInfo, ledger: MemoryLedger) -> SpillHandle {
        condition.lock()
        sequence += 1
        let path = directory + "/\(sequence).spill"
        let handle = SpillHandle(store: self, tensor: tensor, info: info, path: path, ledger: ledger)
        var dropped: [Tensor] = []
        if predictable {
            dropped = savePoint()
        } else if writeBacklog > 0 && writeBacklog + tensor.byteCount > maximumBytesInFlight {
            let start = monotonicSeconds()
            while writeBacklog > 0 && writeBacklog + tensor.byteCount > maximumBytesInFlight && !stopping { condition.wait() }
            measured.saveWaitSeconds += monotonicSeconds() - start
        }
        writeBacklog += tensor.byteCount
        measured.tensorsSpilled += 1
        queue.append(handle)
        handlesByName[info.name] = WeakHandle(handle: handle)
        condition.broadcast()
        condition.unlock()
        withExtendedLifetime(dropped) {}   // freed here, outside the lock
        return handle
    }

    /// Under the lock, predictable stores: waits for every write queued or running, then lets go
    /// of the tensors written (returned, to be released outside the lock).
    func savePoint() -> [Tensor] {
        if writeBacklog > 0 {
            let start = monotonicSeconds()
            while writeBacklog > 0 && !stopping { condition.wait() }
            measured.saveWaitSeconds += monotonicSeconds() - start
        }
        let handles = retained
        retained.removeAll()
        return handles.compactMap { $0.dropRetained() }
    }

    /// Under the lock: `handle` was written and keeps its tensor until the next save point.
    func retain(_ handle: SpillHandle) { retained.append(handle) }

    /// Under the lock: `handle` no longer keeps a tensor for a save point.
    func forget(_ handle: SpillHandle) { retained.removeAll { $0 === handle } }

    func recordFault(_ fault: OffloadError) {
        condition.lock()
        faults.append(fault)
        condition.unlock()
    }

    func locked<R>(_ body: () -> R) -> R {
        condition.lock()
        defer { condition.unlock() }
        return body()
    }

    /// Queues a read of `handle` (first in line when `urgent`); under the lock.
    func queueRead(_ handle: SpillHandle, urgent: Bool) {
        if urgent { queue.insert(handle, at: 0) } else { queue.append(handle) }
        readAhead += handle.byteCount
        condition.broadcast()
    }

    var canReadAhead: Bool { readAhead < maximumBytesInFlight }

    /// Under the lock: a read-ahead buffer was used or dropped.
    func readDone(_ handle: SpillHandle) { readAhead -= handle.byteCount }

    /// Under the lock: a queued write will not happen (its tensor was used or released first).
    func writeCancelled(_ handle: SpillHandle) {
        writeBacklog -= handle.byteCount
        condition.broadcast()
    }

    func waitForChange() { condition.wait() }
    func signalChange() { condition.broadcast() }
    func addWait(_ seconds: Double) { measured.waitSeconds += seconds }

    // MARK: The I/O thread

    private func ioLoop() {
        // Below the compute threads (SCHED_IDLE: it runs when a core has nothing else to do): on
        // a machine whose cores all run GEMM, a preempted GEMM thread stalls its whole team, while
        // a late write only delays its own file — and a saver or backward waiting on the I/O
        // thread leaves its core idle for it.
        var param = sched_param()
        _ = pthread_setschedparam(pthread_self(), 5, &param)   // SCHED_IDLE (Linux; the header hides it behind _GNU_SOURCE)
        while true {
            condition.lock()
            while queue.isEmpty && !stopping { condition.wait() }
            if stopping && queue.isEmpty {
                condition.unlock()
                return
            }
            let handle = queue.removeFirst()
            var job = handle.beginIO()
            condition.unlock()
            // The I/O thread lets go of the job (and the tensor it wrote) before it reports: once
            // the lock is taken again, the tensor's memory belongs to the handle alone, so the
            // training thread frees it exactly where it lets go (a low-priority thread may not
            // run again for a long while).
            var wrote: Result<UInt32, OffloadError>? = nil
            var read: Result<Tensor, OffloadError>? = nil
            let start = monotonicSeconds()
            switch job {
            case .write(let tensor): wrote = writeFile(tensor, name: handle.info.name, path: handle.path)
            case .read(let checksum, let buffer):
                read = MemoryLedger.withLedger(handle.ledger) { readFile(handle, checksum: checksum, into: buffer) }
            case .none: break
            }
            job = .none
            let seconds = monotonicSeconds() - start
            condition.lock()
            if let result = wrote {
                writeBacklog -= handle.byteCount
                if case .success = result {
                    measured.bytesWritten += handle.byteCount
                    measured.writeSeconds += seconds
                    measured.filesWritten += 1
                }
                handle.finishWrite(result)
            } else if read != nil {
                if case .success = read! {
                    measured.bytesRead += handle.byteCount
                    measured.readSeconds += seconds
                }
                handle.finishRead(read!)
                read = nil   // the buffer is the handle's now
            }
            condition.broadcast()
            condition.unlock()
        }
    }

    private func writeFile(_ tensor: Tensor, name: String, path: String) -> Result<UInt32, OffloadError> {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return .failure(.writeFailed(tensor: name, file: path, reason: String(cString: strerror(errno)))) }
        let pointer = UnsafeRawPointer(tensor.rawPointer)
        let total = tensor.byteCount
        var done = 0
        var crc: UInt32 = 0
        while done < total {
            let chunk = min(total - done, 8 << 20)
            crc = remat_crc32c(crc, pointer + done, chunk)
            var written = 0
            while written < chunk {
                let n = Glibc.write(fd, pointer + done + written, chunk - written)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else {
                    let reason = n == 0 ? "no bytes written" : String(cString: strerror(errno))
                    Glibc.close(fd)
                    unlink(path)
                    return .failure(.writeFailed(tensor: name, file: path, reason: reason))
                }
                written += n
            }
            done += chunk
        }
        if fdatasync(fd) != 0 {
            let reason = String(cString: strerror(errno))
            Glibc.close(fd)
            unlink(path)
            return .failure(.writeFailed(tensor: name, file: path, reason: reason))
        }
        _ = posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_DONTNEED))
        if Glibc.close(fd) != 0 {
            unlink(path)
            return .failure(.writeFailed(tensor: name, file: path, reason: String(cString: strerror(errno))))
        }
        return .success(crc)
    }

    private func readFile(_ handle: SpillHandle, checksum: UInt32, into buffer: Tensor?) -> Result<Tensor, OffloadError> {
        let (name, path) = (handle.info.name, handle.path)
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT { return .failure(.missingFile(tensor: name, file: path)) }
            return .failure(.readFailed(tensor: name, file: path, reason: String(cString: strerror(errno))))
        }
        defer { Glibc.close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { return .failure(.readFailed(tensor: name, file: path, reason: String(cString: strerror(errno)))) }
        guard Int(st.st_size) == handle.byteCount else {
            return .failure(.wrongSize(tensor: name, file: path, expected: handle.byteCount, found: Int(st.st_size)))
        }
        _ = posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_SEQUENTIAL))
        let out = buffer ?? Tensor(uninitializedShape: handle.info.shape, dtype: handle.info.dtype, label: name)
        let pointer = out.rawPointer
        var done = 0
        while done < handle.byteCount {
            let n = Glibc.read(fd, pointer + done, handle.byteCount - done)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                return .failure(.readFailed(tensor: name, file: path, reason: n == 0 ? "the file ended early" : String(cString: strerror(errno))))
            }
            done += n
        }
        _ = posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_DONTNEED))
        let found = remat_crc32c(0, pointer, handle.byteCount)
        guard found == checksum else { return .failure(.checksumMismatch(tensor: name, file: path, expected: checksum, found: found)) }
        return .success(out)
    }
}

/// Directories of live stores, removed at exit and when SIGINT, SIGTERM or SIGHUP ends the
/// process (CRematKernels/spill_cleanup.c), if their stores did not remove them.
private enum SpillDirectories {
    static let installed = Mutex(false)

    static func register(_ directory: String) {
        _ = remat_spill_register(directory)
        installed.withLock { done in
            guard !done else { return }
            done = true
            atexit { remat_spill_cleanup_all() }
        }
    }

    static func unregister(_ directory: String) { remat_spill_unregister(directory) }
}

/// One offloaded saved tensor: a slot's deferred payload.
///
/// Ownership: its state is changed only under its store's lock.
final class SpillHandle: @unchecked Sendable {
    unowned let store: SpillStore
    let info: SavedTensorInfo
    let path: String
    let ledger: MemoryLedger
    let byteCount: Int
    /// The handle saved before this one in the same forward (read ahead after this one).
    weak var previous: SpillHandle?

    enum State {
        case queuedWrite(Tensor)
        case writing(Tensor)
        case onDisk(UInt32)
        case queuedRead(UInt32)
        case reading
        case loaded(Tensor)
        case failed(OffloadError)
        case released
    }
    private(set) var state: State
    /// Whether the ledger counts the bytes as offloaded (the file is written and not yet read back).
    private var countedOffloaded = false
    /// Whether the bytes count against the store's read-ahead (queued, being read, or read and not yet used).
    private var inReadAhead = false
    /// Slots sharing the handle (tensors saved from one storage), unpacks still to come, and the
    /// tensor kept for them after the first unpack.
    private var slots = 0
    private var unpacksLeft = 0
    private var served: Tensor? = nil
    /// Predictable stores: the tensor written, kept until the next save point, and the buffer a
    /// queued read fills (allocated when it was queued).
    private var retainedTensor: Tensor? = nil
    private var readBuffer: Tensor? = nil

    enum Job {
        case write(Tensor)
        case read(UInt32, Tensor?)
        case none
    }

    init(store: SpillStore, tensor: Tensor, info: SavedTensorInfo, path: String, ledger: MemoryLedger) {
        self.store = store
        self.info = info
        self.path = path
        self.ledger = ledger
        byteCount = tensor.byteCount
        state = .queuedWrite(tensor)
    }

    // Under the store's lock (called by the I/O thread):
    func beginIO() -> Job {
        switch state {
        case .queuedWrite(let t):
            state = .writing(t)
            return .write(t)
        case .queuedRead(let crc):
            state = .reading
            let buffer = readBuffer
            readBuffer = nil
            return .read(crc, buffer)
        default:
            return .none   // released or served from memory meanwhile
        }
    }

    func finishWrite(_ result: Result<UInt32, OffloadError>) {
        guard case .writing(let t) = state else {   // used or released while writing
            unlink(path)
            return
        }
        switch result {
        case .success(let crc):
            state = .onDisk(crc)
            if store.predictable {
                retainedTensor = t
                store.retain(self)
            } else {
                ledger.recordOffloaded(byteCount, name: info.name)
                countedOffloaded = true
            }
        case .failure(let e):
            state = .failed(e)
        }
    }

    func finishRead(_ result: Result<Tensor, OffloadError>) {
        guard case .reading = state else { return }
        switch result {
        case .success(let t): state = .loaded(t)
        case .failure(let e): state = .failed(e)
        }
    }

    /// Under the lock: queues a read if the tensor is on disk and the read-ahead has room.
    func prefetch() -> Bool {
        guard case .onDisk(let crc) = state, store.canReadAhead else { return false }
        queueRead(crc, urgent: false)
        return true
    }

    /// Under the lock: the read of the file (checksum `crc`) joins the queue; a predictable
    /// store allocates its buffer now.
    private func queueRead(_ crc: UInt32, urgent: Bool) {
        state = .queuedRead(crc)
        inReadAhead = true
        if store.predictable {
            readBuffer = MemoryLedger.withLedger(ledger) { Tensor(uninitializedShape: info.shape, dtype: info.dtype, label: info.name) }
        }
        store.queueRead(self, urgent: urgent)
    }

    /// Under the lock, at a predictable store's save point: lets go of the tensor kept since it
    /// was written (returned, released outside the lock); the ledger counts the bytes offloaded.
    func dropRetained() -> Tensor? {
        guard let t = retainedTensor else { return nil }
        retainedTensor = nil
        if case .onDisk = state, !countedOffloaded {
            ledger.recordOffloaded(byteCount, name: info.name)
            countedOffloaded = true
        }
        return t
    }

    /// Under the lock: the handle no longer holds read-ahead or offloaded bytes.
    private func settle() {
        if inReadAhead {
            inReadAhead = false
            store.readDone(self)
        }
        if countedOffloaded {
            countedOffloaded = false
            ledger.recordOffloaded(-byteCount, name: info.name)
        }
    }

    /// One more slot holds the handle (``SpillShare``); under the lock.
    func addSlot() {
        slots += 1
        unpacksLeft += 1
    }

    /// A slot let go of the handle; the last one releases it. Under the lock.
    func slotReleased() {
        slots -= 1
        if slots <= 0 {
            served = nil
            release()
        }
    }

    // For the slots (``SpillShare``), on backward's thread:
    func materialize() -> Tensor {
        if let t: Tensor = store.locked({
            guard let t = served else { return nil }
            unpacksLeft -= 1
            if unpacksLeft <= 0 { served = nil }
            return t
        }) { return t }
        let t = load()
        store.locked {
            unpacksLeft -= 1
            if unpacksLeft > 0 { served = t }
        }
        return t
    }

    /// Brings the tensor back (from memory, the read-ahead or its file).
    private func load() -> Tensor {
        let start = monotonicSeconds()
        var waited = false
        var dropped: [Tensor] = []
        let result: Result<Tensor, OffloadError> = store.locked {
            // A predictable store: the tensor asked for, if still in memory, is taken as it is;
            // then every write finishes and the tensors written are let go.
            var taken: Tensor? = nil
            if store.predictable {
                switch state {
                case .queuedWrite(let t): store.writeCancelled(self); state = .released; taken = t
                case .writing(let t): state = .released; taken = t
                case .onDisk where retainedTensor != nil:
                    taken = retainedTensor
                    retainedTensor = nil
                    store.forget(self)
                    state = .released
                default: break
                }
                dropped = store.savePoint()
            }
            if let taken { return .success(taken) }
            while true {
                switch state {
                case .queuedWrite(let t):
                    // Backward came first: use the tensor still in memory.
                    store.writeCancelled(self)
                    state = .released
                    return .success(t)
                case .writing(let t):
                    state = .released   // finishWrite removes the file
                    return .success(t)
                case .onDisk(let crc):
                    queueRead(crc, urgent: true)
                case .queuedRead, .reading:
                    waited = true
                    store.waitForChange()
                case .loaded(let t):
                    state = .released
                    return .success(t)
                case .failed(let e):
                    state = .released
                    return .failure(e)
                case .released:
                    preconditionFailure("SpillHandle: \(info.name) was unpacked twice")
                }
            }
        }
        withExtendedLifetime(dropped) {}
        store.locked {
            if !isWriting { unlink(path) }
            settle()
            if waited { store.addWait(monotonicSeconds() - start) }
            store.readAhead(after: self)
        }
        switch result {
        case .success(let t): return t
        case .failure(let e):
            store.recordFault(e)
            let zeros = Tensor(uninitializedShape: info.shape, dtype: info.dtype, label: info.name)
            zeros.rawPointer.initializeMemory(as: UInt8.self, repeating: 0, count: zeros.byteCount)
            return zeros
        }
    }

    /// Whether the I/O thread is writing the file now (it removes the file itself when done).
    private var isWriting: Bool { if case .writing = state { true } else { false } }

    func discard() { store.locked { slotReleased() } }

    /// Under the lock: drops what the handle holds and its file.
    func release() {
        switch state {
        case .queuedWrite: store.writeCancelled(self)
        case .writing: break   // finishWrite removes the file
        default: unlink(path)
        }
        settle()
        if retainedTensor != nil {
            retainedTensor = nil
            store.forget(self)
        }
        readBuffer = nil
        state = .released
        store.signalChange()
    }
}

/// A slot's payload for an offloaded tensor: its share of the handle (slots saving one storage
/// share one file).
final class SpillShare: DeferredTensor {
    let handle: SpillHandle
    init(_ handle: SpillHandle) {
        self.handle = handle
        handle.store.locked { handle.addSlot() }
    }
    func materialize() -> Tensor { handle.materialize() }
    func discard() { handle.discard() }
}

/// The spill store's own costs on this machine (`remat bench codecs`): write and read GB/s of one
/// file of `bytes` (a write is counted until the file is flushed and its pages dropped; a read
/// from a cold file, checksum included), and the latency of a 4 KiB round trip.
public struct SpillMeasurement: Codable, Sendable {
    public var directory: String
    public var bytes: Int
    public var write_gbps: Double
    public var read_gbps: Double
    public var small_round_trip_ms: Double

    /// Medians of `reps` spills of a standard-normal tensor of `bytes` (rounded to whole floats)
    /// in a store made inside `parent`.
    public static func run(in parent: String? = nil, bytes: Int, reps: Int) throws(OffloadError) -> SpillMeasurement {
        let store = try SpillStore(in: parent)
        defer { store.close() }
        let ledger = MemoryLedger(label: "spill benchmark")
        func roundTrip(_ t: Tensor) -> (write: Double, read: Double) {
            let info = SavedTensorInfo(name: "bench:input", nodeName: "bench", op: "bench", role: "input", shape: t.shape,
                                       dtype: t.dtype, byteCount: t.byteCount, isParameter: false, isOutput: false)
            let t0 = monotonicSeconds()
            let share = SpillShare(store.spill(t, info: info, ledger: ledger))
            store.waitForWrites()
            let t1 = monotonicSeconds()
            let back = share.materialize()
            let t2 = monotonicSeconds()
            share.discard()
            withExtendedLifetime(back) {}
            return (t1 - t0, t2 - t1)
        }
        let x = MemoryLedger.withLedger(ledger) { Tensor.randn([max(1, bytes / 4)], generator: RandomGenerator(seed: 3)) }
        let small = MemoryLedger.withLedger(ledger) { Tensor.randn([1024], generator: RandomGenerator(seed: 4)) }
        _ = roundTrip(x)
        var writes: [Double] = [], reads: [Double] = [], smalls: [Double] = []
        for _ in 0..<reps {
            let r = roundTrip(x)
            writes.append(Double(x.byteCount) / r.write / 1e9)
            reads.append(Double(x.byteCount) / r.read / 1e9)
            let s = roundTrip(small)
            smalls.append((s.write + s.read) * 1000)
        }
        try store.checkFaults()
        return SpillMeasurement(directory: parent ?? FileManager.default.temporaryDirectory.path, bytes: x.byteCount,
                                write_gbps: median(writes), read_gbps: median(reads), small_round_trip_ms: median(smalls))
    }
}

extension SpillMeasurement {
    /// How the spill store's I/O thread and compute share this machine: `work` (with the step's
    /// threads) timed alone and while spill round trips of `bytes` run beside it, alternately,
    /// `reps` times. Per pair, `overlap` is the I/O seconds done beside `work` (the bytes moved,
    /// at `rates`) per second of `work`, and `interference` the extra seconds of `work` per I/O
    /// second; medians, each in [0, 1]. The I/O thread runs below the compute threads, so on a
    /// machine whose cores all compute, `overlap` is small and the I/O waits.
    public static func sharing(in parent: String? = nil, bytes: Int, rates: SpillMeasurement, reps: Int,
                               work: () -> Void) throws(OffloadError) -> (overlap: Double, interference: Double) {
        let store = try SpillStore(in: parent)
        defer { store.close() }
        let ledger = MemoryLedger(label: "spill sharing")
        let x = MemoryLedger.withLedger(ledger) { Tensor.randn([max(1, bytes / 4)], generator: RandomGenerator(seed: 5)) }
        let info = SavedTensorInfo(name: "bench:input", nodeName: "bench", op: "bench", role: "input", shape: x.shape,
                                   dtype: x.dtype, byteCount: x.byteCount, isParameter: false, isOutput: false)
        let running = SpillLoopFlag()
        work()
        var overlaps: [Double] = [], shares: [Double] = []
        for _ in 0..<reps {
            let t0 = monotonicSeconds()
            work()
            let alone = monotonicSeconds() - t0
            running.set(true)
            let done = DispatchSemaphore(value: 0)
            let loop = Thread {
                while running.value {
                    let share = SpillShare(store.spill(x, info: info, ledger: ledger))
                    store.waitForWrites()
                    withExtendedLifetime(share.materialize()) {}
                    share.discard()
                }
                done.signal()
            }
            loop.start()
            let before = store.counters
            let t1 = monotonicSeconds()
            work()
            let beside = monotonicSeconds() - t1
            let after = store.counters
            running.set(false)
            done.wait()
            let io = Double(after.bytesWritten - before.bytesWritten) / (rates.write_gbps * 1e9)
                + Double(after.bytesRead - before.bytesRead) / (rates.read_gbps * 1e9)
            overlaps.append(io / beside)
            if io > 0 { shares.append((beside - alone) / io) }
        }
        try store.checkFaults()
        let clamp = { (v: Double) in Swift.min(1, Swift.max(0, v)) }
        return (clamp(median(overlaps)), shares.isEmpty ? 0 : clamp(median(shares)))
    }
}

private final class SpillLoopFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var running = false
    var value: Bool { lock.lock(); defer { lock.unlock() }; return running }
    func set(_ v: Bool) { lock.lock(); running = v; lock.unlock() }
}
