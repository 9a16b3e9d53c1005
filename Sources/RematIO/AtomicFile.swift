#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization
import Foundation

/// Why an ``AtomicFile`` write failed: the target path and one sentence saying what went wrong.
public struct AtomicFileError: Error, CustomStringConvertible, Equatable, Sendable {
    public var path: String
    public var reason: String

    public init(path: String, reason: String) {
        self.path = path
        self.reason = reason
    }

    public var description: String { "Could not write \(path): \(reason)." }
}

/// Replaces a file all at once: either the new contents are complete on disk under `path`, or
/// the old file (if any) is untouched.
///
/// ```swift
/// try AtomicFile.write(to: "weights.bin") { out in
///     try out.write(headerBytes)
///     try out.write(UnsafeRawBufferPointer(start: tensor.rawPointer, count: tensor.byteCount))
/// }
/// ```
///
/// How: the body writes into a temporary file `.<name>.tmp-<pid>-<random>` created (`O_EXCL`,
/// mode 0666 minus the umask) in the target's directory, so the final `rename(2)` stays on one
/// file system and is atomic. The temporary file is `fsync`ed before the rename and the directory
/// after it (best effort), so a crash leaves either the old or the new file. On any failure —
/// the body throwing, a short or failed `write(2)`, `fsync`, `close` or `rename` — the temporary
/// file is removed and the error thrown.
///
/// Writes go straight from the caller's buffer to the kernel (`write(2)`), so large payloads such
/// as tensor storage need no intermediate copy.
public enum AtomicFile {
    /// The sink handed to the body of ``AtomicFile/write(to:_:)``. Valid only inside the body.
    public struct Writer {
        fileprivate let fd: Int32
        fileprivate let path: String
        /// Bytes written so far.
        public fileprivate(set) var bytesWritten: Int = 0

        /// Writes all of `bytes` (retrying short writes and `EINTR`).
        public mutating func write(_ bytes: UnsafeRawBufferPointer) throws {
            guard var p = bytes.baseAddress, bytes.count > 0 else { return }
            var remaining = bytes.count
            while remaining > 0 {
                // Keep single calls under 1 GiB: Linux caps one write(2) at ~2 GiB anyway.
                let n = systemWrite(fd, p, Swift.min(remaining, 1 << 30))
                if n < 0 {
                    let code = errno
                    if code == EINTR { continue }
                    throw AtomicFileError(path: path, reason: "write failed after \(bytesWritten) bytes (\(errnoText(code)))")
                }
                if n == 0 {
                    throw AtomicFileError(path: path, reason: "write made no progress after \(bytesWritten) bytes")
                }
                p += n
                remaining -= n
                bytesWritten += n
            }
        }

        /// Writes all of `bytes`.
        public mutating func write(_ bytes: [UInt8]) throws {
            try bytes.withUnsafeBytes { try write($0) }
        }
    }

    /// Writes a file through `body` and moves it over `path` only once it is complete and synced.
    /// - Throws: ``AtomicFileError`` for file-system failures; whatever `body` throws, unchanged.
    ///   In both cases the temporary file is gone and any old file at `path` is intact.
    public static func write(to path: String, _ body: (inout Writer) throws -> Void) throws {
        let (directory, name) = split(path)
        guard !name.isEmpty else {
            throw AtomicFileError(path: path, reason: "the path names a directory, not a file")
        }
        let tempPath = directory + "." + name + ".tmp-\(getpid())-\(UInt64.random(in: 0...UInt64.max) & 0xFFFF_FFFF_FFFF)"
        InProgress.set(tempPath)
        defer { InProgress.clear() }
        let fd = open(tempPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o666)
        guard fd >= 0 else {
            let code = errno
            throw AtomicFileError(path: path, reason: "cannot create the temporary file \(tempPath) (\(errnoText(code)))")
        }
        var isOpen = true
        do {
            var writer = Writer(fd: fd, path: path)
            try body(&writer)
            guard fsync(fd) == 0 else {
                let code = errno
                throw AtomicFileError(path: path, reason: "fsync of the temporary file failed (\(errnoText(code)))")
            }
            isOpen = false
            guard close(fd) == 0 else {
                let code = errno
                throw AtomicFileError(path: path, reason: "close of the temporary file failed (\(errnoText(code)))")
            }
            guard rename(tempPath, path) == 0 else {
                let code = errno
                throw AtomicFileError(path: path, reason: "cannot rename the temporary file over it (\(errnoText(code)))")
            }
        } catch {
            if isOpen { _ = close(fd) }
            _ = unlink(tempPath)
            throw error
        }
        // Make the rename itself durable (best effort: some file systems refuse fsync on directories).
        let dirFD = Glibc_open(directory.isEmpty ? "." : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dirFD >= 0 {
            _ = fsync(dirFD)
            _ = close(dirFD)
        }
    }

    /// Removes the temporary file of the write in progress, if there is one. Async-signal-safe
    /// (one `unlink` of a path kept in a static buffer), for a signal handler that exits at once.
    public static func removeTemporaryFileInProgress() {
        if InProgress.isSet.load(ordering: .acquiring) { _ = unlink(InProgress.path) }
    }

    /// The temporary path of the write in progress, where a signal handler can read it.
    private enum InProgress {
        static let capacity = 4096
        nonisolated(unsafe) static let path = UnsafeMutablePointer<CChar>.allocate(capacity: capacity)
        static let isSet = Atomic<Bool>(false)

        static func set(_ p: String) {
            isSet.store(false, ordering: .releasing)
            let bytes = Array(p.utf8CString)
            guard bytes.count <= capacity else { return }   // too long to remember: not removed on a signal
            bytes.withUnsafeBufferPointer { path.update(from: $0.baseAddress!, count: bytes.count) }
            isSet.store(true, ordering: .releasing)
        }

        static func clear() { isSet.store(false, ordering: .releasing) }
    }

    /// Directory part (with its trailing `/`, or empty for the current directory) and file name.
    private static func split(_ path: String) -> (String, String) {
        guard let slash = path.lastIndex(of: "/") else { return ("", path) }
        return (String(path[...slash]), String(path[path.index(after: slash)...]))
    }
}

@inline(__always) private func systemWrite(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int) -> Int {
    #if canImport(Glibc)
    return Glibc.write(fd, p, n)
    #else
    return Darwin.write(fd, p, n)
    #endif
}

@inline(__always) private func Glibc_open(_ path: String, _ flags: Int32) -> Int32 {
    #if canImport(Glibc)
    return Glibc.open(path, flags)
    #else
    return Darwin.open(path, flags)
    #endif
}

/// `strerror(errno)` as a String.
private func errnoText(_ code: Int32) -> String {
    String(cString: strerror(code))
}

extension AtomicFile {
    /// Writes `files` (name and bytes, in order) into the directory `path` so that they appear
    /// together: a new directory is filled as a temporary one beside it and renamed into place; in
    /// an existing one each file is written atomically in the order given (put last the file that
    /// stamps the others, so that a reader can refuse a folder a failure left half old, half new).
    public static func writeDirectory(_ path: String, files: [(name: String, bytes: [UInt8])]) throws {
        let trimmed = path.hasSuffix("/") && path.count > 1 ? String(path.dropLast()) : path
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: trimmed, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else { throw AtomicFileError(path: trimmed, reason: "it exists and is not a directory") }
            for f in files { try write(to: trimmed + "/" + f.name) { try $0.write(f.bytes) } }
            return
        }
        let (parentDirectory, name) = split(trimmed)
        let parent = parentDirectory.isEmpty ? "." : parentDirectory == "/" ? "/" : String(parentDirectory.dropLast())
        try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true)
        let temp = parent + "/." + name + ".tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: temp, withIntermediateDirectories: false)
        do {
            for f in files { try write(to: temp + "/" + f.name) { try $0.write(f.bytes) } }
            guard rename(temp, trimmed) == 0 else {
                let code = errno
                throw AtomicFileError(path: trimmed, reason: "cannot rename the temporary directory \(temp) into place (\(errnoText(code)))")
            }
        } catch {
            try? FileManager.default.removeItem(atPath: temp)
            throw error
        }
    }
}
