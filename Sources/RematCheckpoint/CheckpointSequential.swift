/// Runs a chain of layers `x_{i+1} = layers[i](x_i)` under a ``ChainSchedule``, as nested
/// checkpoint regions (``ChainSchedule/regions``): the states the schedule stores in its forward
/// sweep are the inputs of the outermost regions; a region's recompute advances from its input to
/// the inputs of the regions inside it, which it rebuilds (the schedule's `advance` and `store`);
/// the innermost regions are the schedule's `reverse` actions. So the layers run exactly as often
/// as the schedule counts, with names, random streams and stateful layers (``isRecomputing``)
/// handled as in ``checkpoint(_:options:_:)``, and gradients bitwise equal to running the chain plainly.
///
/// `parameters` are the layers' parameters: the chain runs plainly when neither they nor the
/// input require grad.
public func checkpointSequential(_ layers: [(Tensor) -> Tensor], _ input: Tensor, schedule: ChainSchedule,
                                 parameters: [Tensor], options: CheckpointOptions = .init()) -> Tensor {
    precondition(schedule.length == layers.count,
                 "checkpointSequential: schedule is for \(schedule.length) layers, chain has \(layers.count)")
    guard !layers.isEmpty else { return input }
    guard isGradEnabled, input.requiresGrad || parameters.contains(where: \.requiresGrad) else {
        return layers.reduce(input) { x, f in f(x) }
    }
    var plain = options
    plain.selective = nil
    func run(_ part: ChainSchedule.Part, _ x: Tensor) -> Tensor {
        switch part {
        case .sequence(let parts):
            return parts.reduce(x) { h, p in run(p, h) }
        case .region(let parts):
            return checkpoint(x, options: plain) { h in parts.reduce(h) { y, p in run(p, y) } }
        case .layers(let range):
            return checkpoint(x, options: plain) { h in layers[range].reduce(h) { y, f in f(y) } }
        }
    }
    return run(schedule.regions, input)
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
