/// What one layer of a chain costs: the numbers the dynamic program of
/// ``ChainSchedule/optimal(layers:memoryBudget:quantum:)`` trades off.
public struct ChainLayerCost: Sendable, Hashable, Codable {
    /// Time of the layer's forward (any unit; the same for all layers).
    public var forwardTime: Double
    /// Time of its backward.
    public var backwardTime: Double
    /// Bytes of the layer's input state (what storing it costs).
    public var inputBytes: Int
    /// Bytes the layer saves for backward when run recording (its activations).
    public var activationBytes: Int

    public init(forwardTime: Double, backwardTime: Double, inputBytes: Int, activationBytes: Int) {
        self.forwardTime = forwardTime
        self.backwardTime = backwardTime
        self.inputBytes = inputBytes
        self.activationBytes = activationBytes
    }
}

extension ChainSchedule {
    /// The fastest schedule (one layer reversed at a time) whose stored states plus the activations
    /// of the layer being reversed stay within `memoryBudget` bytes besides the chain's input — an
    /// exact dynamic program over (segment, memory) for layers that differ in time and size, after
    /// Rotor / Beaumont et al. Memory is counted in units of `quantum` bytes (rounded up).
    ///
    /// `C(i, j, m)`, the least time to reverse layers `i..<j` from stored state `i` with `m` units:
    /// - one layer: `f_i + b_i` if its activations fit in `m`;
    /// - else the best of: advance a working state to `j−1` without storing, reverse it, then
    ///   `C(i, j−1, m)`; or advance to `k`, store state `k`, `C(k, j, m − s_k) + C(i, k, m)`.
    /// With equal layers (f = 1, b = 0, s = 1, a = 0) and `m = slots − 1` this is the Revolve
    /// recursion. Returns nil when no schedule fits.
    public static func optimal(layers: [ChainLayerCost], memoryBudget: Int, quantum: Int = 1) -> ChainSchedule? {
        precondition(!layers.isEmpty && quantum >= 1, "optimal: needs layers and a positive quantum")
        var solver = OptimalChainSolver(layers: layers, quantum: quantum)
        let m = memoryBudget / quantum
        guard solver.cost(0, layers.count, m) < .infinity else { return nil }
        var actions: [ChainAction] = []
        solver.emit(0, layers.count, m, &actions)
        return ChainSchedule(length: layers.count, forward: [.store(0), .advance(from: 0, to: layers.count)],
                             backward: actions + [.free(0)])
    }

    /// Time of the backward actions under `layers` (advances cost their forwards; a reverse of
    /// layer i costs f_i + b_i).
    public func reversalTime(_ layers: [ChainLayerCost]) -> Double {
        backward.reduce(0) { t, a in
            switch a {
            case .advance(let f, let to): return t + layers[f..<to].reduce(0) { $0 + $1.forwardTime }
            case .reverse(let f, let to): return t + layers[f..<to].reduce(0) { $0 + $1.forwardTime + $1.backwardTime }
            default: return t
            }
        }
    }
}

struct OptimalChainSolver {
    let layers: [ChainLayerCost]
    let quantum: Int
    private struct Key: Hashable { let i, j, m: Int }
    private var memo: [Key: (Double, Int)] = [:]   // (cost, choice: −1 none, −2 working state, k ≥ 0 store at k)
    private let prefix: [Double]

    init(layers: [ChainLayerCost], quantum: Int) {
        self.layers = layers
        self.quantum = quantum
        var p = [0.0]
        for l in layers { p.append(p.last! + l.forwardTime) }
        prefix = p
    }

    private func units(_ bytes: Int) -> Int { (bytes + quantum - 1) / quantum }
    private func advance(_ a: Int, _ b: Int) -> Double { prefix[b] - prefix[a] }

    mutating func cost(_ i: Int, _ j: Int, _ m: Int) -> Double { solve(i, j, m).0 }

    private mutating func solve(_ i: Int, _ j: Int, _ m: Int) -> (Double, Int) {
        if m < 0 { return (.infinity, -1) }
        let key = Key(i: i, j: j, m: m)
        if let v = memo[key] { return v }
        var best: (Double, Int) = (.infinity, -1)
        if j == i + 1 {
            let l = layers[i]
            if units(l.activationBytes) <= m { best = (l.forwardTime + l.backwardTime, -1) }
        } else {
            let last = layers[j - 1]
            if units(last.activationBytes) <= m {
                let c = advance(i, j - 1) + last.forwardTime + last.backwardTime + solve(i, j - 1, m).0
                if c < best.0 { best = (c, -2) }
            }
            for k in (i + 1)..<j {
                let s = units(layers[k].inputBytes)
                guard s <= m else { continue }
                let c = advance(i, k) + solve(k, j, m - s).0 + solve(i, k, m).0
                if c < best.0 { best = (c, k) }
            }
        }
        memo[key] = best
        return best
    }

    mutating func emit(_ i: Int, _ j: Int, _ m: Int, _ out: inout [ChainAction]) {
        let (_, choice) = solve(i, j, m)
        if j == i + 1 {
            out.append(.reverse(from: i, to: j))
        } else if choice == -2 {
            if j - 1 > i { out.append(.advance(from: i, to: j - 1)) }
            out.append(.reverse(from: j - 1, to: j))
            emit(i, j - 1, m, &out)
        } else {
            let k = choice
            out.append(.advance(from: i, to: k))
            out.append(.store(k))
            emit(k, j, m - units(layers[k].inputBytes), &out)
            out.append(.free(k))
            emit(i, k, m, &out)
        }
    }
}
