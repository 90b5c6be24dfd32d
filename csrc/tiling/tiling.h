// tiling: cut an image into overlapping same-size tiles and blend per-tile results back, for dreaming
// pictures of any size with bounded memory.
//
// Layout (per axis of length L; the same rule as fastdream.ops.tiling.tile_layout): tile T' = min(T, L),
// stride S = T' - O, offset o in [0, S); starts clamp(k * S - o, 0, L - T') for k = 0 .. n - 1 where the
// last tile is the first to reach the end. With o < S the clamped starts are strictly increasing, so
// start(i) is a closed form and the kernels need no start arrays. Tiles form the product grid
// (ys x xs), tile n = (n / nx, n % nx).
//
// Blend weights are separable ramps w(t) = min(1, (t+1)/(O+1), (T'-t)/(O+1)), without the ramp on a
// side that touches the image border. Each axis's ramps are normalized by their sum over the tiles
// covering a pixel, so the product weights of all tiles sum to one at every pixel and any subset of
// tiles can be accumulated alone.
#pragma once
#include <cstdint>

#include "common/simd.h"
#include "common/tensor.h"


namespace fastdream {

struct TileAxis {
  int64_t length = 1;   // L
  int64_t tile = 1;     // T' (<= L)
  int64_t overlap = 0;  // O
  int64_t stride = 1;   // S = T' - O (>= 1 when count > 1)
  int64_t offset = 0;   // o in [0, S) (0 when count == 1)
  int64_t count = 1;    // number of tiles along the axis
};

// Validates (ValueError) and completes an axis; `offset` may be any integer (reduced modulo S).
TileAxis make_tile_axis(const char* axis, int64_t length, int64_t tile, int64_t overlap, int64_t offset);

FD_HD inline int64_t tile_start(const TileAxis& a, int64_t i) {
  if (a.count == 1) return 0;
  int64_t s = i * a.stride - a.offset;
  if (s < 0) s = 0;
  if (s > a.length - a.tile) s = a.length - a.tile;
  return s;
}

// Unnormalized ramp weight of tile i at local coordinate t (0 <= t < T').
FD_HD inline double tile_ramp(const TileAxis& a, int64_t i, int64_t t) {
  const int64_t s = tile_start(a, i);
  double w = 1.0;
  const double o1 = static_cast<double>(a.overlap + 1);
  if (s > 0) {
    const double l = static_cast<double>(t + 1) / o1;
    w = l < w ? l : w;
  }
  if (s + a.tile < a.length) {
    const double r = static_cast<double>(a.tile - t) / o1;
    w = r < w ? r : w;
  }
  return w;
}

// Tiles covering position p (0 <= p < L): indices lo..hi (inclusive, never empty).
FD_HD inline void tile_cover(const TileAxis& a, int64_t p, int64_t& lo, int64_t& hi) {
  if (a.count == 1) {
    lo = hi = 0;
    return;
  }
  int64_t i = (p + a.offset) / a.stride;  // the unclamped start of tile i is <= p
  if (i > a.count - 1) i = a.count - 1;
  while (i > 0 && tile_start(a, i) > p) --i;
  while (i + 1 < a.count && tile_start(a, i + 1) <= p) ++i;
  hi = i;
  while (i > 0 && tile_start(a, i - 1) + a.tile > p) --i;
  lo = i;
}

// Weight of tile i at local t, normalized over all tiles covering that pixel along this axis.
FD_HD inline float tile_weight(const TileAxis& a, int64_t i, int64_t t) {
  const int64_t p = tile_start(a, i) + t;
  int64_t lo, hi;
  tile_cover(a, p, lo, hi);
  double sum = 0.0;
  for (int64_t j = lo; j <= hi; ++j) sum += tile_ramp(a, j, p - tile_start(a, j));
  return static_cast<float>(tile_ramp(a, i, t) / sum);
}

struct TileExtractParams {
  const float* image = nullptr;  // [B, C, H, W] contiguous
  float* tiles = nullptr;        // [count, B, C, th, tw] contiguous
  int64_t planes = 0;            // B * C
  TileAxis ay, ax;
  int64_t start = 0, count = 0;  // tiles start .. start + count - 1 of the layout
  int device_id = 0;
};

struct TileAccumulateParams {
  const float* tiles = nullptr;  // [count, B, C, th, tw] contiguous
  float* out = nullptr;          // [B, C, H, W] contiguous, accumulated in place
  int64_t planes = 0;
  TileAxis ay, ax;
  int64_t start = 0, count = 0;
  void* workspace = nullptr;  // tiling_workspace_bytes(ay, ax): the normalized weight tables
  int64_t workspace_bytes = 0;
  int device_id = 0;
};

// Bytes for the tables [ny, th] and [nx, tw] of normalized weights.
int64_t tiling_workspace_bytes(const TileAxis& ay, const TileAxis& ax);
// Byte offset of the x table inside the workspace (the y table starts at 0).
int64_t tiling_workspace_x_offset(const TileAxis& ay);

void launch_extract_tiles_cpu(const TileExtractParams& p);
void launch_accumulate_tiles_cpu(const TileAccumulateParams& p);
void launch_extract_tiles_cuda(const TileExtractParams& p, void* stream);
void launch_accumulate_tiles_cuda(const TileAccumulateParams& p, void* stream);

}  // namespace fastdream
