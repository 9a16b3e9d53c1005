import Foundation
import Testing
import Remat

/// Mutation fuzzing of the files users hand to Remat (fixed seeds, so a failure repeats): every
/// mutated safetensors file and profile folder is either read or refused with a thrown error —
/// never a trap, a hang or an allocation it cannot satisfy — and a profile that is read plans.
@Suite struct FuzzTests {
    /// The engine's Philox stream: the same on every machine.
    struct Random {
        let generator: RandomGenerator
        init(state: UInt64) { generator = RandomGenerator(seed: state) }
        mutating func next() -> UInt64 { generator.nextUInt64() }
        mutating func int(_ n: Int) -> Int { Int(next() % UInt64(max(n, 1))) }
    }

    /// Replacements for a number or word in a file: the values that break naive readers.
    static let hostile = ["-1", "0", "1", "-9223372036854775808", "9223372036854775807", "18446744073709551616", "4611686018427387904",
                          "1e308", "-1e308", "nan", "inf", "", "abc", "\"", "[]", "{}", "null", "true", "F32", "I64", "BF16", "Q9",
                          "[1,2,3]", "[-1]", "[0,0]", "[9223372036854775807,2]", "2147483648", "65536", "0.5"]

    static func directory() -> String {
        let d = NSTemporaryDirectory() + "remat-fuzz-" + UUID().uuidString
        try! FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }

    /// Seed files: committed fixtures and a file with one tensor of each dtype.
    static func seeds(in dir: String) throws -> [[UInt8]] {
        let mixed = dir + "/mixed.safetensors"
        try SafetensorsFile.write([("f", Tensor([1, 2, 3, 4], shape: [2, 2])), ("i", Tensor(indices: [1, 2, 3], shape: [3], dtype: .int64)),
                                   ("h", Tensor([0.5, -2], shape: [2]).converted(to: .float16)),
                                   ("b", Tensor([1, 2], shape: [1, 2]).converted(to: .bfloat16))],
                                  metadata: ["format": "pt"], to: mixed)
        return try ([mixed] + ["gpt_tiny_batch.safetensors", "python_written.safetensors", "resnet_tiny_batch.safetensors"].map(Fixtures.path))
            .map { Array(try Data(contentsOf: URL(fileURLWithPath: $0))) }
    }

    /// One mutation of a safetensors file's bytes.
    static func mutate(_ bytes: [UInt8], _ r: inout Random) -> [UInt8] {
        var b = bytes
        let headerLength = b.count >= 8 ? Int(clamping: b[0..<8].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }) : 0
        let headerEnd = min(b.count, 8 + max(0, min(headerLength, b.count)))
        switch r.int(6) {
        case 0:   // flip bytes in the header
            for _ in 0..<(1 + r.int(4)) where headerEnd > 8 { b[8 + r.int(headerEnd - 8)] ^= UInt8(1 << r.int(8)) }
        case 1:   // a different header length
            let v: UInt64 = [0, 1, 7, UInt64(min(headerLength, Int.max - 1) + 1), UInt64(max(headerLength - 1, 0)), UInt64.max, 1 << 40, r.next()][r.int(8)]
            for i in 0..<min(8, b.count) { b[i] = UInt8((v >> (8 * UInt64(i))) & 0xFF) }
        case 2:   // truncated
            b = Array(b.prefix(r.int(b.count + 1)))
        case 3, 4:   // a number or word of the JSON header replaced by a hostile value
            guard headerEnd > 8, var text = String(bytes: b[8..<headerEnd], encoding: .utf8) else { break }
            let tokens = text.ranges(of: /-?[0-9]+|"[A-Za-z0-9_]+"/)
            if let range = tokens.isEmpty ? nil : tokens[r.int(tokens.count)] {
                text.replaceSubrange(range, with: hostile[r.int(hostile.count)])
            }
            let header = Array(text.utf8)
            let length = UInt64(r.int(3) == 0 ? min(headerLength, b.count) : header.count)
            b = (0..<8).map { UInt8((length >> (8 * UInt64($0))) & 0xFF) } + header + Array(b[headerEnd...])
        default:   // bytes appended or the payload damaged
            if r.int(2) == 0 { b += (0..<r.int(64)).map { _ in UInt8(truncatingIfNeeded: r.next()) } }
            else if b.count > headerEnd { b[headerEnd + r.int(b.count - headerEnd)] = UInt8(truncatingIfNeeded: r.next()) }
        }
        return b
    }

    @Test func mutatedSafetensorsAreReadOrRefused() throws {
        let dir = Self.directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let seeds = try Self.seeds(in: dir)
        var r = Random(state: 0x5AFE_7E45)
        var refused = 0, read = 0
        let path = dir + "/case.safetensors"
        let start = monotonicSeconds()
        for i in 0..<2000 {
            var bytes = seeds[i % seeds.count]
            for _ in 0..<(1 + r.int(3)) { bytes = Self.mutate(bytes, &r) }
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            do {
                let file = try SafetensorsFile.read(path: path)
                for (_, t) in file.tensors { _ = t.count }
                read += 1
            } catch is SafetensorsError { refused += 1 }
        }
        #expect(read + refused == 2000)
        #expect(refused > 1000, "most mutations break a file: \(refused) refused, \(read) read")
        #expect(monotonicSeconds() - start < 60)
    }

    /// A profile of a one-block GPT, written once.
    static let profile: String = {
        let dir = directory() + "/profile"
        let c = GPTConfig(contextLength: 16, layers: 1, heads: 2, modelDimension: 16, mlpHidden: 32, batchSize: 2)
        let model = GPT(c, seed: 2)
        let trainer = Trainer(model: model, optimizer: Trainer.specAdamW(model), gradientClip: nil, ledger: MemoryLedger())
        var data = ByteSequenceDataset(bytes: ArithmeticText.generate(bytes: 1 << 12, seed: 5), seed: 5)
        let graph = try! StepCapture.capture(trainer, batch: data.nextBatch(batchSize: 2, length: 16), timingRuns: 1)
        try! graph.writeStats(to: dir)
        return dir
    }()

    @Test func mutatedProfilesAreReadOrRefusedAndReadOnesPlan() throws {
        let dir = Self.directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let files = ["node_stats.csv", "activation_stats.csv", "saved_slots.csv", "memory_events.csv", "step.json"]
        var originals: [String: String] = [:]
        for f in files { originals[f] = try String(contentsOfFile: Self.profile + "/" + f, encoding: .utf8) }
        // Without the stamps, so that damaged values reach the checks of each field.
        var meta = try JSONSerialization.jsonObject(with: Data(originals["step.json"]!.utf8)) as! [String: Any]
        meta["files"] = nil
        meta["version"] = 1
        originals["step.json"] = String(decoding: try JSONSerialization.data(withJSONObject: meta, options: [.prettyPrinted]), as: UTF8.self)
        var r = Random(state: 0xF122_0000)
        var refused = 0, planned = 0
        let start = monotonicSeconds()
        for i in 0..<600 {
            let target = dir + "/case\(i % 4)"
            try? FileManager.default.removeItem(atPath: target)
            try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)
            var texts = originals
            for _ in 0..<(1 + r.int(3)) {
                let f = files[r.int(files.count)]
                var lines = texts[f]!.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
                let li = r.int(lines.count)
                switch r.int(5) {
                case 0: lines.remove(at: li)                                   // a row lost
                case 1: lines.insert(lines[r.int(lines.count)], at: li)         // a row repeated
                default:                                                        // a field replaced
                    var fields = lines[li].split(separator: ",", omittingEmptySubsequences: false).map(String.init)
                    if !fields.isEmpty { fields[r.int(fields.count)] = Self.hostile[r.int(Self.hostile.count)] }
                    lines[li] = fields.joined(separator: ",")
                }
                texts[f] = lines.joined(separator: "\n")
            }
            for f in files { try texts[f]!.write(toFile: target + "/" + f, atomically: false, encoding: .utf8) }
            do {
                let graph = try StepGraph.readStats(from: target)
                do {
                    _ = try Planner.plan(graph, budget: .fraction(0.6), solver: .greedy)
                } catch is PlanningError {}
                planned += 1
            } catch is PlanningError { refused += 1 }
        }
        #expect(refused + planned == 600)
        #expect(refused > 300, "\(refused) refused, \(planned) read and planned")
        #expect(monotonicSeconds() - start < 120)
    }
}
