import CRematKernels

/// The complete state of a ``RandomGenerator``: restoring it reproduces the same stream bit for bit.
///
/// The stream is Philox4x32-10 keyed by `seed` (key = low, high 32-bit halves of `seed`).
/// Block `b` is `philox(counter: (lo32(b), hi32(b), 0, 0), key:)`, 128 random bits.
/// `offset` is the index of the next unused block (i.e. the number of blocks consumed so far).
public struct RNGState: Hashable, Sendable {
    public var seed: UInt64
    /// Number of 128-bit Philox blocks consumed; the next draw starts at this block index.
    public var offset: UInt64

    public init(seed: UInt64, offset: UInt64 = 0) {
        self.seed = seed
        self.offset = offset
    }
}

/// A counter-based random generator (Philox4x32-10, Salmon et al., SC'11 — the Random123 /
/// cuRAND / PyTorch CUDA generator family).
///
/// Because every output is a pure function of `(seed, block index)`, a recomputation that
/// restores ``state`` to what it was before the original draw (for example to regenerate a
/// dropout mask during rematerialisation) gets a bitwise-identical result.
///
/// Consumption rules (every draw starts at block `state.offset`):
/// - ``fillUniform(_:)``, ``fillNormal(_:mean:std:)`` and ``fillUInt32(_:)`` of `n` elements use
///   block `offset + i / 4`, lane `i % 4` for element `i`, then advance `offset` by `⌈n / 4⌉`.
/// - ``nextUInt64()`` uses one whole block (lanes 0 and 1) and advances `offset` by 1.
/// The block index is a `UInt64` and wraps modulo 2⁶⁴.
///
/// - Important: not thread-safe. A generator has one owner at a time; it is `Sendable` only so it
///   can be handed over between tasks/threads, not shared. Concurrent use needs external locking,
///   or separate generators (different seeds), or explicit `RNGState`s per consumer.
public final class RandomGenerator: @unchecked Sendable, RandomNumberGenerator {
    /// Capture and restore the position exactly (`let s = g.state; …; g.state = s`).
    public var state: RNGState

    /// A generator at block 0 of the stream keyed by `seed`.
    public init(seed: UInt64) {
        state = RNGState(seed: seed, offset: 0)
    }

    /// A generator positioned at `state`.
    public init(state: RNGState) {
        self.state = state
    }

    // MARK: the raw bijection

    /// The Philox4x32-10 block function: 10 rounds of
    /// `(x0, x1, x2, x3) ← (hi(M1·x2) ^ x1 ^ k0, lo(M1·x2), hi(M0·x0) ^ x3 ^ k1, lo(M0·x0))`
    /// with `M0 = 0xD2511F53`, `M1 = 0xCD9E8D57`, the key bumped by
    /// `(0x9E3779B9, 0xBB67AE85)` between rounds. Matches Random123's `philox4x32_R(10, …)`.
    @inlinable
    public static func philox(
        counter: (UInt32, UInt32, UInt32, UInt32), key: (UInt32, UInt32)
    ) -> (UInt32, UInt32, UInt32, UInt32) {
        var (x0, x1, x2, x3) = counter
        var (k0, k1) = key
        for round in 0..<10 {
            if round > 0 {
                k0 &+= 0x9E37_79B9
                k1 &+= 0xBB67_AE85
            }
            let p0 = UInt64(0xD251_1F53) &* UInt64(x0)
            let p1 = UInt64(0xCD9E_8D57) &* UInt64(x2)
            x0 = UInt32(truncatingIfNeeded: p1 >> 32) ^ x1 ^ k0
            x1 = UInt32(truncatingIfNeeded: p1)
            x2 = UInt32(truncatingIfNeeded: p0 >> 32) ^ x3 ^ k1
            x3 = UInt32(truncatingIfNeeded: p0)
        }
        return (x0, x1, x2, x3)
    }

    /// Block `index` of the stream keyed by `seed` (does not touch any generator state).
    @inlinable
    public static func block(_ index: UInt64, seed: UInt64) -> (UInt32, UInt32, UInt32, UInt32) {
        philox(
            counter: (UInt32(truncatingIfNeeded: index), UInt32(truncatingIfNeeded: index >> 32), 0, 0),
            key: (UInt32(truncatingIfNeeded: seed), UInt32(truncatingIfNeeded: seed >> 32)))
    }

    // MARK: draws

    @inline(__always)
    private func advance(elements n: Int) {
        state.offset &+= UInt64((n + 3) / 4)
    }

    /// Fills `out` with uniform floats in `[0, 1)`: element `i` is `(u >> 8) · 2⁻²⁴` where `u` is
    /// lane `i % 4` of block `offset + i / 4` — so every value is a multiple of 2⁻²⁴, each of the
    /// 2²⁴ values equally likely. Consumes `⌈n / 4⌉` blocks.
    public func fillUniform(_ out: UnsafeMutableBufferPointer<Float>) {
        guard let p = out.baseAddress, out.count > 0 else { return }
        remat_philox_fill_uniform(p, out.count, state.seed, state.offset)
        advance(elements: out.count)
    }

    /// Fills `out` with `Normal(mean, std)` samples by Box–Muller on the same block stream:
    /// block `b = offset + j` with lanes `(u0, u1, u2, u3)` gives elements `4j ..< 4j + 4` as
    /// `r·cos θ, r·sin θ` from `(u0, u1)` then from `(u2, u3)`, where `r = √(−2 ln a)`,
    /// `a = ((u0 >> 8) + 1) · 2⁻²⁴ ∈ (0, 1]`, `θ = 2π · (u1 >> 8) · 2⁻²⁴`; the result is
    /// `mean + std · z`. `|z| ≤ √(48 ln 2) ≈ 5.77`. Consumes `⌈n / 4⌉` blocks.
    ///
    /// `ln`, `cos` and `sin` are evaluated with branch-free `Float` polynomials (≈1–2 ulp; the
    /// error in `z` is below `1e-6 · max(1, |z|)`), not libm, so the output for a given state is
    /// bitwise identical on every machine and CPU-feature level.
    public func fillNormal(_ out: UnsafeMutableBufferPointer<Float>, mean: Float, std: Float) {
        guard let p = out.baseAddress, out.count > 0 else { return }
        remat_philox_fill_normal(p, out.count, state.seed, state.offset, mean, std)
        advance(elements: out.count)
    }

    /// Fills `out` with raw 32-bit words: element `i` is lane `i % 4` of block `offset + i / 4`.
    /// Consumes `⌈n / 4⌉` blocks.
    public func fillUInt32(_ out: UnsafeMutableBufferPointer<UInt32>) {
        guard let p = out.baseAddress, out.count > 0 else { return }
        remat_philox_fill_u32(p, out.count, state.seed, state.offset)
        advance(elements: out.count)
    }

    /// 64 random bits: `UInt64(x1) << 32 | x0` of block `offset`. Consumes one whole block
    /// (lanes 2 and 3 are discarded so the state stays just `(seed, offset)`).
    public func nextUInt64() -> UInt64 {
        let (x0, x1, _, _) = Self.block(state.offset, seed: state.seed)
        state.offset &+= 1
        return UInt64(x1) << 32 | UInt64(x0)
    }

    /// `RandomNumberGenerator` conformance (same as ``nextUInt64()``), so the generator works with
    /// `Int.random(in:using:)`, `shuffle(using:)`, etc.
    public func next() -> UInt64 { nextUInt64() }
}
