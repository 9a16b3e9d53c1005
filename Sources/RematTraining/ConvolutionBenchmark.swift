/// `remat bench conv`: forward and backward (input and weight gradients) time of conv2d on every
/// distinct convolution shape of resnet50-64, as `bench/torch_resnet.py --layers` does for PyTorch.
public enum ConvolutionBenchmark {
    public struct Row: Codable, Sendable {
        public var in_channels, size, out_channels, kernel, stride, padding, count: Int
        public var forward_ms, backward_ms, forward_gflops, backward_gflops: Double
    }

    /// Times every distinct conv shape of resnet50-64 at `batch` (median of 5 runs after 2 warm-up).
    public static func resnet50Layers(batch: Int) -> [Row] {
        struct Shape: Hashable { let cin, hw, cout, k, stride, pad: Int }
        var counts: [Shape: Int] = [:]
        var order: [Shape] = []
        func add(_ s: Shape) { if counts[s] == nil { order.append(s) }; counts[s, default: 0] += 1 }
        add(Shape(cin: 3, hw: 64, cout: 64, k: 7, stride: 2, pad: 3))
        var (cin, hw) = (64, 16)
        for (i, blocks) in [3, 4, 6, 3].enumerated() {
            let w = 64 << i
            for b in 0..<blocks {
                let s = (i > 0 && b == 0) ? 2 : 1
                add(Shape(cin: cin, hw: hw, cout: w, k: 1, stride: 1, pad: 0))
                add(Shape(cin: w, hw: hw, cout: w, k: 3, stride: s, pad: 1))
                add(Shape(cin: w, hw: hw / s, cout: 4 * w, k: 1, stride: 1, pad: 0))
                if b == 0 { add(Shape(cin: cin, hw: hw, cout: 4 * w, k: 1, stride: s, pad: 0)) }
                (cin, hw) = (4 * w, hw / s)
            }
        }
        let g = RandomGenerator(seed: 1)
        return order.map { s in
            let x = Tensor.randn([batch, s.cin, s.hw, s.hw], generator: g, requiresGrad: s.cin != 3)
            let w = Tensor.randn([s.cout, s.cin, s.k, s.k], generator: g, requiresGrad: true)
            var fwd: [Double] = [], bwd: [Double] = []
            for i in 0..<7 {
                let t0 = monotonicSeconds()
                let y = conv2d(x, weight: w, bias: nil, stride: (s.stride, s.stride), padding: (s.pad, s.pad))
                let t1 = monotonicSeconds()
                y.backward(gradient: Tensor.ones(y.shape))
                let t2 = monotonicSeconds()
                x.grad = nil
                w.grad = nil
                if i >= 2 { fwd.append((t1 - t0) * 1e3); bwd.append((t2 - t1) * 1e3) }
            }
            let oh = (s.hw + 2 * s.pad - s.k) / s.stride + 1
            let flops = 2.0 * Double(batch * s.cout * oh * oh * s.cin * s.k * s.k)
            let (f, b) = (median(fwd), median(bwd))
            return Row(in_channels: s.cin, size: s.hw, out_channels: s.cout, kernel: s.k, stride: s.stride, padding: s.pad,
                       count: counts[s]!, forward_ms: f, backward_ms: b, forward_gflops: flops / f / 1e6,
                       backward_gflops: (s.cin == 3 ? 1 : 2) * flops / b / 1e6)
        }
    }
}
