import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What went wrong reading or writing a safetensors file. Every case names the file; the
/// ``description`` is one sentence saying what is wrong and what would be right.
public enum SafetensorsError: Error, CustomStringConvertible, Equatable {
    /// The file could not be opened or read (missing, a directory, permission, I/O error).
    case cannotOpen(path: String, reason: String)
    /// The file is shorter than its header (or the header's own length field) says it must be.
    case truncated(path: String, expectedBytes: Int, actualBytes: Int)
    /// The 8-byte length or the JSON header is unusable (bad length, not UTF-8, not JSON, wrong
    /// `__metadata__`, bytes after the last tensor).
    case malformedHeader(path: String, reason: String)
    /// A tensor's dtype is not one Remat loads (or not a safetensors dtype at all).
    case unsupportedDType(path: String, tensor: String, dtype: String)
    /// A tensor entry is inconsistent: missing or mistyped fields, offsets that overlap, leave
    /// gaps or disagree with shape × dtype size.
    case invalidTensor(path: String, tensor: String, reason: String)
    /// Writing failed (bad tensor names, or the file system refused); any old file is intact.
    case cannotWrite(path: String, reason: String)

    public var description: String {
        switch self {
        case let .cannotOpen(path, reason):
            return "Cannot open safetensors file \(path): \(reason)."
        case let .truncated(path, expected, actual):
            return "Safetensors file \(path) is truncated: its header requires \(expected) bytes but the file holds "
                + "only \(actual) bytes (\(expected - actual) missing); re-copy or re-download the complete file."
        case let .malformedHeader(path, reason):
            return "Safetensors file \(path) has a malformed header: \(reason)."
        case let .unsupportedDType(path, tensor, dtype):
            return "Tensor \"\(tensor)\" in safetensors file \(path) has dtype \"\(dtype)\", which Remat cannot load; "
                + "supported are F32, F16, BF16, F8_E4M3, F8_E5M2, I8, I32, I64, and F64 (loaded as float32), "
                + "BOOL (as int8), U8 and I16 (as int32)."
        case let .invalidTensor(path, tensor, reason):
            return "Tensor \"\(tensor)\" in safetensors file \(path) is invalid: \(reason)."
        case let .cannotWrite(path, reason):
            return "Cannot write safetensors file \(path): \(reason)."
        }
    }
}

/// A set of named tensors in the [safetensors](https://github.com/huggingface/safetensors) format.
///
/// File layout: an 8-byte little-endian `u64` header length `N`, `N` bytes of UTF-8 JSON
/// `{"__metadata__": {"k": "v"}, "name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}, ...}`
/// (padded with spaces), then the data buffer; offsets are relative to the buffer's start,
/// elements are little-endian and row-major, tensors are packed back to back with no gaps.
///
/// **Reading** (``read(path:category:)``) validates the whole header before allocating anything:
/// header length ≤ 100 MB and within the file; valid UTF-8 JSON object starting with `{`;
/// `__metadata__` (if present) a string→string object; every entry an object with a string
/// `dtype`, a `shape` of non-negative integers and `data_offsets` of two integers `begin ≤ end`
/// whose span equals shape × dtype size (overflow-checked); sorted by offset, the tensors cover
/// the buffer exactly (no overlap, no gap); the file is exactly header + buffer long (shorter →
/// ``SafetensorsError/truncated(path:expectedBytes:actualBytes:)``, longer → malformed header).
/// Then each tensor's storage is allocated through the ``MemoryLedger`` (current ledger, the
/// requested category, labelled with the tensor name) and its bytes are `pread` straight from the
/// file into that storage: **one copy** (page cache → tensor), no whole-file buffer.
///
/// Dtypes load as stored (F32, F16, BF16, F8_E4M3, F8_E5M2, I8, I32, I64). A few others are
/// converted on load, through a 64 KiB bounce buffer (still one pass over the file):
/// F64 → `float32` (rounded to nearest; PyTorch users sometimes save float64), BOOL → `int8`
/// (0/1), U8 and I16 → `int32` (exact). Other dtypes (U16, U32, U64, F8_E8M0, F4, …) and unknown
/// names throw ``SafetensorsError/unsupportedDType(path:tensor:dtype:)``. Duplicate JSON keys
/// cannot be detected (the JSON parser keeps the last); the lost entry then shows up as a gap.
///
/// ``order`` lists the tensors in file (data offset) order; zero-size tensors sharing an offset
/// are ordered by name.
///
/// **Writing** (`write(_:metadata:to:)`) is atomic via ``AtomicFile``:
/// deterministic header (`__metadata__` first with sorted keys, then the tensors in the given
/// order), padded with spaces to a multiple of 8 bytes, then each tensor's bytes written straight
/// from its storage (non-contiguous tensors are first copied to a contiguous temporary, one at a time).
///
/// Byte order: the engine runs on little-endian hosts only, which is what the format stores.
public struct SafetensorsFile: Sendable {
    public var tensors: [String: Tensor]
    public var metadata: [String: String]
    /// Tensor names in file order.
    public var order: [String]

    public init(tensors: [String: Tensor] = [:], metadata: [String: String] = [:], order: [String] = []) {
        self.tensors = tensors
        self.metadata = metadata
        self.order = order
    }

    /// The tensor called `name`, if any.
    public subscript(name: String) -> Tensor? { tensors[name] }

    /// Largest header accepted (the reference implementation's limit).
    public static let maxHeaderBytes = 100_000_000

    // MARK: - Reading

    /// Reads every tensor and the metadata of the safetensors file at `path`.
    /// Tensors are allocated in ``MemoryLedger/current`` under `category`.
    public static func read(path: String, category: MemoryCategory = .temporaries) throws -> SafetensorsFile {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)   // a FIFO is refused below, not waited on
        guard fd >= 0 else {
            let code = errno
            throw SafetensorsError.cannotOpen(path: path, reason: errnoText(code))
        }
        defer { _ = close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let code = errno
            throw SafetensorsError.cannotOpen(path: path, reason: "fstat failed (\(errnoText(code)))")
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw SafetensorsError.cannotOpen(path: path, reason: "it is not a regular file")
        }
        let fileSize = Int(st.st_size)
        let reader = Reader(fd: fd, path: path, fileSize: fileSize)

        // Length prefix.
        guard fileSize >= 8 else {
            throw SafetensorsError.truncated(path: path, expectedBytes: 8, actualBytes: fileSize)
        }
        var lengthLE: UInt64 = 0
        try withUnsafeMutableBytes(of: &lengthLE) { try reader.read(into: $0.baseAddress!, count: 8, at: 0) }
        let headerLength64 = UInt64(littleEndian: lengthLE)
        guard headerLength64 <= UInt64(maxHeaderBytes) else {
            throw SafetensorsError.malformedHeader(
                path: path, reason: "the 8-byte header length says \(headerLength64) bytes, more than the "
                    + "\(maxHeaderBytes)-byte limit (is this a safetensors file?)")
        }
        let headerLength = Int(headerLength64)
        guard 8 + headerLength <= fileSize else {
            throw SafetensorsError.truncated(path: path, expectedBytes: 8 + headerLength, actualBytes: fileSize)
        }

        // Header JSON (small: read into an array, parse, then drop).
        let entries: [Entry]
        let metadata: [String: String]
        do {
            var headerBytes = [UInt8](repeating: 0, count: headerLength)
            try headerBytes.withUnsafeMutableBytes {
                try reader.read(into: $0.baseAddress!, count: headerLength, at: 8)
            }
            (entries, metadata) = try parseHeader(headerBytes, path: path)
        }

        // Layout: contiguous cover of the buffer, file exactly as long as header + buffer.
        let sorted = entries.sorted { ($0.begin, $0.end, $0.name) < ($1.begin, $1.end, $1.name) }
        var expectedBegin = 0
        var previous: Entry? = nil
        for e in sorted {
            if e.begin < expectedBegin, let p = previous {
                throw SafetensorsError.invalidTensor(
                    path: path, tensor: e.name,
                    reason: "its data_offsets [\(e.begin), \(e.end)] overlap tensor \"\(p.name)\" at [\(p.begin), \(p.end)]; "
                        + "tensors must be packed back to back, so it should start at byte \(expectedBegin)")
            }
            if e.begin != expectedBegin {
                let after = previous.map { "tensor \"\($0.name)\" ends" } ?? "the data buffer starts"
                throw SafetensorsError.invalidTensor(
                    path: path, tensor: e.name,
                    reason: "its data_offsets [\(e.begin), \(e.end)] leave a gap: \(after) at byte \(expectedBegin), "
                        + "so it should start there")
            }
            expectedBegin = e.end
            previous = e
        }
        let dataStart = 8 + headerLength
        let (required, overflow) = dataStart.addingReportingOverflow(expectedBegin)
        if overflow || required > fileSize {
            throw SafetensorsError.truncated(path: path, expectedBytes: overflow ? Int.max : required,
                                             actualBytes: fileSize)
        }
        if required < fileSize {
            throw SafetensorsError.malformedHeader(
                path: path, reason: "the tensor data ends at file byte \(required) but the file is \(fileSize) bytes long; "
                    + "the header must describe the whole data buffer, with no trailing bytes")
        }

        // Data: one pread per tensor straight into ledger-allocated storage.
        var result = SafetensorsFile(metadata: metadata)
        result.order = sorted.map(\.name)
        result.tensors.reserveCapacity(sorted.count)
        for e in sorted {
            let t = Tensor(uninitializedShape: e.shape, dtype: e.kind.loaded, category: category, label: e.name)
            t.name = e.name
            try reader.load(e, into: t, dataStart: dataStart)
            result.tensors[e.name] = t
        }
        return result
    }

    /// How a file dtype becomes a tensor dtype.
    fileprivate enum Kind {
        case direct(DType)
        case float64ToFloat32, boolToInt8, uint8ToInt32, int16ToInt32

        init?(_ name: String) {
            switch name {
            case "F64": self = .float64ToFloat32
            case "BOOL": self = .boolToInt8
            case "U8": self = .uint8ToInt32
            case "I16": self = .int16ToInt32
            default:
                guard let d = DType.allCases.first(where: { $0.safetensorsName == name }) else { return nil }
                self = .direct(d)
            }
        }

        var loaded: DType {
            switch self {
            case .direct(let d): return d
            case .float64ToFloat32: return .float32
            case .boolToInt8: return .int8
            case .uint8ToInt32, .int16ToInt32: return .int32
            }
        }

        /// Bytes per element in the file.
        var fileByteSize: Int {
            switch self {
            case .direct(let d): return d.byteSize
            case .float64ToFloat32: return 8
            case .boolToInt8, .uint8ToInt32: return 1
            case .int16ToInt32: return 2
            }
        }
    }

    fileprivate struct Entry {
        var name: String
        var dtypeName: String
        var kind: Kind
        var shape: [Int]
        var begin: Int
        var end: Int
    }

    /// Parses and validates the JSON header (everything that does not need the other entries).
    private static func parseHeader(_ bytes: [UInt8], path: String) throws -> ([Entry], [String: String]) {
        func malformed(_ reason: String) -> SafetensorsError { .malformedHeader(path: path, reason: reason) }
        guard String(validating: bytes, as: UTF8.self) != nil else {
            throw malformed("the \(bytes.count)-byte JSON header is not valid UTF-8")
        }
        guard bytes.first == UInt8(ascii: "{") else {
            throw malformed("the JSON header must start with '{' but starts with "
                + (bytes.first.map { "byte 0x" + String($0, radix: 16) } ?? "nothing (header length 0)"))
        }
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: Data(bytes), options: [])
        } catch {
            let detail = (error as NSError).userInfo[NSDebugDescriptionErrorKey] as? String ?? "\(error)"
            throw malformed("the header is not valid JSON (\(detail)); it must be one JSON object")
        }
        guard let root = object as? [String: Any] else {
            throw malformed("the JSON header must be an object of tensor entries")
        }

        var metadata: [String: String] = [:]
        if let meta = root["__metadata__"] {
            guard let dict = meta as? [String: Any] else {
                throw malformed("\"__metadata__\" must be an object of string values")
            }
            for (k, v) in dict {
                guard let s = v as? String else {
                    throw malformed("\"__metadata__\" value for key \"\(k)\" must be a string")
                }
                metadata[k] = s
            }
        }

        var entries: [Entry] = []
        entries.reserveCapacity(root.count)
        for name in root.keys.sorted() where name != "__metadata__" {
            func invalid(_ reason: String) -> SafetensorsError {
                .invalidTensor(path: path, tensor: name, reason: reason)
            }
            guard let info = root[name] as? [String: Any] else {
                throw invalid("its header entry must be an object with \"dtype\", \"shape\" and \"data_offsets\"")
            }
            guard let dtypeName = info["dtype"] as? String else {
                throw invalid("its \"dtype\" must be a string such as \"F32\"")
            }
            guard let kind = Kind(dtypeName) else {
                throw SafetensorsError.unsupportedDType(path: path, tensor: name, dtype: dtypeName)
            }
            guard let shapeArray = info["shape"] as? [Any],
                  let shape = nonNegativeInts(shapeArray) else {
                throw invalid("its \"shape\" must be an array of non-negative integers")
            }
            guard let offsetArray = info["data_offsets"] as? [Any],
                  let offsets = nonNegativeInts(offsetArray), offsets.count == 2 else {
                throw invalid("its \"data_offsets\" must be an array of two non-negative integers [begin, end]")
            }
            let (begin, end) = (offsets[0], offsets[1])
            guard begin <= end else {
                throw invalid("its data_offsets [\(begin), \(end)] end before they begin; end must be ≥ begin")
            }
            var bytes = kind.fileByteSize
            for extent in shape {
                let (p, o) = bytes.multipliedReportingOverflow(by: extent)
                guard !o else { throw invalid("its shape \(shape) is too large to address") }
                bytes = p
            }
            guard end - begin == bytes else {
                throw invalid("its data_offsets [\(begin), \(end)] span \(end - begin) bytes, but shape \(shape) "
                    + "of \(dtypeName) needs \(bytes) bytes")
            }
            entries.append(Entry(name: name, dtypeName: dtypeName, kind: kind, shape: shape, begin: begin, end: end))
        }
        return (entries, metadata)
    }

    /// The values as Ints if every one is a JSON integer ≥ 0 that fits `Int` (not a bool, not a float).
    private static func nonNegativeInts(_ values: [Any]) -> [Int]? {
        var out: [Int] = []
        out.reserveCapacity(values.count)
        for v in values {
            guard let n = v as? NSNumber else { return nil }
            let type = String(cString: n.objCType)
            guard type != "c", type != "B", type != "d", type != "f" else { return nil }
            guard let i = v as? Int, i >= 0 else { return nil }
            out.append(i)
        }
        return out
    }

    /// Positioned reads from the open file.
    private struct Reader {
        let fd: Int32
        let path: String
        let fileSize: Int

        /// Reads exactly `count` bytes at file offset `offset` into `dst`.
        func read(into dst: UnsafeMutableRawPointer, count: Int, at offset: Int) throws {
            var done = 0
            while done < count {
                let n = pread(fd, dst + done, Swift.min(count - done, 1 << 30), off_t(offset + done))
                if n < 0 {
                    let code = errno
                    if code == EINTR { continue }
                    throw SafetensorsError.cannotOpen(
                        path: path, reason: "reading \(count) bytes at offset \(offset) failed (\(errnoText(code)))")
                }
                if n == 0 {
                    // The file shrank since fstat.
                    throw SafetensorsError.truncated(path: path, expectedBytes: offset + count,
                                                     actualBytes: offset + done)
                }
                done += n
            }
        }

        /// Fills `t` (contiguous, fresh) with entry `e`'s elements.
        func load(_ e: Entry, into t: Tensor, dataStart: Int) throws {
            let fileOffset = dataStart + e.begin
            let n = t.count
            guard n > 0 else { return }
            switch e.kind {
            case .direct:
                try read(into: t.rawPointer, count: e.end - e.begin, at: fileOffset)
            case .boolToInt8:
                try read(into: t.rawPointer, count: n, at: fileOffset)
                let p = t.rawPointer.assumingMemoryBound(to: Int8.self)
                for i in 0..<n where p[i] != 0 { p[i] = 1 }
            case .float64ToFloat32:
                let dst = t.rawPointer.assumingMemoryBound(to: Float.self)
                try converting(count: n, elementSize: 8, at: fileOffset) { src, base, m in
                    for i in 0..<m { dst[base + i] = Float(src.loadUnaligned(fromByteOffset: 8 * i, as: Double.self)) }
                }
            case .uint8ToInt32:
                let dst = t.rawPointer.assumingMemoryBound(to: Int32.self)
                try converting(count: n, elementSize: 1, at: fileOffset) { src, base, m in
                    for i in 0..<m { dst[base + i] = Int32(src.load(fromByteOffset: i, as: UInt8.self)) }
                }
            case .int16ToInt32:
                let dst = t.rawPointer.assumingMemoryBound(to: Int32.self)
                try converting(count: n, elementSize: 2, at: fileOffset) { src, base, m in
                    for i in 0..<m { dst[base + i] = Int32(src.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self)) }
                }
            }
        }

        /// Streams `count` elements of `elementSize` bytes through a 64 KiB bounce buffer;
        /// `body(buffer, firstElement, elements)` converts each chunk.
        private func converting(count: Int, elementSize: Int, at offset: Int,
                                _ body: (UnsafeRawPointer, Int, Int) -> Void) throws {
            let chunkBytes = 1 << 16
            let buffer = UnsafeMutableRawPointer.allocate(byteCount: chunkBytes, alignment: 16)
            defer { buffer.deallocate() }
            let perChunk = chunkBytes / elementSize
            var base = 0
            while base < count {
                let m = Swift.min(perChunk, count - base)
                try read(into: buffer, count: m * elementSize, at: offset + base * elementSize)
                body(UnsafeRawPointer(buffer), base, m)
                base += m
            }
        }
    }

    // MARK: - Writing

    /// Writes `tensors` in the given order, with `metadata`, atomically to `path`.
    /// - Throws: ``SafetensorsError/cannotWrite(path:reason:)`` (duplicate or reserved names,
    ///   file-system failures); on failure any existing file at `path` is left as it was.
    public static func write(_ tensors: [(String, Tensor)], metadata: [String: String] = [:], to path: String) throws {
        var seen = Set<String>()
        for (name, _) in tensors {
            guard name != "__metadata__" else {
                throw SafetensorsError.cannotWrite(
                    path: path, reason: "the tensor name \"__metadata__\" is reserved for the metadata block; rename the tensor")
            }
            guard seen.insert(name).inserted else {
                throw SafetensorsError.cannotWrite(
                    path: path, reason: "the tensor name \"\(name)\" appears twice; every tensor needs a unique name")
            }
        }
        let header = headerBytes(tensors, metadata: metadata)
        do {
            try AtomicFile.write(to: path) { out in
                var length = UInt64(header.count).littleEndian
                try withUnsafeBytes(of: &length) { try out.write($0) }
                try out.write(header)
                for (_, t) in tensors where t.count > 0 {
                    let source = t.isContiguous ? t : t.contiguousCopy(label: "safetensors_write")
                    try withExtendedLifetime(source) {
                        try out.write(UnsafeRawBufferPointer(start: source.rawPointer, count: source.byteCount))
                    }
                }
            }
        } catch let error as AtomicFileError {
            throw SafetensorsError.cannotWrite(path: path, reason: error.reason)
        }
    }

    /// Writes `tensors` sorted by name, with `metadata`, atomically to `path`.
    public static func write(_ tensors: [String: Tensor], metadata: [String: String] = [:], to path: String) throws {
        try write(tensors.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }, metadata: metadata, to: path)
    }

    /// The JSON header for `tensors` packed in order, padded with spaces to a multiple of 8 bytes.
    static func headerBytes(_ tensors: [(String, Tensor)], metadata: [String: String]) -> [UInt8] {
        var json = "{"
        var first = true
        if !metadata.isEmpty {
            json += "\"__metadata__\":{"
            json += metadata.sorted { $0.key < $1.key }
                .map { jsonString($0.key) + ":" + jsonString($0.value) }
                .joined(separator: ",")
            json += "}"
            first = false
        }
        var offset = 0
        for (name, t) in tensors {
            if !first { json += "," }
            first = false
            let end = offset + t.byteCount
            json += jsonString(name) + ":{\"dtype\":\"\(t.dtype.safetensorsName)\",\"shape\":["
                + t.shape.map(String.init).joined(separator: ",") + "],\"data_offsets\":[\(offset),\(end)]}"
            offset = end
        }
        json += "}"
        var bytes = Array(json.utf8)
        while bytes.count % 8 != 0 { bytes.append(UInt8(ascii: " ")) }
        return bytes
    }

    /// `s` as a JSON string literal (quotes, backslashes and control characters escaped).
    static func jsonString(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where u.value < 0x20:
                let hex = String(u.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }
}

private func errnoText(_ code: Int32) -> String {
    String(cString: strerror(code))
}
