// Philox4x32-10. See include/remat_philox.h for the stream layout.

#pragma STDC FP_CONTRACT OFF

#include "remat_philox.h"



#include "remat_multiversion.h"

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

// One block, fully unrolled; written on scalars so clang vectorises loops over blocks.
#define PHILOX_ROUND(x0, x1, x2, x3, k0, k1)                                \
    do {                                                                    \
        uint64_t p0 = (uint64_t)PHILOX_M0 * (x0);                           \
        uint64_t p1 = (uint64_t)PHILOX_M1 * (x2);                           \
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ (x1) ^ (k0);                   \
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ (x3) ^ (k1);                   \
        (x1) = (uint32_t)p1;                                                \
        (x3) = (uint32_t)p0;                                                \
        (x0) = n0;                                                          \
        (x2) = n2;                                                          \
    } while (0)

static inline __attribute__((always_inline)) void
philox_block(uint32_t *x0, uint32_t *x1, uint32_t *x2, uint32_t *x3, uint32_t key0, uint32_t key1) {
    uint32_t a = *x0, b = *x1, c = *x2, d = *x3, k0 = key0, k1 = key1;
    PHILOX_ROUND(a, b, c, d, k0, k1); k0 += PHILOX_W0; k1 += PHILOX_W1;  // 1
    PHILOX_ROUND(a, b, c, d, k0, k1); k0 += PHILOX_W0; k1 += PHILOX_W1;  // 2
    PHILOX_ROUND(a, b, c, d, k0, k1); k0 += PHILOX_W0; k1 += PHILOX_W1;  // 3
    PHILOX_ROUND(a, b, c, d, k0, k1); k0 += PHILOX_W0; k1 += PHILOX_W1;  // 4
    PHILOX_ROUND(a, b, c, d, k0, k1); k0 += PHILOX_W0; k1 += PHILOX_W1;  // 5
    PHILOX_ROUND(a, b, c, d, k0, k1); k0 += PHILOX_W0; k1 += PHILOX_W1;  // 6
    PHILOX_ROUND(a, b, c, d, k0, k1); k0 += PHILOX_W0; k1 += PHILOX_W1;  // 7
    PHILOX_ROUND(a, b, c, d, k0, k1); k0 += PHILOX_W0; k1 += PHILOX_W1;  // 8
    PHILOX_ROUND(a, b, c, d, k0, k1); k0 += PHILOX_W0; k1 += PHILOX_W1;  // 9
    PHILOX_ROUND(a, b, c, d, k0, k1);                                    // 10
    *x0 = a; *x1 = b; *x2 = c; *x3 = d;
}

void remat_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
    uint32_t a = ctr[0], b = ctr[1], c = ctr[2], d = ctr[3];
    philox_block(&a, &b, &c, &d, key[0], key[1]);
    out[0] = a; out[1] = b; out[2] = c; out[3] = d;
}

// Blocks are generated CHUNK at a time into lane arrays (a vectorisable loop), then consumed.
#define CHUNK 64

static inline __attribute__((always_inline)) void
philox_chunk(uint32_t l0[CHUNK], uint32_t l1[CHUNK], uint32_t l2[CHUNK], uint32_t l3[CHUNK],
             uint64_t seed, uint64_t block) {
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int j = 0; j < CHUNK; j++) {
        uint64_t b = block + (uint64_t)j;
        uint32_t a = (uint32_t)b, bb = (uint32_t)(b >> 32), c = 0, d = 0;
        philox_block(&a, &bb, &c, &d, k0, k1);
        l0[j] = a; l1[j] = bb; l2[j] = c; l3[j] = d;
    }
}

REMAT_MULTIVERSION void remat_philox_fill_u32(uint32_t *out, long n, uint64_t seed, uint64_t block) {
    uint32_t l0[CHUNK], l1[CHUNK], l2[CHUNK], l3[CHUNK];
    for (long base = 0; base < n; base += 4 * CHUNK) {
        philox_chunk(l0, l1, l2, l3, seed, block + (uint64_t)(base / 4));
        long m = n - base < 4 * CHUNK ? n - base : 4 * CHUNK;
        uint32_t *o = out + base;
        if (m == 4 * CHUNK) {
            for (int j = 0; j < CHUNK; j++) {
                o[4 * j + 0] = l0[j]; o[4 * j + 1] = l1[j]; o[4 * j + 2] = l2[j]; o[4 * j + 3] = l3[j];
            }
        } else {
            for (long i = 0; i < m; i++) {
                long j = i >> 2;
                int lane = (int)(i & 3);
                o[i] = lane == 0 ? l0[j] : lane == 1 ? l1[j] : lane == 2 ? l2[j] : l3[j];
            }
        }
    }
}

#define U24(u) ((float)(int32_t)((u) >> 8) * 0x1p-24f)

REMAT_MULTIVERSION void remat_philox_fill_uniform(float *out, long n, uint64_t seed, uint64_t block) {
    uint32_t l0[CHUNK], l1[CHUNK], l2[CHUNK], l3[CHUNK];
    for (long base = 0; base < n; base += 4 * CHUNK) {
        philox_chunk(l0, l1, l2, l3, seed, block + (uint64_t)(base / 4));
        long m = n - base < 4 * CHUNK ? n - base : 4 * CHUNK;
        float *o = out + base;
        if (m == 4 * CHUNK) {
            for (int j = 0; j < CHUNK; j++) {
                o[4 * j + 0] = U24(l0[j]); o[4 * j + 1] = U24(l1[j]);
                o[4 * j + 2] = U24(l2[j]); o[4 * j + 3] = U24(l3[j]);
            }
        } else {
            for (long i = 0; i < m; i++) {
                long j = i >> 2;
                int lane = (int)(i & 3);
                uint32_t u = lane == 0 ? l0[j] : lane == 1 ? l1[j] : lane == 2 ? l2[j] : l3[j];
                o[i] = U24(u);
            }
        }
    }
}

// Box-Muller without libm, so the loop vectorises and the result is bitwise identical on every
// machine (only IEEE +, -, *, sqrt with FP contraction off).
//   ln(a): a = 2^e * m with m in [sqrt(1/2), sqrt(2)); ln(1 + x) by a degree-9 minimax polynomial
//          (Cephes logf coefficients), ln 2 split in two parts. Max error ~1 ulp.
//   cos/sin(2 pi k 2^-24): exact quadrant reduction on the 24-bit integer k, then minimax
//          polynomials (Cephes sinf/cosf coefficients) on [-pi/4, pi/4]. Max error ~1 ulp.
static inline __attribute__((always_inline)) float fast_u2f(uint32_t u) {
    union { uint32_t u; float f; } v = { u };
    return v.f;
}
static inline __attribute__((always_inline)) uint32_t fast_f2u(float f) {
    union { float f; uint32_t u; } v = { f };
    return v.u;
}

// ln(a) for a normal, positive, finite.
static inline __attribute__((always_inline)) float log_pos(float a) {
    uint32_t b = fast_f2u(a);
    int32_t e = (int32_t)(b >> 23) - 126;                       // a = 2^e * m, m in [0.5, 1)
    float m = fast_u2f((b & 0x007FFFFFu) | 0x3F000000u);
    int small = m < 0.70710678118654752440f;
    e = small ? e - 1 : e;
    float x = small ? (m + m) - 1.0f : m - 1.0f;               // exact (Sterbenz)
    float z = x * x;
    float y = 7.0376836292e-2f;
    y = y * x - 1.1514610310e-1f;
    y = y * x + 1.1676998740e-1f;
    y = y * x - 1.2420140846e-1f;
    y = y * x + 1.4249322787e-1f;
    y = y * x - 1.6668057665e-1f;
    y = y * x + 2.0000714765e-1f;
    y = y * x - 2.4999993993e-1f;
    y = y * x + 3.3333331174e-1f;
    y = y * x * z;
    float fe = (float)e;
    y = y + -2.12194440e-4f * fe;                              // ln 2 = 0.693359375 - 2.12194440e-4
    y = y - 0.5f * z;
    return (x + y) + 0.693359375f * fe;
}

// (cos, sin) of 2 pi k / 2^24 for 0 <= k < 2^24.
static inline __attribute__((always_inline)) void sincos_turn24(uint32_t k, float *c_out, float *s_out) {
    uint32_t q = (k + (1u << 21)) >> 22;                       // nearest quarter turn, 0...4
    int32_t r = (int32_t)k - (int32_t)(q << 22);               // in [-2^21, 2^21)
    float y = (float)r * 3.7450702829239286e-7f;                      // (pi/2) / 2^22; |y| <= pi/4
    float z = y * y;
    float s = -1.9515295891e-4f;
    s = s * z + 8.3321608736e-3f;
    s = s * z - 1.6666654611e-1f;
    s = s * z * y + y;
    float c = 2.443315711809948e-5f;
    c = c * z - 1.388731625493765e-3f;
    c = c * z + 4.166664568298827e-2f;
    c = c * z * z - 0.5f * z + 1.0f;
    uint32_t swap = q & 1u;
    float co = swap ? s : c, si = swap ? c : s;
    uint32_t negc = ((q + 1u) >> 1) & 1u;                      // q = 1, 2
    uint32_t negs = (q >> 1) & 1u;                             // q = 2, 3
    *c_out = fast_u2f(fast_f2u(co) ^ (negc << 31));
    *s_out = fast_u2f(fast_f2u(si) ^ (negs << 31));
}

static inline __attribute__((always_inline)) void
box_muller(uint32_t ua, uint32_t ut, float *z0, float *z1) {
    float a = (float)(int32_t)((ua >> 8) + 1u) * 0x1p-24f;     // (0, 1]
    float r = __builtin_elementwise_sqrt(-2.0f * log_pos(a));  // no errno: vectorisable
    float c, s;
    sincos_turn24(ut >> 8, &c, &s);
    *z0 = r * c;
    *z1 = r * s;
}

REMAT_MULTIVERSION void remat_philox_fill_normal(float *out, long n, uint64_t seed, uint64_t block,
                                                 float mean, float std) {
    uint32_t l0[CHUNK], l1[CHUNK], l2[CHUNK], l3[CHUNK];
    for (long base = 0; base < n; base += 4 * CHUNK) {
        philox_chunk(l0, l1, l2, l3, seed, block + (uint64_t)(base / 4));
        long m = n - base < 4 * CHUNK ? n - base : 4 * CHUNK;
        float *o = out + base;
        if (m == 4 * CHUNK) {
            for (int j = 0; j < CHUNK; j++) {
                float z0, z1, z2, z3;
                box_muller(l0[j], l1[j], &z0, &z1);
                box_muller(l2[j], l3[j], &z2, &z3);
                float s0 = std * z0, s1 = std * z1, s2 = std * z2, s3 = std * z3;
                o[4 * j + 0] = mean + s0; o[4 * j + 1] = mean + s1;
                o[4 * j + 2] = mean + s2; o[4 * j + 3] = mean + s3;
            }
        } else {
            long blocks = (m + 3) / 4;
            for (long j = 0; j < blocks; j++) {
                float z[4];
                box_muller(l0[j], l1[j], &z[0], &z[1]);
                box_muller(l2[j], l3[j], &z[2], &z[3]);
                long lim = m - 4 * j < 4 ? m - 4 * j : 4;
                for (long q = 0; q < lim; q++) {
                    float s = std * z[q];
                    o[4 * j + q] = mean + s;
                }
            }
        }
    }
}
