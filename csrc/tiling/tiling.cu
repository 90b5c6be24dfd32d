// tiling CUDA kernels (the twins of tiling_cpu.cpp).
//   extract:    one thread per tile element.
//   accumulate: a table kernel fills the normalized weights (same tile_weight as the CPU), then one
//               thread per output pixel of the batch's bounding box gathers the batch's tiles that cover
//               it in ascending tile order (the CPU's order): deterministic, no atomics.
#include <cuda_runtime.h>

#include <algorithm>

#include "common/check.h"
#include "common/cuda_guard.h"
#include "common/cuda_runtime_info.h"
#include "tiling/tiling.h"

namespace fastdream {

namespace {

unsigned blocks_for(int64_t n, int threads) {
  return static_cast<unsigned>(std::min<int64_t>((n + threads - 1) / threads, int64_t(1) << 20));
}

__global__ void extract_tiles_kernel(TileExtractParams p) {
  const int64_t th = p.ay.tile, tw = p.ax.tile, nx = p.ax.count;
  const int64_t total = p.count * p.planes * th * tw;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t tx = e % tw;
    const int64_t ty = (e / tw) % th;
    const int64_t plane = (e / (tw * th)) % p.planes;
    const int64_t n = p.start + e / (tw * th * p.planes);
    const int64_t y = tile_start(p.ay, n / nx) + ty;
    const int64_t x = tile_start(p.ax, n % nx) + tx;
    p.tiles[e] = __ldg(p.image + (plane * p.ay.length + y) * p.ax.length + x);
  }
}

__global__ void tile_weights_kernel(TileAxis ay, TileAxis ax, float* wy, float* wx) {
  const int64_t ny = ay.count * ay.tile, nxe = ax.count * ax.tile;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < ny + nxe;
       e += int64_t(gridDim.x) * blockDim.x) {
    if (e < ny) {
      wy[e] = tile_weight(ay, e / ay.tile, e % ay.tile);
    } else {
      const int64_t f = e - ny;
      wx[f] = tile_weight(ax, f / ax.tile, f % ax.tile);
    }
  }
}

// grid-stride over planes x [y0, y1) x [x0, x1)
__global__ void accumulate_tiles_kernel(TileAccumulateParams p, const float* __restrict__ wy,
                                        const float* __restrict__ wx, int64_t y0, int64_t y1, int64_t x0,
                                        int64_t x1) {
  const TileAxis& ay = p.ay;
  const TileAxis& ax = p.ax;
  const int64_t th = ay.tile, tw = ax.tile, nx = ax.count;
  const int64_t bw = x1 - x0, bh = y1 - y0;
  const int64_t total = p.planes * bh * bw;
  const int64_t first = p.start, last = p.start + p.count - 1;
  const int64_t i0 = first / nx, i1 = last / nx;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t x = x0 + e % bw;
    const int64_t y = y0 + (e / bw) % bh;
    const int64_t plane = e / (bw * bh);
    int64_t ylo, yhi, xlo, xhi;
    tile_cover(ay, y, ylo, yhi);
    tile_cover(ax, x, xlo, xhi);
    ylo = ylo > i0 ? ylo : i0;
    yhi = yhi < i1 ? yhi : i1;
    float* o = p.out + (plane * ay.length + y) * ax.length + x;
    float acc = *o;
    bool touched = false;
    for (int64_t i = ylo; i <= yhi; ++i) {
      const int64_t ty = y - tile_start(ay, i);
      const float a = wy[i * th + ty];
      for (int64_t j = xlo; j <= xhi; ++j) {
        const int64_t n = i * nx + j;
        if (n < first || n > last) continue;
        const int64_t tx = x - tile_start(ax, j);
        const float* tile = p.tiles + ((n - first) * p.planes + plane) * th * tw;
        acc += (a * wx[j * tw + tx]) * __ldg(tile + ty * tw + tx);
        touched = true;
      }
    }
    if (touched) *o = acc;
  }
}

}  // namespace

void launch_extract_tiles_cuda(const TileExtractParams& p, void* stream) {
  CudaDeviceGuard guard(p.device_id);
  const int64_t total = p.count * p.planes * p.ay.tile * p.ax.tile;
  if (total == 0) return;
  extract_tiles_kernel<<<blocks_for(total, 256), 256, 0, static_cast<cudaStream_t>(stream)>>>(p);
  cuda_check_last_error("extract_tiles");
}

void launch_accumulate_tiles_cuda(const TileAccumulateParams& p, void* stream) {
  CudaDeviceGuard guard(p.device_id);
  FD_CHECK(p.workspace_bytes >= tiling_workspace_bytes(p.ay, p.ax), "accumulate_tiles: workspace of ",
           p.workspace_bytes, " bytes is too small, ", tiling_workspace_bytes(p.ay, p.ax), " are needed");
  if (p.count == 0 || p.planes == 0) return;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  float* wy = static_cast<float*>(p.workspace);
  float* wx = reinterpret_cast<float*>(static_cast<char*>(p.workspace) + tiling_workspace_x_offset(p.ay));
  const int64_t n_tab = p.ay.count * p.ay.tile + p.ax.count * p.ax.tile;
  tile_weights_kernel<<<blocks_for(n_tab, 256), 256, 0, s>>>(p.ay, p.ax, wy, wx);
  cuda_check_last_error("accumulate_tiles (weights)");

  // Bounding box of the batch's tiles.
  const int64_t nx = p.ax.count;
  const int64_t first = p.start, last = p.start + p.count - 1;
  const int64_t i0 = first / nx, i1 = last / nx;
  const int64_t y0 = tile_start(p.ay, i0), y1 = tile_start(p.ay, i1) + p.ay.tile;
  int64_t x0 = 0, x1 = p.ax.length;
  if (i0 == i1) {
    x0 = tile_start(p.ax, first % nx);
    x1 = tile_start(p.ax, last % nx) + p.ax.tile;
  }
  const int64_t total = p.planes * (y1 - y0) * (x1 - x0);
  accumulate_tiles_kernel<<<blocks_for(total, 256), 256, 0, s>>>(p, wy, wx, y0, y1, x0, x1);
  cuda_check_last_error("accumulate_tiles");
}

}  // namespace fastdream
