import CRematKernels

/// Inverted dropout whose mask is never stored: it is regenerated from the RNG state.
///
/// Math: with `s = generator.state` before the call and `u_i` the `i`-th uniform of
/// `RandomGenerator(state: s).fillUniform` (element `i` of `x` in row-major order, `u_i ∈ [0, 1)`,
/// a multiple of 2⁻²⁴), element `i` is kept iff `u_i >= p`:
/// `y_i = u_i >= p ? x_i / (1 − p) : 0`, and `dx_i = u_i >= p ? dy_i / (1 − p) : 0`.
/// A kept element has probability `1 − ⌈p·2²⁴⌉·2⁻²⁴` (i.e. `1 − p` up to 2⁻²⁴).
///
/// Stream consumption: exactly like `generator.fillUniform` of `numel(x)` elements — the draw
/// starts at block `s.offset` and advances `generator.state.offset` by `⌈numel(x) / 4⌉`
/// (also for `p = 1`). `p = 0` or `training == false` returns `x` itself and consumes nothing.
///
/// Saves: **nothing** — 0 activation bytes. The backward closure captures only the plain values
/// `(seed, offset)` (an ``RNGState``), `p` and the shape, and redraws the identical mask from a
/// fresh `RandomGenerator(state:)` (Philox is counter-based, so the redraw is bitwise identical
/// and independent of anything the caller's generator did in between). Neither `x` nor the output
/// nor a mask is kept. The mask is fused into the kernel: uniforms are drawn in 4 KiB stack tiles.
///
/// Caveats: `1/(1 − p)` is rounded to float once, so a kept value is `x · fl(1/(1 − p))` (not
/// `x / (1 − p)` correctly rounded); for `p = 1` every output is exactly `+0` (also for a NaN or
/// infinite input) and the gradient is zero.
///
/// - Precondition: `0 ≤ p ≤ 1`; `x` is float32.
public func dropout(_ x: Tensor, probability p: Float, generator: RandomGenerator, training: Bool = true) -> Tensor {
    precondition(p >= 0 && p <= 1, "dropout: probability \(p) is not in [0, 1] (input shape \(x.shape))")
    precondition(x.dtype == .float32, "dropout: needs float32, got \(x.dtype) (shape \(x.shape))")
    if p == 0 || !training { return x }

    let n = x.count
    AutogradContext.current.generatorObserver?(generator)   // a region captures the state to replay
    let state = generator.state
    generator.state.offset &+= UInt64((n + 3) / 4)   // the fillUniform rule: ⌈n/4⌉ blocks
    let scale: Float = p < 1 ? 1 / (1 - p) : 0

    return Autograd.op(.dropout, inputs: [x]) {
        OpResult(dropoutKernel(x.contiguousInput(), state: state, p: p, scale: scale, label: "dropout")) { _, g in
            [dropoutKernel(g.contiguousInput(), state: state, p: p, scale: scale, label: "dropout_backward")]
        }
    }
}

/// `out_i = u_i >= p ? x_i · scale : 0` with `u_i` the uniform stream at `state` (no autograd).
func dropoutKernel(_ x: Tensor, state: RNGState, p: Float, scale: Float, label: String) -> Tensor {
    let out = Tensor(uninitializedShape: x.shape, label: label)
    let n = out.count
    guard n > 0 else { return out }
    let px = x.floatPointer, po = out.floatPointer
    if p >= 1 {
        po.initialize(repeating: 0, count: n)
        return out
    }
    parallelChunks(n, grain: elementwiseGrain) { lo, hi in
        remat_dropout_f32(px, po, lo, hi, state.seed, state.offset, p, scale)
    }
    return out
}
