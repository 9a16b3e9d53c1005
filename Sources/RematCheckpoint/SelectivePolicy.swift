/// Which op outputs a checkpoint region keeps instead of recomputing (PyTorch's selective
/// activation checkpointing, JAX's `checkpoint_policies`). A kept op is never recomputed: what it
/// saved stays in its slots, and its output is held (as a saved activation) until the region's
/// recompute has served it to the recomputed ops that read it — every op kind, since the engine
/// asks the region before any op computes.
public struct SelectivePolicy: Sendable, Hashable, CustomStringConvertible {
    /// The decision for one op. In a region `must` and `prefer` act alike; a memory planner may
    /// override `prefer` decisions (and lists what it overrode), never `must` ones.
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
    ///   output is only `T × head size`) — with the fused attention, the whole
    ///   ``scaledDotProductAttention(q:k:v:causal:mask:dropout:generator:)`` op (its output is
    ///   `P·V`'s; what it saves besides is each row's log-sum-exp), as PyTorch's SAC lists keep SDPA;
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

    /// The decision for one op call (its kind, stable name and inputs), made before it computes.
    public func decide(_ call: OpCall) -> Decision {
        switch rule {
        case .weightMatmuls:
            if call.op == "sdpa" { return .mustSave }   // the fused attention: its output is P·V's
            guard ["linear", "float8_linear", "matmul", "conv2d"].contains(call.op) else { return .preferRecompute }
            return call.inputs.contains(where: { $0.storage.baseCategory == .parameters }) || SelectivePolicy.isAttentionValues(call)
                ? .mustSave : .preferRecompute
        case .perOp(let decisions, let otherwise):
            return decisions[call.op] ?? otherwise
        case .saveOnlyTags(let names):
            return names.contains(where: { call.op == "tag:" + $0 }) ? .mustSave : .mustRecompute
        case .saveAllButTags(let names):
            return names.contains(where: { call.op == "tag:" + $0 }) ? .mustRecompute : .mustSave
        }
    }
}

extension SelectivePolicy {
    /// Whether `call` is attention's `P·V`: a matmul whose first operand is a softmax output (directly
    /// or through dropout).
    static func isAttentionValues(_ call: OpCall) -> Bool {
        guard call.op == "matmul", var producer = call.inputs.first?.gradFn else { return false }
        if producer.op == "dropout", case .node(let p)? = producer.inputEdges.first { producer = p }
        return ["softmax", "causal_softmax", "attention_probs"].contains(producer.op)
    }
}

/// Marks `x` with `name` for selective checkpointing policies (``SelectivePolicy/saveOnly(tags:)``).
/// Numerically the identity; recorded as op `tag:name`, so the tag appears in saved-tensor names.
public func tag(_ x: Tensor, _ name: String) -> Tensor { x.tagged(name) }
