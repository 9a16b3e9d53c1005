import RematCore
import RematNN
import RematTraining

/// Data-parallel training over a ``Communicator``: every rank holds the whole model, trains on its
/// own shard of every batch, and averages the gradients over the ranks before the optimizer
/// steps, so every rank takes the same step (PyTorch DDP's contract).
///
/// ```swift
/// let dp = try DataParallel(try Communicator.world())
/// try dp.broadcastParameters(model)          // every rank starts from rank 0's weights
/// trainer.gradientSynchronizer = dp          // gradients averaged after each backward
/// trainer.checkedStep(try dp.shard(globalBatch))
/// ```
///
/// Gradients are packed into buckets of about ``bucketBytes`` in reverse parameter order (the
/// order backward finishes them) and each bucket is all-reduced with a non-blocking collective,
/// all of them in flight at once. They start once backward has finished: overlapping them with
/// backward (starting a bucket as soon as its gradients are final) is not done yet.
///
/// Numerics: each rank's loss is the mean over its shard; the average of the ranks' gradients is
/// the gradient of the mean over the whole batch when the shards are equal (``shard(_:)``
/// requires it). It differs from one process's gradient on the whole batch only by the order of
/// the sums: over the shard's rows inside each rank, then over the ranks in MPI's reduction order.
public final class DataParallel: GradientSynchronizer {
    public let communicator: Communicator
    /// Bytes of gradients per all-reduce (PyTorch DDP's default: 25 MiB).
    public let bucketBytes: Int
    /// Seconds spent in gradient all-reduces (packing, the collectives, unpacking) since the last
    /// ``resetStatistics()``, and how many all-reduces ran.
    public private(set) var allReduceSeconds = 0.0
    public private(set) var allReduces = 0

    public init(_ communicator: Communicator, bucketBytes: Int = 25 << 20) throws(DistributedError) {
        guard bucketBytes >= 4 else { throw .badBuffer("a gradient bucket of \(bucketBytes) bytes holds no float") }
        self.communicator = communicator
        self.bucketBytes = bucketBytes
    }

    public func resetStatistics() {
        allReduceSeconds = 0
        allReduces = 0
    }

    /// This rank's rows of `batch` (dimension 0): rank r of N takes rows r·B/N ..< (r+1)·B/N.
    /// Every rank draws the same batch from the same seed, so the shards are disjoint and cover it.
    public func shard(_ batch: TrainingBatch) throws(DistributedError) -> TrainingBatch {
        let n = communicator.size, rows = batch.input.shape.first ?? 0
        guard n > 1 else { return batch }
        guard rows % n == 0, batch.target.shape.first == rows else {
            throw .badBuffer("a batch of \(rows) rows does not split into \(n) equal shards; give a batch size divisible by \(n)")
        }
        let per = rows / n
        return TrainingBatch(input: batch.input.narrowed(axis: 0, start: communicator.rank * per, length: per).contiguous(),
                             target: batch.target.narrowed(axis: 0, start: communicator.rank * per, length: per).contiguous())
    }

    /// Copies rank 0's parameters and buffers into every rank's model.
    public func broadcastParameters(_ model: Module) throws(DistributedError) {
        for (_, t) in model.namedTensors where t.dtype == .float32 { try communicator.broadcast(t) }
    }

    /// Whether every rank's parameters and buffers are bitwise rank 0's (a check: it broadcasts
    /// a copy of each).
    public func parametersAgree(_ model: Module) throws(DistributedError) -> Bool {
        var same = 1.0
        for (_, t) in model.namedTensors where t.dtype == .float32 {
            var mine = t.toArray()
            var root = mine
            try root.withUnsafeMutableBufferPointer { (b) throws(DistributedError) in try communicator.broadcast(b, root: 0) }
            if mine.map(\.bitPattern) != root.map(\.bitPattern) { same = 0 }
            mine.removeAll()
        }
        // Every rank learns whether any rank differed.
        return try communicator.allReduceMax(1 - same) == 0
    }

    /// Averages every parameter's gradient over the ranks (``GradientSynchronizer``). A parameter
    /// without a gradient on this rank takes part with zeros, so the ranks' buckets always match.
    public func synchronize(_ parameters: [Tensor]) throws {
        let n = communicator.size
        guard n > 1 else { return }
        let start = monotonicSeconds()
        defer { allReduceSeconds += monotonicSeconds() - start }
        // Buckets in reverse parameter order, each at most bucketBytes (a larger gradient alone).
        var buckets: [[Tensor]] = [[]]
        var bytes = 0
        for p in parameters.reversed() {
            if bytes > 0 && bytes + p.count * 4 > bucketBytes {
                buckets.append([])
                bytes = 0
            }
            buckets[buckets.count - 1].append(p)
            bytes += p.count * 4
        }
        // Each bucket packed into one ledger tensor (temporaries: the communication buffers).
        let packed = buckets.map { ps in
            let flat = Tensor.zeros([ps.reduce(0) { $0 + $1.count }], category: .temporaries, label: "all-reduce bucket")
            var at = 0
            for p in ps {
                if let g = p.grad {
                    let c = g.contiguous()
                    (flat.floatPointer + at).update(from: c.floatPointer, count: p.count)
                }
                at += p.count
            }
            return flat
        }
        var requests: [Communicator.Request] = []
        for flat in packed {
            requests.append(try communicator.startAllReduceSum(UnsafeMutableBufferPointer(start: flat.floatPointer, count: flat.count)))
        }
        let scale = 1 / Float(n)
        for (k, r) in requests.enumerated() {
            try r.wait()
            allReduces += 1
            let src = packed[k].floatPointer
            var at = 0
            for p in buckets[k] {
                if p.grad == nil || !p.grad!.isContiguous || p.grad!.dtype != .float32 {
                    p.grad = Tensor.zeros(p.shape, category: .gradients, label: "grad")
                }
                let dst = p.grad!.floatPointer
                for i in 0..<p.count { dst[i] = src[at + i] * scale }
                at += p.count
            }
        }
    }
}
