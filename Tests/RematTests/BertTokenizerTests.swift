import Foundation
import Testing
import Remat

/// The minilm model folder (scripts/fetch_minilm.sh) and the committed reference made from it
/// (scripts/make_minilm_fixture.py → Fixtures/minilm_reference.json).
enum MinilmFixture {
    /// The package root (this file is Tests/RematTests/BertTokenizerTests.swift).
    static let packageRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// `$REMAT_MINILM_DIR` if set, else `.cache/minilm` in the package root; nil without vocab.txt.
    static let modelDirectory: String? = {
        let dir = ProcessInfo.processInfo.environment["REMAT_MINILM_DIR"].flatMap { $0.isEmpty ? nil : $0 }
            ?? packageRoot.appendingPathComponent(".cache/minilm").path
        return FileManager.default.fileExists(atPath: dir + "/vocab.txt") ? dir : nil
    }()
    static var available: Bool { modelDirectory != nil }
    static var vocabPath: String { modelDirectory! + "/vocab.txt" }

    struct Sentence: Decodable {
        let text: String
        let tokens: [String]
        let ids: [Int]
        let embedding: [Float]
    }
    struct Batch: Decodable {
        let ids: [[Int]]
        let attention_mask: [[Int]]
    }
    struct Case: Decodable {
        let text: String
        let ids: [Int]
    }
    struct Truncation: Decodable {
        let text: String
        let max_length: Int
        let ids: [Int]
    }
    struct Reference: Decodable {
        let versions: [String: String]
        let sentences: [Sentence]
        let batch: Batch
        let tokenizer_cases: [Case]
        let truncation: Truncation
    }

    static func reference() throws -> Reference {
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("minilm_reference.json")))
        return try JSONDecoder().decode(Reference.self, from: data)
    }
}

@Suite struct BertTokenizerTests {
    static func small(lowercase: Bool = true, maxLength: Int = 512) throws -> BertTokenizer {
        try BertTokenizer(vocabularyFile: Fixtures.path("tokenizer_vocab_small.txt"), lowercase: lowercase, maxLength: maxLength)
    }

    /// Writes `bytes` to a fresh temporary file and returns its path.
    static func temporaryFile(_ bytes: [UInt8]) throws -> String {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("tokenizer_test_\(UUID().uuidString).txt")
        try Data(bytes).write(to: url)
        return url.path
    }

    // MARK: Vocabulary loading

    @Test func loadsVocabularyFileWithLineNumbersAsIDs() throws {
        let t = try Self.small()
        #expect(t.vocabulary.count == 36)
        #expect((t.padID, t.unkID, t.clsID, t.sepID) == (0, 2, 3, 4))
        #expect(t.id(of: "fox") == 9)
        #expect(t.id(of: "##able") == 12)
        #expect(t.id(of: "nope") == nil)
    }

    @Test func lineEndingsDuplicatesAndEmptyLinesFollowPython() throws {
        // \r\n and lone \r end lines; an empty line still takes an id; a duplicate's last id wins.
        let path = try Self.temporaryFile(Array("[PAD]\r\n[UNK]\r[CLS]\n\n[SEP]\nx\nx\ny".utf8))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let t = try BertTokenizer(vocabularyFile: path)
        #expect(t.vocabulary == ["[PAD]", "[UNK]", "[CLS]", "", "[SEP]", "x", "x", "y"])
        #expect(t.sepID == 4)
        #expect(t.id(of: "x") == 6)
        #expect(t.encode("x y") == [2, 6, 7, 4])
    }

    @Test func badVocabularyFilesThrowErrorsNamingTheFile() throws {
        let missing = "/nonexistent/dir/vocab.txt"
        #expect(throws: TokenizerError.fileNotFound(path: missing)) { try BertTokenizer(vocabularyFile: missing) }
        #expect(throws: TokenizerError.fileNotFound(path: NSTemporaryDirectory())) {
            try BertTokenizer(vocabularyFile: NSTemporaryDirectory())
        }

        let empty = try Self.temporaryFile([])
        defer { try? FileManager.default.removeItem(atPath: empty) }
        #expect(throws: TokenizerError.emptyVocabulary(path: empty)) { try BertTokenizer(vocabularyFile: empty) }

        let binary = try Self.temporaryFile(Array("[PAD]\n[UNK]\n".utf8) + [0xFF, 0xFE, 0x0A])
        defer { try? FileManager.default.removeItem(atPath: binary) }
        #expect(throws: TokenizerError.invalidUTF8(path: binary, line: 3)) { try BertTokenizer(vocabularyFile: binary) }

        let noSep = try Self.temporaryFile(Array("[PAD]\n[UNK]\n[CLS]\nhello\n".utf8))
        defer { try? FileManager.default.removeItem(atPath: noSep) }
        do {
            _ = try BertTokenizer(vocabularyFile: noSep)
            Issue.record("a vocabulary without [SEP] loaded")
        } catch let error as TokenizerError {
            #expect(error == .missingSpecialToken(path: noSep, token: "[SEP]"))
            #expect(error.description.contains(noSep) && error.description.contains("[SEP]"))
        }
        #expect(TokenizerError.fileNotFound(path: missing).description.contains(missing))
    }

    // MARK: Basic tokenizer

    @Test func lowercasesAndStripsAccents() throws {
        let t = try Self.small()
        #expect(t.tokenize("Café CRÈME Naïve THE") == ["cafe", "creme", "naive", "the"])
        // Decomposed input (e + U+0301) gives the same.
        #expect(t.tokenize("Cafe\u{301}") == ["cafe"])
        // Greek: capital sigma lowercases to final ς at the end of a word (Python's str.lower),
        // to σ elsewhere; a lone Σ is σ.
        #expect(t.tokenize("ΟΔΟΣ Σ") == ["οδος", "σ"])
    }

    @Test func withoutLowercasingCaseAndAccentsAreKept() throws {
        let t = try Self.small(lowercase: false)
        #expect(t.tokenize("The the") == ["[UNK]", "the"])
        // NFC: a decomposed é matches the vocabulary's precomposed "café"; no accent stripping.
        #expect(t.tokenize("café cafe\u{301}") == ["café", "café"])
        let lower = try Self.small()
        #expect(lower.tokenize("café") == ["cafe"])
    }

    @Test func splitsEveryPunctuationCharacter() throws {
        let t = try Self.small()
        #expect(t.tokenize("hello,world!?") == ["hello", ",", "world", "!", "?"])
        // A piece after punctuation starts a new word: no "##" continuation ("s" and "ing" are not
        // in the small vocabulary, only "##s" and "##ing").
        #expect(t.tokenize("the fox's play-ing.") == ["the", "fox", "'", "[UNK]", "play", "-", "[UNK]", "."])
        // ASCII symbols count as punctuation ($, ^, `, ~ are not Unicode P*): each is its own word.
        #expect(t.tokenize("a$a^a`a~a") == ["a", "[UNK]", "a", "[UNK]", "a", "[UNK]", "a", "[UNK]", "a"])
        // Unicode punctuation (em dash, guillemets) splits too; a math symbol (Sm) does not.
        #expect(t.tokenize("a—a«a»") == ["a", "[UNK]", "a", "[UNK]", "a", "[UNK]"])
        #expect(t.tokenize("a≤a") == ["[UNK]"])
    }

    @Test func cleansControlCharactersAndWhitespace() throws {
        let t = try Self.small()
        // NUL, U+FFFD, control and format characters (zero-width space, soft hyphen) vanish inside a word;
        // tab, CR, LF, NBSP, ideographic space and U+2028 break words.
        #expect(t.tokenize("hel\u{0}lo\u{FFFD} wor\u{200B}ld\u{AD}\u{7}") == ["hello", "world"])
        #expect(t.tokenize(" the\tquick\r\nbrown\u{A0}fox\u{3000}the\u{2028}fox ") ==
                ["the", "quick", "brown", "fox", "the", "fox"])
        #expect(t.tokenize("") == [])
        #expect(t.tokenize(" \t\n") == [])
    }

    @Test func isolatesCJKIdeographs() throws {
        let t = try Self.small()
        #expect(t.tokenize("中文the中") == ["中", "文", "the", "中"])
    }

    @Test func literalSpecialTokensAreKeptWhole() throws {
        let t = try Self.small()
        #expect(t.tokenize("hello [MASK] world[SEP]the") == ["hello", "[MASK]", "world", "[SEP]", "the"])
        // Case-sensitive: "[mask]" is ordinary text.
        #expect(t.tokenize("[mask]") == ["[", "[UNK]", "]"])
        // After cleaning removes a control character, a word equal to a special token stays whole
        // (HF's never_split).
        #expect(t.tokenize("[MA\u{0}SK]") == ["[MASK]"])
    }

    // MARK: WordPiece

    @Test func wordPieceIsGreedyLongestMatchWithContinuations() throws {
        let t = try Self.small()
        #expect(t.tokenize("unaffable playing plays") == ["un", "##aff", "##able", "play", "##ing", "play", "##s"])
        #expect(t.tokenize("aaa") == ["a", "##a", "##a"])
    }

    @Test func unknownWordsBecomeOneUNK() throws {
        let t = try Self.small()
        #expect(t.tokenize("xyz the") == ["[UNK]", "the"])
        // A word that cannot be covered completely is a single [UNK], not a partial split.
        #expect(t.tokenize("unaffablex") == ["[UNK]"])
        // At most 100 scalars per word; longer is [UNK].
        #expect(t.tokenize(String(repeating: "a", count: 100)).count == 100)
        #expect(t.tokenize(String(repeating: "a", count: 101)) == ["[UNK]"])
        // The limit counts scalars after accent stripping (120 scalars, 60 after).
        #expect(t.tokenize(String(repeating: "a\u{301}", count: 60)).count == 60)
    }

    // MARK: Encoding

    @Test func encodeAddsCLSAndSEPAndTruncates() throws {
        let t = try Self.small()
        #expect(t.encode("The quick brown fox") == [3, 6, 7, 8, 9, 4])
        #expect(t.encode("") == [3, 4])
        let short = try Self.small(maxLength: 5)
        #expect(short.encode("The quick brown fox") == [3, 6, 7, 8, 4])
        #expect(short.encode("the fox") == [3, 6, 9, 4])
        let minimal = try Self.small(maxLength: 2)
        #expect(minimal.encode("the quick") == [3, 4])
    }

    @Test func encodeBatchPadsToTheLongestWithAMask() throws {
        let t = try Self.small()
        let (ids, mask) = t.encodeBatch(["the fox", "the quick brown fox", ""])
        #expect(ids == [[3, 6, 9, 4, 0, 0], [3, 6, 7, 8, 9, 4], [3, 4, 0, 0, 0, 0]])
        #expect(mask == [[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0]])
        let none = t.encodeBatch([])
        #expect(none.ids.isEmpty && none.attentionMask.isEmpty)
    }

    @Test func inMemoryVocabularyMatchesTheFile() throws {
        let lines = try String(contentsOfFile: Fixtures.path("tokenizer_vocab_small.txt"), encoding: .utf8)
            .split(separator: "\n", omittingEmptySubsequences: false).map(String.init).dropLast()
        let t = BertTokenizer(vocabulary: Array(lines))
        #expect(t.encode("Unaffable, café!") == (try Self.small()).encode("Unaffable, café!"))
    }

    // MARK: Reference (Hugging Face) on the real vocabulary

    @Test func minilmReferenceFixtureIsWellFormed() throws {
        let ref = try MinilmFixture.reference()
        #expect(ref.sentences.count >= 6)
        #expect(ref.versions["transformers"] != nil)
        for (i, s) in ref.sentences.enumerated() {
            #expect(s.embedding.count == 384)
            let norm = s.embedding.reduce(0) { $0 + Double($1) * Double($1) }.squareRoot()
            #expect(abs(norm - 1) < 1e-5, "sentence \(i) embedding norm \(norm)")
            #expect(s.ids.first == 101 && s.ids.last == 102 && s.ids.count == s.tokens.count)
            #expect(Array(ref.batch.ids[i].prefix(s.ids.count)) == s.ids)
            #expect(ref.batch.attention_mask[i].reduce(0, +) == s.ids.count)
        }
    }

    @Test(.enabled(if: MinilmFixture.available,
                   "minilm model not found: run scripts/fetch_minilm.sh (or set REMAT_MINILM_DIR)"))
    func minilmVocabularyMatchesHuggingFaceIDs() throws {
        let ref = try MinilmFixture.reference()
        let t = try BertTokenizer(vocabularyFile: MinilmFixture.vocabPath)
        #expect(t.vocabulary.count == 30522)
        #expect((t.padID, t.unkID, t.clsID, t.sepID) == (0, 100, 101, 102))
        for s in ref.sentences {
            #expect(t.encode(s.text) == s.ids, "\(s.text)")
            #expect(["[CLS]"] + t.tokenize(s.text) + ["[SEP]"] == s.tokens, "\(s.text)")
        }
        let batch = t.encodeBatch(ref.sentences.map(\.text))
        #expect(batch.ids == ref.batch.ids)
        #expect(batch.attentionMask == ref.batch.attention_mask)
        for c in ref.tokenizer_cases {
            #expect(t.encode(c.text) == c.ids, "\(c.text.debugDescription)")
        }
        let short = try BertTokenizer(vocabularyFile: MinilmFixture.vocabPath, maxLength: ref.truncation.max_length)
        #expect(short.encode(ref.truncation.text) == ref.truncation.ids)
    }
}
