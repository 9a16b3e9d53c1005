/// Activation offload: the saved tensors a selector chooses leave compute memory for a
/// ``SpillStore`` (files, written in the background) until backward reads them back — lossless,
/// so gradients are bitwise those of keeping (DeepSpeed's activation offload and PyTorch's
/// `save_on_cpu`, to disk here; this machine has no device memory to offload from).
///
/// Composition: as compression, offload applies outside every checkpoint region, to what a region
/// keeps (`--policy all` with `op=checkpoint`: every block's input); a recomputed tensor is never
/// offloaded. A tensor a compression rule packs is not offloaded as well. Tensors smaller than
/// ``minimumBytes`` stay (a file per tiny tensor costs more than it frees). Slots saving one
/// storage share one file, also those the selector does not choose (a block's input, offloaded
/// as its region's input, is read by its first norm too: keeping it for the norm would keep it).
public struct ActivationOffload: Sendable, CustomStringConvertible {
    public let store: SpillStore
    public var selector: SavedTensorSelector
    public var minimumBytes: Int

    public init(to store: SpillStore, where selector: SavedTensorSelector = .ops(["checkpoint"]), minimumBytes: Int = 1 << 16) {
        self.store = store
        self.selector = selector
        self.minimumBytes = minimumBytes
    }

    public var description: String { "offload:\(selector)" }
}

/// What a model does with its saved activations besides keeping or recomputing them: compression
/// rules and offload, applied in that order (a packed tensor stays in memory).
public struct SavedActivationTreatment: SavedTensorPolicy {
    public var compression: ActivationCompression?
    public var offload: ActivationOffload?

    public init(compression: ActivationCompression? = nil, offload: ActivationOffload? = nil) {
        self.compression = compression
        self.offload = offload
    }

    public var description: String {
        [compression?.description, offload?.description].compactMap { $0 }.joined(separator: " ")
    }

    public func beginForward() -> SavedTensorPolicySession {
        let packing = compression.map { CompressionSession($0.rules) }
        let spilling = offload.map { SpillSession($0, tags: packing?.tags ?? StorageTags()) }
        let tags = packing?.tags ?? spilling?.tags
        let hooks = SavedTensorHooks(pack: { t, info in
            var payload = packing?.pack(t, info) ?? .tensor(t)
            if case .tensor(let kept) = payload, let spilling { payload = spilling.pack(kept, info) }
            return payload
        }, unpack: unpackTreated)
        let needsTags = [compression?.rules.map(\.selector), offload.map { [$0.selector] }].compactMap { $0 }.joined().contains { s in
            if case .tags = s.term { return true }
            return false
        }
        guard needsTags else { return SavedTensorPolicySession(hooks: hooks) }
        return SavedTensorPolicySession(hooks: hooks, opObserver: { node, output in tags?.observe(node, output) })
    }

    public func checkAfterBackward() throws {
        try offload?.store.checkFaults()
    }
}

/// One forward's offloading: which storages went to which handle, and the last handle made (the
/// read-ahead follows the reverse of the save order).
///
/// Ownership: used on the thread that runs the forward.
final class SpillSession: @unchecked Sendable {
    let offload: ActivationOffload
    private struct Key: Hashable {
        let storage: Int
        let layout: TensorLayout
    }
    private struct WeakHandle { weak var handle: SpillHandle? }
    private var handles: [Key: WeakHandle] = [:]
    private var last: SpillHandle?
    let tags: StorageTags

    init(_ offload: ActivationOffload, tags: StorageTags) {
        self.offload = offload
        self.tags = tags
        offload.store.beginForward()
    }

    func pack(_ t: Tensor, _ info: SavedTensorInfo) -> SavedPayload {
        guard !info.isParameter, t.byteCount >= offload.minimumBytes else { return .tensor(t) }
        let key = Key(storage: t.storage.id, layout: TensorLayout(t))
        // A tensor already offloaded is shared whoever saves it again (a region's input read by
        // the block's first norm): keeping it in memory for one slot would keep it all.
        if let h = handles[key]?.handle { return .deferred(SpillShare(h)) }
        guard offload.selector.matches(info, tags: tags[t.storage]) else { return .tensor(t) }
        let h = offload.store.spill(t.isContiguous ? t : t.contiguousCopy(), info: info, ledger: MemoryLedger.current)
        h.previous = last
        last = h
        handles[key] = WeakHandle(handle: h)
        return .deferred(SpillShare(h))
    }
}

func unpackTreated(_ payload: SavedPayload, _ info: SavedTensorInfo) -> Tensor {
    switch payload {
    case .tensor(let t): return t
    case .packed(let p as PackedTensor): return p.unpackShared(label: info.name)
    case .packed(let v as PackedTensorView): return v.unpack(label: info.name)
    case .packed(let p): return p.unpack(label: info.name)
    case .deferred(let d): return d.materialize()
    }
}

extension Module {
    /// Offloads the saved activations `offload` selects in every forward of the model (nil: none),
    /// beside any compression.
    public func applyActivationOffload(_ offload: ActivationOffload?) {
        var t = savedTensorPolicy as? SavedActivationTreatment ?? SavedActivationTreatment()
        t.offload = offload
        savedTensorPolicy = (t.compression == nil && t.offload == nil) ? nil : t
    }

    /// The activation offload in force for this model, if any.
    public var activationOffload: ActivationOffload? { (savedTensorPolicy as? SavedActivationTreatment)?.offload }
}
