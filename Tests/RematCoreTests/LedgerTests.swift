import Testing
import RematCore

/// The memory ledger: exact live and peak bytes by category, release on last reference.
@Suite struct LedgerTests {
    @Test func allocationAndReleaseAreCountedExactly() {
        let ledger = MemoryLedger(label: "test")
        MemoryLedger.withLedger(ledger) {
            do {
                let a = Tensor.zeros([10, 10])           // 400 bytes
                let b = Tensor.zeros([5], label: "b")    // 20 bytes
                #expect(ledger.currentBytes == 420)
                #expect(ledger.currentBytes(in: .temporaries) == 420)
                a.makeParameter(name: "w")
                #expect(ledger.currentBytes(in: .parameters) == 400)
                #expect(ledger.currentBytes(in: .temporaries) == 20)
                withExtendedLifetime((a, b)) {}
            }
            #expect(ledger.currentBytes == 0)
            #expect(ledger.peakBytes == 420)
            #expect(ledger.peakBytes(in: .parameters) == 400)
        }
    }

    @Test func viewsShareStorage() {
        let ledger = MemoryLedger()
        MemoryLedger.withLedger(ledger) {
            let a = Tensor.zeros([4, 8])
            let v = a.transposed().narrowed(axis: 0, start: 2, length: 3).expanded(to: [2, 3, 4])
            #expect(v.shape == [2, 3, 4])
            withExtendedLifetime((a, v)) { #expect(ledger.currentBytes == 128) }
        }
    }

    /// y = relu(x·W1)·W2 summed: hand-count every byte of the forward and the backward.
    @Test func smallGraphLiveAndPeakMatchHandCount() {
        let ledger = MemoryLedger()
        MemoryLedger.withLedger(ledger) {
            let rng = RandomGenerator(seed: 7)
            let w1 = Tensor.randn([8, 16], generator: rng).makeParameter(name: "w1")   // 512 B
            let w2 = Tensor.randn([16, 4], generator: rng).makeParameter(name: "w2")   // 256 B
            let x = Tensor.randn([2, 8], generator: rng)                               // 64 B input (temporary)
            let params = 512 + 256
            #expect(ledger.currentBytes(in: .parameters) == params)
            let baseline = ledger.currentBytes
            ledger.resetPeak()

            withExtendedLifetime((w1, w2, x)) {
                let h = matmul(x, w1)          // 128 B: saved by matmul#1 (as input a) → activation
                let y = matmul(h, w2)          // 32 B: output, not saved
                let loss = y.summed()          // 4 B
                // Saved: x (64, an input: counted as activation while saved), h (128). Parameters stay parameters.
                #expect(ledger.currentBytes(in: .activations) == 64 + 128)
                #expect(ledger.currentBytes(in: .parameters) == params)
                #expect(ledger.currentBytes == baseline + 128 + 32 + 4)
                loss.backward()
                // After backward: grads of w1 (512) and w2 (256) in the gradients category; no saved activations.
                #expect(ledger.currentBytes(in: .activations) == 0)
                #expect(ledger.currentBytes(in: .gradients) == 512 + 256)
                withExtendedLifetime((h, y, loss)) {}
            }
            // Graph dropped: only parameters, their grads and x remain.
            withExtendedLifetime((w1, w2, x)) {
                #expect(ledger.currentBytes == baseline + 512 + 256)
                w1.zeroGrad()
                w2.zeroGrad()
                #expect(ledger.currentBytes == baseline)
            }
        }
    }

    /// An N-layer MLP in inference mode: peak = parameters + input + the two largest live activations,
    /// whatever N is.
    @Test(arguments: [2, 8])
    func inferencePeakDoesNotGrowWithDepth(layers: Int) {
        let ledger = MemoryLedger()
        MemoryLedger.withLedger(ledger) {
            let rng = RandomGenerator(seed: 3)
            let width = 64, batch = 16
            let weights = (0..<layers).map { i in
                Tensor.randn([width, width], std: 0.1, generator: rng).makeParameter(name: "l\(i).weight")
            }
            let parameterBytes = layers * width * width * 4
            let x = Tensor.randn([batch, width], generator: rng)
            let act = batch * width * 4
            ledger.resetPeak()
            let y: Tensor = noGrad {
                var h = x
                for w in weights { h = matmul(h, w) }
                return h
            }
            // Live at the worst moment: params + x + the previous h + the new h (x is the first previous h).
            withExtendedLifetime((weights, x, y)) {
                #expect(ledger.peakBytes == parameterBytes + act + 2 * act)
                #expect(ledger.currentBytes == parameterBytes + 2 * act)
            }
        }
    }

    @Test func timelineRecordsNamedEvents() {
        let ledger = MemoryLedger()
        MemoryLedger.withLedger(ledger) {
            ledger.startTimeline()
            do { _ = Tensor.zeros([4], label: "probe") }
            ledger.mark("end")
            let events = ledger.stopTimeline()
            #expect(events.map(\.kind) == [.allocate, .free, .mark])
            #expect(events[0].name == "probe" && events[0].bytes == 16 && events[0].liveBytes == 16)
            #expect(events[1].liveBytes == 0)
            #expect(events.map(\.rank) == [0, 1, 2])
        }
    }

    /// Freed large blocks are reused for the same size; cached bytes are in no live figure.
    @Test func blockCacheReusesFreedBlocksWithoutCountingThem() {
        let ledger = MemoryLedger(cacheLimit: 1 << 20)
        MemoryLedger.withLedger(ledger) {
            var first: UnsafeMutableRawPointer? = nil
            do {
                let t = Tensor.zeros([1 << 15])               // 128 KiB
                first = t.storage.pointer
            }
            #expect(ledger.currentBytes == 0)
            #expect(ledger.cachedBytes == 1 << 17)
            let again = Tensor(uninitializedShape: [1 << 15])
            #expect(again.storage.pointer == first)
            #expect(ledger.cachedBytes == 0 && ledger.currentBytes == 1 << 17)
            withExtendedLifetime(again) {}
            ledger.emptyCache()
        }
    }
}
