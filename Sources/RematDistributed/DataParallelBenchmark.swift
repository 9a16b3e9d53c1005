import RematCore
import RematNN
import RematTraining

/// Times data-parallel training steps of a workload on every rank of a job: each round runs one
/// step with the buckets' all-reduces started during backward (``DataParallel/overlapsBackward``)
/// and one with every all-reduce started after backward, in alternating order, so the two are
/// compared under the same load. The all-reduce time left after backward with no overlap is what
/// the reduction costs in this step; with overlap, what backward did not hide.
public enum DataParallelBenchmark {
    public struct Result: Codable, Sendable {
        public var model: String
        public var ranks: Int
        public var threads_per_rank: Int
        public var global_batch: Int
        public var rows_per_rank: Int
        public var gradient_bytes: Int
        public var bucket_bytes: Int
        public var buckets: Int
        public var rounds: Int
        /// Medians over the rounds (rank 0's clock; the collectives keep the ranks in step).
        public var median_step_ms_overlapped: Double
        public var median_step_ms_after_backward: Double
        /// The all-reduce time after backward: with overlap (exposed), and without (all of it).
        public var median_all_reduce_ms_overlapped: Double
        public var median_all_reduce_ms_after_backward: Double
        /// Median over the rounds of 1 − overlapped / after-backward all-reduce time: the share of
        /// the all-reduce backward hid.
        public var overlap_achieved: Double
        /// Median over the rounds of the overlapped step's time over the other's.
        public var step_ratio_overlapped: Double
        /// Buckets started during backward per overlapped step (of ``buckets``).
        public var buckets_started_during_backward: Double
        public var peak_bytes: Int
    }

    /// `warmup` untimed steps, then `rounds` rounds of two timed steps. Every rank draws the same
    /// global batches (seed 7) and trains on its shard; rank 0's weights are broadcast first.
    public static func run(_ workload: Workload, globalBatch: Int, rounds: Int, warmup: Int = 2,
                           parallel: DataParallel) throws -> Result {
        try parallel.requireEvenShards(globalBatch)
        let trainer = Trainer(model: workload.model, optimizer: workload.makeOptimizer(), gradientClip: nil)
        try parallel.broadcastParameters(workload.model)
        parallel.prepare(trainer.optimizer.parameters)
        trainer.gradientSynchronizer = parallel
        let next = workload.batches(globalBatch, 7)
        defer { parallel.overlapsBackward = true }
        /// One step: its time, the all-reduce seconds after backward, buckets started in backward.
        func step(overlapped: Bool) throws -> (ms: Double, allReduce: Double, early: Int, peak: Int) {
            parallel.overlapsBackward = overlapped
            let (seconds, early) = (parallel.allReduceSeconds, parallel.overlappedBuckets)
            let r = try trainer.checkedStep(try parallel.shard(next()))
            return (r.stepMilliseconds, parallel.allReduceSeconds - seconds, parallel.overlappedBuckets - early, r.peakBytes)
        }
        for _ in 0..<warmup { _ = try step(overlapped: true) }
        var on: [(ms: Double, allReduce: Double, early: Int, peak: Int)] = [], off = on
        for round in 0..<rounds {
            if round % 2 == 0 {
                on.append(try step(overlapped: true))
                off.append(try step(overlapped: false))
            } else {
                off.append(try step(overlapped: false))
                on.append(try step(overlapped: true))
            }
        }
        func median(_ v: [Double]) -> Double {
            let s = v.sorted()
            return s.isEmpty ? 0 : s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
        }
        let n = parallel.communicator.size
        return Result(
            model: workload.name, ranks: n, threads_per_rank: Runtime.threads, global_batch: globalBatch,
            rows_per_rank: globalBatch / n, gradient_bytes: trainer.optimizer.parameters.reduce(0) { $0 + 4 * $1.count },
            bucket_bytes: parallel.bucketBytes, buckets: parallel.layout.count, rounds: rounds,
            median_step_ms_overlapped: median(on.map(\.ms)), median_step_ms_after_backward: median(off.map(\.ms)),
            median_all_reduce_ms_overlapped: 1000 * median(on.map(\.allReduce)),
            median_all_reduce_ms_after_backward: 1000 * median(off.map(\.allReduce)),
            overlap_achieved: n == 1 ? 0 : median(zip(on, off).map { 1 - $0.allReduce / max($1.allReduce, 1e-12) }),
            step_ratio_overlapped: median(zip(on, off).map { $0.ms / $1.ms }),
            buckets_started_during_backward: median(on.map { Double($0.early) }),
            peak_bytes: on.map(\.peak).max() ?? 0)
    }
}
