/// A layer or model: a tree of named child modules and tensors.
///
/// Paths are derived, not typed: a module's children and tensors are found by reflection over its
/// stored properties, and each gets the property's name converted to snake_case (`tokEmb` →
/// `tok_emb`), or the name a subclass gives in ``keyOverrides`` (BERT's `LayerNorm`, `self`).
/// Arrays of modules are numbered (`blocks.3`; an array whose key is overridden to "" is numbered
/// directly, as `nn.Sequential` is: `downsample.0`). So a parameter's path is exactly its PyTorch
/// `state_dict` name: `blocks.3.attn.qkv.weight`.
///
/// A tensor property that requires grad is a parameter; one that does not is a buffer (BatchNorm's
/// running statistics). Call ``finalize()`` once after building a model (models do it in `init`):
/// it assigns every module its path and moves parameters into the ledger's parameters category.
///
/// Every forward goes through ``scoped(_:_:)`` with the tensors it reads: it names the ops inside
/// by the module's path (the names saved tensors carry in profiles, plans and reports) and is the
/// one place where the model's ``ModuleExecution`` (checkpointing policies, memory plans) decides
/// how the call runs.
///
/// Ownership: a model is used by one thread at a time.
open class Module {
    /// Relative name under the parent (`qkv`, `blocks.3`); "" for the root.
    public internal(set) var pathComponent: String = ""
    /// Full path from the root (`blocks.3.attn.qkv`); "" for the root.
    public internal(set) var path: String = ""
    /// Training mode (dropout active, BatchNorm uses batch statistics).
    public private(set) var isTraining = true
    /// The tree's shared state (its execution), set by ``finalize()``; a module never finalized has its own.
    private lazy var tree = ModuleTree()

    public init() {}

    /// Property-name → key overrides for names that are not the snake_case of the property.
    open class var keyOverrides: [String: String] { [:] }

    /// A short type name shown in reports (`Linear`, `CausalSelfAttention`).
    open var typeName: String { String(describing: type(of: self)) }

    // MARK: Tree

    /// Direct children with their keys, in declaration order.
    public var namedChildren: [(String, Module)] {
        var result: [(String, Module)] = []
        for (label, value) in reflectedProperties() {
            if let m = value as? Module {
                result.append((label, m))
            } else if let ms = value as? [Module] {
                for (i, m) in ms.enumerated() { result.append((label.isEmpty ? "\(i)" : "\(label).\(i)", m)) }
            }
        }
        return result
    }

    /// Tensors held directly by this module (parameters and buffers) with their keys.
    public var namedLocalTensors: [(String, Tensor)] {
        reflectedProperties().compactMap { label, value in (value as? Tensor).map { (label, $0) } }
    }

    /// This module and every descendant, depth first, with full paths.
    public var namedModules: [(String, Module)] {
        var result: [(String, Module)] = [(path, self)]
        for (_, child) in namedChildren { result += child.namedModules }
        return result
    }

    /// Every parameter (tensor requiring grad) with its full path, each tensor once (tied weights
    /// appear under their first path).
    public var namedParameters: [(String, Tensor)] { namedTensors.filter { $0.1.requiresGrad } }

    /// Every buffer (tensor not requiring grad) with its full path.
    public var namedBuffers: [(String, Tensor)] { namedTensors.filter { !$0.1.requiresGrad } }

    public var parameters: [Tensor] { namedParameters.map(\.1) }

    /// Parameters and buffers with full paths, each tensor once.
    public var namedTensors: [(String, Tensor)] {
        var seen = Set<ObjectIdentifier>()
        var result: [(String, Tensor)] = []
        func visit(_ m: Module, _ prefix: String) {
            for (k, t) in m.namedLocalTensors where seen.insert(ObjectIdentifier(t)).inserted {
                result.append((prefix.isEmpty ? k : prefix + "." + k, t))
            }
            for (k, child) in m.namedChildren { visit(child, prefix.isEmpty ? k : prefix + "." + k) }
        }
        visit(self, "")
        return result
    }

    /// Number of parameter elements.
    public var parameterCount: Int { parameters.reduce(0) { $0 + $1.count } }

    /// Assigns keys and paths to the whole tree and registers parameters with the ledger
    /// (parameters category, names set). Call once on the root after building.
    public func finalize() {
        assignPaths(component: "", parentPath: "")
        let shared = ModuleTree()
        for (_, m) in namedModules { m.tree = shared }
        for (name, t) in namedTensors {
            if t.requiresGrad {
                if t.storage.baseCategory != .parameters { t.storage.setCategory(.parameters) }
            }
            t.name = name
        }
    }

    private func assignPaths(component: String, parentPath: String) {
        self.pathComponent = component
        self.path = parentPath.isEmpty ? component : (component.isEmpty ? parentPath : parentPath + "." + component)
        for (k, child) in namedChildren { child.assignPaths(component: k, parentPath: path) }
    }

    /// Sets training or evaluation mode on the whole tree.
    public func train(_ on: Bool = true) {
        for (_, m) in namedModules { m.isTraining = on }
    }

    /// Evaluation mode on the whole tree.
    public func eval() { train(false) }

    /// Clears every parameter's gradient.
    public func zeroGrad() { for p in parameters { p.grad = nil } }

    // MARK: Calls

    /// How calls of this model's modules run (nil: plainly). One value for the whole tree (set on
    /// any module of a finalized model, it is the model's): checkpointing policies and memory
    /// plans set it as a whole (``applyCheckpointing(_:options:)``, ``applyPlan(_:)``); a scope
    /// may run the model under another without touching it (``withModuleExecution(_:_:)``).
    public var execution: (any ModuleExecution)? {
        get { tree.execution }
        set { tree.execution = newValue }
    }

    /// Runs `body(inputs)` as this module's forward: ops inside are named under the module's path,
    /// and the execution in force (a scope's, else the model's) decides how the call runs — this is
    /// the one place where checkpointing and plans intercept module calls. `body` may run again in
    /// backward (recompute), so it must depend only on `inputs` (every activation it reads), the
    /// module's parameters and replayable random streams.
    public func scoped(_ inputs: [Tensor], _ body: @escaping ([Tensor]) -> [Tensor]) -> [Tensor] {
        withNameScope(pathComponent) {
            applyingSavedTensorPolicy {
                guard let execution = ModuleExecutionScope.current ?? tree.execution else { return body(inputs) }
                return execution.run(self, inputs, body)
            }
        }
    }

    /// What the model does with the tensors its forward saves for backward, beyond keeping or
    /// recomputing them (activation compression; nil: nothing). One value for the whole tree, as
    /// ``execution`` is; in force from the outermost module call (or ``modelScope(_:)``) of each
    /// forward, outside every checkpoint region, so a region decides first what it drops and the
    /// policy sees only what is kept. Never in force in a recompute.
    public var savedTensorPolicy: (any SavedTensorPolicy)? {
        get { tree.savedTensorPolicy }
        set { tree.savedTensorPolicy = newValue }
    }

    /// Runs `body` as a whole forward of this model: the ops inside are named from the root (a loss
    /// computed outside the model's modules, `loss/cross_entropy#0`, is named alike every step) and
    /// the model's ``savedTensorPolicy`` is in force for every tensor they save.
    public func modelScope<R>(_ body: () -> R) -> R {
        withNameScope("") { applyingSavedTensorPolicy(body) }
    }

    /// Runs `body` with the model's saved-tensor policy in force, unless it already is (an inner
    /// call), there is none, nothing is recorded, or this is a recompute.
    private func applyingSavedTensorPolicy<R>(_ body: () -> R) -> R {
        guard let policy = tree.savedTensorPolicy else { return body() }
        let ctx = AutogradContext.current
        let id = ObjectIdentifier(tree)
        guard ctx.gradEnabled, !ctx.isRecomputing, SavedTensorPolicyScope.current?.tree != id else { return body() }
        let session = policy.beginForward()
        return SavedTensorPolicyScope.$current.withValue(.init(tree: id, hooks: session.hooks)) {
            AutogradContext.with({ ctx in
                ctx.savedTensorHooks.append(session.hooks)
                if let observe = session.opObserver {
                    let outer = ctx.opObserver
                    ctx.opObserver = { node, output in observe(node, output); outer?(node, output) }
                }
            }, body)
        }
    }

    /// ``scoped(_:_:)-([Tensor],_)`` for one input and one output.
    public func scoped(_ input: Tensor, _ body: @escaping (Tensor) -> Tensor) -> Tensor {
        scoped([input]) { [body($0[0])] }[0]
    }

    /// ``scoped(_:_:)-([Tensor],_)`` for two inputs and one output.
    public func scoped(_ a: Tensor, _ b: Tensor, _ body: @escaping (Tensor, Tensor) -> Tensor) -> Tensor {
        scoped([a, b]) { [body($0[0], $0[1])] }[0]
    }

    /// ``scoped(_:_:)-([Tensor],_)`` for a forward that reads no activation (only parameters).
    public func scoped(_ body: @escaping () -> Tensor) -> Tensor {
        scoped([]) { _ in [body()] }[0]
    }

    /// Whether this module's forward may run as a checkpoint region (run again in backward). A
    /// module whose forward has effects a recompute would repeat (it counts its calls, logs, updates
    /// state without checking ``isRecomputing``) returns false: policies and plans that name it
    /// throw instead of checkpointing it.
    open var supportsRecompute: Bool { true }

    // MARK: Reflection

    private func reflectedProperties() -> [(String, Any)] {
        var result: [(String, Any)] = []
        let overrides = Self.keyOverrides
        var mirror: Mirror? = Mirror(reflecting: self)
        var levels: [[(String, Any)]] = []
        while let m = mirror {
            var level: [(String, Any)] = []
            for child in m.children {
                guard var label = child.label else { continue }
                if label.hasPrefix("$") || label == "tree" || label == "pathComponent" || label == "path" || label == "isTraining" { continue }
                if label.hasPrefix("_") { label.removeFirst() }
                var value: Any = child.value
                // Unwrap optionals (an absent bias is skipped).
                let vm = Mirror(reflecting: value)
                if vm.displayStyle == .optional {
                    guard let some = vm.children.first?.value else { continue }
                    value = some
                }
                guard value is Module || value is [Module] || value is Tensor else { continue }
                level.append((overrides[label] ?? Module.snakeCase(label), value))
            }
            levels.append(level)
            mirror = m.superclassMirror
        }
        // Superclass properties first (declaration order as in the source).
        for level in levels.reversed() { result += level }
        return result
    }

    /// `tokEmb` → `tok_emb`, `lnF` → `ln_f`, `ln1` → `ln1`.
    static func snakeCase(_ name: String) -> String {
        var out = ""
        for ch in name {
            if ch.isUppercase {
                if !out.isEmpty { out.append("_") }
                out.append(contentsOf: ch.lowercased())
            } else {
                out.append(ch)
            }
        }
        return out
    }
}

/// The state a model's modules share: how their calls run.
private final class ModuleTree {
    var execution: (any ModuleExecution)?
    var savedTensorPolicy: (any SavedTensorPolicy)?
}

/// A model-wide treatment of saved tensors other than keep or recompute (activation compression
/// in the checkpoint layer): it gives each forward of the model a fresh pair of saved-tensor
/// hooks (and, if it needs to see ops, an observer), applied outside every checkpoint region.
public protocol SavedTensorPolicy: Sendable, CustomStringConvertible {
    /// Called once per forward of the model (never in a recompute).
    func beginForward() -> SavedTensorPolicySession
    /// Called after backward, before the optimizer steps: throws what went wrong with the saved
    /// tensors meanwhile (a spill file that could not be read), so wrong gradients are never applied.
    func checkAfterBackward() throws
}

extension SavedTensorPolicy {
    public func checkAfterBackward() throws {}
}

/// What a ``SavedTensorPolicy`` applies during one forward.
public struct SavedTensorPolicySession: Sendable {
    public var hooks: SavedTensorHooks
    /// Sees every op recorded in the forward (before outer observers), if set.
    public var opObserver: (@Sendable (Node, Tensor) -> Void)?
    public init(hooks: SavedTensorHooks, opObserver: (@Sendable (Node, Tensor) -> Void)? = nil) {
        self.hooks = hooks
        self.opObserver = opObserver
    }
}

/// The model tree whose saved-tensor policy is in force in this task (so inner calls do not apply it again).
private enum SavedTensorPolicyScope {
    struct Active: Sendable {
        let tree: ObjectIdentifier
        let hooks: SavedTensorHooks
    }
    @TaskLocal static var current: Active?
}

/// The hooks of the saved-tensor policy in force in this forward, if any: a checkpoint region
/// holds the outputs it keeps for its recompute through them, as the slots it keeps are.
package var savedTensorPolicyHooksInForce: SavedTensorHooks? { SavedTensorPolicyScope.current?.hooks }

/// Decides how the calls of a model's modules run: plainly, as checkpoint regions, under a memory
/// plan. Checkpointing policies and plans are the implementations (in the layers above); the
/// model holds one (``Module/execution``) or none.
public protocol ModuleExecution: Sendable {
    /// Runs one call of `module` on `inputs`; `body` is its forward.
    func run(_ module: Module, _ inputs: [Tensor], _ body: @escaping ([Tensor]) -> [Tensor]) -> [Tensor]
    /// Runs the block chain of `model` (``BlockChainModel``) on `input`: `blocks` in order.
    func runChain(of model: Module, _ blocks: [(Tensor) -> Tensor], _ input: Tensor) -> Tensor
}

extension ModuleExecution {
    public func runChain(of model: Module, _ blocks: [(Tensor) -> Tensor], _ input: Tensor) -> Tensor {
        blocks.reduce(input) { x, block in block(x) }
    }
}

/// The execution a scope imposes on every module call inside it (``withModuleExecution(_:_:)``).
enum ModuleExecutionScope {
    @TaskLocal static var current: (any ModuleExecution)?
}

/// Runs `body` with every module call inside it run by `execution` instead of its model's own
/// (step capture profiles a model this way without changing it).
public func withModuleExecution<R>(_ execution: any ModuleExecution, _ body: () throws -> R) rethrows -> R {
    try ModuleExecutionScope.$current.withValue(execution, operation: body)
}

/// The execution in force for a call of `module` (a scope's, else its model's).
func currentExecution(for module: Module) -> (any ModuleExecution)? { ModuleExecutionScope.current ?? module.execution }

/// A model made of declared repeated blocks: the units checkpointing policies wrap, memory plans
/// recompute in and chain schedules run (GPT's transformer blocks, ResNet's bottlenecks, BERT's layers).
public protocol BlockModel: Module {
    associatedtype Block: Module
    /// The blocks, in the order the forward runs them.
    var blocks: [Block] { get }
}

/// A model that maps a batch's input and targets to a scalar loss.
public protocol TrainableModel: Module {
    func loss(_ input: Tensor, targets: Tensor) -> Tensor
}

/// A language-model training task: `[B, T]` tokens and next-token targets.
public protocol LanguageModel: TrainableModel {
    var contextLength: Int { get }
}

/// A module with one tensor in and one out.
public protocol UnaryLayer: Module {
    func callAsFunction(_ x: Tensor) -> Tensor
}

/// A model whose blocks form a chain `x → block₀ → block₁ → …` that chain schedules can run; its
/// forward runs them through ``runBlockChain(_:)``.
public protocol BlockChainModel: BlockModel where Block: UnaryLayer {}

extension BlockChainModel {
    /// Runs the blocks in order on `x`, as the execution in force says (under a chain schedule, or plainly).
    public func runBlockChain(_ x: Tensor) -> Tensor {
        let calls = blocks.map { block in { (h: Tensor) in block(h) } }
        guard let execution = currentExecution(for: self) else { return calls.reduce(x) { h, f in f(h) } }
        return execution.runChain(of: self, calls, x)
    }
}

extension Module {
    /// The declared blocks (``BlockModel``) with their paths, in forward order; none for a model
    /// that declares none.
    public var blockModules: [(String, Module)] {
        guard let model = self as? any BlockModel else { return [] }
        return Self.blocks(of: model).map { ($0.path, $0) }
    }

    private static func blocks<M: BlockModel>(of model: M) -> [Module] { model.blocks }

    /// The regions a memory plan may recompute in: every ``ForwardRegion`` (a stem) and every
    /// block, in the order the model declares them — those that can run again
    /// (``supportsRecompute``).
    public var planningRegions: [(String, Module)] {
        let blocks = Set(blockModules.map(\.0))
        return namedModules.filter { path, m in (blocks.contains(path) || m is ForwardRegion) && m.supportsRecompute }
    }
}
