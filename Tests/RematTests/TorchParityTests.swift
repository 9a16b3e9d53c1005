import Foundation
import Testing
import Remat

/// A tiny GPT against PyTorch: loss, every gradient, and one AdamW step, through the fixture that
/// scripts/make_gpt_fixture.py made once with PyTorch (the test itself needs no PyTorch).
@Suite struct TorchParityTests {
    struct Reference: Decodable {
        struct Config: Decodable { let vocab, T, layers, heads, d_model, mlp_hidden, batch: Int }
        struct AdamWParam: Decodable { let after_f64: [Double] }
        struct AdamWStep: Decodable { let lr: Float; let params: [String: AdamWParam] }
        let config: Config
        let loss_f64: Double
        let adamw_step: AdamWStep
    }

    func load() throws -> (GPT, TokenBatch, Reference, SafetensorsFile) {
        let ref = try JSONDecoder().decode(Reference.self, from: Data(contentsOf: URL(fileURLWithPath: Fixtures.path("gpt_tiny.json"))))
        let c = ref.config
        let model = GPT(GPTConfig(vocabularySize: c.vocab, contextLength: c.T, layers: c.layers, heads: c.heads,
                                  modelDimension: c.d_model, mlpHidden: c.mlp_hidden, batchSize: c.batch))
        try model.loadStateDict(SafetensorsFile.read(path: Fixtures.path("gpt_tiny_weights.safetensors")).tensors)
        let batch = try SafetensorsFile.read(path: Fixtures.path("gpt_tiny_batch.safetensors"))
        let grads = try SafetensorsFile.read(path: Fixtures.path("gpt_tiny_grads.safetensors"))
        return (model, TokenBatch(input: batch["input"]!, target: batch["target"]!), ref, grads)
    }

    /// ‖a − b‖ / ‖b‖.
    func normwiseError(_ a: [Float], _ b: [Float]) -> Double {
        let d = zip(a, b).map { Double($0 - $1) * Double($0 - $1) }.reduce(0, +).squareRoot()
        let n = b.map { Double($0) * Double($0) }.reduce(0, +).squareRoot()
        return n == 0 ? d : d / n
    }

    @Test func lossAndEveryGradientMatchPyTorch() throws {
        let (model, batch, ref, grads) = try load()
        let loss = model.loss(batch.input, targets: batch.target)
        #expect(abs(Double(loss.item) - ref.loss_f64) <= 1e-4 * abs(ref.loss_f64))
        loss.backward()
        #expect(model.namedParameters.count == 28)
        for (name, p) in model.namedParameters {
            let expected = try #require(grads["f64." + name], "fixture lacks \(name)").toArray()
            let err = normwiseError(try #require(p.grad).toArray(), expected)
            #expect(err <= 1e-4, "gradient of \(name): normwise relative error \(err)")
        }
    }

    @Test func oneAdamWStepMatchesPyTorch() throws {
        let (model, batch, ref, _) = try load()
        let optimizer = Trainer.specAdamW(model, learningRate: ref.adamw_step.lr)
        model.loss(batch.input, targets: batch.target).backward()
        optimizer.step()
        let params = Dictionary(uniqueKeysWithValues: model.namedParameters)
        for (name, expected) in ref.adamw_step.params {
            let got = Array(try #require(params[name]).toArray().prefix(8))
            for (g, e) in zip(got, expected.after_f64) {
                // One step moves each weight by about lr; agree to 1e-4 of that step.
                #expect(abs(Double(g) - e) <= 1e-4 * Double(ref.adamw_step.lr) + 1e-7, "\(name): \(g) vs \(e)")
            }
        }
    }

    @Test func strictLoadListsEveryProblemAtOnce() throws {
        let model = GPT(GPTConfig(contextLength: 16, layers: 2, heads: 2, modelDimension: 32, mlpHidden: 64, batchSize: 2))
        var tensors = try SafetensorsFile.read(path: Fixtures.path("gpt_tiny_weights.safetensors")).tensors
        tensors["ln_f.bias"] = nil
        tensors["extra.weight"] = Tensor.zeros([2])
        tensors["pos_emb.weight"] = Tensor.zeros([8, 32])
        #expect {
            try model.loadStateDict(tensors)
        } throws: { error in
            guard let e = error as? StateDictError else { return false }
            return e.missing == ["ln_f.bias"] && e.unexpected == ["extra.weight"]
                && e.shapeMismatches == [.init(name: "pos_emb.weight", expected: [16, 32], found: [8, 32])]
                && e.description.contains("pos_emb.weight expects [16, 32], file has [8, 32]")
        }
    }
}
