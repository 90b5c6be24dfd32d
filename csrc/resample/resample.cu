// resample CUDA kernels (the twin of resample_cpu.cpp). A small kernel fills the per-axis tables in
// the workspace (the same resample_axis_weights as the CPU), then one thread per output pixel sums its
// taps_y x taps_x window: for each horizontal tap, the vertical taps first, in the CPU's order.
#include <cuda_runtime.h>

#include <algorithm>

#include "common/check.h"
#include "common/cuda_guard.h"
#include "common/cuda_runtime_info.h"
#include "resample/resample.h"

namespace fastdream {

namespace {

struct ResampleTables {
  const int32_t* idx_y;
  const float* w_y;
  const int32_t* idx_x;
  const float* w_x;
  int taps_y, taps_x;
};

__global__ void resample_tables_kernel(int64_t in_h, int64_t in_w, int64_t out_h, int64_t out_w,
                                       ResampleMode mode, bool antialias, int taps_y, int taps_x,
                                       int32_t* idx_y, float* w_y, int32_t* idx_x, float* w_x) {
  const int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t < out_h) {
    resample_axis_weights(t, in_h, out_h, mode, antialias, taps_y, idx_y + t, w_y + t, out_h);
  } else if (t < out_h + out_w) {
    const int64_t o = t - out_h;
    resample_axis_weights(o, in_w, out_w, mode, antialias, taps_x, idx_x + o, w_x + o, out_w);
  }
}

// grid: x over output columns, y over output rows, z over planes (grid-stride beyond 65535).
template <bool kAdd>
__global__ void resample_kernel(ResampleParams p, ResampleTables t) {
  const int64_t x = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t y = int64_t(blockIdx.y) * blockDim.y + threadIdx.y;
  if (x >= p.out_w || y >= p.out_h) return;
  for (int64_t plane = blockIdx.z; plane < p.planes; plane += gridDim.z) {
    const float* __restrict__ src = p.x + plane * p.in_h * p.in_w;
    float v = 0.0f;
    for (int kx = 0; kx < t.taps_x; ++kx) {
      const float wx = __ldg(t.w_x + kx * p.out_w + x);
      const int64_t ix = __ldg(t.idx_x + kx * p.out_w + x);
      float col = 0.0f;
      for (int ky = 0; ky < t.taps_y; ++ky) {
        const float wy = __ldg(t.w_y + ky * p.out_h + y);
        const int64_t iy = __ldg(t.idx_y + ky * p.out_h + y);
        col += wy * __ldg(src + iy * p.in_w + ix);
      }
      v += wx * col;
    }
    const int64_t o = (plane * p.out_h + y) * p.out_w + x;
    p.out[o] = kAdd ? p.base[o] + v : v;  // base may alias out: read before write, same thread
  }
}

}  // namespace

void launch_resample_cuda(const ResampleParams& p, void* stream) {
  CudaDeviceGuard guard(p.device_id);
  const ResampleWorkspace l = resample_workspace_layout(p.in_h, p.in_w, p.out_h, p.out_w, p.mode, p.antialias);
  FD_CHECK(p.workspace_bytes >= l.tables_bytes, "resample: workspace of ", p.workspace_bytes,
           " bytes is too small, at least ", l.tables_bytes, " are needed");
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  char* ws = static_cast<char*>(p.workspace);
  int32_t* idx_y = reinterpret_cast<int32_t*>(ws + l.idx_y);
  float* w_y = reinterpret_cast<float*>(ws + l.w_y);
  int32_t* idx_x = reinterpret_cast<int32_t*>(ws + l.idx_x);
  float* w_x = reinterpret_cast<float*>(ws + l.w_x);

  const int64_t n_tab = p.out_h + p.out_w;
  resample_tables_kernel<<<static_cast<unsigned>((n_tab + 255) / 256), 256, 0, s>>>(
      p.in_h, p.in_w, p.out_h, p.out_w, p.mode, p.antialias, l.taps_y, l.taps_x, idx_y, w_y, idx_x, w_x);
  cuda_check_last_error("resample (tables)");
  if (p.planes == 0) return;

  ResampleTables t{idx_y, w_y, idx_x, w_x, l.taps_y, l.taps_x};
  const dim3 block(32, 8);
  const dim3 grid(static_cast<unsigned>((p.out_w + block.x - 1) / block.x),
                  static_cast<unsigned>((p.out_h + block.y - 1) / block.y),
                  static_cast<unsigned>(std::min<int64_t>(p.planes, 65535)));
  if (p.base) {
    resample_kernel<true><<<grid, block, 0, s>>>(p, t);
  } else {
    resample_kernel<false><<<grid, block, 0, s>>>(p, t);
  }
  cuda_check_last_error("resample");
}

}  // namespace fastdream
