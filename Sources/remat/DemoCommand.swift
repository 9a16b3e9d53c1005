import ArgumentParser
import Foundation
import Remat

struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo", abstract: "The main job: train gpt-mini on the built-in data and report memory and time.")

    @OptionGroup var engine: EngineOptions
    @Option(help: "Training steps.") var steps = 30

    func run() throws {
        engine.apply()
        let config = GPTConfig.gptMini
        let gpt = GPT(config, seed: 0)
        var source = ArithmeticText.dataset(seed: 0)
        print("Remat demo: gpt-mini (\(gpt.parameterCount) parameters), batch \(config.batchSize), T \(config.contextLength), \(Runtime.threads) threads")
        print("GEMM: \(Runtime.blasDescription)")
        print("data: built-in arithmetic text, e.g. \(String(decoding: ArithmeticText.generate(bytes: 40), as: UTF8.self).split(separator: "\n").prefix(3).joined(separator: " | "))")
        let trainer = Trainer(model: gpt, optimizer: Trainer.specAdamW(gpt, learningRate: 1e-3),
                              schedule: WarmupCosineSchedule(peak: 1e-3, minimum: 1e-4, warmupSteps: 3, totalSteps: steps))
        var reports: [StepReport] = []
        var printer = ProgressPrinter(total: steps)
        printer.every = 5
        trainer.run(steps: steps, batchSize: config.batchSize, source: &source) { r in
            reports.append(r)
            printer.show(r)
        }
        let first = reports.first!, last = reports.last!
        let times = reports.dropFirst(2).map(\.stepMilliseconds).sorted()
        print("")
        print(String(format: "loss %.3f → %.3f over %d steps; median step %.0f ms", first.loss, last.loss, reports.count, times[times.count / 2]))
        print("peak memory of the last step: \(mib(last.peakBytes))")
        for key in ["parameters", "gradients", "optimizer", "activations", "temporaries"] {
            print("  \(key.padding(toLength: 12, withPad: " ", startingAt: 0)) \(mib(last.peakByCategory[key] ?? 0))")
        }
    }
}
