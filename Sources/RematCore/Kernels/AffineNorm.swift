/// What layer norm and batch norm share around their kernels: the graph inputs (`x`, then the
/// optional affine weight and bias), what they save for backward (input, mean, rstd, weight), how
/// the backward reads that back, and the gradient list in input order.
///
/// Holds no tensor: the backward closure captures it, and a tensor captured there would outlive
/// the saved-tensor slots (a region could not drop it).
struct AffineNorm {
    let hasWeight: Bool
    let hasBias: Bool

    init(weight: Tensor?, bias: Tensor?) {
        hasWeight = weight != nil
        hasBias = bias != nil
    }

    /// `x`, then `weight` and `bias` when present (the op's graph inputs).
    static func inputs(_ x: Tensor, weight: Tensor?, bias: Tensor?) -> [Tensor] {
        [x] + [weight, bias].compactMap { $0 }
    }

    /// The saved tensors.
    func saving(x: Tensor, mean: Tensor, rstd: Tensor, weight: Tensor?) -> [(role: String, tensor: Tensor)] {
        var saving: [(role: String, tensor: Tensor)] = [("input", x), ("mean", mean), ("rstd", rstd)]
        if let weight { saving.append(("weight", weight)) }
        return saving
    }

    /// What the backward works from: the saved tensors (contiguous where the kernel needs it), the
    /// incoming gradient and which gradients are wanted.
    struct Backward {
        let x: Tensor, mean: Tensor, rstd: Tensor
        let weight: Tensor?
        let gradOutput: Tensor
        let needX: Bool, needWeight: Bool, needBias: Bool
    }

    func backward(_ ctx: BackwardContext, _ g: Tensor) -> Backward {
        Backward(x: ctx.saved[0].contiguousInput(), mean: ctx.saved[1], rstd: ctx.saved[2],
                 weight: hasWeight ? ctx.saved[3].contiguousInput() : nil, gradOutput: g.contiguousInput(),
                 needX: ctx.needsInputGrad[0], needWeight: hasWeight && ctx.needsInputGrad[1],
                 needBias: hasBias && ctx.needsInputGrad[hasWeight ? 2 : 1])
    }

    /// The gradients in input order (`dx`, then `dweight` and `dbias` for the inputs present).
    func gradients(dx: Tensor?, dweight: @autoclosure () -> Tensor?, dbias: @autoclosure () -> Tensor?) -> [Tensor?] {
        var grads: [Tensor?] = [dx]
        if hasWeight { grads.append(dweight()) }
        if hasBias { grads.append(dbias()) }
        return grads
    }
}
