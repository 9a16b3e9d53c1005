// Saved-tensor codec loops. Semantics: include/remat_codec.h. Built on the scalar conversions of
// convert_inline.h (branch-free, so the loops vectorise in every target_clones version); FP
// contraction off, as in convert.c, so every ISA version gives the same bits.

#pragma STDC FP_CONTRACT OFF

#include "remat_codec.h"

#include <math.h>

#include "convert_inline.h"
#include "remat_convert.h"
#include "remat_multiversion.h"

// 2^k for k in [-149, 127], exactly (subnormal powers included).
static inline float pow2f(int k) {
    if (k >= -126) return u2f((uint32_t)(k + 127) << 23);
    return u2f(1u << (k + 149));
}

// Loops that count (saturations, overflows) keep a 32-bit count per block of 2^20 elements, so
// the count vectorises as wide as the floats do; BODY adds to `count` and writes element i.
#define REMAT_COUNTED_LOOP(BEGIN, END, TOTAL, BODY)                                               \
    for (long b_ = (BEGIN); b_ < (END); b_ += 1 << 20) {                                          \
        long stop_ = (END) - b_ < (1 << 20) ? (END) : b_ + (1 << 20);                             \
        int32_t count = 0;                                                                        \
        for (long i = b_; i < stop_; i++) { BODY }                                                \
        (TOTAL) += count;                                                                         \
    }

// Over the bit patterns: for non-negative floats the integer order is the numeric order, and an
// integer max reduction vectorises where a float one (NaN rules) does not.
REMAT_MULTIVERSION static float absmax_run(const float *restrict src, long n) {
    uint32_t m = 0;
    for (long i = 0; i < n; i++) {
        uint32_t a = f2u(src[i]) & 0x7FFFFFFFu;
        a = a >= 0x7F800000u ? 0u : a;  // finite values only
        m = a > m ? a : m;
    }
    return u2f(m);
}

float remat_absmax_finite_f32(const float *src, long begin, long end) { return absmax_run(src + begin, end - begin); }

int8_t remat_fp8_exponent(float amax, float fmax) {
    if (!(amax > 0.0f) || amax == INFINITY) return 0;
    // amax = ma * 2^ea and fmax = mf * 2^ef with ma, mf in [0.5, 1).
    int ea, ef;
    float ma = frexpf(amax, &ea), mf = frexpf(fmax, &ef);
    int k = ef - ea - (ma > mf ? 1 : 0);
    if (k > 127) k = 127;
    if (k < -126) k = -126;
    return (int8_t)k;
}

#define REMAT_FP8_CODEC(NAME, ENC, DEC, FMAX)                                                      \
    REMAT_MULTIVERSION static long NAME##_encode_run(const float *restrict src,                    \
                                                     uint8_t *restrict dst, long len, float s) {   \
        long saturated = 0;                                                                        \
        REMAT_COUNTED_LOOP(0, len, saturated, {                                                    \
            float v = src[i] * s;                                                                  \
            count += fabsf(v) > (FMAX);                                                            \
            dst[i] = ENC(v);                                                                       \
        })                                                                                         \
        return saturated;                                                                          \
    }                                                                                              \
    REMAT_MULTIVERSION static void NAME##_decode_run(const uint8_t *restrict src,                  \
                                                     float *restrict dst, long len, float s) {     \
        for (long i = 0; i < len; i++) {                                                           \
            float v = DEC(src[i]);                                                                 \
            dst[i] = v * s;                                                                        \
        }                                                                                          \
    }                                                                                              \
    long remat_f32_to_##NAME##_pow2(const float *src, uint8_t *dst, long begin, long end, int k) { \
        return NAME##_encode_run(src + begin, dst + begin, end - begin, pow2f(k));                 \
    }                                                                                              \
    void remat_##NAME##_to_f32_pow2(const uint8_t *src, float *dst, long begin, long end, int k) { \
        NAME##_decode_run(src + begin, dst + begin, end - begin, pow2f(-k));                       \
    }                                                                                              \
    long remat_f32_to_##NAME##_grouped(const float *src, uint8_t *dst, int8_t *exps, long n,       \
                                       long group, long gbegin, long gend) {                       \
        long saturated = 0;                                                                        \
        for (long g = gbegin; g < gend; g++) {                                                     \
            long lo = g * group, len = n - lo < group ? n - lo : group;                            \
            int8_t k = remat_fp8_exponent(absmax_run(src + lo, len), (FMAX));                      \
            exps[g] = k;                                                                           \
            saturated += NAME##_encode_run(src + lo, dst + lo, len, pow2f(k));                     \
        }                                                                                          \
        return saturated;                                                                          \
    }                                                                                              \
    void remat_##NAME##_to_f32_grouped(const uint8_t *src, float *dst, const int8_t *exps, long n, \
                                       long group, long gbegin, long gend) {                       \
        for (long g = gbegin; g < gend; g++) {                                                     \
            long lo = g * group, len = n - lo < group ? n - lo : group;                            \
            NAME##_decode_run(src + lo, dst + lo, len, pow2f(-exps[g]));                           \
        }                                                                                          \
    }

REMAT_FP8_CODEC(e4m3fn, enc_e4m3fn, dec_e4m3fn, 448.0f)
REMAT_FP8_CODEC(e5m2, enc_e5m2, dec_e5m2, 57344.0f)

// ---------------------------------------------------------------------------------------------
// int8, one scale per row.

REMAT_MULTIVERSION static long i8_encode_row(const float *restrict src, int8_t *restrict dst, long len,
                                              float inv) {
    long nonfinite = 0;
    REMAT_COUNTED_LOOP(0, len, nonfinite, {
        float x = src[i];
        count += !(fabsf(x) <= 3.4028234663852886e38f);  // NaN and +-inf
        float v = x * inv;
        v = v != v ? 0.0f : v;
        v = v < -127.0f ? -127.0f : v;
        v = v > 127.0f ? 127.0f : v;
        dst[i] = enc_i8(v);
    })
    return nonfinite;
}

REMAT_MULTIVERSION static void i8_decode_row(const int8_t *restrict src, float *restrict dst, long len,
                                              float scale) {
    for (long i = 0; i < len; i++) {
        float v = (float)src[i];
        dst[i] = v * scale;
    }
}

long remat_f32_to_i8_rows(const float *src, int8_t *dst, float *scales, long cols, long rbegin, long rend) {
    long nonfinite = 0;
    for (long r = rbegin; r < rend; r++) {
        const float *row = src + r * cols;
        float amax = absmax_run(row, cols);
        float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
        scales[r] = amax / 127.0f;
        // Infinities have no finite scale: with amax over the finite values they saturate to +-127
        // (inv = 0 when the row has no finite non-zero value: then inf * 0 = NaN -> 0).
        nonfinite += i8_encode_row(row, dst + r * cols, cols, inv);
    }
    return nonfinite;
}

void remat_i8_to_f32_rows(const int8_t *src, float *dst, const float *scales, long cols, long rbegin, long rend) {
    for (long r = rbegin; r < rend; r++) i8_decode_row(src + r * cols, dst + r * cols, cols, scales[r]);
}

// ---------------------------------------------------------------------------------------------
// float16 / bfloat16 with an overflow count.

REMAT_MULTIVERSION long remat_f32_to_f16_counted(const float *restrict src, uint16_t *restrict dst,
                                                 long begin, long end) {
    long overflow = 0;
    REMAT_COUNTED_LOOP(begin, end, overflow, {
        float x = src[i];
        uint16_t h = enc_f16(x);
        count += ((h & 0x7FFFu) == 0x7C00u) & (fabsf(x) != INFINITY);
        dst[i] = h;
    })
    return overflow;
}

REMAT_MULTIVERSION long remat_f32_to_bf16_counted(const float *restrict src, uint16_t *restrict dst,
                                                  long begin, long end) {
    long overflow = 0;
    REMAT_COUNTED_LOOP(begin, end, overflow, {
        float x = src[i];
        uint16_t h = enc_bf16(x);
        count += ((h & 0x7FFFu) == 0x7F80u) & (fabsf(x) != INFINITY);
        dst[i] = h;
    })
    return overflow;
}

// ---------------------------------------------------------------------------------------------
// Bits.

#define REMAT_PACK_BITS(NAME, TEST)                                                               \
    REMAT_MULTIVERSION void NAME(const float *restrict src, uint8_t *restrict bits, long n,      \
                                 long bbegin, long bend) {                                       \
        long full = n / 8;                                                                       \
        long stop = bend < full ? bend : full;                                                   \
        for (long b = bbegin; b < stop; b++) {                                                   \
            const float *p = src + 8 * b;                                                        \
            unsigned byte = 0;                                                                   \
            for (int j = 0; j < 8; j++) {                                                        \
                float x = p[j];                                                                  \
                byte |= (unsigned)(TEST) << j;                                                   \
            }                                                                                    \
            bits[b] = (uint8_t)byte;                                                             \
        }                                                                                        \
        if (bend > full && full >= bbegin) { /* the last, partial byte */                        \
            unsigned byte = 0;                                                                   \
            for (long i = 8 * full; i < n; i++) {                                                \
                float x = src[i];                                                                \
                byte |= (unsigned)(TEST) << (i - 8 * full);                                      \
            }                                                                                    \
            bits[full] = (uint8_t)byte;                                                          \
        }                                                                                        \
    }

REMAT_PACK_BITS(remat_pack_positive_bits, !(x <= 0.0f))
REMAT_PACK_BITS(remat_pack_binary_bits, x == 1.0f)

REMAT_MULTIVERSION long remat_count_not_binary(const float *restrict src, long begin, long end) {
    long count = 0;
    for (long i = begin; i < end; i++) {
        uint32_t u = f2u(src[i]);
        count += u != 0u && u != 0x3F800000u;
    }
    return count;
}

REMAT_MULTIVERSION void remat_unpack_bits_f32(const uint8_t *restrict bits, float *restrict dst, long begin,
                                              long end) {
    for (long i = begin; i < end; i++) dst[i] = (float)((bits[i >> 3] >> (i & 7)) & 1u);
}

// Lower triangles of T×T matrices (see remat_codec.h).
static inline long tri_row_start(long T, long r) {
    long m = r / T, i = r % T;
    return m * (T * (T + 1) / 2) + i * (i + 1) / 2;
}

REMAT_MULTIVERSION
long remat_tri_count_nonzero_upper(const float *x, long T, long rbegin, long rend) {
    const uint32_t *bits = (const uint32_t *)x;
    long rows = 0;
    for (long r = rbegin; r < rend; r++) {
        long i = r % T;
        const uint32_t *row = bits + r * T;
        uint32_t any = 0;
        for (long j = i + 1; j < T; j++) any |= row[j];
        rows += any != 0;
    }
    return rows;
}

void remat_tri_pack_f32(const float *x, float *packed, long T, long rbegin, long rend) {
    for (long r = rbegin; r < rend; r++) memcpy(packed + tri_row_start(T, r), x + r * T, sizeof(float) * (size_t)(r % T + 1));
}

long remat_tri_pack_bf16(const float *x, uint16_t *packed, long T, long rbegin, long rend) {
    long saturated = 0;
    for (long r = rbegin; r < rend; r++) {
        long start = tri_row_start(T, r);
        saturated += remat_f32_to_bf16_counted(x + r * T, packed + start, 0, r % T + 1);
    }
    return saturated;
}

void remat_tri_unpack_f32(const float *packed, float *x, long T, long rbegin, long rend) {
    for (long r = rbegin; r < rend; r++) {
        long n = r % T + 1;
        memcpy(x + r * T, packed + tri_row_start(T, r), sizeof(float) * (size_t)n);
        memset(x + r * T + n, 0, sizeof(float) * (size_t)(T - n));
    }
}

void remat_tri_unpack_bf16(const uint16_t *packed, float *x, long T, long rbegin, long rend) {
    for (long r = rbegin; r < rend; r++) {
        long n = r % T + 1;
        remat_bf16_to_f32(packed + tri_row_start(T, r), x + r * T, n);
        memset(x + r * T + n, 0, sizeof(float) * (size_t)(T - n));
    }
}
