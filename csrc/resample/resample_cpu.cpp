// resample CPU kernel: to be written
