import Foundation
import Testing

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
