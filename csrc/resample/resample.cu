// resample CUDA kernel: to be written
