import ArgumentParser
import Foundation
import Remat

struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "The main job: train gpt-mini on the built-in data, then show what checkpointing, compression and offload save.")

    @OptionGroup var engine: EngineOptions
    @Option(parsing: .unconditional, help: "Training steps before the comparison, 1 to 100000.") var steps = 20
    @Option(parsing: .unconditional, help: "Rounds of the comparison, 1 to 1000: each round times one step of every policy and of the plan, back to back.") var rounds = 7
    @Option(help: "Ways of saving memory compared with none (comma separated): checkpointing policies, with compression (+CODEC[:WHERE]) and offload (+offload[:WHERE]) as bench train --compare takes them.")
    var policies = "none+explicit-attention,all,save-matmuls,none+bf16,save-matmuls+fp8-e4m3,all+offload"
    @Option(parsing: .unconditional, help: "Memory budget of the planned run (bytes with a unit, or a fraction of the unconstrained peak, 0 < f ≤ 1).")
    var budget = "0.6"
    @Option(help: "Where to write the HTML report of the demo (atomically): the training steps, every way's memory timeline, peak and time, the plan's per-op profile, the frontier and the step graph.")
    var report = "remat-demo.html"

    /// Per-round ratios that vary more than this (half their range over their median) are called noisy.
    static let noisySpread = 0.10

    func validate() throws {
        try requireRange("--steps", steps, 1...100_000)
        try requireRange("--rounds", rounds, 1...1000)
        do { _ = try StepVariant.parseList(policies) } catch let e as CheckpointPolicy.ParseError {
            throw ValidationError("--policies: \(e.description)")
        } catch let e as CodecError {
            throw ValidationError("--policies: \(e.description)")
        }
        do { _ = try MemoryBudget.parse(budget) } catch let e as PlanningError { throw ValidationError("--budget: \(e.description)") }
        try requireWritableFile("--report", report)
    }

    func run() throws {
        engine.apply()
        let config = GPTConfig.gptMini
        let gpt = GPT(config, seed: 0)
        var source = ArithmeticText.dataset(seed: 0)
        print("Remat demo: gpt-mini (\(gpt.parameterCount) parameters), batch \(config.batchSize), T \(config.contextLength), \(Runtime.threads) threads")
        print("GEMM: \(Runtime.blasDescription)")
        let sample = String(decoding: ArithmeticText.generate(bytes: 40), as: UTF8.self).split(separator: "\n").prefix(3)
        print("data: built-in arithmetic text, e.g. \(sample.joined(separator: " | "))")
        print("")
        let trainer = Trainer(model: gpt, optimizer: Trainer.specAdamW(gpt, learningRate: 1e-3),
                              schedule: WarmupCosineSchedule(peak: 1e-3, minimum: 1e-4, warmupSteps: 3, totalSteps: steps + 100))
        var reports: [StepReport] = []
        var printer = ProgressPrinter(total: steps)
        printer.every = 5
        try trainer.run(steps: steps, batchSize: config.batchSize, source: &source) { r in
            reports.append(r)
            printer.show(r)
        }
        print(String(format: "loss %.3f → %.3f over %d steps", reports.first!.loss, reports.last!.loss, reports.count))
        print("")

        // A plan for the budget: profile one step, decide what to recompute.
        let b = try MemoryBudget.parse(budget)
        let (plan, graph) = try trainer.planMemory(budget: b, batch: source.nextBatch(batchSize: config.batchSize, length: config.contextLength))

        // The same model and optimizer under each policy and the plan, an untimed and a timed step of each per round,
        // back to back (a load change between rounds then moves both sides of a ratio alike).
        let variants = [StepVariant(.none)] + (try StepVariant.parseList(policies))
        for v in variants { try checkSelectedModules(gpt, v.compression, v.offload) }
        let names = variants.map(\.description) + ["plan"]
        let store = variants.contains { $0.offload != nil } ? try SpillStore() : nil
        defer { store?.close() }
        func use(_ v: Int) throws {
            if v < variants.count { try variants[v].apply(to: gpt, trainer: trainer, store: store) } else {
                try StepVariant(.none).apply(to: gpt, trainer: trainer)
                try gpt.applyPlan(plan)
            }
        }
        func step() throws -> StepReport { try trainer.checkedStep(source.nextBatch(batchSize: config.batchSize, length: config.contextLength)) }
        // Warm-up: each layout's buffers once, recording its memory timeline for the report.
        var timelines: [CategoryTimeline] = []
        for v in names.indices {
            try use(v)
            timelines.append(try MemoryReport.record(trainer.ledger) { try step() }.1)
        }
        // An untimed step of each row before its timed one (InterleavedTiming.steps says why).
        let (timing, rowReports) = try InterleavedTiming.steps(variants: names.count, rounds: rounds, apply: use, step: step)
        let peaks = rowReports.map(\.peakBytes), activations = rowReports.map(\.activationPeakBytes)
        try StepVariant(.none).apply(to: gpt, trainer: trainer)

        print("what each way of saving memory bought (peak of a training step, measured by the memory ledger;")
        print("step times: medians of \(rounds) rounds that time every row back to back, each after an untimed step of its own;")
        print("ratios to none within each round):")
        let width = max(14, names.map(\.count).max() ?? 0)
        print("way".padding(toLength: width, withPad: " ", startingAt: 0) + "  step ms   vs none (rounds)       peak memory   activation peak   saved vs none")
        for v in names.indices {
            let saved = peaks[0] - peaks[v]
            let range = timing.ratioRange(v)
            let ratio = String(format: "%5.2fx", timing.medianRatio(v)) + (v == 0 ? "            " : String(format: " (%.2f–%.2f)", range.lowerBound, range.upperBound))
            print(names[v].padding(toLength: width, withPad: " ", startingAt: 0)
                  + String(format: "  %7.0f    ", timing.medianTime(v)) + ratio
                  + "   " + mib(peaks[v]).leftPad(11) + "   " + mib(activations[v]).leftPad(15)
                  + (v == 0 ? "" : "   \(mib(saved)) (\(String(format: "%.0f%%", 100 * Double(saved) / Double(peaks[0]))))"))
        }
        if timing.widestSpread > Self.noisySpread {
            print(String(format: "the machine was busy: per-round ratios vary by up to ±%.0f%%; the medians hold, the ranges say how far to trust them",
                         100 * timing.widestSpread))
        }
        if variants.contains(where: { $0.attention == .explicit }) && AttentionKernel.default == .fused {
            print("none runs the fused attention (the default: each row's log-sum-exp saved, the probabilities recomputed block by")
            print("  block in backward); +explicit-attention saves the T×T probabilities instead: its extra memory is what the fused kernel saves")
        }
        if variants.contains(where: { $0.compression.map { !$0.isLossless } ?? false }) {
            print("+bf16, +fp8-e4m3: saved activations stored rounded (lossy: backward reads them decoded; over 200 steps the")
            print("  loss stays within 0.4% of float32's, results/compress-offload.md); the forward is unchanged")
        }
        if let store {
            let c = store.counters
            let steps = 2 * rounds + 1   // the warm-up, then an untimed and a timed step per round
            print("+offload: the block inputs (\(mib(c.bytesWritten / steps)) a step) written to files in \(store.directory) by a background")
            print(String(format: "  thread at idle priority and read back ahead of backward (%.2f GB/s written, %.2f GB/s read over that thread's time);",
                         c.writeGBps ?? 0, c.readGBps ?? 0)
                  + String(format: " backward waited %.0f ms in %d steps", 1000 * c.waitSeconds, steps))
        }
        print("")
        let p = names.count - 1
        print("plan: under a budget of \(mib(plan.budgetBytes)) (\(b)), solver \(plan.solver):")
        print("  recompute \(plan.recomputedCount) ops (\(mib(plan.recomputedBytes)))"
              + (plan.compress.isEmpty ? "" : ", compress \(plan.compress.count) losslessly (\(mib(plan.compress.reduce(0) { $0 + $1.bytes })) into \(mib(plan.compress.reduce(0) { $0 + $1.packedBytes })))")
              + (plan.offload.isEmpty ? "" : ", offload \(plan.offload.count) (\(mib(plan.offload.reduce(0) { $0 + $1.bytes })))")
              + ", keep \(plan.keptCount) (\(mib(plan.keptBytes)))")
        print("  peak: predicted \(mib(plan.predictedPeakBytes)), measured \(mib(peaks[p])) (none: \(mib(peaks[0])), saved \(String(format: "%.0f%%", 100 * Double(peaks[0] - peaks[p]) / Double(peaks[0]))))")
        print(String(format: "  step time: %.2fx of none (predicted %.2fx)", timing.medianRatio(p), plan.predictedOverhead))
        // The budget → time frontier of that step (predicted), and its knee.
        let frontier = try Planner.frontier(PlanSimulator(graph), points: 8)
        if let k = frontier.knee {
            let knee = frontier.points[k]
            print(String(format: "  frontier (predicted, lossless plans at 8 budgets from %@ down to %@): knee at %@, x%.2f —",
                         mib(frontier.unconstrainedPeakBytes), mib(frontier.leastPeakBytes), mib(knee.predictedPeakBytes), knee.overhead))
            print("  below it each MiB saved costs more time than the average MiB (remat plan --model gpt-mini --sweep)")
        }
        let runs = names.indices.map { MemoryReport.Run(label: names[$0], timeline: timelines[$0], stepMilliseconds: timing.medianTime($0)) }
        let html = try Self.report(reports: reports, runs: runs, ratios: names.indices.map(timing.medianRatio), peaks: peaks,
                                   plan: plan, graph: graph, budget: b)
        try html.write(to: report)
        let kib = ((try? FileManager.default.attributesOfItem(atPath: report)[.size] as? Int) ?? 0) / 1024
        print("")
        print("report: \(URL(fileURLWithPath: report).standardizedFileURL.path) (\(kib) KiB; open it in a browser): the training steps, each way's")
        print("  memory timeline, peak and time, the plan's per-op profile, the budget → step time frontier and the step graph")
        print("")
        print("next:")
        print("  remat explain --model gpt-mini --policy save-matmuls   every saved tensor, kept or recomputed")
        print("  remat plan --model gpt-mini --budget 200MiB            what to recompute, compress or offload under a budget")
        print("  remat plan --model gpt-mini --sweep --allow-lossy bf16  the budget → step time frontier, with bf16 allowed")
        print("  remat train --data FILE --budget 0.6 --save DIR        train on your own text under a budget")
        print("  remat explain --model gpt-mini --policy save-matmuls --compress fp8-e4m3   what each saved tensor is packed to")
        print("  remat bench train --model gpt-mini --compare all,save-matmuls,none+bf16 --rounds 5   this table for any workload")
    }

    /// The demo's HTML report: the training, each way's peak and time, their timelines, and the
    /// plan (profile, frontier with every way as a measured point, step graph).
    static func report(reports: [StepReport], runs: [MemoryReport.Run], ratios: [Double], peaks: [Int], plan: MemoryPlan,
                       graph: StepGraph, budget: MemoryBudget) throws -> HTMLReport {
        let kind = { (i: Int) in i == 0 ? "none" : i == runs.count - 1 ? "plan" : "a way of saving memory" }
        let groups = ["none", "a way of saving memory", "plan"]
        let peakChart = BarChart(title: "Peak memory of a training step", categoryLabel: "way", y: ChartAxis("MiB", includeZero: true),
                                 bars: runs.indices.map { .init(runs[$0].label, Double(peaks[$0]) / 1_048_576, group: kind($0)) }, groups: groups)
        let timeChart = BarChart(title: "Step time ÷ none (median of the rounds)", categoryLabel: "way", y: ChartAxis("× none", includeZero: true),
                                 bars: runs.indices.map { .init(runs[$0].label, ratios[$0], group: kind($0)) }, groups: groups)
        let table = HTMLReport.Table(caption: "what each way bought", header: ["way", "step ms", "× none", "peak", "saved vs none"],
                                     rows: runs.indices.map { i in
                                         [runs[i].label, String(format: "%.0f", runs[i].stepMilliseconds), String(format: "%.2f", ratios[i]), mib(peaks[i]),
                                          i == 0 ? "" : "\(mib(peaks[0] - peaks[i])) (\(String(format: "%.0f%%", 100 * Double(peaks[0] - peaks[i]) / Double(peaks[0]))))"]
                                     })
        let ways = HTMLReport.Section(id: "ways", title: "What each way of saving memory bought",
                                      paragraphs: ["The peak of a training step under each way, measured by the ledger, and its time over none's: medians of rounds that time every way back to back, each after an untimed step of its own. The last bar is the plan for the budget \(budget)."],
                                      figures: [try peakChart.svg(), try timeChart.svg()], tables: [table])
        let policies = runs.indices.dropFirst().map { FrontierChart.Policy(name: runs[$0].label, peakBytes: peaks[$0], overhead: ratios[$0]) }
        let sections = [
            try TrainingRunReport.runSection(reports, budgetBytes: nil, paragraph: "The demo's training steps on the built-in data, as the ledger measured them: each step's peak, its activations' own peak, its time and its loss."),
            ways,
            try MemoryReport.timelineSection(runs, budgetBytes: plan.budgetBytes,
                                             paragraph: "Live bytes by category through one training step under each way (the step each way ran first, untimed, with the timeline recording), measured by the ledger; every chart on the same axes; the plan's budget drawn as a line. The peak is marked with the allocation the ledger was making and the op running then."),
            try MemoryReport.profileSection(graph, plan: plan),
            try MemoryReport.frontierSection(graph, policies: policies, points: 8, title: "gpt-mini: budget → step time (plans predicted, ways measured)"),
            try MemoryReport.graphSection(graph, plan: plan),
        ]
        return HTMLReport(title: "Remat demo: gpt-mini", sections: sections,
                          provenance: [("command", quotedCommandLine())] + MemoryReport.machineFacts(workload: "gpt-mini, batch \(GPTConfig.gptMini.batchSize), T \(GPTConfig.gptMini.contextLength)"))
    }
}
