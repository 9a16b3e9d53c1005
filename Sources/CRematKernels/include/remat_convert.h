// Float32 <-> storage dtype conversions (float16, bfloat16, FP8 E4M3FN, FP8 E5M2, int8).
//
// Encoding (float -> narrow) rounds to nearest, ties to even, everywhere.
//   f16  : IEEE binary16. Overflow (|x| >= 65520) -> +-inf; NaN -> quiet NaN with the sign and
//          the top 9 payload bits kept (like F16C / compiler-rt); subnormals exact-rounded.
//   bf16 : top half of the float, RNE. Overflow -> +-inf; NaN -> quiet NaN (sign + top payload).
//   e4m3fn (OCP FP8, bias 7, no inf, NaN = S.1111.111, max 448, min subnormal 2^-9):
//          SATURATING: |x| > 448 (incl. +-inf) -> +-448 (0x7E/0xFE); NaN -> S.1111.111
//          (0x7F, or 0xFF for negative-signed NaN).
//   e5m2 (OCP FP8, bias 15, IEEE-like, max 57344, min subnormal 2^-16):
//          SATURATING: |x| > 57344 (incl. +-inf) -> +-57344 (0x7B/0xFB); NaN -> S.11111.11 (0x7F/0xFF).
//          (This is NVIDIA's __NV_SATFINITE behaviour. PyTorch's plain .to(float8_e5m2) is
//          NOT saturating - it maps overflow to inf.)
//   i8   : RNE, saturate to [-128, 127]; NaN -> 0.
// Decoding (narrow -> float) is exact for every code. NaN codes decode to a quiet float NaN with
// the code's sign; e5m2/f16 infinities decode to +-inf.
//
// Scaled variants: encode computes convert((float)(src[i] * scale)) (the product is rounded to
// float first, then converted), decode computes decode(src[i]) * scale (one float rounding).
// All buffers may be unaligned; src and dst must not overlap.
#ifndef REMAT_CONVERT_H
#define REMAT_CONVERT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

void remat_f32_to_f16(const float *src, uint16_t *dst, long n);
void remat_f16_to_f32(const uint16_t *src, float *dst, long n);
void remat_f32_to_bf16(const float *src, uint16_t *dst, long n);
void remat_bf16_to_f32(const uint16_t *src, float *dst, long n);
void remat_f32_to_e4m3fn(const float *src, uint8_t *dst, long n);
void remat_e4m3fn_to_f32(const uint8_t *src, float *dst, long n);
void remat_f32_to_e5m2(const float *src, uint8_t *dst, long n);
void remat_e5m2_to_f32(const uint8_t *src, float *dst, long n);
void remat_f32_to_i8(const float *src, int8_t *dst, long n);
void remat_i8_to_f32(const int8_t *src, float *dst, long n);

// Scaled variants (see above). f16/bf16 also have them so codecs can treat all dtypes alike.
void remat_f32_to_f16_scaled(const float *src, uint16_t *dst, long n, float scale);
void remat_f16_to_f32_scaled(const uint16_t *src, float *dst, long n, float scale);
void remat_f32_to_bf16_scaled(const float *src, uint16_t *dst, long n, float scale);
void remat_bf16_to_f32_scaled(const uint16_t *src, float *dst, long n, float scale);
void remat_f32_to_e4m3fn_scaled(const float *src, uint8_t *dst, long n, float scale);
void remat_e4m3fn_to_f32_scaled(const uint8_t *src, float *dst, long n, float scale);
void remat_f32_to_e5m2_scaled(const float *src, uint8_t *dst, long n, float scale);
void remat_e5m2_to_f32_scaled(const uint8_t *src, float *dst, long n, float scale);
void remat_f32_to_i8_scaled(const float *src, int8_t *dst, long n, float scale);
void remat_i8_to_f32_scaled(const int8_t *src, float *dst, long n, float scale);

// Autocast: dst[i] = the format's value nearest src[i] (decode(encode(src[i])), same rules as
// above), elements [begin, end); dst may be src (in place). remat_any_not_* is 1 when an
// element of [begin, end) is not bitwise a value of the format (decode(encode(x)) != x), else 0.
void remat_round_bf16_f32(const float *src, float *dst, long begin, long end);
void remat_round_f16_f32(const float *src, float *dst, long begin, long end);
int remat_any_not_bf16(const float *src, long begin, long end);
int remat_any_not_f16(const float *src, long begin, long end);

// Single-value versions (same rules as the buffer loops; the loops are built from the same code).
uint16_t remat_f32_to_f16_1(float x);
float remat_f16_to_f32_1(uint16_t h);
uint16_t remat_f32_to_bf16_1(float x);
float remat_bf16_to_f32_1(uint16_t h);
uint8_t remat_f32_to_e4m3fn_1(float x);
float remat_e4m3fn_to_f32_1(uint8_t b);
uint8_t remat_f32_to_e5m2_1(float x);
float remat_e5m2_to_f32_1(uint8_t b);
int8_t remat_f32_to_i8_1(float x);

#ifdef __cplusplus
}
#endif

#endif // REMAT_CONVERT_H
