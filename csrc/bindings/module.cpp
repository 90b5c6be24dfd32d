// fastdream._C: the native core. Each op registers itself from its own bind_<op>.cpp.
#include <pybind11/pybind11.h>

#include "bindings/dlpack_arg.h"
#include "common/check.h"
#if FASTDREAM_WITH_CUDA
#include "common/cuda_runtime_info.h"
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

namespace py = pybind11;

namespace fastdream {
void bind_dream_step(py::module_& m);
void bind_resample(py::module_& m);
void bind_tiling(py::module_& m);
}  // namespace fastdream

static py::dict build_info() {
  py::dict d;
#if FASTDREAM_WITH_CUDA
  d["cuda"] = true;
  d["cuda_version"] = FASTDREAM_CUDA_VERSION;
  d["cuda_runtime_version"] = fastdream::cuda_runtime_version();
  py::list archs;
  std::string s = FASTDREAM_CUDA_ARCHS;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find(',', start);
    if (end == std::string::npos) end = s.size();
    if (end > start) archs.append(s.substr(start, end - start));
    start = end + 1;
  }
  d["cuda_architectures"] = archs;
#else
  d["cuda"] = false;
  d["cuda_version"] = py::none();
  d["cuda_runtime_version"] = py::none();
  d["cuda_architectures"] = py::list();
#endif
#ifdef _OPENMP
  d["openmp"] = true;
  d["openmp_version"] = _OPENMP;
  d["openmp_max_threads"] = omp_get_max_threads();
#else
  d["openmp"] = false;
  d["openmp_version"] = py::none();
  d["openmp_max_threads"] = 1;
#endif
  d["compiler"] = FASTDREAM_CXX_COMPILER;
  d["build_type"] = FASTDREAM_BUILD_TYPE;
  return d;
}

PYBIND11_MODULE(_C, m) {
  m.doc() = "fastdream native kernels (C++/OpenMP and CUDA), called through fastdream.ops";
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const fastdream::TypeError& e) {
      PyErr_SetString(PyExc_TypeError, e.what());
    } catch (const fastdream::ValueError& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const fastdream::DeviceError& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what());
    }
  });
  m.def("build_info", &build_info, "What this module was compiled with.");
  m.def(
      "cuda_device_count",
      []() {
#if FASTDREAM_WITH_CUDA
        return fastdream::cuda_device_count();
#else
        return 0;
#endif
      },
      "CUDA devices usable now (0 when CUDA was not compiled, or no driver/GPU is present).");
  fastdream::bind_dream_step(m);
  fastdream::bind_resample(m);
  fastdream::bind_tiling(m);
}
