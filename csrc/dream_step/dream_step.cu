// dream_step CUDA kernel: to be written
