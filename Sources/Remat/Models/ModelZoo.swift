/// Models by their workload names (../shared/spec/workloads.md).
public enum ModelZoo {
    public enum Error: Swift.Error, CustomStringConvertible, Equatable {
        case unknownModel(String, known: [String])
        public var description: String {
            switch self {
            case .unknownModel(let name, let known):
                return "unknown model '\(name)'; known models: \(known.joined(separator: ", "))"
            }
        }
    }

    /// Names of the language models (`gpt-mini`, `gpt-mini-long`, `gpt-small`).
    public static var languageModelNames: [String] { GPTConfig.presets.keys.sorted() }

    /// The GPT configuration named `name`.
    public static func gptConfig(_ name: String) throws -> GPTConfig {
        guard let c = GPTConfig.presets[name] else { throw Error.unknownModel(name, known: languageModelNames) }
        return c
    }

    /// A freshly initialised language model named `name` (spec init, `seed`).
    public static func languageModel(_ name: String, seed: UInt64 = 0) throws -> any LanguageModel {
        GPT(try gptConfig(name), seed: seed)
    }

    /// The spec batch size of the workload `name`.
    public static func specBatchSize(_ name: String) throws -> Int { try gptConfig(name).batchSize }
}
