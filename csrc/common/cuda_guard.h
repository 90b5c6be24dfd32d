// Launches go to the tensors' device, whatever the caller's current device is (CUDA sources only).
#pragma once
#include <cuda_runtime.h>

namespace fastdream {

struct CudaDeviceGuard {
  int prev = -1;
  explicit CudaDeviceGuard(int device) {
    if (cudaGetDevice(&prev) != cudaSuccess) prev = -1;
    if (prev != device) cudaSetDevice(device);
  }
  ~CudaDeviceGuard() {
    if (prev >= 0) cudaSetDevice(prev);
  }
  CudaDeviceGuard(const CudaDeviceGuard&) = delete;
  CudaDeviceGuard& operator=(const CudaDeviceGuard&) = delete;
};

}  // namespace fastdream
