#include <cuda_runtime.h>

#include "common/check.h"
#include "common/cuda_runtime_info.h"

namespace fastdream {

int cuda_device_count() {
  int n = 0;
  cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" / "no device" error
    return 0;
  }
  return n;
}

int cuda_runtime_version() {
  int v = 0;
  cudaRuntimeGetVersion(&v);
  return v;
}

void cuda_check_last_error(const char* what) {
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) {
    throw DeviceError(str_cat(what, ": CUDA error ", cudaGetErrorName(err), ": ", cudaGetErrorString(err)));
  }
}

}  // namespace fastdream
