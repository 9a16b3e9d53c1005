import ArgumentParser
import Foundation
import Remat

struct EmbedCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "embed",
        abstract: "Sentence embeddings with a BERT encoder (e.g. all-MiniLM-L6-v2): mean pooling + L2 normalisation.")

    @OptionGroup var engine: EngineOptions
    @Option(help: "Model folder with config.json, model.safetensors and vocab.txt (scripts/fetch_minilm.sh makes one).")
    var modelDir: String
    @Flag(help: "Print JSON {\"embeddings\": [[Float]]}.") var json = false
    @Argument(help: "Texts to embed.") var texts: [String]

    func validate() throws {
        guard !texts.isEmpty else { throw ValidationError("give at least one text to embed") }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: modelDir, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ValidationError("--model-dir \(modelDir) is not a directory (scripts/fetch_minilm.sh makes one)")
        }
    }

    func run() throws {
        engine.apply()
        let encoder = try SentenceEncoder(modelDirectory: modelDir)
        for (i, text) in texts.enumerated() {
            let tokens = encoder.tokenizer.tokenize(text).count + 2
            if tokens > encoder.maxSequenceLength {
                FileHandle.standardError.write(Data("remat embed: text \(i + 1) has \(tokens) tokens; truncated at the model's \(encoder.maxSequenceLength)\n".utf8))
            }
        }
        let embeddings = encoder.embed(texts)
        if json {
            struct Output: Encodable { let embeddings: [[Float]] }
            print(try jsonString(Output(embeddings: embeddings)))
        } else {
            for (text, e) in zip(texts, embeddings) {
                print("\(text): [\(e.prefix(6).map { String(format: "%.4f", $0) }.joined(separator: ", ")), …] (\(e.count) dims)")
            }
        }
    }
}
