import Foundation

/// A CSV table (RFC 4180): a header and rows of text fields. Fields holding a comma, a quote or a
/// line break are quoted, quotes doubled. Written atomically (``AtomicFile``).
public struct CSVTable: Sendable, Equatable {
    public var header: [String]
    public var rows: [[String]]

    public init(header: [String], rows: [[String]] = []) {
        self.header = header
        self.rows = rows
    }

    public var text: String {
        var out = ""
        func line(_ fields: [String]) {
            out += fields.map(Self.quote).joined(separator: ",")
            out += "\n"
        }
        line(header)
        for r in rows { line(r) }
        return out
    }

    public func write(to path: String) throws {
        let bytes = Array(text.utf8)
        try AtomicFile.write(to: path) { try $0.write(bytes) }
    }

    static func quote(_ f: String) -> String {
        guard f.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return f }
        return "\"" + f.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    /// Reads a table; every row must have as many fields as the header.
    /// - Throws: ``CSVError`` naming the file and the line.
    public static func read(path: String) throws -> CSVTable {
        let data: Data
        do { data = try RegularFile.contents(atPath: path) } catch let e as RegularFile.Error {
            throw CSVError(file: path, line: 0, reason: e.reason)
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw CSVError(file: path, line: 0, reason: "not UTF-8 text")
        }
        return try parse(text, file: path)
    }

    public static func parse(_ text: String, file: String) throws -> CSVTable {
        var records: [[String]] = []
        var lineNumbers: [Int] = []
        var field = ""
        var record: [String] = []
        var inQuotes = false
        var line = 1
        var recordLine = 1
        var chars = Array(text.unicodeScalars)[...]
        var sawAny = false
        while let c = chars.popFirst() {
            sawAny = true
            if inQuotes {
                if c == "\"" {
                    if chars.first == "\"" { chars.removeFirst(); field.unicodeScalars.append("\"") } else { inQuotes = false }
                } else {
                    if c == "\n" { line += 1 }
                    field.unicodeScalars.append(c)
                }
                continue
            }
            switch c {
            case "\"":
                guard field.isEmpty else { throw CSVError(file: file, line: line, reason: "a quote inside an unquoted field") }
                inQuotes = true
            case ",":
                record.append(field); field = ""
            case "\r":
                continue
            case "\n":
                record.append(field); field = ""
                records.append(record); lineNumbers.append(recordLine)
                record = []
                line += 1
                recordLine = line
            default:
                field.unicodeScalars.append(c)
            }
        }
        if inQuotes { throw CSVError(file: file, line: line, reason: "unterminated quoted field") }
        if sawAny && (!field.isEmpty || !record.isEmpty) {
            record.append(field)
            records.append(record); lineNumbers.append(recordLine)
        }
        guard let header = records.first else { throw CSVError(file: file, line: 1, reason: "empty file (no header)") }
        for (r, n) in zip(records.dropFirst(), lineNumbers.dropFirst()) where r.count != header.count {
            throw CSVError(file: file, line: n, reason: "\(r.count) fields, the header has \(header.count)")
        }
        return CSVTable(header: header, rows: Array(records.dropFirst()))
    }

    /// Column index of `name`. - Throws: ``CSVError`` when the header lacks it.
    public func column(_ name: String, file: String) throws -> Int {
        guard let i = header.firstIndex(of: name) else {
            throw CSVError(file: file, line: 1, reason: "missing column '\(name)' (header: \(header.joined(separator: ",")))")
        }
        return i
    }
}

/// A CSV file that cannot be read as the table expected; names the file and line.
public struct CSVError: Error, CustomStringConvertible, Equatable, Sendable {
    public var file: String
    public var line: Int
    public var reason: String
    public var description: String { "\(file):\(line): \(reason)" }
}
