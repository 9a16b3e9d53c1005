import CRematKernels

/// Embedding lookup: row gather from a `[V, D]` table.
///
/// `out[p, :] = weight[indices[p], :]` for every position `p` of `indices` (int32 or int64, any
/// shape, any strides); the output is contiguous `indices.shape + [D]`.
///
/// Backward: `dweight = zeros([V, D])`, then `dweight[indices[p], :] += dout[p, :]` for every `p` in
/// row-major order, so repeated indices accumulate. The scatter-add is parallelised by splitting
/// the `D` columns between threads (each thread walks every index but owns a disjoint column
/// range, so there are no write races and no atomics); each element's sum is taken in the same
/// order (`p` ascending) whatever the split, so the gradient is bitwise deterministic. With fewer
/// than ~64K gradient elements it runs on one thread. No gradient flows to `indices`.
///
/// Saves: the indices only (`4·numel(indices)` bytes for int32, `8·numel(indices)` for int64; a
/// contiguous copy when the indices were a strided view). The weight is a parameter read again
/// in backward through the gradient's shape only — it is not saved.
///
/// - Precondition: `weight` is float32 of rank 2; every index is in `0..<V` (the failure message
///   names the op, the first bad index, its position and `V`).
public func embedding(_ indices: Tensor, weight: Tensor) -> Tensor {
    precondition(indices.dtype == .int32 || indices.dtype == .int64,
                 "embedding: indices must be int32 or int64, got \(indices.dtype) (shape \(indices.shape))")
    precondition(weight.rank == 2 && weight.dtype == .float32,
                 "embedding: weight must be a float32 [V, D] table, got \(weight.dtype) of shape \(weight.shape)")
    let vocab = weight.shape[0], dim = weight.shape[1]
    let idx = indices.isContiguous ? indices.detached() : indices.contiguousCopy(label: "embedding_indices")
    let n = idx.count
    let is64 = idx.dtype == .int64

    let bad = is64
        ? remat_index_first_invalid_i64(idx.rawPointer.assumingMemoryBound(to: Int64.self), n, vocab)
        : remat_index_first_invalid_i32(idx.rawPointer.assumingMemoryBound(to: Int32.self), n, vocab)
    if bad >= 0 {
        let value = is64 ? Int(idx.rawPointer.assumingMemoryBound(to: Int64.self)[bad])
                         : Int(idx.rawPointer.assumingMemoryBound(to: Int32.self)[bad])
        preconditionFailure("embedding: index \(value) at position \(bad) of indices \(indices.shape) is out of range for V = \(vocab) (weight shape \(weight.shape))")
    }

    return Autograd.op(.embedding, inputs: [indices, weight]) {
        let table = weight.contiguousInput()
        let out = Tensor(uninitializedShape: indices.shape + [dim], label: "embedding")
        if n > 0 && dim > 0 {
            let pw = table.floatPointer, po = out.floatPointer, pi = idx.rawPointer
            parallelChunks(n, grain: Swift.max(1, elementwiseGrain / dim)) { lo, hi in
                if is64 { remat_embedding_gather_i64(pi.assumingMemoryBound(to: Int64.self), pw, dim, po, lo, hi) }
                else { remat_embedding_gather_i32(pi.assumingMemoryBound(to: Int32.self), pw, dim, po, lo, hi) }
            }
        }
        return OpResult(out, saving: [("indices", idx)]) { ctx, g in
            guard ctx.needsInputGrad[1] else { return [nil, nil] }
            let savedIdx = ctx.saved[0]
            let gc = g.contiguousInput()
            let dw = Tensor.zeros([vocab, dim], label: "embedding_backward")
            if n > 0 && dim > 0 {
                let pg = gc.floatPointer, pd = dw.floatPointer, pi = savedIdx.rawPointer
                // Split over columns: every chunk reads all n indices and owns columns lo..<hi.
                parallelChunks(dim, grain: Swift.max(1, elementwiseGrain / Swift.max(n, 1))) { lo, hi in
                    if is64 {
                        remat_embedding_scatter_add_i64(pi.assumingMemoryBound(to: Int64.self), n, pg, dim, pd, lo, hi)
                    } else {
                        remat_embedding_scatter_add_i32(pi.assumingMemoryBound(to: Int32.self), n, pg, dim, pd, lo, hi)
                    }
                }
            }
            return [nil, dw]
        }
    }
}
