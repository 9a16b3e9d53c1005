/// The attention benchmark behind `remat bench attention`: the fused
/// ``scaledDotProductAttention(q:k:v:causal:mask:dropout:generator:)`` beside the explicit
/// ``causalSelfAttention(q:k:v:)`` on the same causal inputs, interleaved repetition by repetition
/// (the machine is shared and noisy), medians reported. Forward is timed with the graph recorded
/// (as in training); forward+backward includes the backward from a fixed output gradient. Saved
/// bytes are the ledger's saved activations held after the forward beyond the inputs q, k, v
/// (made outside the measured ledger: in a model they are views of the kept QKV projection).
public enum AttentionBenchmark {
    public struct Row: Codable, Sendable {
        public var kernel: String
        public var batch: Int, heads: Int, t: Int, head_dim: Int
        public var forward_ms: Double
        public var forward_backward_ms: Double
        public var saved_bytes: Int
    }

    public static let kernels = ["explicit", "fused"]

    /// Both kernels on `[batch, heads, t, headDim]` causal inputs, `reps` interleaved repetitions
    /// after one warm-up of each.
    public static func run(batch: Int, heads: Int, t: Int, headDim: Int, reps: Int) -> [Row] {
        let g = RandomGenerator(seed: 11)
        let shape = [batch, heads, t, headDim]
        let q = Tensor.randn(shape, generator: g, requiresGrad: true), k = Tensor.randn(shape, generator: g, requiresGrad: true)
        let v = Tensor.randn(shape, generator: g, requiresGrad: true), dOut = Tensor.randn(shape, generator: g)
        func call(_ kernel: String) -> Tensor {
            kernel == "fused" ? scaledDotProductAttention(q: q, k: k, v: v, causal: true) : causalSelfAttention(q: q, k: k, v: v)
        }
        var forward = [String: [Double]](), both = [String: [Double]](), saved = [String: Int]()
        let ledger = MemoryLedger()
        MemoryLedger.withLedger(ledger) {
            for rep in -1..<reps {
                for kernel in kernels {
                    for x in [q, k, v] { x.grad = nil }
                    let f: Double = {   // the output and its graph are released at the end
                        let t0 = monotonicSeconds()
                        let y = call(kernel)
                        let f = monotonicSeconds() - t0
                        saved[kernel] = ledger.currentBytes(in: .activations)
                        return withExtendedLifetime(y) { f }
                    }()
                    let t0 = monotonicSeconds()
                    call(kernel).backward(gradient: dOut)
                    let fb = monotonicSeconds() - t0
                    if rep >= 0 {
                        forward[kernel, default: []].append(f)
                        both[kernel, default: []].append(fb)
                    }
                }
            }
        }
        return kernels.map { kernel in
            Row(kernel: kernel, batch: batch, heads: heads, t: t, head_dim: headDim, forward_ms: median(forward[kernel]!) * 1e3,
                forward_backward_ms: median(both[kernel]!) * 1e3, saved_bytes: saved[kernel]!)
        }
    }
}
