import RematCore

/// A ledger timeline as live bytes per category after each event, downsampled for drawing with
/// the peak kept exactly.
///
/// Built from the events of ``MemoryLedger/stopTimeline()`` and each category's live bytes when
/// the recording started (``MemoryLedger/breakdown``): allocations add to their category, frees
/// take from theirs, moves take from ``MemoryEvent/source`` and add to ``MemoryEvent/category``.
/// Downsampling splits the events into equal runs and keeps, of each run, the event where the
/// compute total (every category but `offloaded`) is highest, so a chart of the samples reaches
/// the step's true peak and no sample shows more than was live.
public struct CategoryTimeline: Sendable, Hashable {
    /// The categories, in drawing order (bottom of a stack first).
    public static let order: [MemoryCategory] = [.parameters, .gradients, .optimizerState, .activations, .temporaries, .offloaded]

    public struct Sample: Sendable, Hashable {
        /// The event's position in the recording.
        public var rank: Int
        /// Seconds since the recording started (``MemoryEvent/seconds``).
        public var seconds: Double
        /// Live bytes per category after the event, in ``CategoryTimeline/order``.
        public var bytes: [Int]
        /// The compute total (all but `offloaded`) after the event.
        public var totalBytes: Int
        /// What the event was about (the storage's label, the op, or a mark's text).
        public var name: String
    }

    /// The samples, in recording order.
    public let samples: [Sample]
    /// The event where the compute total was highest (the first, if several tie), and the mark
    /// before it (say "backward"), if any.
    public let peak: Sample
    public let peakPhase: String?
    /// Events in the recording (before downsampling).
    public let eventCount: Int
    /// Events per sample (1: none dropped).
    public let stride: Int

    /// `events` from one recording; `start`: each category's live bytes when it began (missing: 0).
    /// About `maxSamples` samples (at least 2; at most `maxSamples` + 1: the start, one per run,
    /// and the last event).
    public init(events: [MemoryEvent], start: [MemoryCategory: Int] = [:], maxSamples: Int = 2000) {
        let index = Dictionary(uniqueKeysWithValues: Self.order.enumerated().map { ($1, $0) })
        var live = Self.order.map { start[$0] ?? 0 }
        let offloaded = index[.offloaded]!
        func total() -> Int { live.enumerated().reduce(0) { $0 + ($1.offset == offloaded ? 0 : $1.element) } }
        let first = Sample(rank: -1, seconds: 0, bytes: live, totalBytes: total(), name: "start")
        var all: [Sample] = []
        all.reserveCapacity(events.count)
        var peak = first
        var peakPhase: String? = nil
        var phase: String? = nil
        for e in events {
            switch e.kind {
            case .allocate: live[index[e.category]!] += e.bytes
            case .free: live[index[e.category]!] -= e.bytes
            case .move:
                if let from = e.source { live[index[from]!] -= e.bytes }
                live[index[e.category]!] += e.bytes
            case .mark: phase = e.name
            }
            let sample = Sample(rank: e.rank, seconds: e.seconds, bytes: live, totalBytes: total(), name: e.name)
            if sample.totalBytes > peak.totalBytes {
                peak = sample
                peakPhase = phase
            }
            all.append(sample)
        }
        eventCount = events.count
        self.peak = peak
        self.peakPhase = peakPhase
        let limit = max(2, maxSamples)
        guard all.count > limit else {
            samples = [first] + all
            stride = 1
            return
        }
        // Equal runs; the highest of each (the first of ties); the last event always kept, so
        // the chart ends where the step ended.
        let run = (all.count + limit - 2) / (limit - 1)
        var kept: [Sample] = [first]
        var i = 0
        while i < all.count {
            let chunk = all[i..<min(i + run, all.count)]
            kept.append(chunk.max { $0.totalBytes < $1.totalBytes || ($0.totalBytes == $1.totalBytes && $0.rank > $1.rank) }!)
            i += run
        }
        if kept.last!.rank != all.last!.rank { kept.append(all.last!) }
        samples = kept
        stride = run
    }

    /// Live bytes of `category` in each sample.
    public func series(_ category: MemoryCategory) -> [Int] {
        let i = Self.order.firstIndex(of: category)!
        return samples.map { $0.bytes[i] }
    }
}
