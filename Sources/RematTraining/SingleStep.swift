/// One forward + backward on given weights and batch (`remat step`): how users check parity with
/// another framework.
public enum SingleStep {
    public enum Error: Swift.Error, CustomStringConvertible, Equatable {
        case missingBatchTensor(path: String, name: String)
        case badBatchTensor(path: String, name: String, reason: String)
        public var description: String {
            switch self {
            case .missingBatchTensor(let path, let name):
                return "batch file \(path) has no tensor '\(name)' (expected 'input' and 'target', I32 or I64 [B, T])"
            case .badBatchTensor(let path, let name, let reason):
                return "batch file \(path): tensor '\(name)' \(reason)"
            }
        }
    }

    /// Reads a token batch file (`input`, `target`: I32/I64 `[B, T]`, B and T ≥ 1), checking it
    /// against `contextLength` and, when given, every id against `vocabulary`.
    public static func readTokenBatch(path: String, contextLength: Int, vocabulary: Int? = nil) throws -> TokenBatch {
        let file = try SafetensorsFile.read(path: path)
        func get(_ name: String) throws -> Tensor {
            guard let t = file[name] else { throw Error.missingBatchTensor(path: path, name: name) }
            guard t.dtype == .int32 || t.dtype == .int64 else {
                throw Error.badBatchTensor(path: path, name: name, reason: "has dtype \(t.dtype.safetensorsName); expected I32 or I64")
            }
            guard t.rank == 2, t.shape[0] >= 1, t.shape[1] >= 1 else {
                throw Error.badBatchTensor(path: path, name: name, reason: "has shape \(t.shape); expected [B, T] with B, T ≥ 1")
            }
            guard t.shape[1] <= contextLength else {
                throw Error.badBatchTensor(path: path, name: name, reason: "has T = \(t.shape[1]), longer than the model's context \(contextLength)")
            }
            return t
        }
        let input = try get("input"), target = try get("target")
        guard input.shape == target.shape else {
            throw Error.badBatchTensor(path: path, name: "target", reason: "has shape \(target.shape) but input has \(input.shape)")
        }
        if let vocabulary {
            try requireIndices(input, below: vocabulary, what: "token id", path: path, name: "input")
            try requireIndices(target, below: vocabulary, what: "token id", path: path, name: "target")
        }
        return TokenBatch(input: input, target: target)
    }

    /// Checks that every element of the integer tensor `t` is in `0..<limit`; the error names the
    /// first one that is not, its position and the limit.
    static func requireIndices(_ t: Tensor, below limit: Int, what: String, path: String, name: String) throws {
        let values = t.toIntArray()
        if let i = values.firstIndex(where: { $0 < 0 || $0 >= limit }) {
            throw Error.badBatchTensor(path: path, name: name,
                                       reason: "holds \(what) \(values[i]) at flat position \(i) (shape \(t.shape)); the model takes 0 to \(limit - 1)")
        }
    }

    /// Reads an image batch file (`input`: F32 `[B, C, S, S]`, finite; `target`: I32/I64 `[B]`
    /// classes, checked against `classes` when given).
    public static func readImageBatch(path: String, channels: Int, size: Int, classes: Int? = nil) throws -> TrainingBatch {
        let batch = try readLabelledBatch(path: path, labels: classes, expecting: "F32 [B, \(channels), \(size), \(size)], B ≥ 1") { input in
            input.dtype == .float32 && input.rank == 4 && input.shape[0] >= 1 && input.shape[1] == channels && input.shape[2] == size && input.shape[3] == size
        }
        if let i = batch.input.toArray().firstIndex(where: { !$0.isFinite }) {
            throw Error.badBatchTensor(path: path, name: "input", reason: "holds a non-finite value at flat position \(i)")
        }
        return batch
    }

    /// Reads a sequence-classification batch file (`input`: I32/I64 `[B, T]` token ids, T ≤
    /// `maxLength`, checked against `vocabulary` when given; `target`: I32/I64 `[B]` labels,
    /// checked against `labels` when given).
    public static func readLabelledSequences(path: String, maxLength: Int, vocabulary: Int? = nil, labels: Int? = nil) throws -> TrainingBatch {
        let batch = try readLabelledBatch(path: path, labels: labels, expecting: "I32 or I64 [B, T] with B ≥ 1 and 1 ≤ T ≤ \(maxLength)") { input in
            (input.dtype == .int32 || input.dtype == .int64) && input.rank == 2 && input.shape[0] >= 1 && (1...maxLength).contains(input.shape[1])
        }
        if let vocabulary { try requireIndices(batch.input, below: vocabulary, what: "token id", path: path, name: "input") }
        return batch
    }

    /// `input` (which must satisfy `isValid`, described by `expected`) and `target`, one I32/I64
    /// label per row of `input` (each below `labels` when given), from a batch file.
    private static func readLabelledBatch(path: String, labels: Int?, expecting expected: String, _ isValid: (Tensor) -> Bool) throws -> TrainingBatch {
        let file = try SafetensorsFile.read(path: path)
        guard let input = file["input"] else { throw Error.missingBatchTensor(path: path, name: "input") }
        guard let target = file["target"] else { throw Error.missingBatchTensor(path: path, name: "target") }
        guard isValid(input) else {
            throw Error.badBatchTensor(path: path, name: "input", reason: "is \(input.dtype.safetensorsName) \(input.shape); expected \(expected)")
        }
        guard target.dtype == .int32 || target.dtype == .int64, target.shape == [input.shape[0]] else {
            throw Error.badBatchTensor(path: path, name: "target",
                                       reason: "is \(target.dtype.safetensorsName) \(target.shape); expected I32 or I64 [\(input.shape[0])]")
        }
        if let labels { try requireIndices(target, below: labels, what: "class", path: path, name: "target") }
        return TrainingBatch(input: input, target: target)
    }

    /// Loads `weightsPath` strictly into the workload's model, runs one forward + backward on the
    /// batch file, and returns the loss and every parameter's gradient by name.
    ///
    /// With a `budget`, the step is profiled and planned first (``StepCapture`` with a throwaway
    /// optimizer, the weights put back bitwise afterwards) and runs under the plan; the gradients
    /// are bitwise those of the unplanned step.
    public static func run(_ workload: Workload, weightsPath: String?, batchPath: String,
                           budget: MemoryBudget? = nil, solver: PlanSolver = .auto, options: PlanOptions = .default) throws
        -> (loss: Float, gradients: [(String, Tensor)], plan: MemoryPlan?) {
        let model = workload.model
        if let weightsPath { try model.loadStateDict(SafetensorsFile.read(path: weightsPath).tensors) }
        let batch: TrainingBatch
        switch workload.batchKind {
        case .tokens(let t, let v): batch = try readTokenBatch(path: batchPath, contextLength: t, vocabulary: v)
        case .images(let c, let size, let classes): batch = try readImageBatch(path: batchPath, channels: c, size: size, classes: classes)
        case .labelledSequences(let t, let v, let labels): batch = try readLabelledSequences(path: batchPath, maxLength: t, vocabulary: v, labels: labels)
        }
        try ModelZoo.checkMemory(workload: workload.name, batchSize: batch.input.shape[0])
        var plan: MemoryPlan? = nil
        if let budget {
            let trainer = Trainer(model: model, optimizer: workload.makeOptimizer(), gradientClip: nil)
            plan = try trainer.preservingState { try trainer.planMemory(budget: budget, batch: batch, solver: solver, options: options).plan }
        }
        model.zeroGrad()
        let loss = model.loss(batch.input, targets: batch.target)
        loss.backward()
        try model.savedTensorPolicy?.checkAfterBackward()   // an offloaded tensor lost: no gradients written
        let grads = model.namedParameters.map { ($0.0, $0.1.grad ?? Tensor.zeros($0.1.shape)) }
        return (loss.item, grads, plan)
    }
}
