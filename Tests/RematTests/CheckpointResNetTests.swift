import Testing
import Remat

/// Checkpointing on the convolutional workload: gradients bitwise equal to no checkpointing, and
/// BatchNorm's running statistics updated exactly once per step although blocks are recomputed.
@Suite struct CheckpointResNetTests {
    static let config = ResNetConfig(stages: [2, 2], width: 4, classes: 5, imageSize: 16)

    /// Gradients, running statistics and num_batches_tracked (bit patterns) after two SGD steps.
    static func run(_ policy: CheckpointPolicy) throws -> [String: [UInt32]] {
        let model = ResNet(config, seed: 7)
        try model.applyCheckpointing(policy)
        let optimizer = SGD(model.parameters, learningRate: 0.1, momentum: 0.9)
        let g = RandomGenerator(seed: 8)
        var grads: [String: [UInt32]] = [:]
        for step in 0..<2 {
            let images = Tensor.randn([3, 3, 16, 16], generator: g)
            let targets = Tensor(indices: [0, 3, 4], shape: [3])
            optimizer.zeroGrad()
            model.loss(images, targets: targets).backward()
            for (name, p) in model.namedParameters { grads["step\(step).grad.\(name)"] = p.grad!.toArray().map(\.bitPattern) }
            optimizer.step()
        }
        for (name, t) in model.namedBuffers { grads["buffer.\(name)"] = t.toArray().map(\.bitPattern) }
        return grads
    }

    @Test(arguments: [CheckpointPolicy.all, .saveMatmuls, .alternate, .everyK(2), .sqrt, .revolve(slots: 2), .storeNothing, .heavyOps(largeParameters: 200)])
    func gradientsAndBatchNormStatisticsMatchTheUncheckpointedRun(policy: CheckpointPolicy) throws {
        let reference = try Self.run(.none)
        let checkpointed = try Self.run(policy)
        #expect(reference.keys.contains("buffer.layer1.0.bn1.num_batches_tracked"))
        for (name, values) in reference {
            #expect(checkpointed[name] == values, "\(policy): \(name) differs")
        }
    }
}
