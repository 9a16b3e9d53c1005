#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The process's resident memory as the kernel counts it (Linux `/proc/self/status`): what the
/// ledger cannot see — memory that left the ledger (spilled bytes left in the page cache are not
/// resident in the process, but pages of a tmpfs would be memory all the same), allocator slack,
/// code and libraries. Nil where the system does not say.
public enum ProcessMemory {
    /// Resident bytes now (`VmRSS`).
    public static var residentBytes: Int? { statusField("VmRSS:") }

    /// The resident high-water mark (`VmHWM`) since the process started or the last
    /// ``resetPeakResident()``.
    public static var peakResidentBytes: Int? { statusField("VmHWM:") }

    /// Starts the resident high-water mark afresh from the current resident size (Linux ≥ 4.0:
    /// writes 5 to `/proc/self/clear_refs`). Returns whether it could.
    @discardableResult
    public static func resetPeakResident() -> Bool {
        let fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return write(fd, "5", 1) == 1
    }

    private static func statusField(_ name: String) -> Int? {
        let fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 8192)
        let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return nil }
        let text = String(decoding: bytes[0..<n], as: UTF8.self)
        for line in text.split(separator: "\n") where line.hasPrefix(name) {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            guard parts.count >= 2, let kib = Int(parts[1]) else { return nil }
            return kib * 1024
        }
        return nil
    }
}
