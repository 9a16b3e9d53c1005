/// Checkpointing policies applied to a whole model in one call (like HF's
/// `gradient_checkpointing_enable` and the seed's SelectiveCheckpoint policies).
///
/// "Blocks" are the repeated units a model declares (``BlockModel``: `blocks.3`, `encoder.layer.2`,
/// `layer3.1`). Region policies run modules as ``checkpoint(_:options:_:)`` regions; chain policies
/// run the model's block chain (``BlockChainModel``) under a ``ChainSchedule``. Either way the
/// policy becomes the model's ``ExecutionStrategy``.
public enum CheckpointPolicy: Sendable, Hashable, CustomStringConvertible {
    /// No checkpointing.
    case none
    /// Every block is a region.
    case all
    /// Blocks 0, 2, 4, … are regions.
    case alternate
    /// The block chain in segments of `k` blocks (only each segment's input is kept).
    case everyK(Int)
    /// The block chain in √L segments.
    case sqrt
    /// The block chain in nested segments, `levels` deep.
    case recursive(levels: Int)
    /// The block chain's optimal binomial schedule with `slots` slots (Revolve).
    case revolve(slots: Int)
    /// Keep only the chain's input; recompute from it (quadratic).
    case storeNothing
    /// Attention modules, and linears / convolutions with at least `largeParameters` parameters.
    case heavyOps(largeParameters: Int)
    /// The outermost modules (below the root) with at least `minimumParameters` parameters.
    case auto(minimumParameters: Int)
    /// Every block a region that keeps the op outputs `policy` chooses and recomputes the rest.
    case selective(SelectivePolicy)
    /// The modules at these paths (`blocks.0.attn`, `encoder.layer.3`) as regions.
    case modules([String])

    /// Keep the outputs of linear layers, convolutions and attention's `P·V`; recompute `QKᵀ`, the
    /// softmax, norms and activations (``SelectivePolicy/saveMatmuls``).
    public static let saveMatmuls = CheckpointPolicy.selective(.saveMatmuls)

    public static let defaultHeavyTypes: Set<String> = ["CausalSelfAttention", "BertSelfAttention"]

    public var description: String {
        switch self {
        case .none: return "none"
        case .all: return "all"
        case .alternate: return "alternate"
        case .everyK(let k): return "every-k:\(k)"
        case .sqrt: return "sqrt"
        case .recursive(let l): return "recursive:\(l)"
        case .revolve(let s): return "revolve:\(s)"
        case .storeNothing: return "store-nothing"
        case .heavyOps(let n): return n == 1 << 18 ? "heavy-ops" : "heavy-ops:\(n)"
        case .auto(let n): return n == 1_000_000 ? "auto" : "auto:\(n)"
        case .selective(let p): return p.description
        case .modules(let paths): return "modules:" + paths.joined(separator: ",")
        }
    }

    public enum ParseError: Error, CustomStringConvertible, Equatable {
        case unknown(String)
        case badParameter(policy: String, reason: String)
        public var description: String {
            switch self {
            case .unknown(let s):
                return "unknown checkpoint policy '\(s)'; use none, all, alternate, every-k:K, sqrt, recursive:L, revolve:S, store-nothing, heavy-ops[:PARAMS], auto[:PARAMS], save-matmuls, modules:PATH[,PATH...]"
            case .badParameter(let p, let reason):
                return "checkpoint policy '\(p)': \(reason)"
            }
        }
    }

    /// Most blocks or levels a chain policy's parameter may name (beyond any model).
    public static let maximumParameter = 1 << 20

    /// Parses the CLI spelling (`every-k:2`, `revolve:3`, `heavy-ops`, …).
    public static func parse(_ text: String) throws -> CheckpointPolicy {
        let parts = text.split(separator: ":", maxSplits: 1).map(String.init)
        guard !parts.isEmpty else { throw ParseError.unknown(text) }
        if parts.count == 2, parts[0] == "modules" {
            let paths = parts[1].split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            guard !paths.contains(where: \.isEmpty) else {
                throw ParseError.badParameter(policy: text, reason: "module paths are separated by single commas, none empty (modules:blocks.0,blocks.2)")
            }
            return .modules(paths)
        }
        let arg = parts.count > 1 ? Int(parts[1]) : nil
        if parts.count > 1 {
            let what = ["every-k": "K (blocks per segment)", "recursive": "L (levels)", "revolve": "S (slots)",
                        "heavy-ops": "PARAMS (parameters)", "auto": "PARAMS (parameters)"][parts[0]]
            guard let what else {
                let plain = ["none", "all", "alternate", "sqrt", "store-nothing", "save-matmuls"]
                if plain.contains(parts[0]) { throw ParseError.badParameter(policy: text, reason: "\(parts[0]) takes no parameter") }
                throw ParseError.unknown(text)
            }
            let limit = ["heavy-ops", "auto"].contains(parts[0]) ? Int.max : maximumParameter
            guard let arg, arg >= 1, arg <= limit else {
                throw ParseError.badParameter(policy: text, reason: "\(what) must be a whole number from 1 to \(limit), got '\(parts[1])'")
            }
        }
        switch parts[0] {
        case "none" where arg == nil: return .none
        case "all" where arg == nil: return .all
        case "alternate" where arg == nil: return .alternate
        case "every-k" where arg != nil: return .everyK(arg!)
        case "sqrt" where arg == nil: return .sqrt
        case "recursive": return .recursive(levels: arg ?? 3)
        case "revolve" where arg != nil: return .revolve(slots: arg!)
        case "store-nothing" where arg == nil: return .storeNothing
        case "heavy-ops": return .heavyOps(largeParameters: arg ?? 1 << 18)
        case "auto": return .auto(minimumParameters: arg ?? 1_000_000)
        case "save-matmuls" where arg == nil: return .saveMatmuls
        case "every-k", "revolve":
            throw ParseError.badParameter(policy: text, reason: "\(parts[0]) needs its parameter: \(parts[0] == "revolve" ? "revolve:S (slots)" : "every-k:K (blocks per segment)")")
        default: throw ParseError.unknown(text)
        }
    }

    /// The chain schedule this policy asks for, if it is a chain policy.
    public var sequentialSchedule: SequentialSchedule? {
        switch self {
        case .everyK(let k): return .everyK(k)
        case .sqrt: return .sqrt
        case .recursive(let l): return .recursive(levels: l)
        case .revolve(let s): return .revolve(slots: s)
        case .storeNothing: return .storeNothing
        default: return nil
        }
    }
}

/// How a model's module calls run, as one value: which modules (by path) run as checkpoint regions
/// and with what decision per op, and whether the block chain runs under a schedule. Policies
/// compute one (``Module/applyCheckpointing(_:options:)``), memory plans too (``Module/applyPlan(_:)``);
/// the model holds it as its ``Module/execution``.
public struct ExecutionStrategy: ModuleExecution, Hashable {
    /// How the calls of one module run.
    public enum Region: Sendable, Hashable {
        /// A checkpoint region (``checkpoint(_:options:_:)``): recompute what it saves, or keep what
        /// `options.selective` saves.
        case checkpoint(CheckpointOptions)
        /// A region under a memory plan: recompute the named ops (stable names), keep the rest.
        case planned(recompute: Set<String>)
    }

    /// Modules run as regions, by path.
    public var regions: [String: Region]
    /// The block chain's schedule (``BlockChainModel``), if it runs under one.
    public var chain: Chain?

    /// A chain schedule for a model's block chain.
    public struct Chain: Sendable, Hashable {
        public var schedule: SequentialSchedule
        public var options: CheckpointOptions
        public init(_ schedule: SequentialSchedule, options: CheckpointOptions = .init()) {
            self.schedule = schedule
            self.options = options
        }
    }

    public init(regions: [String: Region] = [:], chain: Chain? = nil) {
        self.regions = regions
        self.chain = chain
    }

    public func run(_ module: Module, _ inputs: [Tensor], _ body: @escaping ([Tensor]) -> [Tensor]) -> [Tensor] {
        guard isGradEnabled, let region = regions[module.path] else { return body(inputs) }
        switch region {
        case .checkpoint(let options):
            return checkpoint(inputs, options: options, body)
        case .planned(let recompute):
            return CheckpointRegion(inputs: inputs, options: CheckpointOptions(), decisions: .planned(recompute), body: body).run(inputs)
        }
    }

    public func runChain(of model: Module, _ blocks: [(Tensor) -> Tensor], _ input: Tensor) -> Tensor {
        guard let chain else { return blocks.reduce(input) { x, block in block(x) } }
        return checkpointSequential(blocks, input, schedule: chain.schedule.schedule(length: blocks.count),
                                    parameters: model.blockModules.flatMap(\.1.parameters), options: chain.options)
    }
}

extension Module {
    /// Applies `policy` to the whole model (replacing any strategy set before) and returns the
    /// paths of the modules now checkpointed (for chain policies, the blocks the chain covers).
    ///
    /// Throws when the policy needs blocks the model does not declare, names a module the model
    /// does not have, or names one that cannot run as a region (``Module/supportsRecompute``).
    @discardableResult
    public func applyCheckpointing(_ policy: CheckpointPolicy, options: CheckpointOptions = .init()) throws -> [String] {
        let blocks = blockModules
        func needBlocks() throws {
            if blocks.isEmpty { throw CheckpointPolicyError.noBlocks(policy: policy.description, model: typeName) }
        }
        switch policy {
        case .none:
            execution = nil
            return []
        case .all:
            try needBlocks()
            return try checkpointRegions(blocks, options)
        case .selective(let selective):
            try needBlocks()
            var o = options
            o.selective = selective
            return try checkpointRegions(blocks, o)
        case .alternate:
            try needBlocks()
            return try checkpointRegions(blocks.enumerated().filter { $0.offset % 2 == 0 }.map(\.element), options)
        case .heavyOps(let large):
            return try applyCheckpointing(options: options) { _, m in
                CheckpointPolicy.defaultHeavyTypes.contains(m.typeName)
                    || (["Linear", "Conv2d"].contains(m.typeName) && m.parameterCount >= large)
            }
        case .auto(let minimum):
            return try applyCheckpointing(options: options) { path, m in !path.isEmpty && m.parameterCount >= minimum }
        case .modules(let paths):
            let byPath = Dictionary(namedModules, uniquingKeysWith: { a, _ in a })
            let chosen = try paths.map { path -> (String, Module) in
                guard let m = byPath[path] else { throw CheckpointPolicyError.unknownModule(path: path, model: typeName) }
                return (path, m)
            }
            return try checkpointRegions(chosen, options)
        case .everyK, .sqrt, .recursive, .revolve, .storeNothing:
            guard self is any BlockChainModel, let schedule = policy.sequentialSchedule else {
                throw CheckpointPolicyError.noBlockChain(policy: policy.description, model: typeName)
            }
            execution = ExecutionStrategy(chain: .init(schedule, options: options))
            return blocks.map(\.0)
        }
    }

    /// Runs as checkpoint regions the outermost modules for which `predicate(path, module)` holds
    /// (a module inside a chosen one is not chosen again), replacing any strategy set before.
    /// Returns their paths; throws when one cannot run as a region (``Module/supportsRecompute``).
    @discardableResult
    public func applyCheckpointing(options: CheckpointOptions = .init(), where predicate: (String, Module) -> Bool) throws -> [String] {
        var chosen: [(String, Module)] = []
        func visit(_ m: Module) {
            if predicate(m.path, m) { chosen.append((m.path, m)); return }
            for (_, c) in m.namedChildren { visit(c) }
        }
        visit(self)
        return try checkpointRegions(chosen, options)
    }

    private func checkpointRegions(_ modules: [(String, Module)], _ options: CheckpointOptions) throws -> [String] {
        for (path, m) in modules where !m.supportsRecompute {
            throw CheckpointPolicyError.notRecomputable(path: path, type: m.typeName)
        }
        execution = ExecutionStrategy(regions: Dictionary(modules.map { ($0.0, .checkpoint(options)) }, uniquingKeysWith: { a, _ in a }))
        return modules.map(\.0)
    }
}

public enum CheckpointPolicyError: Error, CustomStringConvertible, Equatable {
    case noBlockChain(policy: String, model: String)
    case noBlocks(policy: String, model: String)
    case unknownModule(path: String, model: String)
    case notRecomputable(path: String, type: String)
    public var description: String {
        switch self {
        case .noBlockChain(let policy, let model):
            return "policy \(policy) needs a model whose blocks form a chain; \(model) does not declare one (use all, alternate, heavy-ops or auto)"
        case .noBlocks(let policy, let model):
            return "policy \(policy) checkpoints a model's blocks; \(model) declares none (conform it to BlockModel, or use heavy-ops, auto or modules:PATHS)"
        case .unknownModule(let path, let model):
            return "policy names module '\(path)', which \(model) does not have (module paths are state-dict prefixes: blocks.0, encoder.layer.3.attention)"
        case .notRecomputable(let path, let type):
            return "module \(path) (\(type)) cannot run as a checkpoint region: its forward has effects a recompute would repeat"
        }
    }
}
