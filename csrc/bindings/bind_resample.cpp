// pybind11 binding of resample: DLPack capsules in, ResampleParams to the CPU or CUDA kernel.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <limits>

#include "bindings/dlpack_arg.h"
#include "resample/resample.h"

namespace py = pybind11;

namespace fastdream {

namespace {

ResampleMode mode_arg(int mode) {
  FD_CHECK(mode == 0 || mode == 1, "resample: mode must be 0 (bilinear) or 1 (bicubic), got ", mode);
  return static_cast<ResampleMode>(mode);
}

void check_size(const char* what, int64_t v) {
  FD_CHECK(v >= 1 && v <= std::numeric_limits<int32_t>::max(), "resample: ", what,
           " must be in [1, 2^31 - 1], got ", v);
}

void check_image(const TensorArg& t) {
  check_dtype(t, {Dtype::Float32});
  check_ndim(t, 4, "[B, C, H, W]");
  check_contiguous(t);
  check_device_supported(t);
}

// out = base + resample(x) when base is given, else out = resample(x).
void resample_binding(py::handle x_obj, py::handle out_obj, py::handle base_obj, int mode, bool antialias,
                      py::handle ws_obj, std::uintptr_t stream) {
  DLArg x = dlpack_arg(x_obj, "x");        // [B, C, H, W]
  DLArg out = dlpack_arg(out_obj, "out");  // [B, C, H2, W2]
  check_image(x.t);
  check_image(out.t);
  check_same_device(x.t, out.t);
  FD_CHECK(x.t.shape[0] == out.t.shape[0] && x.t.shape[1] == out.t.shape[1],
           "resample: x and out must have the same batch and channel sizes, got ", x.t.shape_str(), " and ",
           out.t.shape_str());
  check_size("input height", x.t.shape[2]);
  check_size("input width", x.t.shape[3]);
  check_size("output height", out.t.shape[2]);
  check_size("output width", out.t.shape[3]);
  check_no_overlap(out.t, x.t);
  const ResampleMode m = mode_arg(mode);

  DLArg base;
  const bool has_base = !base_obj.is_none();
  if (has_base) {
    base = dlpack_arg(base_obj, "base");  // [B, C, H2, W2]
    check_image(base.t);
    check_same_device(base.t, out.t);
    check_same_shape(base.t, out.t);
    // out may be base itself (in place), but not a partly overlapping view of it.
    if (base.t.data != out.t.data) check_no_overlap(out.t, base.t);
  }
  DLArg ws = dlpack_arg(ws_obj, "workspace");
  const int64_t need = resample_workspace_bytes(x.t.shape[2], x.t.shape[3], out.t.shape[2], out.t.shape[3], m,
                                                antialias, x.t.device);
  // A CPU workspace sized for fewer threads still works (the kernel uses fewer), so require one row only.
  const ResampleWorkspace l =
      resample_workspace_layout(x.t.shape[2], x.t.shape[3], out.t.shape[2], out.t.shape[3], m, antialias);
  check_workspace(ws.t, x.t, x.t.device == DeviceKind::CPU ? l.tables_bytes + l.row_bytes : need);
  void* s = stream_arg(x.t, stream);

  ResampleParams p;
  p.x = static_cast<const float*>(x.t.data);
  p.out = static_cast<float*>(out.t.data);
  p.base = has_base ? static_cast<const float*>(base.t.data) : nullptr;
  p.planes = x.t.shape[0] * x.t.shape[1];
  p.in_h = x.t.shape[2];
  p.in_w = x.t.shape[3];
  p.out_h = out.t.shape[2];
  p.out_w = out.t.shape[3];
  p.mode = m;
  p.antialias = antialias;
  p.workspace = ws.t.data;
  p.workspace_bytes = ws.t.shape[0];
  p.device_id = x.t.device_id;
  if (x.t.device == DeviceKind::CUDA) {
    launch_resample_cuda(p, s);
  } else {
    py::gil_scoped_release nogil;
    launch_resample_cpu(p);
  }
}

}  // namespace

void bind_resample(py::module_& m) {
  m.def(
      "resample_workspace_bytes",
      [](int64_t in_h, int64_t in_w, int64_t out_h, int64_t out_w, int mode, bool antialias, bool cuda) {
        check_size("input height", in_h);
        check_size("input width", in_w);
        check_size("output height", out_h);
        check_size("output width", out_w);
        return resample_workspace_bytes(in_h, in_w, out_h, out_w, mode_arg(mode), antialias,
                                        cuda ? DeviceKind::CUDA : DeviceKind::CPU);
      },
      py::arg("in_h"), py::arg("in_w"), py::arg("out_h"), py::arg("out_w"), py::arg("mode"),
      py::arg("antialias"), py::arg("cuda"),
      "Bytes of workspace resample() needs for these sizes (CPU: includes one scratch row pair per thread).");
  m.def("resample", &resample_binding, py::arg("x"), py::arg("out"), py::arg("base"), py::arg("mode"),
        py::arg("antialias"), py::arg("workspace"), py::arg("stream"),
        "out[B, C, H2, W2] = (base +) resample(x[B, C, H, W]) (bilinear 0 / bicubic 1, like F.interpolate "
        "with align_corners=False). Use fastdream.ops.resample instead.");
}

}  // namespace fastdream
