import CRematKernels
import Synchronization

/// The lower precision the products of an autocast scope compute in (PyTorch's `torch.autocast`
/// dtype).
///
/// Under autocast, ``linear(_:weight:bias:)``, ``matmul(_:_:)``, ``conv2d(_:weight:bias:stride:padding:dilation:)``
/// and ``causalAttentionProbabilities(q:k:scale:)`` round their operands to the precision (weights
/// included: a rounded copy per use, the float32 master weight untouched), multiply with float32
/// accumulation and round their output to the precision; every other op (norms, softmax, GELU,
/// residual adds, the loss) computes in float32 on what it is given, as its float32 self. Values
/// live in float32 storage whose values are the precision's: the products run the float32 GEMM
/// on them (each product of two bf16 or fp16 values is exact in float32, so this is the
/// low-precision GEMM with float32 accumulation; ``Runtime/bfloat16GemmPath`` says which GEMM
/// runs). In backward the products take their output gradient rounded to the precision and round
/// the gradients they return (as in PyTorch, where the gradient of a bf16 tensor is bf16; with
/// fp16 this is why loss scaling is needed); the other ops' gradients are float32.
///
/// The checkpoint layer's `withAutocast` sets this and stores every saved activation whose values
/// are the precision's in 2 bytes per element.
public enum AutocastPrecision: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case bfloat16
    case float16

    /// The 2-byte storage type of the precision's values.
    public var dtype: DType { self == .bfloat16 ? .bfloat16 : .float16 }

    /// `bf16` or `fp16` (the command-line spelling).
    public var description: String { self == .bfloat16 ? "bf16" : "fp16" }

    /// Whether every element of `t` (float32) is bitwise a value of this precision (so storing it
    /// in 2 bytes loses nothing). One pass over the elements (the whole storage for a view) when
    /// it is; each thread stops at its first inexact element when it is not.
    public func represents(_ t: Tensor) -> Bool {
        guard t.dtype == .float32 else { return false }
        let (base, n) = Autocast.span(t)
        guard n > 0 else { return true }
        let inexact = Atomic(false)
        parallelChunks(n, grain: elementwiseGrain) { lo, hi in
            let any = self == .bfloat16 ? remat_any_not_bf16(base, lo, hi) : remat_any_not_f16(base, lo, hi)
            if any != 0 { inexact.store(true, ordering: .relaxed) }
        }
        return !inexact.load(ordering: .relaxed)
    }
}

/// The rounding the autocast products apply (no autograd: the ops use it inside their forward
/// and backward).
enum Autocast {
    /// The precision of the current autocast scope (nil: float32).
    static var current: AutocastPrecision? { AutogradContext.current.autocast }

    /// The elements a representability test reads: a contiguous tensor's own, else its whole
    /// storage (a view's values are the precision's if its storage's are).
    static func span(_ t: Tensor) -> (UnsafePointer<Float>, Int) {
        if t.isContiguous { return (UnsafePointer(t.floatPointer), t.count) }
        return (UnsafePointer(t.storage.pointer.assumingMemoryBound(to: Float.self)), t.storage.byteCount / 4)
    }

    /// `x` itself outside autocast (`precision` nil) or when its values are already
    /// `precision`'s (the output of another autocast product, a view of one), else a new
    /// contiguous tensor of its values rounded to `precision` (round to nearest even; overflow to
    /// ±inf for fp16).
    static func operand(_ x: Tensor, _ precision: AutocastPrecision?, label: String) -> Tensor {
        guard let precision else { return x }
        // A parameter (a float32 master weight) is not tested: it is rounded, a copy per use.
        if x.storage.baseCategory != .parameters, precision.represents(x) { return x }
        let src = x.isContiguous ? x : x.contiguousCopy()
        let out = src === x ? Tensor(uninitializedShape: x.shape, label: label) : src
        round(src, into: out, precision)
        return out
    }

    /// What an autocast product saves of an operand it rounded to `rounded`: a parameter as itself
    /// (it costs no activation bytes; ``restored(_:_:label:)`` rounds it again), else the rounded
    /// operand.
    static func saved(_ original: Tensor, _ rounded: Tensor) -> Tensor {
        original.storage.baseCategory == .parameters ? original : rounded
    }

    /// A saved operand as the backward reads it: a parameter rounded to `precision` again (bitwise
    /// the forward's operand: the rounding is deterministic), anything else as saved.
    static func restored(_ saved: Tensor, _ precision: AutocastPrecision?, label: String) -> Tensor {
        saved.storage.baseCategory == .parameters ? operand(saved, precision, label: label) : saved
    }

    /// Rounds the values of the contiguous float32 tensor `t` to `precision` in place (an
    /// autocast product's fresh output).
    static func roundInPlace(_ t: Tensor, _ precision: AutocastPrecision) {
        round(t, into: t, precision)
    }

    /// The gradients an autocast product's backward returns, in `precision` as PyTorch's are (the
    /// gradient of a low-precision operand is low-precision; a parameter's is the float32 value of
    /// its low-precision copy's gradient): each rounded in place when contiguous (the kernels'
    /// fresh outputs, or an output gradient already rounded), else as a rounded copy.
    static func gradients(_ grads: [Tensor?], _ precision: AutocastPrecision?) -> [Tensor?] {
        guard let precision else { return grads }
        return grads.map { g in
            guard let g else { return nil }
            if g.isContiguous, g.dtype == .float32 {
                roundInPlace(g, precision)
                return g
            }
            return operand(g, precision, label: "autocast_gradient")
        }
    }

    private static func round(_ src: Tensor, into dst: Tensor, _ precision: AutocastPrecision) {
        let ps = UnsafePointer(src.floatPointer), pd = dst.floatPointer
        parallelChunks(src.count, grain: elementwiseGrain) { lo, hi in
            if precision == .bfloat16 { remat_round_bf16_f32(ps, pd, lo, hi) } else { remat_round_f16_f32(ps, pd, lo, hi) }
        }
    }
}

/// Runs `body` with the products computing in `precision` (nil: float32) — the flag alone,
/// without storing saved activations in 2 bytes: the checkpoint layer's `withAutocast` is the
/// scope to use. Recomputes set it as their forward had it.
package func withAutocastPrecision<R>(_ precision: AutocastPrecision?, _ body: () throws -> R) rethrows -> R {
    try AutogradContext.with({ $0.autocast = precision }, body)
}
