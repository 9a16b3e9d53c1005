import Testing
import Remat

/// all-MiniLM-L6-v2 against the reference sentence-transformers embeddings committed in
/// Fixtures/minilm_reference.json (made once by scripts/make_minilm_fixture.py).
@Suite struct MiniLMTests {
    @Test(.enabled(if: MinilmFixture.available,
                   "SKIPPED: minilm model not found: run scripts/fetch_minilm.sh (or set REMAT_MINILM_DIR)"))
    func embeddingsMatchTheReference() throws {
        let reference = try MinilmFixture.reference()
        let encoder = try SentenceEncoder(modelDirectory: MinilmFixture.modelDirectory!)
        // One padded batch: exercises the attention mask and mean pooling over non-padding tokens.
        let embeddings = encoder.embed(reference.sentences.map(\.text))
        for (sentence, e) in zip(reference.sentences, embeddings) {
            #expect(e.count == 384)
            let worst = zip(e, sentence.embedding).map { abs($0 - $1) }.max()!
            #expect(worst <= 1e-4, "\(sentence.text): max abs difference \(worst)")
        }
    }

    @Test(.enabled(if: MinilmFixture.available, "SKIPPED: minilm model not found: run scripts/fetch_minilm.sh"))
    func strictLoadAcceptsTheCheckpointExactly() throws {
        let dir = MinilmFixture.modelDirectory!
        let model = BertModel(try BertConfig.read(path: dir + "/config.json"))
        #expect(try model.loadStateDict(SafetensorsFile.read(path: dir + "/model.safetensors").tensors) == nil)
        #expect(model.namedParameters.count + model.namedBuffers.count == 104)
    }
}
