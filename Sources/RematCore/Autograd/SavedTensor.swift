/// What a saved-tensor slot holds.
public enum SavedPayload {
    /// A tensor: the saved tensor itself, or a packed form of it (another dtype, other storage).
    case tensor(Tensor)
    /// A packed form of the tensor (a codec's encoding): the slot holds its parts, so the ledger
    /// counts the packed bytes as saved activations; unpacking decodes it.
    case packed(any PackedSavedTensor)
    /// Something that produces the tensor when backward asks (a recompute recipe, a handle).
    case deferred(any DeferredTensor)
}

/// A saved tensor in fewer bytes (the codecs of the checkpoint layer make them).
public protocol PackedSavedTensor: AnyObject {
    /// The storage the packed form occupies; a slot holds each part, so the ledger counts them
    /// as saved activations.
    var parts: [Tensor] { get }
    /// The tensor backward reads, decoded into new storage (a temporary).
    func unpack(label: String) -> Tensor
}

/// A value that can produce a saved tensor later (recompute, fetch from offload, ...).
public protocol DeferredTensor: AnyObject {
    /// Produces the tensor. Called at most once per unpack.
    func materialize() -> Tensor
    /// Called when the slot no longer needs the value (after backward used it, or the graph died).
    func discard()
    /// The tensor if it is at hand without work (a dynamic region's slot before any eviction),
    /// else nil; never recomputes or reads a file. For observers that look at saved values.
    func peek() -> Tensor?
}

extension DeferredTensor {
    public func discard() {}
    public func peek() -> Tensor? { nil }
}

/// Facts about a saved tensor, given to hooks and shown in reports.
public struct SavedTensorInfo: Sendable, Hashable {
    /// Stable name: `module.path/op#ordinal:role`, the same in profiler, planner, executor and reports.
    public var name: String
    /// The name of the node that saved it (`module.path/op#ordinal`).
    public var nodeName: String
    /// The op kind that saved it (`matmul`, `softmax`, ...).
    public var op: String
    /// Which of the op's saved tensors it is (`input`, `output`, `weight`, ...).
    public var role: String
    public var shape: [Int]
    public var dtype: DType
    /// Bytes of the saved elements.
    public var byteCount: Int
    /// Whether the tensor is a parameter (its storage is in the ledger's parameters category): hooks
    /// usually leave those alone.
    public var isParameter: Bool
    /// Whether the tensor is the saving op's own output.
    public var isOutput: Bool

    public init(name: String, nodeName: String, op: String, role: String, shape: [Int], dtype: DType,
                byteCount: Int, isParameter: Bool, isOutput: Bool) {
        self.name = name
        self.nodeName = nodeName
        self.op = op
        self.role = role
        self.shape = shape
        self.dtype = dtype
        self.byteCount = byteCount
        self.isParameter = isParameter
        self.isOutput = isOutput
    }
}

/// A pair of pack/unpack hooks for saved tensors (like PyTorch's `saved_tensors_hooks`).
///
/// `pack` runs when an op saves a tensor for backward, `unpack` when backward needs it. Scopes nest:
/// the innermost hooks pack first; when a pack returns `.tensor`, the next outer hooks pack that
/// tensor in turn (a `.deferred` result ends the chain). Unpacking runs in the reverse order.
public struct SavedTensorHooks: @unchecked Sendable {
    public var pack: (Tensor, SavedTensorInfo) -> SavedPayload
    public var unpack: (SavedPayload, SavedTensorInfo) -> Tensor

    public init(pack: @escaping (Tensor, SavedTensorInfo) -> SavedPayload,
                unpack: @escaping (SavedPayload, SavedTensorInfo) -> Tensor) {
        self.pack = pack
        self.unpack = unpack
    }
}

/// Runs `body` with `hooks` applied to every tensor saved for backward inside it.
public func withSavedTensorHooks<R>(_ hooks: SavedTensorHooks, _ body: () throws -> R) rethrows -> R {
    try AutogradContext.with({ $0.savedTensorHooks.append(hooks) }, body)
}

/// The one slot type through which every op saves what its backward needs.
///
/// A slot holds the tensor itself, a packed form of it, or a deferred producer (recompute recipe,
/// offload handle); ``unpack()`` gives backward a tensor either way. While a slot holds a tensor's
/// storage, the ledger counts those bytes as saved activations.
public final class SavedTensor {
    public let info: SavedTensorInfo
    public private(set) var payload: SavedPayload?
    /// Hooks that packed the payload, innermost first.
    private var packedBy: [SavedTensorHooks]
    /// The holds on a tensor payload's storage or a packed payload's parts (their bytes count as
    /// saved activations meanwhile).
    private var hold: StorageHold?
    private var partHolds: [StorageHold] = []

    /// Saves `tensor` under `info`, applying the current hook stack (innermost first).
    package init(_ tensor: Tensor, info: SavedTensorInfo, hooks: [SavedTensorHooks]) {
        self.info = info
        var payload = SavedPayload.tensor(tensor)
        var applied: [SavedTensorHooks] = []
        for hook in hooks.reversed() {
            guard case .tensor(let t) = payload else { break }
            payload = hook.pack(t, info)
            applied.append(hook)
        }
        self.packedBy = applied
        self.payload = payload
        takeHolds(on: payload)
    }

    /// The tensor this slot holds as it is, without work: the saved tensor itself, or what a
    /// deferred payload has at hand (``DeferredTensor/peek()``); nil when packed or not at hand.
    public var heldTensor: Tensor? {
        switch payload {
        case .tensor(let t)?: return t
        case .deferred(let d)?: return d.peek()
        default: return nil
        }
    }

    private func takeHolds(on payload: SavedPayload) {
        switch payload {
        case .tensor(let t): hold = StorageHold(t.storage)
        case .packed(let p): partHolds = p.parts.map { StorageHold($0.storage) }
        case .deferred: break
        }
    }

    /// Replaces what the slot holds (used by checkpointing and offloading to drop or move a saved
    /// tensor after the fact). The new payload is unpacked without hooks.
    public func replacePayload(_ newPayload: SavedPayload) {
        releasePayload()
        packedBy = []
        payload = newPayload
        takeHolds(on: newPayload)
    }

    /// Whether the slot still holds something.
    public var isHolding: Bool { payload != nil }

    /// The saved tensor, as backward needs it.
    public func unpack() -> Tensor {
        guard var current = payload else {
            preconditionFailure("SavedTensor.unpack: \(info.name) was already released (backward run twice without retaining the graph?)")
        }
        if packedBy.isEmpty {
            switch current {
            case .tensor(let t): return t
            case .packed(let p): return p.unpack(label: info.name)
            case .deferred(let d): return d.materialize()
            }
        }
        var result: Tensor! = nil
        for hook in packedBy.reversed() {
            result = hook.unpack(current, info)
            current = .tensor(result)
        }
        return result
    }

    /// Lets go of the payload (after backward used it).
    public func release() { releasePayload() }

    private func releasePayload() {
        guard let p = payload else { return }
        payload = nil
        hold = nil
        partHolds = []
        if case .deferred(let d) = p { d.discard() }
    }

    deinit { if case .deferred(let d)? = payload { d.discard() } }
}
