import CRematKernels
import Synchronization

/// Fused in-place optimizer updates (no autograd). Parameters, gradients and state must be
/// contiguous float32 of the same shape.
public enum OptimizerKernels {
    /// One AdamW step (decoupled weight decay, bias-corrected moments, PyTorch semantics) at step `t` ≥ 1.
    public static func adamW(parameter p: Tensor, gradient g: Tensor, firstMoment m: Tensor, secondMoment v: Tensor,
                             learningRate lr: Float, beta1: Float, beta2: Float, eps: Float, weightDecay: Float, step t: Int) {
        check(p, g, m, v, op: "adamW")
        let bc1 = 1 - Float(Foundation_pow(Double(beta1), Double(t)))
        let bc2 = 1 - Float(Foundation_pow(Double(beta2), Double(t)))
        let (pp, pg, pm, pv) = (p.floatPointer, g.floatPointer, m.floatPointer, v.floatPointer)
        parallelChunks(p.count, grain: elementwiseGrain) { lo, hi in
            remat_adamw_step_f32(pp, pg, pm, pv, lo, hi, lr, beta1, beta2, eps, weightDecay, bc1, bc2)
        }
    }

    /// One SGD step (coupled weight decay, momentum with dampening, optional Nesterov, PyTorch semantics).
    public static func sgd(parameter p: Tensor, gradient g: Tensor, momentumBuffer buf: Tensor?, learningRate lr: Float,
                           momentum: Float, dampening: Float, weightDecay: Float, nesterov: Bool, firstStep: Bool) {
        check(p, g, buf ?? g, buf ?? g, op: "sgd")
        let (pp, pg) = (p.floatPointer, g.floatPointer)
        let pb = buf?.floatPointer
        parallelChunks(p.count, grain: elementwiseGrain) { lo, hi in
            remat_sgd_step_f32(pp, pg, pb, lo, hi, lr, momentum, dampening, weightDecay, nesterov ? 1 : 0, firstStep ? 1 : 0)
        }
    }

    /// Σ x² over all elements of a contiguous float32 tensor, in Double.
    public static func sumOfSquares(_ x: Tensor) -> Double {
        let c = x.contiguousInput()
        let px = c.floatPointer
        let total = Mutex(0.0)
        parallelChunks(c.count, grain: elementwiseGrain) { lo, hi in
            let s = remat_sum_squares_f32(px, lo, hi)
            total.withLock { $0 += s }
        }
        return total.withLock { $0 }
    }

    /// `x *= s` in place.
    public static func scale(_ x: Tensor, by s: Float) {
        precondition(x.isContiguous && x.dtype == .float32, "scale: needs contiguous float32, got shape \(x.shape)")
        let px = x.floatPointer
        parallelChunks(x.count, grain: elementwiseGrain) { lo, hi in remat_binary_scalar_f32(2, px, s, px, lo, hi) }
    }

    private static func check(_ p: Tensor, _ g: Tensor, _ m: Tensor, _ v: Tensor, op: String) {
        for (name, t) in [("parameter", p), ("gradient", g), ("state", m), ("state", v)] {
            precondition(t.dtype == .float32 && t.isContiguous && t.shape == p.shape,
                         "\(op): \(name) must be contiguous float32 of shape \(p.shape), got \(t.dtype) \(t.shape)")
        }
    }
}

#if canImport(Glibc)
import Glibc
private func Foundation_pow(_ a: Double, _ b: Double) -> Double { Glibc.pow(a, b) }
#else
import Darwin
private func Foundation_pow(_ a: Double, _ b: Double) -> Double { Darwin.pow(a, b) }
#endif
