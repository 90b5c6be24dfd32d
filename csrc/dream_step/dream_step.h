// dream_step: one fused DeepDream update, in place.
//
//   g      = un-roll(grad, shift)                       # grad is w.r.t. roll(image, shift, dims=(2, 3))
//   g      = mean_k gaussian_blur(g, sigma_k)           # 0..4 separable blurs, reflect borders
//   norm_b = mean|g_b| or std(g_b) or 1                 # per image b over (C, H, W)
//   image  = clamp(image + step_size * g / (norm_b + eps), lower[c], upper[c])
//   norms  = norm_b, or NaN where image b's gradient holds NaN/inf (image b is then left unchanged)
//
// Shared by the CPU twin (dream_step_cpu.cpp), the CUDA kernels (dream_step.cu) and the binding
// (bind_dream_step.cpp). Plain C++: no pybind11, no torch.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "common/tensor.h"

namespace fastdream {

enum class DreamNorm : int { None = 0, MeanAbs = 1, Std = 2 };

constexpr int kDreamMaxSigmas = 4;    // cascade of at most 4 blurs
constexpr int kDreamMaxChannels = 4;  // C in 1..4 (per-channel bounds live in the params struct)
constexpr int kDreamMaxRadius = 1024; // kernel_size <= 2049: keeps weights and row buffers bounded
constexpr int kDreamStripRows = 16;   // CPU: rows per work item (fixed: reductions do not depend on threads)

struct DreamStepParams {
  float* image = nullptr;        // [B, C, H, W] float32, contiguous, updated in place
  const void* grad = nullptr;    // [B, C, H, W] grad_dtype, contiguous (w.r.t. the rolled image)
  Dtype grad_dtype = Dtype::Float32;
  float* norms = nullptr;        // [B] float32: normalizer used per image, NaN when skipped
  int64_t B = 0, C = 0, H = 0, W = 0;
  int64_t shift_y = 0, shift_x = 0;  // reduced to [0, H) and [0, W): g[y, x] = grad[(y+sy)%H, (x+sx)%W]
  int num_sigmas = 0;                // 0: no blur
  double sigma[kDreamMaxSigmas] = {};
  int radius[kDreamMaxSigmas] = {};  // taps = 2 * radius + 1
  DreamNorm norm = DreamNorm::MeanAbs;
  float step_size = 0.f;
  float eps = 1e-8f;
  float lower[kDreamMaxChannels] = {};
  float upper[kDreamMaxChannels] = {};
  void* workspace = nullptr;         // 16-byte aligned scratch from Python (see dream_step_workspace)
  int64_t workspace_bytes = 0;
  int cpu_slots = 1;                 // CPU: per-thread scratch slots in the workspace (threads used <= slots)
  int device_id = 0;                 // CUDA: the device all tensors live on
};

// Radius of the Gaussian for one sigma: kernel_size given (odd, >= 1) wins, else ceil(3 sigma).
inline int dream_blur_radius(double sigma, int64_t kernel_size) {
  if (kernel_size > 0) return static_cast<int>((kernel_size - 1) / 2);
  return static_cast<int>(std::ceil(3.0 * sigma));
}

// Normalized 1-D Gaussian taps (in double, then rounded): w[j] ~ exp(-(j - r)^2 / (2 sigma^2)).
// sigma == 0 is the identity (a one-hot center tap), whatever the radius.
inline void dream_gaussian_taps(double sigma, int radius, float* w) {
  const int n = 2 * radius + 1;
  if (sigma <= 0.0) {
    for (int j = 0; j < n; ++j) w[j] = j == radius ? 1.f : 0.f;
    return;
  }
  double sum = 0.0;
  for (int j = 0; j < n; ++j) sum += std::exp(-0.5 * (j - radius) * (j - radius) / (sigma * sigma));
  for (int j = 0; j < n; ++j)
    w[j] = static_cast<float>(std::exp(-0.5 * (j - radius) * (j - radius) / (sigma * sigma)) / sum);
}

// Reflect an index into [0, n) like F.pad(mode="reflect") (edge not repeated), extended by repeated
// reflection for any i (period 2 (n - 1)); n == 1 maps everything to 0.
#if defined(__CUDACC__)
__host__ __device__
#endif
inline int64_t dream_reflect(int64_t i, int64_t n) {
  if (n <= 1) return 0;
  const int64_t period = 2 * (n - 1);
  int64_t m = i % period;
  if (m < 0) m += period;
  return m >= n ? period - m : m;
}

// Scratch layout (bytes from the start of the workspace; every block 64-byte aligned).
struct DreamStepWorkspace {
  int64_t taps_offset = 0;      // float[2][num_sigmas][2 * max_radius + 1]: vertical taps, then the
                                // horizontal taps pre-divided by num_sigmas (the cascade is an average)
  int64_t smooth_offset = 0;    // float[B, C, H, W]: the smoothed gradient (only with a blur)
  int64_t blur_tmp_offset = 0;  // CUDA: float[B, C, H, W], the vertical pass of one sigma
  int64_t partial_offset = 0;   // double[B][num_partials][3]: sum|g|, sum g, sum g^2
  int64_t scale_offset = 0;     // float[B]: step_size / (norm + eps), NaN = skip the image
  int64_t slot_offset = 0;      // CPU: per-thread row buffers
  int64_t slot_bytes = 0;
  int64_t num_partials = 0;     // partial sums per image
  int64_t fixed_bytes = 0;      // everything but the CPU slots
  int max_radius = 0;
};

inline int64_t dream_align64(int64_t x) { return (x + 63) / 64 * 64; }

// CUDA: partial sums per image (fixed from the sizes alone, so the reduction order never changes).
inline int64_t dream_cuda_partials(int64_t per_image) {
  const int64_t per_block = 256 * 16;
  int64_t n = (per_image + per_block - 1) / per_block;
  return n < 1 ? 1 : (n > 1024 ? 1024 : n);
}

inline DreamStepWorkspace dream_step_workspace(bool cuda, int64_t B, int64_t C, int64_t H, int64_t W,
                                               int num_sigmas, const int* radius) {
  DreamStepWorkspace ws;
  for (int k = 0; k < num_sigmas; ++k) ws.max_radius = radius[k] > ws.max_radius ? radius[k] : ws.max_radius;
  const int64_t taps = 2 * static_cast<int64_t>(ws.max_radius) + 1;
  const int64_t plane = B * C * H * W;
  const int64_t strips = (H + kDreamStripRows - 1) / kDreamStripRows;
  ws.num_partials = cuda ? dream_cuda_partials(C * H * W) : C * strips;
  int64_t at = 0;
  ws.taps_offset = at;
  at += dream_align64(2 * num_sigmas * taps * 4);
  ws.smooth_offset = at;
  if (num_sigmas > 0) at += dream_align64(plane * 4);
  ws.blur_tmp_offset = at;
  if (cuda && num_sigmas > 0) at += dream_align64(plane * 4);
  ws.partial_offset = at;
  at += dream_align64(B * ws.num_partials * 3 * 8);
  ws.scale_offset = at;
  at += dream_align64(B * 4);
  ws.slot_offset = at;
  ws.fixed_bytes = at;
  // One slot: a padded row per sigma (W + 2 R floats each).
  ws.slot_bytes = cuda || num_sigmas == 0 ? 0 : dream_align64(num_sigmas * (W + 2 * ws.max_radius) * 4);
  return ws;
}

// Scratch bytes for `slots` CPU threads (slots is ignored on CUDA).
inline int64_t dream_step_workspace_bytes(bool cuda, int64_t B, int64_t C, int64_t H, int64_t W,
                                          int num_sigmas, const int* radius, int slots) {
  DreamStepWorkspace ws = dream_step_workspace(cuda, B, C, H, W, num_sigmas, radius);
  return ws.fixed_bytes + (cuda ? 0 : ws.slot_bytes * (slots < 1 ? 1 : slots));
}

// CPU twin: OpenMP over (image, channel, strip of kDreamStripRows rows). Throws ValueError on bad params.
void launch_dream_step_cpu(const DreamStepParams& p);
// CUDA: a few launches on `stream`; no host synchronization. Defined only in CUDA builds.
void launch_dream_step_cuda(const DreamStepParams& p, void* stream);

}  // namespace fastdream
