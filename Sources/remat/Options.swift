import ArgumentParser
import Foundation
import Remat

// The option groups the commands share, each checked in its `validate()` — before any work — with
// a message naming the option, the value and what would be right. Numeric options take their
// value unconditionally, so `--budget -5` is a bad budget, not a missing value.

/// Options every command that computes shares.
struct EngineOptions: ParsableArguments {
    @Option(parsing: .unconditional, help: "Threads for kernels and GEMM, 1 to \(EngineOptions.maximumThreads) (default: CPUs, at most 4; env REMAT_THREADS).")
    var threads: Int?

    static let maximumThreads = 256

    func validate() throws {
        if let threads { try requireRange("--threads", threads, 1...Self.maximumThreads) }
        if let env = ProcessInfo.processInfo.environment["REMAT_THREADS"], !env.isEmpty {
            guard let n = Int(env), (1...Self.maximumThreads).contains(n) else {
                throw ValidationError("REMAT_THREADS must be a whole number from 1 to \(Self.maximumThreads), got '\(env)'")
            }
        }
    }

    func apply() {
        if let threads { Runtime.setThreads(threads) } else { _ = Runtime.threads }
    }
}

/// `--policy` shared by the commands that run a training step.
struct PolicyOption: ParsableArguments {
    @Option(help: "Checkpointing: none, all, alternate, every-k:K, sqrt, recursive:L, revolve:S, store-nothing, heavy-ops[:PARAMS], auto[:PARAMS], save-matmuls, modules:PATH[,PATH...].")
    var policy = "none"

    func validate() throws { _ = try parsed() }

    func parsed() throws -> CheckpointPolicy {
        do { return try CheckpointPolicy.parse(policy) } catch let e as CheckpointPolicy.ParseError {
            throw ValidationError(e.description)
        }
    }
}

/// `--precision`: the arithmetic of the products.
struct PrecisionOption: ParsableArguments {
    @Option(help: "float32 (default); bf16 (autocast: linear, matmul, attention and convolution in bfloat16 with float32 accumulation, norms and softmax in float32, saved activations in 2 bytes, float32 master weights); fp16 (the same in float16, with dynamic loss scaling: steps with inf/NaN gradients skipped and counted); fp8 (FP8 linear layers: E4M3FN operands, E5M2 output gradients, per-tensor scales; saves 1-byte inputs) or fp8-save-hp (FP8 saving float32 inputs, as TorchAO does).")
    var precision = "float32"

    func validate() throws { _ = try parsed() }

    /// The FP8 mode of the linear layers and the autocast precision (nil, nil: float32).
    func parsed() throws -> (float8: Float8LinearOptions?, autocast: AutocastPrecision?) {
        switch precision {
        case "float32": return (nil, nil)
        case "bf16": return (nil, .bfloat16)
        case "fp16": return (nil, .float16)
        case "fp8": return (Float8LinearOptions(), nil)
        case "fp8-save-hp": return (Float8LinearOptions(saveHighPrecision: true), nil)
        default: throw ValidationError("--precision must be float32, bf16, fp16, fp8 or fp8-save-hp, got '\(precision)'")
        }
    }
}

/// `--compress`, repeated: activation compression rules, shared by the commands that run a training step.
struct CompressionOption: ParsableArguments {
    @Option(name: .customLong("compress"), parsing: .singleValue,
            help: "Compress saved activations: CODEC[:WHERE], repeatable, first matching rule wins. CODEC: none, bf16, fp16, fp8-e4m3[/gN], fp8-e5m2[/gN], int8, relu-mask, bits, causal, causal-bf16; WHERE: all (default), op=KINDS, role=ROLES, module=PATHS, tag=NAMES (comma-separated). Lossy codecs change what backward reads within their stated bounds.")
    var rules: [String] = []

    func validate() throws { _ = try parsed() }

    /// The compression asked for (nil: none).
    func parsed() throws -> ActivationCompression? {
        guard !rules.isEmpty else { return nil }
        do { return try ActivationCompression.parse(rules) } catch { throw ValidationError("--compress: \(error.description)") }
    }

    /// Stops when `other` (an option that plans memory itself) is combined with --compress.
    func requireAbsent(with other: String) throws {
        if !rules.isEmpty {
            throw ValidationError("--compress cannot be combined with \(other): a plan chooses the codec of each saved tensor itself (lossless ones by default, lossy ones with --allow-lossy when planning); give --compress with --policy")
        }
    }
}

/// Stops, before any work, when a `module=` selector names a module `model` does not have.
func checkSelectedModules(_ model: Module, _ compression: ActivationCompression?, _ offload: SavedTensorSelector?) throws {
    let selectors = (compression?.rules.map(\.selector) ?? []) + (offload.map { [$0] } ?? [])
    do { try model.checkSelectedModules(selectors) } catch { throw ValidationError(error.description) }
}

/// `--offload` and `--offload-dir`: saved activations spilled to files.
struct OffloadOption: ParsableArguments {
    @Option(name: .customLong("offload"), help: "Offload saved activations to files until backward: WHERE as for --compress (op=checkpoint: the inputs of checkpoint regions, with --policy all every block's input).")
    var selector: String?
    @Option(help: "Directory for the spill files (a directory of their own is made inside it; default: the system's temporary directory).")
    var offloadDir: String?

    func validate() throws {
        _ = try parsedSelector()
        if let offloadDir {
            guard selector != nil else { throw ValidationError("--offload-dir without --offload: give --offload WHERE (op=checkpoint, all, …)") }
            try requireExistingDirectory("--offload-dir", offloadDir)
        }
    }

    func parsedSelector() throws -> SavedTensorSelector? {
        do { return try selector.map(SavedTensorSelector.parse) } catch { throw ValidationError("--offload: \(error.description)") }
    }

    /// The offload asked for, with its store made (nil: none).
    func make() throws -> ActivationOffload? {
        guard let s = try parsedSelector() else { return nil }
        return ActivationOffload(to: try SpillStore(in: offloadDir), where: s)
    }

    func requireAbsent(with other: String) throws {
        if selector != nil {
            throw ValidationError("--offload cannot be combined with \(other) yet: the planner does not price offload; give --offload with --policy")
        }
    }
}

/// `--budget` and `--solver`, for the commands that plan under a memory budget.
struct BudgetOptions: ParsableArguments {
    @Option(parsing: .unconditional, help: "Memory budget: bytes with a unit (300MiB, 1.5GiB, 500MB) or a fraction of the unconstrained peak (0 < f ≤ 1, e.g. 0.6).")
    var budget: String?
    @Option(help: "Planner solver with --budget: \(PlanSolver.allCases.map(\.rawValue).joined(separator: ", ")).")
    var solver = "auto"
    @Option(name: .customLong("allow-lossy"), help: "Lossy codecs a plan may compress saved tensors with, comma-separated (bf16, fp16, fp8-e4m3[/gN], fp8-e5m2[/gN], int8); the plan lists each lossy choice. Lossless ones (relu-mask, bits, causal) are always allowed.")
    var allowLossy: String?
    @Flag(help: "Plan keep or recompute only (no codecs, no offload), as the planner did before codecs and offload were planned.")
    var recomputeOnly = false
    @Flag(name: .customLong("no-offload"), help: "Plan no offload (keep, recompute and codecs only): no spill files are written.")
    var noOffload = false

    func validate() throws {
        _ = try parsedBudget()
        _ = try parsedSolver()
        _ = try parsedPlanOptions()
        if allowLossy != nil && recomputeOnly { throw ValidationError("--allow-lossy and --recompute-only contradict each other: give one") }
        if noOffload && recomputeOnly { throw ValidationError("--no-offload with --recompute-only says it twice: --recompute-only plans no offload") }
    }

    /// The planner's own options that were given, by name.
    var plannerOptionsGiven: [String] {
        [(allowLossy != nil, "--allow-lossy"), (recomputeOnly, "--recompute-only"), (noOffload, "--no-offload"), (solver != "auto", "--solver")]
            .filter(\.0).map(\.1)
    }

    /// Requires --budget when the planner's own options are given.
    func requireBudgetForPlannerOptions() throws {
        guard budget == nil, let name = plannerOptionsGiven.first else { return }
        throw ValidationError("\(name) shapes a plan: give --budget with it")
    }

    /// Refuses the planner's own options where no plan is made (`why`: the option that says so).
    func refusePlannerOptions(_ why: String) throws {
        if let name = plannerOptionsGiven.first { throw ValidationError("\(name) shapes a plan; \(why) makes none") }
    }

    func parsedPlanOptions() throws -> PlanOptions {
        if recomputeOnly { return .recomputeOnly }
        do { return PlanOptions(offload: !noOffload, allowLossy: try allowLossy.map(PlanOptions.parseLossy) ?? []) } catch {
            throw ValidationError("--allow-lossy: \(error.description)")
        }
    }

    func parsedBudget() throws -> MemoryBudget? {
        do { return try budget.map(MemoryBudget.parse) } catch let e as PlanningError { throw ValidationError("--budget: \(e.description)") }
    }

    func parsedSolver() throws -> PlanSolver {
        do { return try PlanSolver.parse(solver) } catch let e as PlanningError { throw ValidationError("--solver: \(e.description)") }
    }
}

/// `--model` and `--batch` for the commands that run a workload.
struct WorkloadOptions: ParsableArguments {
    @Option(help: "Workload: \(ModelZoo.names.joined(separator: ", ")) (default: gpt-mini).") var model: String?
    @Option(parsing: .unconditional, help: "Batch size, 1 to \(WorkloadOptions.maximumBatch) (default: the workload's).") var batch: Int?

    static let maximumBatch = 1 << 16

    /// The workload's name (`--model`, or gpt-mini).
    var name: String { model ?? "gpt-mini" }

    func validate() throws {
        guard ModelZoo.names.contains(name) else {
            throw ValidationError("--model: unknown workload '\(name)'; known: \(ModelZoo.names.joined(separator: ", "))")
        }
        if let batch { try requireRange("--batch", batch, 1...Self.maximumBatch) }
    }

    /// The workload and the batch size to run it at, after checking that a step at that batch
    /// fits this machine's memory (above the spec batch size the need is measured and extrapolated
    /// first; see ``ModelZoo/checkMemory(workload:batchSize:)``).
    func workload() throws -> (Workload, Int) {
        let model = name
        let w = try ModelZoo.workload(model)
        let b = batch ?? w.specBatchSize
        try ModelZoo.checkMemory(workload: model, batchSize: b)
        return (w, b)
    }
}

/// Checks that option `name`'s `value` lies in `range`.
func requireRange<T: Comparable>(_ name: String, _ value: T, _ range: ClosedRange<T>) throws {
    guard range.contains(value) else {
        throw ValidationError("\(name) must be from \(range.lowerBound) to \(range.upperBound), got \(value)")
    }
}

/// Checks, before any work, that `path` can receive a file a command writes at the end: not a
/// directory, in a directory that exists and is writable, and not one of the command's `inputs`.
func requireWritableFile(_ name: String, _ path: String, notSameAs inputs: [(String, String)] = []) throws {
    var isDirectory: ObjCBool = false
    if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
        throw ValidationError("\(name) \(path) is a directory; give a file path")
    }
    let parent = parentPath(path)
    let dir = parent.isEmpty ? "." : parent
    guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDirectory), isDirectory.boolValue else {
        throw ValidationError("\(name) \(path): the directory \(dir) does not exist")
    }
    guard FileManager.default.isWritableFile(atPath: dir) else { throw ValidationError("\(name) \(path): the directory \(dir) is not writable") }
    for (inputName, input) in inputs where sameFile(path, input) {
        throw ValidationError("\(name) \(path) is the \(inputName) file: the command would overwrite its own input")
    }
}

/// The directory part of `path` by its last "/" ("" for a bare name, "/" at the root) — not
/// Foundation's `deletingLastPathComponent`, which traps on a "~" component on Linux.
func parentPath(_ path: String) -> String {
    var q = path
    while q.count > 1 && q.hasSuffix("/") { q.removeLast() }
    guard let slash = q.lastIndex(of: "/") else { return "" }
    return slash == q.startIndex ? "/" : String(q[..<slash])
}

/// Checks, before any work, that `path` is an existing, writable directory.
func requireExistingDirectory(_ name: String, _ path: String) throws {
    var isDirectory: ObjCBool = false
    guard !path.isEmpty, FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
        throw ValidationError("\(name) '\(path)': no such directory (it is not created)")
    }
    guard isDirectory.boolValue else { throw ValidationError("\(name) \(path) is not a directory") }
    guard FileManager.default.isWritableFile(atPath: path) else { throw ValidationError("\(name) \(path) is not writable") }
}

/// Checks, before any work, that `path` can receive a directory of outputs: an existing directory
/// (writable), or a path whose nearest existing ancestor is a writable directory.
func requireWritableDirectory(_ name: String, _ path: String) throws {
    var isDirectory: ObjCBool = false
    if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
        guard isDirectory.boolValue else { throw ValidationError("\(name) \(path) exists and is not a directory") }
        guard FileManager.default.isWritableFile(atPath: path) else { throw ValidationError("\(name) \(path) is not writable") }
        return
    }
    var ancestor = parentPath(path)
    while !ancestor.isEmpty && !FileManager.default.fileExists(atPath: ancestor, isDirectory: &isDirectory) {
        let up = parentPath(ancestor)
        if up == ancestor { break }
        ancestor = up
    }
    let dir = ancestor.isEmpty ? "." : ancestor
    guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDirectory), isDirectory.boolValue else {
        throw ValidationError("\(name) \(path): \(dir) is not a directory")
    }
    guard FileManager.default.isWritableFile(atPath: dir) else { throw ValidationError("\(name) \(path): \(dir) is not writable") }
}

/// Checks, before any work, that `path` is a readable regular file (not a directory, FIFO or device).
func requireReadableFile(_ name: String, _ path: String) throws {
    var st = stat()
    guard stat(path, &st) == 0 else { throw ValidationError("\(name) \(path): no such file") }
    guard (st.st_mode & S_IFMT) == S_IFREG else { throw ValidationError("\(name) \(path) is not a regular file") }
    guard access(path, R_OK) == 0 else { throw ValidationError("\(name) \(path) is not readable") }
}

/// Whether two paths name the same existing file (same device and inode).
func sameFile(_ a: String, _ b: String) -> Bool {
    var sa = stat(), sb = stat()
    guard stat(a, &sa) == 0, stat(b, &sb) == 0 else { return false }
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino
}
