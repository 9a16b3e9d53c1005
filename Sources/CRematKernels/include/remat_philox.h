// Philox4x32-10 counter-based RNG (Salmon, Moraes, Dror & Shaw, SC'11; Random123).
//
// Stream layout shared with RematCore's RandomGenerator:
//   key     = (uint32)seed, (uint32)(seed >> 32)
//   block b = philox4x32_10(counter = ((uint32)b, (uint32)(b >> 32), 0, 0), key)  -> 4 x uint32
//   fills starting at block `block`: element i uses block (block + i/4), lane i%4, and a fill of
//   n elements consumes ceil(n/4) blocks. The 64-bit block index wraps modulo 2^64.
// Every function is a pure function of its arguments: same inputs -> bitwise-identical output on
// every machine and every ISA version of the loop (integer ops and IEEE +, -, *, sqrt only, with FP
// contraction off; the normal fill uses its own polynomial log/sincos, not libm).
#ifndef REMAT_PHILOX_H
#define REMAT_PHILOX_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// The raw 10-round bijection. `ctr` and `out` may alias.
void remat_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

// out[i] = lane (i%4) of block (block + i/4).
void remat_philox_fill_u32(uint32_t *out, long n, uint64_t seed, uint64_t block);

// out[i] = (u >> 8) * 2^-24 with u as in remat_philox_fill_u32: uniform on {k * 2^-24}, in [0, 1).
void remat_philox_fill_uniform(float *out, long n, uint64_t seed, uint64_t block);

// Box-Muller: for each block (u0, u1, u2, u3), with a = ((u >> 8) + 1) * 2^-24 in (0, 1] and
// t = (u >> 8) * 2^-24 in [0, 1):
//   r  = sqrt(-2 ln(a0)),  z0 = r cos(2 pi t1),  z1 = r sin(2 pi t1)   (elements 4b, 4b+1)
//   r' = sqrt(-2 ln(a2)),  z2 = r' cos(2 pi t3), z3 = r' sin(2 pi t3)  (elements 4b+2, 4b+3)
//   out = mean + std * z (rounded twice: std * z, then + mean).   |z| <= sqrt(48 ln 2) ~= 5.77.
// ln, cos, sin are float polynomial approximations accurate to ~1-2 ulp (|z| error < 1e-6 * max(1, |z|)).
void remat_philox_fill_normal(float *out, long n, uint64_t seed, uint64_t block, float mean,
                              float std);

#ifdef __cplusplus
}
#endif

#endif // REMAT_PHILOX_H
