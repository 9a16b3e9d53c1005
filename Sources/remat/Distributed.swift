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
    func fail(_ error: Error, command: String = "remat train") -> Never {
        FileHandle.standardError.write(Data("\(command) (rank \(rank) of \(size)): \(error)\n".utf8))
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
    func fail(_ error: Error, command: String = "remat train") -> Never { fatalError("unreachable: no distributed run without MPI") }
    #endif
}

/// `remat bench data-parallel`: data-parallel steps with and without the all-reduces overlapping
/// backward, alternated (run under `mpirun -np N`; alone, a job of one).
struct BenchDataParallel: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data-parallel",
        abstract: "Data-parallel step time and all-reduce time, the buckets started during backward against after it (under mpirun -np N).")

    @OptionGroup var engine: EngineOptions
    @OptionGroup var workloadOptions: WorkloadOptions
    @Option(parsing: .unconditional, help: "Rounds, 1 to 1000: one step with the all-reduces overlapping backward and one without, in alternating order (after 2 warm-up steps).") var rounds = 5
    @Option(parsing: .unconditional, help: "MiB of gradients per all-reduce bucket, 1 to 1024 (PyTorch DDP's default: 25).") var bucketMib = 25
    @Flag(help: "Print JSON (rank 0).") var json = false

    func validate() throws {
        try requireRange("--rounds", rounds, 1...1000)
        try requireRange("--bucket-mib", bucketMib, 1...1024)
        if !DistributedRun.isAvailable { throw ValidationError(DistributedRun.unavailable) }
    }

    func run() throws {
        engine.apply()
        #if canImport(RematDistributed)
        let job = try DistributedRun(bucketMiB: bucketMib, zero: false)
        do {
            let (workload, b) = try workloadOptions.workload()
            try job.requireEvenShards(b)
            let r = try DataParallelBenchmark.run(workload, globalBatch: b, rounds: rounds, parallel: job.parallel)
            job.parallel.communicator.finalize()
            if json { return print(try jsonString(r)) }
            print("\(r.model), global batch \(r.global_batch) over \(r.ranks) ranks (\(r.rows_per_rank) rows each), \(r.threads_per_rank) threads per rank, GEMM \(Runtime.blasDescription)")
            print("gradients \(mib(r.gradient_bytes)) in \(r.buckets) buckets of at most \(mib(r.bucket_bytes)); \(r.rounds) rounds, medians:")
            print(String(format: "  all-reduces during backward: step %.1f ms, all-reduce after backward %.1f ms (%.0f of %d buckets started during backward)",
                         r.median_step_ms_overlapped, r.median_all_reduce_ms_overlapped, r.buckets_started_during_backward, r.buckets))
            print(String(format: "  all-reduces after backward:  step %.1f ms, all-reduce after backward %.1f ms",
                         r.median_step_ms_after_backward, r.median_all_reduce_ms_after_backward))
            print(String(format: "  overlap achieved: %.0f%% of the all-reduce hidden under backward; step time ratio %.3f", 100 * r.overlap_achieved, r.step_ratio_overlapped))
            print("  peak \(mib(r.peak_bytes)) per rank")
        } catch { job.fail(error, command: "remat bench data-parallel") }
        #endif
    }
}
