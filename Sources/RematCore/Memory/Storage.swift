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
        self.pointer = ledger.allocate(bytes: byteCount, category: category, name: label)
    }

    deinit {
        ledger.free(pointer, bytes: byteCount, category: category, name: label)
    }

    /// Moves the storage to another base category (e.g. a new tensor becoming a parameter).
    public func setCategory(_ newCategory: MemoryCategory) {
        let before = category
        baseCategory = newCategory
        ledger.move(bytes: byteCount, from: before, to: category, name: label)
    }

    /// Called by whatever holds this storage for backward (saved-tensor slots, checkpoint regions
    /// holding recomputed tensors): while held, a temporary counts as a saved activation.
    public func retainForBackward() {
        let before = category
        savedHolds += 1
        ledger.move(bytes: byteCount, from: before, to: category, name: label)
    }

    /// Undoes one ``retainForBackward()``.
    public func releaseForBackward() {
        precondition(savedHolds > 0, "Storage.releaseForBackward: \(label) is not held by a saved slot")
        let before = category
        savedHolds -= 1
        ledger.move(bytes: byteCount, from: before, to: category, name: label)
    }

    /// Number of saved-tensor slots holding this storage now.
    public var savedHoldCount: Int { savedHolds }
}
