// Turning Python arguments into kernel arguments, with the boundary checks shared by every op.
// Only the bindings include this file (it knows pybind11); kernels take TensorArg and params structs.
#pragma once
#include <pybind11/pybind11.h>

#include <cstdint>
#include <initializer_list>
#include <string>

#include "common/check.h"
#include "common/tensor.h"

namespace fastdream {

// A tensor borrowed from Python for the length of one call. `owner` keeps the DLPack capsule (and the
// memory it points to) alive; the capsule is not consumed, so its producer frees it as usual.
struct DLArg {
  pybind11::object owner;
  TensorArg t;
};

// Accepts a DLPack capsule ("dltensor", as returned by `t.__dlpack__()`) or an object with
// `__dlpack__` (NumPy arrays, CPU tensors). Raises TypeError for anything else.
DLArg dlpack_arg(pybind11::handle obj, const char* name);

void check_dtype(const TensorArg& t, std::initializer_list<Dtype> allowed);
void check_ndim(const TensorArg& t, int ndim, const char* layout);   // layout: "[B, C, H, W]"
void check_contiguous(const TensorArg& t);
void check_same_device(const TensorArg& a, const TensorArg& b);
void check_same_shape(const TensorArg& a, const TensorArg& b);
// `a` and `b` must not share memory (an output written while an input is read).
void check_no_overlap(const TensorArg& a, const TensorArg& b);
// Dispatch helpers: raise when the tensor is on a device this build cannot run.
void check_device_supported(const TensorArg& t);
// The CUDA stream given by Python (torch.cuda.current_stream().cuda_stream); must be 0 for CPU tensors.
void* stream_arg(const TensorArg& t, std::uintptr_t stream);
// A workspace given by Python: a contiguous uint8 tensor on the device of `like`, of at least `bytes`.
void check_workspace(const TensorArg& ws, const TensorArg& like, int64_t bytes);

size_t dtype_size(Dtype d);

}  // namespace fastdream
