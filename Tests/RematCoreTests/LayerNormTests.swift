import Testing
import RematCore

/// Plain Double layer norm over the last axis; returns (y, mean, rstd).
private func referenceLayerNorm(_ x: [Float], c: Int, weight: [Float]?, bias: [Float]?, eps: Double = 1e-5)
    -> (y: [Double], mean: [Double], rstd: [Double]) {
    let rows = x.count / c
    var y = [Double](repeating: 0, count: x.count), means: [Double] = [], rstds: [Double] = []
    for r in 0..<rows {
        let row = (0..<c).map { Double(x[r * c + $0]) }
        let mean = row.reduce(0, +) / Double(c)
        let variance = row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(c)
        let rstd = 1 / (variance + eps).squareRoot()
        means.append(mean); rstds.append(rstd)
        for j in 0..<c {
            y[r * c + j] = (row[j] - mean) * rstd * Double(weight?[j] ?? 1) + Double(bias?[j] ?? 0)
        }
    }
    return (y, means, rstds)
}


@Suite struct LayerNormTests {
    /// (with weight, with bias)
    static let affine: [(Bool, Bool)] = [(true, true), (false, false), (true, false), (false, true)]

    @Test(arguments: affine)
    func forwardMatchesDoubleReference(hasWeight: Bool, hasBias: Bool) {
        let c = 37
        let x = randomTensor([4, 3, c], seed: 21, low: -3, high: 3, requiresGrad: false)
        let w = hasWeight ? randomTensor([c], seed: 22, low: 0.5, high: 1.5, requiresGrad: false) : nil
        let b = hasBias ? randomTensor([c], seed: 23, requiresGrad: false) : nil
        let y = layerNorm(x, weight: w, bias: b)
        #expect(y.shape == [4, 3, c])
        let ref = referenceLayerNorm(x.toArray(), c: c, weight: w?.toArray(), bias: b?.toArray()).y
        let got = y.toArray()
        for i in 0..<got.count { #expect(abs(Double(got[i]) - ref[i]) <= 1e-5, "element \(i)") }
    }

    /// Inputs with a large common offset: the two-pass variance has no E[x²] − E[x]² cancellation.
    @Test func largeCommonOffsetKeepsPrecision() {
        let c = 64
        let noise = randomTensor([8, c], seed: 24, requiresGrad: false).toArray()
        let values = noise.map { 1000 + $0 }
        let x = Tensor(values, shape: [8, c])
        let got = layerNorm(x, weight: nil, bias: nil).toArray()
        let ref = referenceLayerNorm(values, c: c, weight: nil, bias: nil).y
        // ulp(1000) ≈ 6e-5 in the inputs bounds what float can do; the output stays within a few ulps of it.
        for i in 0..<got.count { #expect(abs(Double(got[i]) - ref[i]) <= 1e-3, "element \(i)") }
    }

    @Test(arguments: affine)
    func gradients(hasWeight: Bool, hasBias: Bool) {
        var inputs = [randomTensor([3, 5], seed: 25, low: -2, high: 2)]
        if hasWeight { inputs.append(randomTensor([5], seed: 26, low: 0.5, high: 1.5)) }
        if hasBias { inputs.append(randomTensor([5], seed: 27)) }
        GradCheck().check("layer_norm", inputs) { xs in
            layerNorm(xs[0], weight: hasWeight ? xs[1] : nil, bias: hasBias ? xs[hasWeight ? 2 : 1] : nil)
        }
    }

    /// A transposed (non-contiguous) input and a 3-D input.
    @Test func nonContiguousAndBatchedInputGradients() {
        GradCheck().check("layer_norm", [randomTensor([3, 6], seed: 28, low: -2, high: 2),
                                         randomTensor([3], seed: 29, low: 0.5, high: 1.5),
                                         randomTensor([3], seed: 30)]) { xs in
            layerNorm(xs[0].transposed(), weight: xs[1], bias: xs[2])
        }
        GradCheck().check("layer_norm", [randomTensor([2, 3, 4], seed: 31, low: -2, high: 2),
                                         randomTensor([4], seed: 32, low: 0.5, high: 1.5)]) { xs in
            layerNorm(xs[0].narrowed(axis: 1, start: 1, length: 2), weight: xs[1], bias: nil)
        }
    }

    /// Only the parameters require grad (frozen input): dweight/dbias still computed.
    @Test func gradientsForParametersOnly() {
        let x = randomTensor([4, 6], seed: 33, low: -2, high: 2, requiresGrad: false)
        GradCheck().check("layer_norm", [x, randomTensor([6], seed: 34, low: 0.5, high: 1.5), randomTensor([6], seed: 35)]) { xs in
            layerNorm(xs[0], weight: xs[1], bias: xs[2])
        }
    }

    /// Many rows: the backward splits rows into chunks with per-chunk dweight/dbias partials.
    @Test func chunkedBackwardMatchesDoubleReference() {
        let rows = 9000, c = 16
        let x = randomTensor([rows, c], seed: 36, low: -2, high: 2)
        let w = randomTensor([c], seed: 37, low: 0.5, high: 1.5)
        let b = randomTensor([c], seed: 38)
        let dy = randomTensor([rows, c], seed: 39, requiresGrad: false)
        layerNorm(x, weight: w, bias: b).backward(gradient: dy)
        let xs = x.toArray(), ws = w.toArray(), gs = dy.toArray()
        let (_, mean, rstd) = referenceLayerNorm(xs, c: c, weight: nil, bias: nil)
        var dw = [Double](repeating: 0, count: c), db = [Double](repeating: 0, count: c)
        var worstDx = 0.0
        let dx = x.grad!.toArray()
        for r in 0..<rows {
            var a = 0.0, cc = 0.0
            for j in 0..<c {
                let xh = (Double(xs[r * c + j]) - mean[r]) * rstd[r], g = Double(gs[r * c + j])
                dw[j] += g * xh; db[j] += g
                a += g * Double(ws[j]); cc += g * Double(ws[j]) * xh
            }
            for j in 0..<c {
                let xh = (Double(xs[r * c + j]) - mean[r]) * rstd[r]
                let ref = rstd[r] * (Double(gs[r * c + j]) * Double(ws[j]) - a / Double(c) - xh * cc / Double(c))
                worstDx = Swift.max(worstDx, abs(ref - Double(dx[r * c + j])))
            }
        }
        #expect(worstDx <= 1e-5)
        let gw = w.grad!.toArray(), gb = b.grad!.toArray()
        for j in 0..<c {
            #expect(abs(Double(gw[j]) - dw[j]) <= 1e-5 * Swift.max(1, abs(dw[j])) + 1e-3)
            #expect(abs(Double(gb[j]) - db[j]) <= 1e-5 * Swift.max(1, abs(db[j])) + 1e-3)
        }
    }

    @Test func savesInputMeanRstdAndWeight() {
        let x = randomTensor([5, 8], seed: 40, requiresGrad: false)
        let w = Tensor.ones([8]).makeParameter(name: "ln.weight")
        let b = Tensor.zeros([8]).makeParameter(name: "ln.bias")
        let infos = savedInfos { layerNorm(x, weight: w, bias: b) }
        #expect(infos.map(\.role) == ["input", "mean", "rstd", "weight"])
        #expect(infos.map(\.byteCount) == [4 * 40, 4 * 5, 4 * 5, 4 * 8])
        #expect(infos.map(\.isParameter) == [false, false, false, true])
        #expect(infos.allSatisfy { $0.op == "layer_norm" })
        let plain = savedInfos { layerNorm(randomTensor([5, 8], seed: 41), weight: nil, bias: nil) }
        #expect(plain.map(\.role) == ["input", "mean", "rstd"])
        #expect(savedInfos { layerNorm(x, weight: nil, bias: nil) }.isEmpty)
    }
}
