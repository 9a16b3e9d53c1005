/// Loading and saving a module's tensors by name (PyTorch `state_dict` semantics).
public struct StateDictError: Error, CustomStringConvertible, Equatable {
    public var missing: [String]
    public var unexpected: [String]
    /// (name, expected shape, found shape)
    public var shapeMismatches: [ShapeMismatch]

    public struct ShapeMismatch: Equatable, Sendable {
        public var name: String
        public var expected: [Int]
        public var found: [Int]
        public init(name: String, expected: [Int], found: [Int]) {
            self.name = name
            self.expected = expected
            self.found = found
        }
    }

    public var description: String {
        var parts: [String] = []
        if !missing.isEmpty { parts.append("missing: \(missing.joined(separator: ", "))") }
        if !unexpected.isEmpty { parts.append("unexpected: \(unexpected.joined(separator: ", "))") }
        if !shapeMismatches.isEmpty {
            parts.append("shape mismatch: " + shapeMismatches.map { "\($0.name) expects \($0.expected), file has \($0.found)" }
                .joined(separator: "; "))
        }
        return "state dict does not fit the model — " + parts.joined(separator: " | ")
    }
}

extension Module {
    /// Every parameter and buffer by its path.
    public var stateDict: [String: Tensor] { Dictionary(uniqueKeysWithValues: namedTensors) }

    /// Copies `tensors` into this module's parameters and buffers by name (converting float16 /
    /// bfloat16 / float64-loaded values to float32). Strict by default: any missing, unexpected or
    /// shape-mismatched name fails the whole load with one error listing them all, and nothing is
    /// changed. Non-strict loads what fits and returns the names it skipped.
    @discardableResult
    public func loadStateDict(_ tensors: [String: Tensor], strict: Bool = true) throws -> StateDictError? {
        let mine = stateDict
        var problem = StateDictError(missing: [], unexpected: [], shapeMismatches: [])
        problem.missing = mine.keys.filter { tensors[$0] == nil }.sorted()
        problem.unexpected = tensors.keys.filter { mine[$0] == nil }.sorted()
        for (name, target) in mine.sorted(by: { $0.key < $1.key }) {
            if let source = tensors[name], source.shape != target.shape {
                problem.shapeMismatches.append(.init(name: name, expected: target.shape, found: source.shape))
            }
        }
        let clean = problem.missing.isEmpty && problem.unexpected.isEmpty && problem.shapeMismatches.isEmpty
        if strict && !clean { throw problem }
        noGrad {
            for (name, target) in mine {
                guard let source = tensors[name], source.shape == target.shape else { continue }
                target.copyValues(from: source)
            }
        }
        return clean ? nil : problem
    }
}

extension Tensor {
    /// Overwrites this tensor's elements with `source`'s (same shape; converted to this dtype), in place.
    public func copyValues(from source: Tensor) {
        precondition(source.shape == shape, "copyValues: source shape \(source.shape) differs from \(shape)")
        let converted = source.dtype == dtype ? source : source.converted(to: dtype)
        noGrad { converted.copyElements(into: self) }
    }
}
