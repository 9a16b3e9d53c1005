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
/// Every forward goes through ``scoped(_:)``, which names the ops inside it by the module's path
/// (the names saved tensors carry in profiles, plans and reports), and is the one place where
/// checkpointing policies wrap a module call.
///
/// Ownership: a model is used by one thread at a time.
open class Module {
    /// Relative name under the parent (`qkv`, `blocks.3`); "" for the root.
    public internal(set) var pathComponent: String = ""
    /// Full path from the root (`blocks.3.attn.qkv`); "" for the root.
    public internal(set) var path: String = ""
    /// Training mode (dropout active, BatchNorm uses batch statistics).
    public private(set) var isTraining = true
    /// Wraps every call of this module made through ``scoped(_:_:)`` (checkpointing policies set it);
    /// nil runs the body directly. Arguments: the module, its input, the forward body.
    public var callWrapper: ((Module, Tensor, @escaping (Tensor) -> Tensor) -> Tensor)?

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

    /// Runs `body(input)` as this module's forward: ops inside are named under the module's path,
    /// and the call wrapper (checkpointing) applies — this is the one place where policies
    /// intercept module calls. `body` may be run again in backward (recompute), so it must depend
    /// only on `input`, the module's parameters and replayable random streams.
    public func scoped(_ input: Tensor, _ body: @escaping (Tensor) -> Tensor) -> Tensor {
        withNameScope(pathComponent) {
            if let wrap = callWrapper { return wrap(self, input, body) }
            return body(input)
        }
    }

    /// Runs `body` with ops named under the module's path (for forwards that take several inputs
    /// or none; such calls are not intercepted by checkpointing policies).
    public func scoped(_ body: () -> Tensor) -> Tensor {
        withNameScope(pathComponent) { body() }
    }

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
                if label.hasPrefix("$") || label == "callWrapper" || label == "pathComponent" || label == "path" || label == "isTraining" { continue }
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
