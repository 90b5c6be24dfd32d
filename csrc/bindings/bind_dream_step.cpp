// pybind11 binding of dream_step: DLPack capsules and Python scalars -> DreamStepParams, with every
// boundary check (messages print what was received). Only this file knows pybind11.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <initializer_list>
#include <string>
#include <vector>

#include "bindings/dlpack_arg.h"
#include "common/check.h"
#include "dream_step/dream_step.h"
#ifdef _OPENMP
#include <omp.h>
#endif

namespace py = pybind11;

namespace fastdream {
namespace {

std::string list_str(const std::vector<double>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += str_cat(i ? ", " : "", v[i]);
  return s + "]";
}

// sigma list (already a list of floats; [] = no blur) and kernel_size (0 = from sigma) -> radii.
int parse_blur(const std::vector<double>& sigma, int64_t kernel_size, double* sigmas, int* radius) {
  FD_CHECK(sigma.size() <= static_cast<size_t>(kDreamMaxSigmas), "dream_step: sigma takes at most ",
           kDreamMaxSigmas, " values (a cascade of blurs), got ", sigma.size(), ": ", list_str(sigma));
  FD_CHECK(kernel_size == 0 || (kernel_size >= 1 && kernel_size % 2 == 1), "dream_step: kernel_size must be an odd ",
           "integer >= 1 (or None to use ceil(3 sigma) per side), got ", kernel_size);
  FD_CHECK(kernel_size <= 2 * kDreamMaxRadius + 1, "dream_step: kernel_size must be at most ",
           2 * kDreamMaxRadius + 1, ", got ", kernel_size);
  for (size_t k = 0; k < sigma.size(); ++k) {
    const double s = sigma[k];
    FD_CHECK(std::isfinite(s) && s >= 0.0, "dream_step: sigma values must be finite and >= 0, got ",
             list_str(sigma));
    const int64_t r = kernel_size > 0 ? (kernel_size - 1) / 2 : static_cast<int64_t>(std::ceil(3.0 * s));
    FD_CHECK(r <= kDreamMaxRadius, "dream_step: sigma ", s, " needs a blur radius of ", r, " (ceil(3 sigma)); at most ",
             kDreamMaxRadius, " is supported (pass a smaller sigma or a kernel_size)");
    sigmas[k] = s;
    radius[k] = static_cast<int>(r);
  }
  return static_cast<int>(sigma.size());
}

DreamNorm parse_norm(const std::string& norm) {
  if (norm == "mean_abs") return DreamNorm::MeanAbs;
  if (norm == "std") return DreamNorm::Std;
  if (norm == "none") return DreamNorm::None;
  // The TF tutorial's Laplacian-pyramid normalization needs a pyramid of blurred, down- and up-sampled
  // copies of the gradient with one std per level: several dependent resampling passes, which do not
  // fit dream_step's single smooth -> reduce -> update structure. Build it from ops.resample instead.
  FD_CHECK(norm != "laplacian", "dream_step: norm='laplacian' is not supported by the fused step (a Laplacian ",
           "pyramid needs several resampling passes); use 'mean_abs', 'std' or 'none'");
  throw ValueError(str_cat("dream_step: unknown norm '", norm, "'; expected 'mean_abs', 'std' or 'none'"));
}

void parse_bounds(const std::vector<double>& v, int64_t C, const char* name, float* out) {
  FD_CHECK(v.size() == 1 || static_cast<int64_t>(v.size()) == C, "dream_step: ", name,
           " must be a float or a sequence of C = ", C, " floats, got ", v.size(), " values: ", list_str(v));
  for (int64_t c = 0; c < C; ++c) {
    const double x = v.size() == 1 ? v[0] : v[c];
    FD_CHECK(!std::isnan(x), "dream_step: ", name, " must not be NaN, got ", list_str(v));
    out[c] = static_cast<float>(x);
  }
}

int default_slots() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

int64_t workspace_bytes(bool cuda, int64_t B, int64_t C, int64_t H, int64_t W, const std::vector<double>& sigma,
                        int64_t kernel_size) {
  FD_CHECK(B >= 0 && C >= 1 && C <= kDreamMaxChannels && H >= 1 && W >= 1,
           "dream_step_workspace_bytes: expected B >= 0, C in 1..4, H >= 1, W >= 1, got [", B, ", ", C, ", ", H,
           ", ", W, "]");
  double s[kDreamMaxSigmas];
  int r[kDreamMaxSigmas];
  const int k = parse_blur(sigma, kernel_size, s, r);
  return dream_step_workspace_bytes(cuda, B, C, H, W, k, r, default_slots());
}

// The dtypes grad may have per device (the CUDA kernel reads half types and accumulates in float32).
// Exported as dream_step_grad_dtypes(cuda): the tests' tolerance table must cover exactly these.
const std::initializer_list<Dtype> kGradDtypesCpu = {Dtype::Float32};
const std::initializer_list<Dtype> kGradDtypesCuda = {Dtype::Float32, Dtype::Float16, Dtype::BFloat16};

std::vector<std::string> grad_dtypes(bool cuda) {
  std::vector<std::string> out;
  for (Dtype d : cuda ? kGradDtypesCuda : kGradDtypesCpu) out.emplace_back(dtype_name(d));
  return out;
}

void dream_step(py::handle image_obj, py::handle grad_obj, py::handle norms_obj, py::handle ws_obj,
                std::uintptr_t stream, double step_size, const std::vector<double>& sigma, int64_t kernel_size,
                const std::string& norm, const std::vector<double>& lower, const std::vector<double>& upper,
                int64_t shift_y, int64_t shift_x, double eps) {
  DLArg image = dlpack_arg(image_obj, "image");
  DLArg grad = dlpack_arg(grad_obj, "grad");
  DLArg norms = dlpack_arg(norms_obj, "norms");
  DLArg ws = dlpack_arg(ws_obj, "workspace");
  const TensorArg &im = image.t, &g = grad.t, &nm = norms.t;

  check_dtype(im, {Dtype::Float32});
  check_ndim(im, 4, "[B, C, H, W]");
  check_device_supported(im);
  check_same_device(im, g);
  check_dtype(g, g.device == DeviceKind::CUDA ? kGradDtypesCuda : kGradDtypesCpu);
  check_ndim(g, 4, "[B, C, H, W]");
  check_same_shape(im, g);
  check_contiguous(im);
  check_contiguous(g);
  const int64_t B = im.shape[0], C = im.shape[1], H = im.shape[2], W = im.shape[3];
  FD_CHECK(C >= 1 && C <= kDreamMaxChannels, "image: expected 1 to 4 channels, got ", im.describe());
  FD_CHECK(H >= 1 && W >= 1, "image: expected H >= 1 and W >= 1, got ", im.describe());
  check_dtype(nm, {Dtype::Float32});
  check_same_device(im, nm);
  FD_CHECK(nm.ndim == 1 && nm.shape[0] == B && nm.is_contiguous(), "norms: expected a contiguous float32 [B] = [",
           B, "] tensor, got ", nm.describe());
  check_no_overlap(im, g);
  check_no_overlap(im, nm);
  check_no_overlap(g, nm);
  check_no_overlap(im, ws.t);
  check_no_overlap(g, ws.t);
  check_no_overlap(nm, ws.t);

  FD_CHECK(std::isfinite(step_size), "dream_step: step_size must be finite, got ", step_size);
  FD_CHECK(std::isfinite(eps) && eps >= 0.0, "dream_step: eps must be finite and >= 0, got ", eps);

  DreamStepParams p;
  p.num_sigmas = parse_blur(sigma, kernel_size, p.sigma, p.radius);
  p.norm = parse_norm(norm);
  parse_bounds(lower, C, "lower", p.lower);
  parse_bounds(upper, C, "upper", p.upper);
  p.image = static_cast<float*>(im.data);
  p.grad = g.data;
  p.grad_dtype = g.dtype;
  p.norms = static_cast<float*>(nm.data);
  p.B = B;
  p.C = C;
  p.H = H;
  p.W = W;
  p.shift_y = ((shift_y % H) + H) % H;
  p.shift_x = ((shift_x % W) + W) % W;
  p.step_size = static_cast<float>(step_size);
  p.eps = static_cast<float>(eps);
  p.device_id = im.device_id;

  const bool cuda = im.device == DeviceKind::CUDA;
  const DreamStepWorkspace layout = dream_step_workspace(cuda, B, C, H, W, p.num_sigmas, p.radius);
  check_workspace(ws.t, im, dream_step_workspace_bytes(cuda, B, C, H, W, p.num_sigmas, p.radius, 1));
  p.workspace = ws.t.data;
  p.workspace_bytes = ws.t.shape[0];
  if (!cuda && layout.slot_bytes > 0) {
    const int64_t slots = (p.workspace_bytes - layout.fixed_bytes) / layout.slot_bytes;
    p.cpu_slots = static_cast<int>(slots > 1024 ? 1024 : slots);
  } else {
    p.cpu_slots = default_slots();
  }
  void* s = stream_arg(im, stream);

  if (cuda) {
#if FASTDREAM_WITH_CUDA
    launch_dream_step_cuda(p, s);
#else
    (void)s;  // unreachable: check_device_supported rejected the CUDA tensor
#endif
  } else {
    py::gil_scoped_release release;
    launch_dream_step_cpu(p);
  }
}

}  // namespace

void bind_dream_step(py::module_& m) {
  m.def("dream_step", &dream_step, py::arg("image"), py::arg("grad"), py::arg("norms"), py::arg("workspace"),
        py::arg("stream"), py::arg("step_size"), py::arg("sigma"), py::arg("kernel_size"), py::arg("norm"),
        py::arg("lower"), py::arg("upper"), py::arg("shift_y"), py::arg("shift_x"), py::arg("eps"),
        "Fused DeepDream step, in place on image ([B, C, H, W] float32); writes norms ([B] float32). "
        "Call through fastdream.ops.dream_step.dream_step.");
  m.def("dream_step_grad_dtypes", &grad_dtypes, py::arg("cuda"),
        "Names of the dtypes grad may have on the CPU (cuda=False) or on CUDA (cuda=True).");
  m.def("dream_step_workspace_bytes", &workspace_bytes, py::arg("cuda"), py::arg("B"), py::arg("C"), py::arg("H"),
        py::arg("W"), py::arg("sigma"), py::arg("kernel_size"),
        "Scratch bytes dream_step needs for these sizes and blur (CPU: one row buffer per OpenMP thread).");
}

}  // namespace fastdream
