import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reading a user's file whole, refusing what is not a regular file before reading a byte: a
/// FIFO or device would block or never end, a directory has no contents. Every reader of a file a
/// user names (configs, vocabularies, datasets, CSVs, plans) goes through here.
public enum RegularFile {
    /// Why a file could not be read: one sentence.
    public struct Error: Swift.Error, CustomStringConvertible, Equatable, Sendable {
        public var path: String
        public var reason: String
        public var description: String { "cannot read \(path): \(reason)" }
    }

    /// The bytes of the regular file at `path`. Opens without blocking (a FIFO is refused, not waited on).
    public static func contents(atPath path: String) throws -> Data {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else {
            let code = errno
            throw Error(path: path, reason: code == ENOENT ? "no such file" : String(cString: strerror(code)))
        }
        defer { _ = close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw Error(path: path, reason: "fstat failed (\(String(cString: strerror(errno))))") }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw Error(path: path, reason: (st.st_mode & S_IFMT) == S_IFDIR ? "it is a directory" : "it is not a regular file")
        }
        var data = Data(count: Int(st.st_size))
        var done = 0
        let total = data.count
        try data.withUnsafeMutableBytes { buffer in
            while done < total {
                let n = read(fd, buffer.baseAddress! + done, total - done)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw Error(path: path, reason: "read failed (\(String(cString: strerror(errno))))")
                }
                if n == 0 { break }
                done += n
            }
        }
        guard done == total else { throw Error(path: path, reason: "it shrank while being read (\(done) of \(total) bytes)") }
        return data
    }
}

/// One sentence for why a JSON file did not decode (instead of `DecodingError`'s debug dump).
public func describeJSONError(_ error: Error) -> String {
    guard let e = error as? DecodingError else { return "\(error)" }
    func path(_ c: [CodingKey]) -> String { c.isEmpty ? "the top level" : c.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".") }
    switch e {
    case .dataCorrupted(let c) where c.codingPath.isEmpty: return "not valid JSON"
    case .dataCorrupted(let c):
        return "\(path(c.codingPath)) holds a value that cannot be read" + (c.debugDescription.isEmpty ? "" : " (\(c.debugDescription))")
    case .keyNotFound(let key, let c): return "\(path(c.codingPath + [key])) is missing"
    case .typeMismatch(let type, let c):
        let name = String(describing: type)
        let expected = type == String.self ? "a string" : type == Int.self ? "an integer" : type == Double.self || type == Float.self ? "a number"
            : type == Bool.self ? "true or false" : name.hasPrefix("Array") ? "a list" : name.hasPrefix("Dictionary") ? "an object" : "a \(name)"
        return "\(path(c.codingPath)) is not \(expected)"
    case .valueNotFound(_, let c): return "\(path(c.codingPath)) is null"
    @unknown default: return "\(error)"
    }
}
