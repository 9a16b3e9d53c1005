import ArgumentParser
import Foundation
import Remat
#if canImport(RematDistributed)
import RematDistributed
#endif

/// `remat train --distributed`: the run's side of data parallelism (RematDistributed's
/// ``DataParallel``), or a clear error where remat was built without MPI.
final class DistributedRun {
    /// Whether this remat was built with RematDistributed (MPI's development files were found).
    static var isAvailable: Bool {
        #if canImport(RematDistributed)
        return true
        #else
        return false
        #endif
    }

    /// Why --distributed cannot run where remat was built without MPI.
    static let unavailable = "--distributed: this remat was built without MPI; install Open MPI's development files (apt-get install libopenmpi-dev openmpi-bin) and rebuild"

    #if canImport(RematDistributed)
    let parallel: DataParallel
    /// With --zero1: the optimizer state sharded over the ranks.
    let zero: Bool
    private(set) var sharded: ZeroRedundancyOptimizer?
    var rank: Int { parallel.communicator.rank }
    var size: Int { parallel.communicator.size }
    private var lastAllReduceSeconds = 0.0, lastAllGatherSeconds = 0.0

    /// Initialises MPI; every rank but 0 prints nothing from here on (its standard output goes to
    /// /dev/null; errors still reach standard error).
    init(bucketMiB: Int, zero: Bool) throws {
        parallel = try DataParallel(try Communicator.world(), bucketBytes: bucketMiB << 20)
        self.zero = zero
        if parallel.communicator.rank != 0 {
            let null = open("/dev/null", O_WRONLY)
            if null >= 0 { _ = dup2(null, STDOUT_FILENO); _ = close(null) }
        }
    }

    /// With --zero1, the spec's AdamW over this rank's shard (``ZeroRedundancyOptimizer``); nil
    /// otherwise (every rank keeps all of the state).
    func optimizer(_ model: Module, learningRate: Float) throws -> (any Optimizer)? {
        guard zero else { return nil }
        let z = try ZeroRedundancyOptimizer(parallel, parameters: model.parameters) { shards, owners in
            Trainer.specAdamW(shards, decaying: owners.map(AdamW.decays), learningRate: learningRate)
        }
        sharded = z
        return z
    }

    /// The step's loss averaged over the ranks (each rank's is its shard's mean; the shards are
    /// equal, so this is the whole batch's), for the progress line and the report.
    func global(_ r: StepReport) throws -> StepReport {
        var r = r
        r.loss = Float(try parallel.communicator.allReduceSum(Double(r.loss)) / Double(size))
        return r
    }

    /// Rank 0's weights on every rank, and the gradients averaged after each backward.
    func attach(_ trainer: Trainer, model: Module) throws {
        try parallel.broadcastParameters(model)
        parallel.prepare(trainer.optimizer.parameters)
        trainer.gradientSynchronizer = parallel
    }

    func shard(_ batch: TrainingBatch) throws -> TrainingBatch { try parallel.shard(batch) }

    /// Refuses, before any work, a global batch that does not split into equal shards.
    func requireEvenShards(_ rows: Int) throws { try parallel.requireEvenShards(rows) }

    /// The last step's gradient reduction time after backward (what backward did not hide) as a
    /// share of the step, for the progress line; with --zero1 also the parameters' all-gather.
    func stepNote(_ r: StepReport) -> String {
        let seconds = parallel.allReduceSeconds - lastAllReduceSeconds
        lastAllReduceSeconds = parallel.allReduceSeconds
        let share = { (s: Double) in String(format: "%.0f%%", 100 * s * 1000 / max(r.stepMilliseconds, 1e-9)) }
        guard let sharded else { return "  all-reduce " + share(seconds) }
        let gather = sharded.allGatherSeconds - lastAllGatherSeconds
        lastAllGatherSeconds = sharded.allGatherSeconds
        return "  reduce-scatter \(share(seconds))  all-gather \(share(gather))"
    }

    /// True on every rank when any rank wants to stop (Ctrl-C reaches ranks at different times;
    /// stopping apart would leave the others waiting in the next all-reduce).
    func agreeToStop(_ mine: Bool) throws -> Bool { try parallel.communicator.allReduceMax(mine ? 1 : 0) > 0 }

    /// Checks that every rank holds the same weights, then ends MPI.
    func finish(_ model: Module) throws -> String {
        let same = try parallel.parametersAgree(model)
        let state = try parallel.communicator.allGather([Double(MemoryLedger.shared.currentBytes(in: .optimizerState))])
        let stateLine = "; optimizer state per rank (ledger): " + state.map { mib(Int($0)) }.joined(separator: ", ")
            + (sharded.map { " (ZeRO-1: \($0.shardElements) of \(model.parameterCount) parameter elements on rank \(rank))" } ?? "")
        let line = "data parallel over \(size) ranks: parameters \(same ? "identical" : "DIFFERENT") on every rank; \(parallel.allReduces) bucket \(zero ? "reduce-scatters" : "all-reduces") of at most \(parallel.bucketBytes >> 20) MiB, \(parallel.overlappedBuckets) started during backward; \(String(format: "%.1f", parallel.allReduceSeconds)) s of \(zero ? "reduce-scatter" : "all-reduce") after backward" + (sharded.map { String(format: ", %.1f s of all-gather", $0.allGatherSeconds) } ?? "") + " (rank 0)" + stateLine
        parallel.communicator.finalize()
        return line
    }

    /// Ends the whole job after an error on this rank: the message names the rank, then MPI_Abort
    /// ends the other ranks (which would otherwise wait in the next all-reduce).
    func fail(_ error: Error) -> Never {
        FileHandle.standardError.write(Data("remat train (rank \(rank) of \(size)): \(error)\n".utf8))
        parallel.communicator.abort(code: 1)
    }
    #else
    var rank: Int { 0 }
    var size: Int { 1 }
    init(bucketMiB: Int, zero: Bool) throws { throw ValidationError(Self.unavailable) }
    func optimizer(_ model: Module, learningRate: Float) throws -> (any Optimizer)? { nil }
    func global(_ r: StepReport) throws -> StepReport { r }
    func requireEvenShards(_ rows: Int) throws {}
    func attach(_ trainer: Trainer, model: Module) throws {}
    func shard(_ batch: TrainingBatch) throws -> TrainingBatch { batch }
    func stepNote(_ r: StepReport) -> String { "" }
    func agreeToStop(_ mine: Bool) throws -> Bool { mine }
    func finish(_ model: Module) throws -> String { "" }
    func fail(_ error: Error) -> Never { fatalError("unreachable: no distributed run without MPI") }
    #endif
}
