extension KernelBenchmark {
    /// The elementwise cases of `remat bench kernels` over `elements` floats: add, mul, exp, relu,
    /// GELU (tanh), LayerNorm and softmax over rows of 1024. Bytes moved = inputs read + output written.
    public static func standardCases(elements n: Int) -> [ElementwiseCase] {
        let rng = RandomGenerator(seed: 5)
        let x = Tensor.randn([n], generator: rng), y = Tensor.randn([n], generator: rng)
        let rows = Tensor.randn([n / 1024, 1024], generator: rng)
        let w = Tensor.ones([1024]), b = Tensor.zeros([1024])
        let f = 4
        return [
            ElementwiseCase(name: "add", bytesMoved: 3 * f * n) { _ = noGrad { x + y } },
            ElementwiseCase(name: "mul", bytesMoved: 3 * f * n) { _ = noGrad { x * y } },
            ElementwiseCase(name: "exp", bytesMoved: 2 * f * n) { _ = noGrad { exp(x) } },
            ElementwiseCase(name: "relu", bytesMoved: 2 * f * n) { _ = noGrad { relu(x) } },
            ElementwiseCase(name: "gelu_tanh", bytesMoved: 2 * f * n) { _ = noGrad { gelu(x, approximation: .tanh) } },
            ElementwiseCase(name: "layer_norm", bytesMoved: 2 * f * n) { _ = noGrad { layerNorm(rows, weight: w, bias: b) } },
            ElementwiseCase(name: "softmax", bytesMoved: 2 * f * n) { _ = noGrad { softmax(rows) } },
        ]
    }
}
