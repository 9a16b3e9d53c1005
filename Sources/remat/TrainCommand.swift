import ArgumentParser
import Foundation
import Remat
import Synchronization

/// Set by SIGINT; the training loop stops cleanly after the current step.
let interruptRequested = Atomic<Bool>(false)

func installInterruptHandler() {
    signal(SIGINT) { _ in
        if interruptRequested.load(ordering: .relaxed) { _exit(130) }   // a second Ctrl-C quits at once
        interruptRequested.store(true, ordering: .relaxed)
    }
}

/// Prints step reports: a one-line progress bar on a terminal, plain lines otherwise.
struct ProgressPrinter {
    let total: Int
    let interactive = isatty(STDOUT_FILENO) != 0
    var every = 1

    func show(_ r: StepReport) {
        let peak = mib(r.peakBytes)
        let line = String(format: "step %4d/%d  loss %.4f  %.0f ms  %.0f tok/s  peak %@", r.step + 1, total, r.loss,
                          r.stepMilliseconds, r.tokensPerSecond, peak as NSString)
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
    @Option(help: "Workload: \(ModelZoo.languageModelNames.joined(separator: ", ")).") var model = "gpt-mini"
    @Option(help: "A text file read as bytes (default: the built-in arithmetic data).") var data: String?
    @Option(help: "Training steps.") var steps = 200
    @Option(help: "Batch size (default: the workload's).") var batch: Int?
    @Option(help: "Peak learning rate (AdamW, warm-up + cosine).") var lr: Float = 3e-4
    @Option(help: "Random seed for weights and data.") var seed: UInt64 = 0
    @Option(help: "Directory to save the weights to (model.safetensors) at the end or on Ctrl-C.") var save: String?
    @Option(help: "Print a line every N steps when not on a terminal.") var logEvery = 10
    @Option(help: "Memory budget (300MiB, 1.5GiB, or a fraction of the unconstrained peak): plan each input shape's step under it.")
    var budget: String?
    @Option(help: "Solver with --budget: \(PlanSolver.allCases.map(\.rawValue).joined(separator: ", ")).") var solver = "auto"

    func validate() throws {
        if budget != nil && policyOption.policy != "none" {
            throw ValidationError("--budget plans the checkpointing itself; drop --policy \(policyOption.policy)")
        }
    }

    func run() throws {
        engine.apply()
        let config = try ModelZoo.gptConfig(model)
        let gpt = GPT(config, seed: seed)
        try gpt.applyCheckpointing(policyOption.parsed())
        let b = batch ?? config.batchSize
        var source: ByteSequenceDataset
        if let data {
            source = try ByteSequenceDataset(path: data, minimumLength: config.contextLength + 1, seed: seed)
        } else {
            source = ArithmeticText.dataset(seed: seed)
        }
        let trainer = Trainer(model: gpt, optimizer: Trainer.specAdamW(gpt, learningRate: lr),
                              schedule: WarmupCosineSchedule(peak: lr, minimum: lr / 10, warmupSteps: max(1, steps / 20), totalSteps: steps))
        var memory = "policy \(policyOption.policy)"
        if let budget {
            let parsed = try MemoryBudget.parse(budget)
            trainer.memoryBudget = MemoryBudgetPlanner(parsed, solver: try PlanSolver.parse(solver))
            memory = "memory budget \(parsed)"
        }
        print("training \(model) (\(gpt.parameterCount) parameters) on \(data ?? "built-in arithmetic data"), batch \(b), \(memory), \(Runtime.threads) threads")
        print("GEMM: \(Runtime.blasDescription)")
        installInterruptHandler()
        var printer = ProgressPrinter(total: steps)
        printer.every = logEvery
        trainer.run(steps: steps, batchSize: b, source: &source,
                    shouldStop: { interruptRequested.load(ordering: .relaxed) }, log: printer.show)
        if interruptRequested.load(ordering: .relaxed) { print("\ninterrupted after step \(trainer.stepIndex); stopping cleanly") }
        if let save {
            let path = try saveWeights(gpt, directory: save)
            print("saved weights to \(path)")
        }
    }
}

/// Writes the model's parameters and buffers to `directory/model.safetensors` (atomically).
func saveWeights(_ model: Module, directory: String) throws -> String {
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    let path = (directory as NSString).appendingPathComponent("model.safetensors")
    try SafetensorsFile.write(model.namedTensors, to: path)
    return path
}
