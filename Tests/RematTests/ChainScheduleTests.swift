import Testing
import Remat

@Suite struct ChainScheduleTests {
    /// Exhaustive search (Dijkstra over game states) for the fewest forward steps to reverse a chain
    /// of `n` steps with `slots` slots including the input's: independent of the Revolve recursion.
    static func bruteForce(_ n: Int, _ slots: Int) -> Int {
        struct State: Hashable { var next: Int; var stored: [Int]; var cursor: Int }   // next: steps 0..<next left to reverse
        var best: [State: Int] = [:]
        var frontier: [(Int, State)] = [(0, State(next: n, stored: [0], cursor: 0))]
        while !frontier.isEmpty {
            frontier.sort { $0.0 > $1.0 }
            let (cost, s) = frontier.removeLast()
            if s.next == 0 { return cost }
            if let b = best[s], b <= cost { continue }
            best[s] = cost
            var moves: [(Int, State)] = []
            if s.cursor == s.next - 1 {   // reverse step next-1 from the working state
                var t = s; t.next -= 1; t.stored = s.stored.filter { $0 < Swift.max(t.next, 1) }; t.cursor = t.stored.max()!
                moves.append((cost, t))
            }
            if s.cursor + 1 < s.next { var t = s; t.cursor += 1; moves.append((cost + 1, t)) }
            if !s.stored.contains(s.cursor) && s.stored.count < slots {
                var t = s; t.stored = (s.stored + [s.cursor]).sorted(); moves.append((cost, t))
            }
            for c in s.stored where c != s.cursor { var t = s; t.cursor = c; moves.append((cost, t)) }
            for c in s.stored where c != 0 && c != s.cursor { var t = s; t.stored.removeAll { $0 == c }; moves.append((cost, t)) }
            frontier += moves
        }
        return -1
    }

    @Test(arguments: [(1, 1), (2, 1), (5, 1), (4, 2), (6, 2), (7, 2), (6, 3), (7, 3), (8, 3), (7, 4)])
    func revolveForwardCountsEqualExhaustiveSearch(n: Int, slots: Int) {
        let schedule = ChainSchedule.revolve(length: n, slots: slots)
        #expect(schedule.forwardSteps == Self.bruteForce(n, slots))
        #expect(schedule.peakSlots <= slots)
    }

    @Test func revolveMatchesTheBinomialClosedForm() {
        // Griewank: with s slots (the input's included), β(s, r) = C(s + r, s), r the repetition
        // number with β(s, r − 1) < n ≤ β(s, r): t(n, s) = r·n − β(s + 1, r − 1).
        func binomial(_ a: Int, _ b: Int) -> Int { b < 0 || b > a ? 0 : (0..<b).reduce(1) { $0 * (a - $1) / ($1 + 1) } }
        func beta(_ s: Int, _ r: Int) -> Int { binomial(s + r, s) }
        for s in 1...4 {
            for n in 2...30 {
                var r = 1
                while beta(s, r) < n { r += 1 }
                let closed = r * n - beta(s + 1, r - 1)
                #expect(ChainSchedule.revolve(length: n, slots: s).forwardSteps == closed, "n \(n) slots \(s)")
            }
        }
    }

    /// The closed form answers what the schedule counts, and chains of any length at once.
    @Test func closedFormCountsTheScheduleAndScales() {
        for n in 1...60 {
            for s in 1...8 {
                #expect(Revolve.forwardSteps(length: n, slots: s) == ChainSchedule.revolve(length: n, slots: s).forwardSteps, "n \(n) slots \(s)")
            }
        }
        // 10⁹ layers, 2 slots: r = 44720 (β(2, r) = (r+1)(r+2)/2 ≥ 10⁹ first there), F = r·n − C(r+2, 3).
        let r = 44720, n = 1_000_000_000
        #expect(Revolve.forwardSteps(length: n, slots: 2) == r * n - (r + 2) * (r + 1) * r / 6)
        #expect(Revolve.forwardSteps(length: n, slots: 1) == n * (n - 1) / 2)
        #expect(Revolve.forwardSteps(length: n, slots: n) == n - 1)
        #expect(Revolve.forwardSteps(length: 1 << 40, slots: 1) == nil, "does not fit 64 bits")
        let start = monotonicSeconds()
        for s in [1, 2, 3, 10, 1000, 1 << 30] { _ = Revolve.forwardSteps(length: 1 << 30, slots: s) }
        #expect(monotonicSeconds() - start < 0.5, "closed-form counts must not scale with the length")
    }

    /// Executing schedules on a counting chain of layers that save a tensor each (tanh keeps its
    /// output): the layer evaluations are the sweep, the schedule's advances and one re-run per
    /// layer in reverse actions; and the gradient is bitwise that of the plain chain.
    @Test(arguments: [SequentialSchedule.everyK(2), .sqrt, .recursive(levels: 3), .storeNothing, .revolve(slots: 3)])
    func executedScheduleEvaluatesAsCountedAndGivesTheGradient(schedule: SequentialSchedule) {
        let n = 9
        var evaluations = 0
        let layers: [(Tensor) -> Tensor] = (0..<n).map { i in { x in evaluations += 1; return tanh(x) * (0.5 + 0.1 * Float(i)) } }
        let x = Tensor([0.3, -0.7], shape: [2], requiresGrad: true)
        layers.reduce(x) { h, f in f(h) }.summed().backward()
        let expected = x.grad!.toArray().map(\.bitPattern)
        x.grad = nil
        evaluations = 0
        let plan = schedule.schedule(length: n)
        let y = checkpointSequential(layers, x, schedule: plan, parameters: [])
        y.summed().backward()
        #expect(evaluations == plan.sweepSteps + plan.forwardSteps + n)
        #expect(x.grad!.toArray().map(\.bitPattern) == expected)
    }

    /// Layers that save nothing for backward (a scalar product) have nothing to recompute: the
    /// reversals and advances never run, whatever the schedule.
    @Test(arguments: [SequentialSchedule.everyK(2), .storeNothing, .revolve(slots: 3)])
    func layersThatSaveNothingAreNotRerun(schedule: SequentialSchedule) {
        let n = 9
        var evaluations = 0
        let layers: [(Tensor) -> Tensor] = (0..<n).map { i in { x in evaluations += 1; return x * Float(i + 2) } }
        let x = Tensor([1, -1], shape: [2], requiresGrad: true)
        let y = checkpointSequential(layers, x, schedule: schedule.schedule(length: n), parameters: [])
        y.summed().backward()
        #expect(evaluations == n)
        let expected = Float((2...(n + 1)).reduce(1, *))
        #expect(x.grad!.toArray() == [expected, expected])
    }
}

@Suite struct OptimalChainTests {
    /// Equal layers, unit states, no activation bytes, budget = slots − 1: the Revolve counts.
    @Test func equalLayersReproduceRevolve() throws {
        let unit = ChainLayerCost(forwardTime: 1, backwardTime: 0, inputBytes: 1, activationBytes: 0)
        for n in 1...14 {
            for slots in 1...4 {
                let plan = try #require(ChainSchedule.optimal(layers: Array(repeating: unit, count: n), memoryBudget: slots - 1))
                #expect(plan.forwardSteps == ChainSchedule.revolve(length: n, slots: slots).forwardSteps, "n \(n) slots \(slots)")
                #expect(plan.peakSlots <= slots)
            }
        }
    }

    /// Unequal layers: the schedule fits the budget when simulated, is never slower than Revolve
    /// with as many unit slots, and stores the input of the layer that is expensive to reach.
    @Test func unequalLayersTradeTimeForMemory() throws {
        // Layer 2 is very slow; storing the state after it saves recomputing it.
        let layers = [1.0, 1.0, 50.0, 1.0, 1.0, 1.0].map {
            ChainLayerCost(forwardTime: $0, backwardTime: 2 * $0, inputBytes: 4, activationBytes: 2)
        }
        let plan = try #require(ChainSchedule.optimal(layers: layers, memoryBudget: 6))
        // Simulate memory: stored states (besides the input) + the reversed layer's activations.
        var stored: [Int: Int] = [:], worst = 0
        for a in plan.backward {
            switch a {
            case .store(let k): stored[k] = layers[k].inputBytes
            case .free(let k): stored[k] = nil
            case .reverse(let f, _): worst = max(worst, stored.values.reduce(0, +) + layers[f].activationBytes)
            case .advance: break
            }
        }
        #expect(worst <= 6)
        #expect(plan.backward.contains(.store(3)), "the state after the slow layer should be stored: \(plan.backward)")
        let revolve = ChainSchedule.revolve(length: 6, slots: 2)   // one stored state besides the input
        #expect(plan.reversalTime(layers) <= revolve.reversalTime(layers))
        #expect(ChainSchedule.optimal(layers: layers, memoryBudget: 1) == nil, "activations alone need 2 bytes")
    }
}
