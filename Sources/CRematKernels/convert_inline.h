// The scalar encoders and decoders behind remat_convert.h, shared by convert.c (the dtype buffer
// loops) and codec.c (the saved-tensor codecs) so that both round exactly alike. Private to the
// kernels target (not in include/). Semantics: include/remat_convert.h; implementation notes:
// convert.c.
#ifndef REMAT_CONVERT_INLINE_H
#define REMAT_CONVERT_INLINE_H

#include <stdint.h>
#include <string.h>

#define REMAT_INLINE static inline __attribute__((always_inline))

REMAT_INLINE uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
REMAT_INLINE float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

// ---------------------------------------------------------------------------------------------
// float16 (IEEE binary16: 1.5.10, bias 15)

REMAT_INLINE uint16_t enc_f16(float x) {
    uint32_t w = f2u(x);
    uint32_t sign = (w >> 16) & 0x8000u;
    uint32_t a = w & 0x7FFFFFFFu;
    // Normal range: rebias exponent (127 -> 15) and round the 13 dropped bits to nearest even.
    uint32_t normal = (a - (112u << 23) + 0x0FFFu + ((a >> 13) & 1u)) >> 13;
    // Subnormal range (|x| < 2^-14): 0.5f has ulp 2^-24, the f16 subnormal spacing.
    uint32_t sub = f2u(u2f(a) + 0.5f) - 0x3F000000u;
    uint32_t nan = 0x7E00u | ((a >> 13) & 0x03FFu);  // quiet bit + top payload bits
    uint32_t r = a < 0x38800000u ? sub : normal;      // 0x38800000 = 2^-14
    r = a >= 0x477FF000u ? 0x7C00u : r;               // 0x477FF000 = 65520 = 65504 + ulp/2 (tie -> even = inf)
    r = a > 0x7F800000u ? nan : r;
    return (uint16_t)(r | sign);
}

REMAT_INLINE float dec_f16(uint16_t h) {
    uint32_t sign = ((uint32_t)h & 0x8000u) << 16;
    uint32_t e = ((uint32_t)h >> 10) & 0x1Fu;
    uint32_t m = (uint32_t)h & 0x03FFu;
    uint32_t normal = ((e + 112u) << 23) | (m << 13);
    uint32_t special = 0x7F800000u | (m << 13) | (m ? 0x00400000u : 0u);  // inf, or quiet NaN
    uint32_t sub = f2u((float)(int32_t)m * 0x1p-24f);                      // exact: m < 2^10
    uint32_t r = e == 0 ? sub : normal;
    r = e == 0x1Fu ? special : r;
    return u2f(r | sign);
}

// ---------------------------------------------------------------------------------------------
// bfloat16 (1.8.7): the top half of a float32.

REMAT_INLINE uint16_t enc_bf16(float x) {
    uint32_t w = f2u(x);
    uint32_t rounded = (w + 0x7FFFu + ((w >> 16) & 1u)) >> 16;  // overflow carries into inf
    uint32_t nan = (w >> 16) | 0x0040u;                          // keep sign + top payload, set quiet
    return (uint16_t)((w & 0x7FFFFFFFu) > 0x7F800000u ? nan : rounded);
}

REMAT_INLINE float dec_bf16(uint16_t h) { return u2f((uint32_t)h << 16); }

// ---------------------------------------------------------------------------------------------
// FP8 E4M3FN (1.4.3, bias 7, no infinities, NaN = S.1111.111, max 448 = 0x7E), saturating.

REMAT_INLINE uint8_t enc_e4m3fn(float x) {
    uint32_t w = f2u(x);
    uint32_t sign = (w >> 24) & 0x80u;
    uint32_t a = w & 0x7FFFFFFFu;
    uint32_t c = a > 0x43E00000u ? 0x43E00000u : a;  // saturate (incl. inf) to 448 = 0x43E00000
    uint32_t normal = (c - (120u << 23) + 0x7FFFFu + ((c >> 20) & 1u)) >> 20;
    uint32_t sub = f2u(u2f(c) + 16384.0f) - 0x46800000u;  // ulp(2^14) = 2^-9 = subnormal spacing
    uint32_t r = c < 0x3C800000u ? sub : normal;          // 0x3C800000 = 2^-6, smallest normal
    r = a > 0x7F800000u ? 0x7Fu : r;                      // NaN
    return (uint8_t)(r | sign);
}

REMAT_INLINE float dec_e4m3fn(uint8_t b) {
    uint32_t sign = ((uint32_t)b & 0x80u) << 24;
    uint32_t e = ((uint32_t)b >> 3) & 0x0Fu;
    uint32_t m = (uint32_t)b & 0x07u;
    uint32_t normal = ((e + 120u) << 23) | (m << 20);
    uint32_t sub = f2u((float)(int32_t)m * 0x1p-9f);
    uint32_t r = e == 0 ? sub : normal;
    r = ((uint32_t)b & 0x7Fu) == 0x7Fu ? 0x7FC00000u : r;
    return u2f(r | sign);
}

// ---------------------------------------------------------------------------------------------
// FP8 E5M2 (1.5.2, bias 15, inf = S.11111.00, NaN = S.11111.{01,10,11}, max 57344 = 0x7B), saturating.

REMAT_INLINE uint8_t enc_e5m2(float x) {
    uint32_t w = f2u(x);
    uint32_t sign = (w >> 24) & 0x80u;
    uint32_t a = w & 0x7FFFFFFFu;
    uint32_t c = a > 0x47600000u ? 0x47600000u : a;  // saturate (incl. inf) to 57344 = 0x47600000
    uint32_t normal = (c - (112u << 23) + 0xFFFFFu + ((c >> 21) & 1u)) >> 21;
    uint32_t sub = f2u(u2f(c) + 128.0f) - 0x43000000u;  // ulp(2^7) = 2^-16 = subnormal spacing
    uint32_t r = c < 0x38800000u ? sub : normal;        // 0x38800000 = 2^-14, smallest normal
    r = a > 0x7F800000u ? 0x7Fu : r;                    // NaN
    return (uint8_t)(r | sign);
}

// E5M2 is binary16 with the low 8 mantissa bits dropped.
REMAT_INLINE float dec_e5m2(uint8_t b) { return dec_f16((uint16_t)((uint16_t)b << 8)); }

// ---------------------------------------------------------------------------------------------
// int8: round to nearest even, saturate to [-128, 127], NaN -> 0.

REMAT_INLINE int8_t enc_i8(float x) {
    float c = x != x ? 0.0f : x;
    c = c < -128.0f ? -128.0f : c;
    c = c > 127.0f ? 127.0f : c;
    // |c| <= 128 < 2^22: adding 1.5 * 2^23 leaves ulp 1, so the FPU rounds c to an integer (RNE).
    float r = (c + 12582912.0f) - 12582912.0f;
    return (int8_t)(int32_t)r;
}

REMAT_INLINE float dec_i8(int8_t v) { return (float)v; }

#endif
