import Testing
import RematCore

/// Finite-difference gradient checking shared by every op test.
///
/// The scalar checked is `L = Σ f(inputs) ⊙ w` with fixed random weights `w` (so that a gradient
/// that is wrong only in some positions cannot hide behind a uniform seed), evaluated in Double
/// from float32 outputs. Numeric derivatives are central differences with step `eps`; each
/// analytic gradient element must satisfy `|a − n| ≤ atol + rtol·|n|`.
struct GradCheck {
    var eps: Float = 1e-2
    var atol: Double = 2e-3
    var rtol: Double = 2e-2

    /// Checks the gradient of `f` with respect to every input with `requiresGrad`.
    /// Records a test issue naming the op, the input and the worst element on failure.
    func check(_ op: String, _ inputs: [Tensor], sourceLocation: SourceLocation = #_sourceLocation,
               _ f: ([Tensor]) -> Tensor) {
        let probe = noGrad { f(inputs) }
        let rng = RandomGenerator(seed: 1234)
        let weights = Tensor.uniform(probe.shape, low: -1, high: 1, generator: rng)
        let w = weights.toArray().map(Double.init)

        func loss() -> Double {
            let y = noGrad { f(inputs) }.toArray()
            var s = 0.0
            for i in 0..<y.count { s += Double(y[i]) * w[i] }
            return s
        }

        for x in inputs { x.grad = nil }
        let y = f(inputs)
        (y * weights).summed().backward()

        for (index, x) in inputs.enumerated() where x.requiresGrad {
            guard let analytic = x.grad?.toArray() else {
                Issue.record("\(op): input \(index) got no gradient", sourceLocation: sourceLocation)
                continue
            }
            #expect(analytic.count == x.count, "\(op): gradient of input \(index) has the wrong size", sourceLocation: sourceLocation)
            // Perturb through the storage so that views are checked in place.
            precondition(x.dtype == .float32)
            var worst: (Int, Double, Double)? = nil
            let positions = storagePositions(of: x)
            for (i, pos) in positions.enumerated() {
                let p = x.storage.pointer.assumingMemoryBound(to: Float.self) + pos
                let orig = p.pointee
                p.pointee = orig + eps
                let up = loss()
                p.pointee = orig - eps
                let down = loss()
                p.pointee = orig
                let numeric = (up - down) / (2 * Double(eps))
                let a = Double(analytic[i])
                let err = abs(a - numeric)
                if err > atol + rtol * abs(numeric), worst == nil || err > abs(worst!.1 - worst!.2) {
                    worst = (i, a, numeric)
                }
            }
            if let (i, a, n) = worst {
                Issue.record("\(op): gradient of input \(index) (shape \(x.shape)) element \(i): analytic \(a), numeric \(n)",
                             sourceLocation: sourceLocation)
            }
        }
    }

    /// Storage offsets of every element of `t` in row-major order.
    private func storagePositions(of t: Tensor) -> [Int] {
        var result: [Int] = []
        result.reserveCapacity(t.count)
        let shape = t.shape
        var index = [Int](repeating: 0, count: shape.count)
        for _ in 0..<t.count {
            var pos = t.offset
            for d in 0..<shape.count { pos += index[d] * t.strides[d] }
            result.append(pos)
            var d = shape.count - 1
            while d >= 0 {
                index[d] += 1
                if index[d] < shape[d] { break }
                index[d] = 0
                d -= 1
            }
        }
        return result
    }
}

/// A random float32 leaf tensor for tests, values in [low, high).
func randomTensor(_ shape: [Int], seed: UInt64, low: Float = -1, high: Float = 1, requiresGrad: Bool = true) -> Tensor {
    Tensor.uniform(shape, low: low, high: high, generator: RandomGenerator(seed: seed), requiresGrad: requiresGrad)
}

/// A random tensor whose elements stay at least `margin` away from the kinks in `kinks`
/// (for ReLU, max and similar ops that are not differentiable everywhere).
func randomTensorAvoiding(_ kinks: [Float], margin: Float = 0.05, shape: [Int], seed: UInt64) -> Tensor {
    let t = randomTensor(shape, seed: seed, low: -2, high: 2)
    t.withUnsafeFloats { buf in
        for i in buf.indices {
            for k in kinks where abs(buf[i] - k) < margin {
                buf[i] = buf[i] >= k ? k + margin + 0.01 * Float(i % 7) : k - margin - 0.01 * Float(i % 7)
            }
        }
    }
    return t
}

/// The infos of every tensor saved for backward while `body` runs (through a pass-through hook).
func savedInfos(_ body: () -> Tensor) -> [SavedTensorInfo] {
    var infos: [SavedTensorInfo] = []
    let hooks = SavedTensorHooks(pack: { t, info in infos.append(info); return .tensor(t) },
                                 unpack: { p, _ in guard case .tensor(let t) = p else { fatalError() }; return t })
    _ = withSavedTensorHooks(hooks) { body() }
    return infos
}
