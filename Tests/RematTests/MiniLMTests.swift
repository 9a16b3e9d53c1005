import Foundation
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

    /// A text of 570 tokens: sentence-transformers truncates at the model's max_seq_length (256,
    /// sentence_bert_config.json), and so must Remat (Fixtures/minilm_long_text.json, made by
    /// scripts/make_minilm_long_fixture.py).
    @Test(.enabled(if: MinilmFixture.available, "SKIPPED: minilm model not found: run scripts/fetch_minilm.sh"))
    func longTextsAreTruncatedAtMaxSeqLength() throws {
        struct Long: Decodable { let max_seq_length: Int; let tokens: Int; let text: String; let embedding: [Float] }
        let long = try JSONDecoder().decode(Long.self, from: Data(contentsOf: URL(fileURLWithPath: Fixtures.path("minilm_long_text.json"))))
        let encoder = try SentenceEncoder(modelDirectory: MinilmFixture.modelDirectory!)
        #expect(encoder.maxSequenceLength == long.max_seq_length)
        #expect(encoder.tokenizer.tokenize(long.text).count + 2 == long.tokens)
        let e = try #require(encoder.embed([long.text]).first)
        let worst = zip(e, long.embedding).map { abs($0 - $1) }.max()!
        #expect(worst <= 1e-4, "max abs difference \(worst)")
    }
}
