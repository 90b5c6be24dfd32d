// dream_step CPU twin: the same algorithm as dream_step.cu, in row loops the compiler vectorizes.
//
// Pass 1, OpenMP over work items (image b, channel c, strip of kDreamStripRows rows):
//   with a blur: for each output row, per sigma a vertical pass (taps over reflected source rows,
//   un-rolled in y by index arithmetic) writes a padded row in image x order (un-rolled in x by
//   splitting the row in two segments), its reflect pads are filled, and a horizontal pass accumulates
//   into the smoothed gradient (workspace). Row statistics (sum|g|, sum g, sum g^2) go to the work
//   item's own partial slot, in double.
//   without a blur: the statistics of the raw gradient (a permutation of g: same sums).
// Finalize (serial): partials combined per image in a fixed order -> norm, scale, NaN flag.
// Pass 2, OpenMP over the same items: image = clamp(image + scale_b * g, lower[c], upper[c]).
// Work items are fixed by the sizes, not the thread count: results are the same bytes run to run.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "common/check.h"
#include "dream_step/dream_step.h"
#ifdef _OPENMP
#include <omp.h>
#endif

#include "common/simd.h"
#define FD_HOT FASTDREAM_CLONES

namespace fastdream {
namespace {

// out[i] (+)= sum_j w[j] * rows[j][offset + i], i in [0, n). Taps are applied four at a time so that
// each pass over `out` (in L1) does four FMAs per element.
FD_HOT void taps_row(float* __restrict out, const float* const* rows, int64_t offset, const float* w, int taps,
                     int64_t n, bool accumulate) {
  int j = 0;
  if (!accumulate) {
    const float* __restrict a = rows[0] + offset;
    const float w0 = w[0];
    for (int64_t i = 0; i < n; ++i) out[i] = w0 * a[i];
    j = 1;
  }
  for (; j + 4 <= taps; j += 4) {
    const float* __restrict a = rows[j] + offset;
    const float* __restrict b = rows[j + 1] + offset;
    const float* __restrict c = rows[j + 2] + offset;
    const float* __restrict d = rows[j + 3] + offset;
    const float w0 = w[j], w1 = w[j + 1], w2 = w[j + 2], w3 = w[j + 3];
    for (int64_t i = 0; i < n; ++i) out[i] += (w0 * a[i] + w1 * b[i]) + (w2 * c[i] + w3 * d[i]);
  }
  for (; j + 2 <= taps; j += 2) {
    const float* __restrict a = rows[j] + offset;
    const float* __restrict b = rows[j + 1] + offset;
    const float w0 = w[j], w1 = w[j + 1];
    for (int64_t i = 0; i < n; ++i) out[i] += w0 * a[i] + w1 * b[i];
  }
  for (; j < taps; ++j) {
    const float* __restrict a = rows[j] + offset;
    const float w0 = w[j];
    for (int64_t i = 0; i < n; ++i) out[i] += w0 * a[i];
  }
}

struct Stats {
  double sum_abs = 0.0, sum = 0.0, sum_sq = 0.0;
};

// Row statistics in double, eight lanes combined in a fixed order (same result whichever clone runs,
// up to FMA contraction of the squares). sum|g| is always taken: it is non-finite iff some g is.
FD_HOT void row_stats(const float* __restrict g, int64_t n, bool moments, Stats& st) {
  double a[8] = {}, s[8] = {}, q[8] = {};
  int64_t i = 0;
  if (moments) {
    for (; i + 8 <= n; i += 8) {
      for (int l = 0; l < 8; ++l) {
        const double v = g[i + l];
        a[l] += std::fabs(v);
        s[l] += v;
        q[l] += v * v;
      }
    }
  } else {
    for (; i + 8 <= n; i += 8) {
      for (int l = 0; l < 8; ++l) a[l] += std::fabs(static_cast<double>(g[i + l]));
    }
  }
  for (; i < n; ++i) {
    const double v = g[i];
    a[0] += std::fabs(v);
    s[0] += v;
    q[0] += v * v;
  }
  double ta = 0.0, ts = 0.0, tq = 0.0;
  for (int l = 0; l < 8; ++l) {
    ta += a[l];
    ts += s[l];
    tq += q[l];
  }
  st.sum_abs += ta;
  if (moments) {
    st.sum += ts;
    st.sum_sq += tq;
  }
}

// img[i] = clamp(img[i] + scale * g[i], lo, hi), NaN in img propagating like torch.clamp.
FD_HOT void update_row(float* __restrict img, const float* __restrict g, int64_t n, float scale, float lo,
                       float hi) {
  for (int64_t i = 0; i < n; ++i) {
    float v = img[i] + scale * g[i];
    v = lo > v ? lo : v;
    v = v > hi ? hi : v;
    img[i] = v;
  }
}

// One output row y of the smoothed gradient of a plane (image coordinates).
void blur_row(const DreamStepParams& p, const DreamStepWorkspace& ws, const float* taps_v, const float* taps_h,
              const float* plane, int64_t y, float* scratch, const float** rows, float* out) {
  const int64_t H = p.H, W = p.W, sx = p.shift_x, R = ws.max_radius;
  const int64_t T = 2 * R + 1;
  for (int k = 0; k < p.num_sigmas; ++k) {
    const int r = p.radius[k];
    const int taps = 2 * r + 1;
    float* center = scratch + k * (W + 2 * R) + R;  // center[x] = vertical pass at image column x
    // Vertical pass over source rows (un-rolled in y), written in image x order (un-rolled in x).
    for (int j = 0; j < taps; ++j) {
      const int64_t yy = dream_reflect(y + j - r, H);
      rows[j] = plane + ((yy + p.shift_y) % H) * W;
    }
    taps_row(center, rows, sx, taps_v + k * T, taps, W - sx, false);  // x in [0, W - sx): xs = x + sx
    if (sx > 0) taps_row(center + (W - sx), rows, 0, taps_v + k * T, taps, sx, false);  // xs = x + sx - W
    for (int i = 1; i <= r; ++i) {
      center[-i] = center[dream_reflect(-i, W)];
      center[W - 1 + i] = center[dream_reflect(W - 1 + i, W)];
    }
    // Horizontal pass, accumulated over the sigmas (taps_h already divided by num_sigmas).
    for (int j = 0; j < taps; ++j) rows[j] = center - r + j;
    taps_row(out, rows, 0, taps_h + k * T, taps, W, k > 0);
  }
}

}  // namespace

void launch_dream_step_cpu(const DreamStepParams& p) {
  FD_CHECK(p.grad_dtype == Dtype::Float32, "dream_step (cpu): grad must be float32, got ", dtype_name(p.grad_dtype));
  const int64_t B = p.B, C = p.C, H = p.H, W = p.W;
  if (B == 0) return;
  const DreamStepWorkspace ws = dream_step_workspace(false, B, C, H, W, p.num_sigmas, p.radius);
  FD_CHECK(p.workspace_bytes >= ws.fixed_bytes + (p.num_sigmas > 0 ? ws.slot_bytes * p.cpu_slots : 0),
           "dream_step (cpu): workspace too small");
  char* base = static_cast<char*>(p.workspace);
  const int64_t T = 2 * static_cast<int64_t>(ws.max_radius) + 1;
  float* taps_v = reinterpret_cast<float*>(base + ws.taps_offset);
  float* taps_h = taps_v + p.num_sigmas * T;
  float* smooth = reinterpret_cast<float*>(base + ws.smooth_offset);
  double* partial = reinterpret_cast<double*>(base + ws.partial_offset);
  float* scale = reinterpret_cast<float*>(base + ws.scale_offset);
  const float* grad = static_cast<const float*>(p.grad);
  const bool blur = p.num_sigmas > 0;
  const bool moments = p.norm == DreamNorm::Std;

  for (int k = 0; k < p.num_sigmas; ++k) {
    dream_gaussian_taps(p.sigma[k], p.radius[k], taps_v + k * T);
    for (int j = 0; j < 2 * p.radius[k] + 1; ++j) taps_h[k * T + j] = taps_v[k * T + j] / p.num_sigmas;
  }

  const int64_t S = kDreamStripRows;
  const int64_t strips = (H + S - 1) / S;
  const int64_t items = B * C * strips;
  int threads = 1;
#ifdef _OPENMP
  threads = std::max(1, std::min(p.cpu_slots, omp_get_max_threads()));
#endif

  // Pass 1: smoothed gradient and statistics per (b, c, strip).
#pragma omp parallel num_threads(threads)
  {
    int tid = 0;
#ifdef _OPENMP
    tid = omp_get_thread_num();
#endif
    float* scratch = reinterpret_cast<float*>(base + ws.slot_offset + tid * ws.slot_bytes);
    const float* rows[2 * kDreamMaxRadius + 1];
#pragma omp for schedule(dynamic, 1)
    for (int64_t item = 0; item < items; ++item) {
      const int64_t bc = item / strips, s = item % strips;
      const int64_t y0 = s * S, y1 = std::min(H, y0 + S);
      const float* plane = grad + bc * H * W;
      Stats st;
      if (blur) {
        for (int64_t y = y0; y < y1; ++y) {
          float* out = smooth + (bc * H + y) * W;
          blur_row(p, ws, taps_v, taps_h, plane, y, scratch, rows, out);
          row_stats(out, W, moments, st);
        }
      } else {
        // Statistics do not depend on the order of the elements: sum the raw rows (source order).
        for (int64_t y = y0; y < y1; ++y) row_stats(plane + y * W, W, moments, st);
      }
      const int64_t b = bc / C, c = bc % C;
      double* dst = partial + (b * ws.num_partials + c * strips + s) * 3;
      dst[0] = st.sum_abs;
      dst[1] = st.sum;
      dst[2] = st.sum_sq;
    }
  }

  // Finalize: fixed-order combination per image.
  const double n = static_cast<double>(C * H * W);
  for (int64_t b = 0; b < B; ++b) {
    double sa = 0.0, s1 = 0.0, s2 = 0.0;
    for (int64_t i = 0; i < ws.num_partials; ++i) {
      const double* src = partial + (b * ws.num_partials + i) * 3;
      sa += src[0];
      s1 += src[1];
      s2 += src[2];
    }
    double norm = 1.0;
    if (p.norm == DreamNorm::MeanAbs) {
      norm = sa / n;
    } else if (p.norm == DreamNorm::Std) {
      const double mean = s1 / n;
      norm = std::sqrt(std::max(s2 / n - mean * mean, 0.0));
    }
    if (!std::isfinite(sa) || !std::isfinite(norm) || !std::isfinite(s2)) {
      p.norms[b] = std::numeric_limits<float>::quiet_NaN();
      scale[b] = std::numeric_limits<float>::quiet_NaN();
    } else {
      const float normf = static_cast<float>(norm);
      p.norms[b] = normf;
      scale[b] = p.norm == DreamNorm::None ? p.step_size
                                           : static_cast<float>(static_cast<double>(p.step_size) /
                                                                (static_cast<double>(normf) + p.eps));
    }
  }

  // Pass 2: the update, un-rolling the raw gradient when there is no blur.
  const int64_t sy = p.shift_y, sx = p.shift_x;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (int64_t item = 0; item < items; ++item) {
    const int64_t bc = item / strips, s = item % strips;
    const int64_t b = bc / C, c = bc % C;
    const float sc = scale[b];
    if (std::isnan(sc)) continue;
    const float lo = p.lower[c], hi = p.upper[c];
    const int64_t y0 = s * S, y1 = std::min(H, y0 + S);
    for (int64_t y = y0; y < y1; ++y) {
      float* img = p.image + (bc * H + y) * W;
      if (blur) {
        update_row(img, smooth + (bc * H + y) * W, W, sc, lo, hi);
      } else {
        const float* src = grad + (bc * H + (y + sy) % H) * W;
        update_row(img, src + sx, W - sx, sc, lo, hi);
        if (sx > 0) update_row(img + (W - sx), src, sx, sc, lo, hi);
      }
    }
  }
}

}  // namespace fastdream
