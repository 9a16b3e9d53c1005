import Testing
import RematCore
#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

/// Plain Double softmax / log-softmax of a row-major `shape` along `axis`.
private func referenceSoftmax(_ x: [Float], shape: [Int], axis: Int, log: Bool) -> [Double] {
    let a = axis < 0 ? axis + shape.count : axis
    let outer = shape[..<a].reduce(1, *), n = shape[a], inner = shape[(a + 1)...].reduce(1, *)
    var out = [Double](repeating: 0, count: x.count)
    for o in 0..<outer {
        for i in 0..<inner {
            let idx = (0..<n).map { (o * n + $0) * inner + i }
            let m = idx.map { Double(x[$0]) }.max()!
            let s = idx.map { dexp(Double(x[$0]) - m) }.reduce(0, +)
            for k in idx {
                out[k] = log ? (Double(x[k]) - m) - dlog(s) : dexp(Double(x[k]) - m) / s
            }
        }
    }
    return out
}

private func dexp(_ v: Double) -> Double { exp(v) }
private func dlog(_ v: Double) -> Double { log(v) }


@Suite struct SoftmaxTests {
    /// (shape, axis): last axis, axis 0 of a matrix, a middle axis with inner > one 64-wide tile.
    static let layouts: [([Int], Int)] = [([5, 37], -1), ([37, 5], 0), ([2, 3, 70], 1), ([4, 1], -1), ([7], 0)]

    @Test(arguments: layouts)
    func softmaxMatchesDoubleReferenceAndRowsSumToOne(shape: [Int], axis: Int) {
        let x = randomTensor(shape, seed: 3, low: -6, high: 6, requiresGrad: false)
        let y = softmax(x, axis: axis)
        #expect(y.shape == shape && y.isContiguous)
        let ref = referenceSoftmax(x.toArray(), shape: shape, axis: axis, log: false)
        let got = y.toArray()
        for i in 0..<got.count { #expect(abs(Double(got[i]) - ref[i]) <= 1e-6, "element \(i)") }
        // Every slice along `axis` sums to 1.
        let sums = y.summed(alongAxes: [axis]).toArray()
        for s in sums { #expect(abs(Double(s) - 1) <= 1e-6) }
    }

    @Test(arguments: layouts)
    func logSoftmaxMatchesDoubleReference(shape: [Int], axis: Int) {
        let x = randomTensor(shape, seed: 4, low: -6, high: 6, requiresGrad: false)
        let got = logSoftmax(x, axis: axis).toArray()
        let ref = referenceSoftmax(x.toArray(), shape: shape, axis: axis, log: true)
        for i in 0..<got.count { #expect(abs(Double(got[i]) - ref[i]) <= 1e-5, "element \(i)") }
    }

    /// Logits around ±1e4 overflow exp in a naive implementation; the max-subtracted one is exact.
    @Test func largeMagnitudeLogitsDoNotOverflow() {
        let base = randomTensor([3, 50], seed: 5, low: -20, high: 20, requiresGrad: false).toArray()
        let values = base.enumerated().map { i, v in (i / 50 == 1 ? -1e4 : 1e4) + v }
        let x = Tensor(values, shape: [3, 50])
        let y = softmax(x).toArray(), ly = logSoftmax(x).toArray()
        let ref = referenceSoftmax(values, shape: [3, 50], axis: -1, log: false)
        let lref = referenceSoftmax(values, shape: [3, 50], axis: -1, log: true)
        for i in 0..<y.count {
            #expect(y[i].isFinite && ly[i].isFinite)
            #expect(abs(Double(y[i]) - ref[i]) <= 1e-6)
            #expect(abs(Double(ly[i]) - lref[i]) <= 1e-4 * Swift.max(1, abs(lref[i])))
        }
    }

    /// Causal-mask rows: -inf entries get exactly 0 (log: -inf); an all -inf row is NaN (as PyTorch).
    @Test(arguments: [-1, 0])
    func negativeInfinityGivesExactZerosAndAllMaskedRowsGiveNaN(axis: Int) {
        let inf = Float.infinity
        var rows: [[Float]] = [[0.5, -inf, -inf, -inf], [0.1, 0.7, -inf, -inf], [1, 2, 3, -inf], [-inf, -inf, -inf, -inf]]
        if axis == 0 {  // same data, slices along axis 0
            rows = (0..<4).map { j in (0..<4).map { rows[$0][j] } }
        }
        let x = Tensor(rows.flatMap { $0 }, shape: [4, 4])
        let y = softmax(x, axis: axis), ly = logSoftmax(x, axis: axis)
        func at(_ t: Tensor, _ r: Int, _ c: Int) -> Float { axis == 0 ? t.toArray()[c * 4 + r] : t.toArray()[r * 4 + c] }
        for r in 0..<3 {
            var s = 0.0
            for c in 0..<4 {
                if c > r {
                    #expect(at(y, r, c) == 0, "masked probability must be exactly 0")
                    #expect(at(ly, r, c) == -inf)
                } else {
                    #expect(at(y, r, c) > 0)
                }
                s += Double(at(y, r, c))
            }
            #expect(abs(s - 1) <= 1e-6)
        }
        #expect(at(y, 0, 0) == 1)   // row 0 has one live entry
        for c in 0..<4 {
            #expect(at(y, 3, c).isNaN && at(ly, 3, c).isNaN, "all -inf slice gives NaN")
        }
    }

    @Test func maskedEntriesGetZeroGradient() {
        let inf = Float.infinity
        let x = Tensor([0.3, -inf, 1.2, -0.4, -inf, -inf], shape: [2, 3], requiresGrad: true)
        let w = Tensor([0.5, -1, 2, 1, 3, -2], shape: [2, 3])
        (softmax(x) * w).summed().backward()
        let g = x.grad!.toArray()
        #expect(g[1] == 0 && g[4] == 0 && g[5] == 0)
        #expect(g[0].isFinite && g[2].isFinite && g[0] != 0)
        #expect(abs(g[3]) <= 1e-7)   // a single live entry: softmax is constant 1
    }

    @Test(arguments: layouts)
    func softmaxGradients(shape: [Int], axis: Int) {
        GradCheck().check("softmax", [randomTensor(shape.map { Swift.min($0, 6) }, seed: 7, low: -2, high: 2)]) { xs in
            softmax(xs[0], axis: axis)
        }
        GradCheck().check("log_softmax", [randomTensor(shape.map { Swift.min($0, 6) }, seed: 8, low: -2, high: 2)]) { xs in
            logSoftmax(xs[0], axis: axis)
        }
    }

    /// A middle axis whose inner extent (70) spans two 64-wide kernel tiles.
    @Test func multiTileAxisGradients() {
        GradCheck().check("softmax", [randomTensor([2, 3, 70], seed: 15, low: -2, high: 2)]) { xs in softmax(xs[0], axis: 1) }
        GradCheck().check("log_softmax", [randomTensor([2, 3, 70], seed: 16, low: -2, high: 2)]) { xs in logSoftmax(xs[0], axis: 1) }
    }

    /// Non-contiguous inputs: a transposed view and a narrowed view, along both axes.
    @Test(arguments: [-1, 0])
    func nonContiguousInputGradients(axis: Int) {
        GradCheck().check("softmax", [randomTensor([5, 4], seed: 9, low: -2, high: 2)]) { xs in
            softmax(xs[0].transposed(), axis: axis)
        }
        GradCheck().check("log_softmax", [randomTensor([5, 4], seed: 10, low: -2, high: 2)]) { xs in
            logSoftmax(xs[0].narrowed(axis: 1, start: 1, length: 3), axis: axis)
        }
    }

    /// Through a larger graph: softmax output feeds another op, gradient still matches.
    @Test func composedGradient() {
        let b = randomTensor([3, 4], seed: 12)
        GradCheck().check("softmax∘mul", [randomTensor([3, 4], seed: 11), b]) { xs in
            softmax(xs[0] * xs[1]) * xs[0]
        }
    }

    @Test func savesOnlyTheOutput() {
        let x = randomTensor([3, 8], seed: 13)
        for useLog in [false, true] {
            let infos = savedInfos { useLog ? logSoftmax(x) : softmax(x) }
            #expect(infos.count == 1)
            #expect(infos.first?.role == "output" && infos.first?.isOutput == true)
            #expect(infos.first?.byteCount == 4 * 24)
            #expect(infos.first?.op == (useLog ? "log_softmax" : "softmax"))
        }
        let none = savedInfos { noGrad { softmax(x) } }
        #expect(none.isEmpty)
    }

    /// Enough rows for several parallel chunks; compares to the reference.
    @Test func largeInputMatchesReference() {
        let shape = [600, 257]
        let x = randomTensor(shape, seed: 14, low: -10, high: 10, requiresGrad: false)
        let got = softmax(x).toArray()
        let ref = referenceSoftmax(x.toArray(), shape: shape, axis: -1, log: false)
        var worst = 0.0
        for i in 0..<got.count { worst = Swift.max(worst, abs(Double(got[i]) - ref[i])) }
        #expect(worst <= 1e-6)
        let got0 = softmax(x, axis: 0).toArray()
        let ref0 = referenceSoftmax(x.toArray(), shape: shape, axis: 0, log: false)
        worst = 0
        for i in 0..<got0.count { worst = Swift.max(worst, abs(Double(got0[i]) - ref0[i])) }
        #expect(worst <= 1e-6)
    }
}
