import Foundation
import Testing
import RematCore

/// One unary op under test: the op, a Double reference, the input range its gradient is checked
/// on, the forward tolerance, and what it documents that it saves.
struct UnaryCase: Sendable, CustomTestStringConvertible {
    var name: String
    var op: @Sendable (Tensor) -> Tensor
    var reference: @Sendable (Double) -> Double
    /// Input range for value and gradient checks.
    var low: Float = -2, high: Float = 2
    /// Kinks to keep away from in gradient checks.
    var kinks: [Float] = []
    /// Allowed relative error of the forward value at x, in ulp (2⁻²³): the documented bound.
    var ulps: @Sendable (Double) -> Double
    /// The saved tensor's role: "input" or "output".
    var saves: String
    var testDescription: String { name }

    static let all: [UnaryCase] = [
        UnaryCase(name: "exp", op: { exp($0) }, reference: { Foundation.exp($0) }, ulps: { _ in 1 }, saves: "output"),
        UnaryCase(name: "log", op: { log($0) }, reference: { Foundation.log($0) }, low: 0.3, high: 3, ulps: { _ in 1 }, saves: "input"),
        UnaryCase(name: "sqrt", op: { sqrt($0) }, reference: { $0.squareRoot() }, low: 0.3, high: 3,
                  ulps: { _ in 0.5 }, saves: "output"),
        UnaryCase(name: "rsqrt", op: { rsqrt($0) }, reference: { 1 / $0.squareRoot() }, low: 0.3, high: 3,
                  ulps: { _ in 1 }, saves: "output"),
        UnaryCase(name: "tanh", op: { tanh($0) }, reference: { Foundation.tanh($0) }, ulps: { _ in 1.5 }, saves: "output"),
        UnaryCase(name: "erf", op: { erf($0) }, reference: { Foundation.erf($0) }, ulps: { _ in 2 }, saves: "input"),
        UnaryCase(name: "pow(x, 2)", op: { pow($0, 2) }, reference: { $0 * $0 }, ulps: { _ in 1 }, saves: "input"),
        UnaryCase(name: "pow(x, 3)", op: { pow($0, 3) }, reference: { $0 * $0 * $0 }, ulps: { _ in 1 }, saves: "input"),
        UnaryCase(name: "pow(x, 0.5)", op: { pow($0, 0.5) }, reference: { $0.squareRoot() }, low: 0.3, high: 3,
                  ulps: { _ in 1 }, saves: "input"),
        UnaryCase(name: "pow(x, -1.5)", op: { pow($0, -1.5) }, reference: { Foundation.pow($0, -1.5) },
                  low: 0.3, high: 3, ulps: { x in 2 + 1.5 * abs(Foundation.log(x)) }, saves: "input"),
        UnaryCase(name: "pow(x, 2.5)", op: { pow($0, 2.5) }, reference: { Foundation.pow($0, 2.5) },
                  low: 0.3, high: 3, ulps: { x in 2 + 2.5 * abs(Foundation.log(x)) }, saves: "input"),
        UnaryCase(name: "pow(x, 4) negative base", op: { pow($0, 4) }, reference: { Foundation.pow($0, 4) },
                  low: -2, high: -0.3, ulps: { x in 2 + 4 * abs(Foundation.log(-x)) }, saves: "input"),
        UnaryCase(name: "pow(x, -3) negative base", op: { pow($0, -3) }, reference: { Foundation.pow($0, -3) },
                  low: -2, high: -0.3, ulps: { x in 2 + 3 * abs(Foundation.log(-x)) }, saves: "input"),
        UnaryCase(name: "relu", op: { relu($0) }, reference: { Swift.max($0, 0) }, kinks: [0], ulps: { _ in 0 }, saves: "output"),
        UnaryCase(name: "gelu", op: { gelu($0) }, reference: { $0 * 0.5 * Foundation.erfc(-$0 / 2.0.squareRoot()) },
                  low: -3, high: 3, ulps: { x in 3 * (1 + x * x) }, saves: "input"),
        UnaryCase(name: "gelu tanh", op: { gelu($0, approximation: .tanh) },
                  reference: { x in 0.5 * x * (1 + Foundation.tanh((2 / Double.pi).squareRoot() * (x + 0.044715 * x * x * x))) },
                  low: -3, high: 3, ulps: { x in 2 * (1 + x * x) }, saves: "input"),
        UnaryCase(name: "silu", op: { silu($0) }, reference: { $0 / (1 + Foundation.exp(-$0)) }, low: -4, high: 4,
                  ulps: { _ in 2 }, saves: "input"),
        UnaryCase(name: "sigmoid", op: { sigmoid($0) }, reference: { 1 / (1 + Foundation.exp(-$0)) }, low: -4, high: 4,
                  ulps: { _ in 1.5 }, saves: "output"),
    ]

    /// A random leaf in [low, high) that keeps clear of the kinks.
    func input(_ shape: [Int], seed: UInt64) -> Tensor {
        if kinks.isEmpty { return randomTensor(shape, seed: seed, low: low, high: high) }
        return randomTensorAvoiding(kinks, shape: shape, seed: seed)
    }
}

@Suite struct UnaryOpTests {
    @Test(arguments: UnaryCase.all)
    func gradientMatchesFiniteDifferences(_ c: UnaryCase) {
        let x = c.input([3, 4], seed: 7)
        GradCheck().check(c.name, [x]) { xs in c.op(xs[0]) }
    }

    /// A transposed (non-contiguous) view: the op copies it, the gradient lands in the view's layout.
    @Test(arguments: UnaryCase.all)
    func gradientThroughNonContiguousInput(_ c: UnaryCase) {
        let x = c.input([3, 4], seed: 8)
        GradCheck().check(c.name + " (transposed)", [x]) { xs in c.op(xs[0].transposed()) }
    }

    /// Forward values against a Double reference, within the documented error (in ulp, 2⁻²³ relative).
    @Test(arguments: UnaryCase.all)
    func valuesMatchDoubleReference(_ c: UnaryCase) {
        let x = noGrad { c.input([64, 65], seed: 9) }
        let xs = x.toArray(), ys = noGrad { c.op(x) }.toArray()
        for (xv, yv) in zip(xs, ys) {
            let r = c.reference(Double(xv))
            let tol = c.ulps(Double(xv)) / 8_388_608.0 * abs(r)
            #expect(abs(Double(yv) - r) <= tol, "\(c.name)(\(xv)) = \(yv), reference \(r)")
        }
    }

    /// A non-contiguous input gives the same values as its contiguous copy.
    @Test(arguments: UnaryCase.all)
    func nonContiguousForwardMatchesContiguous(_ c: UnaryCase) {
        let x = noGrad { c.input([5, 7], seed: 10) }
        let viaView = noGrad { c.op(x.transposed()) }
        let viaCopy = noGrad { c.op(x.transposed().contiguous()) }
        #expect(viaView.shape == [7, 5])
        #expect(viaView.toArray() == viaCopy.toArray())
    }

    /// Each op saves exactly one tensor for backward, the documented one, of 4·numel bytes.
    @Test(arguments: UnaryCase.all)
    func savesOneTensorOfFourBytesPerElement(_ c: UnaryCase) {
        var saved: [SavedTensorInfo] = []
        let hooks = SavedTensorHooks(pack: { t, info in saved.append(info); return .tensor(t) },
                                     unpack: { p, _ in guard case .tensor(let t) = p else { fatalError() }; return t })
        let x = c.input([6, 5], seed: 11)
        let y = withSavedTensorHooks(hooks) { c.op(x) }
        #expect(saved.count == 1)
        #expect(saved.first?.role == c.saves)
        #expect(saved.first?.byteCount == 4 * 30)
        #expect(saved.first?.isOutput == (c.saves == "output"))
        y.summed().backward()
        #expect(x.grad?.shape == [6, 5])
    }

    @Test func noGraphSavesNothing() {
        var count = 0
        let hooks = SavedTensorHooks(pack: { t, _ in count += 1; return .tensor(t) },
                                     unpack: { p, _ in guard case .tensor(let t) = p else { fatalError() }; return t })
        let x = randomTensor([4], seed: 1)
        withSavedTensorHooks(hooks) {
            _ = noGrad { gelu(x) }
            _ = exp(randomTensor([4], seed: 2, requiresGrad: false))
        }
        #expect(count == 0)
    }

    // MARK: Edge cases

    @Test func reluPropagatesNaNAndHasZeroGradientAtZero() {
        let x = Tensor([-1, 0, 2, .nan, -0.0], shape: [5], requiresGrad: true)
        let y = relu(x)
        let v = y.toArray()
        #expect(v[0] == 0 && v[1] == 0 && v[2] == 2 && v[3].isNaN && v[4] == 0)
        y.backward(gradient: Tensor.ones([5]))
        let g = x.grad!.toArray()
        #expect(g[0] == 0 && g[1] == 0 && g[2] == 1 && g[4] == 0)
    }

    /// Activations take their limits at ±inf instead of inf·0 = NaN, forward and backward.
    @Test(arguments: [GELUApproximation.none, .tanh])
    func geluLimitsAtInfinity(_ approximation: GELUApproximation) {
        let x = Tensor([-.infinity, .infinity, -1e4, 1e4, -30, 0], shape: [6], requiresGrad: true)
        let y = gelu(x, approximation: approximation)
        let v = y.toArray()
        #expect(v[0] == 0 && v[1] == .infinity && v[2] == 0 && v[3] == 1e4 && v[4] == 0 && v[5] == 0)
        y.backward(gradient: Tensor.ones([6]))
        let g = x.grad!.toArray()
        #expect(g[0] == 0 && g[1] == 1 && g[2] == 0 && g[3] == 1 && g[4] == 0 && g[5] == 0.5)
    }

    @Test func siluAndSigmoidLimitsAtInfinity() {
        let x = Tensor([-.infinity, .infinity, -200, 200, 0], shape: [5], requiresGrad: true)
        let s = silu(x)
        #expect(s.toArray() == [0, .infinity, 0, 200, 0])
        s.backward(gradient: Tensor.ones([5]))
        #expect(x.grad!.toArray() == [0, 1, 0, 1, 0.5])
        #expect(sigmoid(Tensor([-.infinity, .infinity, 0, -200], shape: [4])).toArray() == [0, 1, 0.5, 0])
    }

    @Test func nanPropagatesThroughEveryOp() {
        for c in UnaryCase.all {
            let y = noGrad { c.op(Tensor([.nan], shape: [1])) }.item
            #expect(y.isNaN, "\(c.name)(NaN) = \(y)")
        }
    }

    @Test func powSpecialExponents() {
        let x = Tensor([-2, -0.0, 0, 4, .nan], shape: [5], requiresGrad: true)
        #expect(pow(x, 0).toArray() == [1, 1, 1, 1, 1])              // x^0 = 1, NaN included (C pow)
        let sq = pow(x, 0.5).toArray()
        #expect(sq[0].isNaN && sq[1] == 0 && sq[1].sign == .plus && sq[3] == 2)
        #expect(pow(x, -1).toArray()[1] == -.infinity)
        let cube = pow(x, 3).toArray()
        #expect(cube[0] == -8 && cube[1].sign == .minus && cube[3] == 64)
        let odd = pow(Tensor([-2, -0.0], shape: [2]), 5).toArray()   // general path, odd integer
        #expect(abs(odd[0] + 32) <= 32 * 4e-7 && odd[1] == 0 && odd[1].sign == .minus)
        #expect(pow(Tensor([-2], shape: [1]), 2.5).item.isNaN)
        // d/dx x^0 = 0 everywhere (PyTorch), not 0·x^-1.
        pow(x, 0).summed().backward()
        #expect(x.grad!.toArray() == [0, 0, 0, 0, 0])
    }

    @Test func emptyAndScalarTensors() {
        #expect(exp(Tensor([], shape: [0, 3])).shape == [0, 3])
        #expect(abs(tanh(Tensor(scalar: 0.5)).item - 0.46211716) < 1e-7)
    }

    /// Large tensors run through several parallel chunks: results do not depend on the split.
    @Test func largeTensorMatchesElementwiseReference() {
        let n = 3 * 65_536 + 17
        let x = noGrad { Tensor.uniform([n], low: -6, high: 6, generator: RandomGenerator(seed: 3)) }
        let y = gelu(x, approximation: .tanh).toArray(), xs = x.toArray()
        let small = (0..<n).filter { $0 % 997 == 0 }
        let sub = gelu(Tensor(small.map { xs[$0] }, shape: [small.count]), approximation: .tanh).toArray()
        for (k, i) in small.enumerated() { #expect(y[i] == sub[k]) }
    }
}
