import ArgumentParser
import Foundation
import Remat

struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "The main job: train gpt-mini on the built-in data, then show what checkpointing saves.")

    @OptionGroup var engine: EngineOptions
    @Option(parsing: .unconditional, help: "Training steps before the comparison, 1 to 100000.") var steps = 20
    @Option(parsing: .unconditional, help: "Steps measured per policy (after one warm-up step), 1 to 1000.") var measure = 3
    @Option(help: "Policies compared with none (comma separated).") var policies = "all,save-matmuls"
    @Option(parsing: .unconditional, help: "Memory budget of the planned run at the end (bytes with a unit, or a fraction of the unconstrained peak, 0 < f ≤ 1).")
    var budget = "0.6"

    func validate() throws {
        try requireRange("--steps", steps, 1...100_000)
        try requireRange("--measure", measure, 1...1000)
        for p in policies.split(separator: ",", omittingEmptySubsequences: false) {
            do { _ = try CheckpointPolicy.parse(String(p)) } catch let e as CheckpointPolicy.ParseError {
                throw ValidationError("--policies: \(e.description)")
            }
        }
        do { _ = try MemoryBudget.parse(budget) } catch let e as PlanningError { throw ValidationError("--budget: \(e.description)") }
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
        trainer.run(steps: steps, batchSize: config.batchSize, source: &source) { r in
            reports.append(r)
            printer.show(r)
        }
        print(String(format: "loss %.3f → %.3f over %d steps", reports.first!.loss, reports.last!.loss, reports.count))
        print("")

        // The same model and optimizer, a few steps under each policy.
        let compared = ["none"] + policies.split(separator: ",").map(String.init)
        var rows: [(String, Double, Int, Int)] = []
        for name in compared {
            try gpt.applyCheckpointing(CheckpointPolicy.parse(name))
            var times: [Double] = []
            var last: StepReport! = nil
            for i in 0...measure {
                last = trainer.step(source.nextBatch(batchSize: config.batchSize, length: config.contextLength))
                if i > 0 { times.append(last.stepMilliseconds) }
            }
            rows.append((name, median(times), last.peakBytes, last.peakByCategory["activations"] ?? 0))
        }
        try gpt.applyCheckpointing(.none)
        let base = rows[0]
        print("what checkpointing saved (peak of one training step, measured by the memory ledger):")
        print("policy          step ms   vs none   peak memory   activations at peak   saved vs none")
        for (name, ms, peak, act) in rows {
            let saved = base.2 - peak
            print(name.padding(toLength: 14, withPad: " ", startingAt: 0)
                  + String(format: "  %7.0f    %5.2fx", ms, ms / base.1)
                  + "   " + mib(peak).leftPad(11) + "   " + mib(act).leftPad(19)
                  + "   " + (name == "none" ? "" : "\(mib(saved)) (\(String(format: "%.0f%%", 100 * Double(saved) / Double(base.2))))"))
        }

        // A planned run: profile one step, plan what to recompute under the budget, run under the plan.
        print("")
        let b = try MemoryBudget.parse(budget)
        let batch = source.nextBatch(batchSize: config.batchSize, length: config.contextLength)
        let (plan, _) = try trainer.planMemory(budget: b, batch: batch)
        var times: [Double] = []
        var last: StepReport! = nil
        for i in 0...measure {
            last = trainer.step(source.nextBatch(batchSize: config.batchSize, length: config.contextLength))
            if i > 0 { times.append(last.stepMilliseconds) }
        }
        try gpt.applyCheckpointing(.none)
        print("planned under a budget of \(mib(plan.budgetBytes)) (\(b)), solver \(plan.solver):")
        print("  recompute \(plan.recomputedCount) ops (\(mib(plan.recomputedBytes))), keep \(plan.keptCount) (\(mib(plan.keptBytes)))")
        print("  peak: predicted \(mib(plan.predictedPeakBytes)), measured \(mib(last.peakBytes)) (none: \(mib(base.2)), saved \(String(format: "%.0f%%", 100 * Double(base.2 - last.peakBytes) / Double(base.2))))")
        print(String(format: "  step time: %.0f ms, %.2fx of none (predicted %.2fx)", median(times), median(times) / base.1, plan.predictedOverhead))
    }
}
