// pybind11 bindings of the tiling ops: DLPack capsules + layout integers in, params to the kernels.
#include <pybind11/pybind11.h>

#include <cstdint>

#include "bindings/dlpack_arg.h"
#include "tiling/tiling.h"

namespace py = pybind11;

namespace fastdream {

namespace {

void check_float_tensor(const TensorArg& t, int ndim, const char* layout) {
  check_dtype(t, {Dtype::Float32});
  check_ndim(t, ndim, layout);
  check_contiguous(t);
  check_device_supported(t);
}

// The image [B, C, H, W] and the tiles [n, B, C, th, tw] must agree with each other and the layout.
void check_pair(const TensorArg& image, const TensorArg& tiles, const TileAxis& ay, const TileAxis& ax,
                int64_t start, const char* op) {
  check_same_device(image, tiles);
  FD_CHECK(image.shape[2] == ay.length && image.shape[3] == ax.length, op, ": ", image.name,
           " is ", image.shape_str(), " but the layout is for ", ay.length, " x ", ax.length, " pictures");
  FD_CHECK(tiles.shape[1] == image.shape[0] && tiles.shape[2] == image.shape[1] &&
               tiles.shape[3] == ay.tile && tiles.shape[4] == ax.tile,
           op, ": ", tiles.name, " must be [n, ", image.shape[0], ", ", image.shape[1], ", ", ay.tile, ", ", ax.tile,
           "] for ", image.name, " ", image.shape_str(), " and this layout, got ", tiles.shape_str());
  const int64_t n = ay.count * ax.count;
  FD_CHECK(start >= 0 && start <= n, op, ": start must be in [0, ", n, "] (the layout has ", n, " tiles), got ",
           start);
  FD_CHECK(start + tiles.shape[0] <= n, op, ": tiles ", start, " .. ", start + tiles.shape[0] - 1,
           " do not exist, the layout has ", n, " tiles");
  check_no_overlap(tiles, image);
}

struct Axes {
  TileAxis ay, ax;
};

Axes axes(int64_t height, int64_t width, int64_t tile_h, int64_t tile_w, int64_t overlap, int64_t offset_y,
          int64_t offset_x) {
  return {make_tile_axis("height", height, tile_h, overlap, offset_y),
          make_tile_axis("width", width, tile_w, overlap, offset_x)};
}

void extract_binding(py::handle image_obj, py::handle tiles_obj, int64_t tile_h, int64_t tile_w, int64_t overlap,
                     int64_t offset_y, int64_t offset_x, int64_t start, std::uintptr_t stream) {
  DLArg image = dlpack_arg(image_obj, "image");  // [B, C, H, W]
  DLArg tiles = dlpack_arg(tiles_obj, "tiles");  // [n, B, C, th, tw]
  check_float_tensor(image.t, 4, "[B, C, H, W]");
  check_float_tensor(tiles.t, 5, "[n, B, C, th, tw]");
  const Axes a = axes(image.t.shape[2], image.t.shape[3], tile_h, tile_w, overlap, offset_y, offset_x);
  check_pair(image.t, tiles.t, a.ay, a.ax, start, "extract_tiles");
  void* s = stream_arg(image.t, stream);
  TileExtractParams p;
  p.image = static_cast<const float*>(image.t.data);
  p.tiles = static_cast<float*>(tiles.t.data);
  p.planes = image.t.shape[0] * image.t.shape[1];
  p.ay = a.ay;
  p.ax = a.ax;
  p.start = start;
  p.count = tiles.t.shape[0];
  p.device_id = image.t.device_id;
  if (image.t.device == DeviceKind::CUDA) {
    launch_extract_tiles_cuda(p, s);
  } else {
    py::gil_scoped_release nogil;
    launch_extract_tiles_cpu(p);
  }
}

void accumulate_binding(py::handle tiles_obj, py::handle out_obj, int64_t tile_h, int64_t tile_w, int64_t overlap,
                        int64_t offset_y, int64_t offset_x, int64_t start, py::handle ws_obj, std::uintptr_t stream) {
  DLArg tiles = dlpack_arg(tiles_obj, "tiles");  // [n, B, C, th, tw]
  DLArg out = dlpack_arg(out_obj, "out");        // [B, C, H, W]
  check_float_tensor(tiles.t, 5, "[n, B, C, th, tw]");
  check_float_tensor(out.t, 4, "[B, C, H, W]");
  const Axes a = axes(out.t.shape[2], out.t.shape[3], tile_h, tile_w, overlap, offset_y, offset_x);
  check_pair(out.t, tiles.t, a.ay, a.ax, start, "accumulate_tiles");
  DLArg ws = dlpack_arg(ws_obj, "workspace");
  check_workspace(ws.t, out.t, tiling_workspace_bytes(a.ay, a.ax));
  void* s = stream_arg(out.t, stream);
  TileAccumulateParams p;
  p.tiles = static_cast<const float*>(tiles.t.data);
  p.out = static_cast<float*>(out.t.data);
  p.planes = out.t.shape[0] * out.t.shape[1];
  p.ay = a.ay;
  p.ax = a.ax;
  p.start = start;
  p.count = tiles.t.shape[0];
  p.workspace = ws.t.data;
  p.workspace_bytes = ws.t.shape[0];
  p.device_id = out.t.device_id;
  if (out.t.device == DeviceKind::CUDA) {
    launch_accumulate_tiles_cuda(p, s);
  } else {
    py::gil_scoped_release nogil;
    launch_accumulate_tiles_cpu(p);
  }
}

}  // namespace

void bind_tiling(py::module_& m) {
  m.def(
      "tiling_workspace_bytes",
      [](int64_t height, int64_t width, int64_t tile_h, int64_t tile_w, int64_t overlap, int64_t offset_y,
         int64_t offset_x) {
        const Axes a = axes(height, width, tile_h, tile_w, overlap, offset_y, offset_x);
        return tiling_workspace_bytes(a.ay, a.ax);
      },
      py::arg("height"), py::arg("width"), py::arg("tile_h"), py::arg("tile_w"), py::arg("overlap"),
      py::arg("offset_y"), py::arg("offset_x"), "Bytes of workspace accumulate_tiles() needs for this layout.");
  m.def("tile_count",
        [](int64_t height, int64_t width, int64_t tile_h, int64_t tile_w, int64_t overlap, int64_t offset_y,
           int64_t offset_x) {
          const Axes a = axes(height, width, tile_h, tile_w, overlap, offset_y, offset_x);
          return py::make_tuple(a.ay.count, a.ax.count);
        },
        py::arg("height"), py::arg("width"), py::arg("tile_h"), py::arg("tile_w"), py::arg("overlap"),
        py::arg("offset_y"), py::arg("offset_x"), "(tiles along y, tiles along x) of the native layout.");
  m.def("extract_tiles", &extract_binding, py::arg("image"), py::arg("tiles"), py::arg("tile_h"),
        py::arg("tile_w"), py::arg("overlap"), py::arg("offset_y"), py::arg("offset_x"), py::arg("start"),
        py::arg("stream"),
        "tiles[n, B, C, th, tw] = tiles start .. start + n - 1 of image[B, C, H, W]. Use fastdream.ops.tiling.");
  m.def("accumulate_tiles", &accumulate_binding, py::arg("tiles"), py::arg("out"), py::arg("tile_h"),
        py::arg("tile_w"), py::arg("overlap"), py::arg("offset_y"), py::arg("offset_x"), py::arg("start"),
        py::arg("workspace"), py::arg("stream"),
        "out[B, C, H, W] += normalized-weighted tiles start .. start + n - 1. Use fastdream.ops.tiling.");
}

}  // namespace fastdream
