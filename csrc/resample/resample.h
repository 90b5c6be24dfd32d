// resample: bilinear / bicubic resizing of [B, C, H, W] float32 images, matching
// torch.nn.functional.interpolate(align_corners=False, antialias=False|True), and the fused octave
// step out = base + resample(detail) in one pass.
//
// Both kernels are separable: per-axis tables give, for every output row (column), `taps` input
// indices and weights. The tables are computed on the device into a workspace that Python allocates
// (resample_workspace_bytes says how much); the kernels never allocate.
#pragma once
#include <cmath>
#include <cstdint>

#include "common/simd.h"
#include "common/tensor.h"


namespace fastdream {

enum class ResampleMode : int { Bilinear = 0, Bicubic = 1 };

struct ResampleParams {
  const float* x = nullptr;     // [B, C, in_h, in_w] contiguous
  float* out = nullptr;         // [B, C, out_h, out_w] contiguous
  const float* base = nullptr;  // [B, C, out_h, out_w] or nullptr; out = base + resample(x). May equal out.
  int64_t planes = 0;           // B * C
  int64_t in_h = 0, in_w = 0, out_h = 0, out_w = 0;
  ResampleMode mode = ResampleMode::Bilinear;
  bool antialias = false;
  void* workspace = nullptr;  // resample_workspace_bytes(...) bytes, 16-byte aligned, on the tensors' device
  int64_t workspace_bytes = 0;
  int device_id = 0;  // CUDA device of the tensors
};

// Where the tables (and, on CPU, the per-thread row buffers) live inside the workspace.
struct ResampleWorkspace {
  int taps_y = 0, taps_x = 0;
  int64_t idx_y = 0, w_y = 0, idx_x = 0, w_x = 0;  // byte offsets of the tables
  int64_t tables_bytes = 0;                        // end of the tables
  int64_t row_bytes = 0;                           // CPU: one thread's scratch rows (in_w + out_w floats)
};

// Taps per output position along one axis (torch: interp_size, or ceil(support) * 2 + 1 with antialias).
int resample_taps(int64_t in_size, int64_t out_size, ResampleMode mode, bool antialias);
ResampleWorkspace resample_workspace_layout(int64_t in_h, int64_t in_w, int64_t out_h, int64_t out_w,
                                            ResampleMode mode, bool antialias);
// Bytes of workspace the kernel needs on `device` (CPU: tables + one scratch row pair per OpenMP thread).
int64_t resample_workspace_bytes(int64_t in_h, int64_t in_w, int64_t out_h, int64_t out_w, ResampleMode mode,
                                 bool antialias, DeviceKind device);

void launch_resample_cpu(const ResampleParams& p);
void launch_resample_cuda(const ResampleParams& p, void* stream);

// ---- per-axis weights, shared by the CPU and CUDA table builders -------------------------------------
// These follow ATen's CPU kernels (UpSampleKernel.cpp) step by step, including which operations run in
// float and which in double, so that results agree with F.interpolate to a few ulp.

FD_HD inline float resample_cubic1(float x, float A) { return ((A + 2) * x - (A + 3)) * x * x + 1; }
FD_HD inline float resample_cubic2(float x, float A) { return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A; }

FD_HD inline float resample_aa_filter(float x, ResampleMode mode) {
  x = fabsf(x);
  if (mode == ResampleMode::Bilinear) return x < 1.0f ? 1.0f - x : 0.0f;
  const float A = -0.5f;  // Keys / PIL cubic for the antialiased path
  if (x < 1.0f) return resample_cubic1(x, A);
  if (x < 2.0f) return resample_cubic2(x, A);
  return 0.0f;
}

FD_HD inline int resample_taps_hd(int64_t in_size, int64_t out_size, ResampleMode mode, bool antialias) {
  const int interp = mode == ResampleMode::Bilinear ? 2 : 4;
  if (!antialias) return interp;
  const float scale = static_cast<float>(in_size) / static_cast<float>(out_size);
  const float support = scale >= 1.0f ? static_cast<float>((interp * 0.5) * scale) : static_cast<float>(interp * 0.5);
  int64_t taps = static_cast<int64_t>(ceil(static_cast<double>(support))) * 2 + 1;
  if (taps > in_size) taps = in_size;  // a window never holds more than the whole axis
  return static_cast<int>(taps);
}

// Fills the `taps` indices (clamped into [0, in_size)) and weights of output position `o`; entry k is
// written at idx[k * stride], w[k * stride] (tables are tap-major so that loops over o are contiguous).
FD_HD inline void resample_axis_weights(int64_t o, int64_t in_size, int64_t out_size, ResampleMode mode,
                                        bool antialias, int taps, int32_t* idx, float* w, int64_t stride) {
  const float scale = static_cast<float>(in_size) / static_cast<float>(out_size);
  if (antialias) {
    const int interp = mode == ResampleMode::Bilinear ? 2 : 4;
    const float support =
        scale >= 1.0f ? static_cast<float>((interp * 0.5) * scale) : static_cast<float>(interp * 0.5);
    const float center = static_cast<float>(scale * (o + 0.5));
    const float invscale = scale >= 1.0f ? static_cast<float>(1.0 / scale) : 1.0f;
    int64_t xmin = static_cast<int64_t>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int64_t xmax = static_cast<int64_t>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    int64_t xsize = xmax - xmin;
    if (xsize < 0) xsize = 0;
    if (xsize > taps) xsize = taps;
    float total = 0.0f;
    for (int k = 0; k < taps; ++k) {
      float wk = 0.0f;
      if (k < xsize) {
        const float d = static_cast<float>(k + xmin) - center;  // int64 - float, in float as ATen does
        wk = resample_aa_filter(static_cast<float>((d + 0.5) * invscale), mode);
      }
      total += wk;
      int64_t i = k < xsize ? xmin + k : xmin;
      if (i > in_size - 1) i = in_size - 1;
      idx[k * stride] = static_cast<int32_t>(i);
      w[k * stride] = wk;
    }
    if (total != 0.0f) {
      for (int k = 0; k < taps; ++k) w[k * stride] /= total;
    }
    return;
  }
  if (mode == ResampleMode::Bilinear) {
    if (in_size == out_size) {  // ATen copies rows through
      idx[0] = idx[stride] = static_cast<int32_t>(o);
      w[0] = 1.0f;
      w[stride] = 0.0f;
      return;
    }
    // ATen's build contracts scale * (o + 0.5) - 0.5 into one fused multiply-add; so do we, explicitly.
    float src = fmaf(scale, static_cast<float>(o) + 0.5f, -0.5f);
    if (src < 0.0f) src = 0.0f;
    int64_t i0 = static_cast<int64_t>(floorf(src));
    if (i0 > in_size - 1) i0 = in_size - 1;
    float l1 = src - static_cast<float>(i0);
    l1 = l1 < 0.0f ? 0.0f : (l1 > 1.0f ? 1.0f : l1);
    const int64_t i1 = i0 + (i0 < in_size - 1 ? 1 : 0);
    idx[0] = static_cast<int32_t>(i0);
    idx[stride] = static_cast<int32_t>(i1);
    w[0] = 1.0f - l1;
    w[stride] = l1;
    return;
  }
  // Bicubic (Keys, A = -0.75 as in OpenCV), source indices clamped to the border.
  const float src = fmaf(scale, static_cast<float>(o) + 0.5f, -0.5f);
  int64_t i = static_cast<int64_t>(floorf(src));
  if (i > in_size - 1) i = in_size - 1;
  float t = src - static_cast<float>(i);
  t = t < 0.0f ? 0.0f : (t > 1.0f ? 1.0f : t);
  const float A = -0.75f;
  const float t2 = static_cast<float>(1.0 - t);
  const float c[4] = {resample_cubic2(static_cast<float>(t + 1.0), A), resample_cubic1(t, A),
                      resample_cubic1(t2, A), resample_cubic2(static_cast<float>(t2 + 1.0), A)};
  for (int k = 0; k < 4; ++k) {
    int64_t j = i - 1 + k;
    j = j < 0 ? 0 : (j > in_size - 1 ? in_size - 1 : j);
    idx[k * stride] = static_cast<int32_t>(j);
    w[k * stride] = c[k];
  }
}

}  // namespace fastdream
