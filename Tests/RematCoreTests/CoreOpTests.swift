import Testing
import RematCore

/// Finite-difference and value checks for views, broadcasting arithmetic, reductions and matmul.
@Suite struct CoreOpTests {
    let check = GradCheck()

    @Test func broadcastingArithmetic() {
        let a = randomTensor([2, 3, 4], seed: 1)
        let b = randomTensor([3, 1], seed: 2)
        let c = randomTensor([4], seed: 3, low: 0.5, high: 2)
        check.check("add", [a, b]) { $0[0] + $0[1] }
        check.check("sub", [a, b]) { $0[0] - $0[1] }
        check.check("mul", [a, b]) { $0[0] * $0[1] }
        check.check("div", [a, c]) { $0[0] / $0[1] }
        check.check("scalar ops", [a]) { (2 - $0[0] * 3 + 1) / 4 }
        check.check("neg", [a]) { -$0[0] }
    }

    @Test func arithmeticOnNonContiguousViews() {
        let a = randomTensor([4, 3], seed: 4)
        let b = randomTensor([3, 4], seed: 5)
        check.check("add of transposed", [a, b]) { $0[0].transposed() + $0[1] }
        check.check("mul of narrowed", [a, b]) { $0[0].narrowed(axis: 0, start: 1, length: 3) * $0[1].transposed().narrowed(axis: 0, start: 0, length: 3) }
    }

    @Test func maximumAndMinimum() {
        let a = randomTensor([3, 4], seed: 6)
        let b = randomTensor([4], seed: 7)
        check.check("maximum", [a, b]) { $0[0].maximum($0[1]) }
        check.check("minimum", [a, b]) { $0[0].minimum($0[1]) }
    }

    @Test func broadcastValues() {
        let a = Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3])
        let b = Tensor([10, 20], shape: [2, 1])
        #expect((a + b).toArray() == [11, 12, 13, 24, 25, 26])
        #expect((a * Tensor([1, 0, -1], shape: [3])).toArray() == [1, 0, -3, 4, 0, -6])
    }

    @Test func views() {
        let a = randomTensor([2, 3, 4], seed: 8)
        check.check("reshape", [a]) { $0[0].reshaped([4, -1]) }
        check.check("permute", [a]) { $0[0].permuted([2, 0, 1]) }
        check.check("transpose+reshape (copy)", [a]) { $0[0].transposed(0, 2).reshaped([-1]) }
        check.check("narrow", [a]) { $0[0].narrowed(axis: 2, start: 1, length: 2) }
        check.check("expand", [randomTensor([3, 1], seed: 9)]) { $0[0].expanded(to: [2, 3, 4]) }
        check.check("unsqueeze/squeeze", [a]) { $0[0].unsqueezed(1).squeezed(1).unsqueezed(-1) }
        check.check("contiguous", [a]) { $0[0].transposed().contiguous() }
        check.check("flatten", [a]) { $0[0].flattened(from: 1) }
    }

    @Test func viewValues() {
        let a = Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3])
        #expect(a.transposed().toArray() == [1, 4, 2, 5, 3, 6])
        #expect(a.narrowed(axis: 1, start: 1, length: 2).toArray() == [2, 3, 5, 6])
        #expect(a.transposed().reshaped([6]).toArray() == [1, 4, 2, 5, 3, 6])
        #expect(a.narrowed(axis: 0, start: 1, length: 1).expanded(to: [2, 3]).toArray() == [4, 5, 6, 4, 5, 6])
    }

    @Test func reductions() {
        let a = randomTensor([2, 3, 4], seed: 10)
        check.check("sum all", [a]) { $0[0].summed() }
        check.check("sum axes 0,2", [a]) { $0[0].summed(alongAxes: [0, 2]) }
        check.check("sum keepdims", [a]) { $0[0].summed(alongAxes: [1], keepingDims: true) }
        check.check("mean", [a]) { $0[0].mean(alongAxes: [-1]) }
        check.check("sum of transposed", [a]) { $0[0].transposed(0, 2).summed(alongAxes: [1]) }
        let m = randomTensor([3, 5], seed: 11)
        check.check("max axis 1", [m]) { $0[0].max(alongAxis: 1) }
        check.check("max axis 0", [m]) { $0[0].max(alongAxis: 0, keepingDims: true) }
    }

    @Test func reductionValues() {
        let a = Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3])
        #expect(a.summed().item == 21)
        #expect(a.summed(alongAxes: [0]).toArray() == [5, 7, 9])
        #expect(a.summed(alongAxes: [1]).toArray() == [6, 15])
        #expect(a.mean().item == 3.5)
        #expect(a.max(alongAxis: 1).toArray() == [3, 6])
        #expect(Tensor([1, .nan, 3], shape: [3]).max(alongAxis: 0).item.isNaN)
        // A long row: the 16-lane partial sums give the exact integer result.
        let n = 10_000
        let long = Tensor((0..<n).map { Float($0 % 7) }, shape: [n])
        #expect(long.summed().item == Float((0..<n).reduce(0) { $0 + $1 % 7 }))
    }

    @Test func matmulGradients() {
        let a = randomTensor([3, 4], seed: 12)
        let b = randomTensor([4, 5], seed: 13)
        check.check("matmul 2d", [a, b]) { matmul($0[0], $0[1]) }
        check.check("matmul transposed operands", [a, b]) { matmul($0[1].transposed(), $0[0].transposed()) }
        let x = randomTensor([2, 3, 4], seed: 14)
        check.check("matmul batched x shared weight", [x, b]) { matmul($0[0], $0[1]) }
        let y = randomTensor([2, 4, 2], seed: 15)
        check.check("bmm", [x, y]) { matmul($0[0], $0[1]) }
        let z = randomTensor([1, 4, 2], seed: 16)
        check.check("bmm broadcast batch", [x, z]) { matmul($0[0], $0[1]) }
        check.check("bmm non-contiguous", [x, y]) { matmul($0[0], $0[1].transposed().transposed(1, 2)) }
    }

    @Test func linearGradients() {
        let x = randomTensor([2, 3, 4], seed: 21)
        let w = randomTensor([5, 4], seed: 22)
        let b = randomTensor([5], seed: 23)
        check.check("linear with bias", [x, w, b]) { linear($0[0], weight: $0[1], bias: $0[2]) }
        check.check("linear without bias", [x, w]) { linear($0[0], weight: $0[1], bias: nil) }
        check.check("linear 1-d input", [randomTensor([4], seed: 24), w, b]) { linear($0[0], weight: $0[1], bias: $0[2]) }
        check.check("linear non-contiguous input and weight", [randomTensor([4, 3], seed: 25), randomTensor([4, 5], seed: 26), b]) {
            linear($0[0].transposed(), weight: $0[1].transposed(), bias: $0[2])
        }
    }

    @Test func linearValuesMatchMatmulPlusBias() {
        let rng = RandomGenerator(seed: 98)
        for (rows, k, n) in [(1, 1, 1), (7, 13, 5), (300, 200, 290)] {   // the last is split over threads
            let x = Tensor.randn([rows, k], generator: rng), w = Tensor.randn([n, k], generator: rng)
            let b = Tensor.randn([n], generator: rng)
            let fused = linear(x, weight: w, bias: b).toArray()
            let reference = (matmul(x, w.transposed()) + b).toArray()
            #expect(fused.count == rows * n)
            for (u, v) in zip(fused, reference) { #expect(abs(u - v) <= 1e-4 * max(1, abs(v))) }
            #expect(linear(x, weight: w, bias: nil).toArray() == matmul(x, w.transposed()).toArray())
        }
    }

    @Test func matmulValuesMatchNaiveProduct() {
        let rng = RandomGenerator(seed: 99)
        for (m, k, n) in [(1, 1, 1), (7, 13, 5), (64, 33, 17), (200, 300, 290)] {   // the last is split over threads
            let a = Tensor.randn([m, k], generator: rng), b = Tensor.randn([k, n], generator: rng)
            let av = a.toArray(), bv = b.toArray()
            let c = matmul(a, b).toArray()
            for i in 0..<m {
                for j in 0..<n {
                    var s = 0.0
                    for p in 0..<k { s += Double(av[i * k + p]) * Double(bv[p * n + j]) }
                    #expect(abs(Double(c[i * n + j]) - s) <= 1e-4 * max(1, abs(s)))
                }
            }
            // Transposed views give the same product without copies.
            let ct = matmul(b.transposed(), a.transposed()).transposed().contiguous().toArray()
            for (u, v) in zip(c, ct) { #expect(abs(u - v) <= 1e-4 * max(1, abs(u))) }
        }
    }

    @Test func conversionRoundTripThroughTensors() {
        let a = Tensor([1, -2.5, 448, 1e6, 0.1], shape: [5])
        #expect(a.converted(to: .bfloat16).converted(to: .float32).toArray()[0...2] == [1, -2.5, 448])
        // FP8 E4M3 saturates at 448.
        #expect(a.converted(to: .float8E4M3FN).converted(to: .float32).toArray()[3] == 448)
        #expect(a.converted(to: .float16).byteCount == 10)
    }
}
