#ifndef REMAT_MULTIVERSION_H
#define REMAT_MULTIVERSION_H
// Per-function runtime ISA dispatch for hot C loops.
//
// SwiftPM's release build targets baseline x86-64 (SSE2) unless told otherwise, and a package that
// passes -march flags (unsafeFlags) cannot be used as a dependency. Instead every hot kernel is
// compiled three times — x86-64-v4 (AVX-512 F/BW/CD/DQ/VL), x86-64-v3 (AVX2, FMA, BMI) and the
// baseline — and the loader picks one through an ifunc resolver from the CPU's features. On other
// platforms (Apple, arm64) the macro is empty and the compiler's default target is used.
//
// Note: the clones may contract a*b+c into FMA differently, so results can differ in the last bit
// between machines; on one machine the same clone always runs, so forward and recompute agree
// bitwise. Code that must match across machines (the Philox RNG) turns contraction off.
#if defined(__x86_64__) && defined(__linux__) && defined(__clang__)
#define REMAT_MULTIVERSION __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define REMAT_MULTIVERSION
#endif

#endif
