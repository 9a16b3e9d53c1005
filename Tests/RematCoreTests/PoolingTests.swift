import Testing
import RematCore

/// A leaf tensor whose elements are a random permutation of 0.1·(i − count/2): distinct values at
/// least 0.1 apart, so a finite-difference step of 0.01 never changes a window's argmax.
private func distinctTensor(_ shape: [Int], seed: UInt64) -> Tensor {
    let count = shape.reduce(1, *)
    var values = (0..<count).map { Float($0 - count / 2) * 0.1 }
    let rng = RandomGenerator(seed: seed)
    for i in stride(from: count - 1, to: 0, by: -1) { values.swapAt(i, Int(rng.nextUInt64() % UInt64(i + 1))) }
    return Tensor(values, shape: shape, requiresGrad: true)
}

private func referenceMaxPool(_ x: [Float], _ s: [Int], kernel: Int, stride: Int, padding: Int) -> [Float] {
    let (n, c, h, w) = (s[0], s[1], s[2], s[3])
    let oh = (h + 2 * padding - kernel) / stride + 1, ow = (w + 2 * padding - kernel) / stride + 1
    var y: [Float] = []
    for plane in 0..<(n * c) { for i in 0..<oh { for j in 0..<ow {
        var m = -Float.infinity
        for a in 0..<kernel { for b in 0..<kernel {
            let ih = i * stride - padding + a, iw = j * stride - padding + b
            if ih >= 0 && ih < h && iw >= 0 && iw < w { m = Swift.max(m, x[(plane * h + ih) * w + iw]) }
        } }
        y.append(m)
    } } }
    return y
}


@Suite struct PoolingTests {
    /// (shape, kernel, stride, padding)
    static let maxCases: [([Int], Int, Int, Int)] = [([2, 3, 7, 6], 3, 2, 1), ([1, 2, 5, 5], 2, 2, 0), ([1, 1, 4, 5], 3, 1, 1)]

    @Test(arguments: maxCases)
    func maxPoolForward(shape: [Int], kernel: Int, stride: Int, padding: Int) {
        let x = randomTensor(shape, seed: 61, requiresGrad: false)
        let y = maxPool2d(x, kernel: kernel, stride: stride, padding: padding)
        #expect(y.toArray() == referenceMaxPool(x.toArray(), shape, kernel: kernel, stride: stride, padding: padding))
    }

    @Test(arguments: maxCases)
    func maxPoolGradients(shape: [Int], kernel: Int, stride: Int, padding: Int) {
        GradCheck().check("max_pool2d", [distinctTensor(shape, seed: 62)]) { xs in
            maxPool2d(xs[0], kernel: kernel, stride: stride, padding: padding)
        }
    }

    @Test func maxPoolNonContiguousInput() {
        GradCheck().check("max_pool2d(transposed)", [distinctTensor([2, 2, 6, 5], seed: 63)]) { xs in
            maxPool2d(xs[0].transposed(2, 3))
        }
    }

    @Test func maxPoolPropagatesNaN() {
        var values = [Float](repeating: 1, count: 16)
        values[5] = .nan
        let y = maxPool2d(Tensor(values, shape: [1, 1, 4, 4]), kernel: 2, stride: 2, padding: 0).toArray()
        #expect(y[0].isNaN && y[1] == 1 && y[2] == 1 && y[3] == 1)
    }

    @Test func maxPoolSavesInt32IndicesOnly() {
        let x = randomTensor([2, 3, 8, 8], seed: 64)
        let infos = savedInfos { maxPool2d(x) }
        #expect(infos.map(\.role) == ["argmax"])
        #expect(infos.map(\.dtype) == [.int32] && infos.map(\.byteCount) == [4 * 2 * 3 * 4 * 4])
    }

    @Test func globalAveragePool() {
        let x = randomTensor([2, 3, 3, 4], seed: 65, requiresGrad: false)
        let y = adaptiveAvgPool2d(x, outputSize: 1)
        #expect(y.shape == [2, 3, 1, 1])
        let v = x.toArray()
        for (r, got) in y.toArray().enumerated() {
            let mean = (0..<12).map { Double(v[r * 12 + $0]) }.reduce(0, +) / 12
            #expect(abs(Double(got) - mean) <= 1e-6)
        }
        #expect(savedInfos { adaptiveAvgPool2d(randomTensor([2, 3, 3, 4], seed: 66)) }.isEmpty)
        GradCheck().check("adaptive_avg_pool2d", [randomTensor([2, 3, 3, 4], seed: 67)]) { xs in adaptiveAvgPool2d(xs[0]) }
        GradCheck().check("adaptive_avg_pool2d(permuted)", [randomTensor([3, 2, 4, 3], seed: 68)]) { xs in
            adaptiveAvgPool2d(xs[0].permuted([1, 0, 3, 2])).flattened(from: 1)
        }
    }
}
