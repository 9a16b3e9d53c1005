import Foundation
import Testing

/// A full disk seen from the command line, without privileges: a file size limit (`ulimit -f`)
/// fails the spill writes with EFBIG as a full disk fails them with ENOSPC. The step stops with
/// a message naming the tensor and the file, exit status 1, and no spill file or directory left.
@Suite struct OffloadCLITests {
    @Test func aFileSizeLimitStopsTheStepWithTheTensorNamed() throws {
        let dir = NSTemporaryDirectory() + "remat-offload-cli-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        // 64 KiB files at most; most of gpt-mini's saved tensors at batch 2 are larger. They add up
        // to more than the 64 MiB the store keeps in flight, so the forward waits for writes and
        // some are made (and fail) however starved the idle-priority I/O thread is.
        process.arguments = ["-c", "ulimit -f 64; exec \"$0\" bench train --model gpt-mini --batch 2 --steps 1 --policy none --offload all --offload-dir \"$1\"",
                             CLI.binary, dir]
        let err = Pipe()
        process.standardError = err
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let data = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let stderr = String(decoding: data, as: UTF8.self)
        #expect(process.terminationReason == .exit && process.terminationStatus == 1, "status \(process.terminationStatus): \(stderr)")
        #expect(stderr.contains("offloading saved tensor ") && stderr.contains(" failed writing ") && stderr.contains(".spill") && stderr.contains("File too large"), "\(stderr)")
        let left = try FileManager.default.contentsOfDirectory(atPath: dir)
        #expect(left.isEmpty, "left behind: \(left)")
    }
}
