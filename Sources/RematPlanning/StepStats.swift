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
        var version = 1
        var model: String
        var input_shape: [Int]
        var blocks: [String]
        var baseline_bytes: Int
        var baseline_by_category: [String: Int]
        var measured_peak_bytes: Int
        var step_seconds: Double
        var forward_ops: Int
    }

    /// The backward nodes in execution order (names).
    public var backwardOrder: [String] {
        keptSequence.compactMap { if case .backwardOp(let n) = $0 { return n }; return nil }
    }

    /// Writes the profile files into `directory` (created if missing; each file atomically).
    public func writeStats(to directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let dir = directory.hasSuffix("/") ? directory : directory + "/"
        let f = ops.count
        let backward = backwardOrder
        let opByName = Dictionary(ops.enumerated().map { ($0.element.name, $0.offset) }, uniquingKeysWith: { a, _ in a })

        // step.json
        let meta = StepMeta(model: model, input_shape: inputShape, blocks: regions, baseline_bytes: baselineBytes,
                            baseline_by_category: Dictionary(uniqueKeysWithValues: baselineByCategory.map { ($0.key.description, $0.value) }),
                            measured_peak_bytes: measuredPeakBytes, step_seconds: stepSeconds, forward_ops: f)
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        let json = try enc.encode(meta)
        try AtomicFile.write(to: dir + "step.json") { try $0.write(Array(json)) }

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
        try nodes.write(to: dir + "node_stats.csv")

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
        try acts.write(to: dir + "activation_stats.csv")

        var slotTable = CSVTable(header: ["slot_name", "saver", "tensor_id"])
        for s in slots { slotTable.rows.append([s.name, s.saver, String(s.tensor)]) }
        try slotTable.write(to: dir + "saved_slots.csv")

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
        try events.write(to: dir + "memory_events.csv")
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
            let data = try Data(contentsOf: URL(fileURLWithPath: dir + "step.json"))
            meta = try JSONDecoder().decode(StepMeta.self, from: data)
        } catch {
            throw PlanningError.badStats(file: dir + "step.json", reason: "not a Remat step description (\(error))")
        }
        guard meta.format == "remat-step-stats", meta.version == 1 else {
            throw PlanningError.badStats(file: dir + "step.json", reason: "format \(meta.format) version \(meta.version); this Remat reads remat-step-stats version 1")
        }
        func table(_ name: String) throws -> (CSVTable, String) {
            do { return (try CSVTable.read(path: dir + name), dir + name) } catch let e as CSVError {
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
            func double(_ col: String) throws -> Double {
                let s = try text(col)
                guard let v = Double(s), v.isFinite, v >= 0 else { throw fail("\(col) '\(s)' is not a time in seconds") }
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
            let bytes = try r.int("avg_mem_size_bytes")
            guard bytes >= 0 else { throw r.fail("negative avg_mem_size_bytes") }
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
                               lastForwardUse: try r.optInt("last_fw_use_rank"),
                               firstBackwardUse: try r.optInt("first_bw_use_rank").map { $0 - f },
                               lastBackwardUse: try r.optInt("last_bw_use_rank").map { $0 - f })
            t.preexisting = preexisting
            tensors.append(t)
        }
        for op in ops {
            if let t = op.outputTensor, t >= tensors.count {
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
            slots.append(Slot(name: try r.text("slot_name"), saver: try r.text("saver"), tensor: t))
        }

        let (eventTable, eventFile) = try table("memory_events.csv")
        var kept: [Event] = []
        var dropped: [Event] = []
        var backwardStart: Int? = nil
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
            case "allocate": event = .allocate(try tensor())
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
                         droppedForward: dropped, slots: slots)
    }
}
