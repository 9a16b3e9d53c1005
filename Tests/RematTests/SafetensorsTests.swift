import Foundation
import Testing
import Remat

/// A fresh empty directory for one test.
private func scratchDirectory() -> String {
    let dir = FileManager.default.temporaryDirectory
        .appendingPathComponent("remat-safetensors-\(UUID().uuidString)").path
    try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

/// The tensor's elements as raw bytes in row-major order.
private func rawBytes(_ t: Tensor) -> [UInt8] {
    let c = t.isContiguous ? t : t.contiguousCopy()
    return withExtendedLifetime(c) { Array(UnsafeRawBufferPointer(start: c.rawPointer, count: c.byteCount)) }
}

/// A safetensors file assembled by hand: length prefix (declared or the real one), header, data.
private func rawFile(_ header: String, data: [UInt8], declaredLength: UInt64? = nil) -> [UInt8] {
    let h = Array(header.utf8)
    let n = declaredLength ?? UInt64(h.count)
    return withUnsafeBytes(of: n.littleEndian) { Array($0) } + h + data
}

private func fileBytes(_ path: String) -> [UInt8] {
    [UInt8](FileManager.default.contents(atPath: path) ?? Data())
}

private func writeBytes(_ bytes: [UInt8], to path: String) {
    #expect(FileManager.default.createFile(atPath: path, contents: Data(bytes)))
}

/// Expects `body` to throw exactly `expected`.
private func expectError(_ expected: SafetensorsError, sourceLocation: SourceLocation = #_sourceLocation,
                         _ body: () throws -> Void) {
    do {
        try body()
        Issue.record("expected \(expected), nothing was thrown", sourceLocation: sourceLocation)
    } catch let error as SafetensorsError {
        #expect(error == expected, sourceLocation: sourceLocation)
    } catch {
        Issue.record("expected \(expected), got \(error)", sourceLocation: sourceLocation)
    }
}

@Suite("Safetensors")
struct SafetensorsTests {
    /// One tensor of every storage dtype, a 0-d scalar, a zero-size tensor and a transposed view.
    static func sampleTensors() -> [(String, Tensor)] {
        let base = Tensor([0.5, -1.25, 2, 3.5, -448, 0.015625], shape: [2, 3])
        return [
            ("f32", base),
            ("f16", base.converted(to: .float16)),
            ("bf16", base.converted(to: .bfloat16)),
            ("e4m3", base.converted(to: .float8E4M3FN)),
            ("e5m2", base.converted(to: .float8E5M2)),
            ("i8", Tensor([-128, -1, 0, 1, 5, 127], shape: [3, 2]).converted(to: .int8)),
            ("i32", Tensor(indices: [7, -3, Int(Int32.max), Int(Int32.min)], shape: [2, 2], dtype: .int32)),
            ("i64", Tensor(indices: [1 << 40, -5, 0], shape: [3], dtype: .int64)),
            ("scalar", Tensor(scalar: 3.75)),
            ("empty", Tensor.zeros([0, 4])),
            ("transposed", base.transposed()),
            ("layers.0.attn.qkv.weight", Tensor([1, 2, 3, 4], shape: [1, 4])),
            ("row1", base.narrowed(axis: 0, start: 1, length: 1)),  // contiguous view at a storage offset
        ]
    }

    @Test func roundTripKeepsDTypesShapesBytesOrderAndMetadata() throws {
        let dir = scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/model.safetensors"
        let tensors = Self.sampleTensors()
        #expect(!tensors[10].1.isContiguous)
        let metadata = ["format": "pt", "note": "quote \" backslash \\ newline \n tab \t bell \u{07} é 𝛼", "": "empty key"]
        try SafetensorsFile.write(tensors, metadata: metadata, to: path)

        let file = try SafetensorsFile.read(path: path)
        #expect(file.order == tensors.map(\.0))
        #expect(file.metadata == metadata)
        #expect(file.tensors.count == tensors.count)
        for (name, original) in tensors {
            let loaded = try #require(file[name], "\(name) missing")
            #expect(loaded.dtype == original.dtype, "\(name)")
            #expect(loaded.shape == original.shape, "\(name)")
            #expect(loaded.isContiguous, "\(name)")
            #expect(loaded.name == name)
            #expect(rawBytes(loaded) == rawBytes(original), "\(name)")
        }
        #expect(file["transposed"]!.toArray() == [0.5, 3.5, -1.25, -448, 2, 0.015625])
        #expect(file["scalar"]!.item == 3.75)
        #expect(file["row1"]!.toArray() == [3.5, -448, 0.015625])
        #expect(file["i64"]!.toIntArray() == [1 << 40, -5, 0])

        // Layout: header padded with spaces to a multiple of 8, the file exactly header + data.
        let bytes = fileBytes(path)
        let n = Int(bytes[0..<8].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) })
        #expect(n % 8 == 0)
        #expect(bytes.count == 8 + n + tensors.reduce(0) { $0 + $1.1.byteCount })
        let header = String(decoding: bytes[8..<(8 + n)], as: UTF8.self)
        #expect(header.hasPrefix("{\"__metadata__\":{"))
        #expect(header.contains("\"f32\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}"))
        #expect(header.contains("\"scalar\":{\"dtype\":\"F32\",\"shape\":[],"))
        #expect(header.contains("\"e4m3\":{\"dtype\":\"F8_E4M3\""))
        let json = try JSONSerialization.jsonObject(with: Data(bytes[8..<(8 + n)])) as? [String: Any]
        #expect(json?.count == tensors.count + 1)

        // Deterministic: writing the same tensors again gives identical bytes.
        try SafetensorsFile.write(tensors, metadata: metadata, to: dir + "/again.safetensors")
        #expect(fileBytes(dir + "/again.safetensors") == bytes)
    }

    @Test func dictionaryWriteSortsByNameAndEmptyFileRoundTrips() throws {
        let dir = scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let tensors = ["b": Tensor([1, 2], shape: [2]), "a": Tensor([3], shape: [1]), "c": Tensor.zeros([0])]
        try SafetensorsFile.write(tensors, to: dir + "/d.safetensors")
        let file = try SafetensorsFile.read(path: dir + "/d.safetensors")
        #expect(file.order == ["a", "b", "c"])
        #expect(file.metadata.isEmpty)
        #expect(file["b"]!.toArray() == [1, 2])

        try SafetensorsFile.write([(String, Tensor)](), to: dir + "/none.safetensors")
        let none = try SafetensorsFile.read(path: dir + "/none.safetensors")
        #expect(none.tensors.isEmpty && none.order.isEmpty && none.metadata.isEmpty)
        #expect(fileBytes(dir + "/none.safetensors").count == 16)
    }

    @Test func largeTensorRoundTrips() throws {
        let dir = scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let values = (0..<300_001).map { Float($0) * 0.5 - 7 }
        let t = Tensor(values, shape: [300_001])
        try SafetensorsFile.write(["big": t, "small": Tensor(scalar: 1)], to: dir + "/big.safetensors")
        let file = try SafetensorsFile.read(path: dir + "/big.safetensors")
        #expect(file["big"]!.toArray() == values)
    }

    /// Written by Python's `safetensors` (scripts/make_safetensors_fixture.py).
    @Test func readsFileWrittenByPythonSafetensors() throws {
        let file = try SafetensorsFile.read(path: Fixtures.path("python_written.safetensors"))
        #expect(file.metadata == ["format": "pt", "source": "make_safetensors_fixture.py"])
        #expect(Set(file.order) == ["weight", "half", "bf", "e4m3", "e5m2", "ids", "i32", "i8", "dbl", "mask",
                                    "u8", "scalar", "empty"])
        #expect(file.order.first == "ids")  // Python packs by alignment, the 8-byte types first
        func check(_ name: String, _ dtype: DType, _ shape: [Int], _ values: [Float]) {
            guard let t = file[name] else { Issue.record("\(name) missing"); return }
            #expect(t.dtype == dtype, "\(name)")
            #expect(t.shape == shape, "\(name)")
            #expect(t.toArray() == values, "\(name)")
        }
        check("weight", .float32, [2, 3], [0.5, -1, 2, 3.25, -4.5, 0.001])
        check("half", .float16, [3], [1, -0.5, 65504])
        check("bf", .bfloat16, [2, 2], [1.5, -2, 0.25, 3])
        check("e4m3", .float8E4M3FN, [4], [1, -2, 0.5, 448])
        check("e5m2", .float8E5M2, [3], [1, -3, 0.5])
        check("i8", .int8, [3], [-128, 0, 127])
        check("dbl", .float32, [2], [Float(0.1), -2.5])  // F64 converted on load
        check("mask", .int8, [3], [1, 0, 1])                // BOOL loads as int8
        check("u8", .int32, [2], [0, 255])                  // U8 widens to int32
        check("scalar", .float32, [], [42])
        check("empty", .float32, [0, 3], [])
        #expect(file["ids"]?.dtype == .int64)
        #expect(file["ids"]?.toIntArray() == [0, 1, -7, 50256])
        #expect(file["i32"]?.dtype == .int32 && file["i32"]?.shape == [2, 1])
        #expect(file["i32"]?.toIntArray() == [3, Int(Int32.min)])
    }

    @Test func convertedDTypesStreamThroughTheBounceBuffer() throws {
        let dir = scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // 20,000 doubles (160 KB) cross several 64 KiB chunks.
        let doubles = (0..<20_000).map { Double($0) * 0.25 - 1000.1 }
        let i16: [Int16] = [-32768, -1, 0, 32767]
        let boolBytes: [UInt8] = [0, 2, 1, 255]
        var data = doubles.withUnsafeBytes { Array($0) }
        data += i16.withUnsafeBytes { Array($0) } + boolBytes
        let header = #"{"d":{"dtype":"F64","shape":[100,200],"data_offsets":[0,160000]},"#
            + #""s":{"dtype":"I16","shape":[4],"data_offsets":[160000,160008]},"#
            + #""m":{"dtype":"BOOL","shape":[2,2],"data_offsets":[160008,160012]}}"#
        writeBytes(rawFile(header, data: data), to: dir + "/conv.safetensors")
        let file = try SafetensorsFile.read(path: dir + "/conv.safetensors")
        #expect(file.order == ["d", "s", "m"])
        #expect(file["d"]!.dtype == .float32 && file["d"]!.shape == [100, 200])
        #expect(file["d"]!.toArray() == doubles.map { Float($0) })
        #expect(file["s"]!.dtype == .int32)
        #expect(file["s"]!.toIntArray() == [-32768, -1, 0, 32767])
        #expect(file["m"]!.toIntArray() == [0, 1, 1, 1])
    }

    @Test func truncatedFilesReportByteCounts() throws {
        let dir = scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/full.safetensors"
        try SafetensorsFile.write(Self.sampleTensors(), metadata: ["k": "v"], to: path)
        let full = fileBytes(path)
        let n = Int(full[0]) | Int(full[1]) << 8 | Int(full[2]) << 16

        let cutPrefix = dir + "/prefix.safetensors"
        writeBytes(Array(full[0..<5]), to: cutPrefix)
        expectError(.truncated(path: cutPrefix, expectedBytes: 8, actualBytes: 5)) {
            _ = try SafetensorsFile.read(path: cutPrefix)
        }
        let cutHeader = dir + "/header.safetensors"
        writeBytes(Array(full[0..<(8 + n / 2)]), to: cutHeader)
        expectError(.truncated(path: cutHeader, expectedBytes: 8 + n, actualBytes: 8 + n / 2)) {
            _ = try SafetensorsFile.read(path: cutHeader)
        }
        let cutData = dir + "/data.safetensors"
        writeBytes(Array(full.dropLast(3)), to: cutData)
        expectError(.truncated(path: cutData, expectedBytes: full.count, actualBytes: full.count - 3)) {
            _ = try SafetensorsFile.read(path: cutData)
        }
        let error = SafetensorsError.truncated(path: cutData, expectedBytes: full.count, actualBytes: full.count - 3)
        #expect(error.description.contains(cutData) && error.description.contains("\(full.count)"))
    }

    struct BadFile: Sendable, CustomStringConvertible {
        var description: String
        var header: String
        var dataBytes: Int
        var declaredLength: UInt64? = nil
        /// The expected error given the file's path and size.
        var expected: @Sendable (_ path: String, _ fileSize: Int) -> SafetensorsError
    }

    static let badFiles: [BadFile] = {
        let f32 = #""dtype":"F32""#
        return [
            BadFile(description: "not JSON", header: "{not json}", dataBytes: 0) { p, _ in
                .malformedHeader(path: p, reason: "") },
            BadFile(description: "JSON array", header: "[1, 2]", dataBytes: 0) { p, _ in
                .malformedHeader(path: p, reason: "") },
            BadFile(description: "empty header", header: "", dataBytes: 0) { p, _ in
                .malformedHeader(path: p, reason: "") },
            BadFile(description: "metadata not strings", header: #"{"__metadata__":{"a":1}}"#, dataBytes: 0) { p, _ in
                .malformedHeader(path: p, reason: "") },
            BadFile(description: "header length beyond the file", header: "{}", dataBytes: 0,
                    declaredLength: 1000) { p, size in
                .truncated(path: p, expectedBytes: 1008, actualBytes: size) },
            BadFile(description: "absurd header length", header: "{}", dataBytes: 0,
                    declaredLength: UInt64.max) { p, _ in
                .malformedHeader(path: p, reason: "") },
            BadFile(description: "overlapping offsets",
                    header: #"{"a":{\#(f32),"shape":[2],"data_offsets":[0,8]},"b":{\#(f32),"shape":[2],"data_offsets":[4,12]}}"#,
                    dataBytes: 12) { p, _ in .invalidTensor(path: p, tensor: "b", reason: "") },
            BadFile(description: "gap between tensors",
                    header: #"{"a":{\#(f32),"shape":[2],"data_offsets":[0,8]},"b":{\#(f32),"shape":[2],"data_offsets":[12,20]}}"#,
                    dataBytes: 20) { p, _ in .invalidTensor(path: p, tensor: "b", reason: "") },
            BadFile(description: "first tensor not at 0",
                    header: #"{"a":{\#(f32),"shape":[1],"data_offsets":[4,8]}}"#,
                    dataBytes: 8) { p, _ in .invalidTensor(path: p, tensor: "a", reason: "") },
            BadFile(description: "offsets beyond the data",
                    header: #"{"a":{\#(f32),"shape":[4],"data_offsets":[0,16]}}"#,
                    dataBytes: 8) { p, size in .truncated(path: p, expectedBytes: size + 8, actualBytes: size) },
            BadFile(description: "bytes after the last tensor",
                    header: #"{"a":{\#(f32),"shape":[1],"data_offsets":[0,4]}}"#,
                    dataBytes: 12) { p, _ in .malformedHeader(path: p, reason: "") },
            BadFile(description: "end before begin",
                    header: #"{"a":{\#(f32),"shape":[0],"data_offsets":[8,0]}}"#,
                    dataBytes: 8) { p, _ in .invalidTensor(path: p, tensor: "a", reason: "") },
            BadFile(description: "shape and offsets disagree",
                    header: #"{"a":{\#(f32),"shape":[2,2],"data_offsets":[0,12]}}"#,
                    dataBytes: 12) { p, _ in .invalidTensor(path: p, tensor: "a", reason: "") },
            BadFile(description: "shape overflows",
                    header: #"{"a":{\#(f32),"shape":[4294967296,4294967296],"data_offsets":[0,4]}}"#,
                    dataBytes: 4) { p, _ in .invalidTensor(path: p, tensor: "a", reason: "") },
            BadFile(description: "negative extent",
                    header: #"{"a":{\#(f32),"shape":[-1],"data_offsets":[0,4]}}"#,
                    dataBytes: 4) { p, _ in .invalidTensor(path: p, tensor: "a", reason: "") },
            BadFile(description: "fractional extent",
                    header: #"{"a":{\#(f32),"shape":[1.5],"data_offsets":[0,4]}}"#,
                    dataBytes: 4) { p, _ in .invalidTensor(path: p, tensor: "a", reason: "") },
            BadFile(description: "boolean extent",
                    header: #"{"a":{\#(f32),"shape":[true],"data_offsets":[0,4]}}"#,
                    dataBytes: 4) { p, _ in .invalidTensor(path: p, tensor: "a", reason: "") },
            BadFile(description: "missing data_offsets",
                    header: #"{"a":{\#(f32),"shape":[1]}}"#,
                    dataBytes: 4) { p, _ in .invalidTensor(path: p, tensor: "a", reason: "") },
            BadFile(description: "three offsets",
                    header: #"{"a":{\#(f32),"shape":[1],"data_offsets":[0,4,8]}}"#,
                    dataBytes: 4) { p, _ in .invalidTensor(path: p, tensor: "a", reason: "") },
            BadFile(description: "entry not an object", header: #"{"a":[1,2]}"#, dataBytes: 0) { p, _ in
                .invalidTensor(path: p, tensor: "a", reason: "") },
            BadFile(description: "dtype not a string",
                    header: #"{"a":{"dtype":4,"shape":[1],"data_offsets":[0,4]}}"#,
                    dataBytes: 4) { p, _ in .invalidTensor(path: p, tensor: "a", reason: "") },
            BadFile(description: "unknown dtype",
                    header: #"{"a":{"dtype":"Q7","shape":[1],"data_offsets":[0,4]}}"#,
                    dataBytes: 4) { p, _ in .unsupportedDType(path: p, tensor: "a", dtype: "Q7") },
            BadFile(description: "unsupported dtype",
                    header: #"{"w":{"dtype":"U16","shape":[2],"data_offsets":[0,4]}}"#,
                    dataBytes: 4) { p, _ in .unsupportedDType(path: p, tensor: "w", dtype: "U16") },
        ]
    }()

    /// Compares ignoring the free-text reason (which is checked to name the problem separately).
    private static func sameCase(_ a: SafetensorsError, _ b: SafetensorsError) -> Bool {
        switch (a, b) {
        case let (.malformedHeader(p1, _), .malformedHeader(p2, _)): return p1 == p2
        case let (.invalidTensor(p1, t1, _), .invalidTensor(p2, t2, _)): return p1 == p2 && t1 == t2
        case let (.cannotOpen(p1, _), .cannotOpen(p2, _)): return p1 == p2
        case let (.cannotWrite(p1, _), .cannotWrite(p2, _)): return p1 == p2
        default: return a == b
        }
    }

    @Test(arguments: badFiles)
    func malformedFilesThrowTheRightError(_ bad: BadFile) throws {
        let dir = scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/bad.safetensors"
        let bytes = rawFile(bad.header, data: [UInt8](repeating: 0, count: bad.dataBytes),
                            declaredLength: bad.declaredLength)
        writeBytes(bytes, to: path)
        let expected = bad.expected(path, bytes.count)
        do {
            _ = try SafetensorsFile.read(path: path)
            Issue.record("\(bad): expected \(expected), read succeeded")
        } catch let error as SafetensorsError {
            #expect(Self.sameCase(error, expected), "\(bad): got \(error)")
            #expect(error.description.contains(path))
            if case .invalidTensor(_, let tensor, let reason) = error {
                #expect(!reason.isEmpty && error.description.contains("\"\(tensor)\""))
            }
        }
    }

    @Test func invalidUTF8HeaderAndMissingFiles() throws {
        let dir = scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/latin1.safetensors"
        var bytes = rawFile(#"{"__metadata__":{"k":"XX"}}"#, data: [])
        bytes[8 + 22] = 0xE9  // lone Latin-1 é
        bytes[8 + 23] = 0xFF
        writeBytes(bytes, to: path)
        do {
            _ = try SafetensorsFile.read(path: path)
            Issue.record("expected malformedHeader")
        } catch let error as SafetensorsError {
            #expect(Self.sameCase(error, .malformedHeader(path: path, reason: "")), "\(error)")
            #expect(error.description.contains("UTF-8"))
        }
        for missing in [dir + "/nope.safetensors", dir] {
            do {
                _ = try SafetensorsFile.read(path: missing)
                Issue.record("expected cannotOpen")
            } catch let error as SafetensorsError {
                #expect(Self.sameCase(error, .cannotOpen(path: missing, reason: "")), "\(error)")
            }
        }
    }

    @Test func atomicWriteNeverLeavesPartialFilesOrClobbersTheOldOne() throws {
        let dir = scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/model.safetensors"
        let old = [("w", Tensor([1, 2, 3], shape: [3]))]
        try SafetensorsFile.write(old, to: path)
        let oldBytes = fileBytes(path)

        // Overwriting succeeds and leaves only the target behind.
        try SafetensorsFile.write([("w", Tensor([9], shape: [1]))], to: path)
        #expect(try SafetensorsFile.read(path: path)["w"]!.toArray() == [9])
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["model.safetensors"])
        try SafetensorsFile.write(old, to: path)

        // A directory that does not exist.
        let missingDir = dir + "/no/such/dir/model.safetensors"
        do {
            try SafetensorsFile.write(old, to: missingDir)
            Issue.record("expected cannotWrite")
        } catch let error as SafetensorsError {
            #expect(Self.sameCase(error, .cannotWrite(path: missingDir, reason: "")), "\(error)")
            #expect(error.description.contains(missingDir))
        }

        // Bad names are refused before anything touches the disk.
        for bad in [[("a", Tensor(scalar: 1)), ("a", Tensor(scalar: 2))], [("__metadata__", Tensor(scalar: 1))]] {
            #expect(throws: SafetensorsError.self) { try SafetensorsFile.write(bad, to: path) }
        }

        // The target is a (non-empty) directory: the rename fails, the temporary file is removed.
        let dirTarget = dir + "/occupied"
        try FileManager.default.createDirectory(atPath: dirTarget + "/inner", withIntermediateDirectories: true)
        #expect(throws: SafetensorsError.self) { try SafetensorsFile.write(old, to: dirTarget) }

        // The body fails half way: the rethrown error, the old file untouched.
        struct Boom: Error {}
        #expect(throws: Boom.self) {
            try AtomicFile.write(to: path) { out in
                try out.write([1, 2, 3, 4])
                throw Boom()
            }
        }

        #expect(fileBytes(path) == oldBytes)
        #expect(try SafetensorsFile.read(path: path)["w"]!.toArray() == [1, 2, 3])
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).sorted() == ["model.safetensors", "occupied"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: dirTarget) == ["inner"])
    }

    @Test func atomicFileWritesChunksStraightThrough() throws {
        let dir = scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/blob.bin"
        let big = [UInt8]((0..<200_000).map { UInt8(truncatingIfNeeded: $0 &* 7) })
        try AtomicFile.write(to: path) { out in
            try out.write([1, 2])
            try big.withUnsafeBytes { try out.write($0) }
            #expect(out.bytesWritten == 2 + big.count)
        }
        #expect(fileBytes(path) == [1, 2] + big)
        #expect(throws: AtomicFileError.self) { try AtomicFile.write(to: dir + "/") { _ in } }
    }

    @Test func loadedTensorsAreCountedInTheLedgerInTheRequestedCategory() throws {
        let dir = scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/ledger.safetensors"
        let tensors = Self.sampleTensors()
        try SafetensorsFile.write(tensors, to: path)
        let expectedBytes = tensors.reduce(0) { $0 + $1.1.byteCount }

        let ledger = MemoryLedger(label: "safetensors-test")
        try MemoryLedger.withLedger(ledger) {
            var file: SafetensorsFile? = try SafetensorsFile.read(path: path, category: .parameters)
            #expect(ledger.currentBytes(in: .parameters) == expectedBytes)
            #expect(ledger.currentBytes == expectedBytes)          // nothing else: no staging copies
            #expect(ledger.allocationCount == tensors.count)       // one allocation per tensor
            #expect(file!.tensors.values.allSatisfy { $0.storage.ledger === ledger })
            #expect(file!.tensors.values.allSatisfy { $0.storage.category == .parameters })
            file = nil
            #expect(ledger.currentBytes == 0)
        }

        let temporaries = MemoryLedger()
        let file = try MemoryLedger.withLedger(temporaries) { try SafetensorsFile.read(path: path) }
        #expect(temporaries.currentBytes(in: .temporaries) == expectedBytes)
        #expect(temporaries.currentBytes(in: .parameters) == 0)
        #expect(file.tensors.count == tensors.count)
    }
}
