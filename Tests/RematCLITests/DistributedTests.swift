import Foundation
import Testing
import Remat

/// RematDistributed's collectives under `mpirun -np 2` on this machine (when MPI is installed:
/// the set-up script installs Open MPI; without it these tests are skipped), and a failing or
/// killed rank ending the whole job with a non-zero status, never a hang.
@Suite(.enabled(if: MPIJob.mpirun != nil && MPIJob.check != nil, "MPI is not installed (mpirun or remat-mpi-check missing)"))
struct DistributedTests {
    static var mpirun: String? { MPIJob.mpirun }
    static var check: String? { MPIJob.check }

    /// `mpirun -np N --oversubscribe` (this machine has 2 cores; a test beside others may need
    /// more slots than are free), allowed as root (CI containers).
    static func mpi(_ ranks: Int, _ arguments: [String], timeout: Double = 60) -> CLI.Result {
        let s = Sandbox()
        defer { s.remove() }
        return CLI.run(["-np", "\(ranks)", "--oversubscribe", check!] + arguments, in: s.path,
                       environment: ["OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1", "OMPI_MCA_rmaps_base_oversubscribe": "1"],
                       timeout: timeout, executable: mpirun!)
    }

    @Test func everyCollectiveAgreesOnEveryRank() {
        let r = Self.mpi(2, [])
        #expect(r.status == 0 && !r.timedOut, "\(r)")
        for rank in 0..<2 { #expect(r.stdout.contains("rank \(rank) of 2: ok"), "\(r)") }
        #expect(!r.stdout.contains("FAIL"), "\(r)")
    }

    @Test func aJobOfOneRunsWithoutMPIRun() {
        let s = Sandbox()
        defer { s.remove() }
        let r = CLI.run([], in: s.path, timeout: 60, executable: Self.check!)
        #expect(r.status == 0 && r.stdout.contains("rank 0 of 1: ok"), "\(r)")
    }

    /// A rank that fails aborts the job: the other rank, blocked in a collective, is ended too,
    /// and the job's status is the failing rank's code, with its message.
    @Test(arguments: [0, 1]) func aFailingRankEndsTheJob(rank: Int) {
        let r = Self.mpi(2, ["--fail-rank", "\(rank)"])
        #expect(!r.timedOut, "the job hung: \(r)")
        #expect(r.status == 3, "\(r)")
        #expect(r.stderr.contains("rank \(rank) of 2: failing on purpose"), "\(r)")
    }

    /// `mpirun -np 2 remat train --distributed` in `dir`: 10 steps of gpt-mini on a global batch
    /// of 4 (2 rows per rank), one thread per rank, the weights saved by rank 0 to `dir/save`.
    static func train(_ dir: Sandbox, _ save: String, _ extra: [String] = []) -> CLI.Result {
        CLI.run(["-np", "2", "--oversubscribe", CLI.binary, "train", "--distributed", "--steps", "10", "--batch", "4", "--threads", "1",
                 "--save", save] + extra, in: dir.path,
                environment: ["OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1", "OMPI_MCA_rmaps_base_oversubscribe": "1"],
                timeout: 300, executable: mpirun!)
    }

    static func weights(_ path: String) throws -> [String: [Float]] {
        try SafetensorsFile.read(path: path).tensors.mapValues { $0.toArray() }
    }

    /// Two ranks of data-parallel training end with the same parameters on both ranks and match
    /// one process trained on the whole batch: every tensor within 1e-5 relative (L2), the whole
    /// model within 1e-6. They differ only in the order of the sums: rank 0's two rows and rank
    /// 1's are each summed inside their rank, then the ranks' gradients are added by MPI, where one
    /// process sums all four rows in one pass; AdamW then magnifies rounding where a gradient is
    /// nearly zero. The attention's key bias has gradient exactly zero in exact arithmetic (softmax
    /// ignores a constant added to every score of a row), so its computed gradient is rounding
    /// alone: both runs must keep it below 1e-5 in magnitude, whatever they do with the noise.
    @Test func twoRanksMatchOneProcessOnTheWholeBatch() throws {
        let s = Sandbox()
        defer { s.remove() }
        let r = Self.train(s, "dp")
        #expect(r.status == 0 && !r.timedOut, "\(r)")
        #expect(r.stdout.contains("parameters identical on every rank"), "\(r)")
        #expect(r.stdout.contains("all-reduce"), "the progress line shows the all-reduce share: \(r)")
        let one = CLI.run(["train", "--steps", "10", "--batch", "4", "--threads", "1", "--save", "one"], in: s.path, timeout: 300)
        #expect(one.status == 0, "\(one)")
        let a = try Self.weights(s.file("dp/model.safetensors")), b = try Self.weights(s.file("one/model.safetensors"))
        #expect(a.keys.sorted() == b.keys.sorted())
        var diff2 = 0.0, norm2 = 0.0
        for (name, x) in a {
            let y = try #require(b[name])
            var parts: [(String, ArraySlice<Float>, ArraySlice<Float>)] = [(name, x[...], y[...])]
            if name.hasSuffix("attn.qkv.bias") {
                let n = x.count / 3
                #expect(x[n..<2 * n].allSatisfy { abs($0) < 1e-5 } && y[n..<2 * n].allSatisfy { abs($0) < 1e-5 }, "\(name): key bias grew")
                parts = [(name + " (q)", x[0..<n], y[0..<n]), (name + " (v)", x[2 * n..<3 * n], y[2 * n..<3 * n])]
            }
            for (label, u, v) in parts {
                let d = zip(u, v).reduce(0.0) { $0 + Double($1.0 - $1.1) * Double($1.0 - $1.1) }
                let n = v.reduce(0.0) { $0 + Double($1) * Double($1) }
                diff2 += d
                norm2 += n
                #expect(d.squareRoot() <= 1e-5 * n.squareRoot(), "\(label): relative difference \(d.squareRoot() / n.squareRoot())")
            }
        }
        #expect(diff2.squareRoot() <= 1e-6 * norm2.squareRoot(), "whole model: \(diff2.squareRoot() / norm2.squareRoot())")
    }

    /// Checkpointing every block, a memory plan made by each rank for its own shard, small
    /// buckets reduced while backward runs, and ZeRO-1 (alone, and with a plan and 1 MiB buckets,
    /// whose parts of a bucket cut parameters apart) give bitwise the parameters of plain
    /// data-parallel training (recompute and lossless plans are exact; two ranks' sum does not
    /// depend on how the gradients are bucketed or whether they are all-reduced or
    /// reduce-scattered; AdamW is element-wise). ZeRO-1 halves each rank's optimizer state.
    @Test func checkpointingBudgetsAndZeROPerRankAreBitwise() throws {
        let s = Sandbox()
        defer { s.remove() }
        let plain = Self.train(s, "none")
        #expect(plain.status == 0, "\(plain)")
        let reference = try Self.weights(s.file("none/model.safetensors"))
        let plainState = try #require(Self.optimizerStatePerRank(plain.stdout), "\(plain)")
        #expect(plainState.count == 2 && plainState[0] > 30 && plainState[0] == plainState[1], "\(plain)")
        for (save, extra) in [("all", ["--policy", "all"]), ("budget", ["--budget", "0.7"]), ("buckets", ["--bucket-mib", "1"]),
                              ("zero", ["--zero1"]), ("zero-budget", ["--zero1", "--budget", "0.7", "--bucket-mib", "1"])] {
            let r = Self.train(s, save, extra)
            #expect(r.status == 0 && r.stdout.contains("parameters identical on every rank"), "\(r)")
            // 1 MiB buckets: many all-reduces, started during backward as their gradients become final.
            if extra.contains("--bucket-mib") { #expect(r.stdout.contains("of at most 1 MiB") && !r.stdout.contains(" 0 started during backward"), "\(r)") }
            if extra.contains("--zero1") {
                #expect(r.stdout.contains("reduce-scatters") && r.stdout.contains("all-gather"), "\(r)")
                // gpt-mini's 4,870,144 elements: 2,435,072 each, and the ledger's state per rank halved.
                #expect(r.stdout.contains("ZeRO-1: 2435072 of 4870144 parameter elements on rank 0"), "\(r)")
                let state = try #require(Self.optimizerStatePerRank(r.stdout), "\(r)")
                #expect(state.count == 2 && state.allSatisfy { abs($0 / plainState[0] - 0.5) < 0.01 }, "\(state) MiB against \(plainState)")
            }
            let w = try Self.weights(s.file("\(save)/model.safetensors"))
            for (name, x) in reference {
                #expect(w[name]?.map(\.bitPattern) == x.map(\.bitPattern), "\(save): \(name) differs")
            }
        }
    }

    /// The MiB of optimizer state on each rank, from a distributed run's last line.
    static func optimizerStatePerRank(_ stdout: String) -> [Double]? {
        guard let line = stdout.split(separator: "\n").last(where: { $0.contains("optimizer state per rank (ledger): ") }) else { return nil }
        let list = line.components(separatedBy: "optimizer state per rank (ledger): ")[1].components(separatedBy: " (")[0]
        let values = list.components(separatedBy: ", ").map { Double($0.replacingOccurrences(of: " MiB", with: "")) }
        return values.contains(nil) ? nil : values.map { $0! }
    }

    /// SIGUSR1 to mpirun (which passes it on to every rank; Ctrl-C would make it kill them)
    /// stops every rank after the same step: the weights are saved whole, identical on the ranks,
    /// and the job's status says it was interrupted.
    @Test func sigusr1StopsTheJobCleanly() throws {
        let s = Sandbox()
        defer { s.remove() }
        let r = CLI.run(["-np", "2", "--oversubscribe", CLI.binary, "train", "--distributed", "--steps", "100000", "--batch", "4",
                         "--threads", "1", "--save", "out"], in: s.path,
                        environment: ["OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1", "OMPI_MCA_rmaps_base_oversubscribe": "1"],
                        timeout: 120, interruptAfter: [0.5], interruptSignal: SIGUSR1, interruptAfterOutput: "/100000  loss",
                        executable: Self.mpirun!)
        #expect(!r.timedOut && r.status == 130, "\(r)")
        #expect(r.stdout.contains("interrupted after step") && r.stdout.contains("parameters identical on every rank"), "\(r)")
        let weights = try SafetensorsFile.read(path: s.file("out/model.safetensors"))
        #expect(weights.tensors.count == GPT(.gptMini).namedTensors.count)
    }

    /// A global batch that does not split evenly is refused before any step; the job ends non-zero.
    @Test func aBatchThatDoesNotSplitIsRefused() {
        let s = Sandbox()
        defer { s.remove() }
        let r = CLI.run(["-np", "2", "--oversubscribe", CLI.binary, "train", "--distributed", "--steps", "1", "--batch", "3"], in: s.path,
                        environment: ["OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"], timeout: 120, executable: Self.mpirun!)
        #expect(!r.timedOut && r.status != 0, "\(r)")
        #expect(r.stderr.contains("does not split into 2 equal shards"), "\(r)")
    }

    /// A rank killed by a signal ends the job with a non-zero status within the timeout.
    @Test func aKilledRankEndsTheJob() {
        let r = Self.mpi(2, ["--kill-rank", "1"])
        #expect(!r.timedOut, "the job hung: \(r)")
        #expect(r.status != 0, "\(r)")
    }
}

/// What the distributed tests run: Open MPI's launcher and the collectives' check.
enum MPIJob {
    static let mpirun = CLI.onPath("mpirun")
    static let check = CLI.product("remat-mpi-check")
}
