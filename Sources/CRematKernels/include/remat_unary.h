// Unary / activation kernels: forward and backward over the index range [begin, end) of
// contiguous float32 buffers. Forward: y[i] = f(x[i]). Backward: dx[i] from what the op saves
// (the input x or the output y, named in each signature) and the output gradient dy[i], in one pass.
// Transcendentals use the vectorisable approximations in remat_math.h (accuracy stated there);
// every function is compiled for AVX-512, AVX2+FMA and baseline x86-64 and picked at load time.
// Buffers must not partially overlap (y may equal x; dx may equal dy).
#ifndef REMAT_UNARY_H
#define REMAT_UNARY_H

#ifdef __cplusplus
extern "C" {
#endif

/// y = e^x.                     Backward from y: dx = dy·y.
void remat_exp_f32(const float *x, float *y, long begin, long end);
void remat_exp_backward_f32(const float *y, const float *dy, float *dx, long begin, long end);

/// y = ln x.                    Backward from x: dx = dy / x.
void remat_log_f32(const float *x, float *y, long begin, long end);
void remat_log_backward_f32(const float *x, const float *dy, float *dx, long begin, long end);

/// y = √x (correctly rounded; √−0 = −0, x < 0 gives NaN).   Backward from y: dx = dy / (2y).
void remat_sqrt_f32(const float *x, float *y, long begin, long end);
void remat_sqrt_backward_f32(const float *y, const float *dy, float *dx, long begin, long end);

/// y = 1/√x (two roundings; ±0 gives ±inf, +inf gives 0).   Backward from y: dx = −½·dy·y³.
void remat_rsqrt_f32(const float *x, float *y, long begin, long end);
void remat_rsqrt_backward_f32(const float *y, const float *dy, float *dx, long begin, long end);

/// y = tanh x.                  Backward from y: dx = dy·(1 − y²).
void remat_tanh_f32(const float *x, float *y, long begin, long end);
void remat_tanh_backward_f32(const float *y, const float *dy, float *dx, long begin, long end);

/// y = x^p for a scalar p. p in {0, ±1, 2, 3, −2, ±½} use exact arithmetic (x·x, 1/x, √x, ...);
/// other p use exp(p·ln|x|) with the sign of x put back for odd integer p, NaN for x < 0 and
/// non-integer p. x^0 = 1 for every x (NaN too), as C pow.
/// Backward from x: dx = dy·p·x^(p−1) (computed with the same rules), and dx = 0 for p = 0.
void remat_pow_f32(const float *x, float p, float *y, long begin, long end);
void remat_pow_backward_f32(const float *x, float p, const float *dy, float *dx, long begin, long end);

/// y = max(x, 0), NaN propagates.  Backward from y: dx = (y ≤ 0) ? 0 : dy (y > 0 ⇔ x > 0).
void remat_relu_f32(const float *x, float *y, long begin, long end);
void remat_relu_backward_f32(const float *y, const float *dy, float *dx, long begin, long end);

/// Exact GELU: y = x·Φ(x) with Φ the standard normal CDF (remat_normal_cdf).
/// Backward from x: dx = dy·(Φ(x) + x·φ(x)), φ(x) = e^{−x²/2}/√(2π).
/// gelu(−inf) = −0 and gelu'(±inf) = 0 / 1 (the limits, not the NaN of inf·0).
void remat_gelu_f32(const float *x, float *y, long begin, long end);
void remat_gelu_backward_f32(const float *x, const float *dy, float *dx, long begin, long end);

/// Tanh-approximated GELU (PyTorch approximate="tanh"): y = ½x(1 + tanh u),
/// u = √(2/π)(x + 0.044715x³), computed as x·σ(2u) (the same function; no 1 + tanh cancellation
/// for x < 0). Backward from x: dx = dy·(σ + x·σ(1−σ)·2u'), u' = √(2/π)(1 + 3·0.044715x²).
void remat_gelu_tanh_f32(const float *x, float *y, long begin, long end);
void remat_gelu_tanh_backward_f32(const float *x, const float *dy, float *dx, long begin, long end);

/// SiLU / swish: y = x·σ(x).   Backward from x: dx = dy·(σ + x·σ(1−σ)). silu(−inf) = −0.
void remat_silu_f32(const float *x, float *y, long begin, long end);
void remat_silu_backward_f32(const float *x, const float *dy, float *dx, long begin, long end);

/// Logistic sigmoid: y = σ(x) = 1/(1 + e^{−x}).   Backward from y: dx = dy·y·(1 − y).
void remat_sigmoid_f32(const float *x, float *y, long begin, long end);
void remat_sigmoid_backward_f32(const float *y, const float *dy, float *dx, long begin, long end);

/// y = erf x.                   Backward from x: dx = dy·(2/√π)·e^{−x²}.
void remat_erf_f32(const float *x, float *y, long begin, long end);
void remat_erf_backward_f32(const float *x, const float *dy, float *dx, long begin, long end);

#ifdef __cplusplus
}
#endif

#endif // REMAT_UNARY_H
