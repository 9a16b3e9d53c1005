/// Checkpointing policies applied to a whole model in one call (like HF's
/// `gradient_checkpointing_enable` and the seed's SelectiveCheckpoint policies).
///
/// "Blocks" are the repeated units of a model: the elements of its module arrays (`blocks.3`,
/// `encoder.layer.2`, `layer3.1`). Region policies wrap modules in ``checkpoint(_:options:_:)``
/// regions; chain policies run the model's block chain under a ``ChainSchedule``.
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
        }
    }

    public enum ParseError: Error, CustomStringConvertible, Equatable {
        case unknown(String)
        public var description: String {
            switch self {
            case .unknown(let s):
                return "unknown checkpoint policy '\(s)'; use none, all, alternate, every-k:K, sqrt, recursive:L, revolve:S, store-nothing, heavy-ops[:PARAMS], auto[:PARAMS], save-matmuls"
            }
        }
    }

    /// Parses the CLI spelling (`every-k:2`, `revolve:3`, `heavy-ops`, …).
    public static func parse(_ text: String) throws -> CheckpointPolicy {
        let parts = text.split(separator: ":", maxSplits: 1).map(String.init)
        let arg = parts.count > 1 ? Int(parts[1]) : nil
        if parts.count > 1 && (arg == nil || arg! < 1) { throw ParseError.unknown(text) }
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

/// A model whose blocks form a chain that chain schedules can run (GPT's transformer blocks).
public protocol BlockChainModel: Module {
    /// The chain schedule used for the block chain (nil: plain).
    var blockSchedule: SequentialSchedule? { get set }
    /// Options for the chain's recomputation.
    var blockScheduleOptions: CheckpointOptions { get set }
}

extension BlockChainModel {
    /// Runs `blocks` in order on `x`, under ``blockSchedule`` when one is set.
    /// `parameters` is evaluated only when a schedule is set.
    public func runBlockChain(_ blocks: [(Tensor) -> Tensor], parameters: @autoclosure () -> [Tensor], _ x: Tensor) -> Tensor {
        guard let schedule = blockSchedule else { return blocks.reduce(x) { h, block in block(h) } }
        return checkpointSequential(blocks, x, schedule: schedule.schedule(length: blocks.count),
                                    parameters: parameters(), options: blockScheduleOptions)
    }
}

extension Module {
    /// The repeated units: elements of module arrays that no other one contains (`blocks.3`,
    /// `layer2.1`; not `layer1.0.downsample.0`), in declaration order.
    public var blockModules: [(String, Module)] {
        let numbered = namedModules.filter { path, _ in
            let parts = path.split(separator: ".")
            return parts.count >= 2 && Int(parts.last!) != nil && Int(parts[parts.count - 2]) == nil
        }
        // Outermost only: `layer1.0.downsample.0` is a layer inside block `layer1.0`, not a block.
        let paths = Set(numbered.map(\.0))
        return numbered.filter { path, _ in
            var parts = path.split(separator: ".")
            while parts.count > 1 {
                parts.removeLast()
                if paths.contains(parts.joined(separator: ".")) { return false }
            }
            return true
        }
    }

    /// The regions a memory plan may recompute in: every ``ForwardRegion`` (a stem) and every block,
    /// in the order the model declares them.
    public var planningRegions: [(String, Module)] {
        let blocks = Set(blockModules.map(\.0))
        return namedModules.filter { path, m in blocks.contains(path) || m is ForwardRegion }
    }

    /// Applies `policy` to the whole model (replacing any earlier one) and returns the paths of the
    /// modules now checkpointed (for chain policies, the blocks the chain covers).
    @discardableResult
    public func applyCheckpointing(_ policy: CheckpointPolicy, options: CheckpointOptions = .init()) throws -> [String] {
        for (_, m) in namedModules { m.callWrapper = nil }
        if let chain = self as? any BlockChainModel { chain.blockSchedule = nil }
        switch policy {
        case .none:
            return []
        case .all:
            return wrapRegions(blockModules, options)
        case .selective(let selective):
            var o = options
            o.selective = selective
            return wrapRegions(blockModules, o)
        case .alternate:
            return wrapRegions(blockModules.enumerated().filter { $0.offset % 2 == 0 }.map(\.element), options)
        case .heavyOps(let large):
            return applyCheckpointing(options: options) { _, m in
                CheckpointPolicy.defaultHeavyTypes.contains(m.typeName)
                    || (["Linear", "Conv2d"].contains(m.typeName) && m.parameterCount >= large)
            }
        case .auto(let minimum):
            return applyCheckpointing(options: options) { path, m in !path.isEmpty && m.parameterCount >= minimum }
        case .everyK, .sqrt, .recursive, .revolve, .storeNothing:
            guard let chain = self as? any BlockChainModel else {
                throw CheckpointPolicyError.noBlockChain(policy: policy.description, model: typeName)
            }
            chain.blockSchedule = policy.sequentialSchedule
            chain.blockScheduleOptions = options
            return blockModules.map(\.0)
        }
    }

    /// Wraps in regions the outermost modules for which `predicate(path, module)` holds (a module
    /// inside a wrapped one is not wrapped again). Returns their paths.
    @discardableResult
    public func applyCheckpointing(options: CheckpointOptions = .init(), where predicate: (String, Module) -> Bool) -> [String] {
        var chosen: [(String, Module)] = []
        func visit(_ m: Module) {
            if predicate(m.path, m) { chosen.append((m.path, m)); return }
            for (_, c) in m.namedChildren { visit(c) }
        }
        visit(self)
        return wrapRegions(chosen, options)
    }

    private func wrapRegions(_ modules: [(String, Module)], _ options: CheckpointOptions) -> [String] {
        for (_, m) in modules {
            m.callWrapper = { _, x, body in checkpoint(x, options: options, body) }
        }
        return modules.map(\.0)
    }
}

public enum CheckpointPolicyError: Error, CustomStringConvertible, Equatable {
    case noBlockChain(policy: String, model: String)
    public var description: String {
        switch self {
        case .noBlockChain(let policy, let model):
            return "policy \(policy) needs a model whose blocks form a chain; \(model) does not declare one (use all, alternate, heavy-ops or auto)"
        }
    }
}
