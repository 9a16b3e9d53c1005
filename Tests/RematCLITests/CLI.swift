import Foundation

/// Runs the built `remat` as a user would: arguments, environment, a working directory, a timeout,
/// optionally a Ctrl-C after a while.
enum CLI {
    /// The `remat` built beside this test bundle.
    static let binary: String = {
        let products = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let beside = products.appendingPathComponent("remat").path
        if FileManager.default.isExecutableFile(atPath: beside) { return beside }
        // swift test's bundle may sit in a subfolder of the products directory.
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return root.appendingPathComponent(".build/release/remat").path
    }()

    /// Another executable built beside `remat` (say `remat-mpi-check`), if it was built.
    static func product(_ name: String) -> String? {
        let path = (binary as NSString).deletingLastPathComponent + "/" + name
        return FileManager.default.isExecutableFile(atPath: path) ? path : nil
    }

    /// An executable on PATH, if there is one.
    static func onPath(_ name: String) -> String? {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") {
            let path = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return nil
    }

    struct Result: CustomStringConvertible {
        var status: Int32
        /// Killed by a signal (a trap, a crash), not an exit.
        var signaled: Bool
        var timedOut: Bool
        var stdout: String
        var stderr: String
        var seconds: Double
        var description: String {
            "status \(status)\(signaled ? " (signal)" : "")\(timedOut ? " (timed out)" : ""), \(String(format: "%.1f", seconds)) s, stderr: \(stderr.prefix(600)), stdout: \(stdout.suffix(300))"
        }
    }

    /// Runs `remat` (or `executable`) with `arguments`, sending `interruptSignal` at each of the
    /// `interruptAfter` seconds (counted from the start, or from when stdout first shows
    /// `interruptAfterOutput`).
    static func run(_ arguments: [String], in directory: String, environment: [String: String] = [:],
                    timeout: Double = 120, interruptAfter: [Double] = [], interruptSignal: Int32 = SIGINT,
                    interruptAfterOutput: String? = nil, executable: String? = nil) -> Result {
        let process = Process()
        let binary = executable ?? binary
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        var env = ProcessInfo.processInfo.environment
        env["REMAT_THREADS"] = nil
        for (k, v) in environment { env[k] = v }
        process.environment = env
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        let start = Date()
        // A child gets the spawning thread's signal mask, and the test runner's worker threads
        // block most signals; start it with none blocked, as a shell would (mpirun, unlike
        // remat, does not unblock the signals it forwards).
        var none = sigset_t(), saved = sigset_t()
        sigemptyset(&none)
        pthread_sigmask(SIG_SETMASK, &none, &saved)
        let launched = Swift.Result { try process.run() }
        pthread_sigmask(SIG_SETMASK, &saved, nil)
        if case .failure(let error) = launched {
            return Result(status: -1, signaled: false, timedOut: false, stdout: "", stderr: "cannot start \(binary): \(error)", seconds: 0)
        }
        // Drain both pipes while the process runs (a full pipe would block it).
        final class Box: @unchecked Sendable {
            private var bytes = Data()
            private let lock = NSLock()
            func append(_ d: Data) { lock.lock(); bytes.append(d); lock.unlock() }
            var data: Data { lock.lock(); defer { lock.unlock() }; return bytes }
        }
        let outBox = Box(), errBox = Box()
        let group = DispatchGroup()
        for (pipe, box) in [(out, outBox), (err, errBox)] {
            group.enter()
            DispatchQueue.global().async {
                while true {
                    let chunk = pipe.fileHandleForReading.availableData
                    if chunk.isEmpty { break }
                    box.append(chunk)
                }
                group.leave()
            }
        }
        // The delays count from the start, or from when stdout first shows `interruptAfterOutput`.
        var origin = start
        if let marker = interruptAfterOutput, !interruptAfter.isEmpty {
            let needle = Data(marker.utf8)
            while process.isRunning && outBox.data.range(of: needle) == nil
                    && Date().timeIntervalSince(start) < timeout { usleep(20_000) }
            origin = Date()
        }
        for delay in interruptAfter {
            let deadline = origin.addingTimeInterval(delay)
            while Date() < deadline && process.isRunning { usleep(20_000) }
            if process.isRunning { kill(process.processIdentifier, interruptSignal) }
        }
        var timedOut = false
        while process.isRunning {
            if Date().timeIntervalSince(start) > timeout {
                timedOut = true
                process.terminate()
                usleep(200_000)
                if process.isRunning { kill(process.processIdentifier, SIGKILL) }
                break
            }
            usleep(10_000)
        }
        process.waitUntilExit()
        group.wait()
        return Result(status: process.terminationStatus, signaled: process.terminationReason == .uncaughtSignal,
                      timedOut: timedOut, stdout: String(decoding: outBox.data, as: UTF8.self),
                      stderr: String(decoding: errBox.data, as: UTF8.self), seconds: Date().timeIntervalSince(start))
    }
}

/// A scratch directory for one case, and a record of every file in it (to show nothing changed).
struct Sandbox {
    let path: String

    init() {
        path = NSTemporaryDirectory() + "remat-cli-" + UUID().uuidString
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func file(_ name: String) -> String { path + "/" + name }

    /// Every entry below the sandbox: its kind, size and a checksum of its bytes.
    func snapshot() -> [String: String] {
        var result: [String: String] = [:]
        guard let walker = FileManager.default.enumerator(atPath: path) else { return result }
        while let rel = walker.nextObject() as? String {
            let full = path + "/" + rel
            var st = stat()
            guard lstat(full, &st) == 0 else { continue }
            var entry = "mode \(st.st_mode & S_IFMT) size \(st.st_size)"
            if (st.st_mode & S_IFMT) == S_IFREG, let data = FileManager.default.contents(atPath: full) {
                var h: UInt64 = 0xcbf2_9ce4_8422_2325
                for b in data { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
                entry += " fnv \(h)"
            }
            result[rel] = entry
        }
        return result
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}
