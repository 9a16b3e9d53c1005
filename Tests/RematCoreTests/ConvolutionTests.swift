import Testing
import RematCore

/// Plain Double convolution (NCHW, groups 1).
private func referenceConv2d(_ x: [Float], _ xs: [Int], _ w: [Float], _ ws: [Int], bias: [Float]?,
                             stride: (Int, Int), padding: (Int, Int), dilation: (Int, Int)) -> (y: [Double], shape: [Int]) {
    let (n, c, h, wd) = (xs[0], xs[1], xs[2], xs[3])
    let (k, kh, kw) = (ws[0], ws[2], ws[3])
    let oh = (h + 2 * padding.0 - dilation.0 * (kh - 1) - 1) / stride.0 + 1
    let ow = (wd + 2 * padding.1 - dilation.1 * (kw - 1) - 1) / stride.1 + 1
    var y = [Double](repeating: 0, count: n * k * oh * ow)
    for b in 0..<n { for o in 0..<k { for i in 0..<oh { for j in 0..<ow {
        var s = Double(bias?[o] ?? 0)
        for ci in 0..<c { for a in 0..<kh { for e in 0..<kw {
            let ih = i * stride.0 - padding.0 + a * dilation.0, iw = j * stride.1 - padding.1 + e * dilation.1
            guard ih >= 0 && ih < h && iw >= 0 && iw < wd else { continue }
            s += Double(x[((b * c + ci) * h + ih) * wd + iw]) * Double(w[((o * c + ci) * kh + a) * kw + e])
        } } }
        y[((b * k + o) * oh + i) * ow + j] = s
    } } } }
    return (y, [n, k, oh, ow])
}


@Suite struct ConvolutionTests {
    struct Case: Sendable, CustomStringConvertible {
        var input: [Int], weight: [Int]
        var stride = (1, 1), padding = (0, 0), dilation = (1, 1)
        var bias = true
        var description: String { "x\(input) w\(weight) s\(stride) p\(padding) d\(dilation) bias \(bias)" }
    }

    static let cases: [Case] = [
        Case(input: [2, 3, 5, 6], weight: [4, 3, 3, 3]),
        Case(input: [2, 3, 5, 6], weight: [4, 3, 3, 3], stride: (2, 1), padding: (1, 2), bias: false),
        Case(input: [1, 2, 7, 7], weight: [3, 2, 3, 2], stride: (2, 3), padding: (1, 1), dilation: (2, 1)),
        Case(input: [3, 2, 4, 5], weight: [2, 2, 1, 1], bias: false),                       // pointwise, batched GEMM
        Case(input: [2, 2, 16, 16], weight: [3, 2, 1, 1]),                                  // pointwise, per-image GEMM
        Case(input: [2, 3, 6, 6], weight: [2, 3, 1, 1], stride: (2, 2), bias: false),       // strided 1x1 (downsample)
        Case(input: [1, 2, 9, 9], weight: [2, 2, 7, 7], stride: (2, 2), padding: (3, 3)),   // stem-like
    ]

    @Test(arguments: cases)
    func forwardMatchesDoubleReference(_ t: Case) {
        let x = randomTensor(t.input, seed: 1, requiresGrad: false)
        let w = randomTensor(t.weight, seed: 2, requiresGrad: false)
        let b = t.bias ? randomTensor([t.weight[0]], seed: 3, requiresGrad: false) : nil
        let y = conv2d(x, weight: w, bias: b, stride: t.stride, padding: t.padding, dilation: t.dilation)
        let ref = referenceConv2d(x.toArray(), t.input, w.toArray(), t.weight, bias: b?.toArray(),
                                  stride: t.stride, padding: t.padding, dilation: t.dilation)
        #expect(y.shape == ref.shape)
        let got = y.toArray()
        for i in 0..<got.count { #expect(abs(Double(got[i]) - ref.y[i]) <= 1e-5 * (1 + abs(ref.y[i])), "element \(i)") }
    }

    @Test(arguments: cases)
    func gradients(_ t: Case) {
        let x = randomTensor(t.input, seed: 4)
        let w = randomTensor(t.weight, seed: 5)
        var inputs = [x, w]
        if t.bias { inputs.append(randomTensor([t.weight[0]], seed: 6)) }
        GradCheck().check("conv2d \(t)", inputs) { xs in
            conv2d(xs[0], weight: xs[1], bias: xs.count > 2 ? xs[2] : nil,
                   stride: t.stride, padding: t.padding, dilation: t.dilation)
        }
    }

    /// A transposed (non-contiguous) input view, checked in place through its storage.
    @Test func gradientsThroughNonContiguousInput() {
        let x = randomTensor([2, 3, 6, 5], seed: 7)
        let w = randomTensor([2, 3, 3, 3], seed: 8)
        GradCheck().check("conv2d(transposed x)", [x, w]) { xs in
            conv2d(xs[0].transposed(2, 3), weight: xs[1], bias: nil, stride: (1, 2), padding: (1, 1))
        }
    }

    /// Only the weight requires grad (the stem's image input): no input gradient is computed.
    @Test func weightOnlyGradient() {
        let x = randomTensor([2, 3, 5, 5], seed: 9, requiresGrad: false)
        let w = randomTensor([2, 3, 3, 3], seed: 10)
        GradCheck().check("conv2d weight only", [x, w]) { xs in conv2d(xs[0], weight: xs[1], bias: nil, padding: (1, 1)) }
        #expect(x.grad == nil)
    }

    /// (input, weight, padding): images run in several groups — big images one per group, small
    /// ones several per group (block-transposed output), 1×1 per image — and, with several threads,
    /// groups spread over workers that each accumulate part of the weight gradient. The batched
    /// results must equal image-by-image runs.
    static let groupCases: [([Int], [Int], Int)] = [
        ([8, 16, 64, 64], [4, 16, 3, 3], 1),     // P = 4096: one image per group
        ([20, 4, 8, 8], [5, 4, 3, 3], 1),        // P = 64: 8 images per group, 3 groups
        ([6, 4, 16, 16], [3, 4, 1, 1], 0),       // pointwise, P = 256: per-image GEMMs
    ]

    @Test(arguments: groupCases)
    func imageGroupsMatchSingleImages(shape: [Int], weightShape: [Int], padding: Int) {
        let x = randomTensor(shape, seed: 11)
        let w = randomTensor(weightShape, seed: 12)
        let y = conv2d(x, weight: w, bias: nil, padding: (padding, padding))
        let seed = randomTensor(y.shape, seed: 13, requiresGrad: false)
        (y * seed).summed().backward()
        let gx = x.grad!.toArray(), gw = w.grad!.toArray()
        let (xs, ys, ss) = (x.toArray(), y.toArray(), seed.toArray())

        var gwSum = [Double](repeating: 0, count: w.count)
        let imageSize = x.count / shape[0]
        for i in 0..<shape[0] {
            let xi = Tensor(Array(xs[(i * imageSize)..<((i + 1) * imageSize)]), shape: [1] + shape.dropFirst(), requiresGrad: true)
            let wi = Tensor(w.toArray(), shape: w.shape, requiresGrad: true)
            let yi = conv2d(xi, weight: wi, bias: nil, padding: (padding, padding))
            let outSize = yi.count
            let yiv = yi.toArray()
            var worstY: Float = 0
            for j in 0..<outSize { worstY = Swift.max(worstY, abs(yiv[j] - ys[i * outSize + j])) }
            #expect(worstY <= 1e-5, "image \(i): output differs by \(worstY)")
            let si = Tensor(Array(ss[(i * outSize)..<((i + 1) * outSize)]), shape: yi.shape)
            (yi * si).summed().backward()
            let gxi = xi.grad!.toArray()
            var worst: Float = 0
            for j in 0..<imageSize { worst = Swift.max(worst, abs(gxi[j] - gx[i * imageSize + j])) }
            #expect(worst <= 1e-4, "image \(i): input gradient differs by \(worst)")
            for (j, v) in wi.grad!.toArray().enumerated() { gwSum[j] += Double(v) }
        }
        for j in 0..<gw.count { #expect(abs(Double(gw[j]) - gwSum[j]) <= 1e-3 * (1 + abs(gwSum[j])), "dW element \(j)") }
    }

    /// Saves the input and the weight, nothing else.
    @Test func savesInputAndWeightOnly() {
        let x = randomTensor([2, 3, 6, 6], seed: 14)
        let w = randomTensor([4, 3, 3, 3], seed: 15)
        let b = randomTensor([4], seed: 16)
        let infos = savedInfos { conv2d(x, weight: w, bias: b, padding: (1, 1)) }
        #expect(infos.map(\.role) == ["input", "weight"])
        #expect(infos.map(\.byteCount) == [4 * x.count, 4 * w.count])
    }
}
