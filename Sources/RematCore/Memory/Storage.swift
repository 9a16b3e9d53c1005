import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

private let storageSequence = Atomic<Int>(0)

/// A block of tensor memory owned through the ``MemoryLedger``.
///
/// Storage is shared by a tensor and all of its views; it is freed, and the ledger told, the
/// moment its last reference goes. Its category can change during its life: an op output is a
/// temporary; while one or more ``StorageHold``s hold it (saved-tensor slots, regions), it counts
/// as a saved activation (unless it is a parameter, gradient or optimizer state, which keep their
/// category).
///
/// Ownership: not thread-safe for category changes; the autograd engine changes categories only
/// on the thread that runs the op or backward. Kernels may read and write `pointer` from worker threads.
public final class Storage: @unchecked Sendable {
    /// A number unique to this storage within the process (memory timelines name blocks by it).
    public let id: Int
    public let pointer: UnsafeMutableRawPointer
    public let byteCount: Int
    public let ledger: MemoryLedger
    /// The op or tensor that made this storage (used for the ledger timeline).
    public let label: String
    /// The category the storage returns to when no saved slot holds it.
    public private(set) var baseCategory: MemoryCategory
    private var savedHolds = 0

    /// The category the bytes are counted in right now.
    public var category: MemoryCategory {
        (savedHolds > 0 && baseCategory == .temporaries) ? .activations : baseCategory
    }

    /// Allocates `byteCount` uninitialised bytes in the current ledger.
    public init(byteCount: Int, category: MemoryCategory = .temporaries, label: String = "tensor",
                ledger: MemoryLedger = MemoryLedger.current) {
        self.byteCount = byteCount
        self.ledger = ledger
        self.label = label
        self.baseCategory = category
        self.id = storageSequence.add(1, ordering: .relaxed).newValue
        self.isPlaceholder = false
        self.pointer = ledger.allocate(bytes: byteCount, category: category, name: label, storageID: id)
    }

    /// Whether this is a placeholder: read-only zero pages outside the ledger (see ``placeholder(byteCount:)``).
    public let isPlaceholder: Bool

    private init(placeholderBytes byteCount: Int) {
        self.byteCount = byteCount
        self.ledger = MemoryLedger.current
        self.label = "placeholder"
        self.baseCategory = .temporaries
        self.id = storageSequence.add(1, ordering: .relaxed).newValue
        self.isPlaceholder = true
        self.pointer = zeroPages(atLeast: byteCount)
    }

    /// Storage with a layout's size but no data: read-only zero pages (reading gives zeros, writing
    /// traps), not counted by the ledger and costing no memory — what an op interceptor gives for
    /// an output nothing reads. All placeholders share one mapping (no system call per placeholder).
    public static func placeholder(byteCount: Int) -> Storage { Storage(placeholderBytes: byteCount) }

    deinit {
        if isPlaceholder { return }
        ledger.free(pointer, bytes: byteCount, category: category, name: label, storageID: id)
    }

    /// Moves the storage to another base category (e.g. a new tensor becoming a parameter).
    public func setCategory(_ newCategory: MemoryCategory) {
        if isPlaceholder { return }
        let before = category
        baseCategory = newCategory
        ledger.move(bytes: byteCount, from: before, to: category, name: label, storageID: id)
    }

    /// One more hold for backward (``StorageHold``): while held, a temporary counts as a saved activation.
    fileprivate func addHold() {
        if isPlaceholder { return }
        let before = category
        savedHolds += 1
        ledger.move(bytes: byteCount, from: before, to: category, name: label, storageID: id)
    }

    fileprivate func removeHold() {
        if isPlaceholder { return }
        let before = category
        savedHolds -= 1
        ledger.move(bytes: byteCount, from: before, to: category, name: label, storageID: id)
    }

    /// Number of holds for backward on this storage now (saved-tensor slots, regions' recomputed tensors).
    package var holdCount: Int { savedHolds }
}

/// A hold on a storage for backward, released when the hold goes: while any hold lives, a
/// temporary's bytes count as saved activations (parameters, gradients and optimizer state keep
/// their category). Saved-tensor slots and regions hold what they keep for backward this way, so
/// the ledger's split stays exact without counts balanced by hand.
///
/// Ownership: made and released on the thread that runs the graph.
package final class StorageHold {
    package let storage: Storage
    package init(_ storage: Storage) {
        self.storage = storage
        storage.addHold()
    }
    deinit { storage.removeHold() }
}

/// A hold on a storage for backward that can find out whether it is the storage's last strong
/// reference, and let go of it then (the dynamic evictor frees a saved tensor only when nothing
/// but its hold keeps the storage: an op running on it, backward reading it, or the user's code
/// holding a tensor over it all pin it).
///
/// Ownership: made, tested and released on the thread that runs the graph.
package final class ReleasableHold {
    private var held: Storage?
    package init(_ storage: Storage) {
        held = storage
        storage.addHold()
    }

    /// The storage while held.
    package var storage: Storage? { held }

    /// When this hold is the storage's only strong reference: drops the hold and the reference
    /// (the storage is freed, the ledger told) and returns true. Otherwise changes nothing.
    package func releaseIfUnique() -> Bool {
        guard held != nil, isKnownUniquelyReferenced(&held) else { return false }
        held!.removeHold()
        held = nil
        return true
    }

    /// Drops the hold and the reference whoever else holds the storage.
    package func release() {
        held?.removeHold()
        held = nil
    }

    deinit { held?.removeHold() }
}

/// The shared read-only zero mapping behind placeholders: grown (a new, larger mapping; old ones
/// stay mapped, since placeholders may point into them) when a larger one is asked for.
private let zeroMapping = Mutex<(pointer: UInt, bytes: Int)>((0, 0))

private func zeroPages(atLeast bytes: Int) -> UnsafeMutableRawPointer {
    let address: UInt = zeroMapping.withLock { m in
        if m.bytes >= Swift.max(bytes, 1) { return m.pointer }
        let size = Swift.max(bytes, 2 * m.bytes, 1 << 20)
        guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0), p != MAP_FAILED else {
            fatalError("Storage.placeholder: mmap of \(size) bytes of zero pages failed")
        }
        m = (UInt(bitPattern: p), size)
        return m.pointer
    }
    return UnsafeMutableRawPointer(bitPattern: address)!
}
