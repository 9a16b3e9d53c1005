import Foundation
import Testing
import Remat

/// ResNet: torchvision names, and a tiny configuration against PyTorch through the fixture that
/// scripts/make_resnet_fixture.py made once (the test itself needs no PyTorch).
@Suite struct ResNetTests {
    struct Reference: Decodable {
        struct Config: Decodable { let stages: [Int]; let width, classes, image_size, in_channels, batch: Int }
        struct SGDConfig: Decodable { let lr, momentum: Float; let steps: Int }
        struct ParamErr: Decodable { let grad_err, delta_err: Double }
        struct BufferErr: Decodable { let buffer_err: Double }
        struct TorchVision: Decodable { let parameter_names, state_dict_names: [String]; let parameter_count: Int }
        let config: Config
        let sgd: SGDConfig
        let loss_f64: Double
        let params: [String: ParamErr]
        let buffers: [String: BufferErr]
        let num_batches_tracked_after: Int
        let resnet50: TorchVision
    }

    static func reference() throws -> Reference {
        try JSONDecoder().decode(Reference.self, from: Data(contentsOf: URL(fileURLWithPath: Fixtures.path("resnet_tiny.json"))))
    }

    static func tinyModel(_ ref: Reference) throws -> ResNet {
        let c = ref.config
        let model = ResNet(ResNetConfig(stages: c.stages, width: c.width, classes: c.classes, imageSize: c.image_size,
                                        inChannels: c.in_channels))
        try model.loadStateDict(SafetensorsFile.read(path: Fixtures.path("resnet_tiny_weights.safetensors")).tensors)
        return model
    }

    /// ‖a − b‖ / ‖b‖ in Double.
    func normwiseError(_ a: [Float], _ b: [Float]) -> Double {
        let d = zip(a, b).map { Double($0 - $1) * Double($0 - $1) }.reduce(0, +).squareRoot()
        let n = b.map { Double($0) * Double($0) }.reduce(0, +).squareRoot()
        return n == 0 ? d : d / n
    }

    /// 1e-4 normwise relative, or within 10× of PyTorch float32's own error against float64 where
    /// that is larger (BatchNorm over few values makes some gradients ill-conditioned).
    func tolerance(torchError: Double) -> Double { Swift.max(1e-4, 10 * torchError) }

    @Test func torchvisionResNet50Names() throws {
        let ref = try Self.reference()
        let model = ResNet.resnet50(classes: 100)
        #expect(model.namedParameters.count == 161)
        #expect(model.namedParameters.map(\.0) == ref.resnet50.parameter_names)
        #expect(model.namedTensors.map(\.0) == ref.resnet50.state_dict_names)
        #expect(model.parameterCount == ref.resnet50.parameter_count)
        #expect(model.namedBuffers.count == 3 * 53)
    }

    /// The `resnet50` workload is torchvision's `resnet50()` as it is: its names, 1000 classes
    /// (25 557 032 parameters), 3×224×224 images; its step's gradients against PyTorch are
    /// bench/resnet50_parity.py's (results/resnet50-224-parity.md).
    @Test func resnet50WorkloadIsTorchvisionsDefault() throws {
        let ref = try Self.reference()
        let w = try ModelZoo.workload("resnet50")
        let model = try #require(w.model as? ResNet)
        #expect(model.namedParameters.map(\.0) == ref.resnet50.parameter_names)
        #expect(model.namedTensors.map(\.0) == ref.resnet50.state_dict_names)
        #expect(model.parameterCount == 25_557_032)
        #expect(model.namedParameters.first { $0.0 == "fc.weight" }?.1.shape == [1000, 2048])
        guard case .images(let channels, let size, let classes) = w.batchKind else { Issue.record("not an image workload"); return }
        #expect(channels == 3 && size == 224 && classes == 1000)
        let batch = w.batches(1, 0)()
        #expect(batch.input.shape == [1, 3, 224, 224])
        #expect(model(batch.input).shape == [1, 1000])
        #expect(ModelZoo.names.contains("resnet50") && ModelZoo.names.contains("resnet50-64"))
        // Every preset is a workload with its own spec batch size.
        #expect(try ResNetConfig.presets.keys.sorted().map { try ModelZoo.specBatchSize($0) } == [16, 64])
    }

    /// Loss, every step-1 gradient, the running statistics and the parameters after two SGD
    /// (momentum) steps, against PyTorch's float64 run of the same weights.
    @Test func tinyResNetMatchesPyTorch() throws {
        let ref = try Self.reference()
        let model = try Self.tinyModel(ref)
        let batch = try SafetensorsFile.read(path: Fixtures.path("resnet_tiny_batch.safetensors"))
        let grads = try SafetensorsFile.read(path: Fixtures.path("resnet_tiny_grads.safetensors"))
        let after = try SafetensorsFile.read(path: Fixtures.path("resnet_tiny_after.safetensors"))
        let images = try #require(batch["input"]), targets = try #require(batch["target"])
        let initial = Dictionary(uniqueKeysWithValues: model.namedParameters.map { ($0.0, $0.1.toArray()) })
        let optimizer = SGD(model.parameters, learningRate: ref.sgd.lr, momentum: ref.sgd.momentum)
        #expect(model.namedParameters.count == ref.params.count)

        var exceptions: [String] = []
        var worst = (0.0, "")
        for step in 0..<ref.sgd.steps {
            optimizer.zeroGrad()
            let loss = model.loss(images, targets: targets)
            loss.backward()
            if step == 0 {
                #expect(abs(Double(loss.item) - ref.loss_f64) <= 1e-4 * abs(ref.loss_f64), "loss \(loss.item) vs \(ref.loss_f64)")
                for (name, p) in model.namedParameters {
                    let expected = try #require(grads["f64." + name], "fixture lacks \(name)").toArray()
                    let err = normwiseError(try #require(p.grad).toArray(), expected)
                    let torchErr = try #require(ref.params[name]).grad_err
                    if err > worst.0 { worst = (err, name) }
                    if err > 1e-4 { exceptions.append("\(name) \(err) (torch \(torchErr))") }
                    #expect(err <= tolerance(torchError: torchErr), "gradient of \(name): error \(err), PyTorch f32's \(torchErr)")
                }
            }
            optimizer.step()
        }
        print("ResNet parity: worst step-1 gradient error \(worst.0) (\(worst.1))")
        if !exceptions.isEmpty { print("ResNet parity: gradients beyond 1e-4 (within 10x PyTorch f32):", exceptions) }

        var worstDelta = 0.0, worstBuffer = 0.0
        for (name, p) in model.namedParameters {
            let start = try #require(initial[name])
            let expected = zip(try #require(after["f64." + name]).toArray(), start).map { $0 - $1 }
            let got = zip(p.toArray(), start).map { $0 - $1 }
            let err = normwiseError(got, expected)
            let torchErr = try #require(ref.params[name]).delta_err
            worstDelta = Swift.max(worstDelta, err)
            #expect(err <= tolerance(torchError: torchErr), "SGD change of \(name): error \(err), PyTorch f32's \(torchErr)")
        }
        for (name, buffer) in model.namedBuffers {
            let expected = try #require(after["f64." + name], "fixture lacks \(name)")
            if name.hasSuffix("num_batches_tracked") {
                #expect(buffer.toIntArray() == [ref.num_batches_tracked_after], "\(name)")
                #expect(expected.toIntArray() == [ref.num_batches_tracked_after])
            } else {
                let err = normwiseError(buffer.toArray(), expected.toArray())
                worstBuffer = Swift.max(worstBuffer, err)
                #expect(err <= 1e-5, "\(name): error \(err), PyTorch f32's \(ref.buffers[name]?.buffer_err ?? -1)")
            }
        }
        print("ResNet parity: worst SGD-change error \(worstDelta), worst running-statistics error \(worstBuffer)")
    }

    /// A recomputed forward (checkpointing) must not count a batch or move running statistics again.
    @Test func recomputeLeavesBatchNormStateAlone() {
        let bn = BatchNorm2d(3)
        bn.finalize()
        let x = Tensor.randn([4, 3, 2, 2], generator: RandomGenerator(seed: 5))
        _ = bn(x)
        let state = (bn.runningMean.toArray(), bn.runningVar.toArray(), bn.batchesTracked)
        #expect(state.2 == 1)
        _ = AutogradContext.with({ $0.isRecomputing = true }) { bn(x) }
        #expect(bn.runningMean.toArray() == state.0 && bn.runningVar.toArray() == state.1 && bn.batchesTracked == 1)
        bn.eval()
        _ = bn(x)
        #expect(bn.runningMean.toArray() == state.0 && bn.batchesTracked == 1, "evaluation mode changes no state")
    }

    @Test func tinyForwardShapesAndTrainingDecreasesLoss() throws {
        let model = ResNet(.tiny, seed: 3)
        #expect(model.namedBuffers.count == 3 * 9)   // bn1, 4 per block, layer1.0's downsample.1
        let g = RandomGenerator(seed: 9)
        let images = Tensor.randn([4, 3, 16, 16], generator: g)
        let targets = Tensor(indices: [1, 7, 3, 0], shape: [4], dtype: .int32)
        #expect(model(images).shape == [4, 10])
        let optimizer = SGD(model.parameters, learningRate: 0.05, momentum: 0.9)
        var losses: [Float] = []
        for _ in 0..<6 {
            optimizer.zeroGrad()
            let loss = model.loss(images, targets: targets)
            loss.backward()
            optimizer.step()
            losses.append(loss.item)
        }
        #expect(losses.last! < losses.first!, "losses \(losses)")
        model.eval()
        #expect(model(images).shape == [4, 10])
    }
}
