/// Shape helpers shared by every op: row-major strides, element counts, broadcasting.
public enum ShapeRules {
    /// Row-major (C-order) strides of a contiguous tensor of `shape`, in elements.
    @inlinable
    public static func contiguousStrides(_ shape: [Int]) -> [Int] {
        var strides = [Int](repeating: 1, count: shape.count)
        var running = 1
        for i in stride(from: shape.count - 1, through: 0, by: -1) {
            strides[i] = running
            running *= shape[i]
        }
        return strides
    }

    /// Number of elements of `shape` (1 for a scalar).
    @inlinable
    public static func count(_ shape: [Int]) -> Int { shape.reduce(1, *) }

    /// NumPy/PyTorch broadcasting of two shapes; stops with a message naming `op` and both shapes.
    public static func broadcast(_ a: [Int], _ b: [Int], op: String) -> [Int] {
        let n = max(a.count, b.count)
        var out = [Int](repeating: 1, count: n)
        for i in 0..<n {
            let da = i < n - a.count ? 1 : a[i - (n - a.count)]
            let db = i < n - b.count ? 1 : b[i - (n - b.count)]
            precondition(da == db || da == 1 || db == 1,
                         "\(op): shapes \(a) and \(b) cannot be broadcast together (axis \(i - n) has \(da) vs \(db))")
            out[i] = da == 1 ? db : da
        }
        return out
    }

    /// Normalises a possibly negative axis; stops with a message naming `op` when out of range.
    @inlinable
    public static func axis(_ axis: Int, rank: Int, op: String) -> Int {
        let a = axis < 0 ? axis + rank : axis
        precondition(a >= 0 && a < max(rank, 1), "\(op): axis \(axis) is out of range for a tensor of rank \(rank)")
        return a
    }
}
