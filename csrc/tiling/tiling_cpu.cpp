// tiling CPU kernel: to be written
