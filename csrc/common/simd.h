// Portability macros shared by the kernels.
#pragma once

// Functions used by both the CPU twin and the CUDA kernel.
#if defined(__CUDACC__)
#define FD_HD __host__ __device__
#else
#define FD_HD
#endif

// Hot CPU loops are compiled twice (x86-64-v3: AVX2 + FMA + BMI2 ..., and baseline x86-64) and picked when
// the module loads, so the wheel runs on any x86-64 (no -march=native). One clone for the whole level, not
// target_clones("avx2", "fma", ...): that makes one clone per ISA, and the AVX2 clone (the one the resolver
// picks on any AVX2 machine) is compiled without FMA, so its a*b+c stays a multiply and an add.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__CUDACC__) && defined(__linux__)
#define FASTDREAM_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define FASTDREAM_CLONES
#endif
