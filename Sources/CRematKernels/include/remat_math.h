#ifndef REMAT_MATH_H
#define REMAT_MATH_H
// Vectorisable scalar approximations of transcendental functions for the kernels. Each is a
// branch-free inline function that clang vectorises inside loops (a libm call per element costs
// ~25 ns and blocks vectorisation). Accuracy is stated per function and tested against libm.
//
// How they stay vectorisable in every target_clones version (avx512f / avx2,fma / default):
// rounding by the 1.5·2^23 magic number instead of rintf; exponent manipulation through integer
// bit casts; selects written as ternaries; fabs/copysign/sqrt as builtins that need no libm call
// (__builtin_elementwise_sqrt, unlike sqrtf, has no errno side effect). Polynomials are plain
// Horner forms: clang contracts them into FMAs where the clone has FMA, so results may differ in
// the last bit between clones. The stated bounds hold for both forms (measured exhaustively over
// every float in the stated ranges, with and without FMA).
//
// Error units: "ulp" below means 2^-23 relative (the spacing of floats in [1, 2)), i.e. a stated
// relative error of N ulp is |y - f(x)| <= N·2^-23·|f(x)| with f(x) computed in double.
#include <stdint.h>
#include <string.h>

static inline float remat_bits_to_float_(int32_t b) { float f; memcpy(&f, &b, 4); return f; }
static inline int32_t remat_float_to_bits_(float f) { int32_t b; memcpy(&b, &f, 4); return b; }

/// exp(x) for float. Range reduction x = k·ln2 + r (|r| ≤ ln2/2, ln2 split in two parts),
/// Cephes degree-6 polynomial for e^r, then scaling by 2^k through the exponent bits.
/// Max relative error ≤ 1 ulp over [-87.3, 88.7] (measured 0.71); x < -87.33 gives +0 (so
/// exp(-inf) = 0, as softmax masking needs), x > 88.72 gives +inf, NaN gives NaN. exp(±0) = 1.
static inline float remat_exp(float x) {
    const float hi = 88.72283905f, lo = -87.33654475f;
    float xc = x > hi ? hi : (x < lo ? lo : x);
    // Round x·log2(e) to the nearest integer with the 1.5·2^23 trick (no rintf call).
    const float magic = 12582912.0f;
    float k = (xc * 1.44269504088896341f + magic) - magic;
    float r = xc - k * 0.693359375f;
    r = r - k * -2.12194440e-4f;
    float p = 1.9875691500E-4f;
    p = p * r + 1.3981999507E-3f;
    p = p * r + 8.3334519073E-3f;
    p = p * r + 4.1665795894E-2f;
    p = p * r + 1.6666665459E-1f;
    p = p * r + 5.0000001201E-1f;
    p = p * (r * r) + r + 1.0f;
    int32_t ki = (int32_t)k;
    // 2^k as two halves so that k = 128 (x near 88.7) does not overflow the exponent field.
    int32_t k1 = ki >> 1, k2 = ki - k1;
    int32_t b1 = (k1 + 127) << 23, b2 = (k2 + 127) << 23;
    float s1, s2;
    memcpy(&s1, &b1, 4);
    memcpy(&s2, &b2, 4);
    float y = p * s1 * s2;
    y = x < lo ? 0.0f : y;
    y = x > hi ? __builtin_inff() : y;
    return x != x ? x : y;
}

/// Natural logarithm ln(x) for float. x = 2^e·m with m in [√½, √2) read from the exponent bits
/// (subnormal x is first scaled by 2^25, so it is handled exactly like normal x); ln(m) = f − f²/2 +
/// f³·P(f) with f = m − 1 (exact) and the Cephes degree-8 P; e·ln2 added in two parts.
/// Max relative error ≤ 1 ulp over all positive finite floats, subnormals included (measured
/// 0.69), and
/// ln(1) = +0 exactly. Edge cases as IEEE/libm: ln(±0) = −inf, ln(x < 0) = NaN (including −inf),
/// ln(+inf) = +inf, NaN gives NaN.
static inline float remat_log(float x) {
    // Subnormal inputs: scale into the normal range, remember the exponent shift.
    int tiny = x < 1.17549435e-38f;
    float xs = tiny ? x * 33554432.0f : x;             // 2^25
    int32_t bits = remat_float_to_bits_(xs);
    int32_t e = ((bits >> 23) & 0xff) - 126;
    float m = remat_bits_to_float_((bits & 0x007fffff) | 0x3f000000);   // m in [0.5, 1)
    // Move m into [√½, √2): if m < √½ use 2m and e − 1.
    int low = m < 0.707106781186547524f;
    e = low ? e - 1 : e;
    float f = (low ? m + m : m) - 1.0f;                 // exact (Sterbenz)
    float ef = (float)(tiny ? e - 25 : e);
    float z = f * f;
    float p = 7.0376836292E-2f;
    p = p * f - 1.1514610310E-1f;
    p = p * f + 1.1676998740E-1f;
    p = p * f - 1.2420140846E-1f;
    p = p * f + 1.4249322787E-1f;
    p = p * f - 1.6668057665E-1f;
    p = p * f + 2.0000714765E-1f;
    p = p * f - 2.4999993993E-1f;
    p = p * f + 3.3333331174E-1f;
    float y = p * f * z;
    y = y + ef * -2.12194440e-4f;
    y = y - 0.5f * z;
    y = f + y;
    y = y + ef * 0.693359375f;
    y = x == 0.0f ? -__builtin_inff() : y;
    y = x < 0.0f ? __builtin_nanf("") : y;
    y = x == __builtin_inff() ? x : y;
    return x != x ? x : y;
}

/// tanh(x) for float. |x| < 0.625: x + x³·P(x²) (Cephes degree-4 P); otherwise
/// 1 − 2/(e^{2|x|} + 1) with remat_exp; the sign is put back with copysign.
/// Max relative error ≤ 1.5 ulp over all floats (measured 1.19). tanh(±0) = ±0; |x| ≥ 9.011 gives
/// ±1 exactly (so tanh(±20) = tanh(±inf) = ±1); NaN gives NaN. Tiny |x| (subnormal too) gives x.
static inline float remat_tanh(float x) {
    float a = __builtin_fabsf(x);
    float z = a * a;
    float p = -5.70498872745E-3f;
    p = p * z + 2.06390887954E-2f;
    p = p * z - 5.37397155531E-2f;
    p = p * z + 1.33314422036E-1f;
    p = p * z - 3.33332819422E-1f;
    float small = a + a * z * p;
    float e = remat_exp(2.0f * (a < 10.0f ? a : 10.0f));   // e^20 is far past saturation
    float large = 1.0f - 2.0f / (e + 1.0f);
    float y = a < 0.625f ? small : large;
    y = a >= 10.0f ? 1.0f : y;
    y = __builtin_copysignf(y, x);
    return x != x ? x : y;
}

// erf pieces (internal). With t = |x|:
//   t <  0.9: erf(t) = t·P(t²), P of degree 5, minimax for relative error (1.2e-8 before rounding)
//   t >= 0.9: erfc(t) = exp(Q(t) − t²), Q of degree 8 in (t − 2.45), minimax for absolute error
//             (1.2e-8) on [0.9, 4] (taking −t² out keeps Q's coefficients small, so their float
//             rounding does not cost accuracy; erfc's relative error grows like t²·2^-24, the
//             rounding of t²); t is clamped to 4 inside R, and erfc(t) is taken as 0 for t > 4
//             (erfc(4) = 1.5e-8, below half an ulp of 1, so erf rounds to 1 there anyway).
static inline float remat_erf_small_(float t) {
    float s = t * t;
    float p = -6.090354873e-04f;
    p = p * s + 5.011961795e-03f;
    p = p * s - 2.677890845e-02f;
    p = p * s + 1.128214076e-01f;
    p = p * s - 3.761252463e-01f;
    p = p * s + 1.128379107e+00f;
    return t * p;
}

static inline float remat_erfc_tail_(float t) {
    float tc = t < 0.9f ? 0.9f : (t > 4.0f ? 4.0f : t);
    float u = tc - 2.45f;
    float r = 1.602493739e-06f;
    r = r * u - 1.394577703e-05f;
    r = r * u + 8.221463213e-05f;
    r = r * u - 4.441069614e-04f;
    r = r * u + 2.273094608e-03f;
    r = r * u - 1.130221412e-02f;
    r = r * u + 5.776817352e-02f;
    r = r * u - 3.583738506e-01f;
    r = r * u - 1.539039612e+00f;
    r = r - tc * tc;
    float q = remat_exp(r);
    return t > 4.0f ? 0.0f : q;
}

/// erf(x) for float: erf(t) = t·P(t²) for t = |x| < 0.9, else 1 − exp(R(t)) (see above); sign by
/// copysign. Max relative error ≤ 2 ulp over all floats (measured 1.52). erf(±0) = ±0; |x| ≥ 3.92
/// gives ±1 exactly (so erf(±10) = erf(±inf) = ±1); NaN gives NaN.
static inline float remat_erf(float x) {
    float t = __builtin_fabsf(x);
    float y = t < 0.9f ? remat_erf_small_(t) : 1.0f - remat_erfc_tail_(t);
    y = __builtin_copysignf(y, x);
    return x != x ? x : y;
}

/// The standard normal CDF Φ(x) = ½·erfc(−x/√2), for GELU. For x < 0 it is computed from erfc
/// directly (no 1 − erf cancellation), so it keeps its relative accuracy in the lower tail:
/// max relative error ≤ 3 ulp·(1 + x²) for x ≥ −5.656 (the x² factor is the condition number of Φ,
/// from rounding x/√2); Φ(x) = 0 for x < −5.657 (true value < 8e-9); Φ(x) = 1 for x ≥ 5.42.
/// Φ(−inf) = 0, Φ(+inf) = 1, NaN gives NaN.
static inline float remat_normal_cdf(float x) {
    float t = __builtin_fabsf(x) * 0.707106781186547524f;
    float small = remat_erf_small_(t);
    float erfc_t = t < 0.9f ? 1.0f - small : remat_erfc_tail_(t);
    float lower = 0.5f * erfc_t;                                    // Φ(−|x|)
    float upper = t < 0.9f ? 0.5f + 0.5f * small : 1.0f - lower;    // Φ(+|x|)
    float y = x < 0.0f ? lower : upper;
    return x != x ? x : y;
}

#endif
