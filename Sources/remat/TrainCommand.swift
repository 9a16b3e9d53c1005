import ArgumentParser
import Foundation
import Remat
import CRematKernels
import Synchronization

/// Set by SIGINT or SIGUSR1; the training loop stops cleanly after the current step.
let interruptRequested = Atomic<Bool>(false)

/// The first Ctrl-C asks the loop to stop after the current step (and save); a second one quits
/// at once, removing the temporary file of a write in progress (the old file stays whole).
/// SIGUSR1 does the same: it is how a data-parallel job is stopped cleanly, because Open MPI's
/// mpirun kills its ranks on Ctrl-C but passes SIGUSR1 on to every rank
/// (`kill -USR1 <mpirun's pid>`).
func installInterruptHandler() {
    let handler: @convention(c) (Int32) -> Void = { _ in
        if interruptRequested.load(ordering: .relaxed) {
            AtomicFile.removeTemporaryFileInProgress()
            remat_spill_cleanup_all()
            _exit(130)
        }
        interruptRequested.store(true, ordering: .relaxed)
    }
    signal(SIGINT, handler)
    signal(SIGUSR1, handler)
}

/// Prints step reports: a one-line progress bar on a terminal, plain lines otherwise.
struct ProgressPrinter {
    let total: Int
    let interactive = isatty(STDOUT_FILENO) != 0
    var every = 1

    func show(_ r: StepReport, note: String = "") {
        let peak = mib(r.peakBytes)
        var line = String(format: "step %4d/%d  loss %.4f  %.0f ms  %.0f tok/s  peak %@", r.step + 1, total, r.loss,
                          r.stepMilliseconds, r.tokensPerSecond, peak as NSString) + note
        if let scale = r.lossScale { line += String(format: "  loss scale %g", scale) + (r.skipped ? " (skipped: inf/NaN gradients)" : "") }
        if let d = r.dynamic { line += "  evicted \(d.evictions), recomputed \(d.rematerializations)" }
        if interactive {
            let width = 24
            let filled = min(width, (r.step + 1) * width / max(total, 1))
            let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
            print("\r\(bar) \(line)", terminator: r.step + 1 == total ? "\n" : "")
            fflush(nil)
        } else if (r.step + 1) % every == 0 || r.step + 1 == total {
            print(line)
        }
    }
}

struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train", abstract: "Train a language model on a byte-level text file or the built-in data.")

    @OptionGroup var engine: EngineOptions
    @OptionGroup var policyOption: PolicyOption
    @OptionGroup var compression: CompressionOption
    @OptionGroup var offload: OffloadOption
    @OptionGroup var precisionOption: PrecisionOption
    @Option(help: "Workload: \(ModelZoo.languageModelNames.joined(separator: ", ")).") var model = "gpt-mini"
    @Option(help: "A text file read as bytes (default: the built-in arithmetic data).") var data: String?
    @Option(parsing: .unconditional, help: "Training steps, 1 to 10000000.") var steps = 200
    @Option(parsing: .unconditional, help: "Batch size, 1 to \(WorkloadOptions.maximumBatch) (default: the workload's).") var batch: Int?
    @Option(parsing: .unconditional, help: "Peak learning rate (AdamW, warm-up + cosine), greater than 0 and at most 10.") var lr: Float = 3e-4
    @Option(parsing: .unconditional, help: "Random seed for weights and data (0 to 2^64 − 1).") var seed: UInt64 = 0
    @Option(help: "Directory to save the weights to (model.safetensors) at the end or on Ctrl-C.") var save: String?
    @Option(parsing: .unconditional, help: "Print a line every N steps when not on a terminal (N ≥ 1).") var logEvery = 10
    @OptionGroup var budgetOptions: BudgetOptions
    @Flag(exclusivity: .exclusive, help: "How --budget is kept: --hybrid (the default for bytes: each new input shape profiled under the budget as a hard limit and planned, every step running its plan with dynamic rematerialization as the safety net), --planned (each new shape profiled unconstrained, above the budget, then planned; the only mode for a fraction) or --dynamic (every step under the budget as a hard limit, no plans: saved tensors evicted under memory pressure, recomputed when backward needs them).") var budgetMode: BudgetModeFlag?
    var dynamic: Bool { budgetMode == .dynamic }
    @Option(name: .customLong("length-range"), help: "Sequence length of each batch drawn uniformly from LOW:HIGH (seeded by --seed; HIGH at most the context length) instead of the context length.") var lengthRange: String?
    @Flag(help: "Data parallel over MPI (run under mpirun -np N): each rank trains on its 1/N of every batch (--batch is the global batch, divisible by N) and the gradients are averaged over the ranks; rank 0 alone prints, saves and writes the report.")
    var distributed = false
    @Option(parsing: .unconditional, help: "With --distributed: MiB of gradients per all-reduce bucket, 1 to 1024 (PyTorch DDP's default: 25).")
    var bucketMib = 25
    @Flag(name: .customLong("zero1"), help: "With --distributed: ZeRO stage 1: each rank keeps 1/N of AdamW's state and steps only that part; the gradients are reduce-scattered and the parameters all-gathered (the same parameters as without it).")
    var zero1 = false
    @Option(help: "Write an HTML report of the run to this file (atomically, at the end or when the run stops): every step's peak against the budget, time and loss; the last step's memory timeline; the last step's plan.")
    var report: String?
    @Option(help: "Attention: fused (FlashAttention-2's online softmax: saves each row's log-sum-exp; the default) or explicit (the T×T probabilities saved).") var attention = AttentionKernel.default.rawValue

    func validate() throws {
        guard AttentionKernel(rawValue: attention) != nil else {
            throw ValidationError("--attention must be explicit or fused, got '\(attention)'")
        }
        guard ModelZoo.languageModelNames.contains(model) else {
            throw ValidationError("--model: '\(model)' is not a language model; use \(ModelZoo.languageModelNames.joined(separator: ", "))")
        }
        try requireRange("--steps", steps, 1...10_000_000)
        if let batch { try requireRange("--batch", batch, 1...WorkloadOptions.maximumBatch) }
        guard lr.isFinite, lr > 0, lr <= 10 else { throw ValidationError("--lr must be greater than 0 and at most 10, got \(lr)") }
        try requireRange("--log-every", logEvery, 1...Int.max)
        if budgetOptions.budget != nil && policyOption.policy != "none" {
            throw ValidationError("--budget plans the checkpointing itself; drop --policy \(policyOption.policy)")
        }
        try budgetOptions.requireBudgetForPlannerOptions()
        if budgetOptions.budget != nil {
            try compression.requireAbsent(with: "--budget")
            try offload.requireAbsent(with: "--budget")
        }
        if let budgetMode {
            let flag = "--\(budgetMode.rawValue)"
            guard let budget = budgetOptions.budget else { throw ValidationError("\(flag) keeps a budget: give --budget BYTES with it") }
            if budgetMode != .planned, case .fraction? = try budgetOptions.parsedBudget() {
                throw ValidationError("\(flag) --budget \(budget): a fraction of the unconstrained peak would need an unconstrained step; give bytes (e.g. 200MiB)")
            }
            if budgetMode == .dynamic { try budgetOptions.refusePlannerOptions(flag) }
            if budgetMode == .hybrid, budgetOptions.allowLossy != nil {
                throw ValidationError("--allow-lossy with --hybrid: the hybrid mode's plans keep or recompute (the evictor runs them); give --planned to plan lossy codecs")
            }
        }
        _ = try parsedLengthRange()
        try requireRange("--bucket-mib", bucketMib, 1...1024)
        if bucketMib != 25 && !distributed { throw ValidationError("--bucket-mib sizes the all-reduces of --distributed: give --distributed with it") }
        if zero1 && !distributed { throw ValidationError("--zero1 shards the optimizer state over the ranks of --distributed: give --distributed with it") }
        if distributed && !DistributedRun.isAvailable { throw ValidationError(DistributedRun.unavailable) }
        if let data { try requireReadableFile("--data", data) }
        if let report { try requireWritableFile("--report", report, notSameAs: data.map { [("--data", $0)] } ?? []) }
        if let save {
            try requireWritableDirectory("--save", save)
            if FileManager.default.fileExists(atPath: save) {
                try requireWritableFile("--save", (save as NSString).appendingPathComponent("model.safetensors"),
                                        notSameAs: data.map { [("--data", $0)] } ?? [])
            }
        }
    }

    /// --length-range, checked against the model's context length.
    func parsedLengthRange() throws -> ClosedRange<Int>? {
        guard let text = lengthRange else { return nil }
        let context = try ModelZoo.gptConfig(model).contextLength
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let lo = Int(parts[0]), let hi = Int(parts[1]), lo >= 1, lo <= hi else {
            throw ValidationError("--length-range '\(text)': give LOW:HIGH with 1 ≤ LOW ≤ HIGH")
        }
        guard hi <= context else { throw ValidationError("--length-range '\(text)': \(model)'s context length is \(context)") }
        return lo...hi
    }

    func run() throws {
        guard distributed else { return try train(nil) }
        let parallel = try DistributedRun(bucketMiB: bucketMib, zero: zero1)
        // An exit code (Ctrl-C's 130) comes after the ranks finished together; any other error
        // ends the whole job from this rank.
        do { try train(parallel) } catch let code as ExitCode { throw code } catch { parallel.fail(error) }
    }

    /// The run; with `parallel`, one rank of a data-parallel job.
    func train(_ parallel: DistributedRun?) throws {
        // First, so that a stop asked for while the model is built still ends after a whole step.
        installInterruptHandler()
        engine.apply()
        let config = try ModelZoo.gptConfig(model)
        let b = batch ?? config.batchSize
        try ModelZoo.checkMemory(workload: model, batchSize: b)
        let gpt = GPT(config, seed: seed)
        let precision = try precisionOption.parsed()
        gpt.setFloat8Linears(precision.float8)
        gpt.setAttentionKernel(AttentionKernel(rawValue: attention) ?? .default)
        try gpt.applyCheckpointing(policyOption.parsed())
        let compressed = try compression.parsed()
        try checkSelectedModules(gpt, compressed, try offload.parsedSelector())
        gpt.applyActivationCompression(compressed)
        let spill = try offload.make()
        defer { spill?.store.close() }
        gpt.applyActivationOffload(spill)
        var source: ByteSequenceDataset
        if let data {
            source = try ByteSequenceDataset(path: data, minimumLength: config.contextLength + 1, seed: seed)
        } else {
            source = ArithmeticText.dataset(seed: seed)
        }
        let trainer = Trainer(model: gpt, optimizer: try parallel?.optimizer(gpt, learningRate: lr) ?? Trainer.specAdamW(gpt, learningRate: lr),
                              schedule: WarmupCosineSchedule(peak: lr, minimum: lr / 10, warmupSteps: max(1, steps / 20), totalSteps: steps))
        trainer.autocast = precision.autocast
        if precision.autocast == .float16 { trainer.gradScaler = try GradScaler() }
        var memory = "policy \(policyOption.policy)" + (compressed.map { ", compression \($0)" } ?? "")
            + (spill.map { ", offload \($0.selector) to \($0.store.directory)" } ?? "")
        if dynamic, case .bytes(let bytes)? = try budgetOptions.parsedBudget() {
            trainer.dynamicBudget = DynamicRematerializer(budgetBytes: bytes)
            memory = "dynamic budget \(mib(bytes)) (a hard limit: saved tensors evicted and recomputed)"
        } else if let parsed = try budgetOptions.parsedBudget() {
            let planner = MemoryBudgetPlanner(parsed, mode: budgetMode.map { $0 == .hybrid ? .hybrid : .planned },
                                              solver: try budgetOptions.parsedSolver(), options: try budgetOptions.parsedPlanOptions())
            trainer.memoryBudget = planner
            memory = "memory budget \(parsed), " + (planner.mode == .hybrid
                ? "hybrid (each new shape profiled under the budget, then planned; DTR the safety net)"
                : "planned (each new shape profiled unconstrained, then planned)")
        }
        if let parallel {
            try parallel.requireEvenShards(b)
            try parallel.attach(trainer, model: gpt)
            memory += "; data parallel over \(parallel.size) ranks (\(b / parallel.size) rows each)" + (zero1 ? ", ZeRO-1 (optimizer state sharded)" : "")
        }
        print("training \(model) (\(gpt.parameterCount) parameters) on \(data ?? "built-in arithmetic data"), batch \(b), \(memory), precision \(precisionOption.precision), \(attention) attention, \(Runtime.threads) threads")
        print("GEMM: \(Runtime.blasDescription)")
        if precision.autocast != nil { print("bf16/fp16 products: \(Runtime.bfloat16GemmPath)") }
        var printer = ProgressPrinter(total: steps)
        printer.every = logEvery
        trainer.memoryBudget?.keepsGraphs = report != nil
        var run = RunRecord()
        do {
            try runSteps(trainer, source: &source, batch: b, printer: printer, record: &run, parallel: parallel)
        } catch let error as DynamicBudgetError {
            // What was trained so far is kept (as on Ctrl-C) before the error ends the run.
            print("\nstopped after step \(trainer.stepIndex): \(error)")
            if let save { print("saved weights to \(try saveWeights(gpt, directory: save))") }
            try writeReport(trainer, run, memory: memory, stopped: "stopped after step \(trainer.stepIndex): \(error)")
            throw error
        }
        let interrupted = interruptRequested.load(ordering: .relaxed)
        if interrupted { print("\ninterrupted after step \(trainer.stepIndex); stopping cleanly") }
        if let scaler = trainer.gradScaler {
            print("fp16 loss scaling: \(scaler.skippedSteps) of \(trainer.stepIndex) steps skipped (inf/NaN gradients), loss scale now \(scaler.scale)")
        }
        if let parallel { print(try parallel.finish(gpt)) }
        if let save, parallel?.rank ?? 0 == 0 {
            let path = try saveWeights(gpt, directory: save)
            print("saved weights to \(path)")
        }
        if parallel?.rank ?? 0 != 0 { return }
        try writeReport(trainer, run, memory: memory, stopped: interrupted ? "interrupted after step \(trainer.stepIndex)" : nil)
        if interrupted { throw ExitCode(130) }
    }

    /// What the run measured, for --report.
    struct RunRecord {
        var reports: [StepReport] = []
        /// Steps that profiled a new shape before running (a memory budget's capture).
        var profiled: Set<Int> = []
        /// The last step's timeline and input shape (recorded while it ran).
        var lastStep: MemoryReport.Run? = nil
        var lastShape: [Int]? = nil
    }

    /// Writes --report, if given, and says where.
    func writeReport(_ trainer: Trainer, _ run: RunRecord, memory: String, stopped: String?) throws {
        guard let report, !run.reports.isEmpty else { return }
        let planner = trainer.memoryBudget
        var plan: (plan: MemoryPlan, graph: StepGraph)? = nil
        if let planner, let shape = run.lastShape, case .plan(let p)? = planner.decisions[shape], let g = planner.graphs[shape] { plan = (p, g) }
        let budgetBytes: Int? = trainer.dynamicBudget?.budgetBytes ?? planner?.evictor?.budgetBytes ?? plan?.plan.budgetBytes
        var facts: [(label: String, value: String)] = [("command", quotedCommandLine()), ("memory", memory)]
        if let stopped { facts.append(("run", stopped)) }
        let html = try TrainingRunReport.make(title: "Remat training report: \(model), \(run.reports.count) steps", reports: run.reports,
                                              budgetBytes: budgetBytes, profiled: run.profiled, lastStep: run.lastStep, plan: plan,
                                              allowLossy: planner?.options.allowLossy ?? [],
                                              workload: "\(model), batch \(batch ?? (try ModelZoo.gptConfig(model)).batchSize)" + (lengthRange.map { ", lengths \($0)" } ?? ""),
                                              provenance: facts)
        try html.write(to: report)
        let bytes = (try? FileManager.default.attributesOfItem(atPath: report)[.size] as? Int) ?? 0
        print("wrote the report to \(report) (\(bytes / 1024) KiB)")
    }
}

extension TrainCommand {
    /// The training loop: windows of the context length, or of lengths drawn from --length-range.
    /// With --report, each step's report is kept and the last step runs with the ledger's timeline
    /// recording.
    func runSteps(_ trainer: Trainer, source: inout ByteSequenceDataset, batch b: Int, printer: ProgressPrinter,
                  record: inout RunRecord, parallel: DistributedRun? = nil) throws {
        let stop = {
            let mine = interruptRequested.load(ordering: .relaxed)
            return try parallel?.agreeToStop(mine) ?? mine
        }
        let context = try ModelZoo.gptConfig(model).contextLength
        let lengths = try parsedLengthRange()
        let g = RandomGenerator(seed: seed ^ 0x6c65_6e67_7468)   // "length": a stream apart from the data's
        let span = UInt64((lengths?.count ?? 1))
        for i in 0..<steps {
            let length = lengths.map { $0.lowerBound + Int(g.nextUInt64() % span) } ?? context
            // Every rank draws the same global batch (one seed) and trains on its own rows.
            let global = source.nextBatch(batchSize: b, length: length)
            let batch = try parallel?.shard(global) ?? global
            guard report != nil else {
                let step = try trainer.checkedStep(batch)
                let r = try parallel?.global(step) ?? step
                printer.show(r, note: parallel?.stepNote(r) ?? "")
                if try stop() { break } else { continue }
            }
            // A new shape is profiled (and planned) first, outside the recorded step.
            let profiledBefore = trainer.memoryBudget?.capturedShapes.count ?? 0
            trainer.memoryBudget?.prepare(trainer, batch: batch)
            if (trainer.memoryBudget?.capturedShapes.count ?? 0) > profiledBefore { record.profiled.insert(i) }
            let step: StepReport
            if i == steps - 1 {
                let (report, timeline) = try MemoryReport.record(trainer.ledger) { try trainer.checkedStep(batch) }
                record.lastStep = MemoryReport.Run(label: "step \(i + 1)", timeline: timeline, stepMilliseconds: report.stepMilliseconds)
                step = report
            } else {
                step = try trainer.checkedStep(batch)
            }
            let r = try parallel?.global(step) ?? step
            record.lastShape = batch.input.shape
            record.reports.append(r)
            printer.show(r, note: parallel?.stepNote(r) ?? "")
            if try stop() { break }
        }
    }
}

/// The command line as typed, each argument quoted for a POSIX shell when it needs it.
func quotedCommandLine() -> String {
    CommandLine.arguments.map { $0.contains(where: { " '\"$\\".contains($0) }) ? "'\($0.replacingOccurrences(of: "'", with: "'\\''"))'" : $0 }
        .joined(separator: " ")
}

/// Writes the model's parameters and buffers to `directory/model.safetensors` (atomically).
func saveWeights(_ model: Module, directory: String) throws -> String {
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    let path = (directory as NSString).appendingPathComponent("model.safetensors")
    try SafetensorsFile.write(model.namedTensors, to: path)
    return path
}

/// How `remat train --budget` keeps the budget.
enum BudgetModeFlag: String, EnumerableFlag {
    case hybrid, planned, dynamic
}
