// Portability macros shared by the kernels.
#pragma once

// Functions used by both the CPU twin and the CUDA kernel.
#if defined(__CUDACC__)
#define FD_HD __host__ __device__
#else
#define FD_HD
#endif

// Hot CPU loops are compiled twice (AVX2+FMA and baseline x86-64) and picked when the module loads, so
// the wheel runs on any x86-64 (no -march=native).
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__CUDACC__) && defined(__linux__)
#define FASTDREAM_CLONES __attribute__((target_clones("avx2,fma", "default")))
#else
#define FASTDREAM_CLONES
#endif
