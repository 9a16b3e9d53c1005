import Synchronization

/// Per-task autograd settings: grad mode, the saved-tensor hook stack, the name scope.
///
/// Held in a task-local so that nested scopes (`noGrad`, `withSavedTensorHooks`, `withNameScope`)
/// compose and unwind exactly, also when tests run in parallel.
public struct AutogradContext: Sendable {
    public var gradEnabled: Bool = true
    /// Innermost last.
    public var savedTensorHooks: [SavedTensorHooks] = []
    public var naming: NamingState? = nil
    /// True while ops re-run a forward they ran before (a recompute of dropped saved tensors).
    /// Stateful ops (BatchNorm's running statistics) must not update their state again when this is set.
    public var isRecomputing: Bool = false
    /// Called with every recorded node and its output (traces, region bookkeeping, step capture,
    /// `remat explain`); nil when nobody listens.
    public var opObserver: (@Sendable (Node, Tensor) -> Void)? = nil
    /// Asked about every op that records a node before it computes (``OpInterceptor``), innermost last.
    public var opInterceptors: [any OpInterceptor] = []
    /// Called by random ops (dropout) with the generator they are about to draw from (so a region
    /// can capture its state and replay the same stream).
    public var generatorObserver: (@Sendable (RandomGenerator) -> Void)? = nil
    /// The precision the products compute in (``AutocastPrecision``; nil: float32). Set by the
    /// checkpoint layer's `withAutocast`, and by a recompute as its forward had it.
    public var autocast: AutocastPrecision? = nil
    /// Called with every node just before its backward runs; nil when nobody listens.
    public var backwardObserver: (@Sendable (Node) -> Void)? = nil
    /// Called during backward with each leaf (a parameter) as soon as its gradient is final: every
    /// node of that backward with an edge to it has run (data parallel starts a bucket's
    /// all-reduce then). Leaves the backward does not reach are not reported; nil when nobody listens.
    public var gradientReadyObserver: (@Sendable (Tensor) -> Void)? = nil

    @TaskLocal public static var current = AutogradContext()

    /// Runs `body` with the context changed by `change`.
    public static func with<R>(_ change: (inout AutogradContext) -> Void, _ body: () throws -> R) rethrows -> R {
        var ctx = current
        change(&ctx)
        return try $current.withValue(ctx, operation: body)
    }
}

/// Whether ops record the graph (and save tensors for backward).
public var isGradEnabled: Bool { AutogradContext.current.gradEnabled }

/// Runs `body` with gradient recording off: no nodes are made, nothing is saved, and every
/// intermediate is freed as soon as its last reference goes (inference mode).
public func noGrad<R>(_ body: () throws -> R) rethrows -> R {
    try AutogradContext.with({ $0.gradEnabled = false }, body)
}

/// Whether the current forward is a recompute (see ``AutogradContext/isRecomputing``).
public var isRecomputing: Bool { AutogradContext.current.isRecomputing }

/// Runs `body` with gradient recording on (inside a `noGrad` scope, for example).
public func enableGrad<R>(_ body: () throws -> R) rethrows -> R {
    try AutogradContext.with({ $0.gradEnabled = true }, body)
}

// MARK: - Names

/// The state behind stable tensor names: the module path and per-(path, op) ordinals.
///
/// A name is `path/op#ordinal` for a node (`blocks.0.attn/attention_probs#0`) and `path/op#ordinal:role`
/// for a saved tensor (`blocks.0.attn/attention_probs#0:output`). Ordinals restart each time an outermost
/// name scope is entered, so the same step gives the same names every time.
///
/// Ownership: one per outermost scope; mutated only by the thread running that scope.
public final class NamingState: @unchecked Sendable {
    public private(set) var path: [String] = []
    private var ordinals: [String: Int] = [:]

    public init() {}

    /// The current module path, components joined with ".".
    public var pathString: String { path.joined(separator: ".") }

    /// The name the next op of kind `op` here will get, without taking it.
    public func peekName(op: String) -> String {
        let p = pathString
        let key = p.isEmpty ? op : p + "/" + op
        return key + "#" + String(ordinals[key, default: 0])
    }

    /// The next name for an op of kind `op` in the current path.
    public func nextName(op: String) -> String {
        let p = pathString
        let key = p.isEmpty ? op : p + "/" + op
        let k = ordinals[key, default: 0]
        ordinals[key] = k + 1
        return key + "#" + String(k)
    }

    func push(_ component: String) { path.append(component) }
    func pop() { path.removeLast() }

    /// A copy of the ordinals and path, for replaying names exactly (recompute).
    public struct Snapshot: Sendable {
        public let path: [String]
        fileprivate let ordinals: [String: Int]
    }
    public func snapshot() -> Snapshot { Snapshot(path: path, ordinals: ordinals) }
    /// Continues from `snapshot`: its path and ordinals (a replay that skips a part of a forward
    /// names what follows as the forward did).
    package func restore(_ snapshot: Snapshot) {
        path = snapshot.path
        ordinals = snapshot.ordinals
    }
    /// A naming state that continues from `snapshot` (its ordinals and path).
    public init(restoring snapshot: Snapshot) {
        path = snapshot.path
        ordinals = snapshot.ordinals
    }
}

/// The naming state for ops run outside every name scope: ordinals only grow.
private let unscopedNaming = Mutex(NamingState())

/// Runs `body` with `component` appended to the module path of op and saved-tensor names.
/// Entering an outermost scope starts the ordinals afresh, so every step names alike.
public func withNameScope<R>(_ component: String, _ body: () throws -> R) rethrows -> R {
    if let naming = AutogradContext.current.naming {
        let pushes = !component.isEmpty
        if pushes { naming.push(component) }
        defer { if pushes { naming.pop() } }
        return try body()
    }
    let naming = NamingState()
    if !component.isEmpty { naming.push(component) }
    return try AutogradContext.with({ $0.naming = naming }, body)
}

/// Runs `body` with the naming continuing from `snapshot` (used to give recomputed ops the
/// names they had in the forward pass).
public func withNaming<R>(restoring snapshot: NamingState.Snapshot, _ body: () throws -> R) rethrows -> R {
    try AutogradContext.with({ $0.naming = NamingState(restoring: snapshot) }, body)
}

/// The stable name for the next op of kind `op` here.
public func nextOpName(_ op: String) -> String {
    if let naming = AutogradContext.current.naming { return naming.nextName(op: op) }
    return unscopedNaming.withLock { $0.nextName(op: op) }
}

/// The name the next op of kind `op` outside every name scope will get, without taking it.
func peekUnscopedOpName(_ op: String) -> String { unscopedNaming.withLock { $0.peekName(op: op) } }

/// The current module path ("" outside every scope).
public var currentNamePath: String { AutogradContext.current.naming?.pathString ?? "" }
