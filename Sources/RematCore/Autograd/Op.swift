/// Every op kind the engine defines: the `op` part of node and saved-tensor names
/// (`blocks.0.attn/attention_probs#0:output`). A user's own op is named with
/// ``Autograd/op(named:inputs:_:)`` instead.
public enum OpKind: String, CaseIterable, Sendable {
    // Arithmetic (Arithmetic.swift).
    case add, sub, mul, div, neg
    case addScalar = "add_scalar", rsubScalar = "rsub_scalar", mulScalar = "mul_scalar"
    case maximum, minimum
    // Views and layout (Views.swift).
    case contiguous, reshape, permute, narrow, expand, unsqueeze, squeeze
    /// The identity, recorded as `tag:NAME` (``tag(_:_:)``).
    case tag
    // Reductions (Reduction.swift).
    case sum, max
    // Unary (Unary.swift).
    case exp, log, sqrt, rsqrt, pow, tanh, sigmoid, erf, relu, gelu, silu
    // Softmax and attention (Softmax.swift, Attention.swift).
    case softmax, logSoftmax = "log_softmax", causalMask = "causal_mask", causalSoftmax = "causal_softmax"
    case attentionProbabilities = "attention_probs"
    case scaledDotProductAttention = "sdpa"
    // Products (Matmul.swift, Convolution.swift).
    case matmul, linear, conv2d
    // FP8 (Float8.swift).
    case float8Linear = "float8_linear"
    // Normalisation, pooling, lookup, loss, dropout, concatenation.
    case batchNorm = "batch_norm", layerNorm = "layer_norm"
    case maxPool2d = "max_pool2d", adaptiveAvgPool2d = "adaptive_avg_pool2d"
    case embedding, crossEntropy = "cross_entropy", dropout, concat
}

/// What an op's forward hands the op-definition helper: its output, what its backward needs and
/// the backward itself.
public struct OpResult {
    public var output: Tensor
    /// The tensors the backward reads, in order, each with its role (`input`, `output`, `mean`,
    /// …): the role ends the saved tensor's name. Saved through saved-tensor slots (hooks applied)
    /// when the op records a node; ignored otherwise.
    public var saving: [(role: String, tensor: Tensor)]
    /// `backward(ctx, gradOutput)`: one gradient per input (nil where not needed, else of the
    /// input's shape). Runs with grad mode off.
    public var backward: (BackwardContext, Tensor) -> [Tensor?]

    public init(_ output: Tensor, saving: [(role: String, tensor: Tensor)] = [],
                backward: @escaping (BackwardContext, Tensor) -> [Tensor?]) {
        self.output = output
        self.saving = saving
        self.backward = backward
    }
}

/// One op call as an ``OpInterceptor`` sees it, before the op computes.
public struct OpCall {
    /// The op kind (`matmul`, `tag:mid`, …).
    public let op: String
    /// The stable name the op's node gets (`blocks.0.attn/attention_probs#0`).
    public let name: String
    public let inputs: [Tensor]
}

/// A hook that sees every op that records a node before it computes, and may supply its output
/// instead (a tensor kept from an earlier run, a view of a live storage, or a placeholder for an
/// output nothing reads). A supplied op records a node that saves nothing and whose backward must
/// never run (it belongs to a graph that is not differentiated); the op's forward does not run.
///
/// Interceptors stack (``withOpInterceptor(_:_:)``): the innermost is asked first and the first
/// that supplies an output wins. Ops that record no node (grad mode off, no input requiring grad)
/// are never intercepted.
public protocol OpInterceptor: AnyObject, Sendable {
    func output(for call: OpCall) -> Tensor?
}

/// Runs `body` with `interceptor` asked about every op that records a node inside it (innermost first).
public func withOpInterceptor<R>(_ interceptor: any OpInterceptor, _ body: () throws -> R) rethrows -> R {
    try AutogradContext.with({ $0.opInterceptors.append(interceptor) }, body)
}

extension Autograd {
    /// Defines one differentiable op of the engine: every op goes through here, so every op obeys
    /// the interceptors, records its node under its stable name and saves through slots.
    ///
    /// When the op records a node (grad mode on and some input requiring grad), the interceptors
    /// are asked first whether they supply its output; if one does, `forward` does not run.
    /// Otherwise `forward` computes the output and returns what the backward needs.
    @inline(__always)
    public static func op(_ kind: OpKind, inputs: [Tensor], _ forward: () -> OpResult) -> Tensor {
        define(kind.rawValue, inputs: inputs, forward)
    }

    /// ``op(_:inputs:_:)`` for a tagged op kind: recorded as `KIND:tag` (`tag:mid`).
    public static func op(_ kind: OpKind, tag: String, inputs: [Tensor], _ forward: () -> OpResult) -> Tensor {
        define(kind.rawValue + ":" + tag, inputs: inputs, forward)
    }

    /// ``op(_:inputs:_:)`` for an op the engine does not define (a user's own op), named `name`.
    public static func op(named name: String, inputs: [Tensor], _ forward: () -> OpResult) -> Tensor {
        precondition(OpKind(rawValue: name) == nil && !name.contains("#") && !name.contains("/") && !name.isEmpty,
                     "Autograd.op(named:): '\(name)' is empty, contains '#' or '/', or is a built-in op kind")
        return define(name, inputs: inputs, forward)
    }

    private static func define(_ op: String, inputs: [Tensor], _ forward: () -> OpResult) -> Tensor {
        let ctx = AutogradContext.current
        guard ctx.gradEnabled, inputs.contains(where: { $0.requiresGrad }) else { return forward().output }
        if !ctx.opInterceptors.isEmpty, let supplied = intercepted(op, inputs: inputs, ctx) { return supplied }
        let result = forward()
        record(op, inputs: inputs, result: result, ctx)
        return result.output
    }

    @inline(never)
    private static func intercepted(_ op: String, inputs: [Tensor], _ ctx: AutogradContext) -> Tensor? {
        let call = OpCall(op: op, name: peekOpName(op, ctx), inputs: inputs)
        for interceptor in ctx.opInterceptors.reversed() {
            guard let t = interceptor.output(for: call) else { continue }
            let out = t.detached()
            record(op, inputs: inputs, result: OpResult(out) { _, _ in
                preconditionFailure("\(call.name): the node of an intercepted op was differentiated (its graph is a replay's)")
            }, ctx)
            return out
        }
        return nil
    }

    /// Records `result.output = op(inputs)` as a node, saving `result.saving` through slots.
    private static func record(_ op: String, inputs: [Tensor], result: OpResult, _ ctx: AutogradContext) {
        let output = result.output
        let name = ctx.naming?.nextName(op: op) ?? nextOpName(op)
        let slots = result.saving.map { entry -> SavedTensor in
            // Saved without gradFn: a slot never keeps a node alive (no cycle through the output).
            SavedTensor(entry.tensor.detached(), info: SavedTensorInfo(entry.tensor, name: name, op: op, role: entry.role,
                                                                       isOutput: entry.tensor === output),
                        hooks: ctx.savedTensorHooks)
        }
        let node = Node(op: op, name: name, inputs: inputs, outputShape: output.shape, saved: slots, backward: result.backward)
        output.gradFn = node
        output.requiresGrad = true
        ctx.opObserver?(node, output)
    }

    static func peekOpName(_ op: String, _ ctx: AutogradContext) -> String {
        ctx.naming?.peekName(op: op) ?? peekUnscopedOpName(op)
    }

    /// Saves `tensor` through a saved-tensor slot outside any op (regions keep their inputs this
    /// way), applying `hooks` (innermost last; default: the current hook stack). The slot counts
    /// its bytes as activations. `name` is a node name; the slot's is `name:role`.
    package static func save(_ tensor: Tensor, name: String, op: String, role: String, isOutput: Bool = false,
                             hooks: [SavedTensorHooks]? = nil) -> SavedTensor {
        SavedTensor(tensor.detached(), info: SavedTensorInfo(tensor, name: name, op: op, role: role, isOutput: isOutput),
                    hooks: hooks ?? AutogradContext.current.savedTensorHooks)
    }
}

extension SavedTensorInfo {
    init(_ t: Tensor, name: String, op: String, role: String, isOutput: Bool) {
        self.init(name: name + ":" + role, nodeName: name, op: op, role: role, shape: t.shape, dtype: t.dtype,
                  byteCount: t.byteCount, isParameter: t.storage.baseCategory == .parameters, isOutput: isOutput)
    }
}
