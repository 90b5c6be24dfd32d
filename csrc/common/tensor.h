// A tensor as the kernels see it: a typed pointer with sizes and strides (in elements). Built from a
// DLPack capsule by csrc/bindings/dlpack_arg.cpp; kernels never see pybind11 or torch.
#pragma once
#include <cstdint>
#include <string>

namespace fastdream {

enum class Dtype { Float32, Float16, BFloat16, Float64, Int32, Int64, UInt8, Other };
enum class DeviceKind { CPU, CUDA, Other };

const char* dtype_name(Dtype d);
const char* device_name(DeviceKind d);

constexpr int kMaxDims = 8;

struct TensorArg {
  void* data = nullptr;  // already offset by DLPack's byte_offset
  DeviceKind device = DeviceKind::CPU;
  int device_id = 0;
  Dtype dtype = Dtype::Other;
  int ndim = 0;
  int64_t shape[kMaxDims] = {};
  int64_t strides[kMaxDims] = {};  // in elements
  std::string name;                // argument name, for messages

  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < ndim; ++i) n *= shape[i];
    return n;
  }
  bool is_contiguous() const {
    int64_t expected = 1;
    for (int i = ndim - 1; i >= 0; --i) {
      if (shape[i] != 1 && strides[i] != expected) return false;
      expected *= shape[i];
    }
    return true;
  }
  std::string shape_str() const;  // "[2, 3, 64, 64]"
  std::string describe() const;   // "float32 tensor of shape [2, 3, 64, 64] on cpu"
};

}  // namespace fastdream
