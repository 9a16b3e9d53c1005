import CRematKernels

/// Layer normalisation over the last axis.
///
/// Math, per row `x` of length `C`:
/// `μ = Σx/C`, `σ² = Σ(x − μ)²/C` (biased, as PyTorch), `rstd = 1/√(σ² + eps)`,
/// `x̂ = (x − μ)·rstd`, `y = x̂ ⊙ weight + bias` (weight and bias of shape `[C]`, each optional).
///
/// Backward (one fused kernel): with `g = dy ⊙ weight`,
/// `dx = rstd·(g − mean(g) − x̂ ⊙ mean(g ⊙ x̂))`, `dweight = Σ_rows dy ⊙ x̂`, `dbias = Σ_rows dy`.
/// Rows are split into chunks run in parallel; each chunk accumulates its own partial
/// `dweight`/`dbias` row in a scratch `Tensor.zeros([chunks, C])` (so the ledger sees it), and the
/// partial rows are summed afterwards.
///
/// Saves: the input `x` (role "input", `4·numel` bytes; a non-contiguous input is saved as the view
/// it is, not copied), per-row `mean` and `rstd` (roles "mean" and "rstd", `[rows]` float32 each:
/// 8 bytes per row together), and `weight` (role "weight") when given — a parameter saved as-is,
/// adding no bytes. `bias` is not saved (its gradient does not need it).
///
/// Numerics: two passes per row (mean, then mean squared deviation), each with 16 float partial
/// sums, so there is no `E[x²] − E[x]²` cancellation for inputs with a large common offset.
public func layerNorm(_ x: Tensor, weight: Tensor?, bias: Tensor?, eps: Float = 1e-5) -> Tensor {
    precondition(x.dtype == .float32, "layer_norm: input must be float32, got \(x.dtype) (shape \(x.shape))")
    precondition(x.rank >= 1, "layer_norm: input must have at least one axis, got a scalar")
    let shape = x.shape
    let c = shape[shape.count - 1]
    let rows = shape.dropLast().reduce(1, *)
    if let weight {
        precondition(weight.shape == [c], "layer_norm: weight shape \(weight.shape) must be [\(c)] for input shape \(shape)")
    }
    if let bias {
        precondition(bias.shape == [c], "layer_norm: bias shape \(bias.shape) must be [\(c)] for input shape \(shape)")
    }
    let norm = AffineNorm(weight: weight, bias: bias)
    return Autograd.op(.layerNorm, inputs: AffineNorm.inputs(x, weight: weight, bias: bias)) {
        let input = x.contiguousInput()
        let w = weight?.contiguousInput(), b = bias?.contiguousInput()
        let out = Tensor(uninitializedShape: shape, label: "layer_norm")
        let mean = Tensor(uninitializedShape: [rows], label: "layer_norm_mean")
        let rstd = Tensor(uninitializedShape: [rows], label: "layer_norm_rstd")
        if out.count > 0 {
            let px = input.floatPointer, py = out.floatPointer, pm = mean.floatPointer, pr = rstd.floatPointer
            let pw = w.map { UnsafePointer($0.floatPointer) }, pb = b.map { UnsafePointer($0.floatPointer) }
            parallelChunks(rows, grain: Swift.max(1, elementwiseGrain / Swift.max(c, 1))) { lo, hi in
                remat_layer_norm_f32(px, pw, pb, py, pm, pr, c, eps, lo, hi)
            }
        } else if rows > 0 {
            // C = 0: the mean of nothing is NaN (0/0), as in PyTorch.
            mean.floatPointer.initialize(repeating: .nan, count: rows)
            rstd.floatPointer.initialize(repeating: .nan, count: rows)
        }

        return OpResult(out, saving: norm.saving(x: x, mean: mean, rstd: rstd, weight: weight)) { ctx, g in
            let b = norm.backward(ctx, g)
            let (xs, ms, rs, ws, dy) = (b.x, b.mean, b.rstd, b.weight, b.gradOutput)
            let (needX, needW, needB) = (b.needX, b.needWeight, b.needBias)
            let dx = needX ? Tensor(uninitializedShape: shape, label: "layer_norm_backward") : nil
            // Per-chunk partial dweight/dbias rows, summed after the parallel loop.
            let grain = Swift.max(1, elementwiseGrain / Swift.max(c, 1))
            let chunks = Swift.max(1, Swift.min(Runtime.threads, rows / grain))
            let dwPartial = needW ? Tensor.zeros([chunks, c], label: "layer_norm_dweight_partial") : nil
            let dbPartial = needB ? Tensor.zeros([chunks, c], label: "layer_norm_dbias_partial") : nil
            if rows > 0 && c > 0 {
                let px = UnsafePointer(xs.floatPointer), pm = UnsafePointer(ms.floatPointer)
                let pr = UnsafePointer(rs.floatPointer), pg = UnsafePointer(dy.floatPointer)
                let pw = ws.map { UnsafePointer($0.floatPointer) }
                let pdx = dx?.floatPointer, pdw = dwPartial?.floatPointer, pdb = dbPartial?.floatPointer
                parallelChunks(chunks, grain: 1) { first, last in
                    for k in first..<last {
                        let lo = rows * k / chunks, hi = rows * (k + 1) / chunks
                        remat_layer_norm_backward_f32(px, pw, pm, pr, pg, pdx, pdw.map { $0 + k * c },
                                                      pdb.map { $0 + k * c }, c, lo, hi)
                    }
                }
            }
            return norm.gradients(dx: dx, dweight: dwPartial.map { reduceLayerNormPartials($0, chunks: chunks, c: c) },
                                  dbias: dbPartial.map { reduceLayerNormPartials($0, chunks: chunks, c: c) })
        }
    }
}

/// Sums the `[chunks, c]` partial rows into row 0 and returns that row as a `[c]` tensor
/// (a view of the scratch storage, no copy).
private func reduceLayerNormPartials(_ partial: Tensor, chunks: Int, c: Int) -> Tensor {
    if chunks > 1 { remat_sum_rows_into_first_f32(partial.floatPointer, chunks, c) }
    return Tensor(storage: partial.storage, shape: [c], strides: [1], dtype: .float32)
}
