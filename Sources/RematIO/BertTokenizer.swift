import Foundation

/// Why a WordPiece vocabulary file could not be loaded. Every case names the file.
public enum TokenizerError: Error, CustomStringConvertible, Equatable {
    /// No file (or a directory) at the path.
    case fileNotFound(path: String)
    /// The file exists but could not be read.
    case unreadable(path: String, reason: String)
    /// The file has no lines.
    case emptyVocabulary(path: String)
    /// A line is not valid UTF-8 (1-based line number).
    case invalidUTF8(path: String, line: Int)
    /// A special token the tokenizer needs (`[PAD]`, `[UNK]`, `[CLS]`, `[SEP]`) is not in the file.
    case missingSpecialToken(path: String, token: String)

    public var description: String {
        switch self {
        case .fileNotFound(let path):
            return "vocabulary file not found: \(path)"
        case .unreadable(let path, let reason):
            return "cannot read vocabulary file \(path): \(reason)"
        case .emptyVocabulary(let path):
            return "vocabulary file is empty: \(path)"
        case .invalidUTF8(let path, let line):
            return "vocabulary file \(path) is malformed: line \(line) is not valid UTF-8"
        case .missingSpecialToken(let path, let token):
            return "vocabulary file \(path) is malformed: it has no \(token) token (is it a BERT WordPiece vocab.txt?)"
        }
    }
}

/// BERT's WordPiece tokenizer (`vocab.txt`), with exactly the semantics of Hugging Face's slow
/// `BertTokenizer` (`BasicTokenizer` + `WordpieceTokenizer`, `do_lower_case`, `strip_accents=None`,
/// `tokenize_chinese_chars=True`, special tokens in the text kept whole):
///
/// 1. The special tokens (`[PAD]`, `[UNK]`, `[CLS]`, `[SEP]`, `[MASK]`) written literally in the
///    text are cut out first (case-sensitively) and map to their own ids; the pieces between them
///    are tokenized independently.
/// 2. Cleaning: U+0000, U+FFFD and control characters (general category C*, but not tab/CR/LF)
///    are removed; whitespace (space, tab, CR, LF, Zs, U+2028/U+2029) becomes a word break.
/// 3. CJK ideographs get a word break on both sides; the text is NFC-normalised.
/// 4. Per whitespace-separated word: lowercased (full Unicode mapping, Final_Sigma as Python's
///    `str.lower`), then NFD with nonspacing marks (Mn) dropped — both only when `lowercase`.
/// 5. Every punctuation character (ASCII 33–47, 58–64, 91–96, 123–126, or Unicode P*) is a word.
/// 6. WordPiece: greedy longest-match-first over Unicode scalars, continuations prefixed `##`;
///    a word longer than 100 scalars, or one that cannot be covered, is a single `[UNK]`.
///
/// Vocabulary look-ups compare Unicode scalars exactly (not Swift's canonical String equality),
/// as Python does. Character properties come from the Swift runtime's Unicode tables, which may
/// be a newer Unicode version than the Python that produced a reference: only characters assigned
/// between the two versions can tokenize differently.
public struct BertTokenizer: Sendable {
    /// The id of each token (vocabulary line number, 0-based).
    public let vocabulary: [String]
    public let lowercase: Bool
    /// The longest sequence ``encode(_:)`` returns, `[CLS]` and `[SEP]` included.
    public let maxLength: Int
    public var padID: Int
    public var clsID: Int
    public var sepID: Int
    public var unkID: Int
    /// The longest word WordPiece splits; longer words are one `[UNK]` (HF's default).
    public let maxInputCharsPerWord = 100

    /// Token (as UTF-8 bytes, compared exactly) → id. For a duplicated line the last id wins.
    private let ids: [[UInt8]: Int]
    /// Special tokens present in the vocabulary, as scalars with their ids, for splitting them
    /// out of the text.
    private let specials: [(scalars: [Unicode.Scalar], id: Int)]

    static let specialTokenNames = ["[UNK]", "[SEP]", "[PAD]", "[CLS]", "[MASK]"]
    static let requiredSpecialTokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]

    /// Loads a `vocab.txt` (one token per line, id = 0-based line number; `\n`, `\r\n` or `\r`
    /// line ends). Throws ``TokenizerError`` naming the file if it is missing, unreadable, empty,
    /// not UTF-8, or lacks `[PAD]`, `[UNK]`, `[CLS]` or `[SEP]`.
    public init(vocabularyFile path: String, lowercase: Bool = true, maxLength: Int = 512) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue else {
            throw TokenizerError.fileNotFound(path: path)
        }
        let data: Data
        do { data = try RegularFile.contents(atPath: path) } catch let e as RegularFile.Error {
            throw TokenizerError.unreadable(path: path, reason: e.reason)
        }
        if data.isEmpty { throw TokenizerError.emptyVocabulary(path: path) }
        let lines = Self.splitLines(data)
        var tokens: [String] = []
        tokens.reserveCapacity(lines.count)
        for (i, line) in lines.enumerated() {
            guard let s = String(validating: line, as: UTF8.self) else {
                throw TokenizerError.invalidUTF8(path: path, line: i + 1)
            }
            tokens.append(s)
        }
        let present = Set(tokens.map { Array($0.utf8) })
        for name in Self.requiredSpecialTokens where !present.contains(Array(name.utf8)) {
            throw TokenizerError.missingSpecialToken(path: path, token: name)
        }
        self.init(vocabulary: tokens, lowercase: lowercase, maxLength: maxLength)
    }

    /// A tokenizer over an in-memory vocabulary (id = index). The vocabulary must contain
    /// `[PAD]`, `[UNK]`, `[CLS]` and `[SEP]`, and `maxLength` must be at least 2 (preconditions).
    public init(vocabulary: [String], lowercase: Bool = true, maxLength: Int = 512) {
        precondition(maxLength >= 2, "BertTokenizer: maxLength must be ≥ 2 (room for [CLS] and [SEP]), got \(maxLength)")
        var ids: [[UInt8]: Int] = [:]
        ids.reserveCapacity(vocabulary.count)
        for (i, token) in vocabulary.enumerated() { ids[Array(token.utf8)] = i }
        func id(_ name: String) -> Int {
            guard let id = ids[Array(name.utf8)] else {
                preconditionFailure("BertTokenizer: the vocabulary has no \(name) token")
            }
            return id
        }
        self.vocabulary = vocabulary
        self.lowercase = lowercase
        self.maxLength = maxLength
        self.ids = ids
        self.padID = id("[PAD]")
        self.unkID = id("[UNK]")
        self.clsID = id("[CLS]")
        self.sepID = id("[SEP]")
        self.specials = Self.specialTokenNames.compactMap { name in
            ids[Array(name.utf8)].map { (Array(name.unicodeScalars), $0) }
        }
    }

    // MARK: Public API

    /// The word pieces of `text` (vocabulary strings; unknown words are `[UNK]`), without
    /// `[CLS]`/`[SEP]` and without truncation.
    public func tokenize(_ text: String) -> [String] {
        pieceIDs(text).map { vocabulary[$0] }
    }

    /// `[CLS]` + the ids of `text` + `[SEP]`, the pieces truncated so the total is ≤ ``maxLength``.
    public func encode(_ text: String) -> [Int] {
        var pieces = pieceIDs(text)
        if pieces.count > maxLength - 2 { pieces.removeLast(pieces.count - (maxLength - 2)) }
        return [clsID] + pieces + [sepID]
    }

    /// ``encode(_:)`` of each text, right-padded with `[PAD]` to the longest; the mask is 1 on
    /// real tokens (`[CLS]` and `[SEP]` included) and 0 on padding.
    public func encodeBatch(_ texts: [String]) -> (ids: [[Int]], attentionMask: [[Int]]) {
        let encoded = texts.map(encode)
        let longest = encoded.map(\.count).max() ?? 0
        var ids: [[Int]] = []
        var mask: [[Int]] = []
        ids.reserveCapacity(encoded.count)
        mask.reserveCapacity(encoded.count)
        for e in encoded {
            let pad = longest - e.count
            ids.append(e + Array(repeating: padID, count: pad))
            mask.append(Array(repeating: 1, count: e.count) + Array(repeating: 0, count: pad))
        }
        return (ids, mask)
    }

    /// The id of a vocabulary token (exact scalar comparison), or nil.
    public func id(of token: String) -> Int? { ids[Array(token.utf8)] }

    // MARK: Pipeline

    /// Ids of the word pieces of `text`.
    func pieceIDs(_ text: String) -> [Int] {
        let scalars = Array(text.unicodeScalars)
        var out: [Int] = []
        // 1. Cut out literal special tokens (HF's added-token trie: leftmost match; the BERT
        //    special tokens are not prefixes of one another).
        var start = 0
        var i = 0
        while i < scalars.count {
            if scalars[i] == "[", let special = specialMatch(scalars, at: i) {
                if start < i { appendChunk(scalars[start..<i], to: &out) }
                out.append(special.id)
                i += special.scalars.count
                start = i
            } else {
                i += 1
            }
        }
        if start < scalars.count { appendChunk(scalars[start...], to: &out) }
        return out
    }

    private func specialMatch(_ s: [Unicode.Scalar], at i: Int) -> (scalars: [Unicode.Scalar], id: Int)? {
        for sp in specials where i + sp.scalars.count <= s.count {
            var k = 0
            while k < sp.scalars.count && s[i + k] == sp.scalars[k] { k += 1 }
            if k == sp.scalars.count { return sp }
        }
        return nil
    }

    /// BasicTokenizer + WordPiece on text that contains no literal special token.
    private func appendChunk(_ chunk: ArraySlice<Unicode.Scalar>, to out: inout [Int]) {
        // 2–3. Clean, isolate CJK ideographs, whitespace → " ".
        var cleaned: [Unicode.Scalar] = []
        cleaned.reserveCapacity(chunk.count + 8)
        var ascii = true
        for s in chunk {
            let v = s.value
            if v < 0x80 {
                if v == 0x20 || v == 0x09 || v == 0x0A || v == 0x0D {
                    cleaned.append(" ")
                } else if v < 0x20 || v == 0x7F {
                    continue  // Cc
                } else {
                    cleaned.append(s)
                }
                continue
            }
            if v == 0xFFFD || Self.isControl(s) { continue }
            if Self.isWhitespace(s) {
                cleaned.append(" ")
            } else if Self.isChineseChar(v) {
                ascii = false  // compatibility ideographs change under NFC
                cleaned.append(" "); cleaned.append(s); cleaned.append(" ")
            } else {
                ascii = false
                cleaned.append(s)
            }
        }
        if !ascii { cleaned = Self.nfc(cleaned) }

        // 4–6. Per whitespace-separated word.
        var w = 0
        while w < cleaned.count {
            if cleaned[w] == " " { w += 1; continue }
            var e = w
            while e < cleaned.count && cleaned[e] != " " { e += 1 }
            processWord(Array(cleaned[w..<e]), to: &out)
            w = e
        }
    }

    private func processWord(_ word: [Unicode.Scalar], to out: inout [Int]) {
        // HF's never_split: a word that is exactly a special token (it can only appear here after
        // cleaning removed characters from inside it) is kept as it is.
        if word.first == "[", specials.contains(where: { $0.scalars == word }) {
            wordPiece(word[...], to: &out)
            return
        }
        var token = word
        if lowercase {
            token = Self.stripAccents(Self.lower(token))
        }
        // Punctuation split.
        var start = 0
        for (k, s) in token.enumerated() where Self.isPunctuation(s) {
            if start < k { wordPiece(token[start..<k], to: &out) }
            wordPiece(token[k...k], to: &out)
            start = k + 1
        }
        if start < token.count { wordPiece(token[start...], to: &out) }
    }

    /// Greedy longest-match-first WordPiece of one word.
    private func wordPiece(_ word: ArraySlice<Unicode.Scalar>, to out: inout [Int]) {
        let chars = Array(word)
        if chars.isEmpty { return }
        if chars.count > maxInputCharsPerWord { out.append(unkID); return }
        let utf8: [[UInt8]] = chars.map { Array(String(Character($0)).utf8) }
        var pieces: [Int] = []
        var start = 0
        var key: [UInt8] = []
        key.reserveCapacity(4 * chars.count + 2)
        while start < chars.count {
            var end = chars.count
            var found: Int?
            while start < end {
                key.removeAll(keepingCapacity: true)
                if start > 0 { key.append(0x23); key.append(0x23) }  // "##"
                for j in start..<end { key.append(contentsOf: utf8[j]) }
                if let id = ids[key] { found = id; break }
                end -= 1
            }
            guard let id = found else { out.append(unkID); return }
            pieces.append(id)
            start = end
        }
        out.append(contentsOf: pieces)
    }

    // MARK: Character classes (HF's _is_control, _is_whitespace, _is_punctuation, _is_chinese_char)

    static func isControl(_ s: Unicode.Scalar) -> Bool {
        switch s.value {
        case 0x09, 0x0A, 0x0D: return false
        default: break
        }
        switch s.properties.generalCategory {
        case .control, .format, .surrogate, .privateUse, .unassigned: return true
        default: return false
        }
    }

    /// Space, tab, LF, CR and Zs (HF's `_is_whitespace`), plus U+2028/U+2029, on which Python's
    /// `str.split()` also breaks words.
    static func isWhitespace(_ s: Unicode.Scalar) -> Bool {
        switch s.value {
        case 0x20, 0x09, 0x0A, 0x0D, 0x2028, 0x2029: return true
        default: return s.value >= 0x80 && s.properties.generalCategory == .spaceSeparator
        }
    }

    static func isPunctuation(_ s: Unicode.Scalar) -> Bool {
        let v = s.value
        if (33...47).contains(v) || (58...64).contains(v) || (91...96).contains(v) || (123...126).contains(v) {
            return true
        }
        if v < 0x80 { return false }
        switch s.properties.generalCategory {
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
             .initialPunctuation, .finalPunctuation, .otherPunctuation:
            return true
        default:
            return false
        }
    }

    static func isChineseChar(_ v: UInt32) -> Bool {
        (0x4E00...0x9FFF).contains(v) || (0x3400...0x4DBF).contains(v)
            || (0x20000...0x2A6DF).contains(v) || (0x2A700...0x2B73F).contains(v)
            || (0x2B740...0x2B81F).contains(v) || (0x2B820...0x2CEAF).contains(v)
            || (0xF900...0xFAFF).contains(v) || (0x2F800...0x2FA1F).contains(v)
    }

    // MARK: Normalisation

    static func isASCII(_ s: [Unicode.Scalar]) -> Bool { s.allSatisfy { $0.value < 0x80 } }

    static func nfc(_ s: [Unicode.Scalar]) -> [Unicode.Scalar] {
        Array(String(String.UnicodeScalarView(s)).precomposedStringWithCanonicalMapping.unicodeScalars)
    }

    /// Python's `str.lower()`: the full lowercase mapping of each scalar, with U+03A3 → ς in the
    /// Final_Sigma context (preceded by a cased letter and not followed by one, case-ignorables
    /// skipped both ways).
    static func lower(_ s: [Unicode.Scalar]) -> [Unicode.Scalar] {
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(s.count)
        for (i, c) in s.enumerated() {
            let v = c.value
            if v < 0x80 {
                out.append((0x41...0x5A).contains(v) ? Unicode.Scalar(v + 32)! : c)
            } else if v == 0x3A3 {
                out.append(isFinalSigma(s, i) ? "\u{3C2}" : "\u{3C3}")
            } else {
                out.append(contentsOf: c.properties.lowercaseMapping.unicodeScalars)
            }
        }
        return out
    }

    private static func isFinalSigma(_ s: [Unicode.Scalar], _ i: Int) -> Bool {
        var j = i - 1
        while j >= 0 && s[j].properties.isCaseIgnorable { j -= 1 }
        guard j >= 0 && s[j].properties.isCased else { return false }
        j = i + 1
        while j < s.count && s[j].properties.isCaseIgnorable { j += 1 }
        return j == s.count || !s[j].properties.isCased
    }

    /// NFD, then drop nonspacing marks (Mn).
    static func stripAccents(_ s: [Unicode.Scalar]) -> [Unicode.Scalar] {
        if isASCII(s) { return s }
        let nfd = String(String.UnicodeScalarView(s)).decomposedStringWithCanonicalMapping
        return nfd.unicodeScalars.filter { $0.properties.generalCategory != .nonspacingMark }
    }

    /// Splits a file's bytes into lines as Python's text-mode `readlines()` does (`\n`, `\r\n`
    /// and `\r` end a line; a final line without an end still counts).
    static func splitLines(_ data: Data) -> [[UInt8]] {
        var lines: [[UInt8]] = []
        var current: [UInt8] = []
        var previousCR = false
        for b in data {
            if b == 0x0A {
                if previousCR { previousCR = false; continue }  // \r\n: line already ended at \r
                lines.append(current); current.removeAll(keepingCapacity: true)
            } else if b == 0x0D {
                lines.append(current); current.removeAll(keepingCapacity: true)
                previousCR = true
                continue
            } else {
                current.append(b)
            }
            previousCR = false
        }
        if !current.isEmpty { lines.append(current) }
        return lines
    }
}
