import CRematKernels

// Unary and activation ops: exp, log, sqrt, rsqrt, tanh, pow (scalar exponent), erf, relu, gelu
// (exact and tanh-approximated), silu, sigmoid.
//
// Every op is elementwise: the output is a new contiguous float32 tensor of the input's shape
// (a non-contiguous input is copied first), and forward and backward each run one C kernel pass
// (Sources/CRematKernels/unary.c), split over threads in chunks of `elementwiseGrain` elements.
//
// What backward keeps: exactly one tensor of the input's shape, `4·numel` bytes, per op, nothing
// else: the OUTPUT for exp, sqrt, rsqrt, tanh, sigmoid and relu (whose derivative is a function of
// the output), the INPUT for log, pow, erf, gelu and silu. A non-contiguous input is saved as the
// view it is (no copy is kept); backward makes it contiguous when it runs.
//
// Numerics: transcendentals use the branch-free approximations in remat_math.h, whose doc states
// each bound; the bounds below are for the whole op, measured against double-precision libm
// ("ulp" = 2⁻²³ relative error). Backward formulas are evaluated in float32, each in one pass.

/// Which tensor an op's backward reads.
private enum UnarySaved { case input, output }

/// `(x, y, begin, end)`: writes `y[i] = f(x[i])` for `i` in `begin..<end`.
private typealias UnaryForwardKernel = (UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int, Int) -> Void
/// `(saved, dy, dx, begin, end)`: writes `dx[i]` from the saved tensor and the output gradient.
private typealias UnaryBackwardKernel = (UnsafePointer<Float>, UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int, Int) -> Void

/// Runs `kernel` over the elements of contiguous float32 `input` into a new tensor of its shape.
private func mapElements(_ input: Tensor, label: String, _ kernel: UnaryForwardKernel) -> Tensor {
    let out = Tensor(uninitializedShape: input.shape, label: label)
    withExtendedLifetime(input) {
        let px = UnsafePointer(input.floatPointer), py = out.floatPointer
        parallelChunks(out.count, grain: elementwiseGrain) { lo, hi in kernel(px, py, lo, hi) }
    }
    return out
}

/// The shared op skeleton: forward kernel, one saved tensor (the input or the output), and a
/// one-pass backward kernel that writes the input gradient.
private func unaryOp(_ op: OpKind, _ x: Tensor, saves: UnarySaved,
                     forward: UnaryForwardKernel, backward: @escaping UnaryBackwardKernel) -> Tensor {
    Autograd.op(op, inputs: [x]) {
        let out = mapElements(x.contiguousInput(), label: op.rawValue, forward)
        let shape = x.shape
        return OpResult(out, saving: [saves == .input ? (role: "input", tensor: x) : (role: "output", tensor: out)]) { ctx, g in
            let s = ctx.saved[0].contiguousInput(), gc = g.contiguousInput()
            precondition(s.shape == shape && gc.shape == shape,
                         "\(op.rawValue) backward: saved \(s.shape) / gradient \(gc.shape) do not match input \(shape)")
            let dx = Tensor(uninitializedShape: shape, label: "\(op.rawValue)_backward")
            withExtendedLifetime((s, gc)) {
                let ps = UnsafePointer(s.floatPointer), pg = UnsafePointer(gc.floatPointer), pd = dx.floatPointer
                parallelChunks(dx.count, grain: elementwiseGrain) { lo, hi in backward(ps, pg, pd, lo, hi) }
            }
            return [dx]
        }
    }
}

// MARK: - exp, log

/// Elementwise `eˣ`.
///
/// Backward: `dx = dy·y`. Saves: the output `y`, `4·numel` bytes.
/// Numerics: relative error ≤ 1 ulp for x in [−87.3, 88.7] (0.71 measured over all floats);
/// `x < −87.34` gives `+0` (so
/// `exp(−inf) = 0`), `x > 88.72` gives `+inf`, NaN propagates. Results that would be subnormal
/// (x in [−103.9, −87.34]) flush to `+0`.
public func exp(_ x: Tensor) -> Tensor {
    unaryOp(.exp, x, saves: .output,
            forward: { remat_exp_f32($0, $1, $2, $3) },
            backward: { remat_exp_backward_f32($0, $1, $2, $3, $4) })
}

/// Elementwise natural logarithm `ln x`.
///
/// Backward: `dx = dy / x`. Saves: the input `x`, `4·numel` bytes.
/// Numerics: relative error ≤ 1 ulp for every positive finite float, subnormals included (0.69
/// measured over all floats);
/// `ln 1 = 0` exactly; `ln(±0) = −inf`, `ln(x < 0) = NaN`, `ln(+inf) = +inf`, NaN propagates.
/// The gradient at `x = 0` is `±inf` (or NaN where `dy = 0`), as in PyTorch.
public func log(_ x: Tensor) -> Tensor {
    unaryOp(.log, x, saves: .input,
            forward: { remat_log_f32($0, $1, $2, $3) },
            backward: { remat_log_backward_f32($0, $1, $2, $3, $4) })
}

// MARK: - sqrt, rsqrt, pow

/// Elementwise square root `√x` (correctly rounded, IEEE: `√−0 = −0`, `x < 0` gives NaN).
///
/// Backward: `dx = dy / (2y)`. Saves: the output `y`, `4·numel` bytes.
/// The gradient at `x = 0` is `inf` (NaN where `dy = 0`), as in PyTorch.
public func sqrt(_ x: Tensor) -> Tensor {
    unaryOp(.sqrt, x, saves: .output,
            forward: { remat_sqrt_f32($0, $1, $2, $3) },
            backward: { remat_sqrt_backward_f32($0, $1, $2, $3, $4) })
}

/// Elementwise reciprocal square root `1/√x`.
///
/// Backward: `dx = −½·dy·y³`. Saves: the output `y`, `4·numel` bytes.
/// Numerics: `1/√x` with two roundings (≤ 1 ulp); `rsqrt(±0) = ±inf`, `rsqrt(+inf) = 0`,
/// `x < 0` gives NaN.
public func rsqrt(_ x: Tensor) -> Tensor {
    unaryOp(.rsqrt, x, saves: .output,
            forward: { remat_rsqrt_f32($0, $1, $2, $3) },
            backward: { remat_rsqrt_backward_f32($0, $1, $2, $3, $4) })
}

/// Elementwise power `xᵖ` with a scalar exponent `p` (which must be finite).
///
/// Backward: `dx = dy·p·xᵖ⁻¹` (and `0` for `p = 0`, as PyTorch). Saves: the input `x`,
/// `4·numel` bytes.
/// Numerics: `p` in {0, ±1, 2, 3, −2, ±½} is computed directly (`x·x`, `1/x`, `√x`, ...), within
/// 1 ulp while intermediates such as `x²` stay normal. Other `p` use `exp(p·ln|x|)`: relative error
/// ≤ (2 + |p·ln x|) ulp, since the float product `p·ln x` carries an absolute error of up to an
/// ulp of itself; results within that error of `Float.greatestFiniteMagnitude` may overflow to inf. Negative `x`: odd integer `p`
/// gives a negative result, even integer `p` a positive one, non-integer `p` NaN (also for
/// `x = −inf`). `x⁰ = 1` for every `x`, NaN included, as C `pow`.
public func pow(_ x: Tensor, _ exponent: Float) -> Tensor {
    precondition(exponent.isFinite, "pow: exponent must be finite, got \(exponent)")
    return unaryOp(.pow, x, saves: .input,
                   forward: { remat_pow_f32($0, exponent, $1, $2, $3) },
                   backward: { remat_pow_backward_f32($0, exponent, $1, $2, $3, $4) })
}

// MARK: - tanh, sigmoid, erf

/// Elementwise hyperbolic tangent.
///
/// Backward: `dx = dy·(1 − y²)`. Saves: the output `y`, `4·numel` bytes.
/// Numerics: relative error ≤ 1.5 ulp everywhere; `tanh(±0) = ±0`; `|x| ≥ 9.011` gives exactly `±1`;
/// NaN propagates. Since `1 − y²` is computed from the rounded output, the gradient is 0 where
/// `y` rounds to `±1` (true value < 1.2e-7 there).
public func tanh(_ x: Tensor) -> Tensor {
    unaryOp(.tanh, x, saves: .output,
            forward: { remat_tanh_f32($0, $1, $2, $3) },
            backward: { remat_tanh_backward_f32($0, $1, $2, $3, $4) })
}

/// Elementwise logistic sigmoid `σ(x) = 1 / (1 + e⁻ˣ)`.
///
/// Backward: `dx = dy·y·(1 − y)`. Saves: the output `y`, `4·numel` bytes.
/// Numerics: relative error ≤ 1.5 ulp for `x ≥ −87`; `σ(x) = 0` for `x < −88.7` (true value
/// < 3e-39); `σ(+inf) = 1`, `σ(−inf) = 0`, NaN propagates.
public func sigmoid(_ x: Tensor) -> Tensor {
    unaryOp(.sigmoid, x, saves: .output,
            forward: { remat_sigmoid_f32($0, $1, $2, $3) },
            backward: { remat_sigmoid_backward_f32($0, $1, $2, $3, $4) })
}

/// Elementwise Gauss error function `erf x = (2/√π)∫₀ˣ e^{−t²} dt`.
///
/// Backward: `dx = dy·(2/√π)·e^{−x²}`. Saves: the input `x`, `4·numel` bytes.
/// Numerics: relative error ≤ 2 ulp everywhere; `erf(±0) = ±0`; `|x| ≥ 3.92` gives exactly `±1`;
/// NaN propagates.
public func erf(_ x: Tensor) -> Tensor {
    unaryOp(.erf, x, saves: .input,
            forward: { remat_erf_f32($0, $1, $2, $3) },
            backward: { remat_erf_backward_f32($0, $1, $2, $3, $4) })
}

// MARK: - Activations

/// Elementwise rectified linear unit `max(x, 0)` (NaN propagates).
///
/// Backward: `dx = dy` where `y > 0`, else `0` (the derivative at 0 is taken as 0, as PyTorch).
/// Saves: the OUTPUT `y` (not the input: `y > 0 ⇔ x > 0`, and the output is usually saved by the
/// next op anyway), `4·numel` bytes.
public func relu(_ x: Tensor) -> Tensor {
    unaryOp(.relu, x, saves: .output,
            forward: { remat_relu_f32($0, $1, $2, $3) },
            backward: { remat_relu_backward_f32($0, $1, $2, $3, $4) })
}

/// How ``gelu(_:approximation:)`` evaluates the Gaussian CDF (PyTorch's `approximate=`).
public enum GELUApproximation: Sendable, Hashable {
    /// Exact: `x·Φ(x)` with `Φ` from erf (PyTorch `approximate="none"`, the default).
    case none
    /// `½x(1 + tanh(√(2/π)(x + 0.044715x³)))` (PyTorch `approximate="tanh"`, GPT-2's GELU).
    case tanh
}

/// Elementwise Gaussian error linear unit.
///
/// - `.none` (default): `x·Φ(x)`, `Φ(x) = ½(1 + erf(x/√2))`. Backward: `dx = dy·(Φ(x) + x·φ(x))`,
///   `φ(x) = e^{−x²/2}/√(2π)`. Numerics: `Φ` is taken from `erfc` for `x < 0`, so there is no
///   `1 + erf` cancellation: relative error ≤ 3 ulp·(1 + x²) for `x ≥ −5.65` (the x² factor is the
///   conditioning of `Φ`; ≤ 4 ulp for |x| ≤ 1); below, the result is `−0` (true |value| < 5e-8).
/// - `.tanh`: `½x(1 + tanh u)`, `u = √(2/π)(x + 0.044715x³)`, evaluated as the identical `x·σ(2u)`
///   (no cancellation for `x < 0`). Relative error ≤ 2 ulp·(1 + x²) wherever the result is a normal
///   float (x ≥ −9.1; the x² again is conditioning); below, it underflows towards `−0`.
///
/// Saves: the input `x`, `4·numel` bytes. `gelu(−inf) = −0`, `gelu(+inf) = +inf` and the
/// gradients at `±inf` are `0` / `1` (the limits, not the NaN a literal `inf·0` would give).
public func gelu(_ x: Tensor, approximation: GELUApproximation = .none) -> Tensor {
    switch approximation {
    case .none:
        return unaryOp(.gelu, x, saves: .input,
                       forward: { remat_gelu_f32($0, $1, $2, $3) },
                       backward: { remat_gelu_backward_f32($0, $1, $2, $3, $4) })
    case .tanh:
        return unaryOp(.gelu, x, saves: .input,
                       forward: { remat_gelu_tanh_f32($0, $1, $2, $3) },
                       backward: { remat_gelu_tanh_backward_f32($0, $1, $2, $3, $4) })
    }
}

/// Elementwise SiLU (swish) `x·σ(x)`.
///
/// Backward: `dx = dy·(σ + x·σ(1 − σ))`, with `σ(1 − σ)` computed as `σ²·e⁻ˣ` (no cancellation).
/// Saves: the input `x`, `4·numel` bytes.
/// Numerics: relative error ≤ 2 ulp for `x ≥ −87`; `silu(x) = −0` for `x < −88.7` (true |value|
/// < 1e-36); `silu(−inf) = −0`, `silu(+inf) = +inf`, NaN propagates.
public func silu(_ x: Tensor) -> Tensor {
    unaryOp(.silu, x, saves: .input,
            forward: { remat_silu_f32($0, $1, $2, $3) },
            backward: { remat_silu_backward_f32($0, $1, $2, $3, $4) })
}
