#include <pybind11/pybind11.h>

namespace fastdream {
void bind_resample(pybind11::module_& m) { (void)m; }
}  // namespace fastdream
