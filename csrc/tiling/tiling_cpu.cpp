// tiling CPU kernels (the twins of tiling.cu).
//   extract:    a row-by-row copy, OpenMP over (tile, plane, row).
//   accumulate: OpenMP over output rows (plane, y); each row is owned by one thread, which adds the
//               tiles of the batch that cover it in ascending tile order -- deterministic, no atomics,
//               and accumulating the tiles in several batches gives the same bits as all at once.
#include <algorithm>
#include <cstring>

#include "common/check.h"
#include "tiling/tiling.h"

namespace fastdream {

namespace {

constexpr int64_t kAlign = 64;
int64_t align_up(int64_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

// out[t] += (a * w[t]) * tile[t]
FASTDREAM_CLONES
void accumulate_row(float* __restrict out, const float* __restrict tile, const float* __restrict w, float a,
                    int64_t n) {
  for (int64_t t = 0; t < n; ++t) out[t] += (a * w[t]) * tile[t];
}

}  // namespace

TileAxis make_tile_axis(const char* axis, int64_t length, int64_t tile, int64_t overlap, int64_t offset) {
  FD_CHECK(length >= 1, "tiling: image ", axis, " must be positive, got ", length);
  FD_CHECK(tile >= 1 && tile <= length, "tiling: tile ", axis, " must be in [1, ", length, "] (the image ", axis,
           "), got ", tile);
  FD_CHECK(overlap >= 0, "tiling: overlap must be >= 0, got ", overlap);
  TileAxis a;
  a.length = length;
  a.tile = tile;
  a.overlap = overlap;
  if (tile == length) {  // one tile covers the axis; overlap and offset do not matter
    a.stride = 1;
    a.offset = 0;
    a.count = 1;
    return a;
  }
  FD_CHECK(overlap < tile, "tiling: overlap must be smaller than the tile ", axis, " (", tile, "), got ", overlap);
  a.stride = tile - overlap;
  a.offset = ((offset % a.stride) + a.stride) % a.stride;
  // k = 1 .. count - 1: the first k whose tile reaches the end is ceil((L - T' + o) / S).
  a.count = 1 + (length - tile + a.offset + a.stride - 1) / a.stride;
  return a;
}

int64_t tiling_workspace_x_offset(const TileAxis& ay) { return align_up(ay.count * ay.tile * 4); }

int64_t tiling_workspace_bytes(const TileAxis& ay, const TileAxis& ax) {
  return tiling_workspace_x_offset(ay) + align_up(ax.count * ax.tile * 4);
}

void launch_extract_tiles_cpu(const TileExtractParams& p) {
  const int64_t th = p.ay.tile, tw = p.ax.tile, nx = p.ax.count;
  const int64_t H = p.ay.length, W = p.ax.length;
  const int64_t rows = p.count * p.planes * th;
#pragma omp parallel for schedule(dynamic, 32) if (rows * tw > 65536)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t ty = r % th;
    const int64_t plane = (r / th) % p.planes;
    const int64_t n = p.start + r / (th * p.planes);
    const int64_t y = tile_start(p.ay, n / nx) + ty;
    const int64_t x = tile_start(p.ax, n % nx);
    std::memcpy(p.tiles + r * tw, p.image + (plane * H + y) * W + x, sizeof(float) * tw);
  }
}

void launch_accumulate_tiles_cpu(const TileAccumulateParams& p) {
  FD_CHECK(p.workspace_bytes >= tiling_workspace_bytes(p.ay, p.ax), "accumulate_tiles: workspace of ",
           p.workspace_bytes, " bytes is too small, ", tiling_workspace_bytes(p.ay, p.ax), " are needed");
  if (p.count == 0 || p.planes == 0) return;
  const TileAxis ay = p.ay, ax = p.ax;
  const int64_t th = ay.tile, tw = ax.tile, nx = ax.count, W = ax.length, H = ay.length;
  float* wy = static_cast<float*>(p.workspace);
  float* wx = reinterpret_cast<float*>(static_cast<char*>(p.workspace) + tiling_workspace_x_offset(ay));
  const int64_t first = p.start, last = p.start + p.count - 1;  // tiles of this batch
  const int64_t i0 = first / nx, i1 = last / nx;                 // tile rows they span

  for (int64_t e = 0; e < ay.count * th; ++e) wy[e] = tile_weight(ay, e / th, e % th);
  for (int64_t e = 0; e < ax.count * tw; ++e) wx[e] = tile_weight(ax, e / tw, e % tw);

  const int64_t y0 = tile_start(ay, i0), y1 = tile_start(ay, i1) + th;  // rows touched
  const int64_t nrows = y1 - y0;
  const int64_t tile_plane = th * tw;
#pragma omp parallel for schedule(dynamic, 8) if (p.planes * nrows * W > 65536)
  for (int64_t r = 0; r < p.planes * nrows; ++r) {
    const int64_t plane = r / nrows;
    const int64_t y = y0 + r % nrows;
    int64_t lo, hi;
    tile_cover(ay, y, lo, hi);
    lo = std::max(lo, i0);
    hi = std::min(hi, i1);
    float* out_row = p.out + (plane * H + y) * W;
    for (int64_t i = lo; i <= hi; ++i) {
      const int64_t sy = tile_start(ay, i);
      const float a = wy[i * th + (y - sy)];
      const int64_t j0 = std::max<int64_t>(0, first - i * nx), j1 = std::min<int64_t>(nx - 1, last - i * nx);
      for (int64_t j = j0; j <= j1; ++j) {
        const int64_t n = i * nx + j - p.start;
        const float* tile_row = p.tiles + (n * p.planes + plane) * tile_plane + (y - sy) * tw;
        accumulate_row(out_row + tile_start(ax, j), tile_row, wx + j * tw, a, tw);
      }
    }
  }
}

#if !FASTDREAM_WITH_CUDA
void launch_extract_tiles_cuda(const TileExtractParams&, void*) {
  throw ValueError("extract_tiles: this build of fastdream was compiled without CUDA");
}
void launch_accumulate_tiles_cuda(const TileAccumulateParams&, void*) {
  throw ValueError("accumulate_tiles: this build of fastdream was compiled without CUDA");
}
#endif

}  // namespace fastdream
