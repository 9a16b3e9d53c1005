import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What a block of tensor storage is for. Every byte the engine allocates is in exactly
/// one category at a time; a block can move between categories (a temporary that an op
/// saves for backward becomes a saved activation until the saved slot lets it go).
public enum MemoryCategory: Int, CaseIterable, Sendable, CustomStringConvertible {
    case parameters
    case gradients
    case optimizerState
    /// Tensors held by the autograd graph for backward (saved-tensor slots).
    case activations
    /// Everything else: op outputs not (yet) saved, backward intermediates, scratch buffers.
    case temporaries
    /// Bytes moved out of the compute memory (host offload). Counted apart from the others:
    /// they are live but do not add to `currentBytes` / `peakBytes`.
    case offloaded

    public var description: String {
        switch self {
        case .parameters: return "parameters"
        case .gradients: return "gradients"
        case .optimizerState: return "optimizer"
        case .activations: return "activations"
        case .temporaries: return "temporaries"
        case .offloaded: return "offloaded"
        }
    }

    /// Whether the category counts toward the compute-memory total and peak.
    public var countsTowardTotal: Bool { self != .offloaded }
}

/// One entry of the optional memory timeline.
public struct MemoryEvent: Sendable, Hashable {
    public enum Kind: String, Sendable { case allocate, free, move, mark }
    /// Position of the event in the recording, starting at 0.
    public var rank: Int
    public var kind: Kind
    /// The op or tensor the bytes belong to (the label given when the storage was made), or the mark's text.
    public var name: String
    public var category: MemoryCategory
    /// Size of the block (0 for marks).
    public var bytes: Int
    /// Total compute bytes live right after the event.
    public var liveBytes: Int
    /// The ``Storage/id`` of the block (0 for marks).
    public var storageID: Int = 0
    /// For a move, the category the bytes left (`category` is where they went); nil otherwise.
    public var source: MemoryCategory? = nil
    /// When the event happened, in seconds since ``MemoryLedger/startTimeline()`` (monotonic clock).
    public var seconds: Double = 0

    public init(rank: Int, kind: Kind, name: String, category: MemoryCategory, bytes: Int, liveBytes: Int,
                storageID: Int = 0, source: MemoryCategory? = nil, seconds: Double = 0) {
        self.rank = rank
        self.kind = kind
        self.name = name
        self.category = category
        self.bytes = bytes
        self.liveBytes = liveBytes
        self.storageID = storageID
        self.source = source
        self.seconds = seconds
    }
}

/// The single source of memory figures in Remat.
///
/// All tensor storage is allocated through a ledger (64-byte aligned). The ledger keeps live
/// bytes and high-water marks, in total and per ``MemoryCategory``, and optionally a timeline.
/// Storage is released the moment its last reference goes (Swift ARC), so `currentBytes` is
/// exact at every point of a program.
///
/// Thread safety: all methods may be called from any thread (a mutex guards the counters).
/// Which ledger new storage goes to is ``MemoryLedger/current``, a task-local that defaults to
/// ``MemoryLedger/shared``; tests and tools use ``withLedger(_:_:)`` to measure in isolation.
public final class MemoryLedger: Sendable {
    public static let alignment = 64

    private struct Counters {
        var live = [Int](repeating: 0, count: MemoryCategory.allCases.count)
        var peak = [Int](repeating: 0, count: MemoryCategory.allCases.count)
        var total = 0
        var totalPeak = 0
        var liveAtPeak = [Int](repeating: 0, count: MemoryCategory.allCases.count)
        /// The storage whose allocation or move last raised `totalPeak` (nil: none since the reset).
        var peakName: String? = nil
        var allocations = 0
        var timeline: [MemoryEvent]? = nil
        var timelineStart = 0.0
        /// Freed blocks kept for reuse, by exact size (see ``MemoryLedger/cacheLimit``).
        var cache: [Int: [UInt]] = [:]   // addresses (bit patterns), so the counters stay Sendable
        var cachedBytes = 0
        /// The hard limit on compute bytes (``MemoryLedger/withLimit(_:relieve:_:)``), and what went over it.
        var limit: Int? = nil
        var overLimitAllocations = 0
        var largestExcess = 0
    }

    /// Who frees memory when an allocation would go over the limit, and on which thread it may run.
    private struct PressureRelief: @unchecked Sendable {
        let relieve: (Int) -> Void
        let thread: pthread_t
    }
    private let relief = Mutex<PressureRelief?>(nil)
    /// Whether a limit is set (read without the lock on every allocation).
    private let limitIsSet = Atomic<Bool>(false)

    /// Blocks of at least this many bytes are kept after free and reused for the next allocation of
    /// the same size (training allocates the same shapes every step): no page faults, no zeroing by
    /// the OS. Cached blocks are not live tensor bytes: no figure of the ledger includes them.
    public static let cacheMinimumBlock = 1 << 16
    /// Most bytes kept in the block cache (beyond it, freed blocks go back to the system).
    public let cacheLimit: Int

    private let counters = Mutex(Counters())
    public let label: String

    public init(label: String = "ledger", cacheLimit: Int = 1 << 30) {
        self.label = label
        self.cacheLimit = cacheLimit
    }

    /// The process-wide default ledger.
    public static let shared = MemoryLedger(label: "shared")

    @TaskLocal public static var current: MemoryLedger = .shared

    /// Runs `body` with `ledger` as the destination of every tensor allocation made inside it.
    public static func withLedger<R>(_ ledger: MemoryLedger, _ body: () throws -> R) rethrows -> R {
        try $current.withValue(ledger, operation: body)
    }

    // MARK: Allocation

    /// Allocates `bytes` bytes (64-byte aligned, uninitialised) in `category`.
    func allocate(bytes: Int, category: MemoryCategory, name: String, storageID: Int = 0) -> UnsafeMutableRawPointer {
        precondition(bytes >= 0, "MemoryLedger.allocate: negative size \(bytes)")
        if limitIsSet.load(ordering: .relaxed), category.countsTowardTotal { relievePressure(before: bytes) }
        if bytes >= MemoryLedger.cacheMinimumBlock {
            let reused: UInt? = counters.withLock { c in
                guard let p = c.cache[bytes]?.popLast() else { return nil }
                c.cachedBytes -= bytes
                c.allocations += 1
                if Self.add(&c, bytes, to: category) { c.peakName = name }
                if category.countsTowardTotal { Self.checkLimit(&c) }
                Self.record(&c, MemoryEvent(rank: 0, kind: .allocate, name: name, category: category, bytes: bytes, liveBytes: c.total, storageID: storageID))
                return p
            }
            if let reused, let p = UnsafeMutableRawPointer(bitPattern: reused) { return p }
        }
        var raw: UnsafeMutableRawPointer? = nil
        let rc = posix_memalign(&raw, MemoryLedger.alignment, max(bytes, MemoryLedger.alignment))
        guard rc == 0, let pointer = raw else {
            fatalError("MemoryLedger.allocate: out of memory allocating \(bytes) bytes for \(name) (\(category))")
        }
        counters.withLock { c in
            c.allocations += 1
            if Self.add(&c, bytes, to: category) { c.peakName = name }
            if category.countsTowardTotal { Self.checkLimit(&c) }
            Self.record(&c, MemoryEvent(rank: 0, kind: .allocate, name: name,
                                           category: category, bytes: bytes, liveBytes: c.total, storageID: storageID))
        }
        return pointer
    }

    func free(_ pointer: UnsafeMutableRawPointer, bytes: Int, category: MemoryCategory, name: String, storageID: Int = 0) {
        let address = UInt(bitPattern: pointer)
        let cached: Bool = counters.withLock { c in
            guard bytes >= MemoryLedger.cacheMinimumBlock, c.cachedBytes + bytes <= cacheLimit else { return false }
            c.cache[bytes, default: []].append(address)
            c.cachedBytes += bytes
            return true
        }
        if !cached { Glibc_free(pointer) }
        counters.withLock { c in
            Self.add(&c, -bytes, to: category)
            Self.record(&c, MemoryEvent(rank: 0, kind: .free, name: name,
                                           category: category, bytes: bytes, liveBytes: c.total, storageID: storageID))
        }
    }

    /// Counts `bytes` moved out of compute memory (a spill file; negative when they come back or
    /// are dropped) in ``MemoryCategory/offloaded``, which is apart from the compute total.
    package func recordOffloaded(_ bytes: Int, name: String) {
        counters.withLock { c in
            Self.add(&c, bytes, to: .offloaded)
            Self.record(&c, MemoryEvent(rank: 0, kind: bytes >= 0 ? .allocate : .free, name: name,
                                        category: .offloaded, bytes: abs(bytes), liveBytes: c.total))
        }
    }

    /// Moves `bytes` live bytes from one category to another (no allocation happens).
    func move(bytes: Int, from: MemoryCategory, to: MemoryCategory, name: String, storageID: Int = 0) {
        guard from != to else { return }
        counters.withLock { c in
            Self.add(&c, -bytes, to: from)
            if Self.add(&c, bytes, to: to) { c.peakName = name }
            Self.record(&c, MemoryEvent(rank: 0, kind: .move, name: name,
                                           category: to, bytes: bytes, liveBytes: c.total, storageID: storageID, source: from))
        }
    }

    private static func record(_ c: inout Counters, _ event: MemoryEvent) {
        guard c.timeline != nil else { return }
        var e = event
        e.rank = c.timeline!.count
        e.seconds = monotonicSeconds() - c.timelineStart
        c.timeline!.append(e)
    }

    /// After an allocation: counts it when it took the total over the limit.
    private static func checkLimit(_ c: inout Counters) {
        guard let limit = c.limit, c.total > limit else { return }
        c.overLimitAllocations += 1
        c.largestExcess = Swift.max(c.largestExcess, c.total - limit)
    }

    /// Adds `delta` to the category's live bytes; true when that raised the total peak.
    @discardableResult
    private static func add(_ c: inout Counters, _ delta: Int, to category: MemoryCategory) -> Bool {
        let i = category.rawValue
        c.live[i] += delta
        if c.live[i] > c.peak[i] { c.peak[i] = c.live[i] }
        if category.countsTowardTotal {
            c.total += delta
            if c.total > c.totalPeak {
                c.totalPeak = c.total
                c.liveAtPeak = c.live
                return true
            }
        }
        return false
    }

    // MARK: Hard limit

    /// Runs `body` with a hard limit of `limit` compute bytes: before an allocation that would take
    /// the live total over it, `relieve(excess)` is called (on the thread that called this, and
    /// only there) to free at least `excess` bytes — the dynamic evictor drops saved tensors it can
    /// recompute. What it cannot free still goes over the limit: counted in
    /// ``overLimitAllocations`` and ``largestExcessBytes`` (reset here), never refused. Limits do
    /// not nest.
    package func withLimit<R>(_ limit: Int, relieve: @escaping (Int) -> Void, _ body: () throws -> R) rethrows -> R {
        relief.withLock { r in
            precondition(r == nil, "MemoryLedger.withLimit: a limit is already set on \(label)")
            r = PressureRelief(relieve: relieve, thread: pthread_self())
        }
        counters.withLock { c in
            c.limit = limit
            c.overLimitAllocations = 0
            c.largestExcess = 0
        }
        limitIsSet.store(true, ordering: .relaxed)
        defer {
            limitIsSet.store(false, ordering: .relaxed)
            counters.withLock { $0.limit = nil }
            relief.withLock { $0 = nil }
        }
        return try body()
    }

    /// Allocations that took the total over the limit since it was set.
    public var overLimitAllocations: Int { counters.withLock { $0.overLimitAllocations } }
    /// The most the total went over the limit since it was set (0: never).
    public var largestExcessBytes: Int { counters.withLock { $0.largestExcess } }

    private func relievePressure(before bytes: Int) {
        let excess = counters.withLock { c in c.limit.map { c.total + bytes - $0 } ?? 0 }
        guard excess > 0, let r = relief.withLock({ $0 }), pthread_equal(r.thread, pthread_self()) != 0 else { return }
        r.relieve(excess)
    }

    // MARK: Figures

    /// Compute bytes live now (every category but `offloaded`).
    public var currentBytes: Int { counters.withLock { $0.total } }
    /// High-water mark of `currentBytes` since creation or the last ``resetPeak()``.
    public var peakBytes: Int { counters.withLock { $0.totalPeak } }
    /// Bytes live now in one category.
    public func currentBytes(in category: MemoryCategory) -> Int { counters.withLock { $0.live[category.rawValue] } }
    /// The category's own high-water mark since the last ``resetPeak()``.
    public func peakBytes(in category: MemoryCategory) -> Int { counters.withLock { $0.peak[category.rawValue] } }
    /// How the total peak was made up: each category's live bytes at the moment `peakBytes` was reached.
    public var breakdownAtPeak: [MemoryCategory: Int] {
        counters.withLock { c in
            Dictionary(uniqueKeysWithValues: MemoryCategory.allCases.map { ($0, c.liveAtPeak[$0.rawValue]) })
        }
    }
    /// The storage (its label, as a timeline event names it) whose allocation, or move back into
    /// compute memory, took the total to ``peakBytes``; nil when nothing has raised the peak since
    /// creation or the last ``resetPeak()``.
    public var peakAllocationName: String? { counters.withLock { $0.peakName } }
    /// Live bytes per category now.
    public var breakdown: [MemoryCategory: Int] {
        counters.withLock { c in
            Dictionary(uniqueKeysWithValues: MemoryCategory.allCases.map { ($0, c.live[$0.rawValue]) })
        }
    }
    /// Number of allocations made so far (for tests that check that a path does not allocate).
    public var allocationCount: Int { counters.withLock { $0.allocations } }

    /// Sets every high-water mark to the current live figures.
    public func resetPeak() {
        counters.withLock { c in
            c.peak = c.live
            c.totalPeak = c.total
            c.liveAtPeak = c.live
            c.peakName = nil
        }
    }

    /// Bytes held in the block cache (freed blocks kept for reuse; not live, not in any figure).
    public var cachedBytes: Int { counters.withLock { $0.cachedBytes } }

    /// Returns every cached block to the system.
    public func emptyCache() {
        let blocks: [UInt] = counters.withLock { c in
            let all = c.cache.values.flatMap { $0 }
            c.cache = [:]
            c.cachedBytes = 0
            return all
        }
        for a in blocks { if let p = UnsafeMutableRawPointer(bitPattern: a) { Glibc_free(p) } }
    }

    // MARK: Timeline

    /// Starts recording a timeline of allocations, frees and moves (clearing any previous one).
    public func startTimeline() {
        counters.withLock { c in
            c.timeline = []
            c.timelineStart = monotonicSeconds()
        }
    }

    /// Stops recording and returns the events recorded since ``startTimeline()``.
    @discardableResult
    public func stopTimeline() -> [MemoryEvent] {
        counters.withLock { c in
            let events = c.timeline ?? []
            c.timeline = nil
            return events
        }
    }

    /// Events recorded so far in the current timeline (0 when none is recorded): where an event
    /// that a tool notes now falls among the ledger's.
    public var timelineCount: Int { counters.withLock { $0.timeline?.count ?? 0 } }

    /// Whether a timeline is being recorded.
    public var isRecordingTimeline: Bool { counters.withLock { $0.timeline != nil } }

    /// Adds a named mark to the timeline (e.g. "forward end"); no effect when not recording.
    public func mark(_ name: String) {
        counters.withLock { c in
            Self.record(&c, MemoryEvent(rank: 0, kind: .mark, name: name,
                                           category: .temporaries, bytes: 0, liveBytes: c.total))
        }
    }
}

@inline(__always) private func Glibc_free(_ p: UnsafeMutableRawPointer) {
    #if canImport(Glibc)
    Glibc.free(p)
    #else
    Darwin.free(p)
    #endif
}
