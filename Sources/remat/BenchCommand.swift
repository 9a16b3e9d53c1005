import ArgumentParser
import Foundation
import Remat

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Benchmarks: kernels, training steps, convolutions and saved-tensor codecs.",
        subcommands: [BenchKernels.self, BenchAttention.self, BenchTrain.self, BenchConv.self, BenchCodecs.self, BenchSweep.self, BenchFP8.self, BenchDynamic.self, BenchDataParallel.self])
}

struct BenchFP8: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fp8",
        abstract: "Seed 000's table: FP8 linears without and with checkpointing beside float32, peaks by the ledger and step times, interleaved.",
        discussion: """
        Rows: float32; bf16 autocast (autocast-bf16); FP8 saving the float32 input as TorchAO's Float8Linear does \
        (fp8-linear-hp); FP8 saving its 1-byte input (fp8-linear); then each under --policy. FP8 GEMMs run on \
        float32 tiles here (no FP8 hardware): the memory and the numerics are the point, not the speed.
        """)

    @OptionGroup var engine: EngineOptions
    @OptionGroup var workloadOptions: WorkloadOptions
    @Option(help: "The checkpointing of the checkpointed rows (as --policy elsewhere).") var policy = "all"
    @Option(parsing: .unconditional, help: "Rounds, 1 to 1000 (an untimed and a timed step of each row per round).") var rounds = 5
    @Flag(help: "Print JSON.") var json = false

    func validate() throws {
        try requireRange("--rounds", rounds, 1...1000)
        guard try parsedPolicy() != .none else { throw ValidationError("--policy none would repeat the rows without checkpointing") }
        let transformers = ModelZoo.languageModelNames + ["minilm"]
        guard transformers.contains(workloadOptions.name) else {
            throw ValidationError("--model \(workloadOptions.name): FP8 training converts linear layers; this table is for the transformer workloads (\(transformers.joined(separator: ", ")))")
        }
    }

    func parsedPolicy() throws -> CheckpointPolicy {
        do { return try CheckpointPolicy.parse(policy) } catch let e as CheckpointPolicy.ParseError { throw ValidationError(e.description) }
    }

    func run() throws {
        engine.apply()
        let (workload, b) = try workloadOptions.workload()
        let p = try parsedPolicy()
        let hp = Float8LinearOptions(saveHighPrecision: true), aware = Float8LinearOptions()
        let variants = [StepVariant(.none), StepVariant(.none, autocast: .bfloat16), StepVariant(.none, float8: hp), StepVariant(.none, float8: aware),
                        StepVariant(p), StepVariant(p, autocast: .bfloat16), StepVariant(p, float8: hp), StepVariant(p, float8: aware)]
        let r = try TrainingBenchmark.compare(workload, batchSize: b, variants: variants, rounds: rounds)
        if json {
            print(try jsonString(r))
            return
        }
        let base = r.variants[0]
        print("\(r.model), batch \(b), \(r.threads) threads, \(rounds) rounds; relative to float32 without checkpointing")
        print("configuration".padding(toLength: 24, withPad: " ", startingAt: 0) + "      peak (of float32)   activation peak (of float32)   step (× float32)")
        for v in r.variants {
            let peak = mib(v.peak_bytes).leftPad(11) + String(format: " (%5.1f%%)", 100 * Double(v.peak_bytes) / Double(base.peak_bytes))
            let act = mib(v.activation_peak_bytes).leftPad(11)
                + String(format: " (%5.1f%%)", 100 * Double(v.activation_peak_bytes) / Double(max(base.activation_peak_bytes, 1)))
            print(v.policy.padding(toLength: 24, withPad: " ", startingAt: 0) + "  " + peak + "        " + act
                  + String(format: "          %5.2f", v.ratio_to_first))
        }
    }
}

struct BenchAttention: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "attention",
        abstract: "Causal attention forward and forward+backward: the fused kernel beside the explicit probabilities, and what each saves.")

    @OptionGroup var engine: EngineOptions
    @Flag(help: "Print JSON.") var json = false
    @Option(parsing: .unconditional, help: "Shapes BATCHxT (comma separated; batch 1 to 1024, T 1 to 16384).") var shapes = "8x256,2x1024,1x4096"
    @Option(parsing: .unconditional, help: "Heads, 1 to 256.") var heads = 8
    @Option(name: .customLong("head-dim"), parsing: .unconditional, help: "Head size, 1 to 1024.") var headDim = 32
    @Option(parsing: .unconditional, help: "Repetitions per measurement, 1 to 1000 (medians are reported).") var reps = 5

    func validate() throws {
        try requireRange("--heads", heads, 1...256)
        try requireRange("--head-dim", headDim, 1...1024)
        try requireRange("--reps", reps, 1...1000)
        _ = try parsedShapes()
    }

    func parsedShapes() throws -> [(batch: Int, t: Int)] {
        let parts = shapes.split(separator: ",", omittingEmptySubsequences: false)
        let parsed: [(batch: Int, t: Int)] = parts.compactMap { part in
            let bt = part.split(separator: "x", omittingEmptySubsequences: false).compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard bt.count == 2, (1...1024).contains(bt[0]), (1...16384).contains(bt[1]) else { return nil }
            return (bt[0], bt[1])
        }
        guard parsed.count == parts.count, !parsed.isEmpty else {
            throw ValidationError("--shapes must be comma-separated BATCHxT with batch 1 to 1024 and T 1 to 16384 (8x256,2x1024), got '\(shapes)'")
        }
        for s in parsed {
            let probabilities = 4 * s.batch * heads * s.t * s.t
            guard probabilities <= 8 << 30 else {
                throw ValidationError("--shapes \(s.batch)x\(s.t) with \(heads) heads: the explicit path's probabilities alone take \(probabilities >> 20) MiB (at most 8 GiB)")
            }
        }
        return parsed
    }

    func run() throws {
        engine.apply()
        struct Output: Encodable { var threads: Int; var blas: String; var rows: [AttentionBenchmark.Row] }
        var rows: [AttentionBenchmark.Row] = []
        for s in try parsedShapes() {
            rows += AttentionBenchmark.run(batch: s.batch, heads: heads, t: s.t, headDim: headDim, reps: reps)
        }
        if json {
            print(try jsonString(Output(threads: Runtime.threads, blas: Runtime.blasDescription, rows: rows)))
            return
        }
        print("causal attention, \(heads) heads of \(headDim), \(Runtime.threads) threads, medians of \(reps) interleaved repetitions")
        print("batch      T  kernel      forward ms   fwd+bwd ms    saved MiB")
        for r in rows {
            print(String(format: "%5d  %5d  ", r.batch, r.t) + r.kernel.padding(toLength: 10, withPad: " ", startingAt: 0)
                  + String(format: "  %10.2f   %10.2f   %10.2f", r.forward_ms, r.forward_backward_ms, Double(r.saved_bytes) / 1048576))
        }
    }
}

struct BenchKernels: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kernels",
        abstract: "Matmul GFLOP/s beside the GEMM library called raw; elementwise GB/s beside memcpy.")

    @OptionGroup var engine: EngineOptions
    @Flag(help: "Print JSON.") var json = false
    @Option(parsing: .unconditional, help: "Matmul sizes (comma separated, each 1 to 8192).") var sizes = "256,512,1024,2048"
    @Option(parsing: .unconditional, help: "Elements for the elementwise cases (1 to 2^28).") var elements = 1 << 22
    @Option(parsing: .unconditional, help: "Repetitions per measurement, 1 to 1000 (medians are reported).") var reps = 15

    func validate() throws {
        try requireRange("--elements", elements, 1...(1 << 28))
        try requireRange("--reps", reps, 1...1000)
        _ = try parsedSizes()
    }

    func parsedSizes() throws -> [Int] {
        let parts = sizes.split(separator: ",", omittingEmptySubsequences: false)
        let ns = parts.compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard ns.count == parts.count, !ns.isEmpty, ns.allSatisfy({ (1...8192).contains($0) }) else {
            throw ValidationError("--sizes must be comma-separated whole numbers from 1 to 8192 (256,512), got '\(sizes)'")
        }
        return ns
    }

    func run() throws {
        engine.apply()
        let ns = try parsedSizes()
        let result = KernelBenchmark.Result(
            threads: Runtime.threads, blas: Runtime.blasDescription, bf16_gemm: Runtime.bfloat16GemmPath,
            matmul: KernelBenchmark.matmul(sizes: ns, reps: reps),
            elementwise: KernelBenchmark.elementwise(KernelBenchmark.standardCases(elements: elements), reps: reps))
        if json {
            print(try jsonString(result))
            return
        }
        print("GEMM: \(result.blas)   threads: \(result.threads)")
        print("bf16 GEMM (autocast): \(result.bf16_gemm)")
        print("matmul        n    engine GFLOP/s   raw GEMM GFLOP/s   ratio")
        for r in result.matmul {
            print(String(format: "          %5d        %8.1f           %8.1f    %5.2f", r.n, r.gflops, r.blas_gflops, r.gflops / r.blas_gflops))
        }
        print("op                 GB/s   memcpy GB/s   ratio")
        for r in result.elementwise {
            print(r.name.padding(toLength: 14, withPad: " ", startingAt: 0)
                  + String(format: "  %7.1f      %7.1f    %5.2f", r.gbps, r.memcpy_gbps, r.gbps / r.memcpy_gbps))
        }
    }
}

struct BenchTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train", abstract: "Median training-step time and peak memory by category.")

    @OptionGroup var engine: EngineOptions
    @OptionGroup var policyOption: PolicyOption
    @OptionGroup var compression: CompressionOption
    @OptionGroup var offload: OffloadOption
    @OptionGroup var workloadOptions: WorkloadOptions
    @Option(parsing: .unconditional, help: "Timed steps, 1 to 10000 (after 2 warm-up steps).") var steps = 5
    @OptionGroup var budgetOptions: BudgetOptions
    @Option(help: "Run under this plan (a file written by remat plan --json) instead of a policy or budget.") var plan: String?
    @Option(help: "Policies to time against --policy (with --compress) (comma separated), interleaved: an untimed and a timed step of each per round; each POLICY or POLICY+CODEC[:WHERE][+…] (all+bf16, none+relu-mask+fp8-e4m3/g128), +offload[:WHERE], +explicit-attention (the T×T probabilities saved, instead of the default fused attention's online softmax) or +fused-attention, +autocast-bf16 / +autocast-fp16 (mixed precision), +fp8-linear (FP8 training of the linear layers) or +fp8-linear-hp (saving their float32 inputs, as TorchAO does).") var compare: String?
    @Option(parsing: .unconditional, help: "Rounds with --compare, 1 to 1000.") var rounds = 5
    @Option(help: "With --budget: planned (profile the step, plan for the budget, run the plan), dynamic (the budget as a hard limit on every allocation: saved tensors evicted under pressure and recomputed when backward needs them, DTR) or hybrid (the profiling under that hard limit, then the plan run under it, DTR the safety net); for dynamic and hybrid a fraction is of the unconstrained peak, measured first.") var mode = "planned"
    @Flag(help: "Print JSON.") var json = false

    func validate() throws {
        try requireRange("--steps", steps, 1...10_000)
        try requireRange("--rounds", rounds, 1...1000)
        if compare != nil {
            guard plan == nil, budgetOptions.budget == nil else { throw ValidationError("--compare times policies: give no --plan or --budget with it") }
            _ = try comparedPolicies()
        }
        if let plan {
            guard budgetOptions.budget == nil, policyOption.policy == "none" else {
                throw ValidationError("--plan runs under the plan: give no --policy or --budget")
            }
            try compression.requireAbsent(with: "--plan")
            try offload.requireAbsent(with: "--plan")
            let saved = try MemoryPlan.read(path: plan)
            if let batch = workloadOptions.batch, batch != saved.inputShape.first {
                throw ValidationError("--plan was made for batch \(saved.inputShape.first ?? 0), not --batch \(batch)")
            }
        } else if budgetOptions.budget != nil && policyOption.policy != "none" {
            throw ValidationError("--budget plans the checkpointing itself; drop --policy \(policyOption.policy)")
        }
        try budgetOptions.requireBudgetForPlannerOptions()
        if budgetOptions.budget != nil {
            try compression.requireAbsent(with: "--budget")
            try offload.requireAbsent(with: "--budget")
        }
        guard MemoryBudgetPlanner.Mode(rawValue: mode) != nil else {
            throw ValidationError("--mode '\(mode)': use planned, dynamic or hybrid")
        }
        if mode != "planned" {
            guard budgetOptions.budget != nil else { throw ValidationError("--mode \(mode) says how to keep a budget: give --budget with it") }
            if mode == "dynamic" { try budgetOptions.refusePlannerOptions("--mode \(mode)") }
            if mode == "hybrid", budgetOptions.allowLossy != nil {
                throw ValidationError("--allow-lossy with --mode hybrid: the hybrid mode's plans keep or recompute (the evictor runs them); use --mode planned to plan lossy codecs")
            }
        }
    }

    /// --policy (with --compress), then the --compare list.
    func comparedPolicies() throws -> [StepVariant] {
        var variants = [StepVariant(try policyOption.parsed(), compression: try compression.parsed(), offload: try offload.parsedSelector())]
        do { variants += try StepVariant.parseList(compare ?? "") } catch let e as CheckpointPolicy.ParseError {
            throw ValidationError("--compare: \(e.description)")
        } catch let e as CodecError {
            throw ValidationError("--compare: \(e.description)")
        }
        return variants
    }

    func run() throws {
        engine.apply()
        if compare != nil { return try runComparison() }
        let policy = try policyOption.parsed()
        let saved = try plan.map { try MemoryPlan.read(path: $0) }
        var options = workloadOptions
        if let saved, options.batch == nil { options.batch = saved.inputShape.first }
        let (workload, b) = try options.workload()
        let compressed = try compression.parsed()
        let spill: ActivationOffload?
        if let saved {
            // The plan sets its own codecs and offload (--compress and --offload are refused with it).
            try workload.model.applyPlan(saved)
            spill = nil
        } else {
            try workload.model.applyCheckpointing(policy)
            try checkSelectedModules(workload.model, compressed, try offload.parsedSelector())
            workload.model.applyActivationCompression(compressed)
            spill = try offload.make()
            workload.model.applyActivationOffload(spill)
        }
        defer { spill?.store.close() }
        let model = workload.name
        let budget = try budgetOptions.parsedBudget()
        var r = try TrainingBenchmark.run(workload, batchSize: b, steps: steps, budget: budget, solver: budgetOptions.parsedSolver(),
                                          options: budgetOptions.parsedPlanOptions(), mode: MemoryBudgetPlanner.Mode(rawValue: mode) ?? .planned)
        if budget == nil { r.policy = saved == nil ? policy.description : "plan" }
        r.compression = compressed?.description ?? ""
        if let spill {
            r.offload = spill.selector.description
            let c = spill.store.counters
            r.spill_write_gb_per_s = c.writeGBps
            r.spill_read_gb_per_s = c.readGBps
            r.spill_wait_seconds = c.waitSeconds
            r.spill_save_wait_seconds = c.saveWaitSeconds
        }
        if json {
            print(try jsonString(r))
            return
        }
        print("\(model), batch \(b), policy \(r.policy)" + (r.compression.isEmpty ? "" : ", compression \(r.compression)") + (r.offload.map { ", offload \($0)" } ?? "") + ", \(r.threads) threads: median step \(String(format: "%.1f", r.median_step_ms)) ms, peak \(mib(r.peak_bytes))")
        if let bb = r.budget_bytes, let mode = r.budget_mode, mode != "planned" {
            print("  \(mode) budget \(mib(bb))" + (r.unconstrained_peak_bytes.map { " (of the unconstrained peak \(mib($0)))" } ?? "")
                  + ": highest step peak \(mib(r.highest_step_peak_bytes ?? 0)); over the \(steps) timed steps \(r.evictions ?? 0) evictions, \(r.rematerializations ?? 0) recomputes rebuilding \(r.rebuilt_tensors ?? 0) tensors in \(String(format: "%.1f", r.recompute_ms ?? 0)) ms")
        }
        if let bb = r.budget_bytes, let pp = r.predicted_peak_bytes {
            print("  budget \(mib(bb)), predicted peak \(mib(pp)), solver \(r.solver ?? "?"), \(r.recomputed_ops ?? 0) ops recomputed")
        }
        for (k, v) in r.peak_by_category.sorted(by: { $0.key < $1.key }) where v > 0 { print("  \(k): \(mib(v))") }
        if let rss = r.peak_rss_bytes { print("  process resident peak (VmHWM, last step): \(mib(rss))") }
        if let o = r.offload {
            print("  offload \(o) (rates over the idle-priority I/O thread's time; the disk's own: remat bench codecs): written \(r.spill_write_gb_per_s.map { String(format: "%.2f GB/s", $0) } ?? "-"), read \(r.spill_read_gb_per_s.map { String(format: "%.2f GB/s", $0) } ?? "-"), backward waited \(String(format: "%.0f ms", 1000 * (r.spill_wait_seconds ?? 0))) and the forward \(String(format: "%.0f ms", 1000 * (r.spill_save_wait_seconds ?? 0))) in all (\(steps + 2) steps)")
        }
    }
}

extension BenchTrain {
    func runComparison() throws {
        let (workload, b) = try workloadOptions.workload()
        for v in try comparedPolicies() { try checkSelectedModules(workload.model, v.compression, v.offload) }
        let r = try TrainingBenchmark.compare(workload, batchSize: b, variants: comparedPolicies(), rounds: rounds,
                                              spillDirectory: offload.offloadDir)
        if json {
            print(try jsonString(r))
            return
        }
        print("\(r.model), batch \(b), \(r.threads) threads, \(rounds) rounds (one step of each policy per round, ratios within each round):")
        let width = max(14, r.variants.map(\.policy.count).max() ?? 0)
        print("policy".padding(toLength: width, withPad: " ", startingAt: 0) + "  step ms   vs \(r.variants[0].policy) (rounds)      peak memory   activations at peak   activation peak")
        for (i, v) in r.variants.enumerated() {
            let ratio = String(format: "%5.2fx", v.ratio_to_first) + (i == 0 ? "            " : String(format: " (%.2f–%.2f)", v.ratio_min, v.ratio_max))
            print(v.policy.padding(toLength: width, withPad: " ", startingAt: 0) + String(format: "  %7.1f    ", v.median_step_ms) + ratio
                  + "   " + mib(v.peak_bytes).leftPad(11) + "   " + mib(v.peak_by_category["activations"] ?? 0).leftPad(19)
                  + "   " + mib(v.activation_peak_bytes).leftPad(15))
        }
    }
}

struct BenchSweep: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sweep",
        abstract: "A measured budget sweep: plans at N budgets (recompute only, lossless, and with --allow-lossy codecs), each run beside none, interleaved.",
        discussion: """
            Profiles the workload's step once, plans at N budgets evenly spaced from the unconstrained peak down to \
            the least peak any of the action sets reaches, then runs every plan and none on one model and optimizer, \
            an untimed and a timed step of each per round. Prints per plan: the budget, predicted and measured peak (ledger), and the \
            predicted and measured step time over none's (median of the rounds, the range beside).
            """)

    @OptionGroup var engine: EngineOptions
    @OptionGroup var workloadOptions: WorkloadOptions
    @Option(parsing: .unconditional, help: "Budgets, 2 to 50.") var points = 8
    @Option(parsing: .unconditional, help: "Rounds of interleaved steps, 1 to 100.") var rounds = 3
    @Option(name: .customLong("allow-lossy"), help: "Also sweep plans that may use these lossy codecs (comma-separated: bf16, fp8-e4m3, …).")
    var allowLossy: String?
    @Flag(help: "Print JSON.") var json = false

    func validate() throws {
        try requireRange("--points", points, 2...50)
        try requireRange("--rounds", rounds, 1...100)
        _ = try lossy()
    }

    func lossy() throws -> Set<Codec>? {
        do { return try allowLossy.map(PlanOptions.parseLossy) } catch { throw ValidationError("--allow-lossy: \(error.description)") }
    }

    func run() throws {
        engine.apply()
        let (workload, b) = try workloadOptions.workload()
        var options: [PlanOptions] = [.recomputeOnly, .default]
        if let l = try lossy() { options.append(PlanOptions(allowLossy: l)) }
        let r = try TrainingBenchmark.planSweep(workload, batchSize: b, options: options, points: points, rounds: rounds)
        if json {
            print(try jsonString(r))
            return
        }
        print(String(format: "%@ batch %d, %d threads: none %.0f ms, peak %@ (activations %@); planning %.1f s; %d rounds",
                     r.model, r.batch, r.threads, r.none_median_step_ms, formatBytes(r.unconstrained_peak_bytes),
                     formatBytes(r.none_activation_peak_bytes), r.planning_seconds, r.rounds))
        for (name, l) in r.least_peak_bytes.sorted(by: { $0.key < $1.key }) { print("least peak, \(name): \(formatBytes(l))") }
        print("actions           budget      predicted   measured    error    time pred  time meas (range)      rec  comp lossy")
        for row in r.rows {
            let cells = [row.actions, formatBytes(row.budget_bytes), formatBytes(row.predicted_peak_bytes), formatBytes(row.measured_peak_bytes),
                         String(format: "%+.2f%%", 100 * row.peak_error), String(format: "x%.3f", row.predicted_ratio),
                         String(format: "x%.3f (%.2f–%.2f)", row.measured_ratio, row.ratio_min, row.ratio_max),
                         String(row.recomputed_ops), String(row.compressed_ops), String(row.lossy_ops)]
            print(zip(cells, [18, 12, 12, 12, 9, 11, 23, 5, 5, 5]).map { $0.padding(toLength: Swift.max($1, $0.count + 1), withPad: " ", startingAt: 0) }.joined()
                  + (row.measured_peak_bytes > row.budget_bytes ? "  OVER BUDGET" : ""))
        }
    }
}

struct BenchDynamic: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dynamic",
        abstract: "Training under a memory budget on batches of varying shape: every step's highest memory and the total time, per budget and mode.",
        discussion: """
            Draws a stream of shapes with a fixed seed — sequence lengths for the language models (at the workload's batch \
            size), batch sizes for the image models — from --range, measures the unconstrained peak of the largest shape, and \
            trains a fresh model (same seed) on the stream for each budget (fractions of that peak) and mode: none (no budget, \
            for time), planned (each new shape profiled unconstrained, then planned), dynamic (the budget as a hard limit: \
            saved tensors evicted under pressure, recomputed when backward needs them) and hybrid (each new shape profiled \
            under that hard limit, then planned; every step runs its plan under it). Each step's highest memory includes the \
            planner's profiling. Prints per run the total time, the steps over the budget, the highest \
            memory, evictions and recomputes.
            """)

    @OptionGroup var engine: EngineOptions
    @OptionGroup var workloadOptions: WorkloadOptions
    @Option(parsing: .unconditional, help: "Steps per run, 1 to 100000.") var steps = 200
    @Option(help: "Range of the varying dimension, LOW:HIGH (sequence length for language models, at most the context length; batch size for image models). Default: 64:256, or 8:64 for image models.") var range: String?
    @Option(parsing: .unconditional, help: "Seed of the shape stream and the batches.") var seed: UInt64 = 0
    @Option(help: "Budgets, comma-separated: fractions of the largest shape's unconstrained peak (0 < f ≤ 1) or bytes with a unit.") var budgets = "0.8,0.6,0.4"
    @Option(help: "Modes, comma-separated: none, planned, dynamic, hybrid (none runs once, without a budget).") var modes = "none,planned,dynamic,hybrid"
    @Flag(help: "Print JSON.") var json = false

    func validate() throws {
        try requireRange("--steps", steps, 1...100_000)
        _ = try parsedRange(workload: nil)
        _ = try parsedBudgets()
        _ = try parsedModes()
    }

    func parsedModes() throws -> [VariableShapeBenchmark.Mode] {
        let parsed = try modes.split(separator: ",", omittingEmptySubsequences: false).map { m in
            guard let mode = VariableShapeBenchmark.Mode(rawValue: String(m)) else {
                throw ValidationError("--modes: '\(m)' is not a mode; use none, planned, dynamic, hybrid")
            }
            return mode
        }
        guard Set(parsed).count == parsed.count else { throw ValidationError("--modes '\(modes)' names a mode twice") }
        return parsed
    }

    func parsedBudgets() throws -> [MemoryBudget] {
        do { return try budgets.split(separator: ",", omittingEmptySubsequences: false).map { try MemoryBudget.parse(String($0)) } } catch let e as PlanningError {
            throw ValidationError("--budgets: \(e.description)")
        }
    }

    /// --range, checked against the workload's limits when it is known.
    func parsedRange(workload: Workload?) throws -> ClosedRange<Int> {
        let isImages: Bool
        if let workload, case .images = workload.batchKind { isImages = true } else { isImages = workloadOptions.name.hasPrefix("resnet") }
        let text = range ?? (isImages ? "8:64" : "64:256")
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let lo = Int(parts[0]), let hi = Int(parts[1]), lo >= 1, lo <= hi else {
            throw ValidationError("--range '\(text)': give LOW:HIGH with 1 ≤ LOW ≤ HIGH")
        }
        if let workload {
            switch workload.batchKind {
            case .tokens(let context, _), .labelledSequences(let context, _, _):
                guard hi <= context else { throw ValidationError("--range '\(text)': \(workload.name)'s context length is \(context)") }
            case .images:
                try requireRange("--range's HIGH (a batch size)", hi, 1...WorkloadOptions.maximumBatch)
            }
        }
        return lo...hi
    }

    func run() throws {
        engine.apply()
        let (workload, b) = try workloadOptions.workload()
        let stream = VariableShapeBenchmark.Stream(range: try parsedRange(workload: workload), seed: seed)
        if case .images = workload.batchKind { try ModelZoo.checkMemory(workload: workload.name, batchSize: stream.range.upperBound) }
        let peak = try VariableShapeBenchmark.largestShapePeak(workload.name, batch: b, stream: stream)
        var runs: [VariableShapeBenchmark.Run] = []
        let modes = try parsedModes()
        if modes.contains(.none) {
            runs.append(try VariableShapeBenchmark.run(workload.name, batch: b, stream: stream, steps: steps, mode: .none, budgetBytes: nil))
        }
        for budget in try parsedBudgets() {
            let bytes: Int
            switch budget {
            case .bytes(let v): bytes = v
            case .fraction(let f): bytes = Int(f * Double(peak))
            }
            for mode in modes where mode != .none {
                runs.append(try VariableShapeBenchmark.run(workload.name, batch: b, stream: stream, steps: steps, mode: mode, budgetBytes: bytes))
            }
        }
        struct Report: Encodable {
            let model: String, batch: Int, threads: Int, steps: Int, range: String, seed: UInt64, largest_shape_peak_bytes: Int
            let runs: [VariableShapeBenchmark.Run]
        }
        let report = Report(model: workload.name, batch: b, threads: Runtime.threads, steps: steps,
                            range: "\(stream.range.lowerBound):\(stream.range.upperBound)", seed: seed, largest_shape_peak_bytes: peak, runs: runs)
        if json {
            print(try jsonString(report))
            return
        }
        let what: String
        if case .images = workload.batchKind { what = "batch sizes" } else { what = "lengths at batch \(b)" }
        print("\(workload.name), \(steps) steps, \(what) from \(stream.range.lowerBound)…\(stream.range.upperBound) (seed \(seed)), \(Runtime.threads) threads; largest shape's unconstrained peak \(mib(peak))")
        print("mode      budget       total s   vs none   steps over budget   highest      shapes  evictions  recomputes")
        let noneSeconds = runs.first { $0.mode == .none }?.totalSeconds
        for r in runs {
            let over = r.budgetBytes == nil ? "-" : (r.stepsOverBudget.isEmpty ? "0" : "\(r.stepsOverBudget.count): \(r.stepsOverBudget.prefix(6).map(String.init).joined(separator: ","))\(r.stepsOverBudget.count > 6 ? ",…" : "")")
            let cells = [r.mode.rawValue, r.budgetBytes.map(mib) ?? "-", String(format: "%.1f", r.totalSeconds),
                         noneSeconds.map { String(format: "%.2fx", r.totalSeconds / $0) } ?? "-", over, mib(r.highestBytes),
                         String(r.distinctShapes), String(r.evictions), String(r.rematerializations)]
            print(zip(cells, [10, 13, 10, 10, 20, 13, 8, 11, 10]).map { $0.padding(toLength: Swift.max($1, $0.count + 1), withPad: " ", startingAt: 0) }.joined())
            if let f = r.failure { print("  stopped at \(f)") }
        }
    }
}

struct BenchCodecs: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "codecs",
        abstract: "Encode and decode GB/s of every saved-tensor codec beside memcpy of the same float32 bytes.")

    @OptionGroup var engine: EngineOptions
    @Flag(help: "Print JSON.") var json = false
    @Option(parsing: .unconditional, help: "Elements of the tensor packed (1 to 2^28).") var elements = 1 << 22
    @Option(parsing: .unconditional, help: "Repetitions per measurement, 1 to 1000 (medians are reported).") var reps = 15
    @Option(help: "Directory in which to measure the spill store (default: the system's temporary directory).") var offloadDir: String?

    func validate() throws {
        try requireRange("--elements", elements, 1...(1 << 28))
        try requireRange("--reps", reps, 1...1000)
        if let offloadDir { try requireExistingDirectory("--offload-dir", offloadDir) }
    }

    func run() throws {
        engine.apply()
        struct Output: Encodable {
            let threads: Int
            let elements: Int
            let codecs: [CodecBenchmark.Row]
            let spill: SpillMeasurement
        }
        let result = CodecBenchmark.run(elements: elements, reps: reps)
        let spill = try SpillMeasurement.run(in: offloadDir, bytes: 4 * elements, reps: min(reps, 5))
        if json {
            print(try jsonString(Output(threads: result.threads, elements: result.elements, codecs: result.codecs, spill: spill)))
            return
        }
        defer {
            if !result.codecs.contains(where: { $0.codec == "causal" }) {
                print("(causal and causal-bf16 need --elements a multiple of 65536: stacks of 256 × 256 matrices)")
            }
            print("")
            print("spill store in \(spill.directory): \(mib(spill.bytes)) file written at \(String(format: "%.2f", spill.write_gbps)) GB/s (until flushed and dropped from the page cache), read back cold at \(String(format: "%.2f", spill.read_gbps)) GB/s (CRC-32C checked); a 4 KiB round trip takes \(String(format: "%.2f", spill.small_round_trip_ms)) ms")
        }
        print("\(result.elements) float32 elements (\(mib(4 * result.elements))), \(result.threads) threads; GB/s of float32 bytes, medians of \(reps)")
        print("codec            lossless   packed   encode GB/s   decode GB/s   memcpy GB/s")
        for r in result.codecs {
            print(r.codec.padding(toLength: 15, withPad: " ", startingAt: 0)
                  + (r.lossless ? "  yes     " : "  no      ")
                  + String(format: " %5.3f      %8.1f      %8.1f      %8.1f", r.packed_ratio, r.encode_gbps, r.decode_gbps, r.memcpy_gbps))
        }
    }
}

struct BenchConv: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "conv", abstract: "conv2d forward/backward time on every distinct resnet50-64 convolution shape.")

    @OptionGroup var engine: EngineOptions
    @Option(parsing: .unconditional, help: "Batch size, 1 to 1024.") var batch = 16
    @Flag(help: "Print JSON.") var json = false

    func validate() throws { try requireRange("--batch", batch, 1...1024) }

    func run() throws {
        engine.apply()
        let rows = ConvolutionBenchmark.resnet50Layers(batch: batch)
        if json {
            print(try jsonString(rows))
            return
        }
        var totalF = 0.0, totalB = 0.0
        for r in rows {
            totalF += r.forward_ms * Double(r.count)
            totalB += r.backward_ms * Double(r.count)
            print(String(format: "conv cin %4d hw %2d cout %4d k %d s %d x%d: fwd %7.3f ms (%4.0f GFLOP/s)  bwd %7.3f ms (%4.0f GFLOP/s)",
                         r.in_channels, r.size, r.out_channels, r.kernel, r.stride, r.count, r.forward_ms, r.forward_gflops,
                         r.backward_ms, r.backward_gflops))
        }
        print(String(format: "total (weighted by count): fwd %.1f ms, bwd %.1f ms", totalF, totalB))
    }
}

func jsonString<T: Encodable>(_ value: T) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    return String(decoding: try encoder.encode(value), as: UTF8.self)
}
