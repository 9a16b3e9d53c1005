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
/// temporary; while one or more saved-tensor slots hold it, it counts as a saved activation
/// (unless it is a parameter, gradient or optimizer state, which keep their category).
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
        guard let p = mmap(nil, Swift.max(byteCount, 1), PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0),
              p != MAP_FAILED else {
            fatalError("Storage.placeholder: mmap of \(byteCount) bytes failed")
        }
        self.pointer = p
    }

    /// Storage that stands in for a tensor a planned recompute does not need: read-only zero pages
    /// (reading gives zeros, writing traps), not counted by the ledger and costing no memory.
    public static func placeholder(byteCount: Int) -> Storage { Storage(placeholderBytes: byteCount) }

    deinit {
        if isPlaceholder {
            munmap(pointer, Swift.max(byteCount, 1))
            return
        }
        ledger.free(pointer, bytes: byteCount, category: category, name: label, storageID: id)
    }

    /// Moves the storage to another base category (e.g. a new tensor becoming a parameter).
    public func setCategory(_ newCategory: MemoryCategory) {
        if isPlaceholder { return }
        let before = category
        baseCategory = newCategory
        ledger.move(bytes: byteCount, from: before, to: category, name: label, storageID: id)
    }

    /// Called by whatever holds this storage for backward (saved-tensor slots, checkpoint regions
    /// holding recomputed tensors): while held, a temporary counts as a saved activation.
    public func retainForBackward() {
        if isPlaceholder { return }
        let before = category
        savedHolds += 1
        ledger.move(bytes: byteCount, from: before, to: category, name: label, storageID: id)
    }

    /// Undoes one ``retainForBackward()``.
    public func releaseForBackward() {
        if isPlaceholder { return }
        precondition(savedHolds > 0, "Storage.releaseForBackward: \(label) is not held by a saved slot")
        let before = category
        savedHolds -= 1
        ledger.move(bytes: byteCount, from: before, to: category, name: label, storageID: id)
    }

    /// Number of saved-tensor slots holding this storage now.
    public var savedHoldCount: Int { savedHolds }
}
