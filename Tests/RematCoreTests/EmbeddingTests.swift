import Testing
import RematCore

/// Embedding gather / scatter-add: values, gradients with repeated indices, saved bytes, bad indices.
@Suite struct EmbeddingTests {
    let check = GradCheck()

    @Test(arguments: [DType.int32, DType.int64])
    func gatherValues(dtype: DType) {
        let w = Tensor((0..<15).map(Float.init), shape: [5, 3])
        let idx = Tensor(indices: [4, 0, 4, 2, 1, 4], shape: [2, 3], dtype: dtype)
        let y = embedding(idx, weight: w)
        #expect(y.shape == [2, 3, 3])
        let expected = [4, 0, 4, 2, 1, 4].flatMap { v in (0..<3).map { Float(3 * v + $0) } }
        #expect(y.toArray() == expected)
    }

    @Test func stridedIndicesAndWeight() {
        // Indices as a transposed view, weight as a transposed view of a [D, V] buffer.
        let idx = Tensor(indices: [0, 1, 2, 3, 3, 1], shape: [2, 3]).transposed()   // [3, 2]: 0 3 / 1 3 / 2 1
        let base = Tensor((0..<12).map(Float.init), shape: [3, 4])                    // [D=3, V=4]
        let w = base.transposed()                                                     // [V=4, D=3], w[v, d] = 4d + v
        let y = embedding(idx, weight: w)
        #expect(y.shape == [3, 2, 3])
        let expected = [0, 3, 1, 3, 2, 1].flatMap { v in (0..<3).map { Float(4 * $0 + v) } }
        #expect(y.toArray() == expected)
    }

    @Test func gradientWithRepeatedIndices() {
        let idx = Tensor(indices: [1, 3, 1, 1, 0, 3, 2, 1], shape: [2, 4], dtype: .int64)
        check.check("embedding", [randomTensor([4, 3], seed: 11)]) { embedding(idx, weight: $0[0]) }
        // Non-contiguous weight: a transposed [D, V] leaf.
        check.check("embedding of transposed weight", [randomTensor([3, 4], seed: 12)]) {
            embedding(idx, weight: $0[0].transposed())
        }
    }

    @Test func scatterAddCountsRepeats() {
        let w = randomTensor([4, 2], seed: 13)
        let idx = Tensor(indices: [2, 2, 0, 2, 3], shape: [5])
        let y = embedding(idx, weight: w)
        y.backward(gradient: Tensor.ones(y.shape))
        #expect(w.grad?.toArray() == [1, 1, 0, 0, 3, 3, 1, 1])
    }

    /// Large enough that the column split runs on several threads: compare with a serial reference.
    @Test func parallelScatterAddMatchesReference() {
        let v = 50, d = 300, n = 2000
        let w = randomTensor([v, d], seed: 14)
        let ids = (0..<n).map { ($0 * 7919 + 13) % v }
        let idx = Tensor(indices: ids, shape: [n])
        let g = randomTensor([n, d], seed: 15, requiresGrad: false)
        embedding(idx, weight: w).backward(gradient: g)
        var ref = [Float](repeating: 0, count: v * d)
        let ga = g.toArray()
        for p in 0..<n { for c in 0..<d { ref[ids[p] * d + c] += ga[p * d + c] } }
        #expect(w.grad?.toArray() == ref)   // same summation order: bitwise equal
    }

    @Test func savesOnlyTheIndices() {
        let ledger = MemoryLedger()
        MemoryLedger.withLedger(ledger) {
            let w = randomTensor([10, 8], seed: 16).makeParameter(name: "emb")
            let idx = Tensor(indices: [1, 2, 3, 4, 5, 6], shape: [2, 3], dtype: .int64)   // 48 bytes
            let y = embedding(idx, weight: w)
            #expect(ledger.currentBytes(in: .activations) == 48)
            #expect(ledger.currentBytes(in: .parameters) == 320)
            y.summed().backward()
            #expect(ledger.currentBytes(in: .activations) == 0)
            _ = idx
        }
    }

    @Test func outOfRangeIndexStops() async {
        await #expect(processExitsWith: .failure) {
            let w = Tensor.zeros([5, 2])
            _ = embedding(Tensor(indices: [0, 5], shape: [2]), weight: w)
        }
        await #expect(processExitsWith: .failure) {
            let w = Tensor.zeros([5, 2])
            _ = embedding(Tensor(indices: [-1], shape: [1], dtype: .int64), weight: w)
        }
    }
}
