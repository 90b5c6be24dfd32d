// CUDA runtime queries that the binding needs (implemented in cuda_runtime_info.cu when CUDA is built).
#pragma once
#include <string>

namespace fastdream {

// Number of CUDA devices the runtime can use now (0 without a driver or a GPU; never throws).
int cuda_device_count();
// Version of the CUDA runtime linked into the module, e.g. 13000.
int cuda_runtime_version();
// Throws DeviceError with `what` and the CUDA error string when the last launch failed.
void cuda_check_last_error(const char* what);

}  // namespace fastdream
