#include <pybind11/pybind11.h>

namespace fastdream {
void bind_tiling(pybind11::module_& m) { (void)m; }
}  // namespace fastdream
