import Testing
import Remat

/// Every op kind the engine defines obeys a selective region's decision for it, because the
/// engine asks the region before any op computes: with `mustSave` the op's output is held after
/// the forward and the recompute serves it (the op is not recomputed); with `mustRecompute` it is
/// recomputed and nothing holds its output. Gradients are bitwise those without a region.
@Suite struct SelectiveEveryOpTests {
    /// What the region under test runs: `consumer(op(prep(x)))`, where `prep` makes a fresh
    /// tensor in (0, 1) and `consumer` saves its own output (so its recompute needs the op's).
    struct Case {
        let op: String
        let body: (Tensor) -> Tensor
    }

    /// The parameters the cases use (fresh for every run: test cases run in parallel).
    struct Parameters {
        let rng = RandomGenerator(seed: 21)
        let w, bias, convWeight, gamma3, beta3, gamma4, beta4, table: Tensor
        let ids = Tensor(indices: (0..<24).map { ($0 * 7) % 10 }, shape: [2, 3, 4])
        let classes = Tensor(indices: (0..<24).map { $0 % 4 }, shape: [24])
        init() {
            let g = rng
            func p(_ shape: [Int]) -> Tensor { Tensor.randn(shape, generator: g, requiresGrad: true) }
            w = p([5, 4]); bias = p([5]); convWeight = p([2, 3, 3, 3])
            gamma3 = p([3]); beta3 = p([3]); gamma4 = p([4]); beta4 = p([4]); table = p([10, 4])
        }
        var all: [Tensor] { [w, bias, convWeight, gamma3, beta3, gamma4, beta4, table] }
    }

    /// The region body for `kind` (input `x` is `[2, 3, 4, 4]`).
    static func makeCase(_ kind: OpKind, _ P: Parameters) -> Case {
        let (w, bias, convWeight, gamma3, beta3, gamma4, beta4, table, ids, classes) =
            (P.w, P.bias, P.convWeight, P.gamma3, P.beta3, P.gamma4, P.beta4, P.table, P.ids, P.classes)
        let prep: (Tensor) -> Tensor = kind == .sigmoid ? { tanh($0) * 0.25 + 0.5 } : { sigmoid($0) }
        let consumer: (Tensor) -> Tensor = kind == .exp ? { tanh($0) } : { exp($0) }
        let op: (Tensor, Tensor) -> Tensor   // (prepared, region input)
        switch kind {
        case .add: op = { p, x in p + x }
        case .sub: op = { p, x in p - x }
        case .mul: op = { p, x in p * x }
        case .div: op = { p, x in x / p }
        case .neg: op = { p, _ in -p }
        case .addScalar: op = { p, _ in p + 1.5 }
        case .rsubScalar: op = { p, _ in 1.5 - p }
        case .mulScalar: op = { p, _ in p * 1.5 }
        case .maximum: op = { p, x in p.maximum(x) }
        case .minimum: op = { p, x in p.minimum(x) }
        case .contiguous: op = { p, _ in p.transposed(1, 2).contiguous() }
        case .reshape: op = { p, _ in p.reshaped([6, 16]) }
        case .permute: op = { p, _ in p.permuted([0, 2, 1, 3]) }
        case .narrow: op = { p, _ in p.narrowed(axis: 1, start: 1, length: 2) }
        case .expand: op = { p, _ in p.narrowed(axis: 1, start: 0, length: 1).expanded(to: [2, 3, 4, 4]) }
        case .unsqueeze: op = { p, _ in p.unsqueezed(0) }
        case .squeeze: op = { p, _ in p.narrowed(axis: 1, start: 0, length: 1).squeezed(1) }
        case .tag: op = { p, _ in p.tagged("mid") }
        case .sum: op = { p, _ in p.summed(alongAxes: [1]) }
        case .max: op = { p, _ in p.max(alongAxis: 1) }
        case .exp: op = { p, _ in exp(p) }
        case .log: op = { p, _ in log(p) }
        case .sqrt: op = { p, _ in sqrt(p) }
        case .rsqrt: op = { p, _ in rsqrt(p) }
        case .pow: op = { p, _ in pow(p, 3) }
        case .tanh: op = { p, _ in tanh(p) }
        case .sigmoid: op = { p, _ in sigmoid(p) }
        case .erf: op = { p, _ in erf(p) }
        case .relu: op = { p, x in relu(p - x) }
        case .gelu: op = { p, _ in gelu(p) }
        case .silu: op = { p, _ in silu(p) }
        case .softmax: op = { p, _ in softmax(p) }
        case .logSoftmax: op = { p, _ in logSoftmax(p) }
        case .causalMask: op = { p, _ in causalMask(p, scale: 0.5) }
        case .causalSoftmax: op = { p, _ in causalSoftmax(p, scale: 0.5) }
        case .attentionProbabilities: op = { p, x in causalAttentionProbabilities(q: p, k: x, scale: 0.5) }
        case .scaledDotProductAttention: op = { p, x in scaledDotProductAttention(q: p, k: x, v: p * x, causal: true) }
        case .matmul: op = { p, x in matmul(p, x.transposed()) }
        case .linear: op = { p, _ in linear(p, weight: w, bias: bias) }
        case .float8Linear:
            let scales = Float8ScaleRecord()
            op = { p, _ in float8Linear(p, weight: w, bias: bias, scales: scales) }
        case .conv2d: op = { p, _ in conv2d(p, weight: convWeight, bias: nil, padding: (1, 1)) }
        case .batchNorm: op = { p, _ in batchNorm2d(p, weight: gamma3, bias: beta3, runningMean: nil, runningVar: nil, training: true) }
        case .layerNorm: op = { p, _ in layerNorm(p, weight: gamma4, bias: beta4) }
        case .maxPool2d: op = { p, _ in maxPool2d(p, kernel: 2, stride: 2, padding: 0) }
        case .adaptiveAvgPool2d: op = { p, _ in adaptiveAvgPool2d(p) }
        case .embedding: op = { p, _ in embedding(ids, weight: table) * p }
        case .crossEntropy: op = { p, _ in crossEntropy(logits: p.reshaped([24, 4]), targets: classes) }
        case .dropout: op = { p, _ in dropout(p, probability: 0.5, generator: RandomGenerator(seed: 5)) }
        case .concat: op = { p, x in concat([p, x], axis: 1) }
        }
        return Case(op: kind == .tag ? "tag:mid" : kind.rawValue, body: { x in consumer(op(prep(x), x)) })
    }

    final class Probe: @unchecked Sendable {
        weak var output: Storage?
        var regions: [CheckpointRegion] = []
    }

    /// Loss, input gradient (bit patterns) and, with a region, the region and whether the op's
    /// output was alive when the forward ended.
    static func run(_ kind: OpKind, decision: SelectivePolicy.Decision?) -> (op: String, grads: [[UInt32]], region: CheckpointRegion?, heldAfterForward: Bool) {
        let x = Tensor.randn([2, 3, 4, 4], generator: RandomGenerator(seed: 3), requiresGrad: true)
        let parameters = Parameters()
        let c = makeCase(kind, parameters)
        let probe = Probe()
        let op = c.op
        // The op's output storage: the first node of its kind the forward records.
        let observe: @Sendable (Node, Tensor) -> Void = { node, out in
            if node.op == op && !isRecomputing && probe.output == nil { probe.output = out.storage }
        }
        var held = false
        CheckpointRegion.$debugSink.withValue(CheckpointRegion.RegionSink { probe.regions.append($0) }) {
            let y = AutogradContext.with({ $0.opObserver = observe }) {
                withNameScope("") {
                    withNameScope("probe") { () -> Tensor in
                        guard let decision else { return c.body(x) }
                        let options = CheckpointOptions(debug: true, selective: .perOp([c.op: decision]))
                        return checkpoint([x], options: options) { xs in [c.body(xs[0])] }[0]
                    }
                }
            }
            held = probe.output != nil
            y.summed().backward()
        }
        let grads = ([x] + parameters.all).map { $0.grad?.toArray().map(\.bitPattern) ?? [] }
        return (c.op, grads, probe.regions.first, held)
    }

    @Test(arguments: OpKind.allCases)
    func mustSaveHoldsAndServesRecomputeRecomputes(kind: OpKind) throws {
        let plain = Self.run(kind, decision: nil)
        let op = plain.op
        let name = "probe/\(op)#0"

        let saved = Self.run(kind, decision: .mustSave)
        #expect(saved.grads == plain.grads, "\(op) kept: gradients differ from no checkpointing")
        let keep = try #require(saved.region)
        #expect(keep.keptOutputs == [name], "\(op) kept: \(keep.keptOutputs)")
        #expect(saved.heldAfterForward, "\(op) kept: its output is not held after the forward")
        #expect(keep.recomputeCount == 1)
        #expect(!keep.trace.contains("recompute \(name)"), "\(op) kept but recomputed: \(keep.trace)")
        #expect(keep.trace.contains("serve \(name)"), "\(op) kept: the recompute did not serve it: \(keep.trace)")

        let recomputed = Self.run(kind, decision: .mustRecompute)
        #expect(recomputed.grads == plain.grads, "\(op) recomputed: gradients differ from no checkpointing")
        let again = try #require(recomputed.region)
        #expect(again.keptOutputs.isEmpty)
        #expect(!recomputed.heldAfterForward, "\(op) recomputed: its output is still held after the forward")
        #expect(again.trace.contains("recompute \(name)"), "\(op) not recomputed: \(again.trace)")
    }
}
