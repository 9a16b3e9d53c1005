import Foundation

/// A training batch: `input` (token ids `[B, T]`, or images `[B, C, H, W]`) and `target`
/// (next tokens `[B, T]`, or classes `[B]`).
public struct TrainingBatch {
    public var input: Tensor
    public var target: Tensor
    public init(input: Tensor, target: Tensor) {
        self.input = input
        self.target = target
    }
}

/// A batch of next-token prediction data.
public typealias TokenBatch = TrainingBatch

/// Something that yields token batches for training.
public protocol TokenBatchSource {
    /// The next batch of `batchSize` windows of `length` tokens (target = input shifted by one).
    mutating func nextBatch(batchSize: Int, length: Int) -> TokenBatch
}

/// Errors a user can cause with data files.
public enum DatasetError: Error, CustomStringConvertible, Equatable {
    case cannotRead(path: String, reason: String)
    case tooShort(path: String, bytes: Int, needed: Int)

    public var description: String {
        switch self {
        case .cannotRead(let path, let reason): return "cannot read data file \(path): \(reason)"
        case .tooShort(let path, let bytes, let needed):
            return "data file \(path) has \(bytes) bytes; a training window needs at least \(needed) (context length + 1)"
        }
    }
}

/// Random windows of a byte sequence (a text file read as bytes: vocabulary 256).
public struct ByteSequenceDataset: TokenBatchSource {
    public let bytes: [UInt8]
    private let generator: RandomGenerator

    public init(bytes: [UInt8], seed: UInt64 = 0) {
        self.bytes = bytes
        generator = RandomGenerator(seed: seed)
    }

    /// Reads a file as bytes; throws ``DatasetError`` naming the file.
    public init(path: String, minimumLength: Int, seed: UInt64 = 0) throws {
        let data: Data
        do { data = try RegularFile.contents(atPath: path) } catch let e as RegularFile.Error {
            throw DatasetError.cannotRead(path: path, reason: e.reason)
        }
        guard data.count >= minimumLength else { throw DatasetError.tooShort(path: path, bytes: data.count, needed: minimumLength) }
        self.init(bytes: [UInt8](data), seed: seed)
    }

    public mutating func nextBatch(batchSize: Int, length: Int) -> TokenBatch {
        precondition(bytes.count > length, "ByteSequenceDataset: \(bytes.count) bytes cannot fill a window of \(length + 1)")
        var input = [Int](), target = [Int]()
        input.reserveCapacity(batchSize * length)
        target.reserveCapacity(batchSize * length)
        for _ in 0..<batchSize {
            let start = Int(generator.nextUInt64() % UInt64(bytes.count - length))
            for i in 0..<length {
                input.append(Int(bytes[start + i]))
                target.append(Int(bytes[start + i + 1]))
            }
        }
        return TokenBatch(input: Tensor(indices: input, shape: [batchSize, length]),
                          target: Tensor(indices: target, shape: [batchSize, length]))
    }
}

/// The built-in deterministic dataset: a stream of additions written in decimal, one per line,
/// e.g. `"37+5=42\n918+64=982\n"`. A small formal language a model visibly learns: the layout
/// (digits, `+`, `=`, newline) within tens of steps, then the digits of the sums, which depend on
/// the operands. No download needed.
public enum ArithmeticText {
    /// `count` bytes of the stream generated from `seed`.
    public static func generate(bytes count: Int, seed: UInt64 = 0) -> [UInt8] {
        let rng = RandomGenerator(seed: seed)
        var out: [UInt8] = []
        out.reserveCapacity(count + 32)
        while out.count < count {
            let a = Int(rng.nextUInt64() % 1000), b = Int(rng.nextUInt64() % 1000)
            out.append(contentsOf: Array("\(a)+\(b)=\(a + b)\n".utf8))
        }
        return Array(out.prefix(count))
    }

    /// The built-in dataset: 1 MiB of the stream.
    public static func dataset(seed: UInt64 = 0) -> ByteSequenceDataset {
        ByteSequenceDataset(bytes: generate(bytes: 1 << 20, seed: seed), seed: seed &+ 1)
    }
}
