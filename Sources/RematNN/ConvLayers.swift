/// Convolutional layers with PyTorch's parameter and buffer names.

/// `nn.Conv2d` (groups = 1): `weight` `[out, in, kh, kw]`, optional `bias` `[out]`.
/// Init: Kaiming normal with fan-out and the ReLU gain (`std = √(2 / (out·kh·kw))`), torchvision's
/// ResNet init; the bias (if any) is zero.
/// Saves (through ``conv2d(_:weight:bias:stride:padding:dilation:)``): the input only.
public final class Conv2d: Module, UnaryLayer {
    public let weight: Tensor
    public let bias: Tensor?
    public let stride: (Int, Int)
    public let padding: (Int, Int)
    public let dilation: (Int, Int)

    public init(_ inChannels: Int, _ outChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0,
                dilation: Int = 1, bias: Bool = false, generator: RandomGenerator) {
        let fanOut = outChannels * kernelSize * kernelSize
        let std = (2 / Float(Swift.max(fanOut, 1))).squareRoot()
        weight = Tensor.randn([outChannels, inChannels, kernelSize, kernelSize], std: std, generator: generator, requiresGrad: true)
        self.bias = bias ? { let b = Tensor.zeros([outChannels]); b.requiresGrad = true; return b }() : nil
        self.stride = (stride, stride)
        self.padding = (padding, padding)
        self.dilation = (dilation, dilation)
    }

    public var inChannels: Int { weight.shape[1] }
    public var outChannels: Int { weight.shape[0] }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        scoped(x) { [weight, bias, stride, padding, dilation] x in
            conv2d(x, weight: weight, bias: bias, stride: stride, padding: padding, dilation: dilation)
        }
    }
}

/// `nn.BatchNorm2d`: parameters `weight` (ones) and `bias` (zeros); buffers `running_mean` (zeros),
/// `running_var` (ones) and `num_batches_tracked` (int64 scalar, 0). The buffers are model state:
/// they live in the ledger's parameters category.
///
/// Training mode normalises with batch statistics and updates the running statistics (momentum as
/// PyTorch) and `num_batches_tracked` once per forward — but not during a checkpoint recompute
/// (``isRecomputing``), so a recomputed step still counts once. Evaluation mode uses the running
/// statistics. Saves (through ``batchNorm2d(_:weight:bias:runningMean:runningVar:training:momentum:eps:)``):
/// the input and 8 bytes per channel.
public final class BatchNorm2d: Module, UnaryLayer {
    public let weight: Tensor
    public let bias: Tensor
    public let runningMean: Tensor
    public let runningVar: Tensor
    public let numBatchesTracked: Tensor
    public let momentum: Float
    public let eps: Float

    public init(_ channels: Int, momentum: Float = 0.1, eps: Float = 1e-5) {
        weight = Tensor.ones([channels]); weight.requiresGrad = true
        bias = Tensor.zeros([channels]); bias.requiresGrad = true
        runningMean = Tensor.zeros([channels], category: .parameters, label: "running_mean")
        runningVar = Tensor.ones([channels], category: .parameters, label: "running_var")
        numBatchesTracked = Tensor(uninitializedShape: [], dtype: .int64, category: .parameters, label: "num_batches_tracked")
        numBatchesTracked.rawPointer.assumingMemoryBound(to: Int64.self).pointee = 0
        self.momentum = momentum
        self.eps = eps
    }

    public var channels: Int { weight.shape[0] }

    /// `num_batches_tracked` as an Int.
    public var batchesTracked: Int { Int(numBatchesTracked.rawPointer.assumingMemoryBound(to: Int64.self).pointee) }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        scoped(x) { [self] x in
            if isTraining && !isRecomputing {
                numBatchesTracked.rawPointer.assumingMemoryBound(to: Int64.self).pointee += 1
            }
            return batchNorm2d(x, weight: weight, bias: bias, runningMean: runningMean, runningVar: runningVar,
                               training: isTraining, momentum: momentum, eps: eps)
        }
    }
}
