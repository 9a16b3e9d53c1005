import CRematKernels

/// 2-D max pooling over NCHW `x` `[N, C, H, W]` (PyTorch's `max_pool2d`, `ceil_mode=False`,
/// dilation 1): `y[n, c, oh, ow] = max` over the `kernel×kernel` window at `(oh·stride − padding,
/// ow·stride − padding)`; padding counts as −inf. `OH = ⌊(H + 2·padding − kernel)/stride⌋ + 1`.
/// NaN propagates (a NaN in the window wins, as in PyTorch).
///
/// Backward: the gradient of each output goes to its argmax (the first maximum in row-major window
/// order); overlapping windows add up.
///
/// Saves: the int32 argmax index within the input plane per output element (role "argmax",
/// 4 bytes per output element), NOT the input. ResNet's stem pool (3×3, stride 2) thus keeps a
/// quarter of the input's element count as indices.
public func maxPool2d(_ x: Tensor, kernel: Int = 3, stride: Int = 2, padding: Int = 1) -> Tensor {
    precondition(x.dtype == .float32, "max_pool2d: input must be float32, got \(x.dtype) (shape \(x.shape))")
    precondition(x.rank == 4, "max_pool2d: input must be [N, C, H, W], got shape \(x.shape)")
    precondition(kernel >= 1 && stride >= 1 && padding >= 0 && padding <= kernel / 2,
                 "max_pool2d: needs kernel ≥ 1, stride ≥ 1 and 0 ≤ padding ≤ kernel/2, got kernel \(kernel) stride \(stride) padding \(padding)")
    let shape = x.shape
    let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3])
    precondition(h + 2 * padding >= kernel && w + 2 * padding >= kernel,
                 "max_pool2d: kernel \(kernel) is larger than the padded input \(shape) (padding \(padding))")
    let oh = (h + 2 * padding - kernel) / stride + 1, ow = (w + 2 * padding - kernel) / stride + 1
    precondition(h * w <= Int(Int32.max), "max_pool2d: plane of \(h)x\(w) does not fit int32 indices")
    return Autograd.op(.maxPool2d, inputs: [x]) {
        let input = x.contiguousInput()
        let out = Tensor(uninitializedShape: [n, c, oh, ow], label: "max_pool2d")
        let indices = Tensor(uninitializedShape: [n, c, oh, ow], dtype: .int32, label: "max_pool2d_indices")
        var g = remat_conv_geometry(channels: c, height: h, width: w, kernel_h: kernel, kernel_w: kernel,
                                    stride_h: stride, stride_w: stride, pad_h: padding, pad_w: padding,
                                    dilation_h: 1, dilation_w: 1, out_h: oh, out_w: ow)
        let planes = n * c
        withExtendedLifetime(input) {
            let px = UnsafePointer(input.floatPointer), py = out.floatPointer
            let pi = indices.rawPointer.assumingMemoryBound(to: Int32.self)
            withUnsafePointer(to: &g) { gp in
                parallelChunks(planes, grain: Swift.max(1, elementwiseGrain / Swift.max(h * w, 1))) { lo, hi in
                    remat_max_pool2d_f32(px, gp, py, pi, lo, hi)
                }
            }
        }
        return OpResult(out, saving: [("argmax", indices)]) { ctx, grad in
            let idx = ctx.saved[0]
            let dy = grad.contiguousInput()
            let dx = Tensor(uninitializedShape: shape, label: "max_pool2d_backward")
            withExtendedLifetime((idx, dy)) {
                let pi = UnsafePointer(idx.rawPointer.assumingMemoryBound(to: Int32.self))
                let pg = UnsafePointer(dy.floatPointer), pd = dx.floatPointer
                parallelChunks(planes, grain: Swift.max(1, elementwiseGrain / Swift.max(h * w, 1))) { lo, hi in
                    remat_max_pool2d_backward_f32(pg, pi, h * w, oh * ow, pd, lo, hi)
                }
            }
            return [dx]
        }
    }
}

/// Adaptive average pooling of NCHW `x` to `outputSize × outputSize`; only the global case
/// `outputSize: 1` is supported (ResNet's `avgpool`): `y[n, c, 0, 0] = Σ_{h, w} x[n, c, h, w] / (H·W)`
/// (summed in double). Backward: `dx = dy/(H·W)` broadcast over the plane.
///
/// Saves: nothing (0 bytes): only the input shape is kept.
public func adaptiveAvgPool2d(_ x: Tensor, outputSize: Int = 1) -> Tensor {
    precondition(x.dtype == .float32, "adaptive_avg_pool2d: input must be float32, got \(x.dtype) (shape \(x.shape))")
    precondition(x.rank == 4, "adaptive_avg_pool2d: input must be [N, C, H, W], got shape \(x.shape)")
    precondition(outputSize == 1, "adaptive_avg_pool2d: only outputSize 1 (global average pooling) is supported, got \(outputSize)")
    let shape = x.shape
    let (n, c, p) = (shape[0], shape[1], shape[2] * shape[3])
    precondition(p > 0, "adaptive_avg_pool2d: empty plane in input shape \(shape)")
    return Autograd.op(.adaptiveAvgPool2d, inputs: [x]) {
        let input = x.contiguousInput()
        let out = Tensor(uninitializedShape: [n, c, 1, 1], label: "adaptive_avg_pool2d")
        let planeGrain = Swift.max(1, elementwiseGrain / p)
        withExtendedLifetime(input) {
            let px = UnsafePointer(input.floatPointer), py = out.floatPointer
            parallelChunks(n * c, grain: planeGrain) { lo, hi in remat_plane_mean_f32(px, p, py, lo, hi) }
        }
        return OpResult(out) { _, grad in
            let dy = grad.contiguousInput()
            let dx = Tensor(uninitializedShape: shape, label: "adaptive_avg_pool2d_backward")
            withExtendedLifetime(dy) {
                let pg = UnsafePointer(dy.floatPointer), pd = dx.floatPointer
                parallelChunks(n * c, grain: planeGrain) { lo, hi in remat_plane_mean_backward_f32(pg, p, pd, lo, hi) }
            }
            return [dx]
        }
    }
}
