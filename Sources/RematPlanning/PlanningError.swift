import Synchronization

/// Errors of capture, planning and plan application; each names what is wrong.
public enum PlanningError: Error, CustomStringConvertible, Equatable {
    case noBlocks(model: String)
    case nondeterministicStep(detail: String)
    case budgetBelowMinimum(budget: Int, minimum: Int, breakdown: String)
    case unknownNames(plan: String, names: [String])
    case stalePlan(expected: String, found: String)
    case badBudget(String, reason: String)
    case badStats(file: String, reason: String)
    case unknownSolver(String)
    case planExceedsBudget(predicted: Int, budget: Int)
    case badPlanFile(path: String, reason: String)
    case solverNotApplicable(solver: String, reason: String)
    case captureOverBudget(budget: Int, pass: String, allocationsOver: Int, largestExcess: Int)

    public var description: String {
        switch self {
        case .noBlocks(let m):
            return "model \(m) has no block modules (`blocks.N`, `layerK.N`) to plan over"
        case .nondeterministicStep(let d):
            return "step capture: the forward differs between two runs (\(d)); planning needs a deterministic step"
        case .budgetBelowMinimum(let b, let m, let breakdown):
            return "memory budget \(formatBytes(b)) is below the minimum feasible \(formatBytes(m)) (\(breakdown))"
        case .unknownNames(let p, let names):
            return "plan \(p) names ops this step does not have: \(names.prefix(5).joined(separator: ", "))\(names.count > 5 ? ", …" : "")"
        case .stalePlan(let e, let f):
            return "stale plan: it was made for \(e) but the step is \(f); re-plan for this shape"
        case .badBudget(let s, let reason):
            return "bad memory budget '\(s)': \(reason); use bytes with a unit (300MiB, 1.5GiB, 500MB) or a fraction of the unconstrained peak (0.5)"
        case .badStats(let f, let r):
            return "stats file \(f): \(r)"
        case .planExceedsBudget(let p, let b):
            return "the plan does not fit this step: predicted peak \(formatBytes(p)) over its budget \(formatBytes(b)); re-plan"
        case .solverNotApplicable(let solver, let reason):
            return "solver \(solver) cannot plan this step: \(reason)"
        case .badPlanFile(let path, let reason):
            return "plan file \(path): \(reason) (write one with remat plan --json)"
        case .captureOverBudget(let b, let pass, let n, let excess):
            return "step capture under the budget \(formatBytes(b)): the \(pass) went over it in \(n) allocation\(n == 1 ? "" : "s") (by up to \(formatBytes(excess))) with every evictable tensor evicted"
        case .unknownSolver(let s):
            return "unknown solver '\(s)'; use auto, greedy, knapsack, local, exhaustive"
        }
    }
}

/// Bytes as MiB with one decimal ("312.5 MiB").
public func formatBytes(_ b: Int) -> String {
    let mib = Double(b) / 1_048_576
    return mib >= 100 ? String(format: "%.0f MiB", mib) : String(format: "%.1f MiB", mib)
}
