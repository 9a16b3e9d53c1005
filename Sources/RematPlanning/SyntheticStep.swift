/// Random training steps for testing and benchmarking solvers: a chain of blocks, each a small
/// random DAG of ops, with the event sequences a capture would record under the executor's rules
/// (an op allocates its internal tensors and its output, then records itself; a tensor no slot
/// holds dies after its last forward consumer; the backward runs the ops in reverse, each
/// allocating its input gradient, freeing its output gradient and every saved tensor whose last
/// user it is).
extension StepGraph {
    /// A random step with `blocks` blocks of `opsPerBlock` ops each (plus a stem op before and a
    /// head op after, outside every block). Deterministic in `seed`. With `codecs`, a third of
    /// the ops are ReLUs (whose saved output relu-mask packs), every slot records its shape, and
    /// the step has codec costs of the same order as its ops' times (rates from 20 to 200 MB/s
    /// on these small tensors) and spill rates that make offloading cost about as much, so that
    /// compressing and offloading compete with recomputing.
    public static func random(seed: UInt64, blocks: Int, opsPerBlock: Int, codecs: Bool = false) -> StepGraph {
        var rng = SplitMix(seed: seed)
        var codecRng = SplitMix(seed: seed ^ 0x5EED)
        let unit = 4096
        var ops: [Op] = []
        var tensors: [TensorInfo] = []
        var slots: [Slot] = []
        var regions: [String] = []
        struct Saved { var tensor: Int; var saver: Int }
        var saved: [Saved] = []

        func newTensor(owner: Int?, role: String, units: Int, phase: Phase = .forward, category: MemoryCategory = .temporaries) -> Int {
            let id = tensors.count
            let name = owner.map { ops[$0].name + ":" + role } ?? "\(role)#\(id)"
            tensors.append(TensorInfo(id: id, name: name, owner: owner, bytes: units * unit, category: category, phase: phase,
                                      savedBy: [], consumers: []))
            return id
        }
        var internals: [Int: Int] = [:]   // op → internal tensor
        func addOp(_ name: String, kind: String, region: Int?, inputs: [Int]) -> Int {
            let i = ops.count
            ops.append(Op(name: name, kind: kind, rank: i, region: region, inputs: inputs.map { ops[$0].name },
                          seconds: Double(rng.next(in: 1...20)) * 1e-4, outputTensor: nil))
            if region != nil && rng.next(in: 0...4) == 0 {
                internals[i] = newTensor(owner: i, role: "internal", units: rng.next(in: 1...2))
            }
            ops[i].outputTensor = newTensor(owner: i, role: "output", units: rng.next(in: 1...8))
            for p in inputs { tensors[ops[p].outputTensor!].consumers.append(i) }
            // Slots: an input (as a matmul saves its operand), the output (as softmax), the internal one.
            if let p = inputs.first, rng.next(in: 0...1) == 0 { saved.append(Saved(tensor: ops[p].outputTensor!, saver: i)) }
            if rng.next(in: 0...2) == 0 { saved.append(Saved(tensor: ops[i].outputTensor!, saver: i)) }
            if let t = internals[i] { saved.append(Saved(tensor: t, saver: i)) }
            return i
        }

        var last = addOp("stem/embedding#0", kind: "embedding", region: nil, inputs: [])
        for b in 0..<blocks {
            let path = "blocks.\(b)"
            regions.append(path)
            var inBlock: [Int] = []
            for k in 0..<opsPerBlock {
                var inputs = [inBlock.isEmpty ? last : inBlock[rng.next(in: Swift.max(0, inBlock.count - 3)...(inBlock.count - 1))]]
                if inBlock.count >= 2 && rng.next(in: 0...2) == 0 {
                    let other = inBlock[rng.next(in: 0...(inBlock.count - 1))]
                    if other != inputs[0] { inputs.append(other) }
                }
                if k == opsPerBlock - 1 && inBlock.count >= 1 && !inputs.contains(last) && rng.next(in: 0...1) == 0 {
                    inputs.append(last)   // a residual connection
                }
                let kind = codecs && codecRng.next(in: 0...2) == 0 ? "relu" : "op\(k % 3)"
                inBlock.append(addOp("\(path)/op\(k)#0", kind: kind, region: b, inputs: inputs))
            }
            last = inBlock.last!
        }
        let head = addOp("head/loss#0", kind: "cross_entropy", region: nil, inputs: [last])

        for s in saved {
            let name = ops[s.saver].name + ":" + (tensors[s.tensor].owner == s.saver ? (tensors[s.tensor].name.hasSuffix(":internal") ? "internal" : "result") : "input")
            if slots.contains(where: { $0.name == name && $0.tensor == s.tensor }) { continue }
            var slot = Slot(name: name, saver: ops[s.saver].name, tensor: s.tensor)
            if codecs {
                slot.role = String(name[name.index(after: name.lastIndex(of: ":")!)...])
                slot.shape = [tensors[s.tensor].bytes / 4]
                slot.isOutput = slot.role == "result"
            }
            slots.append(slot)
            tensors[s.tensor].savedBy.append(name)
        }
        let saverRanks: [Int: [Int]] = Dictionary(grouping: slots, by: \.tensor).mapValues { group in
            group.map { s in ops.firstIndex { $0.name == s.saver }! }
        }

        // The forward, twice: all kept (slots hold what they save), and every candidate dropped.
        var graph = StepGraph(model: "Synthetic(\(seed))", inputShape: [blocks, opsPerBlock], regions: regions, ops: ops,
                              tensors: tensors, baselineBytes: 64 * unit, baselineByCategory: [.parameters: 64 * unit],
                              measuredPeakBytes: 0, stepSeconds: 0, backwardSeconds: [:], keptSequence: [],
                              backwardStartIndex: 0, droppedForward: [], slots: slots)
        let candidateTensors = Set(graph.candidates.flatMap(\.tensors))
        let opIndex = Dictionary(uniqueKeysWithValues: ops.enumerated().map { ($0.element.name, $0.offset) })
        func forward(dropping dropped: Set<Int>) -> (events: [Event], deaths: [Int: Int]) {
            var events: [Event] = []
            var deaths: [Int: Int] = [:]
            var region: Int? = nil
            func dies(_ t: Int) -> Bool { tensors[t].savedBy.isEmpty || dropped.contains(t) }
            for (i, op) in ops.enumerated() {
                if op.region != region {
                    if let r = region { events.append(.regionEnd(r)) }
                    if let r = op.region { events.append(.regionStart(r)) }
                    region = op.region
                }
                if let t = internals[i] { events.append(.allocate(t)) }
                events.append(.allocate(op.outputTensor!))
                events.append(.forwardOp(i))
                if let t = internals[i], dies(t) { events.append(.free(t)); deaths[t] = i }
                // Inputs whose last consumer this is, and an output nobody consumes (but the loss).
                for p in op.inputs {
                    let t = ops[opIndex[p]!].outputTensor!
                    if tensors[t].consumers.max() == i && dies(t) { events.append(.free(t)); deaths[t] = i }
                }
                let out = op.outputTensor!
                if i != head && tensors[out].consumers.isEmpty && dies(out) { events.append(.free(out)); deaths[out] = i }
            }
            if let r = region { events.append(.regionEnd(r)) }
            return (events, deaths)
        }
        let kept = forward(dropping: [])
        var sequence = kept.events
        graph.backwardStartIndex = sequence.count
        // The backward: the loss's output goes first; each op frees its saved tensors' last use.
        sequence.append(.free(ops[head].outputTensor!))
        var backwardSeconds: [String: Double] = [:]
        var incoming: Int? = nil
        var backwardRank = 0
        for i in stride(from: ops.count - 1, through: 0, by: -1) {
            let name = ops[i].name
            sequence.append(.backwardOp(name))
            backwardSeconds[name] = ops[i].seconds * 2
            let grad = newTensor(owner: nil, role: "grad", units: tensors[ops[i].outputTensor!].bytes / unit, phase: .backward)
            sequence.append(.allocate(grad))
            if let g = incoming { sequence.append(.free(g)) }
            incoming = grad
            for (t, savers) in saverRanks.sorted(by: { $0.key < $1.key }) {
                if savers.contains(i) {
                    if tensors[t].firstBackwardUse == nil { tensors[t].firstBackwardUse = backwardRank }
                    tensors[t].lastBackwardUse = backwardRank
                }
                if savers.min() == i { sequence.append(.free(t)) }
            }
            backwardRank += 1
        }
        if let g = incoming { sequence.append(.free(g)) }
        let dropped = forward(dropping: candidateTensors)
        for (t, rank) in dropped.deaths { tensors[t].lastForwardUse = rank }
        graph.tensors = tensors
        graph.keptSequence = sequence
        graph.droppedForward = dropped.events
        graph.backwardSeconds = backwardSeconds
        graph.stepSeconds = ops.reduce(0.0) { $0 + $1.seconds } * 3
        if codecs {
            var rates: [String: ActionCosts.CodecRate] = [:]
            for c in Codec.all where c != .none {
                rates[c.description] = .init(encode_gbps: Double(codecRng.next(in: 20...200)) / 1000, decode_gbps: Double(codecRng.next(in: 20...200)) / 1000)
            }
            // A spill store whose files cost about what the ops do (4–32 KiB in 0.04–6 ms).
            let spill = ActionCosts.SpillRate(write_gbps: Double(codecRng.next(in: 5...100)) / 1000, read_gbps: Double(codecRng.next(in: 5...100)) / 1000,
                                              latency_seconds: 1e-5, overlap: Double(codecRng.next(in: 2...8)) / 10,
                                              interference: Double(codecRng.next(in: 1...5)) / 10, bytes: unit, minimum_bytes: unit)
            graph.actionCosts = ActionCosts(codecs: rates, elements: 0, threads: 1, spill: spill)
        }
        graph.measuredPeakBytes = PlanSimulator(graph).simulate([]).peakBytes
        return graph
    }
}

/// SplitMix64: a small deterministic generator for synthetic steps.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed &+ 0x9E37_79B9_7F4A_7C15 }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func next(in range: ClosedRange<Int>) -> Int {
        range.lowerBound + Int(next() % UInt64(range.count))
    }
}
