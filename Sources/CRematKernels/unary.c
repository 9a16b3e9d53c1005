// Unary / activation kernels (see remat_unary.h). Plain loops over [begin, end) that clang
// vectorises: no libm calls (transcendentals come from remat_math.h, sqrt from
// __builtin_elementwise_sqrt, which has no errno side effect), selects as ternaries.
// Each function is compiled for AVX-512, AVX2+FMA and baseline x86-64 and picked at load time.
#include "remat_unary.h"
#include "remat_math.h"

#include "remat_multiversion.h"

#define FORWARD_LOOP(EXPR) \
    for (long i = begin; i < end; i++) { float v = x[i]; y[i] = (EXPR); }
// `s` is the saved tensor's element (x or y), `g` the output gradient's.
#define BACKWARD_LOOP(EXPR) \
    for (long i = begin; i < end; i++) { float s = saved[i], g = dy[i]; dx[i] = (EXPR); }

static inline float sqrt_(float v) { return __builtin_elementwise_sqrt(v); }

// MARK: exp, log

REMAT_MULTIVERSION
void remat_exp_f32(const float *x, float *y, long begin, long end) { FORWARD_LOOP(remat_exp(v)) }

REMAT_MULTIVERSION
void remat_exp_backward_f32(const float *saved, const float *dy, float *dx, long begin, long end) {
    BACKWARD_LOOP(g * s)
}

REMAT_MULTIVERSION
void remat_log_f32(const float *x, float *y, long begin, long end) { FORWARD_LOOP(remat_log(v)) }

REMAT_MULTIVERSION
void remat_log_backward_f32(const float *saved, const float *dy, float *dx, long begin, long end) {
    BACKWARD_LOOP(g / s)
}

// MARK: sqrt, rsqrt

REMAT_MULTIVERSION
void remat_sqrt_f32(const float *x, float *y, long begin, long end) { FORWARD_LOOP(sqrt_(v)) }

REMAT_MULTIVERSION
void remat_sqrt_backward_f32(const float *saved, const float *dy, float *dx, long begin, long end) {
    BACKWARD_LOOP(0.5f * g / s)
}

REMAT_MULTIVERSION
void remat_rsqrt_f32(const float *x, float *y, long begin, long end) { FORWARD_LOOP(1.0f / sqrt_(v)) }

REMAT_MULTIVERSION
void remat_rsqrt_backward_f32(const float *saved, const float *dy, float *dx, long begin, long end) {
    BACKWARD_LOOP(-0.5f * g * (s * s * s))
}

// MARK: tanh

REMAT_MULTIVERSION
void remat_tanh_f32(const float *x, float *y, long begin, long end) { FORWARD_LOOP(remat_tanh(v)) }

REMAT_MULTIVERSION
void remat_tanh_backward_f32(const float *saved, const float *dy, float *dx, long begin, long end) {
    BACKWARD_LOOP(g * (1.0f - s * s))
}

// MARK: pow

enum { POW_ZERO, POW_ONE, POW_TWO, POW_THREE, POW_NEG_ONE, POW_NEG_TWO, POW_HALF, POW_NEG_HALF, POW_GENERAL };

static int pow_mode(float p) {
    if (p == 0.0f) return POW_ZERO;
    if (p == 1.0f) return POW_ONE;
    if (p == 2.0f) return POW_TWO;
    if (p == 3.0f) return POW_THREE;
    if (p == -1.0f) return POW_NEG_ONE;
    if (p == -2.0f) return POW_NEG_TWO;
    if (p == 0.5f) return POW_HALF;
    if (p == -0.5f) return POW_NEG_HALF;
    return POW_GENERAL;
}

// |v|^p through exp(p·ln|v|); negative v: sign from odd integer p, NaN for non-integer p.
static inline float pow_general(float v, float p, int p_is_int, int p_is_odd) {
    float r = remat_exp(p * remat_log(__builtin_fabsf(v)));
    r = (v < 0.0f && !p_is_int) ? __builtin_nanf("") : r;
    r = (p_is_odd && __builtin_signbit(v)) ? -r : r;
    return r;
}

// out[i] = x[i]^p, times scale·dy[i] when dy is given (backward).
#define POW_LOOP(EXPR) \
    if (dy) { for (long i = begin; i < end; i++) { float v = x[i]; out[i] = scale * dy[i] * (EXPR); } } \
    else { for (long i = begin; i < end; i++) { float v = x[i]; out[i] = (EXPR); } }

REMAT_MULTIVERSION
static void pow_loop(const float *x, float p, const float *dy, float scale, float *out, long begin, long end) {
    // Integer and odd-integer tests on p once, outside the loop (|p| ≥ 2^24 is an even integer).
    float ap = __builtin_fabsf(p);
    int p_is_int = p == p && (ap >= 16777216.0f || (float)(long)p == p);
    int p_is_odd = ap < 16777216.0f && p_is_int && ((long)p & 1);
    switch (pow_mode(p)) {
    case POW_ZERO: POW_LOOP(1.0f) break;
    case POW_ONE: POW_LOOP(v) break;
    case POW_TWO: POW_LOOP(v * v) break;
    case POW_THREE: POW_LOOP(v * v * v) break;
    case POW_NEG_ONE: POW_LOOP(1.0f / v) break;
    case POW_NEG_TWO: POW_LOOP(1.0f / (v * v)) break;
    case POW_HALF: POW_LOOP(sqrt_(v) + 0.0f) break;          // + 0 turns √−0 = −0 into +0, as pow
    case POW_NEG_HALF: POW_LOOP(1.0f / sqrt_(v)) break;
    default: POW_LOOP(pow_general(v, p, p_is_int, p_is_odd)) break;
    }
}

void remat_pow_f32(const float *x, float p, float *y, long begin, long end) {
    pow_loop(x, p, 0, 1.0f, y, begin, end);
}

void remat_pow_backward_f32(const float *x, float p, const float *dy, float *dx, long begin, long end) {
    if (p == 0.0f) {
        for (long i = begin; i < end; i++) dx[i] = 0.0f;
        return;
    }
    pow_loop(x, p - 1.0f, dy, p, dx, begin, end);
}

// MARK: relu

REMAT_MULTIVERSION
void remat_relu_f32(const float *x, float *y, long begin, long end) {
    FORWARD_LOOP((v > 0.0f || v != v) ? v : 0.0f)
}

REMAT_MULTIVERSION
void remat_relu_backward_f32(const float *saved, const float *dy, float *dx, long begin, long end) {
    BACKWARD_LOOP(s <= 0.0f ? 0.0f : g)
}

// MARK: sigmoid family

// σ(z) = 1/(1 + e^{−z}) and σ(1 − σ) = σ·(e^{−z}·σ), without the 1 − σ cancellation; 0 where
// e^{−z} overflows (σ = 0, where inf·0 would give NaN).
static inline float sigmoid_(float z) { return 1.0f / (1.0f + remat_exp(-z)); }
static inline float sigmoid_slope_(float z, float *sig) {
    float e = remat_exp(-z);
    float s = 1.0f / (1.0f + e);
    *sig = s;
    return s == 0.0f ? 0.0f : s * (e * s);
}

REMAT_MULTIVERSION
void remat_sigmoid_f32(const float *x, float *y, long begin, long end) { FORWARD_LOOP(sigmoid_(v)) }

REMAT_MULTIVERSION
void remat_sigmoid_backward_f32(const float *saved, const float *dy, float *dx, long begin, long end) {
    BACKWARD_LOOP(g * (s * (1.0f - s)))
}

// x·σ with the limit −0 at x = −inf (σ = 0 there).
static inline float times_gate_(float v, float gate) { return gate == 0.0f ? -0.0f : v * gate; }

REMAT_MULTIVERSION
void remat_silu_f32(const float *x, float *y, long begin, long end) {
    FORWARD_LOOP(times_gate_(v, sigmoid_(v)))
}

REMAT_MULTIVERSION
void remat_silu_backward_f32(const float *saved, const float *dy, float *dx, long begin, long end) {
    for (long i = begin; i < end; i++) {
        float v = saved[i], sig;
        float slope = sigmoid_slope_(v, &sig);
        float term = slope == 0.0f ? 0.0f : v * slope;     // 0 (not inf·0) at v = ±inf
        dx[i] = dy[i] * (sig + term);
    }
}

// MARK: GELU

REMAT_MULTIVERSION
void remat_gelu_f32(const float *x, float *y, long begin, long end) {
    FORWARD_LOOP(times_gate_(v, remat_normal_cdf(v)))
}

REMAT_MULTIVERSION
void remat_gelu_backward_f32(const float *saved, const float *dy, float *dx, long begin, long end) {
    const float inv_sqrt_2pi = 0.398942280401432678f;
    for (long i = begin; i < end; i++) {
        float v = saved[i];
        float pdf = inv_sqrt_2pi * remat_exp(-0.5f * v * v);
        float term = pdf == 0.0f ? 0.0f : v * pdf;
        dx[i] = dy[i] * (remat_normal_cdf(v) + term);
    }
}

// 2u = x·(k1 + k3·x²) with k1 = 2√(2/π), k3 = k1·0.044715; d(2u)/dx = k1 + 3·k3·x².
#define GELU_K1 1.59576912160573071f
#define GELU_K3 0.0713548162726008f

REMAT_MULTIVERSION
void remat_gelu_tanh_f32(const float *x, float *y, long begin, long end) {
    FORWARD_LOOP(times_gate_(v, sigmoid_(v * (GELU_K1 + GELU_K3 * v * v))))
}

REMAT_MULTIVERSION
void remat_gelu_tanh_backward_f32(const float *saved, const float *dy, float *dx, long begin, long end) {
    for (long i = begin; i < end; i++) {
        float v = saved[i], sig;
        float v2 = v * v;
        float slope = sigmoid_slope_(v * (GELU_K1 + GELU_K3 * v2), &sig);
        float term = slope == 0.0f ? 0.0f : v * slope * (GELU_K1 + 3.0f * GELU_K3 * v2);
        dx[i] = dy[i] * (sig + term);
    }
}

// MARK: erf

REMAT_MULTIVERSION
void remat_erf_f32(const float *x, float *y, long begin, long end) { FORWARD_LOOP(remat_erf(v)) }

REMAT_MULTIVERSION
void remat_erf_backward_f32(const float *saved, const float *dy, float *dx, long begin, long end) {
    const float two_over_sqrt_pi = 1.12837916709551257f;
    BACKWARD_LOOP(g * two_over_sqrt_pi * remat_exp(-s * s))
}
