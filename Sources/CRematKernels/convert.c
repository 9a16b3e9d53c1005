// Float32 <-> storage dtype conversions. Semantics are documented in include/remat_convert.h.
//
// Implementation notes
// - Every scalar conversion is branch-free integer/float code written with selects, so the
//   buffer loops auto-vectorise in each target_clones version.
// - The subnormal paths use the "add a power of two" trick: for |x| below the smallest normal of
//   the target format, |x| + C (C a power of two whose float ulp equals the target's subnormal
//   spacing) is rounded by the FPU with round-to-nearest-even, and the low mantissa bits of the
//   sum are exactly the target's subnormal code. This needs the default rounding mode and no
//   FTZ/DAZ, which is what Swift and C programs run with.
// - FP contraction is disabled so that `x * scale + C` is never fused into an FMA in one clone and
//   not in another: every ISA version produces bitwise-identical results.

#pragma STDC FP_CONTRACT OFF

#include "remat_convert.h"

#include <string.h>

#include "remat_multiversion.h"

#include "convert_inline.h"

// ---------------------------------------------------------------------------------------------
// Buffer loops.

#define REMAT_ENCODE_LOOPS(NAME, T, ENC)                                                       \
    REMAT_MULTIVERSION void remat_f32_to_##NAME(const float *restrict src, T *restrict dst,  \
                                                long n) {                                    \
        for (long i = 0; i < n; i++) dst[i] = ENC(src[i]);                                   \
    }                                                                                        \
    REMAT_MULTIVERSION void remat_f32_to_##NAME##_scaled(const float *restrict src,          \
                                                         T *restrict dst, long n,            \
                                                         float scale) {                      \
        for (long i = 0; i < n; i++) {                                                       \
            float v = src[i] * scale;                                                        \
            dst[i] = ENC(v);                                                                 \
        }                                                                                    \
    }

#define REMAT_DECODE_LOOPS(NAME, T, DEC)                                                       \
    REMAT_MULTIVERSION void remat_##NAME##_to_f32(const T *restrict src, float *restrict dst, \
                                                  long n) {                                  \
        for (long i = 0; i < n; i++) dst[i] = DEC(src[i]);                                   \
    }                                                                                        \
    REMAT_MULTIVERSION void remat_##NAME##_to_f32_scaled(const T *restrict src,              \
                                                         float *restrict dst, long n,        \
                                                         float scale) {                      \
        for (long i = 0; i < n; i++) {                                                       \
            float v = DEC(src[i]);                                                           \
            dst[i] = v * scale;                                                              \
        }                                                                                    \
    }

REMAT_ENCODE_LOOPS(f16, uint16_t, enc_f16)
REMAT_DECODE_LOOPS(f16, uint16_t, dec_f16)
REMAT_ENCODE_LOOPS(bf16, uint16_t, enc_bf16)
REMAT_DECODE_LOOPS(bf16, uint16_t, dec_bf16)
REMAT_ENCODE_LOOPS(e4m3fn, uint8_t, enc_e4m3fn)
REMAT_DECODE_LOOPS(e4m3fn, uint8_t, dec_e4m3fn)
REMAT_ENCODE_LOOPS(e5m2, uint8_t, enc_e5m2)
REMAT_DECODE_LOOPS(e5m2, uint8_t, dec_e5m2)
REMAT_ENCODE_LOOPS(i8, int8_t, enc_i8)
REMAT_DECODE_LOOPS(i8, int8_t, dec_i8)

// Rounding to a narrow format's values in float32 storage (autocast), and the exactness test.

#define REMAT_ROUND_LOOPS(NAME, ENC, DEC)                                                      \
    static inline void round_##NAME##_inplace(float *x, long begin, long end) {               \
        for (long i = begin; i < end; i++) x[i] = DEC(ENC(x[i]));                             \
    }                                                                                        \
    static inline void round_##NAME##_copy(const float *restrict src, float *restrict dst,    \
                                           long begin, long end) {                           \
        for (long i = begin; i < end; i++) dst[i] = DEC(ENC(src[i]));                         \
    }                                                                                        \
    /* In place (src == dst) or into a distinct buffer: each its own loop, so both vectorise */ \
    /* (one loop over possibly-aliasing pointers would fall back to scalar code in place).  */ \
    REMAT_MULTIVERSION void remat_round_##NAME##_f32(const float *src, float *dst, long begin, \
                                                     long end) {                             \
        if (src == dst) round_##NAME##_inplace(dst, begin, end);                              \
        else round_##NAME##_copy(src, dst, begin, end);                                       \
    }                                                                                        \
    /* Blocks of 256 (each a vectorised count): stops at the first block with an inexact   */ \
    /* element, so a tensor that is not the format's costs a block, not a pass.             */ \
    REMAT_MULTIVERSION int remat_any_not_##NAME(const float *restrict src, long begin,         \
                                                long end) {                                  \
        for (long b = begin; b < end; b += 256) {                                            \
            long e = end - b < 256 ? end : b + 256, count = 0;                               \
            for (long i = b; i < e; i++) count += f2u(DEC(ENC(src[i]))) != f2u(src[i]);       \
            if (count) return 1;                                                             \
        }                                                                                    \
        return 0;                                                                            \
    }

REMAT_ROUND_LOOPS(bf16, enc_bf16, dec_bf16)
REMAT_ROUND_LOOPS(f16, enc_f16, dec_f16)

// ---------------------------------------------------------------------------------------------
// Single values.

uint16_t remat_f32_to_f16_1(float x) { return enc_f16(x); }
float remat_f16_to_f32_1(uint16_t h) { return dec_f16(h); }
uint16_t remat_f32_to_bf16_1(float x) { return enc_bf16(x); }
float remat_bf16_to_f32_1(uint16_t h) { return dec_bf16(h); }
uint8_t remat_f32_to_e4m3fn_1(float x) { return enc_e4m3fn(x); }
float remat_e4m3fn_to_f32_1(uint8_t b) { return dec_e4m3fn(b); }
uint8_t remat_f32_to_e5m2_1(float x) { return enc_e5m2(x); }
float remat_e5m2_to_f32_1(uint8_t b) { return dec_e5m2(b); }
int8_t remat_f32_to_i8_1(float x) { return enc_i8(x); }
