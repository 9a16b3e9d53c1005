/// Runs a chain of layers `x_{i+1} = layers[i](x_i)` under a ``ChainSchedule``: the forward sweep
/// records no graph and keeps only the states the schedule stores (through saved-tensor slots, so
/// the ledger counts them as activations); backward follows the schedule's actions, re-running
/// layers from stored states — without recording for `advance`, recording and backpropagating
/// for `reverse` — with names, random streams and stateful layers (``isRecomputing``) handled as
/// in ``checkpoint(_:options:_:)``. Gradients are bitwise equal to running the chain plainly.
///
/// `parameters` are the layers' parameters (so the chain is recorded when only they require grad);
/// their gradients accumulate as usual.
public func checkpointSequential(_ layers: [(Tensor) -> Tensor], _ input: Tensor, schedule: ChainSchedule,
                                 parameters: [Tensor], options: CheckpointOptions = .init()) -> Tensor {
    precondition(schedule.length == layers.count,
                 "checkpointSequential: schedule is for \(schedule.length) layers, chain has \(layers.count)")
    guard !layers.isEmpty else { return input }
    guard isGradEnabled, input.requiresGrad || parameters.contains(where: \.requiresGrad) else {
        return layers.reduce(input) { x, f in f(x) }
    }
    let chain = ChainExecutor(layers: layers, schedule: schedule, options: options)
    let output = chain.sweep(input)
    Autograd.record("checkpoint_sequential", inputs: [input] + parameters, output: output) { _, g in
        [chain.reverse(g, inputRequiresGrad: input.requiresGrad)] + Array(repeating: nil, count: parameters.count)
    }
    return output
}

/// Sequential-chain schedules by name, for policies and the CLI.
public enum SequentialSchedule: Sendable, Hashable, CustomStringConvertible {
    case everyK(Int)
    case sqrt
    case recursive(levels: Int)
    case storeNothing
    case revolve(slots: Int)

    public func schedule(length n: Int) -> ChainSchedule {
        switch self {
        case .everyK(let k): return .segments(length: n, segmentSize: k)
        case .sqrt: return .sqrt(length: n)
        case .recursive(let levels): return .recursive(length: n, levels: levels)
        case .storeNothing: return .storeNothing(length: n)
        case .revolve(let s): return .revolve(length: n, slots: s)
        }
    }

    public var description: String {
        switch self {
        case .everyK(let k): return "every-k:\(k)"
        case .sqrt: return "sqrt"
        case .recursive(let l): return "recursive:\(l)"
        case .storeNothing: return "store-nothing"
        case .revolve(let s): return "revolve:\(s)"
        }
    }
}

/// The state of one chain run: stored states, per-layer names and random streams.
///
/// Ownership: lives in the chain node's backward closure; used on the thread running the graph.
final class ChainExecutor: @unchecked Sendable {
    let layers: [(Tensor) -> Tensor]
    let schedule: ChainSchedule
    let options: CheckpointOptions
    private var stored: [Int: SavedTensor] = [:]
    private var working: (index: Int, tensor: Tensor)? = nil
    private var naming: [NamingState.Snapshot?] = []
    private var streams: [[(RandomGenerator, RNGState)]] = []
    private var currentLayer = 0
    /// Layer evaluations so far (sweep, advances and reverses), for tests.
    private(set) var evaluations = 0
    private let name: String

    init(layers: [(Tensor) -> Tensor], schedule: ChainSchedule, options: CheckpointOptions) {
        self.layers = layers
        self.schedule = schedule
        self.options = options
        name = nextOpName("checkpoint_sequential")
        naming = Array(repeating: nil, count: layers.count)
        streams = Array(repeating: [], count: layers.count)
    }

    /// The forward sweep: runs every layer once without recording and stores what the schedule says.
    func sweep(_ input: Tensor) -> Tensor {
        working = (0, input.detached())
        let observer: @Sendable (RandomGenerator) -> Void = { [unowned self] g in
            if !streams[currentLayer].contains(where: { $0.0 === g }) { streams[currentLayer].append((g, g.state)) }
        }
        AutogradContext.with({ $0.gradEnabled = false; $0.generatorObserver = observer }) {
            for action in schedule.forward { perform(action, recording: false) }
        }
        precondition(working?.index == layers.count, "checkpointSequential: the forward sweep did not reach the chain's output")
        return working!.tensor
    }

    /// Runs the backward actions for the gradient of the chain's output; returns the input's gradient.
    func reverse(_ gradOutput: Tensor, inputRequiresGrad: Bool) -> Tensor? {
        let saved = streams.flatMap { $0 }.map { ($0.0, $0.0.state) }
        defer { for (g, s) in saved { g.state = s } }
        var grads: [Int: Tensor] = [schedule.length: gradOutput]
        for action in schedule.backward {
            if case .reverse(let from, let to) = action {
                let x = state(at: from).detached()
                x.requiresGrad = true
                let y = AutogradContext.with({ $0.gradEnabled = true; $0.isRecomputing = true; $0.savedTensorHooks = [] }) {
                    run(from, to, x)
                }
                guard let g = grads.removeValue(forKey: to) else {
                    preconditionFailure("\(name): no gradient for state \(to) when reversing \(from)..<\(to)")
                }
                if y.requiresGrad { y.backward(gradient: g) }
                let gx = x.grad ?? Tensor.zeros(x.shape, label: "chain_grad")
                gx.storage.setCategory(.temporaries)   // a state's gradient is not a parameter gradient
                grads[from] = gx
                if working?.index == from { working = nil }
            } else {
                AutogradContext.with({ $0.gradEnabled = false; $0.isRecomputing = true }) {
                    perform(action, recording: false)
                }
            }
        }
        for (_, slot) in stored { slot.release() }
        stored = [:]
        working = nil
        return inputRequiresGrad ? grads[0] : nil
    }

    private func state(at i: Int) -> Tensor {
        if let w = working, w.index == i { return w.tensor }
        guard let slot = stored[i] else { preconditionFailure("\(name): state \(i) is neither stored nor the working state") }
        return slot.unpack()
    }

    private func perform(_ action: ChainAction, recording: Bool) {
        switch action {
        case .advance(let from, let to):
            working = (to, run(from, to, state(at: from)))
        case .store(let i):
            guard let w = working, w.index == i else { preconditionFailure("\(name): store \(i) but the working state is at \(working?.index ?? -1)") }
            stored[i] = Autograd.save(w.tensor, name: name, op: "checkpoint_sequential", role: "state\(i)")
        case .free(let i):
            stored.removeValue(forKey: i)?.release()
        case .reverse:
            preconditionFailure("\(name): reverse in the forward sweep")
        }
    }

    /// Runs layers `from..<to` on `x`, replaying names and random streams after the first run.
    private func run(_ from: Int, _ to: Int, _ x: Tensor) -> Tensor {
        var h = x
        for i in from..<to {
            currentLayer = i
            evaluations += 1
            if let snapshot = naming[i] {
                if options.preserveRNGState { for (g, s) in streams[i] { g.state = s } }
                h = withNaming(restoring: snapshot) { layers[i](h) }
            } else {
                naming[i] = AutogradContext.current.naming?.snapshot() ?? NamingState().snapshot()
                h = layers[i](h)
            }
        }
        return h
    }
}
