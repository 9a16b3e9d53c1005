import CRematBLAS
import CRematKernels

/// 2-D convolution (cross-correlation, as PyTorch's `conv2d`) over NCHW tensors, groups = 1.
///
/// Shapes: `x` `[N, C, H, W]`, `weight` `[K, C, kh, kw]`, `bias` `[K]` (optional); output
/// `[N, K, OH, OW]` with `OH = ⌊(H + 2·ph − dh·(kh − 1) − 1)/sh⌋ + 1` (likewise OW).
///
/// Math: `y[n, k, oh, ow] = b[k] + Σ_{c, i, j} w[k, c, i, j] · x[n, c, oh·sh − ph + i·dh, ow·sw − pw + j·dw]`
/// (zero outside the image). Computed as im2col + GEMM through the BLAS seam (`remat_sgemm`), group
/// by group of whole images (about ``Convolution/columnsPerGroup`` = 512 output pixels per group):
/// the columns `col[C·kh·kw, nb·P]` of the group (`P = OH·OW`), then `Y = W[K, C·kh·kw] · col`,
/// one GEMM for the group. Grouping matters both ways: ResNet's late layers have 2×2 outputs
/// (per-image GEMMs would be `K × 4` slivers), and OpenBLAS runs ~512-column GEMMs 10–25 % faster
/// than whole-batch ones because the column block stays in L2 right after im2col wrote it. A group
/// of several images goes through a `[K, nb·P]` product that is block-transposed into NCHW (bias
/// added on the way); a one-image group multiplies straight into the output. 1×1 stride-1
/// unpadded convolutions with at least ``Convolution/pointwisePerImageMinPixels`` output pixels
/// skip im2col: `Y[n] = W · X[n]` per image.
///
/// Backward, per group: `dW += dY' · colᵀ` (the columns are rebuilt from the saved input, never
/// saved), `dcol = Wᵀ · dY'` into the same column buffer, then col2im into `dx` (only when `x`
/// needs a gradient: the stem's image input does not); `dY'` is `dY` block-transposed to
/// `[K, nb·P]` (read in place for one-image groups). `db = Σ_{n, oh, ow} dy` (double accumulation).
///
/// Temporaries (ledger category temporaries, released when the call returns): the column buffer
/// (label `conv2d_columns`, `4·C·kh·kw·nb·P` bytes — e.g. 1.2 MB for a ResNet 3×3 layer, at most
/// ``Convolution/columnBudgetElements`` floats = 16 MiB) and, for multi-image groups, the
/// `[K, nb·P]` GEMM product (forward) or transposed output gradient (backward).
///
/// Saves: the input `x` (role "input", `4·N·C·H·W` bytes; a non-contiguous input is saved as the
/// view it is) and `weight` (role "weight", a parameter: no extra bytes). Nothing else.
///
/// Numerics: float32 GEMM accumulation (OpenBLAS), the same order of error as PyTorch's
/// oneDNN convolution; bias gradients are summed in double. Under autocast
/// (``AutocastPrecision``) the input, the weight (a copy; rounded again for backward), the bias
/// and the output are rounded to the precision, and the rounded input is what is saved; backward
/// rounds the output gradient and the gradients it returns.
public func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor?, stride: (Int, Int) = (1, 1),
                   padding: (Int, Int) = (0, 0), dilation: (Int, Int) = (1, 1)) -> Tensor {
    precondition(x.dtype == .float32 && weight.dtype == .float32,
                 "conv2d: needs float32 input and weight, got \(x.dtype) and \(weight.dtype)")
    precondition(x.rank == 4, "conv2d: input must be [N, C, H, W], got shape \(x.shape)")
    precondition(weight.rank == 4, "conv2d: weight must be [K, C, kh, kw], got shape \(weight.shape)")
    precondition(weight.shape[1] == x.shape[1],
                 "conv2d: input has \(x.shape[1]) channels (shape \(x.shape)) but weight \(weight.shape) expects \(weight.shape[1]) (groups = 1)")
    precondition(stride.0 >= 1 && stride.1 >= 1 && dilation.0 >= 1 && dilation.1 >= 1 && padding.0 >= 0 && padding.1 >= 0,
                 "conv2d: stride \(stride) and dilation \(dilation) must be ≥ 1 and padding \(padding) ≥ 0")
    if let bias {
        precondition(bias.shape == [weight.shape[0]], "conv2d: bias shape \(bias.shape) must be [\(weight.shape[0])]")
    }
    let geo = ConvGeometry(input: x.shape, weight: weight.shape, stride: stride, padding: padding, dilation: dilation)
    let precision = Autocast.current
    return Autograd.op(.conv2d, inputs: [x, weight] + [bias].compactMap { $0 }) {
        let x = Autocast.operand(x, precision, label: "conv2d_input_autocast")
        let rw = Autocast.operand(weight, precision, label: "conv2d_weight_autocast")
        let rb = bias.map { Autocast.operand($0, precision, label: "conv2d_bias_autocast") }
        let out = conv2dForwardKernel(x.contiguousInput(), weight: rw.contiguousInput(), bias: rb?.contiguousInput(), geo)
        if let precision { Autocast.roundInPlace(out, precision) }
        let hasBias = bias != nil
        return OpResult(out, saving: [("input", x), ("weight", Autocast.saved(weight, rw))]) { ctx, g in
            let xs = ctx.saved[0].contiguousInput(), ws = Autocast.restored(ctx.saved[1], precision, label: "conv2d_weight_autocast").contiguousInput()
            let dy = Autocast.operand(g, precision, label: "conv2d_grad_autocast").contiguousInput()
            let (dx, dw) = conv2dBackwardKernel(xs, weight: ws, gradOutput: dy, geo,
                                                needInput: ctx.needsInputGrad[0], needWeight: ctx.needsInputGrad[1])
            var grads: [Tensor?] = [dx, dw]
            if hasBias { grads.append(ctx.needsInputGrad[2] ? channelSum(dy, channels: geo.k, pixels: geo.p) : nil) }
            return Autocast.gradients(grads, precision)
        }
    }
}

/// Tuning constants of ``conv2d(_:weight:bias:stride:padding:dilation:)``.
public enum Convolution {
    /// Output pixels (GEMM columns) per group of images: whole images are grouped until a group
    /// has about this many pixels. OpenBLAS runs these GEMMs 10–25 % faster with ~512 columns than
    /// with thousands (the column block stays in L2), and im2col writes what the GEMM reads next.
    public static let columnsPerGroup = 512
    /// Largest column buffer (in floats) one group may use: 4 Mi floats = 16 MiB (bounds groups of
    /// big images, which are then one image each).
    public static let columnBudgetElements = 1 << 22
    /// 1×1 stride-1 convolutions with at least this many output pixels per image run one GEMM per
    /// image straight from the input, without im2col; below it the images are grouped (through a
    /// transposed copy).
    public static let pointwisePerImageMinPixels = 256
}

/// Shape arithmetic of one convolution (all Ints, safe to capture in a backward closure).
struct ConvGeometry {
    let n, c, h, w, k, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow: Int
    var p: Int { oh * ow }
    var ckk: Int { c * kh * kw }
    var isPointwise: Bool { kh == 1 && kw == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0 }

    init(input: [Int], weight: [Int], stride: (Int, Int), padding: (Int, Int), dilation: (Int, Int)) {
        (n, c, h, w) = (input[0], input[1], input[2], input[3])
        (k, kh, kw) = (weight[0], weight[2], weight[3])
        (sh, sw, ph, pw, dh, dw) = (stride.0, stride.1, padding.0, padding.1, dilation.0, dilation.1)
        let effH = dh * (kh - 1) + 1, effW = dw * (kw - 1) + 1
        precondition(h + 2 * ph >= effH && w + 2 * pw >= effW,
                     "conv2d: kernel \(kh)x\(kw) (dilation \(dilation)) is larger than the padded input \(input) (padding \(padding))")
        oh = (h + 2 * ph - effH) / sh + 1
        ow = (w + 2 * pw - effW) / sw + 1
    }

    var c_geometry: remat_conv_geometry {
        remat_conv_geometry(channels: c, height: h, width: w, kernel_h: kh, kernel_w: kw, stride_h: sh, stride_w: sw,
                            pad_h: ph, pad_w: pw, dilation_h: dh, dilation_w: dw, out_h: oh, out_w: ow)
    }

    /// Images per GEMM group: about ``Convolution/columnsPerGroup`` output pixels, within the column budget.
    var imagesPerGroup: Int {
        let byPixels = Swift.max(1, Convolution.columnsPerGroup / Swift.max(p, 1))
        let byBudget = Swift.max(1, Convolution.columnBudgetElements / Swift.max(ckk * p, 1))
        return Swift.max(1, Swift.min(n, byPixels, byBudget))
    }

    var usesPerImageGEMM: Bool { isPointwise && p >= Convolution.pointwisePerImageMinPixels }
}

/// Row-major SGEMM through the seam: `threads` 0 lets the seam choose (multi-threaded when large),
/// 1 forces a single thread (each worker of a parallel loop runs its own GEMMs).
@inline(__always)
private func sgemm(_ ta: Bool, _ tb: Bool, _ m: Int, _ n: Int, _ k: Int, _ a: UnsafePointer<Float>, _ lda: Int,
                   _ b: UnsafePointer<Float>, _ ldb: Int, beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int,
                   threads: Int) {
    if threads == 1 {
        remat_sgemm_raw(1, ta ? 1 : 0, tb ? 1 : 0, Int32(m), Int32(n), Int32(k), 1, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    } else {
        remat_sgemm(ta ? 1 : 0, tb ? 1 : 0, Int32(m), Int32(n), Int32(k), 1, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
}

/// Parallel grain (in outer items) so that one chunk moves about `elementwiseGrain` floats.
@inline(__always)
private func grain(_ perItem: Int) -> Int { Swift.max(1, elementwiseGrain / Swift.max(perItem, 1)) }

/// How the groups of a convolution are spread over threads.
///
/// With several threads and at least two groups, each worker ("slot") takes a contiguous run of
/// groups with its own column buffer and single-threaded GEMMs (no synchronisation inside a group;
/// the backward's weight gradient is accumulated per slot and summed at the end). With one thread,
/// or a single group (ResNet's last stage at small batch), groups run one after another and the
/// GEMMs and im2col use the threads themselves.
private struct ConvSchedule {
    let group: Int          // images per group (1 on the per-image pointwise path)
    let groups: Int
    let slots: Int          // parallel workers (1: sequential groups)

    init(_ geo: ConvGeometry) {
        group = geo.usesPerImageGEMM ? 1 : geo.imagesPerGroup
        groups = (geo.n + group - 1) / group
        let threads = Runtime.threads
        slots = threads > 1 && groups >= 2 ? Swift.min(threads, groups) : 1
    }

    /// Groups of `slot`.
    func range(_ slot: Int) -> Range<Int> { (groups * slot / slots)..<(groups * (slot + 1) / slots) }

    /// Runs `body(slot, gemmThreads, parallelInner)` for every slot, in parallel when slots > 1.
    func run(_ body: (Int, Int, Bool) -> Void) {
        if slots == 1 {
            body(0, 0, true)
        } else {
            parallelChunks(slots, grain: 1) { lo, hi in for slot in lo..<hi { body(slot, 1, false) } }
        }
    }
}

/// im2col of images [n0, n0 + nb) into `col` (row length nb·P), split over threads when `parallel`.
private func im2col(_ px: UnsafePointer<Float>, _ gp: UnsafePointer<remat_conv_geometry>, _ geo: ConvGeometry,
                    _ n0: Int, _ nb: Int, _ col: UnsafeMutablePointer<Float>, parallel: Bool) {
    let ld = nb * geo.p
    if parallel {
        parallelChunks(geo.c, grain: grain(geo.kh * geo.kw * ld)) { lo, hi in remat_im2col_f32(px, gp, n0, n0 + nb, lo, hi, col, ld) }
    } else {
        remat_im2col_f32(px, gp, n0, n0 + nb, 0, geo.c, col, ld)
    }
}

/// Forward (no autograd): contiguous `x`, `weight`, `bias`.
func conv2dForwardKernel(_ x: Tensor, weight: Tensor, bias: Tensor?, _ geo: ConvGeometry) -> Tensor {
    let out = Tensor(uninitializedShape: [geo.n, geo.k, geo.oh, geo.ow], label: "conv2d")
    if out.count == 0 { return out }
    let (k, p, ckk, chw) = (geo.k, geo.p, geo.ckk, geo.c * geo.h * geo.w)
    let plan = ConvSchedule(geo)
    let perImage = geo.usesPerImageGEMM
    let group = plan.group
    withExtendedLifetime((x, weight, bias)) {
        let px = UnsafePointer(x.floatPointer), pw = UnsafePointer(weight.floatPointer), py = out.floatPointer
        let pb = bias.map { UnsafePointer($0.floatPointer) }
        if ckk == 0 {
            py.initialize(repeating: 0, count: out.count)
        } else if perImage {
            // 1×1 stride 1: Y[n] = W · X[n], no im2col.
            plan.run { slot, threads, _ in
                for i in plan.range(slot) {
                    sgemm(false, false, k, p, ckk, pw, ckk, px + i * chw, p, beta: 0, py + i * k * p, p, threads: threads)
                }
            }
        } else {
            // Per slot: a column buffer and, for multi-image groups, a [K, nb·P] product.
            let columns = Tensor(uninitializedShape: [plan.slots, ckk * group * p], label: "conv2d_columns")
            let product = group > 1 ? Tensor(uninitializedShape: [plan.slots, k * group * p], label: "conv2d_gemm") : nil
            withExtendedLifetime((columns, product)) {
                let pcAll = columns.floatPointer, prAll = product?.floatPointer
                var g = geo.c_geometry
                withUnsafePointer(to: &g) { gp in
                    plan.run { slot, threads, parallel in
                        let pc = pcAll + slot * ckk * group * p
                        for gi in plan.range(slot) {
                            let n0 = gi * group, nb = Swift.min(group, geo.n - n0), ld = nb * p
                            im2col(px, gp, geo, n0, nb, pc, parallel: parallel)
                            if let prAll {
                                let pr = prAll + slot * k * group * p
                                sgemm(false, false, k, ld, ckk, pw, ckk, pc, ld, beta: 0, pr, ld, threads: threads)
                                // [K, nb, P] → [nb, K, P] (+ bias)
                                if parallel {
                                    parallelChunks(k, grain: grain(ld)) { lo, hi in
                                        remat_swap_outer_f32(pr, py + n0 * k * p, k, nb, p, pb, lo, hi)
                                    }
                                } else {
                                    remat_swap_outer_f32(pr, py + n0 * k * p, k, nb, p, pb, 0, k)
                                }
                            } else {
                                sgemm(false, false, k, p, ckk, pw, ckk, pc, p, beta: 0, py + n0 * k * p, p, threads: threads)
                            }
                        }
                    }
                }
            }
        }
        // The bias, where the block transpose did not add it.
        if let pb, ckk == 0 || perImage || group == 1 {
            parallelChunks(geo.n * k, grain: grain(p)) { lo, hi in remat_add_channel_bias_f32(py, pb, k, p, lo, hi) }
        }
    }
    return out
}

/// Backward (no autograd): gradients for the input and the weight, each only when asked for.
func conv2dBackwardKernel(_ x: Tensor, weight: Tensor, gradOutput dy: Tensor, _ geo: ConvGeometry,
                          needInput: Bool, needWeight: Bool) -> (Tensor?, Tensor?) {
    let dx = needInput ? Tensor(uninitializedShape: [geo.n, geo.c, geo.h, geo.w], label: "conv2d_backward_input") : nil
    let dw = needWeight ? Tensor(uninitializedShape: [geo.k, geo.c, geo.kh, geo.kw], label: "conv2d_backward_weight") : nil
    guard needInput || needWeight else { return (nil, nil) }
    let (k, p, ckk, chw) = (geo.k, geo.p, geo.ckk, geo.c * geo.h * geo.w)
    if geo.n == 0 || k == 0 || p == 0 || ckk == 0 {
        dx.map { $0.floatPointer.initialize(repeating: 0, count: $0.count) }
        dw.map { $0.floatPointer.initialize(repeating: 0, count: $0.count) }
        return (dx, dw)
    }
    let plan = ConvSchedule(geo)
    let perImage = geo.usesPerImageGEMM
    let group = plan.group
    // Slot 0 accumulates the weight gradient in dw itself, the other slots in partial buffers.
    let partials = needWeight && plan.slots > 1
        ? Tensor(uninitializedShape: [plan.slots - 1, k * ckk], label: "conv2d_dweight_partial") : nil
    let columns = perImage ? nil : Tensor(uninitializedShape: [plan.slots, ckk * group * p], label: "conv2d_columns")
    let gradT = !perImage && group > 1
        ? Tensor(uninitializedShape: [plan.slots, k * group * p], label: "conv2d_grad_output_t") : nil
    withExtendedLifetime((x, weight, dy, dx, dw, partials, columns, gradT)) {
        let px = UnsafePointer(x.floatPointer), pw = UnsafePointer(weight.floatPointer), pg = UnsafePointer(dy.floatPointer)
        let pdx = dx?.floatPointer, pdw = dw?.floatPointer, ppart = partials?.floatPointer
        let pcAll = columns?.floatPointer, ptAll = gradT?.floatPointer
        var g = geo.c_geometry
        withUnsafePointer(to: &g) { gp in
            plan.run { slot, threads, parallel in
                let dwSlot = slot == 0 ? pdw : ppart.map { $0 + (slot - 1) * k * ckk }
                for (j, gi) in plan.range(slot).enumerated() {
                    let n0 = gi * group, nb = Swift.min(group, geo.n - n0), ld = nb * p
                    let beta: Float = j == 0 ? 0 : 1
                    if perImage {
                        // dW += dY[n] · X[n]ᵀ ; dX[n] = Wᵀ · dY[n]
                        if let dwSlot { sgemm(false, true, k, geo.c, p, pg + n0 * k * p, p, px + n0 * chw, p, beta: beta, dwSlot, geo.c, threads: threads) }
                        if let pdx { sgemm(true, false, geo.c, p, k, pw, geo.c, pg + n0 * k * p, p, beta: 0, pdx + n0 * chw, p, threads: threads) }
                        continue
                    }
                    let pc = pcAll! + slot * ckk * group * p
                    let pt: UnsafePointer<Float>
                    if let ptAll {
                        // dY [nb, K, P] → dY' [K, nb, P]
                        let dst = ptAll + slot * k * group * p
                        if parallel {
                            parallelChunks(nb, grain: grain(k * p)) { lo, hi in remat_swap_outer_f32(pg + n0 * k * p, dst, nb, k, p, nil, lo, hi) }
                        } else {
                            remat_swap_outer_f32(pg + n0 * k * p, dst, nb, k, p, nil, 0, nb)
                        }
                        pt = UnsafePointer(dst)
                    } else {
                        pt = pg + n0 * k * p
                    }
                    if let dwSlot {
                        im2col(px, gp, geo, n0, nb, pc, parallel: parallel)
                        sgemm(false, true, k, ckk, ld, pt, ld, pc, ld, beta: beta, dwSlot, ckk, threads: threads)
                    }
                    if let pdx {
                        sgemm(true, false, ckk, ld, k, pw, ckk, pt, ld, beta: 0, pc, ld, threads: threads)
                        if parallel {
                            parallelChunks(geo.c, grain: grain(geo.kh * geo.kw * ld)) { lo, hi in
                                remat_col2im_f32(pc, ld, gp, n0, n0 + nb, lo, hi, pdx)
                            }
                        } else {
                            remat_col2im_f32(pc, ld, gp, n0, n0 + nb, 0, geo.c, pdx)
                        }
                    }
                }
            }
        }
        if let pdw, let ppart {
            // dw += Σ partials, split over the elements.
            let slots = plan.slots
            parallelChunks(k * ckk, grain: elementwiseGrain) { lo, hi in
                for s in 0..<(slots - 1) {
                    let src = ppart + s * k * ckk
                    for e in lo..<hi { pdw[e] += src[e] }
                }
            }
        }
    }
    return (dx, dw)
}

/// `Σ_{n, p} dy[n, c, p]` per channel of a contiguous `[N, C, ...]` tensor (double accumulation).
func channelSum(_ dy: Tensor, channels: Int, pixels: Int) -> Tensor {
    let out = Tensor(uninitializedShape: [channels], label: "channel_sum")
    let n = channels == 0 || pixels == 0 ? 0 : dy.count / (channels * pixels)
    withExtendedLifetime(dy) {
        let pg = UnsafePointer(dy.floatPointer), po = out.floatPointer
        parallelChunks(channels, grain: grain(n * pixels)) { lo, hi in
            remat_channel_sum_f32(pg, n, channels, pixels, po, lo, hi)
        }
    }
    return out
}
