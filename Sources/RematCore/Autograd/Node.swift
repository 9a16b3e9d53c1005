import Synchronization

private let nodeSequence = Atomic<Int>(0)

/// Where a node sends the gradient of one of its inputs.
public enum GradientEdge {
    /// The input was made by another op: its gradient goes to that op's node.
    case node(Node)
    /// The input is a leaf that requires grad: its gradient accumulates into `grad`.
    case leaf(Tensor)
}

/// What a node's backward function gets besides the output gradient.
public struct BackwardContext {
    /// The saved tensors, unpacked, in the order the op saved them.
    public let saved: [Tensor]
    /// For each input, whether a gradient is wanted (skip the work where not).
    public let needsInputGrad: [Bool]
}

/// One recorded op in the define-by-run graph.
///
/// A node holds edges to the producers of its inputs, the saved-tensor slots its backward needs,
/// and the backward function. Every node has exactly one output tensor (ops with several results
/// record one node per result). Nodes are ordered by `sequenceNumber` (creation order), which is a
/// topological order: backward runs reachable nodes from the highest number down.
public final class Node {
    public let op: String
    /// Stable name: `module.path/op#ordinal`.
    public let name: String
    public let sequenceNumber: Int
    public let inputEdges: [GradientEdge?]
    public let inputShapes: [[Int]]
    public let outputShape: [Int]
    public private(set) var savedTensors: [SavedTensor]
    private var backwardFunction: ((BackwardContext, Tensor) -> [Tensor?])?

    init(op: String, name: String, inputs: [Tensor], outputShape: [Int], saved: [SavedTensor],
         backward: @escaping (BackwardContext, Tensor) -> [Tensor?]) {
        self.op = op
        self.name = name
        self.sequenceNumber = nodeSequence.add(1, ordering: .relaxed).newValue
        self.inputEdges = inputs.map { t in
            guard t.requiresGrad else { return nil }
            if let fn = t.gradFn { return .node(fn) }
            return .leaf(t)
        }
        self.inputShapes = inputs.map(\.shape)
        self.outputShape = outputShape
        self.savedTensors = saved
        self.backwardFunction = backward
    }

    /// Whether backward has already run and released this node.
    public var isReleased: Bool { backwardFunction == nil }

    /// Runs the backward function for `gradOutput`, returning one gradient per input.
    func runBackward(_ gradOutput: Tensor, retainGraph: Bool) -> [Tensor?] {
        guard let fn = backwardFunction else {
            preconditionFailure("backward: node \(name) was already run and released; pass retainGraph: true to run backward twice")
        }
        let ctx = BackwardContext(saved: savedTensors.map { $0.unpack() },
                                  needsInputGrad: inputEdges.map { $0 != nil })
        let grads = fn(ctx, gradOutput)
        precondition(grads.count == inputEdges.count,
                     "backward of \(name): returned \(grads.count) gradients for \(inputEdges.count) inputs")
        if !retainGraph { release() }
        return grads
    }

    /// Drops the saved tensors and the backward function.
    public func release() {
        for s in savedTensors { s.release() }
        savedTensors = []
        backwardFunction = nil
    }
}

/// Graph recording for ops. Kernels call these; users normally do not.
public enum Autograd {
    /// Whether an op on `inputs` must record a node (grad mode on and some input requires grad).
    @inlinable
    public static func needsGraph(_ inputs: Tensor...) -> Bool {
        needsGraph(inputs)
    }

    public static func needsGraph(_ inputs: [Tensor]) -> Bool {
        guard inputs.contains(where: { $0.requiresGrad }) else { return false }
        return AutogradContext.current.gradEnabled
    }

    /// Records `output = op(inputs)` in the graph when ``needsGraph(_:)-swift.type.method`` holds,
    /// saving each `(role, tensor)` in `saving` through a saved-tensor slot (hooks applied).
    /// `backward(ctx, gradOutput)` returns one gradient per input (nil where not needed), each of
    /// the input's shape. It runs with grad mode off.
    public static func record(_ op: String, inputs: [Tensor], output: Tensor,
                              saving: [(role: String, tensor: Tensor)] = [],
                              backward: @escaping (BackwardContext, Tensor) -> [Tensor?]) {
        let ctx = AutogradContext.current
        guard ctx.gradEnabled, inputs.contains(where: { $0.requiresGrad }) else { return }
        let name = ctx.naming?.nextName(op: op) ?? nextOpName(op)
        let slots = saving.map { entry -> SavedTensor in
            let t = entry.tensor
            let info = SavedTensorInfo(name: name + ":" + entry.role, nodeName: name, op: op, role: entry.role,
                                       shape: t.shape, dtype: t.dtype, byteCount: t.byteCount,
                                       isParameter: t.storage.baseCategory == .parameters, isOutput: t === output)
            // Saved without gradFn: a slot never keeps a node alive (no cycle through the output).
            return SavedTensor(t.detached(), info: info, hooks: ctx.savedTensorHooks)
        }
        let node = Node(op: op, name: name, inputs: inputs, outputShape: output.shape, saved: slots, backward: backward)
        output.gradFn = node
        output.requiresGrad = true
        ctx.opObserver?(node, output)
    }

    /// Called first by every op: in a planned recompute, the output this op gives without computing
    /// (a tensor kept from the forward, or a placeholder the recompute does not need), recorded as a
    /// node so names and graph stay as in the forward; nil when the op must compute (always, outside
    /// a planned recompute).
    @inline(__always)
    public static func replayed(_ op: String, inputs: [Tensor]) -> Tensor? {
        guard let replay = AutogradContext.current.replay else { return nil }
        return replayedSlow(op, inputs: inputs, replay)
    }

    @inline(never)
    static func replayedSlow(_ op: String, inputs: [Tensor], _ replay: ReplayControl) -> Tensor? {
        let ctx = AutogradContext.current
        guard ctx.gradEnabled, inputs.contains(where: { $0.requiresGrad }), let naming = ctx.naming else { return nil }
        let out: Tensor
        switch replay.decide(naming.peekName(op: op)) {
        case .run: return nil
        case .serve(let t), .skip(let t): out = t
        }
        record(op, inputs: inputs, output: out) { _, _ in
            preconditionFailure("planned recompute: the graph of a recompute is never differentiated (\(op))")
        }
        return out
    }

    /// While a selective checkpoint region recomputes: the output the next op of kind `op` had in
    /// the forward pass, if the region kept it. An op that gets one returns it (recording itself as
    /// usual, so what it saves is captured) instead of computing it again.
    public static func cachedOutput(_ op: String) -> Tensor? {
        let ctx = AutogradContext.current
        guard let cache = ctx.outputCache, let naming = ctx.naming else { return nil }
        return cache.outputs[naming.peekName(op: op)]
    }

    /// Saves `tensor` through a saved-tensor slot outside any op (checkpoint regions keep their
    /// inputs this way), applying the current hook stack. The slot counts its bytes as activations.
    public static func save(_ tensor: Tensor, name: String, op: String, role: String) -> SavedTensor {
        let info = SavedTensorInfo(name: name + ":" + role, nodeName: name, op: op, role: role, shape: tensor.shape,
                                   dtype: tensor.dtype, byteCount: tensor.byteCount,
                                   isParameter: tensor.storage.baseCategory == .parameters, isOutput: false)
        let slot = SavedTensor(tensor.detached(), info: info, hooks: AutogradContext.current.savedTensorHooks)
        return slot
    }
}
