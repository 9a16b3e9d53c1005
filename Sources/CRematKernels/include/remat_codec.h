// Saved-tensor codecs: the buffer loops behind RematCore's `Codec` (Sources/RematCore/Codec/).
//
// Element conversions are those of remat_convert.h (round to nearest even, FP8 saturating).
// Scaled FP8 uses power-of-two scales, one per group of `group` consecutive elements (a whole
// tensor is one group): exps[g] = k, the largest integer with amax_g * 2^k <= fmax (amax_g the
// largest finite |x| in the group; k = 0 when the group has no finite non-zero value), clamped
// to [-126, 127]. Encoding stores enc(x * 2^k) and decoding gives dec(q) * 2^-k; both products
// are exact unless the result is a float32 subnormal, so the only rounding is the FP8 one.
// int8 per row: scale_r = amax_r / 127 (float32), q = rne(x * (127 / amax_r)) saturated to
// [-127, 127], decoded as q * scale_r. Bits: bit i of byte i/8 (least significant first).
// All buffers may be unaligned; sources and destinations must not overlap.
#ifndef REMAT_CODEC_H
#define REMAT_CODEC_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Largest finite |x| over src[begin, end) (0 when none), and the power-of-two exponent for it:
// the largest k with amax * 2^k <= fmax (448 for E4M3FN, 57344 for E5M2), clamped to [-126, 127].
float remat_absmax_finite_f32(const float *src, long begin, long end);
int8_t remat_fp8_exponent(float amax, float fmax);

// One scale for elements [begin, end): dst[i] = enc(src[i] * 2^k); returns how many saturated
// (|x * 2^k| above fmax, infinities included; NaN is kept as NaN and not counted).
long remat_f32_to_e4m3fn_pow2(const float *src, uint8_t *dst, long begin, long end, int k);
long remat_f32_to_e5m2_pow2(const float *src, uint8_t *dst, long begin, long end, int k);
void remat_e4m3fn_to_f32_pow2(const uint8_t *src, float *dst, long begin, long end, int k);
void remat_e5m2_to_f32_pow2(const uint8_t *src, float *dst, long begin, long end, int k);

// Groups [gbegin, gend) of `group` elements (the last one may be shorter): each group's exponent
// is computed (written to exps[g]) and the group encoded while it is in cache; returns the
// saturated count. Decoding reads exps.
long remat_f32_to_e4m3fn_grouped(const float *src, uint8_t *dst, int8_t *exps, long n, long group,
                                 long gbegin, long gend);
long remat_f32_to_e5m2_grouped(const float *src, uint8_t *dst, int8_t *exps, long n, long group,
                               long gbegin, long gend);
void remat_e4m3fn_to_f32_grouped(const uint8_t *src, float *dst, const int8_t *exps, long n, long group,
                                 long gbegin, long gend);
void remat_e5m2_to_f32_grouped(const uint8_t *src, float *dst, const int8_t *exps, long n, long group,
                               long gbegin, long gend);

// Rows [rbegin, rend) of a rows x cols matrix as int8 with one float32 scale per row (written to
// scales); returns how many elements were not finite (NaN -> 0, +-inf -> +-127, counted).
long remat_f32_to_i8_rows(const float *src, int8_t *dst, float *scales, long cols, long rbegin, long rend);
void remat_i8_to_f32_rows(const int8_t *src, float *dst, const float *scales, long cols, long rbegin, long rend);

// Float16 / bfloat16 with a count: returns how many finite inputs became infinite (f16 overflow,
// |x| >= 65520; bf16 only beyond 0x1.FEp127 + half an ulp). Elements [begin, end).
long remat_f32_to_f16_counted(const float *src, uint16_t *dst, long begin, long end);
long remat_f32_to_bf16_counted(const float *src, uint16_t *dst, long begin, long end);

// One bit per element, bytes [bbegin, bend) of the packed form (elements 8*bbegin ..):
// positive bits: bit = !(x <= 0) (set for x > 0 and for NaN: what ReLU's backward passes through).
void remat_pack_positive_bits(const float *src, uint8_t *bits, long n, long bbegin, long bend);
// binary bits: bit = (x == 1.0f); only meaningful when every element is +0.0 or 1.0.
void remat_pack_binary_bits(const float *src, uint8_t *bits, long n, long bbegin, long bend);
// Elements of [begin, end) that are neither +0.0 nor 1.0 (bit patterns; -0.0 counts).
long remat_count_not_binary(const float *src, long begin, long end);
// dst[i] = bit i ? 1.0f : 0.0f for elements [begin, end).
void remat_unpack_bits_f32(const uint8_t *bits, float *dst, long begin, long end);

// Lower triangles of square matrices (causal attention probabilities): `x` is matrices of T×T,
// rows numbered r = 0 … (count·T − 1) across them; row r of its matrix keeps its first
// (r mod T) + 1 elements, packed one after another (matrix m starts at m·T(T+1)/2).
// Rows of [rbegin, rend) whose elements above the diagonal are not all +0.0 (bit patterns):
long remat_tri_count_nonzero_upper(const float *x, long T, long rbegin, long rend);
void remat_tri_pack_f32(const float *x, float *packed, long T, long rbegin, long rend);
// As bf16 (round to nearest even); returns the elements that overflowed to infinity.
long remat_tri_pack_bf16(const float *x, uint16_t *packed, long T, long rbegin, long rend);
// The full rows back: the packed elements, +0.0 above the diagonal.
void remat_tri_unpack_f32(const float *packed, float *x, long T, long rbegin, long rend);
void remat_tri_unpack_bf16(const uint16_t *packed, float *x, long T, long rbegin, long rend);

#ifdef __cplusplus
}
#endif

#endif // REMAT_CODEC_H
