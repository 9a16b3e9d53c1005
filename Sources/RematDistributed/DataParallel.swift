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
/// order backward finishes them). A bucket's non-blocking all-reduce starts during backward as
/// soon as the last of its gradients is final (``gradientReady(_:)``, from the autograd engine),
/// and in-flight reductions are poked (`MPI_Test`) as later gradients arrive, so they progress
/// under backward; after backward ``synchronize(_:)`` starts what is left and waits. Its time is
/// the all-reduce time backward did not hide (``allReduceSeconds``).
///
/// Numerics: each rank's loss is the mean over its shard; the average of the ranks' gradients is
/// the gradient of the mean over the whole batch when the shards are equal (``shard(_:)``
/// requires it). It differs from one process's gradient on the whole batch only by the order of
/// the sums: over the shard's rows inside each rank, then over the ranks in MPI's reduction order.
public final class DataParallel: GradientSynchronizer, @unchecked Sendable {
    public let communicator: Communicator
    /// Bytes of gradients per all-reduce (PyTorch DDP's default: 25 MiB).
    public let bucketBytes: Int
    /// Seconds the step spent after backward on gradient all-reduces (starting the buckets backward
    /// did not start, waiting, writing the averages back) since the last ``resetStatistics()``,
    /// and how many bucket all-reduces ran.
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
        overlappedBuckets = 0
    }

    /// This rank's rows of `batch` (dimension 0): rank r of N takes rows r·B/N ..< (r+1)·B/N.
    /// Every rank draws the same batch from the same seed, so the shards are disjoint and cover it.
    public func shard(_ batch: TrainingBatch) throws(DistributedError) -> TrainingBatch {
        let n = communicator.size, rows = batch.input.shape.first ?? 0
        guard n > 1 else { return batch }
        try requireEvenShards(rows)
        guard batch.target.shape.first == rows else {
            throw .badBatch("the batch's target has \(batch.target.shape.first ?? 0) rows, its input \(rows)")
        }
        let per = rows / n
        return TrainingBatch(input: batch.input.narrowed(axis: 0, start: communicator.rank * per, length: per).contiguous(),
                             target: batch.target.narrowed(axis: 0, start: communicator.rank * per, length: per).contiguous())
    }

    /// Refuses a global batch of `rows` rows that does not split into equal shards (checked by
    /// ``shard(_:)``; callers check it before any work).
    public func requireEvenShards(_ rows: Int) throws(DistributedError) {
        let n = communicator.size
        guard rows % n == 0 else {
            throw .badBatch("a batch of \(rows) rows does not split into \(n) equal shards; give a batch size divisible by \(n)")
        }
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
            let mine = t.toArray()
            var root = mine
            try root.withUnsafeMutableBufferPointer { (b) throws(DistributedError) in try communicator.broadcast(b, root: 0) }
            if mine.map(\.bitPattern) != root.map(\.bitPattern) { same = 0 }
        }
        // Every rank learns whether any rank differed.
        return try communicator.allReduceMax(1 - same) == 0
    }

    // MARK: Buckets

    /// The buckets: indices into the parameters, in reverse parameter order, each at most
    /// ``bucketBytes`` (a larger gradient alone), for the parameter list they were made for.
    private(set) var layout: [[Int]] = []
    private var layoutFor: [ObjectIdentifier] = []
    private(set) var parameters: [Tensor] = []
    private var where_: [ObjectIdentifier: Int] = [:]
    /// This step's state: gradients each bucket still waits for, and the reductions in flight
    /// (with ZeRO-1, each with the shard of the sum this rank receives).
    private var waitingFor: [Int] = []
    private var inFlight: [Int: (flat: Tensor, shard: Tensor?, request: Communicator.Request)] = [:]
    /// Buckets whose reduction started during backward (overlapped), since the last reset.
    public private(set) var overlappedBuckets = 0
    /// Whether buckets start during backward as their gradients become final (the default);
    /// false: every bucket starts after backward (what the overlap is measured against).
    public var overlapsBackward = true
    /// Set by a ``ZeroRedundancyOptimizer`` made over this: buckets are then reduce-scattered
    /// (each rank receives the average of its own part of each bucket, for its shard of the
    /// optimizer step) instead of all-reduced.
    weak var zero: ZeroRedundancyOptimizer?

    /// Makes the buckets for `parameters` (the optimizer's, in its order), if they changed.
    public func prepare(_ parameters: [Tensor]) {
        let ids = parameters.map(ObjectIdentifier.init)
        guard ids != layoutFor else { return }
        precondition(zero == nil, "DataParallel: a ZeroRedundancyOptimizer fixed the buckets for its parameters; synchronize those")
        layoutFor = ids
        self.parameters = parameters
        layout = [[]]
        var bytes = 0
        for i in parameters.indices.reversed() {
            let b = parameters[i].count * 4
            if bytes > 0 && bytes + b > bucketBytes {
                layout.append([])
                bytes = 0
            }
            layout[layout.count - 1].append(i)
            bytes += b
        }
        where_ = [:]
        for (k, bucket) in layout.enumerated() { for i in bucket { where_[ids[i]] = k } }
        resetStep()
    }

    /// Elements of bucket `k`'s gradients, and the count it is reduced as: rounded up to a
    /// multiple of the rank count when it is reduce-scattered (the padding is zeros).
    func elements(ofBucket k: Int) -> (count: Int, padded: Int) {
        let count = layout[k].reduce(0) { $0 + parameters[$1].count }
        let n = communicator.size
        return (count, zero == nil ? count : (count + n - 1) / n * n)
    }

    private func resetStep() {
        waitingFor = layout.map(\.count)
        inFlight = [:]
    }

    /// A parameter's gradient is final (``GradientSynchronizer``): when it was the last its bucket
    /// waited for, the bucket's all-reduce starts now, while backward goes on. Reductions in
    /// flight are given a chance to progress (`MPI_Test`).
    public func gradientReady(_ parameter: Tensor) {
        guard overlapsBackward, communicator.size > 1, let k = where_[ObjectIdentifier(parameter)], inFlight[k] == nil else { return }
        waitingFor[k] -= 1
        for (_, f) in inFlight { _ = try? f.request.test() }
        if waitingFor[k] == 0, (try? start(k)) != nil { overlappedBuckets += 1 }
    }

    /// Packs bucket `k`'s gradients into one ledger tensor (temporaries: the communication
    /// buffer; a missing gradient as zeros) and starts its all-reduce, or with ZeRO-1 its
    /// reduce-scatter into this rank's shard (a gradients tensor, kept for the optimizer step).
    private func start(_ k: Int) throws(DistributedError) {
        let ps = layout[k].map { parameters[$0] }
        let (_, padded) = elements(ofBucket: k)
        let flat = Tensor.zeros([padded], category: .temporaries, label: "all-reduce bucket")
        var at = 0
        for p in ps {
            if let g = p.grad {
                let c = g.contiguous()
                (flat.floatPointer + at).update(from: c.floatPointer, count: p.count)
            }
            at += p.count
        }
        let buffer = UnsafeMutableBufferPointer(start: flat.floatPointer, count: flat.count)
        if zero != nil {
            let shard = Tensor.zeros([padded / communicator.size], category: .gradients, label: "gradient shard")
            let request = try communicator.startReduceScatterSum(buffer, into: UnsafeMutableBufferPointer(start: shard.floatPointer, count: shard.count))
            inFlight[k] = (flat, shard, request)
        } else {
            inFlight[k] = (flat, nil, try communicator.startAllReduceSum(buffer))
        }
    }

    /// Averages every parameter's gradient over the ranks (``GradientSynchronizer``): starts the
    /// buckets backward did not start, waits for every bucket, and writes the averages back. A
    /// parameter without a gradient on this rank takes part with zeros, so the ranks' buckets
    /// always match. With ZeRO-1 this rank receives only the average of its own part of each
    /// bucket, which goes to the ``ZeroRedundancyOptimizer``; the parameters' own gradients (this
    /// rank's, not averaged) are then freed.
    public func synchronize(_ parameters: [Tensor]) throws {
        let n = communicator.size
        guard n > 1 || zero != nil else { return }
        let started = monotonicSeconds()
        defer { allReduceSeconds += monotonicSeconds() - started }
        prepare(parameters)
        defer { resetStep() }
        for k in layout.indices where inFlight[k] == nil { try start(k) }
        let scale = 1 / Float(n)
        for k in layout.indices {
            let (flat, shard, request) = inFlight[k]!
            try request.wait()
            allReduces += 1
            if let shard, let zero {
                let p = shard.floatPointer
                for j in 0..<shard.count { p[j] *= scale }
                zero.receive(shard, ofBucket: k)
                continue
            }
            let src = flat.floatPointer
            var at = 0
            for i in layout[k] {
                let p = parameters[i]
                if p.grad == nil || !p.grad!.isContiguous || p.grad!.dtype != .float32 {
                    p.grad = Tensor.zeros(p.shape, category: .gradients, label: "grad")
                }
                let dst = p.grad!.floatPointer
                for j in 0..<p.count { dst[j] = src[at + j] * scale }
                at += p.count
            }
        }
        if zero != nil { for p in parameters { p.grad = nil } }
    }
}
