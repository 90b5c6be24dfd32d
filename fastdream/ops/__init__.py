"""The native ops (C++/OpenMP on the CPU, CUDA on the GPU), each checked against its pure-torch twin in
``fastdream.reference``. Tensors cross the boundary as DLPack capsules; Python allocates, C++ computes."""
from fastdream.ops.dream_step import dream_step
from fastdream.ops.resample import octave_upsample_add, resample
from fastdream.ops.tiling import TileLayout, accumulate_tiles, auto_tile, extract_tiles, halo_tiles, tile_layout

__all__ = ["dream_step", "resample", "octave_upsample_add", "TileLayout", "tile_layout", "auto_tile", "halo_tiles",
           "extract_tiles", "accumulate_tiles"]
