// resample CPU kernel (the twin of resample.cu). Separable: for every output row, a vertical pass
// combines the `taps_y` input rows it needs into a scratch row of input width, then a horizontal pass
// gathers `taps_x` entries of that row per output pixel (and adds `base` for the octave step).
// OpenMP over all (plane, output row) pairs; each thread owns one scratch row pair in the workspace.
#include <algorithm>
#include <cstring>

#include "common/check.h"
#include "resample/resample.h"
#ifdef _OPENMP
#include <omp.h>
#endif

namespace fastdream {

namespace {

constexpr int64_t kAlign = 64;
int64_t align_up(int64_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

int cpu_threads() {
#ifdef _OPENMP
  return std::max(1, omp_get_max_threads());
#else
  return 1;
#endif
}

// tmp[i] = sum_k w[k * stride] * src[idx[k * stride] * n + i]   (i < n): the taps of one output row.
FASTDREAM_CLONES
void vertical_pass(float* __restrict tmp, const float* src, const int32_t* idx, const float* w, int64_t stride,
                   int taps, int64_t n) {
  // Taps with zero weight (the unused tail of an antialiasing window, an exact source row) are skipped.
  int k0 = 0;
  while (k0 < taps - 1 && w[k0 * stride] == 0.0f) ++k0;
  {
    const float* __restrict r = src + int64_t(idx[k0 * stride]) * n;
    const float wk = w[k0 * stride];
    int k1 = k0 + 1;
    while (k1 < taps && w[k1 * stride] == 0.0f) ++k1;
    if (k1 < taps) {  // two taps in one pass over tmp: the common bilinear case
      const float* __restrict r1 = src + int64_t(idx[k1 * stride]) * n;
      const float w1 = w[k1 * stride];
      for (int64_t i = 0; i < n; ++i) tmp[i] = wk * r[i] + w1 * r1[i];
      k0 = k1;
    } else {
      for (int64_t i = 0; i < n; ++i) tmp[i] = wk * r[i];
    }
  }
  for (int k = k0 + 1; k < taps; ++k) {
    const float wk = w[k * stride];
    if (wk == 0.0f) continue;
    const float* __restrict r = src + int64_t(idx[k * stride]) * n;
    for (int64_t i = 0; i < n; ++i) tmp[i] += wk * r[i];
  }
}

// out[x] = (base ? base[x] : 0) + sum_k w[k*n + x] * tmp[idx[k*n + x]], specialized for 2 and 4 taps.
template <bool kAdd>
FASTDREAM_CLONES void horizontal_pass2(float* out, const float* base, const float* __restrict tmp,
                                       const int32_t* __restrict idx, const float* __restrict w, int64_t n) {
  const int32_t* __restrict i0 = idx;
  const int32_t* __restrict i1 = idx + n;
  const float* __restrict w0 = w;
  const float* __restrict w1 = w + n;
  for (int64_t x = 0; x < n; ++x) {
    const float v = w0[x] * tmp[i0[x]] + w1[x] * tmp[i1[x]];
    out[x] = kAdd ? base[x] + v : v;
  }
}

template <bool kAdd>
FASTDREAM_CLONES void horizontal_pass4(float* out, const float* base, const float* __restrict tmp,
                                       const int32_t* __restrict idx, const float* __restrict w, int64_t n) {
  for (int64_t x = 0; x < n; ++x) {
    const float v = w[x] * tmp[idx[x]] + w[n + x] * tmp[idx[n + x]] + w[2 * n + x] * tmp[idx[2 * n + x]] +
                    w[3 * n + x] * tmp[idx[3 * n + x]];
    out[x] = kAdd ? base[x] + v : v;
  }
}

FASTDREAM_CLONES
void horizontal_pass_n(float* out, const float* base, float* __restrict acc, const float* __restrict tmp,
                       const int32_t* __restrict idx, const float* __restrict w, int taps, int64_t n) {
  for (int64_t x = 0; x < n; ++x) acc[x] = w[x] * tmp[idx[x]];
  for (int k = 1; k < taps; ++k) {
    const int32_t* __restrict ik = idx + k * n;
    const float* __restrict wk = w + k * n;
    for (int64_t x = 0; x < n; ++x) acc[x] += wk[x] * tmp[ik[x]];
  }
  if (base) {
    for (int64_t x = 0; x < n; ++x) out[x] = base[x] + acc[x];
  } else {
    std::memcpy(out, acc, sizeof(float) * n);
  }
}

}  // namespace

int resample_taps(int64_t in_size, int64_t out_size, ResampleMode mode, bool antialias) {
  return resample_taps_hd(in_size, out_size, mode, antialias);
}

ResampleWorkspace resample_workspace_layout(int64_t in_h, int64_t in_w, int64_t out_h, int64_t out_w,
                                            ResampleMode mode, bool antialias) {
  ResampleWorkspace l;
  l.taps_y = resample_taps(in_h, out_h, mode, antialias);
  l.taps_x = resample_taps(in_w, out_w, mode, antialias);
  int64_t off = 0;
  l.idx_y = off;
  off += align_up(int64_t(l.taps_y) * out_h * 4);
  l.w_y = off;
  off += align_up(int64_t(l.taps_y) * out_h * 4);
  l.idx_x = off;
  off += align_up(int64_t(l.taps_x) * out_w * 4);
  l.w_x = off;
  off += align_up(int64_t(l.taps_x) * out_w * 4);
  l.tables_bytes = off;
  l.row_bytes = align_up(in_w * 4) + align_up(out_w * 4);
  return l;
}

int64_t resample_workspace_bytes(int64_t in_h, int64_t in_w, int64_t out_h, int64_t out_w, ResampleMode mode,
                                 bool antialias, DeviceKind device) {
  const ResampleWorkspace l = resample_workspace_layout(in_h, in_w, out_h, out_w, mode, antialias);
  if (device == DeviceKind::CUDA) return l.tables_bytes;
  return l.tables_bytes + l.row_bytes * cpu_threads();
}

void launch_resample_cpu(const ResampleParams& p) {
  const ResampleWorkspace l = resample_workspace_layout(p.in_h, p.in_w, p.out_h, p.out_w, p.mode, p.antialias);
  FD_CHECK(p.workspace_bytes >= l.tables_bytes + l.row_bytes, "resample: workspace of ", p.workspace_bytes,
           " bytes is too small, at least ", l.tables_bytes + l.row_bytes, " are needed");
  char* ws = static_cast<char*>(p.workspace);
  int32_t* idx_y = reinterpret_cast<int32_t*>(ws + l.idx_y);
  float* w_y = reinterpret_cast<float*>(ws + l.w_y);
  int32_t* idx_x = reinterpret_cast<int32_t*>(ws + l.idx_x);
  float* w_x = reinterpret_cast<float*>(ws + l.w_x);
  char* rows = ws + l.tables_bytes;
  for (int64_t o = 0; o < p.out_h; ++o)
    resample_axis_weights(o, p.in_h, p.out_h, p.mode, p.antialias, l.taps_y, idx_y + o, w_y + o, p.out_h);
  for (int64_t o = 0; o < p.out_w; ++o)
    resample_axis_weights(o, p.in_w, p.out_w, p.mode, p.antialias, l.taps_x, idx_x + o, w_x + o, p.out_w);

  // As many threads as the workspace has scratch rows for (Python sized it for omp_get_max_threads()).
  const int64_t fit = (p.workspace_bytes - l.tables_bytes) / l.row_bytes;
  const int threads = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(cpu_threads(), fit)));
  const int64_t total_rows = p.planes * p.out_h;
  const int taps_y = l.taps_y, taps_x = l.taps_x;

#pragma omp parallel num_threads(threads) if (total_rows * p.out_w > 32768)
  {
    int tid = 0;
#ifdef _OPENMP
    tid = omp_get_thread_num();
#endif
    float* tmp = reinterpret_cast<float*>(rows + tid * l.row_bytes);
    float* acc = reinterpret_cast<float*>(rows + tid * l.row_bytes + align_up(p.in_w * 4));
#pragma omp for schedule(dynamic, 8)
    for (int64_t r = 0; r < total_rows; ++r) {
      const int64_t plane = r / p.out_h;
      const int64_t y = r - plane * p.out_h;
      vertical_pass(tmp, p.x + plane * p.in_h * p.in_w, idx_y + y, w_y + y, p.out_h, taps_y, p.in_w);
      float* dst = p.out + r * p.out_w;
      const float* base = p.base ? p.base + r * p.out_w : nullptr;
      if (taps_x == 2) {
        if (base) horizontal_pass2<true>(dst, base, tmp, idx_x, w_x, p.out_w);
        else horizontal_pass2<false>(dst, base, tmp, idx_x, w_x, p.out_w);
      } else if (taps_x == 4) {
        if (base) horizontal_pass4<true>(dst, base, tmp, idx_x, w_x, p.out_w);
        else horizontal_pass4<false>(dst, base, tmp, idx_x, w_x, p.out_w);
      } else {
        horizontal_pass_n(dst, base, acc, tmp, idx_x, w_x, taps_x, p.out_w);
      }
    }
  }
}

#if !FASTDREAM_WITH_CUDA
void launch_resample_cuda(const ResampleParams&, void*) {
  throw ValueError("resample: this build of fastdream was compiled without CUDA");
}
#endif

}  // namespace fastdream
