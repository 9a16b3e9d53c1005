import Testing
import RematCore
#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

/// Plain Double cross-entropy (log-sum-exp with the max subtracted), mean over non-ignored rows.
private func referenceCrossEntropy(_ logits: [Float], c: Int, targets: [Int], ignoreIndex: Int = -100) -> Double {
    var total = 0.0, count = 0
    for (r, t) in targets.enumerated() where t != ignoreIndex {
        let row = (0..<c).map { Double(logits[r * c + $0]) }
        let m = row.max()!
        let lse = m + log(row.map { exp($0 - m) }.reduce(0, +))
        total += lse - row[t]
        count += 1
    }
    return total / Double(count)
}


@Suite struct CrossEntropyTests {
    @Test(arguments: [DType.int32, .int64])
    func matchesDoubleLogSumExp(dtype: DType) {
        let n = 13, c = 29
        let logits = randomTensor([n, c], seed: 51, low: -8, high: 8, requiresGrad: false)
        let targets = (0..<n).map { ($0 * 7 + 3) % c }
        let loss = crossEntropy(logits: logits, targets: Tensor(indices: targets, shape: [n], dtype: dtype))
        #expect(loss.shape == [])
        let ref = referenceCrossEntropy(logits.toArray(), c: c, targets: targets)
        #expect(abs(Double(loss.item) - ref) <= 1e-5)
    }

    /// [B, T, C] logits with [B, T] targets are flattened into rows.
    @Test func batchedLogitsAreFlattened() {
        let logits = randomTensor([2, 3, 11], seed: 52, low: -4, high: 4, requiresGrad: false)
        let targets = [0, 10, 5, 3, -100, 7]
        let loss = crossEntropy(logits: logits, targets: Tensor(indices: targets, shape: [2, 3], dtype: .int64))
        let ref = referenceCrossEntropy(logits.toArray(), c: 11, targets: targets)
        #expect(abs(Double(loss.item) - ref) <= 1e-5)
    }

    /// Logits ~1e4 overflow exp in a naive implementation (and lose precision in (m + ls) − x_t).
    @Test func largeMagnitudeLogits() {
        let n = 6, c = 40
        let noise = randomTensor([n, c], seed: 53, low: -5, high: 5, requiresGrad: false).toArray()
        let values = noise.enumerated().map { i, v in (i / c % 2 == 0 ? 1e4 : -1e4) + v }
        let logits = Tensor(values, shape: [n, c], requiresGrad: true)
        let targets = [1, 7, 39, 0, 20, 33]
        let loss = crossEntropy(logits: logits, targets: Tensor(indices: targets, shape: [n]))
        let ref = referenceCrossEntropy(values, c: c, targets: targets)
        #expect(loss.item.isFinite)
        #expect(abs(Double(loss.item) - ref) <= 1e-5)
        loss.backward()
        let g = logits.grad!.toArray()
        for r in 0..<n {
            let row = (0..<c).map { Double(values[r * c + $0]) }
            let m = row.max()!
            let s = row.map { exp($0 - m) }.reduce(0, +)
            for j in 0..<c {
                let ref = (exp(row[j] - m) / s - (j == targets[r] ? 1 : 0)) / Double(n)
                #expect(abs(Double(g[r * c + j]) - ref) <= 1e-6)
            }
        }
    }

    @Test func ignoredTargetsAreLeftOutOfTheMeanAndGetZeroGradient() {
        let c = 7
        let logits = randomTensor([5, c], seed: 54, low: -3, high: 3)
        let targets = [2, -100, 6, -100, 0]
        let loss = crossEntropy(logits: logits, targets: Tensor(indices: targets, shape: [5]))
        let ref = referenceCrossEntropy(logits.toArray(), c: c, targets: targets)
        #expect(abs(Double(loss.item) - ref) <= 1e-5)
        loss.backward()
        let g = logits.grad!.toArray()
        for j in 0..<c { #expect(g[1 * c + j] == 0 && g[3 * c + j] == 0) }
        // Each live row's gradient sums to 0 (softmax − onehot) and is divided by the live count 3.
        for r in [0, 2, 4] {
            let s = (0..<c).map { Double(g[r * c + $0]) }.reduce(0, +)
            #expect(abs(s) <= 1e-6)
            #expect(abs(Double(g[r * c + targets[r]]) + 1.0 / 3) < 1.0 / 3)
        }
    }

    /// A custom ignore index (any value, here inside [0, C)) is honoured.
    @Test func customIgnoreIndex() {
        let logits = randomTensor([4, 5], seed: 55, requiresGrad: false)
        let targets = [1, 3, 3, 0]
        let loss = crossEntropy(logits: logits, targets: Tensor(indices: targets, shape: [4]), ignoreIndex: 3)
        let ref = referenceCrossEntropy(logits.toArray(), c: 5, targets: targets, ignoreIndex: 3)
        #expect(abs(Double(loss.item) - ref) <= 1e-5)
    }

    /// All targets ignored: NaN loss (0/0, PyTorch ≥ 1.10 with mean reduction), zero gradient.
    @Test func allIgnoredGivesNaNLossAndZeroGradient() {
        let logits = randomTensor([3, 4], seed: 56)
        let loss = crossEntropy(logits: logits, targets: Tensor(indices: [-100, -100, -100], shape: [3]))
        #expect(loss.item.isNaN)
        loss.backward()
        #expect(logits.grad!.toArray().allSatisfy { $0 == 0 })
    }

    @Test(arguments: [DType.int32, .int64])
    func gradients(dtype: DType) {
        let targets = Tensor(indices: [3, -100, 0, 4], shape: [4], dtype: dtype)
        GradCheck().check("cross_entropy", [randomTensor([4, 5], seed: 57, low: -2, high: 2)]) { xs in
            crossEntropy(logits: xs[0], targets: targets)
        }
    }

    /// Non-contiguous logits (a transposed view) and [B, T, C] logits.
    @Test func nonContiguousAndBatchedGradients() {
        let targets = Tensor(indices: [1, 0, 2, 2, 1], shape: [5])
        GradCheck().check("cross_entropy", [randomTensor([3, 5], seed: 58, low: -2, high: 2)]) { xs in
            crossEntropy(logits: xs[0].transposed(), targets: targets)
        }
        let targets3 = Tensor(indices: [1, 3, -100, 0, 2, 2], shape: [2, 3], dtype: .int64)
        GradCheck().check("cross_entropy", [randomTensor([2, 3, 4], seed: 59, low: -2, high: 2)]) { xs in
            crossEntropy(logits: xs[0], targets: targets3) * 3
        }
    }

    @Test func savesLogitsTargetsAndRowStats() {
        let logits = randomTensor([6, 10], seed: 60)
        let targets = Tensor(indices: [1, 2, 3, 4, 5, 6], shape: [6], dtype: .int64)
        let infos = savedInfos { crossEntropy(logits: logits, targets: targets) }
        #expect(infos.map(\.role) == ["logits", "targets", "row_stats"])
        #expect(infos.map(\.byteCount) == [4 * 60, 8 * 6, 8 * 6])
        #expect(savedInfos { noGrad { crossEntropy(logits: logits, targets: targets) } }.isEmpty)
    }

    /// Many rows and classes (several parallel chunks) against the reference.
    @Test func largeInputMatchesReference() {
        let n = 300, c = 1000
        let logits = randomTensor([n, c], seed: 61, low: -10, high: 10, requiresGrad: false)
        let targets = (0..<n).map { $0 % 17 == 0 ? -100 : ($0 * 37) % c }
        let loss = crossEntropy(logits: logits, targets: Tensor(indices: targets, shape: [n]))
        let ref = referenceCrossEntropy(logits.toArray(), c: c, targets: targets)
        #expect(abs(Double(loss.item) - ref) <= 1e-5)
    }

    /// An out-of-range target that is not ignoreIndex stops the process (a precondition failure
    /// naming the op, row, value and C; -O builds drop precondition messages, so only the exit is checked).
    @Test func targetOutOfRangeStops() async {
        await #expect(processExitsWith: .failure) {
            let logits = Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3])
            _ = crossEntropy(logits: logits, targets: Tensor(indices: [0, 3], shape: [2]))
        }
        await #expect(processExitsWith: .failure) {
            let logits = Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3])
            _ = crossEntropy(logits: logits, targets: Tensor(indices: [-1, 0], shape: [2], dtype: .int64))
        }
    }
}
