import Foundation
import Testing
import Remat

/// Offload of saved activations to spill files: gradients bitwise those of keeping on the three
/// model families, the ledger's offloaded category, and every fault a typed error naming the
/// tensor and its file, with no spill file left behind.
@Suite struct ActivationOffloadTests {
    @Test(arguments: ["gpt", "resnet", "bert"], [CheckpointPolicy.none, .all, .saveMatmuls])
    func offloadGivesBitwiseEqualGradients(model: String, policy: CheckpointPolicy) throws {
        let reference = try ActivationCompressionTests.step(model, .none, nil)
        let store = try SpillStore()
        defer { store.close() }
        // Everything at least 1 KiB: block inputs under `all`, most saved tensors under `none`.
        let offload = ActivationOffload(to: store, where: .all, minimumBytes: 1024)
        let offloaded = try ActivationCompressionTests.step(model, policy, nil, offload: offload)
        #expect(offloaded.loss == reference.loss)
        #expect(ActivationCompressionTests.bits(offloaded.grads) == ActivationCompressionTests.bits(reference.grads), "\(model) \(policy)")
        #expect(store.counters.tensorsSpilled > 0, "\(model) \(policy): nothing was offloaded")
        // A tensor backward took from memory while the I/O thread was still writing it has its
        // file removed when that write ends: wait for it before counting files.
        store.waitForWrites()
        #expect(store.fileCount == 0, "\(model) \(policy): \(store.fileCount) spill files left")
        try store.checkFaults()
    }

    /// Over several steps (the read-ahead then follows the order the previous backward asked in),
    /// training with offload matches training without, bitwise, and the ledger comes back.
    @Test func trainingStepsWithOffloadMatchBitwise() throws {
        func losses(_ offload: Bool) throws -> [UInt32] {
            let ledger = MemoryLedger()
            return try MemoryLedger.withLedger(ledger) {
                let model = GPT(ActivationCompressionTests.gptConfig, seed: 1)
                try model.applyCheckpointing(.all)
                let store = try SpillStore(readAhead: 1)
                defer { store.close() }
                if offload { model.applyActivationOffload(ActivationOffload(to: store, minimumBytes: 1024)) }
                let optimizer = Trainer.specAdamW(model)
                var source = ArithmeticText.dataset(seed: 2)
                var out: [UInt32] = []
                for _ in 0..<4 {
                    optimizer.zeroGrad()
                    let b = source.nextBatch(batchSize: 2, length: 16)
                    let loss = model.loss(b.input, targets: b.target)
                    store.waitForWrites()   // every block input on disk: backward reads them all back
                    loss.backward()
                    try model.savedTensorPolicy?.checkAfterBackward()
                    optimizer.step()
                    out.append(loss.item.bitPattern)
                    #expect(ledger.currentBytes(in: .activations) == 0 && ledger.currentBytes(in: .offloaded) == 0)
                }
                if offload {
                    #expect(store.counters.filesWritten == 4 * 4 && store.counters.bytesRead == store.counters.bytesWritten)
                    store.waitForWrites()
                    #expect(store.fileCount == 0)
                }
                return out
            }
        }
        #expect(try losses(true) == losses(false))
    }

    /// Runs a tiny GPT's forward with every saved tensor of at least 1 KiB offloaded, lets the
    /// writes finish, applies `damage` to the spill files, runs backward and returns the fault.
    func fault(_ damage: ([String]) throws -> Void) throws -> OffloadError? {
        let store = try SpillStore()
        defer { store.close() }
        let model = GPT(ActivationCompressionTests.gptConfig, seed: 3)
        model.applyActivationOffload(ActivationOffload(to: store, where: .all, minimumBytes: 1024))
        var source = ArithmeticText.dataset(seed: 5)
        let b = source.nextBatch(batchSize: 2, length: 16)
        let loss = model.loss(b.input, targets: b.target)
        store.waitForWrites()
        #expect(store.counters.filesWritten > 0)
        let files = try FileManager.default.contentsOfDirectory(atPath: store.directory).filter { $0.hasSuffix(".spill") }
            .sorted().map { store.directory + "/" + $0 }
        try damage(files)
        loss.backward()
        #expect(store.fileCount == 0, "spill files left after a fault")
        do { try model.savedTensorPolicy?.checkAfterBackward() } catch let e as OffloadError { return e }
        return nil
    }

    @Test func aDeletedSpillFileIsATypedErrorNamingTheTensor() throws {
        let e = try fault { files in try FileManager.default.removeItem(atPath: files[0]) }
        guard case .missingFile(let tensor, let file)? = e else { Issue.record("got \(String(describing: e))"); return }
        #expect(tensor.contains(":") && file.hasSuffix(".spill"))
    }

    @Test func aTruncatedSpillFileIsATypedError() throws {
        let e = try fault { files in
            let h = FileHandle(forWritingAtPath: files[0])!
            try h.truncate(atOffset: 100)
            try h.close()
        }
        guard case .wrongSize(_, _, let expected, let found)? = e else { Issue.record("got \(String(describing: e))"); return }
        #expect(found == 100 && expected > 100)
    }

    @Test func aFlippedByteIsAChecksumMismatch() throws {
        let e = try fault { files in
            let h = FileHandle(forUpdatingAtPath: files[0])!
            try h.seek(toOffset: 17)
            let byte = try h.read(upToCount: 1)!
            try h.seek(toOffset: 17)
            try h.write(contentsOf: Data([byte[0] ^ 0x10]))
            try h.close()
        }
        guard case .checksumMismatch(let tensor, _, _, _)? = e else { Issue.record("got \(String(describing: e))"); return }
        #expect(!tensor.isEmpty)
    }

    @Test func undamagedFilesGiveNoFault() throws {
        #expect(try fault { _ in } == nil)
    }

    @Test func anUnusableDirectoryStopsBeforeWork() {
        for dir in ["/proc", "/nonexistent/remat"] {
            #expect(throws: OffloadError.self, "\(dir)") { _ = try SpillStore(in: dir) }
        }
    }

    /// A full disk: a 64 KiB tmpfs where this machine lets the tests mount one (root); the write
    /// fails, the fault names the tensor and file, and nothing is left behind.
    @Test func aFullDiskIsATypedError() throws {
        let mountPoint = NSTemporaryDirectory() + "remat-tmpfs-\(getpid())"
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: mountPoint) }
        let mount = Process()
        mount.executableURL = URL(fileURLWithPath: "/bin/mount")
        mount.arguments = ["-t", "tmpfs", "-o", "size=64k", "tmpfs", mountPoint]
        mount.standardError = FileHandle.nullDevice
        guard (try? mount.run()) != nil else { return }
        mount.waitUntilExit()
        guard mount.terminationStatus == 0 else { return }   // not allowed to mount here: the CLI test with ulimit -f covers it
        defer {
            let umount = Process()
            umount.executableURL = URL(fileURLWithPath: "/bin/umount")
            umount.arguments = [mountPoint]
            try? umount.run()
            umount.waitUntilExit()
        }
        let store = try SpillStore(in: mountPoint)
        let model = GPT(GPTConfig(contextLength: 64, layers: 2, heads: 2, modelDimension: 64, mlpHidden: 128, batchSize: 4), seed: 3)
        model.applyActivationOffload(ActivationOffload(to: store, where: .all, minimumBytes: 1024))
        var source = ArithmeticText.dataset(seed: 5)
        let b = source.nextBatch(batchSize: 4, length: 64)
        let loss = model.loss(b.input, targets: b.target)
        // Under load the idle-priority I/O thread may not have written anything yet, and a tensor
        // still in flight is served from memory: wait, so that the writes are made and fail.
        store.waitForWrites()
        loss.backward()
        var caught: OffloadError? = nil
        do { try model.savedTensorPolicy?.checkAfterBackward() } catch let e as OffloadError { caught = e }
        guard case .writeFailed(_, let file, let reason)? = caught else { Issue.record("got \(String(describing: caught))"); store.close(); return }
        #expect(file.hasPrefix(mountPoint) && reason.lowercased().contains("space"), "\(reason)")
        #expect(store.fileCount == 0)
        store.close()
        #expect(!FileManager.default.fileExists(atPath: store.directory))
    }
}
