/// A dense, strided, n-dimensional array with reverse-mode autograd.
///
/// Layout: `shape`, `strides` (in elements, may be 0 for expanded axes) and `offset` into a shared
/// ``Storage``. Views (reshape of contiguous data, permute, transpose, slicing, expand) share storage;
/// ops that need contiguous input copy only when the input is not contiguous.
///
/// Compute dtype is `float32`; `int32`/`int64` tensors hold indices; the other dtypes are storage
/// forms (see ``DType``) converted with ``Tensor/converted(to:scale:)``.
///
/// Autograd: a tensor with `requiresGrad` and no `gradFn` is a leaf (a parameter or an input);
/// ``backward(gradient:)`` accumulates into leaves' ``grad``. An op output has a `gradFn` node
/// that holds, through saved-tensor slots, what the op's backward needs.
///
/// Ownership: a tensor and its graph are owned by one thread at a time.
public final class Tensor: @unchecked Sendable {
    public let storage: Storage
    public let shape: [Int]
    public let strides: [Int]
    public let offset: Int
    public let dtype: DType

    /// Whether gradients flow to this tensor. Set on leaves (parameters); op outputs get it from inputs.
    public var requiresGrad: Bool
    /// The node that made this tensor (nil for leaves and for tensors made without grad).
    public internal(set) var gradFn: Node?
    /// Accumulated gradient of a leaf after ``backward(gradient:)``.
    public var grad: Tensor?
    /// Optional human name (parameters carry their module path, e.g. `blocks.0.attn.qkv.weight`).
    public var name: String?

    public init(storage: Storage, shape: [Int], strides: [Int], offset: Int = 0, dtype: DType,
                requiresGrad: Bool = false) {
        precondition(shape.count == strides.count, "Tensor: shape \(shape) and strides \(strides) differ in rank")
        precondition(shape.allSatisfy { $0 >= 0 }, "Tensor: negative extent in shape \(shape)")
        self.storage = storage
        self.shape = shape
        self.strides = strides
        self.offset = offset
        self.dtype = dtype
        self.requiresGrad = requiresGrad
    }

    /// A new contiguous tensor with uninitialised contents.
    public convenience init(uninitializedShape shape: [Int], dtype: DType = .float32,
                            category: MemoryCategory = .temporaries, label: String = "tensor") {
        let count = ShapeRules.count(shape)
        let storage = Storage(byteCount: count * dtype.byteSize, category: category, label: label)
        self.init(storage: storage, shape: shape, strides: ShapeRules.contiguousStrides(shape), dtype: dtype)
    }

    /// A tensor with the given layout over placeholder storage of `storageBytes` bytes (read-only
    /// zero pages outside the ledger, ``Storage/placeholder(byteCount:)``): what an op interceptor
    /// gives for an output nothing reads.
    public static func placeholder(shape: [Int], strides: [Int], offset: Int, dtype: DType, storageBytes: Int) -> Tensor {
        Tensor(storage: .placeholder(byteCount: storageBytes), shape: shape, strides: strides, offset: offset, dtype: dtype)
    }

    // MARK: Geometry

    public var rank: Int { shape.count }
    /// Number of elements.
    public var count: Int { ShapeRules.count(shape) }
    /// Bytes the elements take (not the storage, which views share).
    public var byteCount: Int { count * dtype.byteSize }
    public var isLeaf: Bool { gradFn == nil }

    /// Whether elements are laid out row-major without gaps starting at `offset`.
    public var isContiguous: Bool {
        var expected = 1
        for i in stride(from: rank - 1, through: 0, by: -1) where shape[i] != 1 {
            if strides[i] != expected { return false }
            expected *= shape[i]
        }
        return true
    }

    // MARK: Raw access (kernels)

    /// Pointer to the first element as Float (dtype must be float32).
    @inlinable
    public var floatPointer: UnsafeMutablePointer<Float> {
        precondition(dtype == .float32, "floatPointer: tensor is \(dtype), not float32")
        return storage.pointer.assumingMemoryBound(to: Float.self) + offset
    }

    /// Pointer to the first element as raw bytes.
    public var rawPointer: UnsafeMutableRawPointer { storage.pointer + offset * dtype.byteSize }

    /// Runs `body` over the elements of a contiguous float32 tensor.
    @inlinable
    public func withUnsafeFloats<R>(_ body: (UnsafeMutableBufferPointer<Float>) throws -> R) rethrows -> R {
        precondition(isContiguous, "withUnsafeFloats: tensor of shape \(shape) strides \(strides) is not contiguous")
        return try body(UnsafeMutableBufferPointer(start: floatPointer, count: count))
    }

    /// The elements in row-major order as Floats (any dtype; converts).
    public func toArray() -> [Float] {
        let c = contiguous()
        switch c.dtype {
        case .float32:
            return Array(UnsafeBufferPointer(start: c.floatPointer, count: c.count))
        case .int32:
            let p = c.rawPointer.assumingMemoryBound(to: Int32.self)
            return (0..<c.count).map { Float(p[$0]) }
        case .int64:
            let p = c.rawPointer.assumingMemoryBound(to: Int64.self)
            return (0..<c.count).map { Float(p[$0]) }
        default:
            return c.converted(to: .float32).toArray()
        }
    }

    /// The elements of an integer tensor in row-major order.
    public func toIntArray() -> [Int] {
        let c = contiguous()
        switch c.dtype {
        case .int32:
            let p = c.rawPointer.assumingMemoryBound(to: Int32.self)
            return (0..<c.count).map { Int(p[$0]) }
        case .int64:
            let p = c.rawPointer.assumingMemoryBound(to: Int64.self)
            return (0..<c.count).map { Int(p[$0]) }
        default:
            return c.toArray().map { Int($0) }
        }
    }

    /// The single value of a one-element tensor.
    public var item: Float {
        precondition(count == 1, "item: tensor of shape \(shape) has \(count) elements, not 1")
        return toArray()[0]
    }
}

// MARK: - Factories

extension Tensor {
    /// A float32 tensor holding `values` (row-major) with `shape`.
    public convenience init(_ values: [Float], shape: [Int], requiresGrad: Bool = false,
                            category: MemoryCategory = .temporaries, label: String = "tensor") {
        precondition(values.count == ShapeRules.count(shape),
                     "Tensor(values:shape:): \(values.count) values do not fill shape \(shape)")
        self.init(uninitializedShape: shape, dtype: .float32, category: category, label: label)
        values.withUnsafeBufferPointer { src in
            floatPointer.update(from: src.baseAddress!, count: values.count)
        }
        self.requiresGrad = requiresGrad
    }

    /// An integer tensor (int32 or int64) holding `values` with `shape`.
    public convenience init(indices values: [Int], shape: [Int], dtype: DType = .int32, label: String = "indices") {
        precondition(dtype == .int32 || dtype == .int64, "Tensor(indices:): dtype must be int32 or int64, got \(dtype)")
        precondition(values.count == ShapeRules.count(shape),
                     "Tensor(indices:shape:): \(values.count) values do not fill shape \(shape)")
        self.init(uninitializedShape: shape, dtype: dtype, label: label)
        if dtype == .int32 {
            let p = rawPointer.assumingMemoryBound(to: Int32.self)
            for (i, v) in values.enumerated() {
                precondition(v >= Int(Int32.min) && v <= Int(Int32.max), "Tensor(indices:): \(v) does not fit int32")
                p[i] = Int32(v)
            }
        } else {
            let p = rawPointer.assumingMemoryBound(to: Int64.self)
            for (i, v) in values.enumerated() { p[i] = Int64(v) }
        }
    }

    /// A scalar (rank-0) float32 tensor.
    public convenience init(scalar: Float, requiresGrad: Bool = false) {
        self.init([scalar], shape: [], requiresGrad: requiresGrad)
    }

    /// A float32 tensor with every element `value`.
    public static func full(_ shape: [Int], _ value: Float, category: MemoryCategory = .temporaries,
                            label: String = "full") -> Tensor {
        let t = Tensor(uninitializedShape: shape, category: category, label: label)
        t.floatPointer.initialize(repeating: value, count: t.count)
        return t
    }

    public static func zeros(_ shape: [Int], category: MemoryCategory = .temporaries, label: String = "zeros") -> Tensor {
        let t = Tensor(uninitializedShape: shape, category: category, label: label)
        t.storage.pointer.initializeMemory(as: UInt8.self, repeating: 0, count: t.byteCount)
        return t
    }

    public static func ones(_ shape: [Int], category: MemoryCategory = .temporaries, label: String = "ones") -> Tensor {
        full(shape, 1, category: category, label: label)
    }

    /// Normal(mean, std) values drawn from `generator`.
    public static func randn(_ shape: [Int], mean: Float = 0, std: Float = 1, generator: RandomGenerator,
                             requiresGrad: Bool = false, category: MemoryCategory = .temporaries) -> Tensor {
        let t = Tensor(uninitializedShape: shape, category: category, label: "randn")
        t.withUnsafeFloats { generator.fillNormal($0, mean: mean, std: std) }
        t.requiresGrad = requiresGrad
        return t
    }

    /// Uniform [low, high) values drawn from `generator`.
    public static func uniform(_ shape: [Int], low: Float = 0, high: Float = 1, generator: RandomGenerator,
                               requiresGrad: Bool = false) -> Tensor {
        let t = Tensor(uninitializedShape: shape, label: "uniform")
        t.withUnsafeFloats { buf in
            generator.fillUniform(buf)
            let scale = high - low
            for i in buf.indices { buf[i] = low + scale * buf[i] }
        }
        t.requiresGrad = requiresGrad
        return t
    }

    /// Marks this leaf tensor as a parameter: moves its bytes to the ledger's parameters category,
    /// sets `requiresGrad` and the name.
    @discardableResult
    public func makeParameter(name: String? = nil) -> Tensor {
        precondition(isLeaf, "makeParameter: \(name ?? "tensor") is not a leaf")
        storage.setCategory(.parameters)
        requiresGrad = true
        if let name { self.name = name }
        return self
    }

    /// A tensor sharing this one's storage but cut from the graph (no gradFn, no requiresGrad).
    public func detached() -> Tensor {
        Tensor(storage: storage, shape: shape, strides: strides, offset: offset, dtype: dtype)
    }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let values = count <= 16 ? toArray().map { "\($0)" }.joined(separator: ", ") : "\(count) elements"
        return "Tensor(\(dtype), shape: \(shape), [\(values)]\(requiresGrad ? ", requiresGrad" : ""))"
    }
}
