// tiling CUDA kernel: to be written
