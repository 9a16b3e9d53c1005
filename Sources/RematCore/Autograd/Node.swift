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

/// Graph recording for ops: ``op(_:inputs:_:)`` defines every op (Op.swift).
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
}
