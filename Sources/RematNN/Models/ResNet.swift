/// The bottleneck ResNet of the workload spec (`resnet50-64`): torchvision's ResNet-50 layout and
/// parameter/buffer names, so a torchvision `state_dict` saved as safetensors loads as is.
public struct ResNetConfig: Sendable, Hashable, Codable {
    /// Bottleneck blocks per stage (1 to 4 stages: `layer1` … `layer4`).
    public var stages: [Int]
    /// Stem width and first-stage bottleneck width; stage `i` has width `width·2ⁱ` (outputs ×4).
    public var width: Int
    public var classes: Int
    /// Input images are `[B, inChannels, imageSize, imageSize]`.
    public var imageSize: Int
    public var inChannels: Int

    public init(stages: [Int], width: Int = 64, classes: Int, imageSize: Int, inChannels: Int = 3) {
        precondition((1...4).contains(stages.count) && stages.allSatisfy { $0 >= 1 },
                     "ResNetConfig: stages must list 1 to 4 positive block counts, got \(stages)")
        self.stages = stages
        self.width = width
        self.classes = classes
        self.imageSize = imageSize
        self.inChannels = inChannels
    }

    /// ResNet-50 on 3×64×64 images with 100 classes (`resnet50-64`).
    public static let resnet50_64 = ResNetConfig(stages: [3, 4, 6, 3], width: 64, classes: 100, imageSize: 64)
    /// torchvision's `resnet50()` as it is: 1000 classes, 3×224×224 images (`resnet50`, the
    /// workload of seed 001's batch table).
    public static let resnet50 = ResNetConfig(stages: [3, 4, 6, 3], width: 64, classes: 1000, imageSize: 224)
    /// A tiny configuration for tests: stages [1, 1], width 8, 3×16×16 images, 10 classes.
    public static let tiny = ResNetConfig(stages: [1, 1], width: 8, classes: 10, imageSize: 16)

    /// The presets by their workload names.
    public static let presets: [String: ResNetConfig] = ["resnet50-64": .resnet50_64, "resnet50": .resnet50]

    /// Channels the last stage puts out (the classifier's input).
    public var featureChannels: Int { (width << (stages.count - 1)) * Bottleneck.expansion }
}

/// torchvision's `Bottleneck` (ResNet v1.5: the stride is on the 3×3 convolution):
/// `relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x)))))))) + identity)`, where `identity` is `x` or
/// `downsample(x)` (1×1 strided convolution + BatchNorm, `downsample.0` / `downsample.1`).
public final class Bottleneck: Module, UnaryLayer {
    public static let expansion = 4
    public let conv1: Conv2d
    public let bn1: BatchNorm2d
    public let conv2: Conv2d
    public let bn2: BatchNorm2d
    public let conv3: Conv2d
    public let bn3: BatchNorm2d
    public let downsample: Sequential?

    public init(_ inChannels: Int, width: Int, stride: Int, generator: RandomGenerator) {
        let outChannels = width * Bottleneck.expansion
        conv1 = Conv2d(inChannels, width, kernelSize: 1, generator: generator)
        bn1 = BatchNorm2d(width)
        conv2 = Conv2d(width, width, kernelSize: 3, stride: stride, padding: 1, generator: generator)
        bn2 = BatchNorm2d(width)
        conv3 = Conv2d(width, outChannels, kernelSize: 1, generator: generator)
        bn3 = BatchNorm2d(outChannels)
        if stride != 1 || inChannels != outChannels {
            let conv = Conv2d(inChannels, outChannels, kernelSize: 1, stride: stride, generator: generator)
            let bn = BatchNorm2d(outChannels)
            downsample = Sequential([(conv, { conv($0) }), (bn, { bn($0) })])
        } else {
            downsample = nil
        }
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        scoped(x) { [conv1, bn1, conv2, bn2, conv3, bn3, downsample] x in
            var out = relu(bn1(conv1(x)))
            out = relu(bn2(conv2(out)))
            out = bn3(conv3(out))
            let identity = downsample.map { $0(x) } ?? x
            return relu(out + identity)
        }
    }
}

/// ResNet with bottleneck blocks: 7×7 stride-2 stem convolution (`conv1`, no bias), `bn1`, ReLU,
/// 3×3 stride-2 max-pool, stages `layer1` … `layer4` (the first block of every stage but the first
/// has stride 2), global average pool, `fc`. Init as torchvision: Kaiming normal (fan-out) for
/// convolutions, BatchNorm weight 1 / bias 0, and `fc` with `nn.Linear`'s default
/// (`U(−1/√in, 1/√in)` for weight and bias). All draws come from one ``RandomGenerator``.
///
/// Memory per block (what backward keeps): each convolution's input, each BatchNorm's input plus
/// 8 bytes per channel, each ReLU's output (shared with the next convolution's input), and the
/// max-pool's int32 argmax.
public final class ResNet: Module, BlockChainModel, TrainableModel {
    public let config: ResNetConfig
    /// conv1 → bn1 → relu → max-pool, as one region a memory plan can recompute in.
    public let stem = ForwardRegion()
    public let conv1: Conv2d
    public let bn1: BatchNorm2d
    public let layer1: [Bottleneck]
    public let layer2: [Bottleneck]
    public let layer3: [Bottleneck]
    public let layer4: [Bottleneck]
    public let fc: Linear

    public init(_ config: ResNetConfig, seed: UInt64 = 0) {
        let generator = RandomGenerator(seed: seed)
        self.config = config
        conv1 = Conv2d(config.inChannels, config.width, kernelSize: 7, stride: 2, padding: 3, generator: generator)
        bn1 = BatchNorm2d(config.width)
        var stages: [[Bottleneck]] = []
        var channels = config.width
        for (i, blocks) in config.stages.enumerated() {
            let width = config.width << i
            var stage: [Bottleneck] = []
            for b in 0..<blocks {
                stage.append(Bottleneck(channels, width: width, stride: (i > 0 && b == 0) ? 2 : 1, generator: generator))
                channels = width * Bottleneck.expansion
            }
            stages.append(stage)
        }
        while stages.count < 4 { stages.append([]) }
        (layer1, layer2, layer3, layer4) = (stages[0], stages[1], stages[2], stages[3])
        fc = Linear(channels, config.classes, generator: generator)
        let bound = 1 / Float(channels).squareRoot()
        fc.weight.copyValues(from: Tensor.uniform(fc.weight.shape, low: -bound, high: bound, generator: generator))
        fc.bias!.copyValues(from: Tensor.uniform([config.classes], low: -bound, high: bound, generator: generator))
        super.init()
        finalize()
    }

    /// torchvision's ResNet-50 (stages [3, 4, 6, 3], width 64) with `classes` outputs, for
    /// `imageSize`² inputs (the `resnet50-64` workload: 100 classes, 64×64).
    public static func resnet50(classes: Int = 100, imageSize: Int = 64, seed: UInt64 = 0) -> ResNet {
        ResNet(ResNetConfig(stages: [3, 4, 6, 3], width: 64, classes: classes, imageSize: imageSize), seed: seed)
    }

    public var blocks: [Bottleneck] { layer1 + layer2 + layer3 + layer4 }

    /// Logits `[B, classes]` for images `[B, C, H, W]`.
    public func callAsFunction(_ images: Tensor) -> Tensor {
        precondition(images.rank == 4 && images.shape[1] == config.inChannels,
                     "ResNet: images must be [batch, \(config.inChannels), H, W], got \(images.shape)")
        return scoped(images) { [self] images in
            var h = stem(images) { [conv1, bn1] x in
                let r = withNameScope("relu") { relu(bn1(conv1(x))) }
                return withNameScope("maxpool") { maxPool2d(r, kernel: 3, stride: 2, padding: 1) }
            }
            h = runBlockChain(h)
            h = withNameScope("avgpool") { adaptiveAvgPool2d(h, outputSize: 1).flattened(from: 1) }
            return fc(h)
        }
    }

    /// Mean cross-entropy of the logits for `images` against class `targets` `[B]` (int32 or int64).
    public func loss(_ images: Tensor, targets: Tensor) -> Tensor {
        modelScope {
            let logits = self(images)
            return withNameScope("loss") { crossEntropy(logits: logits, targets: targets) }
        }
    }
}
