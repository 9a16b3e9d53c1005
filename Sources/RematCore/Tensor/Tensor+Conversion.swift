extension Tensor {
    /// This tensor's values in another dtype, in new contiguous storage.
    ///
    /// To a storage dtype: `convert(x · scale)` with round-to-nearest-even (FP8 saturating, see
    /// ``DTypeConversion``). From a storage dtype to `float32`: `decode(x) · scale`.
    /// No autograd: conversion is how saved tensors and weights are packed, and gradients flow
    /// through the float32 values the packing came from.
    public func converted(to target: DType, scale: Float = 1, category: MemoryCategory = .temporaries,
                          label: String? = nil) -> Tensor {
        let out = Tensor(uninitializedShape: shape, dtype: target, category: category,
                         label: label ?? "to_\(target)")
        if target == dtype && scale == 1 {
            copyElements(into: out)
            return out
        }
        let source = isContiguous ? self : contiguousCopy()
        if source.dtype == .float32 {
            DTypeConversion.encode(UnsafeBufferPointer(start: source.floatPointer, count: count),
                                   to: out.rawPointer, as: target, scale: scale)
        } else if target == .float32 {
            DTypeConversion.decode(source.rawPointer, as: source.dtype, count: count,
                                   into: UnsafeMutableBufferPointer(start: out.floatPointer, count: count), scale: scale)
        } else {
            return source.converted(to: .float32).converted(to: target, scale: scale, category: category, label: label)
        }
        return out
    }
}
