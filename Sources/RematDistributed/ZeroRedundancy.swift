import Foundation
import RematCore
import RematNN

/// ZeRO stage 1 (DeepSpeed; PyTorch's `ZeroRedundancyOptimizer`): each rank keeps the optimizer
/// state of 1/N of the parameters' elements and steps only those; the gradients are
/// reduce-scattered instead of all-reduced and the stepped parameters all-gathered, so every
/// rank ends the step with the same parameters as plain data parallelism at 1/N of the optimizer
/// state.
///
/// ```swift
/// let dp = try DataParallel(try Communicator.world())
/// let zero = try ZeroRedundancyOptimizer(dp, parameters: model.parameters) { shards, owners in
///     AdamW(shards, learningRate: 3e-4, decaying: owners.map(AdamW.decays))
/// }
/// let trainer = Trainer(model: model, optimizer: zero)
/// trainer.gradientSynchronizer = dp
/// ```
///
/// The split follows ``DataParallel``'s gradient buckets: each bucket's elements (in the
/// bucket's order, padded with zeros to a multiple of N) are cut into N equal parts and rank r
/// owns the r-th. A rank's part of a bucket is a run of whole or partial parameters; the local
/// optimizer steps 1-D views of those runs, which alias the parameters' storage. During backward
/// a ready bucket's reduce-scatter starts as its all-reduce would (`MPI_Ireduce_scatter_block`),
/// and this rank receives the average of its part (``DataParallel/synchronize(_:)``). After the
/// local step each bucket is all-gathered in place (`MPI_Allgather`) and copied back into the
/// parameters. The all-gather buffer is one bucket at a time (temporaries).
///
/// Numerics: the reduce-scatter's sums are the all-reduce's over the same ranks (with 2 ranks
/// one addition, bitwise the same), and AdamW is element-wise, so with 2 ranks the parameters
/// are bitwise plain data parallelism's, except where a gradient norm differs: clipping's norm
/// (and the loss scaler's finiteness test) is each rank's sum of squares over its shard, summed
/// over the ranks (``totalOverShards(_:)``), an order of the sum in doubles that can change the
/// float32 norm's last bit.
///
/// `step()` cannot throw: an MPI failure in its all-gather prints the rank and the error and ends
/// the whole job (`MPI_Abort`), as a failing rank must.
public final class ZeroRedundancyOptimizer: Optimizer, @unchecked Sendable {
    /// Every parameter (the model's, in the order the buckets were made for).
    public let parameters: [Tensor]
    /// The optimizer over this rank's shard: 1-D views of its runs of the parameters.
    public let local: any Optimizer
    public let parallel: DataParallel
    /// Per bucket, this rank's runs: a view of `parameters[index]`'s elements `range` (in the
    /// flattened parameter), at `at` in the rank's part of the bucket.
    private var runs: [[(view: Tensor, index: Int, range: Range<Int>, at: Int)]] = []
    /// Seconds spent all-gathering the stepped parameters, since the start.
    public private(set) var allGatherSeconds = 0.0
    /// This step's averaged gradient shards, per bucket (freed by ``zeroGrad()``).
    private var shards: [Int: Tensor] = [:]

    /// Splits `parameters` (contiguous float32, as a model's are) over `parallel`'s ranks along
    /// its buckets and makes the local optimizer over this rank's views with `makeOptimizer`,
    /// which receives the views and, for each, the parameter it is part of (for decisions taken
    /// per parameter, such as AdamW's weight decay on matrices only). Sets `parallel` to
    /// reduce-scatter.
    public init(_ parallel: DataParallel, parameters: [Tensor],
                makeOptimizer: (_ shards: [Tensor], _ owners: [Tensor]) -> any Optimizer) throws(DistributedError) {
        for p in parameters where !(p.isContiguous && p.dtype == .float32) {
            throw .badBuffer("ZeRO-1 shards contiguous float32 parameters; \(p.name ?? "a parameter") is \(p.dtype) of shape \(p.shape) strides \(p.strides)")
        }
        guard parallel.zero == nil else { throw .badBuffer("this DataParallel already feeds a ZeroRedundancyOptimizer") }
        self.parameters = parameters
        self.parallel = parallel
        parallel.prepare(parameters)
        var runs: [[(view: Tensor, index: Int, range: Range<Int>, at: Int)]] = []
        let n = parallel.communicator.size, rank = parallel.communicator.rank
        for k in parallel.layout.indices {
            // A bucket reduce-scattered is padded to a multiple of n: each rank's part is
            // ⌈count / n⌉ elements, the last rank's padding zeros.
            let count = parallel.elements(ofBucket: k).count
            let partLength = (count + n - 1) / n
            let mine = (rank * partLength)..<min(count, (rank + 1) * partLength)
            var bucketRuns: [(view: Tensor, index: Int, range: Range<Int>, at: Int)] = []
            var start = 0
            for i in parallel.layout[k] {
                let p = parameters[i]
                let lo = max(start, mine.lowerBound), hi = min(start + p.count, mine.upperBound)
                if lo < hi {
                    let view = Tensor(storage: p.storage, shape: [hi - lo], strides: [1], offset: p.offset + lo - start, dtype: .float32)
                    view.name = "\(p.name ?? "param")[\(lo - start)..<\(hi - start)]"
                    bucketRuns.append((view, i, (lo - start)..<(hi - start), lo - mine.lowerBound))
                }
                start += p.count
            }
            runs.append(bucketRuns)
        }
        self.runs = runs
        let views = runs.flatMap { $0.map(\.view) }
        local = makeOptimizer(views, runs.flatMap { $0.map { parameters[$0.index] } })
        parallel.zero = self
    }

    /// Elements of the parameters whose optimizer state this rank keeps.
    public var shardElements: Int { runs.reduce(0) { $0 + $1.reduce(0) { $0 + $1.range.count } } }

    /// The average of bucket `k`'s part this rank owns (from the reduce-scatter), as the
    /// gradients of this rank's views of that part.
    func receive(_ shard: Tensor, ofBucket k: Int) {
        shards[k] = shard
        for run in runs[k] {
            run.view.grad = Tensor(storage: shard.storage, shape: [run.range.count], strides: [1], offset: shard.offset + run.at, dtype: .float32)
        }
    }

    public var learningRate: Float {
        get { local.learningRate }
        set { local.learningRate = newValue }
    }

    /// The local optimizer's step on this rank's shard, then every bucket all-gathered into
    /// every rank's parameters.
    public func step() {
        local.step()
        do { try allGatherParameters() } catch {
            let c = parallel.communicator
            FileHandle.standardError.write(Data("rank \(c.rank) of \(c.size): ZeRO-1's all-gather of the parameters failed: \(error)\n".utf8))
            c.abort(code: 1)
        }
    }

    private func allGatherParameters() throws(DistributedError) {
        let c = parallel.communicator
        guard c.size > 1 else { return }
        let started = monotonicSeconds()
        defer { allGatherSeconds += monotonicSeconds() - started }
        for k in parallel.layout.indices {
            let padded = parallel.elements(ofBucket: k).padded
            let flat = Tensor.zeros([padded], category: .temporaries, label: "all-gather bucket")
            let mine = flat.floatPointer + c.rank * (padded / c.size)
            for run in runs[k] { (mine + run.at).update(from: run.view.floatPointer, count: run.range.count) }
            try c.allGatherInPlace(UnsafeMutableBufferPointer(start: flat.floatPointer, count: padded))
            var at = 0
            for i in parallel.layout[k] {
                let p = parameters[i]
                p.floatPointer.update(from: flat.floatPointer + at, count: p.count)
                at += p.count
            }
        }
    }

    /// Frees the parameters' gradients, the views' and the averaged shards.
    public func zeroGrad() {
        for p in parameters { p.grad = nil }
        local.zeroGrad()
        shards = [:]
    }

    /// The gradients the local step reads: this rank's shard of the averages.
    public var stepGradients: [Tensor] { local.stepGradients }

    /// Sums over the ranks (`MPI_Allreduce`), so a norm over ``stepGradients`` is the whole
    /// model's. An MPI failure ends the job, as in ``step()``.
    public func totalOverShards(_ local: Double) -> Double {
        do { return try parallel.communicator.allReduceSum(local) } catch {
            let c = parallel.communicator
            FileHandle.standardError.write(Data("rank \(c.rank) of \(c.size): ZeRO-1's sum over the ranks failed: \(error)\n".utf8))
            c.abort(code: 1)
        }
    }

    /// The local optimizer's state (this rank's shard).
    public func snapshotState() -> OptimizerSnapshot { local.snapshotState() }
    public func restoreState(_ snapshot: OptimizerSnapshot) { local.restoreState(snapshot) }
    public var unallocatedStateBytes: Int { local.unallocatedStateBytes }
}
