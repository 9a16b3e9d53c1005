extension Tensor {
    /// Reverse-mode differentiation from this tensor.
    ///
    /// With no `gradient` the tensor must have one element (a loss) and the seed is 1. Gradients
    /// accumulate into the `grad` of every reachable leaf that requires grad. Unless `retainGraph`,
    /// every node frees its saved tensors right after its backward ran, so the ledger's saved
    /// activations fall to zero by the end.
    public func backward(gradient: Tensor? = nil, retainGraph: Bool = false) {
        let seed: Tensor
        if let gradient {
            precondition(gradient.shape == shape, "backward: gradient shape \(gradient.shape) differs from tensor shape \(shape)")
            seed = gradient
        } else {
            precondition(count == 1, "backward: a tensor of shape \(shape) needs an explicit gradient (only one-element tensors get the implicit 1)")
            seed = Tensor.ones(shape, label: "grad_seed")
        }
        guard let root = gradFn else {
            precondition(requiresGrad, "backward: tensor does not require grad and has no gradFn")
            noGrad { accumulateGrad(seed) }
            return
        }
        // Every node reachable from the root, highest sequence number first (a topological order).
        var nodes: [Node] = []
        var seen = Set<ObjectIdentifier>()
        var stack = [root]
        seen.insert(ObjectIdentifier(root))
        while let node = stack.popLast() {
            nodes.append(node)
            for case .node(let next)? in node.inputEdges where seen.insert(ObjectIdentifier(next)).inserted {
                stack.append(next)
            }
        }
        nodes.sort { $0.sequenceNumber > $1.sequenceNumber }

        let observer = AutogradContext.current.backwardObserver
        let ready = AutogradContext.current.gradientReadyObserver
        // With a gradient-ready observer: how many nodes still to run have an edge to each leaf.
        var edgesLeft: [ObjectIdentifier: Int] = [:]
        if ready != nil {
            for node in nodes {
                for case .leaf(let leaf)? in node.inputEdges { edgesLeft[ObjectIdentifier(leaf), default: 0] += 1 }
            }
        }
        /// After `node` ran (or was passed over): its leaves whose last edge it was are final.
        func leavesDone(_ node: Node) {
            guard let ready else { return }
            for case .leaf(let leaf)? in node.inputEdges {
                let key = ObjectIdentifier(leaf)
                let left = edgesLeft[key]! - 1
                edgesLeft[key] = left
                if left == 0 { ready(leaf) }
            }
        }
        noGrad {
            var pending: [ObjectIdentifier: Tensor] = [ObjectIdentifier(root): seed]
            for node in nodes {
                guard let gradOutput = pending.removeValue(forKey: ObjectIdentifier(node)) else {
                    leavesDone(node)
                    continue
                }
                observer?(node)
                let inputGrads = node.runBackward(gradOutput, retainGraph: retainGraph)
                for (i, edge) in node.inputEdges.enumerated() {
                    guard let edge, let g = inputGrads[i] else { continue }
                    precondition(g.shape == node.inputShapes[i],
                                 "backward of \(node.name): gradient for input \(i) has shape \(g.shape), input has \(node.inputShapes[i])")
                    switch edge {
                    case .node(let producer):
                        let key = ObjectIdentifier(producer)
                        if let existing = pending[key] {
                            pending[key] = existing + g
                        } else {
                            pending[key] = g
                        }
                    case .leaf(let leaf):
                        leaf.accumulateGrad(g)
                    }
                }
                leavesDone(node)
            }
        }
    }

    /// Adds `g` into `grad` (allocating it, in the gradients category, on first use).
    func accumulateGrad(_ g: Tensor) {
        if let existing = grad {
            existing.addInPlace(g)
        } else {
            let copy = g.contiguousCopy(label: (name ?? "leaf") + ".grad")
            copy.storage.setCategory(.gradients)
            grad = copy
        }
    }

    /// Sets `grad` to nil (frees the gradient).
    public func zeroGrad() { grad = nil }
}
