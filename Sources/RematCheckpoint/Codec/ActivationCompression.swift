import Synchronization

/// Which saved tensors a rule of ``ActivationCompression`` applies to, chosen by what a saved
/// tensor's stable name says: the kind of op that saved it, its role, the module it was saved in,
/// or a tag (``tag(_:_:)``) on the tensor.
public struct SavedTensorSelector: Sendable, Hashable, CustomStringConvertible {
    enum Term: Sendable, Hashable {
        case all
        case ops(Set<String>)
        case roles(Set<String>)
        case modules([String])
        case tags(Set<String>)
        case names(Set<String>)
    }
    let term: Term

    /// Every saved activation.
    public static let all = SavedTensorSelector(term: .all)
    /// Tensors saved by ops of these kinds (`matmul`, `gelu`, `layer_norm`, `checkpoint` for a
    /// region's inputs, …: the `op` of ``SavedTensorInfo``).
    public static func ops(_ kinds: Set<String>) -> SavedTensorSelector { SavedTensorSelector(term: .ops(kinds)) }
    /// Tensors saved in these roles (`input`, `output`, `lhs`, `rhs`, `input0`, …).
    public static func roles(_ roles: Set<String>) -> SavedTensorSelector { SavedTensorSelector(term: .roles(roles)) }
    /// Tensors saved inside these modules or their descendants (`blocks.3`, `blocks.0.attn`).
    public static func modules(_ paths: [String]) -> SavedTensorSelector { SavedTensorSelector(term: .modules(paths)) }
    /// Tensors whose storage an op tagged with one of these names (``tag(_:_:)``) put out.
    public static func tags(_ names: Set<String>) -> SavedTensorSelector { SavedTensorSelector(term: .tags(names)) }
    /// Tensors saved under these stable names (`blocks.0.mlp/gelu#0:input`): what a memory plan
    /// selects, one tensor at a time.
    public static func names(_ names: Set<String>) -> SavedTensorSelector { SavedTensorSelector(term: .names(names)) }

    /// The module paths a `module=` selector names (nil for the others): a caller that knows the
    /// model checks them (``Module/checkSelectedModules(_:)``).
    public var modulePaths: [String]? {
        if case .modules(let p) = term { return p }
        return nil
    }

    /// Whether the saved tensor `info` is selected; `tags` are the tags on its storage.
    public func matches(_ info: SavedTensorInfo, tags: Set<String> = []) -> Bool {
        switch term {
        case .all: return true
        case .ops(let kinds): return kinds.contains(info.op)
        case .roles(let roles): return roles.contains(info.role)
        case .modules(let paths):
            let path = info.modulePath
            return paths.contains { path == $0 || path.hasPrefix($0 + ".") }
        case .tags(let names): return !names.isDisjoint(with: tags)
        case .names(let names): return names.contains(info.name)
        }
    }

    /// The command-line spelling: `all`, `op=matmul,gelu`, `role=input`, `module=blocks.0,blocks.1`, `tag=name`.
    public var description: String {
        switch term {
        case .all: return "all"
        case .ops(let s): return "op=" + s.sorted().joined(separator: ",")
        case .roles(let s): return "role=" + s.sorted().joined(separator: ",")
        case .modules(let p): return "module=" + p.joined(separator: ",")
        case .tags(let s): return "tag=" + s.sorted().joined(separator: ",")
        case .names(let s): return "name=" + s.sorted().joined(separator: ",")
        }
    }

    /// Parses ``description``'s spelling.
    public static func parse(_ text: String) throws(CodecError) -> SavedTensorSelector {
        if text == "all" { return .all }
        let parts = text.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        let keys = ["op", "role", "module", "tag", "name"]
        guard parts.count == 2, keys.contains(parts[0]) else {
            throw .badSelector(text, reason: "use all, op=KINDS, role=ROLES, module=PATHS, tag=NAMES or name=SAVED-TENSORS (comma-separated)")
        }
        let values = parts[1].split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        guard !values.contains(where: \.isEmpty) else {
            throw .badSelector(text, reason: "\(parts[0])= takes names separated by single commas, none empty")
        }
        // A saved tensor's stable name has one ':' before its role (`blocks.0/gelu#0:input`).
        let allowsColon = parts[0] == "name"
        if let bad = values.first(where: { $0.contains(where: { $0.isWhitespace || $0 == "=" || ($0 == ":" && !allowsColon) }) }) {
            throw .badSelector(text, reason: "'\(bad)' is not a name (no spaces, '=' or ':'; one selector per rule: give two rules for two conditions)")
        }
        switch parts[0] {
        case "op":
            let known = Set(OpKind.allCases.map(\.rawValue)).union(["checkpoint"])
            if let bad = values.first(where: { !known.contains($0) }) {
                throw .badSelector(text, reason: "unknown op kind '\(bad)'; the op kinds are \(known.sorted().joined(separator: ", "))")
            }
            return .ops(Set(values))
        case "role": return .roles(Set(values))
        case "module": return .modules(values)
        case "name": return .names(Set(values))
        default: return .tags(Set(values))
        }
    }
}

extension SavedTensorInfo {
    /// The path of the module the tensor was saved in (`blocks.0.attn`; "" at the root).
    public var modulePath: String {
        guard let slash = nodeName.lastIndex(of: "/") else { return "" }
        return String(nodeName[..<slash])
    }
}

/// Activation compression: saved activations stored by a ``Codec`` between the forward that saves
/// them and the backward that reads them (PyTorch's `saved_tensors_hooks` with a codec; COAT's
/// and ActNN's compressed activations). A model applies it to every forward
/// (``Module/applyActivationCompression(_:where:)``).
///
/// Rules are tried in order; a tensor takes the codec of the first rule that selects it and whose
/// codec applies to it (``Codec/applies(to:)``: float32, not a parameter; `relu-mask` only ReLU's
/// output) and, for `bits`, that could pack it; `none` in a rule keeps what it selects as it is
/// (an exception before a broader rule). Tensors no rule takes are kept as they are.
///
/// Composition with checkpointing: compression applies outside every checkpoint region, to what a
/// region keeps — its inputs, what a plan keeps, the outputs a selective policy holds for the
/// recompute — and never to a tensor the region drops: a codec selecting a recomputed tensor is
/// ignored (`remat explain` says so), and a recompute packs nothing. With a lossy codec the
/// recompute starts from the decoded inputs, as backward reads decoded tensors.
///
/// Sharing: tensors saved by several ops from one storage (a block's input read by its norm and
/// kept by its region) are packed once per codec and layout; the slots share the packed parts, as
/// they would share the storage.
public struct ActivationCompression: Sendable, Hashable, CustomStringConvertible {
    public struct Rule: Sendable, Hashable, CustomStringConvertible {
        public var codec: Codec
        public var selector: SavedTensorSelector
        public init(_ codec: Codec, where selector: SavedTensorSelector = .all) {
            self.codec = codec
            self.selector = selector
        }
        /// `CODEC` for every saved tensor, `CODEC:WHERE` otherwise.
        public var description: String { selector == .all ? codec.description : "\(codec):\(selector)" }
    }

    public var rules: [Rule]

    public init(_ rules: [Rule]) { self.rules = rules }
    public init(_ codec: Codec, where selector: SavedTensorSelector = .all) { self.init([Rule(codec, where: selector)]) }

    /// The rules' spellings joined by spaces (`relu-mask bf16:op=matmul`).
    public var description: String { rules.map(\.description).joined(separator: " ") }

    /// Whether backward gets bitwise what it would read without compression.
    public var isLossless: Bool { rules.allSatisfy(\.codec.isLossless) }

    /// The codec the rules choose for a saved tensor (`.none`: kept as it is); `bits` is chosen
    /// here whether or not the tensor turns out to be binary.
    public func codec(for info: SavedTensorInfo, tags: Set<String> = []) -> Codec {
        rules.first { $0.selector.matches(info, tags: tags) && $0.codec.applies(to: info) }?.codec ?? .none
    }

    /// Parses command-line rules, each `CODEC` or `CODEC:WHERE` (``Rule/description``).
    public static func parse(_ specs: [String]) throws(CodecError) -> ActivationCompression {
        var rules: [Rule] = []
        for spec in specs {
            let parts = spec.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            let codec = try Codec.parse(parts[0])
            let selector = parts.count == 2 ? try SavedTensorSelector.parse(parts[1]) : .all
            rules.append(Rule(codec, where: selector))
        }
        return ActivationCompression(rules)
    }
}

/// The tags (``tag(_:_:)``) on the storages one forward made, seen through its op observer: what
/// selectors by tag read.
///
/// Ownership: used on the thread that runs the forward.
final class StorageTags: @unchecked Sendable {
    private var byStorage: [Int: Set<String>] = [:]
    func observe(_ node: Node, _ output: Tensor) {
        guard node.op.hasPrefix("tag:") else { return }
        byStorage[output.storage.id, default: []].insert(String(node.op.dropFirst(4)))
    }
    subscript(_ storage: Storage) -> Set<String> { byStorage[storage.id] ?? [] }
}

/// A view of a packed whole storage: a tensor saved from part of a storage whose whole contents
/// another slot packed (it holds the same parts, so the ledger counts them once).
public final class PackedTensorView: PackedSavedTensor, @unchecked Sendable {
    /// The packed storage.
    public let base: PackedTensor
    let layout: TensorLayout
    init(_ base: PackedTensor, _ layout: TensorLayout) {
        self.base = base
        self.layout = layout
    }
    public var parts: [Tensor] { base.parts }
    /// Decodes the whole storage (once for all the slots sharing it) and gives the view.
    public func unpack(label: String) -> Tensor { layout.view(of: base.unpackShared(label: label).storage) }
}

/// One forward's packing: the rules, what was packed (by storage and layout, so tensors sharing a
/// storage share the packed form) and the tags seen.
///
/// Ownership: used on the thread that runs the forward (and, for unpacking, its backward).
final class CompressionSession: @unchecked Sendable {
    let rules: [ActivationCompression.Rule]
    private struct Key: Hashable {
        let storage: Int
        let layout: TensorLayout
        let codec: Codec
    }
    private struct WeakPacked {
        weak var packed: PackedTensor?
    }
    private var packedByKey: [Key: WeakPacked] = [:]
    /// Packed forms of whole storages (a tensor covering its storage), by storage and codec: a
    /// view of the storage saved later (attention's q and k of a kept qkv projection) is served
    /// from it instead of being packed again.
    private struct StorageKey: Hashable {
        let storage: Int
        let codec: Codec
    }
    private var wholeStorages: [StorageKey: WeakPacked] = [:]
    private var pruneAt = 64
    let tags = StorageTags()

    init(_ rules: [ActivationCompression.Rule]) { self.rules = rules }

    func pack(_ t: Tensor, _ info: SavedTensorInfo) -> SavedPayload {
        guard !info.isParameter, t.dtype == .float32 else { return .tensor(t) }
        let tags = tags[t.storage]
        for rule in rules where rule.selector.matches(info, tags: tags) && rule.codec.applies(to: info) {
            if rule.codec == .none { return .tensor(t) }
            let key = Key(storage: t.storage.id, layout: TensorLayout(t), codec: rule.codec)
            if let p = packedByKey[key]?.packed {
                p.addSharer()
                return .packed(p)
            }
            let whole = StorageKey(storage: t.storage.id, codec: rule.codec)
            if let p = wholeStorages[whole]?.packed {
                p.addSharer()
                return .packed(PackedTensorView(p, key.layout))
            }
            guard let p = rule.codec.pack(t, label: info.name) else { continue }   // bits on a non-binary tensor
            p.addSharer()
            packedByKey[key] = WeakPacked(packed: p)
            if t.isContiguous, t.offset == 0, t.byteCount == t.storage.byteCount { wholeStorages[whole] = WeakPacked(packed: p) }
            if packedByKey.count >= pruneAt {
                packedByKey = packedByKey.filter { $0.value.packed != nil }
                wholeStorages = wholeStorages.filter { $0.value.packed != nil }
                pruneAt = max(64, 2 * packedByKey.count)
            }
            return .packed(p)
        }
        return .tensor(t)
    }
}

extension Module {
    /// Throws when a selector names a module path this model does not have (before any work).
    public func checkSelectedModules(_ selectors: [SavedTensorSelector]) throws(CodecError) {
        let paths = Set(namedModules.map(\.0))
        for s in selectors {
            for p in s.modulePaths ?? [] where !paths.contains(p) {
                throw .badSelector(s.description, reason: "\(typeName) has no module '\(p)' (module paths are state-dict prefixes: blocks.0, blocks.0.attn)")
            }
        }
    }

    /// Compresses the saved activations `selector` chooses with `codec` in every forward of the
    /// model (replacing any compression set before; `.none` removes it). Lossy codecs change the
    /// values backward reads within their stated bounds (``Codec``); nothing is compressed unless
    /// asked. Composes with checkpointing (``ActivationCompression``).
    public func applyActivationCompression(_ codec: Codec, where selector: SavedTensorSelector = .all) {
        applyActivationCompression(codec == .none ? nil : ActivationCompression(codec, where: selector))
    }

    /// Applies `compression` (nil: none) to every forward of the model, beside any offload.
    public func applyActivationCompression(_ compression: ActivationCompression?) {
        var t = savedTensorPolicy as? SavedActivationTreatment ?? SavedActivationTreatment()
        t.compression = compression.flatMap { $0.rules.isEmpty ? nil : $0 }
        savedTensorPolicy = (t.compression == nil && t.offload == nil) ? nil : t
    }

    /// The activation compression in force for this model, if any.
    public var activationCompression: ActivationCompression? { (savedTensorPolicy as? SavedActivationTreatment)?.compression }
}
