import Foundation

/// Profile files of a captured step, after the seed's profiler (`node_stats.csv`,
/// `activation_stats.csv`, with its column names first and ours after), plus what planning offline
/// needs to reproduce the simulator exactly: `saved_slots.csv`, `memory_events.csv` (the step's
/// allocation timeline and the dropped forward) and `step.json` (model, shape, blocks, baseline).
///
/// One naming in every file: ops are `module.path/op#k`, activations `owner-op:role`; ranks are
/// execution ranks over the whole step (forward ops `0..<F`, then backward nodes `F...`).
/// Reading the files back gives the same ``StepGraph``, so `remat plan --stats DIR` plans exactly
/// as planning right after the capture would.
extension StepGraph {
    public static let statsFiles = ["step.json", "node_stats.csv", "activation_stats.csv", "saved_slots.csv", "memory_events.csv"]

    private struct StepMeta: Codable {
        var format = "remat-step-stats"
        var version = 2
        var model: String
        var input_shape: [Int]
        var blocks: [String]
        var baseline_bytes: Int
        var baseline_by_category: [String: Int]
        var measured_peak_bytes: Int
        var step_seconds: Double
        var forward_ops: Int
        /// Version 2: the bytes and FNV-1a 64 checksum of each of the other files, so a folder
        /// that mixes files of two profiles is refused.
        var files: [String: FileStamp]? = nil
        /// What compressing costs on the capturing machine (absent in older profiles).
        var action_costs: ActionCosts? = nil
    }

    private struct FileStamp: Codable, Equatable {
        var bytes: Int
        var fnv1a64: String
        init(_ data: [UInt8]) {
            bytes = data.count
            var h: UInt64 = 0xcbf2_9ce4_8422_2325
            for b in data { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
            fnv1a64 = String(h, radix: 16)
        }
    }

    /// Largest byte count or time a profile file may hold (1 PiB, 10⁶ s): beyond any real step,
    /// and far from overflowing the simulator's sums.
    static let maximumBytes = 1 << 50
    static let maximumSeconds = 1e6

    /// The backward nodes in execution order (names).
    public var backwardOrder: [String] {
        keptSequence.compactMap { if case .backwardOp(let n) = $0 { return n }; return nil }
    }

    /// Writes the profile files into `directory`. A new directory appears whole (the files are
    /// written into a temporary one next to it, which is then renamed); into an existing one the
    /// CSV files are written one by one (each atomically) and `step.json` last, with the size and
    /// checksum of each, so that ``readStats(from:)`` refuses a folder a failure left half old,
    /// half new.
    public func writeStats(to directory: String) throws {
        try AtomicFile.writeDirectory(directory, files: statsFileContents())
    }

    /// The profile files' bytes, `step.json` (which stamps the others) last.
    private func statsFileContents() throws -> [(name: String, bytes: [UInt8])] {
        var files: [(name: String, bytes: [UInt8])] = []
        let f = ops.count
        let backward = backwardOrder
        let opByName = Dictionary(ops.enumerated().map { ($0.element.name, $0.offset) }, uniquingKeysWith: { a, _ in a })

        var stamps: [String: FileStamp] = [:]
        func write(_ table: CSVTable, _ name: String) throws {
            let bytes = Array(table.text.utf8)
            stamps[name] = FileStamp(bytes)
            files.append((name, bytes))
        }

        // node_stats.csv: forward ops, then backward nodes, with the live-bytes peak of each.
        let (forwardPeak, backwardPeak) = nodePeaks()
        var nodes = CSVTable(header: ["rank", "node_name", "node_type", "gtype", "avg_run_time_s", "avg_peak_mem_bytes",
                                      "kind", "block", "inputs", "output_tensor_id"])
        for op in ops {
            let out = op.outputTensor
            let type = out.map { tensors[$0].savedBy.isEmpty ? "temporary" : "activation" } ?? "view"
            nodes.rows.append([String(op.rank), op.name, type, "forward", "\(op.seconds)", String(forwardPeak[op.rank]),
                               op.kind, op.region.map { regions[$0] } ?? "", op.inputs.joined(separator: ";"),
                               out.map(String.init) ?? ""])
        }
        for (k, name) in backward.enumerated() {
            let kind = opByName[name].map { ops[$0].kind } ?? ""
            nodes.rows.append([String(f + k), name, "gradient", "backward", backwardSeconds[name].map { "\($0)" } ?? "",
                               String(backwardPeak[k]), kind, "", "", ""])
        }
        let listed = Set(backward)
        for (name, s) in backwardSeconds.sorted(by: { $0.key < $1.key }) where !listed.contains(name) {
            nodes.rows.append(["", name, "gradient", "backward", "\(s)", "", "", "", "", ""])
        }
        try write(nodes, "node_stats.csv")

        // activation_stats.csv
        let sim = PlanSimulator(self)
        var candidateOf: [Int: Int] = [:]
        for (c, cand) in sim.candidates.enumerated() { for t in cand.tensors { candidateOf[t] = c } }
        let backwardTime = backward.map { backwardSeconds[$0] ?? 0 }
        var acts = CSVTable(header: ["activation_name", "creation_rank", "last_fw_use_rank", "first_bw_use_rank", "last_bw_use_rank",
                                     "avg_mem_size_bytes", "inactive_time_s", "recomp_time_s", "recomp_memory_bytes", "recompute_ratio",
                                     "tensor_id", "category", "phase", "owner_op", "preexisting", "saved_by", "consumers", "plannable"])
        func opt(_ v: Int?) -> String { v.map(String.init) ?? "" }
        for t in tensors {
            var inactive = "", recompTime = "", recompBytes = "", ratio = ""
            if let o = t.owner, let first = t.firstBackwardUse {
                let lastForward = t.lastForwardUse ?? o
                let s = ops[(lastForward + 1)...].reduce(0.0) { $0 + $1.seconds } + backwardTime[..<first].reduce(0, +)
                inactive = "\(s)"
            }
            if let c = candidateOf[t.id] {
                let path = sim.recomputePath(of: c)
                let time = path.reduce(0.0) { $0 + ops[$1].seconds }
                recompTime = "\(time)"
                recompBytes = String(path.reduce(0) { $0 + (ops[$1].outputTensor.map { tensors[$0].bytes } ?? 0) })
                ratio = time > 0 ? "\(Double(t.bytes) / time)" : "inf"
            }
            acts.rows.append([t.name, opt(t.owner.map { ops[$0].rank }), opt(t.lastForwardUse), opt(t.firstBackwardUse.map { f + $0 }),
                              opt(t.lastBackwardUse.map { f + $0 }), String(t.bytes), inactive, recompTime, recompBytes, ratio,
                              String(t.id), t.category.description, t.phase.rawValue, t.owner.map { ops[$0].name } ?? "",
                              t.preexisting ? "true" : "false", t.savedBy.joined(separator: ";"),
                              t.consumers.map(String.init).joined(separator: ";"), candidateOf[t.id] != nil ? "true" : "false"])
        }
        try write(acts, "activation_stats.csv")

        var slotTable = CSVTable(header: ["slot_name", "saver", "tensor_id", "role", "shape", "is_output", "dtype", "value_codecs", "offset"])
        for s in slots {
            slotTable.rows.append([s.name, s.saver, String(s.tensor), s.role, s.shape.map(String.init).joined(separator: "x"),
                                   s.isOutput ? "true" : "false", s.dtype.rawValue,
                                   s.valueCodecs.map(\.description).sorted().joined(separator: ";"), String(s.offset)])
        }
        try write(slotTable, "saved_slots.csv")

        var events = CSVTable(header: ["sequence", "index", "event", "argument"])
        func add(_ seq: String, _ list: [Event], backwardAt: Int?) {
            var i = 0
            for (k, e) in list.enumerated() {
                if k == backwardAt { events.rows.append([seq, String(i), "backward_start", ""]); i += 1 }
                let (kind, arg): (String, String)
                switch e {
                case .allocate(let t): (kind, arg) = ("allocate", String(t))
                case .free(let t): (kind, arg) = ("free", String(t))
                case .forwardOp(let o): (kind, arg) = ("forward_op", ops[o].name)
                case .backwardOp(let n): (kind, arg) = ("backward_op", n)
                case .regionStart(let r): (kind, arg) = ("block_start", regions[r])
                case .regionEnd(let r): (kind, arg) = ("block_end", regions[r])
                }
                events.rows.append([seq, String(i), kind, arg])
                i += 1
            }
            if backwardAt == list.count { events.rows.append([seq, String(i), "backward_start", ""]) }
        }
        add("step", keptSequence, backwardAt: backwardStartIndex)
        add("dropped_forward", droppedForward, backwardAt: nil)
        try write(events, "memory_events.csv")

        // step.json last, stamping the files it belongs with.
        let meta = StepMeta(model: model, input_shape: inputShape, blocks: regions, baseline_bytes: baselineBytes,
                            baseline_by_category: Dictionary(uniqueKeysWithValues: baselineByCategory.map { ($0.key.description, $0.value) }),
                            measured_peak_bytes: measuredPeakBytes, step_seconds: stepSeconds, forward_ops: f, files: stamps,
                            action_costs: actionCosts)
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        let json = try enc.encode(meta)
        files.append(("step.json", Array(json)))
        return files
    }

    /// Peak live bytes while each forward op and each backward node runs, from the unplanned step.
    /// A forward op owns the allocations made since the previous op recorded itself; a backward
    /// node owns the events from its start to the next node's.
    func nodePeaks() -> (forward: [Int], backward: [Int]) {
        var forward = [Int](repeating: 0, count: ops.count)
        var backward = [Int](repeating: 0, count: backwardOrder.count)
        var live = baselineBytes
        var sinceLastOp = live   // forward: peak since the previous op recorded itself
        var node = -1            // backward: the node running
        for (k, e) in keptSequence.enumerated() {
            let inBackward = k >= backwardStartIndex
            switch e {
            case .allocate(let t):
                live += tensors[t].bytes
                if inBackward { if node >= 0 { backward[node] = Swift.max(backward[node], live) } } else { sinceLastOp = Swift.max(sinceLastOp, live) }
            case .free(let t):
                live -= tensors[t].bytes
            case .forwardOp(let o):
                forward[o] = sinceLastOp
                sinceLastOp = live
            case .backwardOp:
                node += 1
                backward[node] = live
            default: break
            }
        }
        return (forward, backward)
    }

    /// Reads the files ``writeStats(to:)`` wrote.
    /// - Throws: ``PlanningError/badStats(file:reason:)`` naming the file, line and field.
    public static func readStats(from directory: String) throws -> StepGraph {
        let dir = directory.hasSuffix("/") ? directory : directory + "/"
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDir), isDir.boolValue else {
            throw PlanningError.badStats(file: directory, reason: "no such directory (write one with `remat profile --out DIR`)")
        }
        for f in statsFiles where !FileManager.default.fileExists(atPath: dir + f) {
            throw PlanningError.badStats(file: dir + f, reason: "missing (the directory needs \(statsFiles.joined(separator: ", ")))")
        }
        let meta: StepMeta
        do {
            let data = try RegularFile.contents(atPath: dir + "step.json")
            meta = try JSONDecoder().decode(StepMeta.self, from: data)
        } catch let e as RegularFile.Error {
            throw PlanningError.badStats(file: dir + "step.json", reason: e.reason)
        } catch {
            throw PlanningError.badStats(file: dir + "step.json", reason: "not a Remat step description (\(describeJSONError(error)))")
        }
        guard meta.format == "remat-step-stats", meta.version == 1 || meta.version == 2 else {
            throw PlanningError.badStats(file: dir + "step.json", reason: "format \(meta.format) version \(meta.version); this Remat reads remat-step-stats versions 1 and 2")
        }
        func check(_ what: String, _ ok: Bool) throws {
            if !ok { throw PlanningError.badStats(file: dir + "step.json", reason: what) }
        }
        try check("input_shape \(meta.input_shape) must list 1 to 8 positive sizes", (1...8).contains(meta.input_shape.count) && meta.input_shape.allSatisfy { (1...(1 << 30)).contains($0) })
        try check("baseline_bytes \(meta.baseline_bytes) must be from 0 to \(maximumBytes)", (0...maximumBytes).contains(meta.baseline_bytes))
        try check("measured_peak_bytes \(meta.measured_peak_bytes) must be from 0 to \(maximumBytes)", (0...maximumBytes).contains(meta.measured_peak_bytes))
        try check("every baseline_by_category value must be from 0 to \(maximumBytes)", meta.baseline_by_category.values.allSatisfy { (0...maximumBytes).contains($0) })
        try check("step_seconds \(meta.step_seconds) must be a time from 0 to \(maximumSeconds) s", meta.step_seconds.isFinite && (0...maximumSeconds).contains(meta.step_seconds))
        try check("forward_ops \(meta.forward_ops) must be from 0 to 10000000", (0...10_000_000).contains(meta.forward_ops))
        if let costs = meta.action_costs {
            for (name, r) in costs.codecs.sorted(by: { $0.key < $1.key }) {
                try check("action_costs: codec '\(name)' is not a codec", (try? Codec.parse(name)) != nil)
                try check("action_costs: \(name)'s rates must be from 0.001 to 10000 GB/s", [r.encode_gbps, r.decode_gbps].allSatisfy { $0.isFinite && (0.001...10_000).contains($0) })
            }
            if let s = costs.spill {
                try check("action_costs.spill: write_gbps and read_gbps must be from 0.001 to 10000 GB/s", [s.write_gbps, s.read_gbps].allSatisfy { $0.isFinite && (0.001...10_000).contains($0) })
                try check("action_costs.spill: latency_seconds \(s.latency_seconds) must be from 0 to 10 s", s.latency_seconds.isFinite && (0...10).contains(s.latency_seconds))
                try check("action_costs.spill: overlap \(s.overlap) and interference \(s.interference) must be from 0 to 1", [s.overlap, s.interference].allSatisfy { $0.isFinite && (0...1).contains($0) })
                try check("action_costs.spill: max_bytes_in_flight, read_ahead and minimum_bytes must be positive (at most \(maximumBytes))",
                          [s.max_bytes_in_flight, s.read_ahead, s.minimum_bytes, s.bytes].allSatisfy { (1...maximumBytes).contains($0) })
            }
        }
        var texts: [String: String] = [:]
        for name in statsFiles.dropFirst() {
            let data: [UInt8]
            do { data = Array(try RegularFile.contents(atPath: dir + name)) } catch let e as RegularFile.Error {
                throw PlanningError.badStats(file: dir + name, reason: e.reason)
            }
            if let stamp = meta.files?[name], stamp != FileStamp(data) {
                throw PlanningError.badStats(file: dir + name, reason: "it is not the file step.json was written with (\(data.count) bytes, step.json records \(stamp.bytes) and another checksum): the folder mixes two profiles; run remat profile again")
            }
            guard let text = String(validating: data, as: UTF8.self) else {
                throw PlanningError.badStats(file: dir + name, reason: "not UTF-8 text")
            }
            texts[name] = text
        }
        func table(_ name: String) throws -> (CSVTable, String) {
            do { return (try CSVTable.parse(texts[name]!, file: dir + name), dir + name) } catch let e as CSVError {
                throw PlanningError.badStats(file: e.file, reason: "line \(e.line): \(e.reason)")
            }
        }
        struct Reader {
            let table: CSVTable
            let file: String
            let row: Int
            func text(_ col: String) throws -> String {
                do { return table.rows[row][try table.column(col, file: file)] } catch let e as CSVError {
                    throw PlanningError.badStats(file: file, reason: e.reason)
                }
            }
            func fail(_ what: String) -> PlanningError { .badStats(file: file, reason: "line \(row + 2): \(what)") }
            func int(_ col: String) throws -> Int {
                let s = try text(col)
                guard let v = Int(s) else { throw fail("\(col) '\(s)' is not an integer") }
                return v
            }
            func optInt(_ col: String) throws -> Int? { try text(col).isEmpty ? nil : try int(col) }
            /// An integer from `range` (ranks, ids, sizes: a bound keeps every later sum from overflowing).
            func int(_ col: String, in range: ClosedRange<Int>) throws -> Int {
                let v = try int(col)
                guard range.contains(v) else { throw fail("\(col) \(v) is not from \(range.lowerBound) to \(range.upperBound)") }
                return v
            }
            func optInt(_ col: String, in range: ClosedRange<Int>) throws -> Int? { try text(col).isEmpty ? nil : try int(col, in: range) }
            func double(_ col: String) throws -> Double {
                let s = try text(col)
                guard let v = Double(s), v.isFinite, v >= 0, v <= StepGraph.maximumSeconds else {
                    throw fail("\(col) '\(s)' is not a time in seconds (0 to \(StepGraph.maximumSeconds))")
                }
                return v
            }
            func list(_ col: String) throws -> [String] {
                let s = try text(col)
                return s.isEmpty ? [] : s.split(separator: ";").map(String.init)
            }
        }
        let f = meta.forward_ops
        let regionIndex = Dictionary(meta.blocks.enumerated().map { ($0.element, $0.offset) }, uniquingKeysWith: { a, _ in a })
        var byCategory: [MemoryCategory: Int] = [:]
        for (k, v) in meta.baseline_by_category {
            guard let c = MemoryCategory.allCases.first(where: { $0.description == k }) else {
                throw PlanningError.badStats(file: dir + "step.json", reason: "unknown memory category '\(k)'")
            }
            byCategory[c] = v
        }

        // Ops and backward times.
        let (nodes, nodeFile) = try table("node_stats.csv")
        var ops: [Op] = []
        var backwardSeconds: [String: Double] = [:]
        for i in nodes.rows.indices {
            let r = Reader(table: nodes, file: nodeFile, row: i)
            switch try r.text("gtype") {
            case "forward":
                let rank = try r.int("rank")
                guard rank == ops.count else { throw r.fail("forward rank \(rank), expected \(ops.count) (forward rows in rank order)") }
                let block = try r.text("block")
                var region: Int? = nil
                if !block.isEmpty {
                    guard let ri = regionIndex[block] else { throw r.fail("block '\(block)' is not in step.json's blocks") }
                    region = ri
                }
                ops.append(Op(name: try r.text("node_name"), kind: try r.text("kind"), rank: rank, region: region,
                              inputs: try r.list("inputs"), seconds: try r.double("avg_run_time_s"),
                              outputTensor: try r.optInt("output_tensor_id")))
            case "backward":
                if !(try r.text("avg_run_time_s")).isEmpty { backwardSeconds[try r.text("node_name")] = try r.double("avg_run_time_s") }
            case let g:
                throw r.fail("gtype '\(g)' (expected forward or backward)")
            }
        }
        guard ops.count == f else {
            throw PlanningError.badStats(file: nodeFile, reason: "\(ops.count) forward rows, step.json says \(f)")
        }
        let opIndex = Dictionary(ops.enumerated().map { ($0.element.name, $0.offset) }, uniquingKeysWith: { a, _ in a })
        guard opIndex.count == ops.count else { throw PlanningError.badStats(file: nodeFile, reason: "duplicate forward op names") }

        // Tensors.
        let (acts, actFile) = try table("activation_stats.csv")
        var tensors: [TensorInfo] = []
        for i in acts.rows.indices {
            let r = Reader(table: acts, file: actFile, row: i)
            let id = try r.int("tensor_id")
            guard id == tensors.count else { throw r.fail("tensor_id \(id), expected \(tensors.count) (rows in id order)") }
            let ownerName = try r.text("owner_op")
            var owner: Int? = nil
            if !ownerName.isEmpty {
                guard let o = opIndex[ownerName] else { throw r.fail("owner_op '\(ownerName)' is not a forward op of node_stats.csv") }
                owner = o
            }
            let catText = try r.text("category")
            guard let category = MemoryCategory.allCases.first(where: { $0.description == catText }) else {
                throw r.fail("unknown category '\(catText)'")
            }
            let phaseText = try r.text("phase")
            guard let phase = Phase(rawValue: phaseText) else { throw r.fail("unknown phase '\(phaseText)'") }
            let bytes = try r.int("avg_mem_size_bytes", in: 0...maximumBytes)
            let consumers = try r.list("consumers").map { s -> Int in
                guard let v = Int(s), v >= 0, v < f else { throw r.fail("consumer rank '\(s)' is not a forward rank") }
                return v
            }
            let preexisting: Bool
            switch try r.text("preexisting") {
            case "true": preexisting = true
            case "false": preexisting = false
            case let s: throw r.fail("preexisting '\(s)' (expected true or false)")
            }
            var t = TensorInfo(id: id, name: try r.text("activation_name"), owner: owner, bytes: bytes, category: category,
                               phase: phase, savedBy: try r.list("saved_by"), consumers: consumers,
                               lastForwardUse: try r.optInt("last_fw_use_rank", in: -1...Swift.max(f - 1, -1)),
                               firstBackwardUse: try r.optInt("first_bw_use_rank", in: f...(f + 10_000_000)).map { $0 - f },
                               lastBackwardUse: try r.optInt("last_bw_use_rank", in: f...(f + 10_000_000)).map { $0 - f })
            t.preexisting = preexisting
            tensors.append(t)
        }
        for op in ops {
            if let t = op.outputTensor, t < 0 || t >= tensors.count {
                throw PlanningError.badStats(file: nodeFile, reason: "op \(op.name): output_tensor_id \(t) is not in activation_stats.csv")
            }
            for p in op.inputs where opIndex[p] == nil {
                throw PlanningError.badStats(file: nodeFile, reason: "op \(op.name): input '\(p)' is not a forward op")
            }
        }

        let (slotTable, slotFile) = try table("saved_slots.csv")
        var slots: [Slot] = []
        for i in slotTable.rows.indices {
            let r = Reader(table: slotTable, file: slotFile, row: i)
            let t = try r.int("tensor_id")
            guard t >= 0, t < tensors.count else { throw r.fail("tensor_id \(t) is not in activation_stats.csv") }
            var slot = Slot(name: try r.text("slot_name"), saver: try r.text("saver"), tensor: t)
            if slotTable.header.contains("shape") {   // written since codecs are planned
                slot.role = try r.text("role")
                let shapeText = try r.text("shape")
                let dims = shapeText.isEmpty ? [] : shapeText.split(separator: "x", omittingEmptySubsequences: false).map { Int($0) }
                guard dims.allSatisfy({ $0 != nil && (0...(1 << 40)).contains($0!) }), dims.count <= 8 else {
                    throw r.fail("shape '\(shapeText)' is not up to 8 sizes joined by x (2x16x64)")
                }
                slot.shape = dims.map { $0! }
                let dtypeText = try r.text("dtype")
                guard let dtype = DType(rawValue: dtypeText) else {
                    throw r.fail("dtype '\(dtypeText)' (expected one of \(DType.allCases.map(\.rawValue).joined(separator: ", ")))")
                }
                slot.dtype = dtype
                slot.offset = try r.int("offset", in: 0...maximumBytes)
                for spelling in try r.list("value_codecs") {
                    guard let c = try? Codec.parse(spelling), [Codec.bits, .causal, .causalBF16].contains(c) else {
                        throw r.fail("value_codecs '\(spelling)' (expected bits, causal or causal-bf16, joined by ;)")
                    }
                    slot.valueCodecs.insert(c)
                }
                var viewBytes = dtype.byteSize
                for d in slot.shape {
                    let (v, overflow) = viewBytes.multipliedReportingOverflow(by: d)
                    viewBytes = overflow ? Int.max : v
                }
                guard slot.shape.isEmpty || viewBytes <= tensors[t].bytes else {
                    throw r.fail("shape '\(shapeText)' holds more \(dtypeText) elements than tensor \(t)'s \(tensors[t].bytes) bytes")
                }
                switch try r.text("is_output") {
                case "true": slot.isOutput = true
                case "false": slot.isOutput = false
                case let s: throw r.fail("is_output '\(s)' (expected true or false)")
                }
            }
            slots.append(slot)
        }

        let (eventTable, eventFile) = try table("memory_events.csv")
        var kept: [Event] = []
        var dropped: [Event] = []
        var backwardStart: Int? = nil
        var allocated: [String: Set<Int>] = [:]   // per sequence: each tensor is allocated once
        for i in eventTable.rows.indices {
            let r = Reader(table: eventTable, file: eventFile, row: i)
            let seq = try r.text("sequence")
            guard seq == "step" || seq == "dropped_forward" else { throw r.fail("sequence '\(seq)' (expected step or dropped_forward)") }
            let arg = try r.text("argument")
            func tensor() throws -> Int {
                guard let t = Int(arg), t >= 0, t < tensors.count else { throw r.fail("tensor '\(arg)' is not in activation_stats.csv") }
                return t
            }
            func block() throws -> Int {
                guard let b = regionIndex[arg] else { throw r.fail("block '\(arg)' is not in step.json's blocks") }
                return b
            }
            let event: Event
            switch try r.text("event") {
            case "allocate":
                let t = try tensor()
                guard allocated[seq, default: []].insert(t).inserted else { throw r.fail("tensor \(t) allocated twice in the \(seq) sequence") }
                event = .allocate(t)
            case "free": event = .free(try tensor())
            case "forward_op":
                guard let o = opIndex[arg] else { throw r.fail("forward_op '\(arg)' is not a forward op") }
                event = .forwardOp(o)
            case "backward_op": event = .backwardOp(arg)
            case "block_start": event = .regionStart(try block())
            case "block_end": event = .regionEnd(try block())
            case "backward_start":
                guard seq == "step", backwardStart == nil else { throw r.fail("backward_start only once, in the step sequence") }
                backwardStart = kept.count
                continue
            case let e: throw r.fail("unknown event '\(e)'")
            }
            if seq == "step" { kept.append(event) } else { dropped.append(event) }
        }
        guard let backwardStart else { throw PlanningError.badStats(file: eventFile, reason: "no backward_start event in the step sequence") }
        return StepGraph(model: meta.model, inputShape: meta.input_shape, regions: meta.blocks, ops: ops, tensors: tensors,
                         baselineBytes: meta.baseline_bytes, baselineByCategory: byCategory,
                         measuredPeakBytes: meta.measured_peak_bytes, stepSeconds: meta.step_seconds,
                         backwardSeconds: backwardSeconds, keptSequence: kept, backwardStartIndex: backwardStart,
                         droppedForward: dropped, slots: slots, actionCosts: meta.action_costs)
    }
}
