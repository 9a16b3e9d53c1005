import CRematKernels

/// Iteration layout shared by strided kernels: a shape and one stride list per operand, with
/// size-1 axes dropped and adjacent axes merged wherever every operand allows it, so that inner
/// loops run as long as possible. Kernels iterate "rows" (all axes but the last).
struct StridedLayout {
    var shape: [Int]
    var strides: [[Int]]

    init(shape: [Int], strides: [[Int]]) {
        var s: [Int] = []
        var st: [[Int]] = Array(repeating: [], count: strides.count)
        for d in 0..<shape.count where shape[d] != 1 {
            s.append(shape[d])
            for k in 0..<strides.count { st[k].append(strides[k][d]) }
        }
        if s.isEmpty {
            self.shape = [1]
            self.strides = strides.map { _ in [1] }
            return
        }
        var d = s.count - 2
        while d >= 0 {
            let mergeable = st.allSatisfy { $0[d] == $0[d + 1] * s[d + 1] }
            if mergeable {
                s[d] *= s[d + 1]
                s.remove(at: d + 1)
                for k in 0..<st.count {
                    st[k][d] = st[k][d + 1]
                    st[k].remove(at: d + 1)
                }
            }
            d -= 1
        }
        self.shape = s
        self.strides = st
    }

    var rows: Int { shape.dropLast().reduce(1, *) }
    var rowLength: Int { shape.last! }
}

extension Tensor {
    /// Copies this tensor's elements (any dtype, any strides) into `destination`'s layout.
    public func copyElements(into destination: Tensor) {
        precondition(destination.shape == shape, "copy: source shape \(shape) differs from destination \(destination.shape)")
        precondition(destination.dtype == dtype, "copy: source dtype \(dtype) differs from destination \(destination.dtype)")
        guard count > 0 else { return }
        let layout = StridedLayout(shape: shape, strides: [strides, destination.strides])
        let src = rawPointer, dst = destination.rawPointer, size = Int32(dtype.byteSize)
        let rowLength = layout.rowLength
        layout.shape.withUnsafeBufferPointer { shp in
            layout.strides[0].withUnsafeBufferPointer { ss in
                layout.strides[1].withUnsafeBufferPointer { ds in
                    let box = UncheckedSendableBox((shp.baseAddress!, ss.baseAddress!, ds.baseAddress!))
                    parallelChunks(layout.rows, grain: Swift.max(1, elementwiseGrain / rowLength)) { lo, hi in
                        let (sp, sp1, dp1) = box.value
                        remat_copy_strided2(Int32(layout.shape.count), sp, src, sp1, dst, dp1, size, lo, hi)
                    }
                }
            }
        }
    }

    /// A contiguous copy of this tensor in new storage (no autograd).
    public func contiguousCopy(label: String = "copy") -> Tensor {
        let out = Tensor(uninitializedShape: shape, dtype: dtype, label: label)
        copyElements(into: out)
        return out
    }
}
