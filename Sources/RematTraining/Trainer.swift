/// What one training step did, measured by the memory ledger and the clock.
public struct StepReport: Codable, Sendable {
    public var step: Int
    public var loss: Float
    public var learningRate: Float
    public var stepMilliseconds: Double
    public var tokensPerSecond: Double
    /// High-water mark of live tensor bytes during the step.
    public var peakBytes: Int
    /// Each category's bytes at the moment of the peak (they add up to `peakBytes`).
    public var peakByCategory: [String: Int]
    /// The activations category's own high-water mark during the step (it may fall at another
    /// moment than the total peak).
    public var activationPeakBytes: Int = 0
    /// With a ``GradScaler``: the loss scale the step ran with, and whether the step was skipped
    /// (its gradients held an inf or a NaN; the optimizer did not step).
    public var lossScale: Float? = nil
    public var skipped: Bool = false
    /// Under a dynamic budget (``Trainer/dynamicBudget``): what the evictor did in this step.
    public var dynamic: DynamicRematerializer.Statistics? = nil

    public init(step: Int, loss: Float, learningRate: Float, stepMilliseconds: Double, tokensPerSecond: Double, peakBytes: Int,
                peakByCategory: [String: Int], activationPeakBytes: Int = 0, lossScale: Float? = nil, skipped: Bool = false,
                dynamic: DynamicRematerializer.Statistics? = nil) {
        self.step = step
        self.loss = loss
        self.learningRate = learningRate
        self.stepMilliseconds = stepMilliseconds
        self.tokensPerSecond = tokensPerSecond
        self.peakBytes = peakBytes
        self.peakByCategory = peakByCategory
        self.activationPeakBytes = activationPeakBytes
        self.lossScale = lossScale
        self.skipped = skipped
        self.dynamic = dynamic
    }
}

/// Holds a value for a closure that must be `@Sendable` but runs on the thread that made it
/// (the gradient-ready observer runs inside the step's own backward).
struct UncheckedSendable<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

/// What makes a step's gradients final across processes (``Trainer/gradientSynchronizer``).
public protocol GradientSynchronizer: AnyObject {
    /// Called after backward with the optimizer's parameters (their `grad` this process's own);
    /// returns with every `grad` final. A throw ends the step before the optimizer steps.
    func synchronize(_ parameters: [Tensor]) throws
    /// Called during backward with each parameter as soon as its gradient is final (the autograd
    /// engine's ``AutogradContext/gradientReadyObserver``), so its reduction can start while
    /// backward goes on. Default: nothing.
    func gradientReady(_ parameter: Tensor)
}

extension GradientSynchronizer {
    public func gradientReady(_ parameter: Tensor) {}
}

/// A step that cannot stay under its dynamic budget (``Trainer/dynamicBudget``), refused before
/// the optimizer steps: parameters and optimizer state are untouched, gradients cleared.
public enum DynamicBudgetError: Error, CustomStringConvertible, Equatable {
    /// What is live before the step starts (parameters, optimizer state, buffers) is already
    /// at or above the budget.
    case belowResidentMemory(budget: Int, resident: Int, breakdown: [String: Int])
    /// After backward, the optimizer's first step would allocate its state beyond the budget.
    case optimizerStateDoesNotFit(budget: Int, live: Int, state: Int)
    /// Evicting every saved tensor that could be evicted did not make an allocation fit.
    case exceeded(budget: Int, allocationsOver: Int, largestExcess: Int, shortfall: DynamicRematerializer.Shortfall?)
    /// Both ``Trainer/dynamicBudget`` and ``Trainer/memoryBudget`` are set (one budget per
    /// trainer: the memory budget's dynamic or hybrid mode runs DTR itself).
    case twoBudgets(dynamic: Int, planned: String)
    /// The model runs under a memory plan's regions (``Module/applyPlan(_:store:)``) and a
    /// dynamic budget: evicting around planned regions is not supported (give the plan to the
    /// evictor instead: ``MemoryBudgetPlanner``'s hybrid mode, ``DynamicRematerializer/plannedDrops``).
    case planInsideDynamicBudget(regions: [String])

    public var description: String {
        func parts(_ b: [String: Int]) -> String {
            b.filter { $0.value > 0 }.sorted { $0.value > $1.value }.map { "\($0.key) \(formatBytes($0.value))" }.joined(separator: ", ")
        }
        switch self {
        case .belowResidentMemory(let budget, let resident, let breakdown):
            return "dynamic budget \(formatBytes(budget)) is not above what is live before the step starts, \(formatBytes(resident)) (\(parts(breakdown))): nothing the step could evict makes room for it"
        case .optimizerStateDoesNotFit(let budget, let live, let state):
            return "dynamic budget \(formatBytes(budget)): the optimizer's first step allocates \(formatBytes(state)) of state on top of the \(formatBytes(live)) live after backward (parameters and gradients); the optimizer did not step"
        case .exceeded(let budget, let over, let excess, let shortfall):
            var text = "the step went over its dynamic budget \(formatBytes(budget)) in \(over) allocation\(over == 1 ? "" : "s"), by up to \(formatBytes(excess))"
            if let shortfall {
                text += "; at the worst one, with every evictable saved tensor evicted, the memory was \(parts(shortfall.breakdown))"
                text += " — parameters, gradients, optimizer state and temporaries are never evicted, and the saved activations left were pinned (read by the running op or backward, or held outside the graph)"
            }
            return text + "; the optimizer did not step"
        case .planInsideDynamicBudget(let regions):
            return "the model runs under a memory plan (regions \(regions.prefix(3).joined(separator: ", "))\(regions.count > 3 ? ", …" : "")) and a dynamic budget: evicting around planned regions is not supported; use a memory budget's hybrid mode, which runs the plan in the evictor; nothing ran"
        case .twoBudgets(let dynamic, let planned):
            return "the trainer has a dynamic budget (\(formatBytes(dynamic))) and a memory budget (\(planned)): set one (a memory budget's hybrid or dynamic mode runs DTR itself); nothing ran"
        }
    }
}

/// The training loop: zero grads (set to none, so their memory is free during the forward),
/// forward + loss, backward, optional gradient clipping, learning-rate schedule, optimizer step.
/// Each step is measured by the ledger (peak reset at the start of the step).
public final class Trainer {
    public let model: any TrainableModel
    public let optimizer: any Optimizer
    public var schedule: WarmupCosineSchedule?
    public var gradientClip: Float?
    public let ledger: MemoryLedger
    public private(set) var stepIndex = 0

    public init(model: any TrainableModel, optimizer: any Optimizer, schedule: WarmupCosineSchedule? = nil,
                gradientClip: Float? = 1.0, ledger: MemoryLedger = .shared) {
        self.model = model
        self.optimizer = optimizer
        self.schedule = schedule
        self.gradientClip = gradientClip
        self.ledger = ledger
    }

    /// AdamW with the workload spec's settings (lr 3e-4, betas (0.9, 0.95), eps 1e-8, wd 0.1 on matrices).
    public static func specAdamW(_ model: Module, learningRate: Float = 3e-4) -> AdamW {
        specAdamW(model.parameters, learningRate: learningRate)
    }

    /// The spec's AdamW over `parameters`; `decaying` says per parameter whether weight decay
    /// applies (default: matrices; a shard's 1-D views of matrices must say).
    public static func specAdamW(_ parameters: [Tensor], decaying: [Bool]? = nil, learningRate: Float = 3e-4) -> AdamW {
        AdamW(parameters, learningRate: learningRate, betas: (0.9, 0.95), eps: 1e-8, weightDecay: 0.1, decaying: decaying)
    }

    /// When set, every step runs under a plan for its input shape, made on first sight of the
    /// shape (``MemoryBudgetPlanner``).
    public var memoryBudget: MemoryBudgetPlanner?

    /// When set, every step runs under this hard limit on the ledger's total (dynamic
    /// rematerialization, ``DynamicRematerializer``): the forward's saved tensors are evicted
    /// under pressure and rebuilt when backward needs them. A step that cannot fit throws
    /// ``DynamicBudgetError`` from ``checkedStep(_:)`` before the optimizer steps.
    public var dynamicBudget: DynamicRematerializer?

    /// Runs `body` (which may run steps) and puts back the parameters, buffers, optimizer state and
    /// step counter as they were before, bitwise. Gradients are cleared. The copies are host-side
    /// arrays outside the ledger.
    public func preservingState<T>(_ body: () throws -> T) rethrows -> T {
        let tensors = model.namedTensors.map { ($0.1, $0.1.toArray()) }
        let optimizerState = optimizer.snapshotState()
        let index = stepIndex
        let learningRate = optimizer.learningRate
        defer {
            optimizer.zeroGrad()
            noGrad { for (t, v) in tensors { t.copyValues(from: Tensor(v, shape: t.shape)) } }
            optimizer.restoreState(optimizerState)
            stepIndex = index
            optimizer.learningRate = learningRate
        }
        return try body()
    }

    /// Runs one step on `batch` (under the memory budget's plan for its shape, if one is set).
    /// Stops the program if the model's saved-tensor policy reports a fault (a spill file lost):
    /// use ``checkedStep(_:)`` to handle it.
    @discardableResult
    public func step(_ batch: TokenBatch) -> StepReport {
        do { return try checkedStep(batch) } catch {
            preconditionFailure("Trainer.step: \(error) (checkedStep throws this instead)")
        }
    }

    /// ``step(_:)``, throwing what the model's saved-tensor policy reports after backward (an
    /// offloaded tensor whose file is missing or corrupted) before the optimizer steps: the
    /// parameters and optimizer state are untouched and the gradients cleared.
    @discardableResult
    public func checkedStep(_ batch: TokenBatch) throws -> StepReport {
        if dynamicBudget != nil, let memoryBudget {
            throw DynamicBudgetError.twoBudgets(dynamic: dynamicBudget!.budgetBytes, planned: memoryBudget.budget.description)
        }
        if self.dynamicBudget != nil, let strategy = model.execution as? ExecutionStrategy {
            let planned = strategy.regions.filter { if case .planned = $0.value { return true } else { return false } }.keys.sorted()
            if !planned.isEmpty { throw DynamicBudgetError.planInsideDynamicBudget(regions: planned) }
        }
        if let memoryBudget, !memoryBudget.isPreparing { memoryBudget.prepare(self, batch: batch) }
        // The hard limit: the trainer's own, or the memory budget's (dynamic and hybrid modes).
        let dynamicBudget = dynamicBudget ?? memoryBudget?.evictor
        return try MemoryLedger.withLedger(ledger) {
            let start = monotonicSeconds()
            beginStep()
            let lossScale = gradScaler?.scale
            var dynamicStatistics: DynamicRematerializer.Statistics? = nil
            func forwardBackwardUpdate() throws -> (loss: Float, skipped: Bool) {
                let lossValue: Float = {
                    let loss = dynamicBudget.map { dtr in dtr.forward { self.forward(batch) } } ?? forward(batch)
                    let seed = gradScaler?.scaled(loss) ?? loss
                    if let sync = gradientSynchronizer {
                        let box = UncheckedSendable(sync)
                        AutogradContext.with({ $0.gradientReadyObserver = { box.value.gradientReady($0) } }) { seed.backward() }
                    } else {
                        seed.backward()
                    }
                    return loss.item
                }()
                do { try model.savedTensorPolicy?.checkAfterBackward() } catch {
                    optimizer.zeroGrad()
                    throw error
                }
                if let gradientSynchronizer {
                    do { try gradientSynchronizer.synchronize(optimizer.parameters) } catch {
                        optimizer.zeroGrad()
                        throw error
                    }
                }
                if let dtr = dynamicBudget, ledger.overLimitAllocations > 0 {
                    optimizer.zeroGrad()
                    throw DynamicBudgetError.exceeded(budget: dtr.budgetBytes, allocationsOver: ledger.overLimitAllocations,
                                                      largestExcess: ledger.largestExcessBytes, shortfall: dtr.worstShortfall)
                }
                if let dtr = dynamicBudget, ledger.currentBytes + optimizer.unallocatedStateBytes > dtr.budgetBytes {
                    let live = ledger.currentBytes, state = optimizer.unallocatedStateBytes
                    optimizer.zeroGrad()
                    throw DynamicBudgetError.optimizerStateDoesNotFit(budget: dtr.budgetBytes, live: live, state: state)
                }
                var skipped = false
                if let gradScaler {
                    let finite = gradScaler.unscaleGradients(of: optimizer)
                    gradScaler.update(finite: finite)
                    skipped = !finite
                }
                if skipped { optimizer.zeroGrad() } else { update() }
                return (lossValue, skipped)
            }
            let lossValue: Float, skipped: Bool
            if let dtr = dynamicBudget {
                let resident = ledger.currentBytes
                guard resident < dtr.budgetBytes else {
                    throw DynamicBudgetError.belowResidentMemory(
                        budget: dtr.budgetBytes, resident: resident,
                        breakdown: Dictionary(uniqueKeysWithValues: ledger.breakdown.filter { $0.key.countsTowardTotal }.map { ($0.key.description, $0.value) }))
                }
                dtr.resetStatistics()
                (lossValue, skipped) = try dtr.run(forwardBackwardUpdate)
                dynamicStatistics = dtr.statistics
            } else {
                (lossValue, skipped) = try forwardBackwardUpdate()
            }
            let seconds = monotonicSeconds() - start
            let report = StepReport(
                step: stepIndex, loss: lossValue, learningRate: optimizer.learningRate,
                stepMilliseconds: seconds * 1000, tokensPerSecond: Double(batch.input.count) / seconds,
                peakBytes: ledger.peakBytes,
                peakByCategory: Dictionary(uniqueKeysWithValues: ledger.breakdownAtPeak.map { ($0.key.description, $0.value) }),
                activationPeakBytes: ledger.peakBytes(in: .activations), lossScale: lossScale, skipped: skipped,
                dynamic: dynamicStatistics)
            stepIndex += 1
            return report
        }
    }

    /// The phases of ``step(_:)``, for tools that observe them one by one (step capture):
    /// set the learning rate, free the previous gradients, then reset the ledger's peak (the step's
    /// peak is measured from here).
    public func beginStep() {
        if let schedule { optimizer.learningRate = schedule.learningRate(at: stepIndex) }
        optimizer.zeroGrad()
        ledger.resetPeak()
    }

    /// Makes the gradients final across processes after backward, before clipping, unscaling
    /// and the optimizer step (data parallel: RematDistributed's `DataParallel` averages them
    /// over the ranks). Nil: the gradients are this process's own.
    public var gradientSynchronizer: (any GradientSynchronizer)?

    /// Mixed precision of the forward (``withAutocast(_:_:)``; nil: float32).
    public var autocast: AutocastPrecision?

    /// Dynamic loss scaling (fp16 autocast): steps scale the loss, unscale the gradients and skip
    /// the optimizer step when a gradient is inf or NaN (``GradScaler``).
    public var gradScaler: GradScaler?

    /// Forward + loss on `batch` (the graph is recorded for backward), under ``autocast`` if set.
    public func forward(_ batch: TokenBatch) -> Tensor {
        guard let autocast else { return model.loss(batch.input, targets: batch.target) }
        return withAutocast(autocast) { model.loss(batch.input, targets: batch.target) }
    }

    /// Gradient clipping (if set) and the optimizer step.
    public func update() {
        if let gradientClip { clipGradientNorm(of: optimizer, maxNorm: gradientClip) }
        optimizer.step()
    }

    /// This trainer's step on `batch`, phase by phase, for step capture (planning knows training
    /// loops only through this).
    /// With `dynamic`, the capture's steps run under its limit (``StepRunner/dynamic``).
    public func stepRunner(_ batch: TrainingBatch, dynamic: DynamicRematerializer? = nil) -> StepRunner {
        StepRunner(model: model, ledger: ledger, inputShape: batch.input.shape, begin: { self.beginStep() },
                   forward: { self.forward(batch) }, update: { self.update() }, step: { _ = self.step(batch) }, dynamic: dynamic)
    }

    /// Runs up to `steps` steps from `source`, calling `log` after each; stops early when
    /// `shouldStop()` turns true (checked after every step).
    /// Throws a fault of the saved-tensor policy (``checkedStep(_:)``), ending the run there.
    public func run(steps: Int, batchSize: Int, source: inout some TokenBatchSource,
                    shouldStop: () -> Bool = { false }, log: (StepReport) -> Void) throws {
        guard let lm = model as? any LanguageModel else { preconditionFailure("Trainer.run(source:): the model is not a language model") }
        try run(steps: steps, nextBatch: { source.nextBatch(batchSize: batchSize, length: lm.contextLength) },
                shouldStop: shouldStop, log: log)
    }

    /// Runs up to `steps` steps on batches from `nextBatch`.
    public func run(steps: Int, nextBatch: () -> TrainingBatch, shouldStop: () -> Bool = { false },
                    log: (StepReport) -> Void) throws {
        for _ in 0..<steps {
            log(try checkedStep(nextBatch()))
            if shouldStop() { break }
        }
    }
}

/// `remat bench train`: median step time and peak memory by category of a training step.
public struct TrainingBenchmarkResult: Codable, Sendable {
    public var model: String
    public var batch: Int
    public var threads: Int
    public var steps: Int
    public var median_step_ms: Double
    public var step_ms: [Double]
    public var peak_bytes: Int
    public var peak_by_category: [String: Int]
    /// The checkpointing policy the step ran under.
    public var policy: String = "none"
    /// The activation compression rules the step ran under ("" for none).
    public var compression: String = ""
    /// With offload: what was offloaded, the spill files' write and read rates (bytes over the I/O
    /// thread's time, all steps) and the seconds backward waited for reads.
    public var offload: String? = nil
    public var spill_write_gb_per_s: Double? = nil
    public var spill_read_gb_per_s: Double? = nil
    public var spill_wait_seconds: Double? = nil
    public var spill_save_wait_seconds: Double? = nil
    /// The process's resident high-water mark during the last step (Linux VmHWM, reset before it).
    public var peak_rss_bytes: Int? = nil
    /// With a memory budget: the budget, the planner's predicted peak and the solver used.
    public var budget_bytes: Int? = nil
    public var predicted_peak_bytes: Int? = nil
    public var solver: String? = nil
    public var recomputed_ops: Int? = nil
    /// With a memory budget: the profiled step's unconstrained peak, the least peak a plan
    /// reaches, the predicted step-time ratio to the unplanned step and the planning time.
    public var unconstrained_peak_bytes: Int? = nil
    public var minimum_peak_bytes: Int? = nil
    public var predicted_step_ratio: Double? = nil
    public var planning_seconds: Double? = nil
    /// With a dynamic budget: the mode ("dynamic"), and what the evictor did, summed over the
    /// timed steps: evictions, recomputes for backward, the tensors they rebuilt, their time;
    /// and the highest peak of any step (warm-up included), never above the budget.
    public var budget_mode: String? = nil
    public var evictions: Int? = nil
    public var rematerializations: Int? = nil
    public var rebuilt_tensors: Int? = nil
    public var recompute_ms: Double? = nil
    public var highest_step_peak_bytes: Int? = nil
}

public enum TrainingBenchmark {
    /// Times `warmup + steps` training steps of a workload's model with its spec optimizer on its
    /// synthetic batches and reports the median of the last `steps`, with the peak memory of the last step.
    public static func run(_ workload: Workload, batchSize: Int, steps: Int = 5, warmup: Int = 2,
                           ledger: MemoryLedger = .shared) -> TrainingBenchmarkResult {
        // No budget: cannot throw.
        try! run(workload, batchSize: batchSize, steps: steps, warmup: warmup, budget: nil, ledger: ledger)
    }

    /// As above, under a memory budget: the step is profiled and planned on the first batch, then
    /// the timed steps run under the plan (`budget_bytes`, `predicted_peak_bytes`, `solver` are set).
    ///
    /// With `dynamic`, the steps run under the budget as a hard limit instead
    /// (``Trainer/dynamicBudget``): nothing is profiled or planned; a fraction is of the
    /// unconstrained peak, measured first by a step outside the limit (with the trainer's state
    /// put back), which a benchmark may do and a training run under a real limit could not.
    public static func run(_ workload: Workload, batchSize: Int, steps: Int = 5, warmup: Int = 2,
                           budget: MemoryBudget?, solver: PlanSolver = .auto, options: PlanOptions = .default,
                           dynamic: Bool = false, ledger: MemoryLedger = .shared) throws -> TrainingBenchmarkResult {
        try run(workload, batchSize: batchSize, steps: steps, warmup: warmup, budget: budget, solver: solver, options: options,
                mode: dynamic ? .dynamic : .planned, ledger: ledger)
    }

    /// As above, the budget kept in `mode`: planned (profiled and planned on the first batch
    /// before the steps), dynamic (``Trainer/dynamicBudget``), or hybrid (a hybrid
    /// ``MemoryBudgetPlanner``: the first warm-up step profiles under the budget as a hard limit
    /// and plans; every step runs the plan under that limit). For dynamic and hybrid a fraction is
    /// of the unconstrained peak, measured first.
    public static func run(_ workload: Workload, batchSize: Int, steps: Int = 5, warmup: Int = 2,
                           budget: MemoryBudget?, solver: PlanSolver = .auto, options: PlanOptions = .default,
                           mode: MemoryBudgetPlanner.Mode, ledger: MemoryLedger = .shared) throws -> TrainingBenchmarkResult {
        let trainer = Trainer(model: workload.model, optimizer: workload.makeOptimizer(), gradientClip: nil, ledger: ledger)
        let nextBatch = workload.batches(batchSize, 7)
        var plan: MemoryPlan? = nil
        var unconstrained: Int? = nil
        func budgetBytes(_ budget: MemoryBudget) throws -> Int {
            switch budget {
            case .bytes(let b): return b
            case .fraction(let f):
                let peak = try trainer.preservingState { try trainer.checkedStep(nextBatch()).peakBytes }
                unconstrained = peak
                return Int(f * Double(peak))
            }
        }
        if let budget, mode == .dynamic {
            trainer.dynamicBudget = DynamicRematerializer(budgetBytes: try budgetBytes(budget))
        } else if let budget, mode == .hybrid {
            trainer.memoryBudget = MemoryBudgetPlanner(.bytes(try budgetBytes(budget)), mode: .hybrid, solver: solver, options: options,
                                                       log: { _ in })
        } else if let budget {
            plan = try trainer.planMemory(budget: budget, batch: nextBatch(), solver: solver, options: options).plan
        }
        let name = workload.name
        var times: [Double] = []
        var last: StepReport? = nil
        var evicted = DynamicRematerializer.Statistics()
        var highest = 0
        for i in 0..<(warmup + steps) {
            if i == warmup + steps - 1 { ProcessMemory.resetPeakResident() }
            let report = try trainer.checkedStep(nextBatch())
            if i >= warmup {
                times.append(report.stepMilliseconds)
                if let d = report.dynamic {
                    evicted.evictions += d.evictions
                    evicted.rematerializations += d.rematerializations
                    evicted.rebuiltTensors += d.rebuiltTensors
                    evicted.recomputeSeconds += d.recomputeSeconds
                }
            }
            highest = max(highest, report.peakBytes)
            last = report
        }
        var result = TrainingBenchmarkResult(model: name, batch: batchSize, threads: Runtime.threads, steps: steps,
                                             median_step_ms: median(times), step_ms: times, peak_bytes: last!.peakBytes,
                                             peak_by_category: last!.peakByCategory)
        result.peak_rss_bytes = ProcessMemory.peakResidentBytes
        if let planner = trainer.memoryBudget, let shape = planner.capturedShapes.first {
            if case .plan(let made)? = planner.decisions[shape] { plan = made }
        }
        if let dtr = trainer.dynamicBudget ?? trainer.memoryBudget?.evictor {
            result.policy = "budget"
            result.budget_mode = trainer.dynamicBudget != nil ? "dynamic" : "hybrid"
            result.budget_bytes = dtr.budgetBytes
            result.unconstrained_peak_bytes = unconstrained
            result.evictions = evicted.evictions
            result.rematerializations = evicted.rematerializations
            result.rebuilt_tensors = evicted.rebuiltTensors
            result.recompute_ms = evicted.recomputeSeconds * 1000
            result.highest_step_peak_bytes = highest
        }
        if let plan {
            result.policy = "budget"
            result.budget_bytes = plan.budgetBytes
            result.predicted_peak_bytes = plan.predictedPeakBytes
            result.solver = plan.solver
            result.recomputed_ops = plan.recomputedCount
            result.unconstrained_peak_bytes = plan.unconstrainedPeakBytes
            result.minimum_peak_bytes = plan.minimumPeakBytes
            result.predicted_step_ratio = plan.predictedOverhead
            result.planning_seconds = plan.planningSeconds
        }
        return result
    }
}

/// `remat bench train --compare`: several policies timed against the first, interleaved.
public struct PolicyComparisonResult: Codable, Sendable {
    public struct Variant: Codable, Sendable {
        public var policy: String
        public var median_step_ms: Double
        /// Median over rounds of this policy's step time over the first policy's in the same round.
        public var ratio_to_first: Double
        public var ratio_min: Double
        public var ratio_max: Double
        public var step_ms: [Double]
        public var peak_bytes: Int
        public var peak_by_category: [String: Int]
        /// The activations category's own high-water mark in the variant's last step.
        public var activation_peak_bytes: Int = 0
    }
    public var model: String
    public var batch: Int
    public var threads: Int
    public var rounds: Int
    public var variants: [Variant]
}

/// A way to run a training step's memory: a checkpointing policy and, optionally, activation
/// compression and offload. Spelled `POLICY` or `POLICY+RULE[+RULE…]` with compression rules
/// (`CODEC[:WHERE]`) and `offload` or `offload:WHERE` (`all+bf16`, `all+offload`,
/// `none+relu-mask+bf16:op=matmul`).
public struct StepVariant: Sendable, Hashable, CustomStringConvertible {
    public var policy: CheckpointPolicy
    public var compression: ActivationCompression?
    /// What to offload (the store is given when the variant is applied).
    public var offload: SavedTensorSelector?
    /// FP8 training of every ``Linear`` (nil: float32).
    public var float8: Float8LinearOptions?
    /// Mixed precision of the forward (``withAutocast(_:_:)``; nil: float32). Set on the trainer
    /// by ``apply(to:trainer:store:)``.
    public var autocast: AutocastPrecision?
    /// The attention computation of the model's attention layers (nil: ``AttentionKernel/default``).
    public var attention: AttentionKernel?
    public init(_ policy: CheckpointPolicy, compression: ActivationCompression? = nil, offload: SavedTensorSelector? = nil,
                float8: Float8LinearOptions? = nil, autocast: AutocastPrecision? = nil, attention: AttentionKernel? = nil) {
        self.policy = policy
        self.compression = compression
        self.offload = offload
        self.float8 = float8
        self.autocast = autocast
        self.attention = attention
    }
    /// `POLICY[+fused-attention|+explicit-attention][+autocast-bf16|+autocast-fp16][+fp8-linear|+fp8-linear-hp][+CODEC…][+offload[:WHERE]]`.
    public var description: String {
        var parts = [policy.description]
        if let attention, attention != .default { parts.append("\(attention)-attention") }
        if let autocast { parts.append("autocast-\(autocast)") }
        if let float8 { parts.append(float8.saveHighPrecision ? "fp8-linear-hp" : "fp8-linear") }
        parts += compression?.rules.map(\.description) ?? []
        if let offload { parts.append(offload == .ops(["checkpoint"]) ? "offload" : "offload:\(offload)") }
        return parts.joined(separator: "+")
    }
    /// Parses ``description``'s spelling.
    public static func parse(_ text: String) throws -> StepVariant {
        let parts = text.split(separator: "+", omittingEmptySubsequences: false).map(String.init)
        var v = StepVariant(try CheckpointPolicy.parse(parts[0]))
        var rules: [String] = []
        for p in parts.dropFirst() {
            if p == "offload" { v.offload = .ops(["checkpoint"]) }
            else if p.hasPrefix("offload:") { v.offload = try SavedTensorSelector.parse(String(p.dropFirst(8))) }
            else if p.hasSuffix("-attention"), let kernel = AttentionKernel(rawValue: String(p.dropLast(10))) { v.attention = kernel }
            else if p == "autocast-bf16" { v.autocast = .bfloat16 }
            else if p == "autocast-fp16" { v.autocast = .float16 }
            else if p == "fp8-linear" { v.float8 = Float8LinearOptions() }
            else if p == "fp8-linear-hp" { v.float8 = Float8LinearOptions(saveHighPrecision: true) }
            else { rules.append(p) }
        }
        if !rules.isEmpty { v.compression = try ActivationCompression.parse(rules) }
        return v
    }
    /// Parses a comma-separated list of variants. A comma inside a variant's selector or
    /// `modules:` policy (`all+bf16:op=linear,matmul`, `modules:blocks.0,blocks.1+bf16`) stays in
    /// it: a piece that does not start with a policy continues the variant before it.
    public static func parseList(_ text: String) throws -> [StepVariant] {
        var specs: [String] = []
        for piece in text.split(separator: ",", omittingEmptySubsequences: false).map(String.init) {
            let head = String(piece.split(separator: "+", maxSplits: 1, omittingEmptySubsequences: false)[0])
            if specs.isEmpty || !head.isEmpty && (try? CheckpointPolicy.parse(head)) != nil { specs.append(piece) }
            else { specs[specs.count - 1] += "," + piece }
        }
        return try specs.map(parse)
    }

    /// Applies the variant to `model` (as ``apply(to:store:)``) and its autocast to `trainer`,
    /// which trains `model`.
    public func apply(to model: Module, trainer: Trainer, store: SpillStore? = nil) throws {
        try apply(to: model, store: store)
        trainer.autocast = autocast
    }

    /// Applies the variant to `model` (replacing its linears' precision, checkpointing,
    /// compression and offload; not the autocast, a property of the trainer's forward);
    /// offload goes to `store`.
    public func apply(to model: Module, store: SpillStore? = nil) throws {
        model.setAttentionKernel(attention ?? .default)
        model.setFloat8Linears(float8)
        try model.applyCheckpointing(policy)
        model.applyActivationCompression(compression)
        if let offload {
            guard let store else { preconditionFailure("StepVariant.apply: \(self) offloads but no spill store was given") }
            model.applyActivationOffload(ActivationOffload(to: store, where: offload))
        } else {
            model.applyActivationOffload(nil)
        }
    }
}

extension TrainingBenchmark {
    /// Times `policies` against the first of them on one model and optimizer, interleaved
    /// (``InterleavedTiming``): one warm-up step under each, then `rounds` rounds of one step each.
    public static func compare(_ workload: Workload, batchSize: Int, policies: [CheckpointPolicy], rounds: Int,
                               ledger: MemoryLedger = .shared) throws -> PolicyComparisonResult {
        try compare(workload, batchSize: batchSize, variants: policies.map { StepVariant($0) }, rounds: rounds, ledger: ledger)
    }

    /// Times `variants` (policies with or without compression) against the first, interleaved.
    public static func compare(_ workload: Workload, batchSize: Int, variants steps: [StepVariant], rounds: Int,
                               spillDirectory: String? = nil, ledger: MemoryLedger = .shared) throws -> PolicyComparisonResult {
        let store = steps.contains { $0.offload != nil } ? try SpillStore(in: spillDirectory) : nil
        defer { store?.close() }
        let trainer = Trainer(model: workload.model, optimizer: workload.makeOptimizer(), gradientClip: nil, ledger: ledger)
        let nextBatch = workload.batches(batchSize, 7)
        for v in steps {
            try v.apply(to: workload.model, trainer: trainer, store: store)
            _ = try trainer.checkedStep(nextBatch())
        }
        let (timing, last) = try InterleavedTiming.steps(variants: steps.count, rounds: rounds,
                                                         apply: { try steps[$0].apply(to: workload.model, trainer: trainer, store: store) },
                                                         step: { try trainer.checkedStep(nextBatch()) })
        try StepVariant(.none).apply(to: workload.model, trainer: trainer)
        let variants = steps.indices.map { v in
            PolicyComparisonResult.Variant(policy: steps[v].description, median_step_ms: timing.medianTime(v),
                                           ratio_to_first: timing.medianRatio(v), ratio_min: timing.ratioRange(v).lowerBound,
                                           ratio_max: timing.ratioRange(v).upperBound, step_ms: timing.times[v],
                                           peak_bytes: last[v].peakBytes, peak_by_category: last[v].peakByCategory,
                                           activation_peak_bytes: last[v].activationPeakBytes)
        }
        return PolicyComparisonResult(model: workload.name, batch: batchSize, threads: Runtime.threads, rounds: rounds, variants: variants)
    }
}
