import Testing
import RematCore

/// Plain Double batch norm over axis 1 of [N, C, P] data; returns (y, batch mean, biased var).
private func referenceBatchNorm(_ x: [Float], n: Int, c: Int, p: Int, weight: [Float]?, bias: [Float]?,
                                mean fixedMean: [Double]? = nil, variance fixedVar: [Double]? = nil, eps: Double = 1e-5)
    -> (y: [Double], mean: [Double], variance: [Double]) {
    var y = [Double](repeating: 0, count: x.count), means: [Double] = [], vars: [Double] = []
    for ch in 0..<c {
        var values: [Double] = []
        for b in 0..<n { for q in 0..<p { values.append(Double(x[(b * c + ch) * p + q])) } }
        let m = values.reduce(0, +) / Double(values.count)
        let v = values.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(values.count)
        means.append(m); vars.append(v)
        let useM = fixedMean?[ch] ?? m, useV = fixedVar?[ch] ?? v
        let rstd = 1 / (useV + eps).squareRoot()
        for b in 0..<n { for q in 0..<p {
            let i = (b * c + ch) * p + q
            y[i] = (Double(x[i]) - useM) * rstd * Double(weight?[ch] ?? 1) + Double(bias?[ch] ?? 0)
        } }
    }
    return (y, means, vars)
}


@Suite struct BatchNormTests {
    @Test func trainingForwardAndRunningStatsMatchDoubleReference() {
        let (n, c, h, w) = (3, 4, 5, 2)
        let x = randomTensor([n, c, h, w], seed: 31, low: -2, high: 3, requiresGrad: false)
        let wt = randomTensor([c], seed: 32, low: 0.5, high: 1.5, requiresGrad: false)
        let bs = randomTensor([c], seed: 33, requiresGrad: false)
        let rm = randomTensor([c], seed: 34, requiresGrad: false), rv = randomTensor([c], seed: 35, low: 0.5, high: 2, requiresGrad: false)
        let rm0 = rm.toArray(), rv0 = rv.toArray()
        let y = batchNorm2d(x, weight: wt, bias: bs, runningMean: rm, runningVar: rv, training: true, momentum: 0.3)
        let ref = referenceBatchNorm(x.toArray(), n: n, c: c, p: h * w, weight: wt.toArray(), bias: bs.toArray())
        for (i, v) in y.toArray().enumerated() { #expect(abs(Double(v) - ref.y[i]) <= 1e-5, "y[\(i)]") }
        let m = Double(n * h * w)
        for ch in 0..<c {
            let em = 0.7 * Double(rm0[ch]) + 0.3 * ref.mean[ch]
            let ev = 0.7 * Double(rv0[ch]) + 0.3 * ref.variance[ch] * m / (m - 1)   // unbiased
            #expect(abs(Double(rm.toArray()[ch]) - em) <= 1e-6 * (1 + abs(em)), "running_mean[\(ch)]")
            #expect(abs(Double(rv.toArray()[ch]) - ev) <= 1e-6 * (1 + abs(ev)), "running_var[\(ch)]")
        }
    }

    @Test func evalForwardUsesRunningStats() {
        let (n, c, p) = (2, 3, 4)
        let x = randomTensor([n, c, 2, 2], seed: 36, requiresGrad: false)
        let rm = randomTensor([c], seed: 37, requiresGrad: false), rv = randomTensor([c], seed: 38, low: 0.5, high: 2, requiresGrad: false)
        let before = (rm.toArray(), rv.toArray())
        let y = batchNorm2d(x, weight: nil, bias: nil, runningMean: rm, runningVar: rv, training: false)
        let ref = referenceBatchNorm(x.toArray(), n: n, c: c, p: p, weight: nil, bias: nil,
                                     mean: rm.toArray().map(Double.init), variance: rv.toArray().map(Double.init))
        for (i, v) in y.toArray().enumerated() { #expect(abs(Double(v) - ref.y[i]) <= 1e-5, "y[\(i)]") }
        #expect(rm.toArray() == before.0 && rv.toArray() == before.1)
    }

    /// A checkpoint recompute re-runs the forward: the running statistics must not move again.
    @Test func recomputeDoesNotUpdateRunningStats() {
        let x = randomTensor([4, 2, 3, 3], seed: 39, requiresGrad: false)
        let rm = Tensor.zeros([2]), rv = Tensor.ones([2])
        let y1 = batchNorm2d(x, weight: nil, bias: nil, runningMean: rm, runningVar: rv, training: true)
        let after1 = (rm.toArray(), rv.toArray())
        #expect(after1.0 != [0, 0])
        let y2 = AutogradContext.with({ $0.isRecomputing = true }) {
            batchNorm2d(x, weight: nil, bias: nil, runningMean: rm, runningVar: rv, training: true)
        }
        #expect(rm.toArray() == after1.0 && rv.toArray() == after1.1)
        #expect(y1.toArray() == y2.toArray(), "the recompute gives the same output bitwise")
    }

    /// (training, with weight and bias)
    static let modes: [(Bool, Bool)] = [(true, true), (true, false), (false, true), (false, false)]

    @Test(arguments: modes)
    func gradients(training: Bool, affine: Bool) {
        let c = 3
        let x = randomTensor([3, c, 2, 3], seed: 40, low: -2, high: 2)
        var inputs = [x]
        if affine {
            inputs.append(randomTensor([c], seed: 41, low: 0.5, high: 1.5))
            inputs.append(randomTensor([c], seed: 42))
        }
        let rm = randomTensor([c], seed: 43, requiresGrad: false), rv = randomTensor([c], seed: 44, low: 0.5, high: 2, requiresGrad: false)
        GradCheck().check("batch_norm training \(training) affine \(affine)", inputs) { xs in
            batchNorm2d(xs[0], weight: affine ? xs[1] : nil, bias: affine ? xs[2] : nil,
                        runningMean: rm, runningVar: rv, training: training)
        }
    }

    @Test(arguments: [true, false])
    func gradientsThroughNonContiguousInput(training: Bool) {
        let x = randomTensor([4, 3, 2, 2], seed: 45, low: -2, high: 2)     // viewed as [3, 4, 2, 2]
        let w = randomTensor([4], seed: 46, low: 0.5, high: 1.5), b = randomTensor([4], seed: 47)
        let rm = Tensor.zeros([4]), rv = Tensor.ones([4])
        GradCheck().check("batch_norm non-contiguous", [x, w, b]) { xs in
            batchNorm2d(xs[0].transposed(0, 1), weight: xs[1], bias: xs[2], runningMean: rm, runningVar: rv, training: training)
        }
    }

    /// Large common offset: two-pass double statistics keep the normalised values exact to float.
    @Test func largeCommonOffset() {
        let noise = randomTensor([4, 2, 4, 4], seed: 48, requiresGrad: false).toArray()
        let values = noise.map { 1000 + $0 }
        let y = batchNorm2d(Tensor(values, shape: [4, 2, 4, 4]), weight: nil, bias: nil, runningMean: nil, runningVar: nil, training: true)
        let ref = referenceBatchNorm(values, n: 4, c: 2, p: 16, weight: nil, bias: nil).y
        for (i, v) in y.toArray().enumerated() { #expect(abs(Double(v) - ref[i]) <= 1e-3, "y[\(i)]") }
    }

    @Test func savesInputMeanRstdAndWeight() {
        let x = randomTensor([2, 5, 3, 3], seed: 49)
        let w = randomTensor([5], seed: 50).makeParameter(), b = randomTensor([5], seed: 51).makeParameter()
        let infos = savedInfos {
            batchNorm2d(x, weight: w, bias: b, runningMean: Tensor.zeros([5]), runningVar: Tensor.ones([5]), training: true)
        }
        #expect(infos.map(\.role) == ["input", "mean", "rstd", "weight"])
        #expect(infos.map(\.byteCount) == [4 * x.count, 20, 20, 20])
        #expect(infos[3].isParameter, "the weight is a parameter: its bytes are not activations")
    }
}
