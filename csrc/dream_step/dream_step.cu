// dream_step CUDA kernels (the CPU twin, dream_step_cpu.cpp, is the same algorithm in row loops).
//
// Launches on one stream, no host synchronization, no float atomics:
//   with a blur (once):   dream_step_taps_kernel       Gaussian taps from sigma, in double -> workspace
//   with a blur (per k):  dream_step_blur_v_kernel     vertical pass over reflected, un-rolled source rows
//                                                      (coalesced along x, taps in shared memory) -> tmp
//                         dream_step_blur_h_kernel     horizontal pass from a shared-memory row tile
//                                                      (un-roll + reflect in x while loading) -> smooth (+=)
//   dream_step_reduce_kernel    per-block partial sums (double) of |g|, g, g^2 per image, fixed tree
//   dream_step_finalize_kernel  one block per image: partials in a fixed order -> norms, scale (NaN = skip)
//   dream_step_update_kernel    image = clamp(image + scale_b g, lower, upper); float4 when aligned
// Every block count depends on the sizes only, so the reductions give the same bytes run to run.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "common/check.h"
#include "common/cuda_runtime_info.h"
#include "dream_step/dream_step.h"

namespace fastdream {
namespace {

constexpr int kThreads = 256;        // every kernel uses 256-thread blocks
constexpr int64_t kMaxBlocks = 65535;  // grid-stride loops cover the rest

template <typename T>
__device__ __forceinline__ float load_float(const T* p, int64_t i);
template <>
__device__ __forceinline__ float load_float<float>(const float* p, int64_t i) {
  return __ldg(p + i);
}
template <>
__device__ __forceinline__ float load_float<__half>(const __half* p, int64_t i) {
  return __half2float(p[i]);
}
template <>
__device__ __forceinline__ float load_float<__nv_bfloat16>(const __nv_bfloat16* p, int64_t i) {
  return __bfloat162float(p[i]);
}

int64_t blocks_for(int64_t n) {
  int64_t b = (n + kThreads - 1) / kThreads;
  return b < 1 ? 1 : (b > kMaxBlocks ? kMaxBlocks : b);
}

// Taps per sigma (one thread per sigma, serial in double, exp() in double is not affected by
// --use_fast_math): taps_v[k][j] normalized, taps_h[k][j] = taps_v[k][j] / num_sigmas.
__global__ void dream_step_taps_kernel(DreamStepParams p, int T, float* taps_v, float* taps_h) {
  const int k = threadIdx.x;
  if (k >= p.num_sigmas) return;
  const int r = p.radius[k];
  const double s = p.sigma[k];
  float* wv = taps_v + k * T;
  float* wh = taps_h + k * T;
  if (s <= 0.0) {
    for (int j = 0; j <= 2 * r; ++j) {
      wv[j] = j == r ? 1.f : 0.f;
      wh[j] = j == r ? static_cast<float>(1.0 / p.num_sigmas) : 0.f;
    }
    return;
  }
  double sum = 0.0;
  for (int j = 0; j <= 2 * r; ++j) sum += exp(-0.5 * (j - r) * (j - r) / (s * s));
  for (int j = 0; j <= 2 * r; ++j) {
    const float w = static_cast<float>(exp(-0.5 * (j - r) * (j - r) / (s * s)) / sum);
    wv[j] = w;
    wh[j] = w / p.num_sigmas;
  }
}

// tmp[bc, y, xs] = sum_j w[j] grad[bc, (reflect(y + j - r) + shift_y) % H, xs]   (xs: source columns)
template <typename T>
__global__ void dream_step_blur_v_kernel(DreamStepParams p, const float* __restrict__ taps, int r,
                                         float* __restrict__ tmp) {
  extern __shared__ float w[];
  for (int j = threadIdx.x; j <= 2 * r; j += blockDim.x) w[j] = taps[j];
  __syncthreads();
  const T* grad = static_cast<const T*>(p.grad);
  const int64_t H = p.H, W = p.W, n = p.B * p.C * H * W;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t xs = i % W;
    const int64_t y = (i / W) % H;
    const int64_t plane = i / (H * W) * H * W;
    float acc = 0.f;
    for (int j = 0; j <= 2 * r; ++j) {
      const int64_t sy = (dream_reflect(y + j - r, H) + p.shift_y) % H;
      acc += w[j] * load_float(grad, plane + sy * W + xs);
    }
    tmp[i] = acc;
  }
}

// smooth[bc, y, x] (+)= sum_j w[j] tmp[bc, y, (reflect(x + j - r) + shift_x) % W]   (x: image columns)
// One block per kThreads-wide segment of a row; the segment and its 2 r halo sit in shared memory.
__global__ void dream_step_blur_h_kernel(DreamStepParams p, const float* __restrict__ taps, int r,
                                         const float* __restrict__ tmp, float* __restrict__ smooth,
                                         bool accumulate) {
  extern __shared__ float sm[];
  float* w = sm;                  // [2 r + 1]
  float* tile = sm + 2 * r + 1;   // [kThreads + 2 r]
  const int64_t H = p.H, W = p.W;
  const int64_t segments = (W + kThreads - 1) / kThreads;
  const int64_t rows = p.B * p.C * H;
  for (int j = threadIdx.x; j <= 2 * r; j += blockDim.x) w[j] = taps[j];
  for (int64_t blk = blockIdx.x; blk < rows * segments; blk += gridDim.x) {
    const int64_t row = blk / segments;
    const int64_t x0 = (blk % segments) * kThreads;
    const float* src = tmp + row * W;
    __syncthreads();  // the previous segment's readers are done with the tile
    for (int i = threadIdx.x; i < kThreads + 2 * r; i += blockDim.x) {
      const int64_t x = dream_reflect(x0 - r + i, W);
      tile[i] = src[(x + p.shift_x) % W];
    }
    __syncthreads();
    const int64_t x = x0 + threadIdx.x;
    if (x < W) {
      float acc = 0.f;
      for (int j = 0; j <= 2 * r; ++j) acc += w[j] * tile[threadIdx.x + j];
      float* out = smooth + row * W + x;
      *out = accumulate ? *out + acc : acc;
    }
  }
}

// partial[b][blk] = (sum|g|, sum g, sum g^2) over a fixed chunk of image b (order of elements is
// irrelevant to the sums: the raw gradient is read without un-rolling).
template <typename T>
__global__ void dream_step_reduce_kernel(DreamStepParams p, const float* __restrict__ smooth, int64_t num_partials,
                                         double* __restrict__ partial) {
  __shared__ double sh[3][kThreads];
  const int64_t per_image = p.C * p.H * p.W;
  const int64_t b = blockIdx.y;
  const int64_t chunk = (per_image + num_partials - 1) / num_partials;
  const int64_t start = blockIdx.x * chunk;
  const int64_t end = start + chunk < per_image ? start + chunk : per_image;
  const T* grad = static_cast<const T*>(p.grad) + b * per_image;
  const float* sm = smooth ? smooth + b * per_image : nullptr;
  double a = 0.0, s = 0.0, q = 0.0;
  for (int64_t i = start + threadIdx.x; i < end; i += blockDim.x) {
    const double v = sm ? sm[i] : load_float(grad, i);
    a += fabs(v);
    s += v;
    q += v * v;
  }
  sh[0][threadIdx.x] = a;
  sh[1][threadIdx.x] = s;
  sh[2][threadIdx.x] = q;
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) {
      for (int m = 0; m < 3; ++m) sh[m][threadIdx.x] += sh[m][threadIdx.x + half];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    double* dst = partial + (b * num_partials + blockIdx.x) * 3;
    dst[0] = sh[0][0];
    dst[1] = sh[1][0];
    dst[2] = sh[2][0];
  }
}

// One block per image: norms[b] and scale[b] (NaN when the gradient or the normalizer is not finite).
__global__ void dream_step_finalize_kernel(DreamStepParams p, const double* __restrict__ partial,
                                           int64_t num_partials, float* __restrict__ scale) {
  __shared__ double sh[3][kThreads];
  const int64_t b = blockIdx.x;
  double a = 0.0, s = 0.0, q = 0.0;
  for (int64_t i = threadIdx.x; i < num_partials; i += blockDim.x) {
    const double* src = partial + (b * num_partials + i) * 3;
    a += src[0];
    s += src[1];
    q += src[2];
  }
  sh[0][threadIdx.x] = a;
  sh[1][threadIdx.x] = s;
  sh[2][threadIdx.x] = q;
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) {
      for (int m = 0; m < 3; ++m) sh[m][threadIdx.x] += sh[m][threadIdx.x + half];
    }
    __syncthreads();
  }
  if (threadIdx.x != 0) return;
  const double n = static_cast<double>(p.C * p.H * p.W);
  const double sa = sh[0][0], s1 = sh[1][0], s2 = sh[2][0];
  double norm = 1.0;
  if (p.norm == DreamNorm::MeanAbs) {
    norm = sa / n;
  } else if (p.norm == DreamNorm::Std) {
    const double mean = s1 / n;
    const double var = s2 / n - mean * mean;
    norm = sqrt(var > 0.0 ? var : 0.0);
  }
  if (!isfinite(sa) || !isfinite(norm) || !isfinite(s2)) {
    p.norms[b] = __int_as_float(0x7fc00000);
    scale[b] = __int_as_float(0x7fc00000);
  } else {
    const float normf = static_cast<float>(norm);
    p.norms[b] = normf;
    scale[b] = p.norm == DreamNorm::None
                   ? p.step_size
                   : static_cast<float>(static_cast<double>(p.step_size) / (static_cast<double>(normf) + p.eps));
  }
}

__device__ __forceinline__ float clamp_like_torch(float v, float lo, float hi) {
  v = lo > v ? lo : v;  // NaN in v propagates, as in torch.clamp
  return v > hi ? hi : v;
}

// Gradient at image position (bc, y, x): the smoothed buffer, or the raw gradient un-rolled.
template <typename T>
__device__ __forceinline__ float grad_at(const DreamStepParams& p, const float* smooth, int64_t bc, int64_t y,
                                         int64_t x, int64_t e) {
  if (smooth) return smooth[e];
  const int64_t sy = y + p.shift_y < p.H ? y + p.shift_y : y + p.shift_y - p.H;
  const int64_t sx = x + p.shift_x < p.W ? x + p.shift_x : x + p.shift_x - p.W;
  return load_float(static_cast<const T*>(p.grad), (bc * p.H + sy) * p.W + sx);
}

// image[e] = clamp(image[e] + scale[b] g, lower[c], upper[c]); VEC = 4 moves float4 (W % 4 == 0, aligned).
template <typename T, int VEC>
__global__ void dream_step_update_kernel(DreamStepParams p, const float* __restrict__ smooth,
                                         const float* __restrict__ scale) {
  const int64_t H = p.H, W = p.W, HW = H * W;
  const int64_t n = p.B * p.C * HW / VEC;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t e = i * VEC;
    const int64_t bc = e / HW;
    const float sc = scale[bc / p.C];
    if (isnan(sc)) continue;
    const int c = static_cast<int>(bc % p.C);
    const float lo = p.lower[c], hi = p.upper[c];
    const int64_t y = (e % HW) / W, x = e % W;
    if (VEC == 4) {
      float4 v = reinterpret_cast<const float4*>(p.image)[i];
      float4 g;
      if (smooth) {
        g = reinterpret_cast<const float4*>(smooth)[i];
      } else {
        g.x = grad_at<T>(p, nullptr, bc, y, x, e);
        g.y = grad_at<T>(p, nullptr, bc, y, x + 1, e + 1);
        g.z = grad_at<T>(p, nullptr, bc, y, x + 2, e + 2);
        g.w = grad_at<T>(p, nullptr, bc, y, x + 3, e + 3);
      }
      v.x = clamp_like_torch(v.x + sc * g.x, lo, hi);
      v.y = clamp_like_torch(v.y + sc * g.y, lo, hi);
      v.z = clamp_like_torch(v.z + sc * g.z, lo, hi);
      v.w = clamp_like_torch(v.w + sc * g.w, lo, hi);
      reinterpret_cast<float4*>(p.image)[i] = v;
    } else {
      const float g = grad_at<T>(p, smooth, bc, y, x, e);
      p.image[e] = clamp_like_torch(p.image[e] + sc * g, lo, hi);
    }
  }
}

template <typename T>
void launch_typed(const DreamStepParams& p, cudaStream_t stream) {
  const DreamStepWorkspace ws = dream_step_workspace(true, p.B, p.C, p.H, p.W, p.num_sigmas, p.radius);
  char* base = static_cast<char*>(p.workspace);
  const int T_ = 2 * ws.max_radius + 1;
  float* taps_v = reinterpret_cast<float*>(base + ws.taps_offset);
  float* taps_h = taps_v + p.num_sigmas * T_;
  float* smooth = p.num_sigmas > 0 ? reinterpret_cast<float*>(base + ws.smooth_offset) : nullptr;
  float* tmp = reinterpret_cast<float*>(base + ws.blur_tmp_offset);
  double* partial = reinterpret_cast<double*>(base + ws.partial_offset);
  float* scale = reinterpret_cast<float*>(base + ws.scale_offset);
  const int64_t n = p.B * p.C * p.H * p.W;

  if (p.num_sigmas > 0) {
    dream_step_taps_kernel<<<1, 32, 0, stream>>>(p, T_, taps_v, taps_h);
    const int64_t segments = (p.W + kThreads - 1) / kThreads;
    for (int k = 0; k < p.num_sigmas; ++k) {
      const int r = p.radius[k];
      dream_step_blur_v_kernel<T><<<blocks_for(n), kThreads, (2 * r + 1) * sizeof(float), stream>>>(
          p, taps_v + k * T_, r, tmp);
      const int64_t hblocks = p.B * p.C * p.H * segments;
      dream_step_blur_h_kernel<<<hblocks < kMaxBlocks ? hblocks : kMaxBlocks, kThreads,
                                 (kThreads + 4 * r + 1) * sizeof(float), stream>>>(p, taps_h + k * T_, r, tmp,
                                                                                   smooth, k > 0);
    }
  }
  dream_step_reduce_kernel<T><<<dim3(static_cast<unsigned>(ws.num_partials), static_cast<unsigned>(p.B)), kThreads,
                                0, stream>>>(p, smooth, ws.num_partials, partial);
  dream_step_finalize_kernel<<<static_cast<unsigned>(p.B), kThreads, 0, stream>>>(p, partial, ws.num_partials,
                                                                                  scale);
  const bool vec = p.W % 4 == 0 && reinterpret_cast<uintptr_t>(p.image) % 16 == 0;
  if (vec) {
    dream_step_update_kernel<T, 4><<<blocks_for(n / 4), kThreads, 0, stream>>>(p, smooth, scale);
  } else {
    dream_step_update_kernel<T, 1><<<blocks_for(n), kThreads, 0, stream>>>(p, smooth, scale);
  }
  cuda_check_last_error("dream_step (cuda)");
}

}  // namespace

void launch_dream_step_cuda(const DreamStepParams& p, void* stream) {
  if (p.B == 0) return;
  FD_CHECK(p.B <= 65535, "dream_step (cuda): at most 65535 images per call, got B = ", p.B);
  int prev = 0;
  if (cudaGetDevice(&prev) != cudaSuccess) cuda_check_last_error("dream_step (cuda): cudaGetDevice");
  if (prev != p.device_id && cudaSetDevice(p.device_id) != cudaSuccess) {
    cuda_check_last_error("dream_step (cuda): cudaSetDevice");
  }
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  try {
    switch (p.grad_dtype) {
      case Dtype::Float32: launch_typed<float>(p, s); break;
      case Dtype::Float16: launch_typed<__half>(p, s); break;
      case Dtype::BFloat16: launch_typed<__nv_bfloat16>(p, s); break;
      default: throw TypeError(str_cat("dream_step (cuda): unsupported grad dtype ", dtype_name(p.grad_dtype)));
    }
  } catch (...) {
    if (prev != p.device_id) cudaSetDevice(prev);
    throw;
  }
  if (prev != p.device_id) cudaSetDevice(prev);
}

}  // namespace fastdream
