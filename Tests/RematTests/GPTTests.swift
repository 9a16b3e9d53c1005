import Testing
import Remat

@Suite struct GPTTests {
    static let tiny = GPTConfig(contextLength: 16, layers: 2, heads: 2, modelDimension: 32, mlpHidden: 64, batchSize: 2)

    @Test func parameterNamesAreTheSpecNames() {
        let model = GPT(.gptMini)
        var expected = ["tok_emb.weight", "pos_emb.weight"]
        for i in 0..<6 {
            let p = "blocks.\(i)."
            expected += [p + "ln1.weight", p + "ln1.bias", p + "attn.qkv.weight", p + "attn.qkv.bias",
                         p + "attn.proj.weight", p + "attn.proj.bias", p + "ln2.weight", p + "ln2.bias",
                         p + "mlp.fc.weight", p + "mlp.fc.bias", p + "mlp.proj.weight", p + "mlp.proj.bias"]
        }
        expected += ["ln_f.weight", "ln_f.bias"]
        #expect(model.namedParameters.map(\.0) == expected)
        let shapes = Dictionary(uniqueKeysWithValues: model.namedParameters.map { ($0.0, $0.1.shape) })
        #expect(shapes["blocks.0.attn.qkv.weight"] == [768, 256])
        #expect(shapes["blocks.5.mlp.proj.weight"] == [256, 1024])
        #expect(model.namedBuffers.isEmpty)
        #expect(model.blocks[3].attn.qkv.path == "blocks.3.attn.qkv")
    }

    @Test func initialLossIsNearLogVocabularyAndEveryParameterGetsAGradient() {
        let model = GPT(Self.tiny, seed: 1)
        let rng = RandomGenerator(seed: 2)
        let ids = (0..<32).map { _ in Int(rng.nextUInt64() % 256) }
        let input = Tensor(indices: ids, shape: [2, 16])
        let target = Tensor(indices: ids.map { ($0 + 1) % 256 }, shape: [2, 16])
        let loss = model.loss(input, targets: target)
        #expect(abs(loss.item - 5.545) < 0.1)
        loss.backward()
        for (name, p) in model.namedParameters {
            #expect(p.grad != nil, "\(name) got no gradient")
            #expect(p.grad?.shape == p.shape)
        }
    }
}
