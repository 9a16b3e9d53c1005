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
