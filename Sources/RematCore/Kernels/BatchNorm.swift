import CRematKernels

/// Batch normalisation over the channel axis 1 of `x` `[N, C, ...]` (PyTorch's `batch_norm`).
///
/// Math, per channel `c` over its `M = N·H·W` elements:
/// training (or no running statistics): `μ = Σx/M`, `σ² = Σ(x − μ)²/M` (biased);
/// evaluation: `μ = running_mean`, `σ² = running_var`. Then `rstd = 1/√(σ² + eps)` and
/// `y = (x − μ)·rstd·weight + bias` (weight and bias `[C]`, each optional).
///
/// Running statistics (training with `runningMean`/`runningVar` given), updated in place as PyTorch:
/// `running_mean ← (1 − momentum)·running_mean + momentum·μ`,
/// `running_var ← (1 − momentum)·running_var + momentum·σ²·M/(M − 1)` (the UNBIASED variance).
/// They are NOT updated while ``isRecomputing`` is true: a checkpoint region that re-runs its
/// forward must leave them as the first forward left them (exactly one update per step).
/// (`num_batches_tracked` is the module's business: see `BatchNorm2d`.)
///
/// Backward (one fused pass per channel, parallel over channels; sums in double): with
/// `x̂ = (x − μ)·rstd`, `dweight = Σ dy·x̂`, `dbias = Σ dy`; training:
/// `dx = weight·rstd·(dy − Σdy/M − x̂·Σ(dy·x̂)/M)`; evaluation (statistics are constants):
/// `dx = weight·rstd·dy`.
///
/// Saves: the input `x` (role "input", `4·numel` bytes, as the view it is), per-channel `mean` and
/// `rstd` (roles "mean", "rstd": `[C]` float32 each, 8 bytes per channel together; in evaluation
/// they are copies of the running statistics, so a later update cannot change this backward), and
/// `weight` (role "weight", a parameter: no extra bytes) when given. Not the output.
///
/// Numerics: the statistics take two passes (mean, then squared deviations) accumulated in double,
/// so neither the length of the reduction nor a large common offset costs precision. Training
/// with `M = 1` is an error (PyTorch: "Expected more than 1 value per channel when training").
public func batchNorm2d(_ x: Tensor, weight: Tensor?, bias: Tensor?, runningMean: Tensor?, runningVar: Tensor?,
                        training: Bool, momentum: Float = 0.1, eps: Float = 1e-5) -> Tensor {
    precondition(x.dtype == .float32, "batch_norm: input must be float32, got \(x.dtype) (shape \(x.shape))")
    precondition(x.rank >= 2, "batch_norm: input must be [N, C, ...], got shape \(x.shape)")
    let shape = x.shape
    let (n, c) = (shape[0], shape[1])
    let p = shape.dropFirst(2).reduce(1, *)
    for (name, t) in [("weight", weight), ("bias", bias), ("running_mean", runningMean), ("running_var", runningVar)] {
        if let t {
            precondition(t.shape == [c] && t.dtype == .float32,
                         "batch_norm: \(name) must be float32 [\(c)] for input shape \(shape), got \(t.dtype) \(t.shape)")
        }
    }
    precondition((runningMean == nil) == (runningVar == nil), "batch_norm: give both running_mean and running_var or neither")
    let useBatchStats = training || runningMean == nil
    let m = n * p
    if useBatchStats {
        precondition(m > 1, "batch_norm: expected more than 1 value per channel when training, got input shape \(shape)")
    }
    let norm = AffineNorm(weight: weight, bias: bias)
    return Autograd.op(.batchNorm, inputs: AffineNorm.inputs(x, weight: weight, bias: bias)) {
        let input = x.contiguousInput()
        let w = weight?.contiguousInput(), b = bias?.contiguousInput()
        let out = Tensor(uninitializedShape: shape, label: "batch_norm")
        let mean = Tensor(uninitializedShape: [c], label: "batch_norm_mean")
        let rstd = Tensor(uninitializedShape: [c], label: "batch_norm_rstd")
        let channelGrain = Swift.max(1, elementwiseGrain / Swift.max(m, 1))
        withExtendedLifetime((input, w, b)) {
            let px = UnsafePointer(input.floatPointer), pm = mean.floatPointer, pr = rstd.floatPointer
            if useBatchStats {
                // rstd holds the biased variance until it is turned into 1/√(σ² + eps).
                parallelChunks(c, grain: channelGrain) { lo, hi in remat_batch_norm_stats_f32(px, n, c, p, pm, pr, lo, hi) }
                if training, let runningMean, let runningVar, !isRecomputing {
                    let rm = runningMean.contiguousInput(), rv = runningVar.contiguousInput()
                    precondition(rm.storage === runningMean.storage && rv.storage === runningVar.storage,
                                 "batch_norm: running statistics must be contiguous to be updated in place")
                    let prm = rm.floatPointer, prv = rv.floatPointer
                    let mom = Double(momentum), unbias = Double(m) / Double(m - 1)
                    for i in 0..<c {
                        prm[i] = Float((1 - mom) * Double(prm[i]) + mom * Double(pm[i]))
                        prv[i] = Float((1 - mom) * Double(prv[i]) + mom * Double(pr[i]) * unbias)
                    }
                }
                for i in 0..<c { pr[i] = Float(1 / (Double(pr[i]) + Double(eps)).squareRoot()) }
            } else {
                let rm = runningMean!.toArray(), rv = runningVar!.toArray()
                for i in 0..<c {
                    pm[i] = rm[i]
                    pr[i] = Float(1 / (Double(rv[i]) + Double(eps)).squareRoot())
                }
            }
            if out.count > 0 {
                let pw = w.map { UnsafePointer($0.floatPointer) }, pb = b.map { UnsafePointer($0.floatPointer) }
                let py = out.floatPointer, cm = UnsafePointer(pm), cr = UnsafePointer(pr)
                parallelChunks(c, grain: channelGrain) { lo, hi in
                    remat_batch_norm_apply_f32(px, n, c, p, cm, cr, pw, pb, py, lo, hi)
                }
            }
        }

        return OpResult(out, saving: norm.saving(x: x, mean: mean, rstd: rstd, weight: weight)) { ctx, g in
            let b = norm.backward(ctx, g)
            let (xs, ms, rs, ws, dy) = (b.x, b.mean, b.rstd, b.weight, b.gradOutput)
            let (needX, needW, needB) = (b.needX, b.needWeight, b.needBias)
            let dx = needX ? Tensor(uninitializedShape: shape, label: "batch_norm_backward") : nil
            let dw = needW ? Tensor(uninitializedShape: [c], label: "batch_norm_dweight") : nil
            let db = needB ? Tensor(uninitializedShape: [c], label: "batch_norm_dbias") : nil
            withExtendedLifetime((xs, ms, rs, ws, dy)) {
                let px = UnsafePointer(xs.floatPointer), pm = UnsafePointer(ms.floatPointer), pr = UnsafePointer(rs.floatPointer)
                let pw = ws.map { UnsafePointer($0.floatPointer) }, pg = UnsafePointer(dy.floatPointer)
                let pdx = dx?.floatPointer, pdw = dw?.floatPointer, pdb = db?.floatPointer
                parallelChunks(c, grain: channelGrain) { lo, hi in
                    remat_batch_norm_backward_f32(px, pg, n, c, p, pm, pr, pw, useBatchStats ? 1 : 0, pdx, pdw, pdb, lo, hi)
                }
            }
            return norm.gradients(dx: dx, dweight: dw, dbias: db)
        }
    }
}
