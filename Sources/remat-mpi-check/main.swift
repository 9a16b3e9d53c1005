// Checks every collective of RematDistributed.Communicator on every rank of an MPI job:
//
//     mpirun -np 2 remat-mpi-check [--fail-rank R | --kill-rank R]
//
// Each rank prints one line, "rank R of N: ok (…)" or "rank R of N: FAIL: …", and exits 0 when
// every check passed on it. With --fail-rank R, rank R stops after the first barrier and aborts
// the job while the others wait in the next collective: the whole job must end with a non-zero
// status, not hang. With --kill-rank R, rank R kills itself (SIGKILL) there instead. Run by
// RematCLITests when MPI is installed.
import Foundation
import RematCore
import RematDistributed

func run(_ world: Communicator) throws -> [String] {
    let (rank, size) = (world.rank, world.size)
    final class Failures { var list: [String] = [] }
    let failures = Failures()
    func expect(_ ok: Bool, _ what: String) { if !ok { failures.list.append(what) } }

    try world.barrier()
    func chosen(_ flag: String) -> Bool {
        guard let i = CommandLine.arguments.firstIndex(of: flag), i + 1 < CommandLine.arguments.count else { return false }
        return Int(CommandLine.arguments[i + 1]) == rank
    }
    if chosen("--fail-rank") {
        FileHandle.standardError.write(Data("rank \(rank) of \(size): failing on purpose (--fail-rank)\n".utf8))
        world.abort(code: 3)
    }
    if chosen("--kill-rank") { kill(getpid(), SIGKILL) }   // dies without a word, as a killed rank does

    // Broadcast: every rank ends with the root's values (root 0, then the last rank).
    for root in [0, size - 1] {
        var b = (0..<1000).map { Float(rank * 1000 + $0) }
        try b.withUnsafeMutableBufferPointer { try world.broadcast($0, root: root) }
        expect(b == (0..<1000).map { Float(root * 1000 + $0) }, "broadcast from \(root)")
    }
    // All-reduce of small integers: every order of summation gives the exact sum.
    let n = 100_003
    var a = (0..<n).map { Float(($0 % 97) + rank) }
    try a.withUnsafeMutableBufferPointer { try world.allReduceSum($0) }
    let triangle = size * (size - 1) / 2
    expect(a == (0..<n).map { Float(size * ($0 % 97) + triangle) }, "allReduceSum")
    // Non-blocking all-reduces: three in flight at once, waited for in reverse order.
    var buckets = (0..<3).map { k in [Float](repeating: Float(k + 1) * Float(rank + 1), count: 50_000 * (k + 1)) }
    var requests: [Communicator.Request] = []
    for k in buckets.indices {
        requests.append(try buckets[k].withUnsafeMutableBufferPointer { try world.startAllReduceSum($0) })
    }
    for r in requests.reversed() { try r.wait() }
    try requests[0].wait()   // twice: a no-op
    let ranks = Float(size * (size + 1) / 2)
    for k in buckets.indices { expect(buckets[k].allSatisfy { $0 == Float(k + 1) * ranks }, "startAllReduceSum bucket \(k)") }
    // Tensors.
    let t = Tensor([Float](repeating: Float(rank), count: 64), shape: [8, 8])
    try world.allReduceSum(t)
    expect(t.toArray().allSatisfy { $0 == Float(triangle) }, "allReduceSum(tensor)")
    let p = Tensor([Float](repeating: Float(rank + 7), count: 10), shape: [10])
    try world.broadcast(p)
    expect(p.toArray().allSatisfy { $0 == 7 }, "broadcast(tensor)")
    // Gather and max.
    expect(try world.allGather([Double(rank), Double(rank * rank)]) == (0..<size).flatMap { [Double($0), Double($0 * $0)] }, "allGather")
    expect(try world.allReduceMax(Double(rank) * 1.5) == Double(size - 1) * 1.5, "allReduceMax")
    // Reduce-scatter: rank r receives the r-th part of the sum, two in flight at once.
    let part = 10_007
    var sources = (0..<2).map { k in (0..<(part * size)).map { Float(($0 % 89) + rank + k) } }
    var shards = [[Float]](repeating: [Float](repeating: -1, count: part), count: 2)
    var scatters: [Communicator.Request] = []
    for k in 0..<2 {
        scatters.append(try sources[k].withUnsafeMutableBufferPointer { src in
            try shards[k].withUnsafeMutableBufferPointer { try world.startReduceScatterSum(src, into: $0) }
        })
    }
    for r in scatters { try r.wait() }
    for k in 0..<2 {
        expect(shards[k] == (0..<part).map { Float(size * (((rank * part + $0) % 89) + k) + triangle) }, "startReduceScatterSum \(k)")
    }
    // All-gather in place: every rank's own part, everywhere.
    var gathered = [Float](repeating: -1, count: 3 * size)
    for j in 0..<3 { gathered[rank * 3 + j] = Float(rank * 10 + j) }
    try gathered.withUnsafeMutableBufferPointer { try world.allGatherInPlace($0) }
    expect(gathered == (0..<size).flatMap { r in (0..<3).map { Float(r * 10 + $0) } }, "allGatherInPlace")
    expect(try world.allReduceSum(Double(rank) + 0.5) == Double(triangle) + 0.5 * Double(size), "allReduceSum(Double)")
    // Bad input: a typed error before any MPI call.
    do {
        try world.broadcast(Tensor.zeros([4]), root: size)
        failures.list.append("broadcast from a root outside the job did not throw")
    } catch {
        expect(error.description.contains("root \(size) is not a rank"), "bad root's message: \(error)")
    }
    do {
        var src = [Float](repeating: 0, count: 3 * size + 1), dst = [Float](repeating: 0, count: 3)
        _ = try src.withUnsafeMutableBufferPointer { s in try dst.withUnsafeMutableBufferPointer { try world.startReduceScatterSum(s, into: $0) } }
        failures.list.append("a reduce-scatter whose shard does not fit did not throw")
    } catch {
        expect("\(error)".contains("reduce-scatter of \(3 * size + 1) elements"), "bad reduce-scatter's message: \(error)")
    }
    try world.barrier()
    return failures.list
}

do {
    let world = try Communicator.world()
    let (rank, size) = (world.rank, world.size)
    let failures = try run(world)
    world.finalize()
    if failures.isEmpty {
        print("rank \(rank) of \(size): ok (broadcast, allReduceSum, startAllReduceSum, tensors, allGather, allReduceMax, startReduceScatterSum, allGatherInPlace, typed errors)")
    } else {
        print("rank \(rank) of \(size): FAIL: \(failures.joined(separator: "; "))")
        exit(1)
    }
} catch {
    print("remat-mpi-check: \(error)")
    exit(2)
}
