/// Which op outputs a checkpoint region keeps instead of recomputing (PyTorch's selective
/// activation checkpointing, JAX's `checkpoint_policies`). Kept outputs stay alive (as saved
/// activations) until the region's backward is done, and while the region recomputes, ops that
/// find their output kept return it instead of computing it again (matmul does: a kept product
/// costs no GEMM in the recompute).
public struct SelectivePolicy: Sendable, Hashable, CustomStringConvertible {
    /// The decision for one op. `must` and `prefer` act alike here; a budgeted planner may
    /// override `prefer` decisions, never `must` ones.
    public enum Decision: Sendable, Hashable {
        case mustSave, preferSave, mustRecompute, preferRecompute
        public var saves: Bool { self == .mustSave || self == .preferSave }
    }

    enum Rule: Sendable, Hashable {
        case weightMatmuls
        case perOp([String: Decision], otherwise: Decision)
        case saveOnlyTags(Set<String>)
        case saveAllButTags(Set<String>)
    }

    let rule: Rule
    public let description: String

    /// Keep the outputs of matrix products that are expensive per byte kept, recompute the rest:
    /// - kept: linear layers and convolutions (a parameter operand: qkv, projections, MLP, conv
    ///   layers) and attention's probability-weighted values `P·V` (a product over all keys whose
    ///   output is only `T × head size`);
    /// - recomputed: the attention scores `QKᵀ` and their softmax (`T × T` per head: the largest
    ///   activations, cheap per byte), norms, activations, pooling and elementwise ops.
    /// Megatron's selective recompute (the whole attention core) is ``perOp(_:otherwise:)`` or a
    /// custom rule away; this one also keeps `P·V`, which spares the recompute one of its two GEMMs
    /// for `4·B·T·d` bytes per block.
    public static let saveMatmuls = SelectivePolicy(rule: .weightMatmuls, description: "save-matmuls")

    /// Per op kind (`"matmul"`, `"softmax"`, `"gelu"`, …), with a decision for the others.
    public static func perOp(_ decisions: [String: Decision], otherwise: Decision = .preferRecompute) -> SelectivePolicy {
        SelectivePolicy(rule: .perOp(decisions, otherwise: otherwise),
                        description: "per-op(" + decisions.keys.sorted().joined(separator: ",") + ")")
    }

    /// Keep only tensors tagged with one of `names` (``tag(_:_:)``).
    public static func saveOnly(tags names: Set<String>) -> SelectivePolicy {
        SelectivePolicy(rule: .saveOnlyTags(names), description: "save-only(" + names.sorted().joined(separator: ",") + ")")
    }

    /// Keep every op output except tensors tagged with one of `names`.
    public static func saveAllBut(tags names: Set<String>) -> SelectivePolicy {
        SelectivePolicy(rule: .saveAllButTags(names), description: "save-all-but(" + names.sorted().joined(separator: ",") + ")")
    }

    /// The decision for the op recorded as `node`.
    public func decide(_ node: Node) -> Decision {
        switch rule {
        case .weightMatmuls:
            guard ["linear", "matmul", "conv2d"].contains(node.op) else { return .preferRecompute }
            return node.savedTensors.contains(where: \.info.isParameter) || SelectivePolicy.isAttentionValues(node)
                ? .mustSave : .preferRecompute
        case .perOp(let decisions, let otherwise):
            return decisions[node.op] ?? otherwise
        case .saveOnlyTags(let names):
            return names.contains(where: { node.op == "tag:" + $0 }) ? .mustSave : .mustRecompute
        case .saveAllButTags(let names):
            return names.contains(where: { node.op == "tag:" + $0 }) ? .mustRecompute : .mustSave
        }
    }
}

extension SelectivePolicy {
    /// Whether `node` is attention's `P·V`: a matmul whose first operand is a softmax output (directly
    /// or through dropout).
    static func isAttentionValues(_ node: Node) -> Bool {
        guard node.op == "matmul", case .node(var producer)? = node.inputEdges.first else { return false }
        if producer.op == "dropout", case .node(let p)? = producer.inputEdges.first { producer = p }
        return ["softmax", "causal_softmax", "attention_probs"].contains(producer.op)
    }
}

/// Marks `x` with `name` for selective checkpointing policies (``SelectivePolicy/saveOnly(tags:)``).
/// Numerically the identity; recorded as op `tag:name`, so the tag appears in saved-tensor names.
public func tag(_ x: Tensor, _ name: String) -> Tensor {
    let op = "tag:" + name
    if let replayed = Autograd.replayed(op, inputs: [x]) { return replayed }
    let out = Autograd.cachedOutput(op)?.detached()
        ?? Tensor(storage: x.storage, shape: x.shape, strides: x.strides, offset: x.offset, dtype: x.dtype)
    Autograd.record(op, inputs: [x], output: out) { _, g in [g] }
    return out
}
