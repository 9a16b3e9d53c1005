import Testing
import RematCore

/// concat / split / chunk: values, gradients (with strided inputs), view sharing, shape errors.
@Suite struct ConcatTests {
    let check = GradCheck()

    @Test func concatValues() {
        let a = Tensor([1, 2, 3, 4], shape: [2, 2])
        let b = Tensor([5, 6], shape: [2, 1])
        let c = Tensor([7, 8, 9, 10, 11, 12], shape: [2, 3])
        let y = concat([a, b, c], axis: -1)
        #expect(y.shape == [2, 6])
        #expect(y.isContiguous)
        #expect(y.toArray() == [1, 2, 5, 7, 8, 9, 3, 4, 6, 10, 11, 12])
        let z = concat([a, Tensor([9, 9], shape: [1, 2])], axis: 0)
        #expect(z.toArray() == [1, 2, 3, 4, 9, 9])
        // Integer tensors and a strided input.
        let i = concat([Tensor(indices: [1, 2], shape: [2]), Tensor(indices: [3, 4, 5, 6], shape: [2, 2]).transposed().narrowed(axis: 0, start: 1, length: 1).squeezed(0)], axis: 0)
        #expect(i.dtype == .int32)
        #expect(i.toIntArray() == [1, 2, 4, 6])
    }

    @Test func concatGradient() {
        let a = randomTensor([2, 3, 2], seed: 31)
        let b = randomTensor([2, 1, 2], seed: 32)
        let c = randomTensor([3, 2, 2], seed: 33)   // used transposed: a non-contiguous [2, 3, 2]
        check.check("concat axis 1", [a, b, c]) { concat([$0[0], $0[1], $0[2].transposed(0, 1)], axis: 1) }
        check.check("concat axis -1", [a, randomTensor([2, 3, 1], seed: 34)]) { concat([$0[0], $0[1]], axis: -1) }
        check.check("concat axis 0, same tensor twice", [a]) { concat([$0[0], $0[0] * 2], axis: 0) }
    }

    @Test func concatSavesNothing() {
        let ledger = MemoryLedger()
        MemoryLedger.withLedger(ledger) {
            let a = randomTensor([4, 4], seed: 35), b = randomTensor([4, 4], seed: 36)
            let y = concat([a, b], axis: 1)
            #expect(y.gradFn?.savedTensors.isEmpty == true)
            #expect(ledger.currentBytes(in: .activations) == 0)
        }
    }

    @Test func splitIsViews() {
        let x = Tensor((0..<12).map(Float.init), shape: [3, 4])
        let parts = split(x, sizes: [1, 0, 3], axis: 1)
        #expect(parts.map(\.shape) == [[3, 1], [3, 0], [3, 3]])
        #expect(parts.allSatisfy { $0.storage === x.storage })
        #expect(parts[0].toArray() == [0, 4, 8])
        #expect(parts[2].toArray() == [1, 2, 3, 5, 6, 7, 9, 10, 11])
    }

    @Test func splitAndChunkGradients() {
        let x = randomTensor([4, 5], seed: 37)
        check.check("split", [x]) { xs in
            let p = split(xs[0], sizes: [2, 1, 2], axis: 1)
            return concat([p[2] * 3, p[0], p[1] * -1], axis: 1)
        }
        check.check("split of transposed", [x]) { xs in
            let p = split(xs[0].transposed(), sizes: [3, 2], axis: 0)   // non-contiguous input
            return p[1] * p[0].narrowed(axis: 0, start: 0, length: 2)
        }
        check.check("chunk", [x]) { xs in
            let p = chunk(xs[0].transposed(), 2, axis: -1)   // [5, 4] -> two [5, 2]
            return p[0] * p[1]
        }
    }

    @Test func chunkSizes() {
        let x = Tensor.zeros([5, 6])
        #expect(chunk(x, 3, axis: 1).map(\.shape) == [[5, 2], [5, 2], [5, 2]])
        #expect(chunk(x, 4, axis: 0).map(\.shape) == [[2, 6], [2, 6], [1, 6]])   // PyTorch rule: ⌈5/4⌉ = 2
        #expect(chunk(x, 1, axis: 0).map(\.shape) == [[5, 6]])
        let y = Tensor((0..<6).map(Float.init), shape: [6])
        #expect(chunk(y, 3, axis: 0).map { $0.toArray() } == [[0, 1], [2, 3], [4, 5]])
    }

    @Test func shapeMismatchStops() async {
        await #expect(processExitsWith: .failure) {
            _ = concat([Tensor.zeros([2, 3]), Tensor.zeros([3, 3])], axis: 1)
        }
        await #expect(processExitsWith: .failure) {
            _ = split(Tensor.zeros([2, 3]), sizes: [1, 1], axis: 1)
        }
    }
}
